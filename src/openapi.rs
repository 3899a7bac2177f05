//! The OpenAPI 3.2 document served at `GET /openapi.json`, generated from the code.
//!
//! Every route module registers its handlers through `utoipa_axum`'s `OpenApiRouter`, so a route
//! exists only together with its `#[utoipa::path]` description: the router and the document are
//! both made from the one list of routes in `crate::app` (the router by
//! [`crate::app::build_router`], the document when the state is built). This module supplies
//! what no handler knows: the document's info, tags and bearer scheme ([`base`]), and the limits
//! that come from the configuration rather than from the code ([`ApiDocument::new`]). The
//! document is serialized once at start-up and served as shared bytes.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::collections::BTreeMap;

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::schema::Ref;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{Modify, OpenApi as _};

use crate::auth::access::RouteGroup;
use crate::config::Config;

/// Tag names, one per area of the API; handlers refer to them in `#[utoipa::path(tag = ..)]`.
pub mod tags {
    /// Index, health, metrics and this document.
    pub const OPERATIONS: &str = "operations";
    /// `GET /stream`.
    pub const STREAMING: &str = "streaming";
    /// `GET /notifications`.
    pub const NOTIFICATIONS: &str = "notifications";
    /// Login, logout and the protected route.
    pub const AUTH: &str = "auth";
    /// CPU-heavy work off the async runtime.
    pub const COMPUTE: &str = "compute";
    /// The priority queue.
    pub const QUEUE: &str = "queue";
    /// The assets of the browser demo page served at `/`.
    pub const DEMO: &str = "demo";
}

/// Name of the bearer-token security scheme; protected routes spell it in `security(..)` (the
/// macro takes only a literal there), and the tests check that every reference resolves.
pub const BEARER_AUTH: &str = "bearerAuth";

/// Conventions that hold for every operation, shown as the document's description.
const DESCRIPTION: &str = "\
Async HTTP API showing five back-end patterns: a chunked streamed response, Server-Sent Events, \
JWT login/logout with revocation, CPU-heavy work off the async runtime, and a priority queue.

Conventions for every route:
- Errors are JSON `ErrorBody` objects `{\"error\", \"code\"}` with `field` for `invalid_input` \
and `retryAfterSeconds` (plus a `Retry-After` header) for 429 and 503.
- An unknown path is `404 not_found`; a known path with another method is `405 \
method_not_allowed` with an `Allow` header.
- JSON bodies need `Content-Type: application/json` (else `415 unsupported_media_type`), must \
parse (else `400 invalid_json`), fit in `BODY_LIMIT_BYTES` (else `413 payload_too_large`) and \
arrive within `BODY_READ_TIMEOUT_SECONDS` (else `408 body_timeout`, and the connection closes).
- A query or body value of the wrong type or out of range is `400 invalid_input`, naming the \
field and the allowed range. Ranges shown here are the ones this server enforces.
- Every response carries `x-request-id`, echoed when the request sent one of at most 128 \
visible ASCII characters (a new one otherwise).";

/// The part of the document that no handler describes: info, tags and security schemes.
#[derive(utoipa::OpenApi)]
#[openapi(
    version = "3.2.0",
    info(title = "BackFlow", description = DESCRIPTION),
    tags(
        (name = tags::OPERATIONS,
            description = "Endpoint index, health, metrics and this document"),
        (name = tags::STREAMING,
            description = "A lazily produced, chunked response with backpressure"),
        (name = tags::NOTIFICATIONS,
            description = "Server-Sent Events: notifications and application events"),
        (name = tags::AUTH,
            description = "JWT login, logout with revocation, and a protected route"),
        (name = tags::COMPUTE,
            description = "CPU-heavy naive Fibonacci in a child process or on a thread pool"),
        (name = tags::QUEUE,
            description = "A priority queue: lower number first, FIFO among equals"),
        (name = tags::DEMO,
            description = "Assets of the browser demo page that `GET /` serves to browsers"),
    ),
    modifiers(&BearerScheme),
)]
struct BaseDoc;

/// Declares the `Authorization: Bearer <JWT>` scheme that protected routes require.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("An access token from `POST /login`"))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER_AUTH, SecurityScheme::Http(scheme));
    }
}

/// The document the route modules are collected into.
pub fn base() -> OpenApi {
    BaseDoc::openapi()
}

/// Schema of an optional integer query parameter, from the bounds and default its parser uses.
/// `maximum` is `None` when the configuration sets it (see [`ApiDocument::new`]).
pub fn integer_parameter(minimum: u64, maximum: Option<u64>, default: u64) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(minimum))
        .maximum(maximum)
        .default(Some(default.into()))
        .build()
}

