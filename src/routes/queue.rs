//! `POST /enqueue`, `GET|POST /dequeue`, `GET /queue/status`: the HTTP face of [`crate::queue`].
//!
//! The enqueue body is read as a JSON object of any members (serde_json's `Map`) rather than into
//! a typed struct, so that each mistake gets the contract's own message: a missing (or `null`)
//! field is "required", a priority of another JSON type "must be a number", and a wrong type or
//! range for either field a 400 `invalid_input` naming the field and the accepted range. (A
//! typed struct would also accept an array such as `["t", 1]`, which is not an object.)
//!
//! The queue service ([`crate::queue::TaskQueue`]) publishes a `queue.enqueued` /
//! `queue.dequeued` application event for each change, so the handlers only translate.

use axum::Json;
use axum::extract::State;

use serde::Serialize;
use serde_json::{Number, Value};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::fault::QUEUE_FULL_RETRY_AFTER;
use crate::openapi::tags;
use crate::queue::{InvalidPriority, MAX_TASK_CHARS, Priority, QueueError, QueuedTask, TaskText};

/// `POST /enqueue`, `GET /dequeue`, `POST /dequeue`, `GET /queue/status`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enqueue))
        .routes(routes!(dequeue))
        .routes(routes!(status))
}

/// A task and its priority.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the JSON itself so that \
    each mistake gets the contract's own message (see the module documentation)"
)]
struct EnqueueRequest {
    #[schema(schema_with = task_schema)]
    task: String,
    #[schema(schema_with = priority_schema)]
    priority: i64,
}

/// The `task` field, with the bounds [`TaskText::parse`] applies.
fn task_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "What to do; 1 to {MAX_TASK_CHARS} characters."
        )))
        .min_length(Some(1))
        .max_length(Some(MAX_TASK_CHARS))
        .examples(["Process payment"])
        .build()
}

/// The `priority` field, with the bounds [`Priority::new`] applies.
fn priority_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some(
            "Lower is served first; a whole number within ±2^53 (the integers a JavaScript \
             client holds exactly).",
        ))
        .minimum(Some(Priority::MIN))
        .maximum(Some(Priority::MAX))
        .examples([1])
        .build()
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EnqueueResponse {
    #[schema(example = "Task enqueued successfully")]
    message: &'static str,
    /// The task's id.
    id: Uuid,
    #[schema(value_type = String, example = "Process payment")]
    task: TaskText,
    #[schema(value_type = i64, example = 1)]
    priority: Priority,
    /// Tasks in the queue, this one included.
    queue_size: usize,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DequeueResponse {
    #[schema(example = "Task dequeued")]
    message: &'static str,
    /// The task's id, as given by `POST /enqueue`.
    id: Uuid,
    #[schema(value_type = String, example = "Process payment")]
    task: TaskText,
    #[schema(value_type = i64, example = 1)]
    priority: Priority,
    /// When the task was enqueued, in milliseconds since the Unix epoch.
    timestamp: u64,
    /// Tasks left in the queue.
    queue_size: usize,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = QueueStatus)]
struct StatusResponse {
    /// Tasks in the queue.
    size: usize,
    is_empty: bool,
    /// The task the next dequeue returns, or `null` when the queue is empty.
    #[schema(required = true)]
    next_task: Option<NextTask>,
}

#[derive(Serialize, ToSchema)]
struct NextTask {
    #[schema(value_type = String, example = "Process payment")]
    task: TaskText,
    #[schema(value_type = i64, example = 1)]
    priority: Priority,
}

