//! A task as the queue holds it, and the dead-letter list: a page, a retry, a deletion.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object as SchemaObject;

use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, int_param};
use crate::openapi::{self, tags};
use crate::queue::limits::{ErrorText, MAX_DEAD_PAGE};
use crate::queue::record::{StateName, TaskView};
use crate::queue::{Priority, QueueError, TaskText};
use crate::routes::access::{Access, Consume};
use crate::routes::fields::parse_uuid;

use super::{DeadLetterRefusals, task_id};

fn limit_schema() -> SchemaObject {
    openapi::integer_member(
        "Tasks on the page.",
        1,
        MAX_DEAD_PAGE as u64,
        Some(DEFAULT_DEAD_PAGE as u64),
    )
}

/// A task as the queue holds it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TaskBody {
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
    security(("bearerAuth" = ["consume"])),
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
pub(super) async fn task(
    _: Access<Consume>,
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
pub(super) struct DeadQuery {
    #[param(schema_with = limit_schema)]
    limit: Option<String>,
    /// The `next` of the previous page.
    #[param(value_type = Option<Uuid>, example = "5f0c3b7e-8a2d-4c1e-9b6f-2d4e8a1c7b3f")]
    after: Option<String>,
}

/// `limit` when the query gives none.
const DEFAULT_DEAD_PAGE: usize = 100;

#[derive(Serialize, ToSchema)]
pub(super) struct DeadResponse {
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
    security(("bearerAuth" = ["consume"])),
    params(DeadQuery),
    responses(
        (status = 200, description = "A page of dead-lettered tasks", body = DeadResponse),
        (status = 400, body = ErrorBody,
            description = "`invalid_input`: `limit` out of range, or `after` not a task id"),
        (status = 503, body = ErrorBody, description = "`store_unavailable`",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
pub(super) async fn dead(
    _: Access<Consume>,
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
    security(("bearerAuth" = ["consume"])),
    params(("id" = Uuid, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task, queued again", body = TaskBody),
        DeadLetterRefusals,
    ),
)]
pub(super) async fn retry_dead(
    _: Access<Consume>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TaskBody>, ApiError> {
    let id = task_id(&id)?;
    Ok(Json(state.queue.retry_dead(id).await?.into()))
}

#[derive(Serialize, ToSchema)]
pub(super) struct DeleteResponse {
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
    security(("bearerAuth" = ["consume"])),
    params(("id" = Uuid, Path, description = "The task's id")),
    responses(
        (status = 200, description = "Deleted", body = DeleteResponse),
        DeadLetterRefusals,
    ),
)]
pub(super) async fn delete_dead(
    _: Access<Consume>,
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
