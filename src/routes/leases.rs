//! Reliable delivery over HTTP: `POST /tasks/lease`, `POST /tasks/{id}/ack|nack|extend`,
//! `POST /tasks/ack`, `GET /tasks/{id}` and the dead-letter list `/queue/dead`.
//!
//! A worker leases tasks (waiting for them with `waitMs` when none is available), does the
//! work, and acknowledges each with the `leaseId` it got; on failure it nacks, and the task
//! comes back after a back-off, or goes to the dead-letter list after its last attempt. A
//! worker that goes silent loses its lease when it runs out, and the task is delivered again.
//! The queue service publishes each transition on `/notifications`.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::openapi::schema::{Array, ArrayBuilder, Object as SchemaObject, ObjectBuilder, Type};

use utoipa::openapi::{RefOr, Response};
use utoipa::{IntoParams, IntoResponses, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, OptionalJson, int_param};
use crate::openapi::{self, tags};
use crate::queue::limits::{
    BatchSize, Delay, ErrorText, LeaseId, LeaseLength, MAX_BATCH, MAX_DEAD_PAGE, MAX_DELAY_MS,
    MAX_ERROR_CHARS, MAX_LEASE_MS, MAX_WAIT_MS, MIN_LEASE_MS, Wait,
};
use crate::queue::record::{AckOutcome, LeasedTask, StateName, TaskView};
use crate::queue::{Priority, QueueError, TaskText};
use crate::routes::fields::{Fields, Object, parse_uuid};

/// Every route of reliable delivery.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(lease))
        .routes(routes!(ack))
        .routes(routes!(ack_many))
        .routes(routes!(nack))
        .routes(routes!(extend))
        .routes(routes!(task))
        .routes(routes!(dead))
        .routes(routes!(retry_dead))
        .routes(routes!(delete_dead))
}

/// Ids shown in the examples.
const TASK_EXAMPLE: &str = "5f0c3b7e-8a2d-4c1e-9b6f-2d4e8a1c7b3f";
const LEASE_EXAMPLE: &str = "9d2e6a14-3b7c-4f58-a0e9-6c1b2d3f4a5e";

/// What a route that takes a delivery's `leaseId` refuses, beside its own answers.
struct DeliveryRefusals;

impl IntoResponses for DeliveryRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        openapi::error_responses(&[
            (
                400,
                "`invalid_input` (a malformed id or leaseId, or a value out of its range; `field` \
                 names it), `lease_id_required` or `invalid_json`",
            ),
            (
                404,
                "`task_not_found` (no such task: never enqueued, or acknowledged)",
            ),
            (
                409,
                "`lease_lost`: the lease ran out, or the task was delivered again since; the \
                 worker must not act on the task any more",
            ),
            (415, "`unsupported_media_type`"),
            (503, "`store_unavailable`: nothing changed"),
        ])
    }
}

/// What a route on one dead-lettered task refuses, beside its own answer.
struct DeadLetterRefusals;

impl IntoResponses for DeadLetterRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        openapi::error_responses(&[
            (400, "`invalid_input`: the id is not a UUID"),
            (404, "`task_not_found`: no dead-lettered task has this id"),
            (503, "`store_unavailable`: nothing changed"),
        ])
    }
}

/// A lease request; every member is optional, and so is the body.
#[derive(ToSchema)]
#[schema(as = LeaseRequest, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the JSON itself"
)]
struct LeaseSchema {
    #[schema(schema_with = count_schema)]
    count: Option<u64>,
    #[schema(schema_with = lease_ms_schema)]
    lease_ms: Option<u64>,
    #[schema(schema_with = wait_ms_schema)]
    wait_ms: Option<u64>,
}

fn count_schema() -> SchemaObject {
    openapi::integer_member("Tasks to take, at most.", 1, MAX_BATCH as u64, Some(1))
}

fn lease_ms_schema() -> SchemaObject {
    openapi::integer_member(
        "How long the lease lasts, from now; `QUEUE_LEASE_MS` when absent.",
        MIN_LEASE_MS,
        MAX_LEASE_MS,
        None,
    )
}

