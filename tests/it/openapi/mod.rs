//! `GET /openapi.json`: the document describes exactly the contract's routes, and every
//! operation, parameter range, response and error it documents is what the server really does.

mod bodies;
mod document;
mod requests;

use std::collections::{BTreeSet, HashSet};

use serde_json::{Value, json};

use crate::common::{Api, error_body, error_body_of, open_sse, spawn_app, spawn_app_with};
use bodies::{body_cases, documented_400_codes};
use document::{operations, references, resolve, validate};
use requests::{assert_documented, body_schema, document, send, send_plausible, send_with_body};

/// Every route of API.md, as (method, path).
const CONTRACT: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/stream"),
    ("GET", "/notifications"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/protected"),
    ("GET", "/heavy-task-child"),
    ("GET", "/heavy-task-worker"),
    ("POST", "/enqueue"),
    ("GET", "/dequeue"),
    ("POST", "/dequeue"),
    ("GET", "/queue/status"),
    ("POST", "/tasks/lease"),
    ("POST", "/tasks/ack"),
    ("POST", "/tasks/{id}/ack"),
    ("POST", "/tasks/{id}/nack"),
    ("POST", "/tasks/{id}/extend"),
    ("GET", "/tasks/{id}"),
    ("GET", "/queue/dead"),
    ("POST", "/queue/dead/{id}/retry"),
    ("DELETE", "/queue/dead/{id}"),
];

/// The other routes the server has: the demo page's assets (the page itself is `GET /`).
const DEMO_ASSETS: &[(&str, &str)] = &[("GET", "/static/app.js"), ("GET", "/static/app.css")];

/// Small maxima, so that a request at the maximum answers at once.
const SMALL_LIMITS: &[(&str, &str)] = &[
    ("STREAM_MAX_ITEMS", "500"),
    ("CHILD_MAX_N", "20"),
    ("WORKER_MAX_N", "22"),
    ("HEAVY_POOL", "blocking"),
];

#[tokio::test]
async fn the_document_is_openapi_3_json_describing_this_server() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "BackFlow");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        doc["info"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("not_found"))
    );
}

fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    operations(doc)
        .iter()
        .map(|op| (op.method.clone(), op.path.to_owned()))
        .collect()
}

fn routes(lists: &[&[(&str, &str)]]) -> BTreeSet<(String, String)> {
    lists
        .iter()
        .flat_map(|list| list.iter())
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect()
}

#[tokio::test]
async fn exactly_the_served_routes_are_documented() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert_eq!(documented_routes(&doc), routes(&[CONTRACT, DEMO_ASSETS]));
}

#[tokio::test]
async fn the_blocking_demonstration_is_documented_when_it_is_served() {
    let app = spawn_app_with(&[("ENABLE_BLOCKING_DEMO", "true"), ("WORKER_MAX_N", "22")]).await;
    let doc = document(&app).await;
    let blocking: &[(&str, &str)] = &[("GET", "/heavy-task-blocking")];
    assert_eq!(
        documented_routes(&doc),
        routes(&[CONTRACT, DEMO_ASSETS, blocking])
    );
    let op = operations(&doc)
        .into_iter()
        .find(|op| op.path == "/heavy-task-blocking")
        .expect("documented");
    assert_eq!(op.parameters("query")[0]["schema"]["maximum"], 22);
    let response = send_plausible(&app, &doc, &op).await;
    assert_documented(&doc, &op, response).await;
}

#[tokio::test]
async fn both_representations_of_the_index_are_documented() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let index = operations(&doc)
        .into_iter()
        .find(|op| op.path == "/")
        .expect("documented");
    for accept in ["application/json", "text/html"] {
        let response = app
            .client
            .get(app.url("/"))
            .header("accept", accept)
            .send()
            .await
            .expect("sent");
        let content_type = response.headers()["content-type"].to_str().expect("ASCII");
        assert!(content_type.starts_with(accept), "{content_type}");
        assert_documented(&doc, &index, response).await;
    }
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let app = spawn_app_with(SMALL_LIMITS).await;
    let doc = document(&app).await;
    for op in operations(&doc) {
        let response = send_plausible(&app, &doc, &op).await;
        assert_ne!(response.status(), 405, "{} is routed", op.name());
        assert_documented(&doc, &op, response).await;
    }
}

#[tokio::test]
async fn streamed_items_match_the_documented_item_schema_in_both_framings() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let stream = operations(&doc)
        .into_iter()
        .find(|op| op.path == "/stream")
        .expect("/stream is documented");
    for format in ["json", "ndjson"] {
        let query = [("totalItems", "3"), ("delay", "0"), ("format", format)]
            .map(|(name, value)| (name.to_owned(), value.to_owned()));
        let response = send(&app, &doc, &stream, &query).await;
        assert_documented(&doc, &stream, response).await;
    }
}

