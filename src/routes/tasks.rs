//! CPU-heavy work routes: `/heavy-task-child`, `/heavy-task-worker` and, when
//! `ENABLE_BLOCKING_DEMO=true`, `/heavy-task-blocking`.
//!
//! Each parses `n` (and `pool`), asks [`ComputePool`] for `fib(n)` and maps the outcome. If the
//! client disconnects, axum drops the handler future, which cancels the job.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::compute::{ComputeError, ComputeMethod, Executor, FibOutcome};
use crate::config::HeavyPool;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, choice_param, int_param};
use crate::openapi::{self, tags};
use crate::routes::access::{Access, Compute};

/// `n` when the query does not give one (capped by the route's maximum).
const DEFAULT_N: u32 = 40;

/// The names `pool` takes.
const POOLS: [(&str, ComputeMethod); 2] = [
    (HeavyPool::Rayon.as_str(), ComputeMethod::Rayon),
    (HeavyPool::Blocking.as_str(), ComputeMethod::SpawnBlocking),
];

/// `GET /heavy-task-child`, `GET /heavy-task-worker`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(heavy_task_child))
        .routes(routes!(heavy_task_worker))
}

/// `GET /heavy-task-blocking` when `enabled` (`ENABLE_BLOCKING_DEMO=true`), else no route at all.
pub fn blocking_demo_router(enabled: bool) -> OpenApiRouter<AppState> {
    if enabled {
        OpenApiRouter::new().routes(routes!(heavy_task_blocking))
    } else {
        OpenApiRouter::new()
    }
}

/// Query of `/heavy-task-child` and `/heavy-task-blocking`; parsed by the handlers so that
/// errors name the field.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HeavyTaskQuery {
    /// Which Fibonacci number to compute, naively; at most `CHILD_MAX_N` (child) or
    /// `WORKER_MAX_N`.
    #[param(schema_with = n_schema)]
    n: Option<String>,
}

/// Query of `/heavy-task-worker`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct WorkerTaskQuery {
    /// Which Fibonacci number to compute, naively; at most `WORKER_MAX_N`.
    #[param(schema_with = n_schema)]
    n: Option<String>,
    /// The thread pool: `rayon` (a dedicated pool) or `blocking` (tokio's blocking threads);
    /// `HEAVY_POOL` by default.
    #[param(schema_with = pool_schema)]
    pool: Option<String>,
}

/// The maximum is the route's configured one, written in at start-up.
fn n_schema() -> Object {
    openapi::integer_parameter(0, None, DEFAULT_N.into())
}

/// The default is the configured `HEAVY_POOL`, written in at start-up.
fn pool_schema() -> Object {
    openapi::choice_parameter(&POOLS, POOLS[0].0)
}

/// `fib(n)` and where and how long it was computed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct HeavyTaskResponse {
    /// Where it was computed.
    #[schema(schema_with = method_schema)]
    method: &'static str,
    /// `n`.
    #[schema(example = 40)]
    input: u32,
    /// `fib(n)`.
    #[schema(example = 102334155)]
    result: u64,
    /// Wall-clock time of the computation, in whole milliseconds, e.g. `812ms`.
    #[schema(pattern = "^[0-9]+ms$", example = "812ms")]
    duration: String,
    #[serde(flatten)]
    executor: ExecutorBody,
}

/// Which process or thread computed the result.
#[derive(Debug, Serialize, ToSchema)]
enum ExecutorBody {
    /// The child process's pid (not the server's), for `child_process`.
    #[serde(rename = "processId")]
    Process(u32),
    /// The computing thread's name or id, for the thread pools.
    #[serde(rename = "threadId")]
    Thread(String),
}

fn method_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ComputeMethod::ALL.map(ComputeMethod::as_str)))
        .build()
}

impl From<FibOutcome> for HeavyTaskResponse {
    fn from(outcome: FibOutcome) -> Self {
        Self {
            method: outcome.method.as_str(),
            input: outcome.n,
            result: outcome.result,
            duration: format!("{}ms", outcome.elapsed.as_millis()),
            executor: match outcome.executor {
                Executor::Process { pid } => ExecutorBody::Process(pid),
                Executor::Thread { label } => ExecutorBody::Thread(label),
            },
        }
    }
}

impl From<ComputeError> for ApiError {
    fn from(err: ComputeError) -> Self {
        match err {
            ComputeError::Busy { retry_after } => ApiError::Unavailable {
                code: "busy",
                message: "Too many heavy tasks in flight, retry later",
                retry_after,
            },
            ComputeError::TimedOut => ApiError::Timeout,
            ComputeError::WorkerFailed(cause) => ApiError::WorkerFailed(cause),
        }
    }
}

