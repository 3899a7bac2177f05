//! `GET /notifications`: the event bus as Server-Sent Events.
//!
//! A stream opens with the `connected` message (carrying the `retry:` hint and no `id:`, so a
//! reconnecting browser keeps its `Last-Event-ID`), then, for a client that resumes, a notice if
//! events were lost and every retained event after its id, then live events. Events are unnamed
//! (no `event:` line) so `EventSource.onmessage` receives them. A client that falls behind gets
//! the same kind of notice and carries on. Every stream ends when the server stops, so open
//! browsers never hold up a graceful shutdown; each holds one of `SSE_MAX_CONNECTIONS` slots.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::error::ApiError;
use crate::events::{Delivery, SubscriberSlot};
use crate::extract::{ApiQuery, int_param};

/// Data of the first event, as in the original demo.
const CONNECTED: &str = r#"{"message":"Connected to notification stream"}"#;
/// How long a browser waits before reconnecting a dropped stream (the `retry:` hint).
const RECONNECT_AFTER: Duration = Duration::from_secs(3);
/// `Retry-After` when every stream slot is taken.
const RETRY_WHEN_FULL: Duration = Duration::from_secs(5);
/// Text of the keep-alive comment lines.
const KEEP_ALIVE_TEXT: &str = "keep-alive";
/// The header a reconnecting `EventSource` sends.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// Asks proxies such as nginx not to buffer the stream.
const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// `GET /notifications`.
pub fn router() -> Router<AppState> {
    Router::new().route("/notifications", get(notifications))
}

/// `lastEventId` is the query form of `Last-Event-ID`, for clients behind proxies that drop it.
#[derive(Debug, Deserialize)]
struct NotificationsQuery {
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

async fn notifications(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<NotificationsQuery>,
) -> Result<Response, ApiError> {
    let resume_after = resume_point(&headers, query.last_event_id.as_deref())?;
    let slot = state
        .subscribers
        .try_acquire()
        .ok_or(ApiError::Unavailable {
            code: "too_many_streams",
            message: "Too many open event streams; retry later",
            retry_after: RETRY_WHEN_FULL,
        })?;
    let skipped = state.metrics.counter("sse_events_skipped_total", &[]);
    let deliveries = state.events.subscribe(resume_after).into_deliveries();
    let connected = SseEvent::default().retry(RECONNECT_AFTER).data(CONNECTED);
    let events = stream::once(async move { connected })
        .chain(deliveries.map(move |delivery| {
            if let Delivery::Lagged { skipped: n } = delivery {
                skipped.increment(n);
            }
            to_sse(delivery)
        }))
        .take_until(state.shutdown.wait_owned())
        .map(Ok::<_, Infallible>)
        .boxed();
    let keep_alive = KeepAlive::new()
        .interval(state.config.sse_keepalive)
        .text(KEEP_ALIVE_TEXT);
    let sse = Sse::new(SlotHeld {
        events,
        _slot: slot,
    })
    .keep_alive(keep_alive);
    Ok(([(X_ACCEL_BUFFERING, "no")], sse).into_response())
}

/// The id to resume after: the `Last-Event-ID` header (what a browser sends when it reconnects)
/// wins over the `lastEventId` query. An empty value means none, as in the SSE specification.
fn resume_point(headers: &HeaderMap, query: Option<&str>) -> Result<Option<u64>, ApiError> {
    let (field, raw) = match headers.get(&LAST_EVENT_ID) {
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::invalid_input("Last-Event-ID", "Last-Event-ID must be an event id")
            })?;
            ("Last-Event-ID", text)
        }
        None => ("lastEventId", query.unwrap_or_default()),
    };
    if raw.trim().is_empty() {
        return Ok(None);
    }
    int_param(field, Some(raw), 0..=u64::MAX, 0).map(Some)
}

fn to_sse(delivery: Delivery) -> SseEvent {
    match delivery {
        Delivery::Event(event) => SseEvent::default()
            .id(itoa::Buffer::new().format(event.id))
            .data(&*event.data),
        Delivery::Lagged { skipped } => SseEvent::default().data(lagged_notice(skipped)),
    }
}

/// The notice sent in place of events a client missed. Unnamed and without `id:`, like the
/// connected message, so the client's `Last-Event-ID` stays the last event it really received.
fn lagged_notice(skipped: u64) -> String {
    json!({
        "type": "warning",
        "event": "stream.lagged",
        "message": format!("{skipped} events were skipped because this client fell behind"),
        "skipped": skipped,
        "timestamp": crate::clock::now_rfc3339(),
    })
    .to_string()
}

/// An event stream that keeps its subscriber slot taken for as long as the response lives.
struct SlotHeld<S> {
    events: S,
    _slot: SubscriberSlot,
}

impl<S: Stream + Unpin> Stream for SlotHeld<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.events.poll_next_unpin(cx)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with_header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            LAST_EVENT_ID,
            HeaderValue::from_str(value).expect("valid header"),
        );
        headers
    }

    #[test]
    fn the_header_wins_over_the_query() {
        assert_eq!(
            resume_point(&with_header("7"), Some("3")).ok(),
            Some(Some(7))
        );
        assert_eq!(
            resume_point(&HeaderMap::new(), Some("3")).ok(),
            Some(Some(3))
        );
        assert_eq!(resume_point(&HeaderMap::new(), None).ok(), Some(None));
        assert_eq!(resume_point(&with_header(""), Some("3")).ok(), Some(None));
    }

    #[test]
    fn a_bad_id_names_where_it_came_from() {
        for (headers, query, field) in [
            (with_header("abc"), None, "Last-Event-ID"),
            (HeaderMap::new(), Some("-1"), "lastEventId"),
            (HeaderMap::new(), Some("1.5"), "lastEventId"),
        ] {
            match resume_point(&headers, query) {
                Err(ApiError::InvalidInput { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected a 400 for {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_lagged_notice_says_how_many_were_skipped() {
        let notice: serde_json::Value =
            serde_json::from_str(&lagged_notice(5)).expect("notice is JSON");
        assert_eq!(notice["event"], "stream.lagged");
        assert_eq!(notice["skipped"], 5);
        assert_eq!(notice["type"], "warning");
        assert!(notice["timestamp"].is_string());
    }
}
