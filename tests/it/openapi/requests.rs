//! Requests built from the document: a plausible request for each operation, and the check
//! that an answer is one the operation documents.

use serde_json::Value;

use super::document::{Operation, resolve, validate};
use crate::common::{Api, TestApp};

/// The served document.
pub async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.expect("the document is JSON")
}

/// A value the parameter's schema accepts: for an integer, the smallest positive one in range
/// (so that a stream carries an item to check); else its default, its first choice or its
/// example.
fn plausible_value(doc: &Value, parameter: &Value) -> String {
    let schema = resolve(doc, &parameter["schema"]);
    if let Some(minimum) = schema["minimum"].as_u64() {
        let maximum = schema["maximum"].as_u64().unwrap_or(u64::MAX);
        return minimum.max(1).min(maximum).to_string();
    }
    match [
        &schema["default"],
        &schema["enum"][0],
        &parameter["example"],
        &schema["examples"][0],
    ]
    .into_iter()
    .find(|v| !v.is_null())
    {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => panic!("no plausible value documented for {parameter}"),
    }
}

/// The schema of `op`'s JSON request body, if it takes one.
pub fn body_schema<'a>(op: &Operation<'a>) -> Option<&'a Value> {
    let schema = &op.spec["requestBody"]["content"]["application/json"]["schema"];
    if schema.is_null() {
        return None;
    }
    // An optional body is documented as one of null and its object.
    let schema = ["oneOf", "anyOf"]
        .into_iter()
        .filter_map(|keyword| schema[keyword].as_array())
        .flatten()
        .find(|choice| choice["type"] != "null")
        .unwrap_or(schema);
    Some(schema)
}

/// A JSON body made of the examples documented for each property.
pub fn plausible_body(doc: &Value, op: &Operation<'_>) -> Option<Value> {
    let schema = body_schema(op)?;
    let properties = resolve(doc, schema)["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{}: the request body documents its fields", op.name()));
    let body = properties
        .iter()
        .map(|(name, property)| {
            let property = resolve(doc, property);
            // `example` as the derive writes it, or the first of `examples` (JSON Schema's).
            let example = [&property["example"], &property["examples"][0]]
                .into_iter()
                .find(|v| !v.is_null())
                .cloned()
                .unwrap_or(Value::Null);
            assert!(!example.is_null(), "{}: {name} has an example", op.name());
            (name.clone(), example)
        })
        .collect();
    Some(Value::Object(body))
}

/// Sends `op` with the query `query`, a plausible body and, when secured, a fresh token.
pub async fn send(
    app: &TestApp,
    doc: &Value,
    op: &Operation<'_>,
    query: &[(String, String)],
) -> reqwest::Response {
    send_with_body(app, op, query, plausible_body(doc, op).as_ref()).await
}

/// Sends `op` with the query `query`, `body` as JSON when given and, when secured, a fresh
/// token.
pub async fn send_with_body(
    app: &TestApp,
    op: &Operation<'_>,
    query: &[(String, String)],
    body: Option<&Value>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(op.method.as_bytes()).expect("an HTTP method");
    let query: Vec<String> = query
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let url = format!("{}?{}", app.url(&concrete_path(op)), query.join("&"));
    let mut request = app.client.request(method, url);
    if let Some(body) = body {
        request = request.json(body);
    }
    if op.is_secured() {
        request = request.bearer_auth(app.token().await);
    }
    request.send().await.expect("request sent")
}

/// `op`'s path with each path parameter filled in: a UUID names no task, so the operation
/// answers its documented "not found" once its input is otherwise accepted.
fn concrete_path(op: &Operation<'_>) -> String {
    op.parameters("path")
        .into_iter()
        .fold(op.path.to_owned(), |path, parameter| {
            let name = parameter["name"].as_str().expect("named");
            assert_eq!(
                parameter["schema"]["format"],
                "uuid",
                "{}: path parameter {name} is a UUID",
                op.name()
            );
            path.replace(&format!("{{{name}}}"), &uuid::Uuid::new_v4().to_string())
        })
}

/// A plausible request for `op`: every query parameter at a value its schema accepts.
pub async fn send_plausible(app: &TestApp, doc: &Value, op: &Operation<'_>) -> reqwest::Response {
    let query: Vec<(String, String)> = op
        .parameters("query")
        .into_iter()
        .map(|p| {
            (
                p["name"].as_str().expect("named").to_owned(),
                plausible_value(doc, p),
            )
        })
        .collect();
    send(app, doc, op, &query).await
}

/// Checks that `response` is one `op` documents: its status, its content type and, for JSON
/// bodies and NDJSON lines, the documented schema. Event streams are checked up to the headers.
pub async fn assert_documented(doc: &Value, op: &Operation<'_>, response: reqwest::Response) {
    let name = op.name();
    let status = response.status().as_u16().to_string();
    let documented = op
        .responses()
        .get(&status)
        .unwrap_or_else(|| panic!("{name} answered {status}, which it does not document"));
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII content type")
        .to_owned();
    let essence = |media: &str| {
        media
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let (_, media) = documented["content"]
        .as_object()
        .into_iter()
        .flatten()
        .find(|(key, _)| essence(key) == essence(&content_type))
        .unwrap_or_else(|| panic!("{name} {status}: {content_type} is not documented"));
    match essence(&content_type).as_str() {
        "application/json" => {
            let body: Value = response.json().await.expect("a JSON body");
            validate(doc, &media["schema"], &body, &name).unwrap_or_else(|e| panic!("{e}"));
        }
        "application/x-ndjson" => {
            let text = response.text().await.expect("an NDJSON body");
            for line in text.lines() {
                let item: Value = serde_json::from_str(line).expect("a JSON line");
                validate(doc, &media["itemSchema"], &item, &name).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        "text/event-stream" => assert!(media["itemSchema"].is_object(), "{name}: item schema"),
        _ => assert!(!response.text().await.expect("a text body").is_empty()),
    }
}
