//! Reliable delivery over HTTP: `POST /tasks/lease`, `POST /tasks/{id}/ack|nack|extend`,
//! `POST /tasks/ack`, `GET /tasks/{id}` and the dead-letter list `/queue/dead`.
//!
//! A worker leases tasks (waiting for them with `waitMs` when none is available), does the
//! work, and acknowledges each with the `leaseId` it got; on failure it nacks, and the task
//! comes back after a back-off, or goes to the dead-letter list after its last attempt. A
//! worker that goes silent loses its lease when it runs out, and the task is delivered again.
//! The queue service publishes each transition on `/notifications`.

//!
//! Layout: this module (the router, the lease itself and what the routes share),
//! [`deliveries`] (acknowledge, nack, extend), [`dead`] (a task, the dead-letter list).

mod dead;
mod deliveries;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::openapi::schema::Object as SchemaObject;

use utoipa::openapi::{RefOr, Response};
use utoipa::{IntoResponses, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::OptionalJson;
use crate::openapi::{self, tags};
use crate::queue::limits::{
    BatchSize, LeaseId, LeaseLength, MAX_BATCH, MAX_LEASE_MS, MAX_WAIT_MS, MIN_LEASE_MS, Wait,
};
use crate::queue::record::LeasedTask;
use crate::queue::{Priority, TaskText};
use crate::routes::access::{Access, Consume};
use crate::routes::fields::{Fields, Object, parse_uuid};

/// Every route of reliable delivery.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(lease))
        .routes(routes!(deliveries::ack))
        .routes(routes!(deliveries::ack_many))
        .routes(routes!(deliveries::nack))
        .routes(routes!(deliveries::extend))
        .routes(routes!(dead::task))
        .routes(routes!(dead::dead))
        .routes(routes!(dead::retry_dead))
        .routes(routes!(dead::delete_dead))
}

/// Ids shown in the examples.
pub(super) const TASK_EXAMPLE: &str = "5f0c3b7e-8a2d-4c1e-9b6f-2d4e8a1c7b3f";
pub(super) const LEASE_EXAMPLE: &str = "9d2e6a14-3b7c-4f58-a0e9-6c1b2d3f4a5e";

/// What a route that takes a delivery's `leaseId` refuses, beside its own answers.
pub(super) struct DeliveryRefusals;

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
pub(super) struct DeadLetterRefusals;

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

pub(super) fn lease_ms_schema() -> SchemaObject {
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
    security(("bearerAuth" = ["consume"])),
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
    _: Access<Consume>,
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
pub(super) fn lease_length(fields: &mut Fields, state: &AppState) -> Result<LeaseLength, ApiError> {
    match fields.int("leaseMs", MIN_LEASE_MS..=MAX_LEASE_MS)? {
        Some(ms) => LeaseLength::from_millis(ms).map_err(|err| in_range("leaseMs", &err)),
        None => Ok(state.queue.defaults().lease),
    }
}

pub(super) fn in_range(field: &str, err: &impl std::fmt::Display) -> ApiError {
    ApiError::invalid_input(field, format!("{field} {err}"))
}

/// The `leaseId` member of a body.
pub(super) fn lease_id(fields: &mut Fields) -> Result<LeaseId, ApiError> {
    fields
        .uuid("leaseId", "lease_id_required", "leaseId is required")
        .map(LeaseId::from_uuid)
}

/// A task id from the path.
pub(super) fn task_id(raw: &str) -> Result<Uuid, ApiError> {
    parse_uuid("id", raw)
}