fn wait_ms_schema() -> SchemaObject {
    openapi::integer_member(
        "With nothing available, how long to wait for a task (a long poll).",
        0,
        MAX_WAIT_MS,
        Some(0),
    )
}

fn delay_ms_schema() -> SchemaObject {
    openapi::integer_member(
        "When to deliver the task again; the back-off (`QUEUE_RETRY_BASE_MS`·2^(attempt-1), at \
         most `QUEUE_RETRY_MAX_MS`, jittered) when absent.",
        0,
        MAX_DELAY_MS,
        None,
    )
}

fn error_schema() -> SchemaObject {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("What went wrong: kept as the task's `lastError`."))
        .max_length(Some(MAX_ERROR_CHARS))
        .examples(["the payment provider timed out"])
        .build()
}

fn acks_schema() -> Array {
    ArrayBuilder::new()
        .items(BatchAckItem::schema())
        .min_items(Some(1))
        .max_items(Some(MAX_BATCH))
        .description(Some(format!("1 to {MAX_BATCH} deliveries.")))
        .examples([serde_json::json!([{"id": TASK_EXAMPLE, "leaseId": LEASE_EXAMPLE}])])
        .build()
}

fn limit_schema() -> SchemaObject {
    openapi::integer_member(
        "Tasks on the page.",
        1,
        MAX_DEAD_PAGE as u64,
        Some(DEFAULT_DEAD_PAGE as u64),
    )
}

/// One delivery of a task.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct LeasedTaskBody {
    id: Uuid,
    #[schema(value_type = String, example = "Process payment")]
    task: TaskText,
    #[schema(value_type = i64, example = 1)]
    priority: Priority,
    /// When the task was enqueued, in milliseconds since the Unix epoch.
    timestamp: u64,
    /// This delivery's number, from 1.
    attempt: u32,
    max_attempts: u32,
    /// Pass it to `ack`, `nack` and `extend`: it is this delivery's, and no other's.
    lease_id: Uuid,
    /// When the lease runs out, in milliseconds since the Unix epoch.
    lease_expires_at: u64,
}

