//! `${VAR}` expansion inside string values.
//!
//! Expansion runs on each scalar value after YAML parsing, so a variable's value is
//! never re-read as YAML (a secret containing `: ` or `#` stays intact), and before the
//! value is interpreted, so `timeout: ${T:-5s}` works. Keys and comments are never
//! expanded.
//!
//! Syntax: `${NAME}`, `${NAME:-default}` (the default, taken literally, applies when
//! NAME is unset or empty, as in POSIX shells) and `$$` for a literal `$`. A `$` not
//! followed by `{` or `$` is kept as is. NAME is `[A-Za-z_][A-Za-z0-9_]*`.

/// A scalar value after expansion.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Expanded {
    pub(super) value: String,
    /// Whether any part came from the environment. Such values are never quoted in
    /// messages: the environment is where secrets live.
    pub(super) from_env: bool,
}

/// Expands `raw`, or says why it cannot be (naming the variable, never its value).
pub(super) fn expand(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Expanded, String> {
    let mut value = String::with_capacity(raw.len());
    let mut from_env = false;
    let mut rest = raw;
    while let Some(dollar) = rest.find('$') {
        value.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            value.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(close) = body.find('}') else {
                return Err("unterminated `${` (write `$$` for a literal `$`)".to_owned());
            };
            let (name, default) = match body[..close].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&body[..close], None),
            };
            check_name(name)?;
            match (env(name), default) {
                (Some(v), Some(_)) if !v.is_empty() => {
                    value.push_str(&v);
                    from_env = true;
                }
                (Some(v), None) => {
                    value.push_str(&v);
                    from_env = true;
                }
                (_, Some(default)) => value.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set (and no `${{{name}:-default}}` is given)"
                    ));
                }
            }
            rest = &body[close + 1..];
        } else {
            value.push('$');
            rest = after;
        }
    }
    value.push_str(rest);
    Ok(Expanded { value, from_env })
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid variable name {name:?} in `${{...}}` (expected letters, digits and `_`, not starting with a digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr:et #x".to_owned()),
            "EMPTY" => Some(String::new()),
            "T" => Some("5s".to_owned()),
            _ => None,
        }
    }

    fn ok(raw: &str) -> Expanded {
        expand(raw, &env).expect("expands")
    }

    #[test]
    fn set_variables_are_substituted_verbatim() {
        assert_eq!(
            ok("Bearer ${TOKEN}"),
            Expanded {
                value: "Bearer s3cr:et #x".to_owned(),
                from_env: true
            }
        );
        assert_eq!(ok("${T:-10s}").value, "5s");
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        assert_eq!(
            ok("${NOPE:-5s}"),
            Expanded {
                value: "5s".to_owned(),
                from_env: false
            }
        );
        assert_eq!(ok("${EMPTY:-x}").value, "x");
        assert_eq!(ok("${NOPE:-}").value, "");
        assert_eq!(ok("${EMPTY}").value, "");
    }

    #[test]
    fn dollars_escape_and_stay_literal() {
        assert_eq!(ok("a$$b").value, "a$b");
        assert_eq!(ok("$${T}").value, "${T}");
        assert_eq!(ok("cost: $5 $").value, "cost: $5 $");
        assert!(!ok("a$$b").from_env);
    }

    #[test]
    fn missing_variable_is_named() {
        let err = expand("x-${MISSING_VAR}", &env).expect_err("unset");
        assert!(err.contains("`MISSING_VAR` is not set"), "{err}");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(
            expand("${T", &env)
                .expect_err("open")
                .contains("unterminated")
        );
        assert!(
            expand("${}", &env)
                .expect_err("empty")
                .contains("invalid variable name")
        );
        assert!(expand("${1A}", &env).is_err());
        assert!(expand("${A-B}", &env).is_err());
    }

    #[test]
    fn non_ascii_text_survives() {
        assert_eq!(ok("héllo ${NOPE:-wörld} €").value, "héllo wörld €");
    }
}