/// Adds a task to the priority queue.
///
/// Publishes a `queue.enqueued` event on `/notifications`.
#[utoipa::path(
    post,
    path = "/enqueue",
    tag = tags::QUEUE,
    request_body = EnqueueRequest,
    responses(
        (status = 200, description = "Enqueued", body = EnqueueResponse),
        (status = 400, body = ErrorBody,
            description = "`task_required` (Task is required), `priority_required` (Priority is \
                required (number)), `invalid_input` (a wrong type or range, including Priority \
                must be a number; `field` names it) or `invalid_json`"),
        (status = 413, body = ErrorBody, description = "`payload_too_large`"),
        (status = 415, body = ErrorBody, description = "`unsupported_media_type`"),
        (status = 503, body = ErrorBody,
            description = "`queue_full` (`QUEUE_CAPACITY` is reached) or `store_unavailable` (the \
                store did not record the task; nothing changed)",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn enqueue(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EnqueueBody>,
) -> Result<Json<EnqueueResponse>, ApiError> {
    let (task, priority) = parse_enqueue(body)?;
    let enqueued = state.queue.enqueue(task, priority).await?;
    let QueuedTask {
        id, task, priority, ..
    } = enqueued.task;
    Ok(Json(EnqueueResponse {
        message: "Task enqueued successfully",
        id,
        task,
        priority,
        queue_size: enqueued.queue_size,
    }))
}

/// Removes and returns the task with the lowest priority number (the oldest among equals).
///
/// `GET` and `POST` do the same. Publishes a `queue.dequeued` event on `/notifications`.
#[utoipa::path(
    method(get, post),
    path = "/dequeue",
    tag = tags::QUEUE,
    responses(
        (status = 200, description = "The next task, now out of the queue", body = DequeueResponse),
        (status = 404, body = ErrorBody, description = "`queue_empty` (Queue is empty)"),
        (status = 503, body = ErrorBody,
            description = "`store_unavailable`: the store did not record the removal; the task \
                stays queued",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn dequeue(State(state): State<AppState>) -> Result<Json<DequeueResponse>, ApiError> {
    let dequeued = state.queue.dequeue().await?.ok_or(ApiError::NotFound {
        code: "queue_empty",
        message: "Queue is empty",
    })?;
    let QueuedTask {
        id,
        task,
        priority,
        enqueued_at_ms,
    } = dequeued.task;
    Ok(Json(DequeueResponse {
        message: "Task dequeued",
        id,
        task,
        priority,
        timestamp: enqueued_at_ms,
        queue_size: dequeued.queue_size,
    }))
}

/// The queue's size and the task a dequeue would return, without removing it.
#[utoipa::path(
    get,
    path = "/queue/status",
    tag = tags::QUEUE,
    operation_id = "queue_status",
    responses(
        (status = 200, description = "The queue's state", body = StatusResponse),
        (status = 503, body = ErrorBody, description = "`store_unavailable`: the store does not answer",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn status(State(state): State<AppState>) -> Result<Json<StatusResponse>, ApiError> {
    let status = state.queue.status().await?;
    Ok(Json(StatusResponse {
        size: status.size,
        is_empty: status.size == 0,
        next_task: status.next.map(|next| NextTask {
            task: next.task,
            priority: next.priority,
        }),
    }))
}

impl From<QueueError> for ApiError {
    fn from(err: QueueError) -> Self {
        match err {
            QueueError::Full { .. } => ApiError::Unavailable {
                code: "queue_full",
                message: "Queue is full",
                retry_after: QUEUE_FULL_RETRY_AFTER,
            },
            QueueError::Store(err) => ApiError::Store(err),
        }
    }
}

/// The enqueue body: a JSON object, as serde_json reads it.
type EnqueueBody = serde_json::Map<String, Value>;

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks the task first, then the priority, so a body with both wrong reports the task.
fn parse_enqueue(mut body: EnqueueBody) -> Result<(TaskText, Priority), ApiError> {
    let task = parse_task(body.remove("task"))?;
    let priority = parse_priority(body.remove("priority"))?;
    Ok((task, priority))
}

/// `null` counts as missing, as it does for most JSON APIs.
fn parse_task(value: Option<Value>) -> Result<TaskText, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::MissingField {
            code: "task_required",
            field: "task",
            message: "Task is required",
        }),
        Some(Value::String(text)) => {
            TaskText::parse(text).map_err(|err| ApiError::invalid_input("task", err.to_string()))
        }
        Some(other) => Err(wrong_task_type(kind(&other))),
    }
}

fn wrong_task_type(kind: &str) -> ApiError {
    ApiError::invalid_input(
        "task",
        format!("Task must be a string of 1 to {MAX_TASK_CHARS} characters (got {kind})"),
    )
}

/// `null` counts as missing; any other non-number is "not a number".
fn parse_priority(value: Option<Value>) -> Result<Priority, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::MissingField {
            code: "priority_required",
            field: "priority",
            message: "Priority is required (number)",
        }),
        Some(Value::Number(number)) => priority_from_number(&number)
            .map_err(|err| ApiError::invalid_input("priority", err.to_string())),
        Some(_) => Err(ApiError::invalid_input(
            "priority",
            "Priority must be a number",
        )),
    }
}