impl From<LeasedTask> for LeasedTaskBody {
    fn from(leased: LeasedTask) -> Self {
        Self {
            id: leased.task.id,
            task: leased.task.task,
            priority: leased.task.priority,
            timestamp: leased.task.enqueued_at_ms,
            attempt: leased.attempt,
            max_attempts: leased.max_attempts.get(),
            lease_id: *leased.lease.as_uuid(),
            lease_expires_at: leased.expires_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct LeaseResponse {
    /// In queue order (priority, then arrival); empty when nothing came within `waitMs`.
    tasks: Vec<LeasedTaskBody>,
    /// Tasks still available.
    queue_size: usize,
}

/// Leases up to `count` tasks, in the order `/dequeue` takes them.
///
/// A leased task is invisible to `/dequeue`, `nextTask` and other leases until it is
/// acknowledged, nacked, or its lease runs out (then it is delivered again, at its original
/// place, as long as it has attempts left). With nothing available, waits up to `waitMs` for a
/// task to arrive on any instance, then answers `{"tasks":[]}`. Publishes `queue.leased` for
/// each task.
#[utoipa::path(
    post,
    path = "/tasks/lease",
    tag = tags::QUEUE,
    request_body(content = Option<LeaseSchema>,
        description = "Optional: an empty body takes one task for `QUEUE_LEASE_MS`, without \
            waiting"),
    responses(
        (status = 200, description = "The tasks leased, possibly none", body = LeaseResponse),
        (status = 400, body = ErrorBody,
            description = "`invalid_input` (a value out of its range; `field` names it) or \
                `invalid_json`"),
        (status = 413, body = ErrorBody, description = "`payload_too_large`"),
        (status = 415, body = ErrorBody, description = "`unsupported_media_type`"),
        (status = 503, body = ErrorBody, description = "`store_unavailable`",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn lease(
    State(state): State<AppState>,
    OptionalJson(body): OptionalJson<Object>,
) -> Result<Json<LeaseResponse>, ApiError> {
    let mut fields = Fields::new(body);
    let count = fields.int("count", 1..=MAX_BATCH as u64)?.unwrap_or(1);
    let count = BatchSize::new(count as usize).map_err(|err| in_range("count", &err))?;
    let length = lease_length(&mut fields, &state)?;
    let wait = fields.int("waitMs", 0..=MAX_WAIT_MS)?.unwrap_or(0);
    let wait = Wait::from_millis(wait).map_err(|err| in_range("waitMs", &err))?;
    let batch = state.queue.lease(count, length, wait).await?;
    Ok(Json(LeaseResponse {
        tasks: batch.tasks.into_iter().map(LeasedTaskBody::from).collect(),
        queue_size: batch.queue_size,
    }))
}

/// `leaseMs`, or the configured default.
fn lease_length(fields: &mut Fields, state: &AppState) -> Result<LeaseLength, ApiError> {
    match fields.int("leaseMs", MIN_LEASE_MS..=MAX_LEASE_MS)? {
        Some(ms) => LeaseLength::from_millis(ms).map_err(|err| in_range("leaseMs", &err)),
        None => Ok(state.queue.defaults().lease),
    }
}

fn in_range(field: &str, err: &impl std::fmt::Display) -> ApiError {
    ApiError::invalid_input(field, format!("{field} {err}"))
}

/// The `leaseId` member of a body.
fn lease_id(fields: &mut Fields) -> Result<LeaseId, ApiError> {
    fields
        .uuid("leaseId", "lease_id_required", "leaseId is required")
        .map(LeaseId::from_uuid)
}

/// A task id from the path.
fn task_id(raw: &str) -> Result<Uuid, ApiError> {
    parse_uuid("id", raw)
}

/// The lease of a worker's delivery.
#[derive(ToSchema)]
#[schema(as = AckRequest, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the JSON itself"
)]
struct AckSchema {
    /// The `leaseId` the lease answered.
    #[schema(example = "9d2e6a14-3b7c-4f58-a0e9-6c1b2d3f4a5e")]
    lease_id: Uuid,
}

#[derive(Serialize, ToSchema)]
struct AckResponse {
    #[schema(example = "Task acknowledged")]
    message: &'static str,
    id: Uuid,
}

/// Acknowledges a delivery: the task is gone for good.
///
/// Repeating the same acknowledgement answers 200 again for as long as its lease would have
/// run. Publishes `queue.acked`.
#[utoipa::path(
    post,
    path = "/tasks/{id}/ack",
    tag = tags::QUEUE,
    params(("id" = Uuid, Path, description = "The task's id")),
    request_body = AckSchema,
    responses(
        (status = 200, description = "Acknowledged", body = AckResponse),
        DeliveryRefusals,
    ),
)]
async fn ack(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Object>,
) -> Result<Json<AckResponse>, ApiError> {
    let id = task_id(&id)?;
    let lease = lease_id(&mut Fields::new(body))?;
    match state.queue.ack(id, lease).await? {
        AckOutcome::Acked | AckOutcome::AlreadyAcked => Ok(Json(AckResponse {
            message: "Task acknowledged",
            id,
        })),
        AckOutcome::NotFound => Err(QueueError::TaskNotFound.into()),
        AckOutcome::LeaseLost => Err(QueueError::LeaseLost.into()),
    }
}

/// Acknowledgements of several deliveries.
#[derive(ToSchema)]
#[schema(as = BatchAckRequest)]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the JSON itself"
)]
struct BatchAckSchema {
    #[schema(schema_with = acks_schema)]
    acks: Vec<BatchAckItem>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the JSON itself"
)]
struct BatchAckItem {
    #[schema(example = "5f0c3b7e-8a2d-4c1e-9b6f-2d4e8a1c7b3f")]
    id: Uuid,
    #[schema(example = "9d2e6a14-3b7c-4f58-a0e9-6c1b2d3f4a5e")]
    lease_id: Uuid,
}

