//! The browser demo page: `GET /` for browsers, and its script and stylesheet under `/static/`.
//!
//! The files in `static/` are compiled into the binary (`include_str!`), so the server stays one
//! file with nothing to deploy beside it and nothing read from disk at run time. There is no build
//! step: the page is plain HTML, CSS and a JavaScript module.
//!
//! Caching: the asset URLs carry no fingerprint, so every file is sent with `Cache-Control:
//! no-cache` and a strong `ETag` computed at compile time; a browser revalidates on each load and
//! gets an empty `304` while the binary is unchanged, and never runs a stale script against a
//! newer server. The page gets its own `Content-Security-Policy`, allowing its own origin and
//! nothing else (no inline script or style), instead of the API's `default-src 'none'`.

mod accept;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::openapi::tags;

pub use accept::prefers_html;

/// What the page may load: its own script, stylesheet and API calls; `data:` images only for
/// the empty favicon. No inline code, no framing, no `<base>` rewriting.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// One file compiled into the binary.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// Strong validator: a hash of `body`, quoted.
    etag: &'static str,
}

/// Declares an [`Asset`] from a file of `static/`, hashing it at compile time.
macro_rules! asset {
    ($file:literal, $content_type:literal) => {{
        const BODY: &str = include_str!(concat!("../../static/", $file));
        const ETAG: [u8; 18] = etag(BODY.as_bytes());
        Asset {
            body: BODY,
            content_type: $content_type,
            etag: match std::str::from_utf8(&ETAG) {
                Ok(etag) => etag,
                Err(_) => panic!("an ETag is ASCII hex"),
            },
        }
    }};
}

const PAGE: Asset = asset!("index.html", "text/html; charset=utf-8");
const SCRIPT: Asset = asset!("app.js", "text/javascript; charset=utf-8");
const STYLESHEET: Asset = asset!("app.css", "text/css; charset=utf-8");

/// `GET /static/app.js`, `GET /static/app.css` (`GET /` is negotiated in the ops module).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(script))
        .routes(routes!(stylesheet))
}

/// The demo page, for a `GET /` whose `Accept` prefers HTML.
pub fn page(request_headers: &HeaderMap) -> Response {
    let mut response = serve(&PAGE, request_headers);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    response
}

/// The demo page's script.
#[utoipa::path(
    get,
    path = "/static/app.js",
    tag = tags::DEMO,
    responses(
        (status = 200, description = "The script", body = String, content_type = "text/javascript",
            headers(("ETag" = String), ("Cache-Control" = String, description = "`no-cache`"))),
        (status = 304, description = "Unchanged: `If-None-Match` matched the `ETag`"),
    ),
)]
async fn script(headers: HeaderMap) -> Response {
    serve(&SCRIPT, &headers)
}

/// The demo page's stylesheet.
#[utoipa::path(
    get,
    path = "/static/app.css",
    tag = tags::DEMO,
    responses(
        (status = 200, description = "The stylesheet", body = String, content_type = "text/css",
            headers(("ETag" = String), ("Cache-Control" = String, description = "`no-cache`"))),
        (status = 304, description = "Unchanged: `If-None-Match` matched the `ETag`"),
    ),
)]
async fn stylesheet(headers: HeaderMap) -> Response {
    serve(&STYLESHEET, &headers)
}

/// The asset, or `304 Not Modified` when the client's cached copy is current. Header values
/// point at the static text (`from_static`) rather than copying it for every answer.
fn serve(asset: &Asset, request_headers: &HeaderMap) -> Response {
    let headers = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, HeaderValue::from_static(asset.etag)),
    ];
    let cached = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| etag_matches(value, asset.etag));
    if cached {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

/// `If-None-Match` uses weak comparison (RFC 9110 §13.1.2): `W/` prefixes are ignored.
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// `"<16 hex digits>"`: the 64-bit FNV-1a hash of `bytes`, quoted as an entity tag.
const fn etag(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    let mut out = [b'"'; 18];
    let mut digit = 0;
    while digit < 16 {
        out[1 + digit] = HEX[((hash >> (60 - 4 * digit)) & 0xf) as usize];
        digit += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_a_quoted_hash_that_follows_the_content() {
        let a = etag(b"console.log(1)");
        assert_eq!(a[0], b'"');
        assert_eq!(a[17], b'"');
        assert!(a[1..17].iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a, etag(b"console.log(2)"));
        // FNV-1a reference value for the empty input.
        assert_eq!(&etag(b""), b"\"cbf29ce484222325\"");
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let tag = "\"0123456789abcdef\"";
        assert!(etag_matches(tag, tag));
        assert!(etag_matches("W/\"0123456789abcdef\"", tag));
        assert!(etag_matches("\"other\", \"0123456789abcdef\"", tag));
        assert!(etag_matches("*", tag));
        assert!(!etag_matches("\"other\"", tag));
        assert!(!etag_matches("0123456789abcdef", tag), "unquoted");
    }
}