fn parse_n(raw: Option<&str>, max: u32) -> Result<u32, ApiError> {
    int_param("n", raw, 0..=max, DEFAULT_N.min(max))
}

async fn compute(
    state: &AppState,
    method: ComputeMethod,
    n: u32,
) -> Result<Json<HeavyTaskResponse>, ApiError> {
    let outcome = state.compute.run(method, n).await?;
    Ok(Json(outcome.into()))
}

/// Descriptions of the error responses the heavy routes share.
const INVALID_N: &str = "`invalid_input`: `n` is not an integer between 0 and the route's maximum";
const BUSY: &str = "`busy`: `HEAVY_MAX_INFLIGHT` heavy jobs are running or waiting";
const TIMED_OUT: &str = "`timeout`: not done within `HEAVY_TIMEOUT_SECONDS`; the work is stopped";
const FAILED: &str = "`worker_failed`: the worker crashed or answered garbage";

/// `fib(n)`, computed by a child process.
///
/// The server runs its own binary in worker mode; `processId` is the child's pid. At most
/// `CHILD_MAX_N`.
#[utoipa::path(
    get,
    path = "/heavy-task-child",
    tag = tags::COMPUTE,
    security(("bearerAuth" = ["compute"])),
    params(HeavyTaskQuery),
    responses(
        (status = 200, description = "The result", body = HeavyTaskResponse),
        (status = 400, body = ErrorBody, description = INVALID_N),
        (status = 500, body = ErrorBody, description = FAILED),
        (status = 503, body = ErrorBody, description = BUSY,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, body = ErrorBody, description = TIMED_OUT),
    ),
)]
async fn heavy_task_child(
    _: Access<Compute>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HeavyTaskQuery>,
) -> Result<Json<HeavyTaskResponse>, ApiError> {
    let n = parse_n(query.n.as_deref(), state.config.compute.child_max_n)?;
    compute(&state, ComputeMethod::ChildProcess, n).await
}

/// `fib(n)`, computed on a thread pool outside the async runtime.
///
/// `threadId` names the thread. At most `WORKER_MAX_N`.
#[utoipa::path(
    get,
    path = "/heavy-task-worker",
    tag = tags::COMPUTE,
    security(("bearerAuth" = ["compute"])),
    params(WorkerTaskQuery),
    responses(
        (status = 200, description = "The result", body = HeavyTaskResponse),
        (status = 400, body = ErrorBody,
            description = "`invalid_input`: `n` is not an integer between 0 and `WORKER_MAX_N`, \
                or `pool` is unknown"),
        (status = 500, body = ErrorBody, description = FAILED),
        (status = 503, body = ErrorBody, description = BUSY,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 504, body = ErrorBody, description = TIMED_OUT),
    ),
)]
async fn heavy_task_worker(
    _: Access<Compute>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<WorkerTaskQuery>,
) -> Result<Json<HeavyTaskResponse>, ApiError> {
    let n = parse_n(query.n.as_deref(), state.config.compute.worker_max_n)?;
    let method = choice_param(
        "pool",
        query.pool.as_deref(),
        &POOLS,
        state.config.compute.pool.into(),
    )?;
    compute(&state, method, n).await
}

/// `fib(n)` computed on the async runtime itself: what NOT to do.
///
/// Computes on the async runtime thread that serves the request, stalling every other task
/// scheduled there until it is done (watch `runtime_lag_seconds`). It cannot be cancelled or
/// timed out once started; it still obeys the admission limit and `WORKER_MAX_N`. Served only
/// with `ENABLE_BLOCKING_DEMO=true`.
#[utoipa::path(
    get,
    path = "/heavy-task-blocking",
    tag = tags::COMPUTE,
    security(("bearerAuth" = ["compute"])),
    params(HeavyTaskQuery),
    responses(
        (status = 200, description = "The result", body = HeavyTaskResponse),
        (status = 400, body = ErrorBody, description = INVALID_N),
        (status = 503, body = ErrorBody, description = BUSY,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn heavy_task_blocking(
    _: Access<Compute>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HeavyTaskQuery>,
) -> Result<Json<HeavyTaskResponse>, ApiError> {
    let n = parse_n(query.n.as_deref(), state.config.compute.worker_max_n)?;
    compute(&state, ComputeMethod::AsyncRuntimeBlocking, n).await
}
