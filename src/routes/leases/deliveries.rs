//! What a worker does with a delivery: acknowledge it (one or a batch), nack it, extend its
//! lease.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Array, ArrayBuilder, Object as SchemaObject, ObjectBuilder, Type};

use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::openapi::{self, tags};
use crate::queue::QueueError;
use crate::queue::limits::{Delay, ErrorText, LeaseId, MAX_BATCH, MAX_DELAY_MS, MAX_ERROR_CHARS};
use crate::queue::record::{AckOutcome, StateName};
use crate::routes::access::{Access, Consume};
use crate::routes::fields::{Fields, Object};

use super::{
    DeliveryRefusals, LEASE_EXAMPLE, TASK_EXAMPLE, in_range, lease_id, lease_length,
    lease_ms_schema, task_id,
};

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

/// The lease of a worker's delivery.
#[derive(ToSchema)]
#[schema(as = AckRequest, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the JSON itself"
)]
pub(super) struct AckSchema {
    /// The `leaseId` the lease answered.
    #[schema(example = "9d2e6a14-3b7c-4f58-a0e9-6c1b2d3f4a5e")]
    lease_id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub(super) struct AckResponse {
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
    security(("bearerAuth" = ["consume"])),
    params(("id" = Uuid, Path, description = "The task's id")),
    request_body = AckSchema,
    responses(
        (status = 200, description = "Acknowledged", body = AckResponse),
        DeliveryRefusals,
    ),
)]
pub(super) async fn ack(
    _: Access<Consume>,
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
pub(super) struct BatchAckSchema {
    #[schema(schema_with = acks_schema)]
    acks: Vec<BatchAckItem>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the JSON itself"
)]
pub(super) struct BatchAckItem {
    #[schema(example = "5f0c3b7e-8a2d-4c1e-9b6f-2d4e8a1c7b3f")]
    id: Uuid,
    #[schema(example = "9d2e6a14-3b7c-4f58-a0e9-6c1b2d3f4a5e")]
    lease_id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub(super) struct BatchAckResponse {
    /// One per acknowledgement, in order.
    results: Vec<BatchAckResult>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct BatchAckResult {
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
    security(("bearerAuth" = ["consume"])),
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
pub(super) async fn ack_many(
    _: Access<Consume>,
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
pub(super) struct NackSchema {
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
pub(super) struct NackResponse {
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
    security(("bearerAuth" = ["consume"])),
    params(("id" = Uuid, Path, description = "The task's id")),
    request_body = NackSchema,
    responses(
        (status = 200, description = "Where the task went", body = NackResponse),
        DeliveryRefusals,
    ),
)]
pub(super) async fn nack(
    _: Access<Consume>,
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
pub(super) struct ExtendSchema {
    #[schema(example = "9d2e6a14-3b7c-4f58-a0e9-6c1b2d3f4a5e")]
    lease_id: Uuid,
    #[schema(schema_with = lease_ms_schema)]
    lease_ms: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ExtendResponse {
    id: Uuid,
    /// When the lease now runs out, in milliseconds since the Unix epoch.
    lease_expires_at: u64,
}

/// Extends a live lease: it now runs `leaseMs` from now.
#[utoipa::path(
    post,
    path = "/tasks/{id}/extend",
    tag = tags::QUEUE,
    security(("bearerAuth" = ["consume"])),
    params(("id" = Uuid, Path, description = "The task's id")),
    request_body = ExtendSchema,
    responses(
        (status = 200, description = "The lease's new end", body = ExtendResponse),
        DeliveryRefusals,
    ),
)]
pub(super) async fn extend(
    _: Access<Consume>,
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
