//! CPU-heavy work routes: `/heavy-task-child`, `/heavy-task-worker` and, when
//! `ENABLE_BLOCKING_DEMO=true`, `/heavy-task-blocking`.
//!
//! Each parses `n` (and `pool`), asks [`ComputePool`] for `fib(n)` and maps the outcome. If the
//! client disconnects, axum drops the handler future, which cancels the job.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::compute::{ComputeError, ComputeMethod, Executor, FibOutcome};
use crate::error::ApiError;
use crate::extract::{ApiQuery, choice_param, int_param};

/// `n` when the query does not give one (capped by the route's maximum).
const DEFAULT_N: u32 = 40;

/// `GET /heavy-task-child`, `GET /heavy-task-worker`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/heavy-task-child", get(heavy_task_child))
        .route("/heavy-task-worker", get(heavy_task_worker))
}

/// `GET /heavy-task-blocking` when `enabled` (`ENABLE_BLOCKING_DEMO=true`), else no route at all.
pub fn blocking_demo_router(enabled: bool) -> Router<AppState> {
    if enabled {
        Router::new().route("/heavy-task-blocking", get(heavy_task_blocking))
    } else {
        Router::new()
    }
}

/// Query of the heavy-task routes; values are parsed by the handlers so errors name the field.
#[derive(Debug, Deserialize)]
struct HeavyTaskQuery {
    n: Option<String>,
    pool: Option<String>,
}

/// `200` body: `processId` for a child, `threadId` for a thread.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HeavyTaskResponse {
    method: &'static str,
    input: u32,
    result: u64,
    duration: String,
    #[serde(flatten)]
    executor: ExecutorBody,
}

#[derive(Debug, Serialize)]
enum ExecutorBody {
    #[serde(rename = "processId")]
    Process(u32),
    #[serde(rename = "threadId")]
    Thread(String),
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

/// `GET /heavy-task-child?n=40`: computed by a child process.
async fn heavy_task_child(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HeavyTaskQuery>,
) -> Result<Json<HeavyTaskResponse>, ApiError> {
    let n = parse_n(query.n.as_deref(), state.config.child_max_n)?;
    compute(&state, ComputeMethod::ChildProcess, n).await
}

/// `GET /heavy-task-worker?n=40&pool=rayon|blocking`: computed on a thread pool.
async fn heavy_task_worker(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HeavyTaskQuery>,
) -> Result<Json<HeavyTaskResponse>, ApiError> {
    let n = parse_n(query.n.as_deref(), state.config.worker_max_n)?;
    let method = choice_param(
        "pool",
        query.pool.as_deref(),
        &[
            ("rayon", ComputeMethod::Rayon),
            ("blocking", ComputeMethod::SpawnBlocking),
        ],
        state.config.heavy_pool.into(),
    )?;
    compute(&state, method, n).await
}

/// `GET /heavy-task-blocking?n=30`: what NOT to do. Computes on the async runtime thread that
/// serves the request, stalling every other task scheduled there until it is done (watch
/// `runtime_lag_seconds`). It cannot be cancelled or timed out once started; it still obeys
/// the admission limit and `WORKER_MAX_N`.
async fn heavy_task_blocking(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HeavyTaskQuery>,
) -> Result<Json<HeavyTaskResponse>, ApiError> {
    let n = parse_n(query.n.as_deref(), state.config.worker_max_n)?;
    compute(&state, ComputeMethod::AsyncRuntimeBlocking, n).await
}
