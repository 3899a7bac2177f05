//! `POST /enqueue`, `GET|POST /dequeue`, `GET /queue/status`: the HTTP face of [`crate::queue`].
//!
//! The enqueue body is read member by member ([`parse`]), so that each mistake gets the
//! contract's own message. The queue service ([`crate::queue::TaskQueue`]) publishes the
//! application events of each change, so the handlers only translate.

mod parse;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object as SchemaObject, ObjectBuilder, Type};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::fault::QUEUE_FULL_RETRY_AFTER;
use crate::openapi::tags;
use crate::queue::limits::{IdempotencyKey, MAX_ATTEMPTS, MAX_DELAY_MS, MAX_IDEMPOTENCY_KEY_BYTES};
use crate::queue::record::StateName;
use crate::queue::{Enqueued, MAX_TASK_CHARS, Priority, QueueError, QueuedTask, TaskText};
use crate::routes::access::{Access, Consume, DequeueMethod, Enqueue, QueueStatus};
use crate::routes::fields::Object;

/// The header of an enqueue that may be retried safely.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on an answer given again to a repeat of an `Idempotency-Key`.
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// `POST /enqueue`, `GET /dequeue`, `POST /dequeue`, `GET /queue/status`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enqueue))
        .routes(routes!(dequeue))
        .routes(routes!(status))
}

/// A task, its priority, and how it is to be delivered.
#[derive(ToSchema)]
#[schema(as = EnqueueRequest, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the JSON itself so that \
    each mistake gets the contract's own message (see the module documentation)"
)]
struct EnqueueSchema {
    #[schema(schema_with = task_schema)]
    task: String,
    #[schema(schema_with = priority_schema)]
    priority: i64,
    #[schema(schema_with = delay_schema)]
    delay_ms: Option<u64>,
    #[schema(schema_with = max_attempts_schema)]
    max_attempts: Option<u8>,
}

/// The `task` field, with the bounds [`TaskText::parse`] applies.
fn task_schema() -> SchemaObject {
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
fn priority_schema() -> SchemaObject {
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

fn delay_schema() -> SchemaObject {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some(
            "Milliseconds the task stays invisible (to `/dequeue`, leases and `nextTask`).",
        ))
        .minimum(Some(0))
        .maximum(Some(MAX_DELAY_MS))
        .default(Some(0.into()))
        .examples([0])
        .build()
}

fn max_attempts_schema() -> SchemaObject {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some(
            "Deliveries (leases) allowed before the task is dead-lettered; `QUEUE_MAX_ATTEMPTS` \
             when absent.",
        ))
        .minimum(Some(1))
        .maximum(Some(MAX_ATTEMPTS))
        .examples([5])
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
    /// Tasks available now, this one included when it is.
    queue_size: usize,
    #[schema(inline)]
    state: StateName,
    /// When the task becomes visible, in milliseconds since the Unix epoch.
    available_at: u64,
}

impl From<Enqueued> for EnqueueResponse {
    fn from(enqueued: Enqueued) -> Self {
        let QueuedTask {
            id, task, priority, ..
        } = enqueued.task;
        Self {
            message: "Task enqueued successfully",
            id,
            task,
            priority,
            queue_size: enqueued.queue_size,
            state: enqueued.state,
            available_at: enqueued.available_at_ms,
        }
    }
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
    /// Tasks left available.
    queue_size: usize,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = QueueStatus)]
struct StatusResponse {
    /// Tasks available now (not delayed, leased or dead).
    size: usize,
    is_empty: bool,
    /// The task the next dequeue or lease takes, or `null` when none is available.
    #[schema(required = true)]
    next_task: Option<NextTask>,
    /// Tasks waiting for their `availableAt` (a delayed enqueue, or a nack's back-off).
    delayed: usize,
    /// Tasks delivered to a worker and not yet acknowledged.
    leased: usize,
    /// Dead-lettered tasks (`GET /queue/dead`).
    dead: usize,
}

#[derive(Serialize, ToSchema)]
struct NextTask {
    #[schema(value_type = String, example = "Process payment")]
    task: TaskText,
    #[schema(value_type = i64, example = 1)]
    priority: Priority,
}

/// The `Idempotency-Key` request header.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the header itself"
)]
struct IdempotencyHeader {
    /// 1 to 255 visible ASCII characters. A repeat of the same key and body within
    /// `QUEUE_IDEMPOTENCY_TTL_SECONDS` answers the first answer again (same `id`,
    /// `Idempotent-Replayed: true`) and adds nothing.
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
}