/// Schema of an integer member of a request body, from the bounds its parser uses.
pub fn integer_member(
    description: &str,
    minimum: u64,
    maximum: u64,
    default: Option<u64>,
) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some(description))
        .minimum(Some(minimum))
        .maximum(Some(maximum))
        .default(default.map(Into::into))
        .examples([default.unwrap_or(minimum)])
        .build()
}

/// Error responses, by status and description, each with the `ErrorBody` schema; a 429 or 503
/// also documents its `Retry-After` header. For routes that share a set of refusals.
pub fn error_responses(refusals: &[(u16, &str)]) -> BTreeMap<String, RefOr<ApiResponse>> {
    refusals
        .iter()
        .map(|&(status, description)| {
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            );
            if matches!(status, 429 | 503) {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(
                            ObjectBuilder::new().schema_type(Type::Integer).build(),
                        ))
                        .description(Some("Seconds to wait before retrying"))
                        .build(),
                );
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

/// Schema of an optional query parameter that takes one of a few names.
pub fn choice_parameter<T>(choices: &[(&str, T)], default: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(choices.iter().map(|(name, _)| *name)))
        .default(Some(default.into()))
        .build()
}

/// The finished document, serialized once; cheap to clone, served as is.
#[derive(Debug, Clone)]
pub struct ApiDocument(Bytes);

impl ApiDocument {
    /// Completes the document collected from the router with the configured limits and
    /// serializes it.
    pub fn new(mut api: OpenApi, config: &Config) -> Self {
        apply_configured_limits(&mut api, config);
        if !config.auth.dequeue_on_get
            && let Some(item) = api.paths.paths.get_mut("/dequeue")
        {
            item.get = None;
        }
        distinguish_shared_operations(&mut api);
        let mut document = serde_json::to_value(&api)
            .expect("an OpenAPI document is plain data and always serializes");
        apply_access(&mut document, config);
        let json = serde_json::to_vec(&document).expect("a JSON value always serializes");
        Self(Bytes::from(json))
    }
}

impl IntoResponse for ApiDocument {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// Upper bounds that `Config` sets: the annotations cannot know them, so they are written here,
/// into the parameters the handlers document.
fn apply_configured_limits(api: &mut OpenApi, config: &Config) {
    set_query_maximum(api, "/stream", "totalItems", config.stream.max_items);
    set_query_maximum(api, "/heavy-task-child", "n", config.compute.child_max_n);
    set_query_maximum(api, "/heavy-task-worker", "n", config.compute.worker_max_n);
    set_query_default(
        api,
        "/heavy-task-worker",
        "pool",
        config.compute.pool.as_str(),
    );
    if config.compute.enable_blocking_demo {
        set_query_maximum(
            api,
            "/heavy-task-blocking",
            "n",
            config.compute.worker_max_n,
        );
    }
}

/// The route group of the operations of a tag, for `PROTECTED_ROUTES`.
fn group_of_tag(tag: &str) -> Option<RouteGroup> {
    match tag {
        tags::QUEUE => Some(RouteGroup::Queue),
        tags::COMPUTE => Some(RouteGroup::Compute),
        tags::STREAMING => Some(RouteGroup::Stream),
        tags::NOTIFICATIONS => Some(RouteGroup::Notifications),
        _ => None,
    }
}

/// The routes of protected groups keep the bearer requirement their handlers declare and gain
/// its refusals (401, and 403 where a scope is needed); the others lose it, since this server
/// serves them to anyone.
fn apply_access(document: &mut serde_json::Value, config: &Config) {
    let Some(paths) = document
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
    {
        let group = operation
            .get("tags")
            .and_then(|tags| tags.get(0))
            .and_then(serde_json::Value::as_str)
            .and_then(group_of_tag);
        let Some(group) = group else { continue };
        if !config.auth.protected_routes.contains(group) {
            operation.remove("security");
            continue;
        }
        let scope = operation
            .get("security")
            .and_then(|security| security.pointer(&format!("/0/{BEARER_AUTH}/0")))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let Some(responses) = operation
            .get_mut("responses")
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        responses.insert(
            "401".into(),
            refusal(
                "`token_required` (Access token required), `invalid_token` (Invalid or expired \
                 token) or `token_revoked` (Token has been invalidated): this route's group is \
                 in `PROTECTED_ROUTES`",
            ),
        );
        if let Some(scope) = scope {
            responses.insert(
                "403".into(),
                refusal(&format!(
                    "`insufficient_scope`: the token lacks the `{scope}` scope \
                     (`WWW-Authenticate: Bearer error=\"insufficient_scope\", \
                     scope=\"{scope}\"`)"
                )),
            );
        }
    }
}

/// A refusal of a bearer route: the error body and the `WWW-Authenticate` challenge.
fn refusal(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": description,
        "headers": {
            "WWW-Authenticate": {
                "description": "The Bearer challenge (RFC 6750)",
                "schema": {"type": "string"},
            },
        },
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}},
        },
    })
}

