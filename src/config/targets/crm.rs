//! `kind: crm`: one templated JSON request per event (HubSpot, Salesforce, any JSON
//! API), with its method, URL template, header templates, body template and auth.
//!
//! Templates are only stored here; the checks are the ones that need no event: the
//! URL's scheme outside any `{{ }}`, header values free of control characters, and
//! credentials that are present, non-empty and usable in a header. Credentials are
//! never quoted in messages.

use http::{HeaderValue, Method};
use secrecy::ExposeSecret;

use super::super::de::Loc;
use super::super::reader::{Ctx, child};
use super::super::schema as raw;
use super::super::template::{self, TemplateSource};
use super::super::tree::Node;
use super::super::{CrmAuth, CrmSettings, Secret};
use super::{INVALID_HEADER_VALUE, headers, http_url};

pub(super) fn crm_target(ctx: &mut Ctx<'_>, t: &raw::CrmTarget) -> Option<CrmSettings> {
    let method = ctx.value_or(t.method.as_ref(), "method", raw::CrmTarget::METHOD, method);
    let url = ctx
        .require_at(&t.url)
        .and_then(|(node, path)| url(ctx, node, &path));
    let has_auth = t.auth.is_some();
    let headers = match ctx.present(t.headers.as_ref()) {
        None => Some(Vec::new()),
        Some((node, path)) => headers(ctx, node, path, has_auth, header_template),
    };
    let body = match ctx.present(t.body.as_ref()) {
        None => Some(None),
        Some((node, path)) => template::body(ctx, node, &path).map(Some),
    };
    let auth = match &t.auth {
        None => Some(None),
        Some(raw) => auth(ctx, raw).map(Some),
    };
    Some(CrmSettings {
        method: method?,
        url: url?,
        headers: headers?,
        body: body?,
        auth: auth?,
    })
}

/// The methods a JSON API is called with, in any case.
fn method(text: &str) -> Result<Method, String> {
    match text.to_ascii_uppercase().as_str() {
        "GET" => Ok(Method::GET),
        "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "PATCH" => Ok(Method::PATCH),
        "DELETE" => Ok(Method::DELETE),
        _ => Err("expected one of: GET, POST, PUT, PATCH, DELETE".to_owned()),
    }
}

fn url(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<TemplateSource> {
    let url = template::template(ctx, node, path)?;
    if !starts_with_http(&without_tags(&url.source.text)) {
        let message = format!(
            "invalid URL template {} (must start with http:// or https://, outside any `{{{{ }}}}`)",
            url.quoted
        );
        ctx.report(node.at, path, message);
        return None;
    }
    Some(url.source)
}

fn starts_with_http(text: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        text.get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    })
}

/// The literal text of a template: everything outside `{{ }}`, `{% %}` and `{# #}`. An
/// unclosed tag swallows the rest (rendering will report it).
fn without_tags(text: &str) -> String {
    let mut literal = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let tag = [("{{", "}}"), ("{%", "%}"), ("{#", "#}")]
            .into_iter()
            .filter_map(|(open, close)| rest.find(open).map(|at| (at, close)))
            .min_by_key(|&(at, _)| at);
        let Some((at, close)) = tag else {
            literal.push_str(rest);
            return literal;
        };
        literal.push_str(&rest[..at]);
        let inside = &rest[at + 2..];
        match inside.find(close) {
            Some(end) => rest = &inside[end + close.len()..],
            None => return literal,
        }
    }
}