/// Adds a task to the priority queue.
///
/// With `delayMs` the task stays invisible until then; `maxAttempts` bounds its deliveries
/// through leases. With an `Idempotency-Key`, a retried request adds nothing and gets the first
/// answer again. Publishes a `queue.enqueued` event on `/notifications`.
#[utoipa::path(
    post,
    path = "/enqueue",
    tag = tags::QUEUE,
    security(("bearerAuth" = ["enqueue"])),
    params(IdempotencyHeader),
    request_body = EnqueueSchema,
    responses(
        (status = 200, description = "Enqueued, or the first answer to the same idempotency key",
            body = EnqueueResponse,
            headers(("Idempotent-Replayed" = String,
                description = "`true` when this is the first answer given again"))),
        (status = 400, body = ErrorBody,
            description = "`task_required` (Task is required), `priority_required` (Priority is \
                required (number)), `invalid_input` (a wrong type or range, including Priority \
                must be a number and a malformed Idempotency-Key; `field` names it) or \
                `invalid_json`"),
        (status = 409, body = ErrorBody,
            description = "`idempotency_key_in_use`: the first request with this key is still \
                being recorded"),
        (status = 413, body = ErrorBody, description = "`payload_too_large`"),
        (status = 415, body = ErrorBody, description = "`unsupported_media_type`"),
        (status = 422, body = ErrorBody,
            description = "`idempotency_key_reused`: the key was used with another body"),
        (status = 503, body = ErrorBody,
            description = "`queue_full` (`QUEUE_CAPACITY` tasks, in any state), \
                `idempotency_keys_full` (`QUEUE_IDEMPOTENCY_MAX_KEYS` keys remembered) or \
                `store_unavailable` (the store did not record the task; nothing changed)",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn enqueue(
    _: Access<Enqueue>,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Object>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let request = parse::parse_enqueue(body)?;
    let outcome = state
        .queue
        .enqueue(
            request.task,
            request.priority,
            request.delay,
            request.max_attempts,
            key,
        )
        .await?;
    let body = Json(EnqueueResponse::from(outcome.enqueued));
    Ok(if outcome.replayed {
        ([(IDEMPOTENT_REPLAYED, "true")], body).into_response()
    } else {
        body.into_response()
    })
}

/// The request's `Idempotency-Key`, if it sent a well-formed one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    headers
        .get(IDEMPOTENCY_KEY)
        .map(|value| {
            IdempotencyKey::parse(value.as_bytes()).map_err(|_| {
                ApiError::invalid_input(
                    "Idempotency-Key",
                    format!(
                        "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII \
                         characters"
                    ),
                )
            })
        })
        .transpose()
}

/// Removes and returns the task with the lowest priority number (the oldest among equals).
///
/// The task is gone once answered (at most once); workers that must not lose a task use
/// `POST /tasks/lease`. `GET` and `POST` do the same. Publishes a `queue.dequeued` event on
/// `/notifications`.
#[utoipa::path(
    method(get, post),
    path = "/dequeue",
    tag = tags::QUEUE,
    security(("bearerAuth" = ["consume"])),
    responses(
        (status = 200, description = "The next task, now out of the queue", body = DequeueResponse),
        (status = 404, body = ErrorBody, description = "`queue_empty` (Queue is empty)"),
        (status = 503, body = ErrorBody,
            description = "`store_unavailable`: the store did not record the removal; the task \
                stays queued",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn dequeue(
    _: DequeueMethod,
    _: Access<Consume>,
    State(state): State<AppState>,
) -> Result<Json<DequeueResponse>, ApiError> {
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

/// The queue's size, the task a dequeue would return, and how many tasks are delayed, leased
/// or dead, without changing anything.
#[utoipa::path(
    get,
    path = "/queue/status",
    tag = tags::QUEUE,
    security(("bearerAuth" = [])),
    operation_id = "queue_status",
    responses(
        (status = 200, description = "The queue's state", body = StatusResponse),
        (status = 503, body = ErrorBody, description = "`store_unavailable`: the store does not answer",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn status(
    _: Access<QueueStatus>,
    State(state): State<AppState>,
) -> Result<Json<StatusResponse>, ApiError> {
    let status = state.queue.status().await?;
    Ok(Json(StatusResponse {
        size: status.size,
        is_empty: status.size == 0,
        next_task: status.next.map(|next| NextTask {
            task: next.task,
            priority: next.priority,
        }),
        delayed: status.delayed,
        leased: status.leased,
        dead: status.dead,
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
            QueueError::TaskNotFound => ApiError::NotFound {
                code: "task_not_found",
                message: "Task not found",
            },
            QueueError::LeaseLost => ApiError::Conflict {
                code: "lease_lost",
                message: "The lease is no longer held: it ran out, or the task was delivered again",
            },
            QueueError::KeyReused => ApiError::Unprocessable {
                code: "idempotency_key_reused",
                message: "This Idempotency-Key was used with another request",
            },
            QueueError::KeyInUse => ApiError::Conflict {
                code: "idempotency_key_in_use",
                message: "A request with this Idempotency-Key is still being processed",
            },
            QueueError::KeysFull { .. } => ApiError::Unavailable {
                code: "idempotency_keys_full",
                message: "Too many idempotency keys are remembered at the moment; retry later",
                retry_after: QUEUE_FULL_RETRY_AFTER,
            },
            QueueError::UnknownCursor => {
                ApiError::invalid_input("after", "after must be the id of a task of the queue")
            }
            QueueError::Store(err) => ApiError::Store(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_body_limits_are_the_parsers_limits() {
        let schema = serde_json::to_value(<EnqueueSchema as utoipa::PartialSchema>::schema())
            .expect("a schema serializes");
        let properties = &schema["properties"];
        assert_eq!(properties["task"]["minLength"], 1);
        assert_eq!(properties["task"]["maxLength"], MAX_TASK_CHARS);
        assert_eq!(properties["priority"]["minimum"], Priority::MIN);
        assert_eq!(properties["priority"]["maximum"], Priority::MAX);
        assert_eq!(properties["delayMs"]["maximum"], MAX_DELAY_MS);
        assert_eq!(properties["maxAttempts"]["maximum"], MAX_ATTEMPTS);
        assert_eq!(schema["required"], serde_json::json!(["task", "priority"]));
    }
}