#[tokio::test]
async fn notification_events_match_the_documented_event_schema() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let content = &doc["paths"]["/notifications"]["get"]["responses"]["200"]["content"];
    let event_schema = &content["text/event-stream"]["itemSchema"];
    let data_schema = &event_schema["properties"]["data"];
    assert_eq!(data_schema["contentMediaType"], "application/json");
    let mut events = open_sse(&app, "/notifications", None).await;
    let connected = events.next().await.expect("the connected message");
    let data: Value = serde_json::from_str(&connected.data).expect("JSON data");
    validate(&doc, &data_schema["contentSchema"], &data, "connected")
        .unwrap_or_else(|e| panic!("{e}"));

    let enqueued = app
        .post_json("/enqueue", &json!({"task": "t", "priority": 1}))
        .await;
    assert_eq!(enqueued.status(), 200);
    let mut seen = HashSet::new();
    while !seen.contains("queue.enqueued") || !seen.contains("notification") {
        let event = events.next().await.expect("the stream goes on");
        assert!(!event.id.is_empty(), "a live event has an id");
        let data: Value = serde_json::from_str(&event.data).expect("JSON data");
        validate(&doc, &data_schema["contentSchema"], &data, &event.data)
            .unwrap_or_else(|e| panic!("{e}"));
        seen.insert(data["event"].as_str().unwrap_or("notification").to_owned());
    }
}

#[tokio::test]
async fn every_error_response_is_documented_as_the_error_body() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let error_body = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error_body["required"], json!(["error", "code"]));
    for field in ["error", "code", "field", "retryAfterSeconds"] {
        assert!(
            error_body["properties"][field].is_object(),
            "ErrorBody.{field}"
        );
    }
    for op in operations(&doc) {
        for (status, response) in op.responses() {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{} {status}",
                    op.name()
                );
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| d.contains('`'))
                );
            }
        }
    }
}

#[tokio::test]
async fn real_errors_match_the_error_schema() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schema = json!({"$ref": "#/components/schemas/ErrorBody"});
    let invalid = app.get("/stream?chunkSize=0").await;
    let missing_token = app
        .client
        .post(app.url("/logout"))
        .send()
        .await
        .expect("sent");
    let wrong_type = app.post_raw("/enqueue", None, "{}").await;
    let wrong_method = app
        .client
        .delete(app.url("/enqueue"))
        .send()
        .await
        .expect("sent");
    let responses = [
        (app.get("/no/such/route").await, 404, "not_found"),
        (wrong_method, 405, "method_not_allowed"),
        (invalid, 400, "invalid_input"),
        (missing_token, 401, "token_required"),
        (wrong_type, 415, "unsupported_media_type"),
    ];
    for (response, status, code) in responses {
        let body = error_body(response, status, code).await;
        validate(&doc, &schema, &body, code).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test]
async fn bearer_routes_declare_the_security_scheme() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    let secured: Vec<String> = operations(&doc)
        .iter()
        .filter(|op| op.is_secured())
        .map(|op| {
            assert_eq!(
                op.spec["security"],
                json!([{"bearerAuth": []}]),
                "{}",
                op.name()
            );
            assert!(
                op.responses().contains_key("401"),
                "{} documents its 401",
                op.name()
            );
            op.name()
        })
        .collect();
    assert_eq!(secured, ["POST /logout", "GET /protected"]);
}

#[tokio::test]
async fn bounded_parameters_are_documented_with_their_ranges() {
    let app = spawn_app_with(SMALL_LIMITS).await;
    let doc = document(&app).await;
    let schema = |path: &str, name: &str| {
        let parameter = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("{path} documents {name}"));
        assert_eq!(parameter["in"], "query");
        parameter["schema"].clone()
    };
    let range = |path: &str, name: &str| {
        let schema = schema(path, name);
        (
            schema["minimum"].clone(),
            schema["maximum"].clone(),
            schema["default"].clone(),
        )
    };
    let stream = "/stream";
    assert_eq!(
        range(stream, "chunkSize"),
        (json!(1), json!(10000), json!(100))
    );
    assert_eq!(
        range(stream, "totalItems"),
        (json!(0), json!(500), json!(500))
    );
    assert_eq!(range(stream, "delay"), (json!(0), json!(10000), json!(100)));
    assert_eq!(schema(stream, "format")["enum"], json!(["json", "ndjson"]));
    assert_eq!(schema(stream, "format")["default"], "json");
    let (child, worker) = ("/heavy-task-child", "/heavy-task-worker");
    assert_eq!(range(child, "n"), (json!(0), json!(20), json!(20)));
    assert_eq!(range(worker, "n"), (json!(0), json!(22), json!(22)));
    assert_eq!(schema(worker, "pool")["enum"], json!(["rayon", "blocking"]));
    assert_eq!(schema(worker, "pool")["default"], "blocking");
    let child_parameters = doc["paths"][child]["get"]["parameters"].as_array();
    assert_eq!(
        child_parameters.map(Vec::len),
        Some(1),
        "a child has no pool"
    );
}