/// JSON has one number type: `2`, `2.0` and `2e0` are the same integer; `2.5` is not one.
fn priority_from_number(number: &Number) -> Result<Priority, InvalidPriority> {
    let refused = || InvalidPriority {
        got: number.to_string(),
    };
    if let Some(integer) = number.as_i64() {
        Priority::new(integer).map_err(|_| refused())
    } else if number.is_u64() {
        Err(refused())
    } else {
        number
            .as_f64()
            .ok_or_else(refused)
            .and_then(|float| Priority::from_f64(float).map_err(|_| refused()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parse(body: Value) -> Result<(TaskText, Priority), ApiError> {
        parse_enqueue(serde_json::from_value(body).expect("a JSON object"))
    }

    fn field_error(body: Value) -> (String, String) {
        match parse(body).unwrap_err() {
            ApiError::InvalidInput { field, message } => (field, message),
            other => panic!("expected invalid_input, got {other:?}"),
        }
    }

    #[test]
    fn missing_or_null_fields_use_the_contract_messages() {
        for body in [json!({"priority": 1}), json!({"task": null, "priority": 1})] {
            assert_eq!(parse(body).unwrap_err().to_string(), "Task is required");
        }
        for body in [json!({"task": "t"}), json!({"task": "t", "priority": null})] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.to_string(), "Priority is required (number)");
            assert_eq!(err.code(), "priority_required");
        }
    }

    #[test]
    fn a_priority_of_another_type_is_not_a_number() {
        for priority in [json!("1"), json!(true), json!([1]), json!({"n": 1})] {
            let (field, message) = field_error(json!({"task": "t", "priority": priority}));
            assert_eq!(
                (field.as_str(), message.as_str()),
                ("priority", "Priority must be a number")
            );
        }
    }

    #[test]
    fn fractional_or_out_of_range_priorities_name_the_range() {
        for priority in [
            json!(1.5),
            json!(9_007_199_254_740_993_u64),
            json!(-9_007_199_254_740_993_i64),
            json!(u64::MAX),
            json!(1e300),
        ] {
            let (field, message) = field_error(json!({"task": "t", "priority": priority}));
            assert_eq!(field, "priority");
            assert!(
                message.starts_with("Priority must be an integer between -2^53 and 2^53"),
                "{message}"
            );
        }
    }

    #[test]
    fn whole_number_priorities_in_any_notation_are_accepted() {
        for (priority, expected) in [
            (json!(2.0), 2),
            (json!(-7), -7),
            (json!(9_007_199_254_740_992_u64), Priority::MAX),
        ] {
            let (_, parsed) = parse(json!({"task": "t", "priority": priority})).unwrap();
            assert_eq!(parsed.get(), expected);
        }
    }

    #[test]
    fn a_task_of_the_wrong_type_or_length_names_the_range() {
        for task in [
            json!(""),
            json!(42),
            json!(["a"]),
            json!("x".repeat(MAX_TASK_CHARS + 1)),
        ] {
            let (field, message) = field_error(json!({"task": task, "priority": 1}));
            assert_eq!(field, "task");
            assert!(message.contains("1 to 1024 characters"), "{message}");
        }
    }

    #[test]
    fn the_documented_body_limits_are_the_parsers_limits() {
        let schema = serde_json::to_value(<EnqueueRequest as utoipa::PartialSchema>::schema())
            .expect("a schema serializes");
        let properties = &schema["properties"];
        assert_eq!(properties["task"]["minLength"], 1);
        assert_eq!(properties["task"]["maxLength"], MAX_TASK_CHARS);
        assert_eq!(properties["priority"]["minimum"], Priority::MIN);
        assert_eq!(properties["priority"]["maximum"], Priority::MAX);
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        for body in ["[]", r#"["t", 1]"#, r#""task""#, "1", "null"] {
            let err = serde_json::from_str::<EnqueueBody>(body).unwrap_err();
            assert!(err.is_data(), "{body}: {err}");
            assert!(err.to_string().contains("expected a map"), "{err}");
        }
    }

    #[test]
    fn other_members_are_skipped_and_the_last_of_a_repeated_one_counts() {
        let body = r#"{"note": {"deep": [1, {"x": null}]}, "task": "a", "priority": 1,
            "task": "b", "t\u0061sk2": true}"#;
        let (task, priority) =
            parse_enqueue(serde_json::from_str(body).expect("an object")).expect("valid");
        assert_eq!((task.as_str(), priority.get()), ("b", 1));
    }
}