/// A header value template; control characters would make every rendering invalid.
fn header_template(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<TemplateSource> {
    let value = template::template(ctx, node, path)?;
    if HeaderValue::from_str(&value.source.text).is_err() {
        ctx.report(node.at, path, INVALID_HEADER_VALUE);
        return None;
    }
    Some(value.source)
}

fn auth(ctx: &mut Ctx<'_>, raw: &raw::CrmAuth) -> Option<CrmAuth> {
    let path = ctx.section(&raw.at)?;
    let mut schemes: Vec<(&str, &Loc)> = [
        ("bearer", &raw.bearer),
        ("basic", &raw.basic),
        ("oauth2", &raw.oauth2),
    ]
    .into_iter()
    .filter(|(_, loc)| ctx.written(loc))
    .collect();
    schemes.sort_by_key(|(_, loc)| {
        let at = ctx.key_at(loc);
        (at.line, at.column)
    });
    if schemes.is_empty() && !ctx.unknown.iter().any(|u| u.parent == path) {
        let at = ctx.at(&raw.at);
        ctx.report(at, &path, "expected one of: bearer, basic, oauth2");
    }
    if let [(first, first_loc), others @ ..] = schemes.as_slice() {
        let line = ctx.key_at(first_loc).line;
        for (other, loc) in others {
            let message =
                format!("only one auth scheme is allowed (`{first}` is set at line {line})");
            let at = ctx.key_at(loc);
            ctx.report(at, &child(&path, other), message);
        }
    }
    // Each scheme is read even when there are several, so all their problems show.
    let read: Vec<Option<CrmAuth>> = schemes
        .iter()
        .map(|(scheme, loc)| {
            let node = ctx.written_node(*loc)?;
            let path = ctx.path(*loc);
            match *scheme {
                "bearer" => bearer(ctx, node, &path),
                "basic" => basic(ctx, node, &path),
                _ => oauth2(ctx, node, &path),
            }
        })
        .collect();
    match <[Option<CrmAuth>; 1]>::try_from(read) {
        Ok([auth]) => auth,
        // None (already reported: empty or unknown keys) or several.
        Err(_) => None,
    }
}

/// A credential: required, and not empty once expanded. Never quoted.
fn secret(ctx: &mut Ctx<'_>, loc: &Loc<impl Sized>) -> Option<Secret> {
    let (node, path) = ctx.require_at(loc)?;
    ctx.secret(node, &path)
}

fn bearer(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<CrmAuth> {
    let token = ctx.secret(node, path)?;
    let problem = if token
        .expose_secret()
        .get(..7)
        .is_some_and(|start| start.eq_ignore_ascii_case("bearer "))
    {
        Some("write the token alone: `Bearer ` is added by the relay")
    } else if HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).is_err() {
        Some(
            "token contains characters not allowed in a header, e.g. a line break (value not shown)",
        )
    } else {
        None
    };
    if let Some(message) = problem {
        ctx.report(node.at, path, message);
        return None;
    }
    Some(CrmAuth::Bearer(token))
}

fn basic<'e>(ctx: &mut Ctx<'e>, node: &'e Node, path: &str) -> Option<CrmAuth> {
    let raw: raw::Basic = ctx.read(node, path, false)?;
    let username = ctx.require_at(&raw.username).and_then(|(node, path)| {
        ctx.convert(node, &path, |t| {
            if t.value.is_empty() {
                Err("username is empty".to_owned())
            } else if t.value.contains(':') {
                // RFC 7617: the first `:` separates the username from the password.
                Err(format!("username {} must not contain `:`", t.quoted))
            } else {
                Ok(t.value.clone())
            }
        })
    });
    let password = secret(ctx, &raw.password);
    Some(CrmAuth::Basic {
        username: username?,
        password: password?,
    })
}

fn oauth2<'e>(ctx: &mut Ctx<'e>, node: &'e Node, path: &str) -> Option<CrmAuth> {
    let raw: raw::OAuth2 = ctx.read(node, path, false)?;
    let token_url = ctx
        .require_at(&raw.token_url)
        .and_then(|(node, path)| ctx.parse(node, &path, "URL", http_url));
    let client_id = ctx.require_at(&raw.client_id).and_then(|(node, path)| {
        ctx.convert(node, &path, |t| {
            if t.value.is_empty() {
                Err("client_id is empty".to_owned())
            } else {
                Ok(t.value.clone())
            }
        })
    });
    let client_secret = secret(ctx, &raw.client_secret);
    let scope = match ctx.present(raw.scope.as_ref()) {
        None => Some(None),
        Some((node, path)) => ctx
            .text(node, &path)
            .map(|t| (!t.value.is_empty()).then_some(t.value)),
    };
    Some(CrmAuth::OAuth2 {
        token_url: token_url?,
        client_id: client_id?,
        client_secret: client_secret?,
        scope: scope?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_removed_from_url_templates() {
        assert_eq!(
            without_tags("https://x/{{ a }}/b{% if c %}/c{% endif %}{# note #}"),
            "https://x//b/c"
        );
        assert_eq!(without_tags("{{ base }}/path"), "/path");
        assert_eq!(without_tags("https://x/{{ open"), "https://x/");
        assert_eq!(without_tags("a}}b"), "a}}b");
    }

    #[test]
    fn url_templates_need_a_literal_http_scheme() {
        for good in ["https://x", "HTTP://x/{{ id }}", "{# c #}https://x"] {
            assert!(starts_with_http(&without_tags(good)), "{good:?}");
        }
        for bad in [
            "{{ base }}/x",
            "ftp://x",
            " https://x",
            "https:/x",
            "http",
            "",
        ] {
            assert!(!starts_with_http(&without_tags(bad)), "{bad:?}");
        }
    }

    #[test]
    fn methods_are_case_insensitive() {
        assert_eq!(method("patch"), Ok(Method::PATCH));
        assert_eq!(method("Delete"), Ok(Method::DELETE));
        assert!(method("HEAD").is_err());
        assert!(method("FETCH").is_err());
    }
}
