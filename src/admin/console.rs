//! The operator's web console: `GET /` and its assets, embedded in the binary.
//!
//! Plain HTML, CSS and JavaScript from `console/`, compiled in with `include_str!`: no build
//! step, nothing fetched from elsewhere, so it works in an air-gapped cluster. The page holds no
//! data; it reads everything from the public admin API (the same calls a script makes), with the
//! bearer token an operator types in, so it is served without the token. Every admin answer
//! carries [`SECURITY_HEADERS`]; their Content-Security-Policy lets the browser load and
//! contact nothing but this listener, and run no inline script.

use http::StatusCode;

use super::Answer;

/// Headers on every admin answer. `default-src 'self'` and no `'unsafe-inline'`: scripts,
/// styles, images and API calls come from this origin only, and markup cannot run script.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    // A new version's assets replace the old at once: the browser asks again every time
    // (they are small, and served from memory).
    ("cache-control", "no-cache"),
];

/// Paths of the console and their content.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "/",
        include_str!("console/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/console/app.js",
        include_str!("console/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/console/app.css",
        include_str!("console/app.css"),
        "text/css; charset=utf-8",
    ),
    (
        "/console/icon.svg",
        include_str!("console/icon.svg"),
        "image/svg+xml",
    ),
];

/// The asset at `path`, if it is one.
pub fn asset(path: &str) -> Option<Answer> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, body, content_type)| (StatusCode::OK, (*body).to_owned(), *content_type))
}