#[derive(Serialize, ToSchema)]
struct BatchAckResponse {
    /// One per acknowledgement, in order.
    results: Vec<BatchAckResult>,
}

#[derive(Serialize, ToSchema)]
struct BatchAckResult {
    id: Uuid,
    /// 200 acknowledged, 404 no such task, 409 lease lost: what `POST /tasks/{id}/ack` would
    /// have answered.
    #[schema(example = 200)]
    status: u16,
}

/// Acknowledges up to 100 deliveries in one request, each answered on its own.
#[utoipa::path(
    post,
    path = "/tasks/ack",
    tag = tags::QUEUE,
    operation_id = "ack_batch",
    request_body = BatchAckSchema,
    responses(
        (status = 200, description = "Each acknowledgement's answer", body = BatchAckResponse),
        (status = 400, body = ErrorBody,
            description = "`invalid_input`: `acks` is missing, empty, longer than 100, or an item \
                is malformed (`field` names it, e.g. `acks[3].leaseId`)"),
        (status = 415, body = ErrorBody, description = "`unsupported_media_type`"),
        (status = 503, body = ErrorBody, description = "`store_unavailable`: nothing changed",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn ack_many(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Object>,
) -> Result<Json<BatchAckResponse>, ApiError> {
    let acks = parse_acks(body)?;
    let ids: Vec<Uuid> = acks.iter().map(|(id, _)| *id).collect();
    let outcomes = state.queue.ack_all(acks).await?;
    let results = ids
        .into_iter()
        .zip(outcomes)
        .map(|(id, outcome)| BatchAckResult {
            id,
            status: match outcome {
                AckOutcome::Acked | AckOutcome::AlreadyAcked => 200,
                AckOutcome::NotFound => 404,
                AckOutcome::LeaseLost => 409,
            },
        })
        .collect();
    Ok(Json(BatchAckResponse { results }))
}

/// The `acks` of a batch acknowledgement.
fn parse_acks(body: Object) -> Result<Vec<(Uuid, LeaseId)>, ApiError> {
    let mut fields = Fields::new(body);
    let items = match fields.take("acks") {
        Some(serde_json::Value::Array(items)) if (1..=MAX_BATCH).contains(&items.len()) => items,
        _ => {
            return Err(ApiError::invalid_input(
                "acks",
                format!(
                    "acks must be an array of 1 to {MAX_BATCH} {{\"id\", \"leaseId\"}} objects"
                ),
            ));
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(at, item)| {
            let serde_json::Value::Object(item) = item else {
                return Err(ApiError::invalid_input(
                    format!("acks[{at}]"),
                    format!("acks[{at}] must be an object {{\"id\", \"leaseId\"}}"),
                ));
            };
            let mut item = Fields::new(item);
            let field = |name: &str| format!("acks[{at}].{name}");
            let id = item
                .text("id")
                .ok()
                .flatten()
                .and_then(|text| Uuid::try_parse(&text).ok())
                .ok_or_else(|| {
                    ApiError::invalid_input(field("id"), format!("{} must be a UUID", field("id")))
                })?;
            let lease = item
                .text("leaseId")
                .ok()
                .flatten()
                .and_then(|text| Uuid::try_parse(&text).ok())
                .ok_or_else(|| {
                    ApiError::invalid_input(
                        field("leaseId"),
                        format!("{} must be a UUID", field("leaseId")),
                    )
                })?;
            Ok((id, LeaseId::from_uuid(lease)))
        })
        .collect()
}

/// A failed delivery.
#[derive(ToSchema)]
#[schema(as = NackRequest, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the JSON itself"
)]
struct NackSchema {
    #[schema(example = "9d2e6a14-3b7c-4f58-a0e9-6c1b2d3f4a5e")]
    lease_id: Uuid,
    #[schema(schema_with = delay_ms_schema)]
    delay_ms: Option<u64>,
    #[schema(schema_with = error_schema)]
    error: Option<String>,
}

/// Where a nacked task went: `delayed` (or `queued` with `delayMs: 0`), or `dead` after its
/// last attempt.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NackResponse {
    id: Uuid,
    #[schema(inline)]
    state: StateName,
    /// When the task is delivered again, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    available_at: Option<u64>,
}

