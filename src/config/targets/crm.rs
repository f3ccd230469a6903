//! `kind: crm`: one templated JSON request per event (HubSpot, Salesforce, any JSON
//! API), with its method, URL template, header templates, body template and auth.
//!
//! Templates are only stored here; the checks are the ones that need no event: the
//! URL's scheme outside any `{{ }}`, header values free of control characters, and
//! credentials that are present, non-empty and usable in a header. Credentials are
//! never quoted in messages.

use http::{HeaderValue, Method};
use secrecy::ExposeSecret;

use super::super::reader::{Ctx, Entry, Mapping, child};
use super::super::schema::keys;
use super::super::template::{self, TemplateSource};
use super::super::tree::Node;
use super::super::{CrmAuth, CrmSettings, Secret};
use super::{INVALID_HEADER_VALUE, headers, http_url};

pub(super) fn crm_target(ctx: &mut Ctx<'_>, m: &Mapping<'_>) -> Option<CrmSettings> {
    let method = ctx.field(m, "method", "method", method).or(Method::POST);
    let url = ctx
        .required(m, "url")
        .and_then(|node| url(ctx, node, &child(&m.path, "url")));
    let has_auth = m.present("auth").is_some();
    let headers = match m.present("headers") {
        None => Some(Vec::new()),
        Some(node) => headers(
            ctx,
            node,
            child(&m.path, "headers"),
            has_auth,
            header_template,
        ),
    };
    let body = match m.present("body") {
        None => Some(None),
        Some(node) => template::body(ctx, node, &child(&m.path, "body")).map(Some),
    };
    let auth = match m.present("auth") {
        None => Some(None),
        Some(node) => auth(ctx, node, child(&m.path, "auth")).map(Some),
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

fn auth(ctx: &mut Ctx<'_>, node: &Node, path: String) -> Option<CrmAuth> {
    let m = ctx.mapping(node, path)?;
    ctx.check_keys(&m, keys::CRM_AUTH);
    let schemes: Vec<&Entry<'_>> = m
        .entries
        .iter()
        .filter(|e| keys::CRM_AUTH.contains(e.key))
        .collect();
    if m.entries.is_empty() {
        ctx.report(m.at, &m.path, "expected one of: bearer, basic, oauth2");
    }
    if let [first, others @ ..] = schemes.as_slice() {
        for other in others {
            let message = format!(
                "only one auth scheme is allowed (`{}` is set at line {})",
                first.key, first.key_at.line
            );
            ctx.report(other.key_at, &child(&m.path, other.key), message);
        }
    }
    // Each scheme is read even when there are several, so all their problems show.
    let read: Vec<Option<CrmAuth>> = schemes
        .iter()
        .map(|entry| {
            let path = child(&m.path, entry.key);
            match entry.key {
                "bearer" => bearer(ctx, entry.value, &path),
                "basic" => basic(ctx, entry.value, path),
                _ => oauth2(ctx, entry.value, path),
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
fn secret(ctx: &mut Ctx<'_>, m: &Mapping<'_>, key: &str) -> Option<Secret> {
    let node = ctx.required(m, key)?;
    ctx.secret(node, &child(&m.path, key))
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

fn basic(ctx: &mut Ctx<'_>, node: &Node, path: String) -> Option<CrmAuth> {
    let m = ctx.mapping(node, path)?;
    ctx.check_keys(&m, keys::BASIC);
    let username = ctx.required(&m, "username").and_then(|node| {
        ctx.convert(node, &child(&m.path, "username"), |t| {
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
    let password = secret(ctx, &m, "password");
    Some(CrmAuth::Basic {
        username: username?,
        password: password?,
    })
}

fn oauth2(ctx: &mut Ctx<'_>, node: &Node, path: String) -> Option<CrmAuth> {
    let m = ctx.mapping(node, path)?;
    ctx.check_keys(&m, keys::OAUTH2);
    let token_url = ctx
        .required(&m, "token_url")
        .and_then(|node| ctx.parse(node, &child(&m.path, "token_url"), "URL", http_url));
    let client_id = ctx.required(&m, "client_id").and_then(|node| {
        ctx.convert(node, &child(&m.path, "client_id"), |t| {
            if t.value.is_empty() {
                Err("client_id is empty".to_owned())
            } else {
                Ok(t.value.clone())
            }
        })
    });
    let client_secret = secret(ctx, &m, "client_secret");
    let scope = match m.present("scope") {
        None => Some(None),
        Some(node) => ctx
            .text(node, &child(&m.path, "scope"))
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
