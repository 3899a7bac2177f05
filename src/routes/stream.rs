//! `GET /stream`: a chunked response of generated items (see [`crate::stream`]).

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, choice_param, int_param};
use crate::fault::ITEM_STREAMS_FULL_RETRY_AFTER;
use crate::openapi::{self, tags};
use crate::routes::X_ACCEL_BUFFERING;
use crate::routes::access::{Access, Stream};
use crate::stream::{
    DEFAULT_CHUNK_SIZE, DEFAULT_DELAY_MS, DEFAULT_TOTAL_ITEMS, Format, ItemStream, MAX_CHUNK_SIZE,
    MAX_DELAY_MS, StreamMeter, StreamSpec,
};

/// The names `format` takes.
const FORMATS: [(&str, Format); 2] = [("json", Format::Json), ("ndjson", Format::Ndjson)];

/// `GET /stream`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

/// The raw query; each value is parsed with its range so a bad one is named in the 400. The
/// documented schemas are built from the same bounds and defaults as the parser's.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Items written and flushed together.
    #[serde(rename = "chunkSize")]
    #[param(schema_with = chunk_size_schema)]
    chunk_size: Option<String>,
    /// Items in the whole response; at most `STREAM_MAX_ITEMS`.
    #[serde(rename = "totalItems")]
    #[param(schema_with = total_items_schema)]
    total_items: Option<String>,
    /// Milliseconds between two chunks; 0 means no pause.
    #[param(schema_with = delay_schema)]
    delay: Option<String>,
    /// `json`: the body is one JSON array; `ndjson`: one JSON object per line.
    #[param(schema_with = format_schema)]
    format: Option<String>,
}

fn chunk_size_schema() -> Object {
    openapi::integer_parameter(1, Some(MAX_CHUNK_SIZE.into()), DEFAULT_CHUNK_SIZE.into())
}

/// The maximum is the configured `STREAM_MAX_ITEMS`, written in at start-up.
fn total_items_schema() -> Object {
    openapi::integer_parameter(0, None, DEFAULT_TOTAL_ITEMS)
}

fn delay_schema() -> Object {
    openapi::integer_parameter(0, Some(MAX_DELAY_MS), DEFAULT_DELAY_MS)
}

fn format_schema() -> Object {
    openapi::choice_parameter(&FORMATS, "json")
}

/// One generated item.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "documentation only: the encoder writes items into the buffer"
)]
struct StreamItem {
    /// Position in the stream, from 1.
    #[schema(minimum = 1, example = 1)]
    id: u64,
    /// `Item <id>`.
    #[schema(example = "Item 1")]
    name: String,
    /// A random number, at least 0 and below 1000.
    #[schema(minimum = 0, exclusive_maximum = 1000, example = 417.25)]
    value: f64,
    /// When the item's chunk was produced (RFC 3339).
    #[schema(format = DateTime, example = "2026-11-23T14:55:22.123Z")]
    timestamp: String,
}

impl StreamQuery {
    fn parse(&self, max_items: u64) -> Result<StreamSpec, ApiError> {
        let chunk_size = int_param(
            "chunkSize",
            self.chunk_size.as_deref(),
            1..=MAX_CHUNK_SIZE,
            DEFAULT_CHUNK_SIZE,
        )?;
        let total_items = int_param(
            "totalItems",
            self.total_items.as_deref(),
            0..=max_items,
            DEFAULT_TOTAL_ITEMS.min(max_items),
        )?;
        let delay_ms = int_param(
            "delay",
            self.delay.as_deref(),
            0..=MAX_DELAY_MS,
            DEFAULT_DELAY_MS,
        )?;
        let format = choice_param("format", self.format.as_deref(), &FORMATS, Format::Json)?;
        Ok(StreamSpec {
            chunk_size,
            total_items,
            delay: std::time::Duration::from_millis(delay_ms),
            format,
        })
    }
}

/// A chunked response of `totalItems` generated items, produced lazily.
///
/// Each group of `chunkSize` items is written and flushed as it is produced, `delay` ms apart.
/// The producer waits while the client reads slowly and stops when it goes away, so server memory
/// does not grow with `totalItems`.
#[utoipa::path(
    get,
    path = "/stream",
    tag = tags::STREAMING,
    security(("bearerAuth" = [])),
    params(StreamQuery),
    responses(
        (status = 200, description = "The items, streamed in the requested framing",
            content(
                (Vec<StreamItem> = "application/json"),
                ("application/x-ndjson", item_schema = StreamItem),
            )),
        (status = 400, body = ErrorBody,
            description = "`invalid_input`: a parameter is not an integer in its range, or an \
                unknown `format`"),
        (status = 503, body = ErrorBody,
            description = "`too_many_streams`: `STREAM_MAX_CONCURRENT` responses are open",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn stream(
    _: Access<Stream>,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let spec = query.parse(state.config.stream.max_items)?;
    let slot = state
        .item_streams
        .try_acquire()
        .ok_or(ApiError::Unavailable {
            code: "too_many_streams",
            message: "Too many open streamed responses; retry later",
            retry_after: ITEM_STREAMS_FULL_RETRY_AFTER,
        })?;
    // The slot is freed when the body is dropped: sent whole, or the client gone.
    let items = ItemStream::new(spec, StreamMeter::new(&state.metrics)).map(move |chunk| {
        let _held = &slot;
        chunk
    });
    Ok((
        [
            (header::CONTENT_TYPE, spec.format.content_type()),
            (header::CACHE_CONTROL, "no-cache"),
            (X_ACCEL_BUFFERING, "no"),
        ],
        Body::from_stream(items),
    )
        .into_response())
}