/// Gives a delivery back: the task returns after `delayMs` or the back-off, at its original
/// place; after its last attempt it is dead-lettered.
///
/// Publishes `queue.retried`, or `queue.dead`.
#[utoipa::path(
    post,
    path = "/tasks/{id}/nack",
    tag = tags::QUEUE,
    params(("id" = Uuid, Path, description = "The task's id")),
    request_body = NackSchema,
    responses(
        (status = 200, description = "Where the task went", body = NackResponse),
        DeliveryRefusals,
    ),
)]
async fn nack(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Object>,
) -> Result<Json<NackResponse>, ApiError> {
    let id = task_id(&id)?;
    let mut fields = Fields::new(body);
    let lease = lease_id(&mut fields)?;
    let delay = fields
        .int("delayMs", 0..=MAX_DELAY_MS)?
        .map(Delay::from_millis)
        .transpose()
        .map_err(|err| in_range("delayMs", &err))?;
    let error = fields
        .text("error")?
        .map(ErrorText::parse)
        .transpose()
        .map_err(|_| {
            ApiError::invalid_input(
                "error",
                format!("error must be a string of at most {MAX_ERROR_CHARS} characters"),
            )
        })?;
    let nacked = state.queue.nack(id, lease, delay, error).await?;
    Ok(Json(NackResponse {
        id: nacked.id,
        state: nacked.state,
        available_at: nacked.available_at_ms,
    }))
}

/// A longer lease.
#[derive(ToSchema)]
#[schema(as = ExtendRequest, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the JSON itself"
)]
struct ExtendSchema {
    #[schema(example = "9d2e6a14-3b7c-4f58-a0e9-6c1b2d3f4a5e")]
    lease_id: Uuid,
    #[schema(schema_with = lease_ms_schema)]
    lease_ms: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ExtendResponse {
    id: Uuid,
    /// When the lease now runs out, in milliseconds since the Unix epoch.
    lease_expires_at: u64,
}

/// Extends a live lease: it now runs `leaseMs` from now.
#[utoipa::path(
    post,
    path = "/tasks/{id}/extend",
    tag = tags::QUEUE,
    params(("id" = Uuid, Path, description = "The task's id")),
    request_body = ExtendSchema,
    responses(
        (status = 200, description = "The lease's new end", body = ExtendResponse),
        DeliveryRefusals,
    ),
)]
async fn extend(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Object>,
) -> Result<Json<ExtendResponse>, ApiError> {
    let id = task_id(&id)?;
    let mut fields = Fields::new(body);
    let lease = lease_id(&mut fields)?;
    let length = lease_length(&mut fields, &state)?;
    let lease_expires_at = state.queue.extend(id, lease, length).await?;
    Ok(Json(ExtendResponse {
        id,
        lease_expires_at,
    }))
}

/// A task as the queue holds it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TaskBody {
    id: Uuid,
    #[schema(value_type = String, example = "Process payment")]
    task: TaskText,
    #[schema(value_type = i64, example = 1)]
    priority: Priority,
    /// When the task was enqueued, in milliseconds since the Unix epoch.
    timestamp: u64,
    #[schema(inline)]
    state: StateName,
    /// Deliveries so far.
    attempt: u32,
    max_attempts: u32,
    /// `delayed`: when it becomes visible.
    #[serde(skip_serializing_if = "Option::is_none")]
    available_at: Option<u64>,
    /// `leased`: when the lease runs out.
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_expires_at: Option<u64>,
    /// What the last failed delivery reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    last_error: Option<ErrorText>,
}

impl From<TaskView> for TaskBody {
    fn from(view: TaskView) -> Self {
        Self {
            id: view.task.id,
            task: view.task.task,
            priority: view.task.priority,
            timestamp: view.task.enqueued_at_ms,
            state: view.state,
            attempt: view.attempt,
            max_attempts: view.max_attempts.get(),
            available_at: view.available_at_ms,
            lease_expires_at: view.lease_expires_at_ms,
            last_error: view.last_error,
        }
    }
}

