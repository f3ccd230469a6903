//! The deserializer on small raw types of the tests' own: every problem in one pass, with
//! key paths, and what each kind of field holds.

use serde::Deserialize;

use super::super::reader::{Ctx, Field, integer};
use super::super::tree;
use super::{Loc, fields_of};

#[derive(Deserialize)]
struct Top {
    #[serde(rename = "$at")]
    at: Loc,
    n: Option<Loc>,
    req: Loc,
    inner: Option<Inner>,
}

#[derive(Deserialize)]
struct Inner {
    #[serde(rename = "$at")]
    at: Loc,
    x: Option<Loc>,
}

fn env(name: &str) -> Option<String> {
    (name == "SET").then(|| "from-env".to_owned())
}

/// Reads `yaml` into [`Top`], runs `rules` on it, and returns every problem.
fn problems(yaml: &str, rules: impl FnOnce(&mut Ctx<'_>, &Top)) -> Vec<String> {
    let root = tree::parse(yaml).expect("valid yaml");
    let mut ctx = Ctx::new(&env);
    let top: Top = ctx
        .read(&root, "", false)
        .expect("no shape the raw types lack");
    rules(&mut ctx, &top);
    ctx.finish().iter().map(ToString::to_string).collect()
}

#[test]
fn unknown_and_duplicate_keys_are_all_reported_with_paths() {
    let got = problems("req: 1\nb: 2\nreq: 3\ninner: { x: 1, y: 2 }\n", |_, _| {});
    assert_eq!(
        got,
        [
            "2:1: b: unknown key (expected one of: n, req, inner)",
            "3:1: req: duplicate key (first defined at line 1)",
            "4:16: inner.y: unknown key (expected one of: x)",
        ]
    );
}

#[test]
fn optional_fields_are_absent_invalid_or_valid() {
    let int = |t: &str| integer(t, 1, 10);
    let got = problems("n: 7\nreq: 1\n", |ctx, top| {
        assert!(matches!(
            ctx.value(top.n.as_ref(), "integer", int),
            Field::Valid(7)
        ));
    });
    assert!(got.is_empty(), "{got:?}");
    let got = problems("n: x\nreq: 1\n", |ctx, top| {
        assert!(matches!(
            ctx.value(top.n.as_ref(), "integer", int),
            Field::Invalid
        ));
    });
    assert_eq!(
        got,
        ["1:4: n: invalid integer \"x\" (expected a whole number from 1 to 10)"]
    );
    problems("n: ~\nreq: 1\n", |ctx, top| {
        assert!(top.n.is_none());
        assert!(matches!(
            ctx.value(top.n.as_ref(), "integer", int),
            Field::Absent
        ));
        assert_eq!(ctx.value_or(top.n.as_ref(), "integer", "3", int), Some(3));
    });
}

#[test]
fn env_values_are_not_quoted_and_shapes_are_named() {
    let got = problems("n: ${SET}\nreq: [x]\n", |ctx, top| {
        let boolean = super::super::reader::boolean;
        assert!(matches!(
            ctx.value(top.n.as_ref(), "boolean", boolean),
            Field::Invalid
        ));
        let node = ctx.node(&top.req).expect("written");
        assert!(ctx.parse(node, "req", "boolean", boolean).is_none());
    });
    assert_eq!(
        got,
        [
            "1:4: n: invalid boolean \"${SET}\" as expanded (expected true or false)",
            "2:6: req: expected a boolean, found a list",
        ]
    );
}

#[test]
fn a_missing_required_key_is_reported_at_its_key_or_its_mapping() {
    let got = problems("n: 1\nreq: ~\n", |ctx, top| {
        assert!(ctx.require(&top.req).is_none())
    });
    assert_eq!(got, ["2:1: req: missing required key `req`"]);
    let got = problems("n: 1\n", |ctx, top| {
        assert!(ctx.require(&top.req).is_none())
    });
    assert_eq!(got, ["1:1: req: missing required key `req`"]);
}

#[test]
fn a_struct_that_is_not_a_mapping_is_reported_once() {
    let got = problems("inner: [x: 1]\nreq: 1\n", |ctx, top| {
        let inner = top.inner.as_ref().expect("written");
        assert!(ctx.section(&inner.at).is_none(), "broken");
        assert!(inner.x.is_none(), "read as empty");
        assert!(ctx.section(&top.at).is_some());
    });
    assert_eq!(got, ["1:8: inner: expected a mapping, found a list"]);
}

#[test]
fn the_fields_of_a_type_are_serdes() {
    assert_eq!(fields_of::<Inner>(), ["$at", "x"]);
    assert_eq!(fields_of::<Top>(), ["$at", "n", "req", "inner"]);
}