/// Every documented range and choice is the enforced one: both ends accepted, one step beyond
/// refused with `invalid_input` naming the parameter.
#[tokio::test]
async fn documented_ranges_and_choices_are_the_enforced_ones() {
    let app = spawn_app_with(SMALL_LIMITS).await;
    let doc = document(&app).await;
    let mut checked = 0;
    for op in operations(&doc) {
        for parameter in op.parameters("query") {
            let name = parameter["name"].as_str().expect("named").to_owned();
            let schema = resolve(&doc, &parameter["schema"]);
            let (accepted, refused): (Vec<String>, Vec<String>) =
                match (schema["minimum"].as_i64(), schema["maximum"].as_i64()) {
                    (Some(min), Some(max)) => (
                        vec![min.to_string(), max.to_string()],
                        vec![(min - 1).to_string(), (max + 1).to_string()],
                    ),
                    _ => match schema["enum"].as_array() {
                        Some(choices) => (
                            choices
                                .iter()
                                .filter_map(|c| c.as_str().map(str::to_owned))
                                .collect(),
                            vec!["no-such-choice".to_owned()],
                        ),
                        None => continue,
                    },
                };
            for value in accepted {
                let response = send(&app, &doc, &op, &[(name.clone(), value.clone())]).await;
                assert_eq!(response.status(), 200, "{} {name}={value}", op.name());
            }
            for value in refused {
                let response = send(&app, &doc, &op, &[(name.clone(), value.clone())]).await;
                let body = error_body(response, 400, "invalid_input").await;
                assert_eq!(body["field"], name, "{} {name}={value}", op.name());
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked, 8,
        "the parameters of /stream, /heavy-task-child, /heavy-task-worker and /queue/dead"
    );
}

/// Every documented bound of a request body is the enforced one: a body at the bound is
/// accepted, one a step beyond it or without a required property is refused with a `400` that
/// names the property and carries one of the operation's documented codes.
#[tokio::test]
async fn documented_body_bounds_are_the_enforced_ones() {
    // Logins with made-up credentials are answered 401: let them all count as failures.
    let app = spawn_app_with(&[("LOGIN_MAX_PER_MINUTE", "1000")]).await;
    let doc = document(&app).await;
    let mut checked = BTreeSet::new();
    for op in operations(&doc) {
        for case in body_cases(&doc, &op) {
            let at = format!("{} with {}", op.name(), case.what);
            let schema = body_schema(&op).expect("a body schema");
            let verdict = validate(&doc, schema, &case.body, &at);
            assert_eq!(
                verdict.is_ok(),
                case.valid,
                "the document's own verdict: {verdict:?}"
            );
            let response = send_with_body(&app, &op, &[], Some(&case.body)).await;
            if case.valid {
                assert_ne!(response.status(), 400, "{at} is accepted");
                assert_documented(&doc, &op, response).await;
            } else {
                let body = error_body_of(response, 400).await;
                assert_eq!(body["field"], case.field, "{at}: {body}");
                let code = body["code"].as_str().unwrap_or_default();
                let codes = documented_400_codes(&op);
                assert!(
                    codes.iter().any(|c| c == code),
                    "{at}: {code} is one of {codes:?}"
                );
            }
            checked.insert(format!("{} {}", op.name(), case.field));
        }
    }
    assert_eq!(
        checked,
        BTreeSet::from(
            [
                "POST /enqueue delayMs",
                "POST /enqueue maxAttempts",
                "POST /enqueue priority",
                "POST /enqueue task",
                "POST /login password",
                "POST /login username",
                "POST /tasks/ack acks",
                "POST /tasks/lease count",
                "POST /tasks/lease leaseMs",
                "POST /tasks/lease waitMs",
                "POST /tasks/{id}/ack leaseId",
                "POST /tasks/{id}/extend leaseId",
                "POST /tasks/{id}/extend leaseMs",
                "POST /tasks/{id}/nack delayMs",
                "POST /tasks/{id}/nack error",
                "POST /tasks/{id}/nack leaseId",
            ]
            .map(String::from)
        ),
        "the properties of every request body"
    );
}

#[tokio::test]
async fn references_resolve_and_operations_are_named_and_tagged() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for reference in references(&doc) {
        let pointer = reference.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{reference} resolves");
    }
    let tags: HashSet<&str> = doc["tags"]
        .as_array()
        .expect("declared tags")
        .iter()
        .filter_map(|tag| tag["name"].as_str())
        .collect();
    let mut ids = HashSet::new();
    for op in operations(&doc) {
        let id = op.spec["operationId"].as_str().expect("an operation id");
        assert!(ids.insert(id.to_owned()), "operation id {id} is unique");
        assert!(
            op.spec["summary"].is_string(),
            "{} has a summary",
            op.name()
        );
        let op_tags = op.spec["tags"].as_array().expect("tagged");
        assert!(!op_tags.is_empty(), "{} is tagged", op.name());
        for tag in op_tags {
            assert!(
                tags.contains(tag.as_str().unwrap_or_default()),
                "{tag} is declared"
            );
        }
    }
}
