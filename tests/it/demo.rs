//! The browser demo page: `GET /` negotiation, the page's own CSP, and its embedded assets.

use reqwest::Response;
use reqwest::header::{ACCEPT, CONTENT_TYPE, IF_NONE_MATCH};

use crate::common::{Api, TestApp, error_body, spawn_app};

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,\
                              image/avif,image/webp,*/*;q=0.8";

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} header"))
        .to_str()
        .expect("ASCII header")
        .to_owned()
}

async fn get_with(app: &TestApp, path: &str, name: &str, value: &str) -> Response {
    app.client
        .get(app.url(path))
        .header(name, value)
        .send()
        .await
        .expect("request sent")
}

/// The demo page, as a browser asking for HTML gets it.
async fn page(app: &TestApp) -> String {
    let response = get_with(app, "/", ACCEPT.as_str(), "text/html").await;
    response.text().await.expect("page body")
}

#[tokio::test]
async fn browser_gets_the_demo_page_under_its_own_csp() {
    let app = spawn_app().await;
    let response = get_with(&app, "/", ACCEPT.as_str(), BROWSER_ACCEPT).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "text/html; charset=utf-8"
    );
    assert!(header(&response, "vary").to_lowercase().contains("accept"));
    let csp = header(&response, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "no unsafe-* source in {csp}");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");

    let page = response.text().await.expect("page body");
    assert!(page.starts_with("<!doctype html>"), "an HTML document");
    assert!(page.contains(r#"<script type="module" src="/static/app.js"></script>"#));
    assert!(page.contains(r#"<link rel="stylesheet" href="/static/app.css">"#));
}

#[tokio::test]
async fn page_has_nothing_inline_that_its_csp_would_block() {
    let app = spawn_app().await;
    let page = page(&app).await;

    for script in page.split("<script").skip(1) {
        let tag = script.split('>').next().expect("tag");
        assert!(tag.contains("src="), "inline script: <script{tag}>");
    }
    assert!(!page.contains("<style"), "inline stylesheet");
    // Attributes follow any whitespace (a space, a newline, a tab), so look at every word.
    let is_handler = |word: &str| {
        word.strip_prefix("on")
            .and_then(|rest| rest.split_once('='))
            .is_some_and(|(name, _)| {
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic())
            })
    };
    let inline = page
        .split_ascii_whitespace()
        .find(|word| word.starts_with("style=") || is_handler(word));
    assert!(
        inline.is_none(),
        "inline style or event handler attribute: {inline:?}"
    );
}

#[tokio::test]
async fn curl_and_api_clients_keep_getting_the_json_index() {
    let app = spawn_app().await;
    let no_accept = app.get("/").await;
    let curl = get_with(&app, "/", "accept", "*/*").await;
    let json = get_with(&app, "/", "accept", "application/json").await;
    let tie = get_with(&app, "/", "accept", "application/json, text/html").await;

    for response in [no_accept, curl, json, tie] {
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), "application/json");
        assert!(header(&response, "vary").to_lowercase().contains("accept"));
        let body: serde_json::Value = response.json().await.expect("JSON index");
        assert_eq!(body["message"], "BackFlow API");
        assert!(body["endpoints"]["notifications"].is_string());
    }
}

#[tokio::test]
async fn assets_are_served_with_their_content_types_and_validators() {
    let app = spawn_app().await;
    for (path, content_type, marker) in [
        (
            "/static/app.js",
            "text/javascript; charset=utf-8",
            "EventSource",
        ),
        ("/static/app.css", "text/css; charset=utf-8", ".card"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        assert_eq!(header(&response, "cache-control"), "no-cache", "{path}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let etag = header(&response, "etag");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let body = response.text().await.expect("asset body");
        assert!(body.contains(marker), "{path} content");
    }
}

#[tokio::test]
async fn unchanged_asset_is_revalidated_with_an_empty_304() {
    let app = spawn_app().await;
    let first = app.get("/static/app.js").await;
    let etag = header(&first, "etag");

    let cached = get_with(&app, "/static/app.js", IF_NONE_MATCH.as_str(), &etag).await;
    assert_eq!(cached.status(), 304);
    assert_eq!(header(&cached, "etag"), etag);
    assert!(cached.headers().get(CONTENT_TYPE).is_none());
    assert!(cached.bytes().await.expect("body").is_empty());

    let stale = get_with(&app, "/static/app.js", IF_NONE_MATCH.as_str(), "\"stale\"").await;
    assert_eq!(stale.status(), 200);

    let page = app
        .client
        .get(app.url("/"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .expect("sent");
    let page_etag = header(&page, "etag");
    assert_ne!(page_etag, etag, "each file has its own validator");
    let page_cached = app
        .client
        .get(app.url("/"))
        .header(ACCEPT, "text/html")
        .header(IF_NONE_MATCH, &page_etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(page_cached.status(), 304);
}

#[tokio::test]
async fn every_asset_the_page_references_is_served() {
    let app = spawn_app().await;
    let page = page(&app).await;
    let references: Vec<&str> = page
        .match_indices("\"/static/")
        .map(|(start, _)| {
            let rest = &page[start + 1..];
            &rest[..rest.find('"').expect("closing quote")]
        })
        .collect();
    assert_eq!(references.len(), 2, "{references:?}");
    for path in references {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn unknown_static_file_is_a_json_404() {
    let app = spawn_app().await;
    error_body(app.get("/static/secret.txt").await, 404, "not_found").await;
}