/// Sets `maximum` on the schema of query parameter `name` of `GET path`, and lowers its
/// `default` to it if needed, as the parsers do.
fn set_query_maximum(api: &mut OpenApi, path: &str, name: &str, maximum: impl Into<u64>) {
    let maximum = maximum.into();
    let schema = query_schema(api, path, name);
    schema.maximum = Some(maximum.into());
    if schema.default.as_ref().and_then(|d| d.as_u64()) > Some(maximum) {
        schema.default = Some(maximum.into());
    }
}

/// Sets the `default` of query parameter `name` of `GET path`.
fn set_query_default(api: &mut OpenApi, path: &str, name: &str, default: &str) {
    query_schema(api, path, name).default = Some(default.into());
}

/// The schema of query parameter `name` of `GET path`.
///
/// # Panics
/// At start-up, if the operation or the parameter is not documented: a renamed parameter must
/// be renamed here too, and the server must not serve a document that states a wrong range.
fn query_schema<'a>(api: &'a mut OpenApi, path: &str, name: &str) -> &'a mut Object {
    let schema = api
        .paths
        .paths
        .get_mut(path)
        .and_then(|item| item.get.as_mut())
        .and_then(|operation| operation.parameters.as_mut())
        .and_then(|parameters| {
            parameters.iter_mut().find_map(|parameter| match parameter {
                RefOr::T(parameter) if parameter.name == name => parameter.schema.as_mut(),
                _ => None,
            })
        });
    match schema {
        Some(RefOr::T(Schema::Object(object))) => object,
        _ => panic!("GET {path} must document the query parameter {name}"),
    }
}

/// A handler registered for several methods (`GET` and `POST /dequeue`) yields the same
/// operation under each; operation ids must be unique in a document, so each copy gets its
/// method as a suffix (`dequeue_get`, `dequeue_post`).
fn distinguish_shared_operations(api: &mut OpenApi) {
    for item in api.paths.paths.values_mut() {
        let operations = operations_mut(item);
        let ids: Vec<Option<String>> = operations
            .iter()
            .map(|(_, operation)| operation.operation_id.clone())
            .collect();
        for (method, operation) in operations {
            if let Some(id) = operation.operation_id.as_mut()
                && ids.iter().flatten().filter(|other| *other == id).count() > 1
            {
                id.push('_');
                id.push_str(method);
            }
        }
    }
}

/// The operations of a path, with their method in lower case.
fn operations_mut(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collected() -> OpenApi {
        crate::routes::api_router().into_openapi()
    }

    fn operation_id(api: &OpenApi, path: &str, method: &str) -> Option<String> {
        let mut item = api.paths.paths.get(path)?.clone();
        let (_, operation) = operations_mut(&mut item)
            .into_iter()
            .find(|(m, _)| *m == method)?;
        operation.operation_id.clone()
    }

    #[test]
    fn an_operation_under_several_methods_gets_one_id_per_method() {
        let mut api = collected();
        distinguish_shared_operations(&mut api);
        assert_eq!(
            operation_id(&api, "/dequeue", "get").as_deref(),
            Some("dequeue_get")
        );
        assert_eq!(
            operation_id(&api, "/dequeue", "post").as_deref(),
            Some("dequeue_post")
        );
        assert_eq!(
            operation_id(&api, "/health", "get").as_deref(),
            Some("health")
        );
    }

    #[test]
    fn a_configured_maximum_is_written_and_caps_the_default() {
        let mut api = collected();
        set_query_maximum(&mut api, "/stream", "totalItems", 500_u64);
        let json = serde_json::to_value(&api).expect("serializes");
        let total_items = json["paths"]["/stream"]["get"]["parameters"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"] == "totalItems"))
            .expect("documented")
            .clone();
        assert_eq!(total_items["schema"]["maximum"], 500);
        assert_eq!(total_items["schema"]["default"], 500);
    }

    #[test]
    #[should_panic(expected = "must document the query parameter")]
    fn a_limit_for_an_undocumented_parameter_stops_start_up() {
        set_query_maximum(&mut collected(), "/stream", "noSuchParameter", 1_u64);
    }
}