/// A task's state, attempts and last error.
#[utoipa::path(
    get,
    path = "/tasks/{id}",
    tag = tags::QUEUE,
    operation_id = "get_task",
    params(("id" = Uuid, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task", body = TaskBody),
        (status = 400, body = ErrorBody, description = "`invalid_input`: the id is not a UUID"),
        (status = 404, body = ErrorBody,
            description = "`task_not_found`: never enqueued, or dequeued, acknowledged or deleted"),
        (status = 503, body = ErrorBody, description = "`store_unavailable`",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TaskBody>, ApiError> {
    let id = task_id(&id)?;
    let view = state.queue.get(id).await?.ok_or(QueueError::TaskNotFound)?;
    Ok(Json(view.into()))
}

/// The page of the dead-letter list to show.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeadQuery {
    #[param(schema_with = limit_schema)]
    limit: Option<String>,
    /// The `next` of the previous page.
    #[param(value_type = Option<Uuid>, example = "5f0c3b7e-8a2d-4c1e-9b6f-2d4e8a1c7b3f")]
    after: Option<String>,
}

/// `limit` when the query gives none.
const DEFAULT_DEAD_PAGE: usize = 100;

#[derive(Serialize, ToSchema)]
struct DeadResponse {
    /// Oldest first (in arrival order).
    tasks: Vec<TaskBody>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<Uuid>,
}

/// The dead-letter list: tasks that ran out of attempts, oldest first, a page at a time.
///
/// A dead-lettered task stays until it is retried or deleted.
#[utoipa::path(
    get,
    path = "/queue/dead",
    tag = tags::QUEUE,
    params(DeadQuery),
    responses(
        (status = 200, description = "A page of dead-lettered tasks", body = DeadResponse),
        (status = 400, body = ErrorBody,
            description = "`invalid_input`: `limit` out of range, or `after` not a task id"),
        (status = 503, body = ErrorBody, description = "`store_unavailable`",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn dead(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<DeadQuery>,
) -> Result<Json<DeadResponse>, ApiError> {
    let limit = int_param(
        "limit",
        query.limit.as_deref(),
        1..=MAX_DEAD_PAGE,
        DEFAULT_DEAD_PAGE,
    )?;
    let after = query
        .after
        .as_deref()
        .filter(|raw| !raw.is_empty())
        .map(|raw| parse_uuid("after", raw))
        .transpose()?;
    let page = state.queue.dead(limit, after).await?;
    Ok(Json(DeadResponse {
        tasks: page.tasks.into_iter().map(TaskBody::from).collect(),
        next: page.next,
    }))
}

/// Queues a dead-lettered task again, at its original place, with its attempts reset.
///
/// Publishes `queue.retried`.
#[utoipa::path(
    post,
    path = "/queue/dead/{id}/retry",
    tag = tags::QUEUE,
    params(("id" = Uuid, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task, queued again", body = TaskBody),
        DeadLetterRefusals,
    ),
)]
async fn retry_dead(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TaskBody>, ApiError> {
    let id = task_id(&id)?;
    Ok(Json(state.queue.retry_dead(id).await?.into()))
}

#[derive(Serialize, ToSchema)]
struct DeleteResponse {
    #[schema(example = "Task deleted")]
    message: &'static str,
    id: Uuid,
}

/// Deletes a dead-lettered task for good.
///
/// Publishes `queue.deleted`.
#[utoipa::path(
    delete,
    path = "/queue/dead/{id}",
    tag = tags::QUEUE,
    params(("id" = Uuid, Path, description = "The task's id")),
    responses(
        (status = 200, description = "Deleted", body = DeleteResponse),
        DeadLetterRefusals,
    ),
)]
async fn delete_dead(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let id = task_id(&id)?;
    state.queue.delete_dead(id).await?;
    Ok(Json(DeleteResponse {
        message: "Task deleted",
        id,
    }))
}
