//! `GET /stream`: a chunked response of generated items (see [`crate::stream`]).

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, choice_param, int_param};
use crate::stream::{
    DEFAULT_CHUNK_SIZE, DEFAULT_DELAY_MS, DEFAULT_TOTAL_ITEMS, Format, ItemStream, MAX_CHUNK_SIZE,
    MAX_DELAY_MS, StreamMeter, StreamSpec,
};

/// Asks proxies such as nginx not to hold chunks back, so each one reaches the client as made.
const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// `GET /stream`.
pub fn router() -> Router<AppState> {
    Router::new().route("/stream", get(stream))
}

/// The raw query; each value is parsed with its range so a bad one is named in the 400.
#[derive(Debug, Deserialize)]
struct StreamQuery {
    #[serde(rename = "chunkSize")]
    chunk_size: Option<String>,
    #[serde(rename = "totalItems")]
    total_items: Option<String>,
    delay: Option<String>,
    format: Option<String>,
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
        let format = choice_param(
            "format",
            self.format.as_deref(),
            &[("json", Format::Json), ("ndjson", Format::Ndjson)],
            Format::Json,
        )?;
        Ok(StreamSpec {
            chunk_size,
            total_items,
            delay: std::time::Duration::from_millis(delay_ms),
            format,
        })
    }
}

async fn stream(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let spec = query.parse(state.config.stream_max_items)?;
    let items = ItemStream::new(spec, StreamMeter::new(&state.metrics));
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
