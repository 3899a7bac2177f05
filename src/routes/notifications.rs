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

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::events::{Delivery, Level, NewEvent, SubscriberSlot};
use crate::extract::{ApiQuery, int_param};
use crate::fault::STREAMS_FULL_RETRY_AFTER;
use crate::openapi::tags;
use crate::routes::X_ACCEL_BUFFERING;
use crate::routes::access::{Access, Notifications};
use crate::routes::fields::parse_uuid;

/// Data of the first event, as in the original demo.
const CONNECTED: &str = r#"{"message":"Connected to notification stream"}"#;
/// How long a browser waits before reconnecting a dropped stream (the `retry:` hint).
const RECONNECT_AFTER: Duration = Duration::from_secs(3);
/// Text of the keep-alive comment lines.
const KEEP_ALIVE_TEXT: &str = "keep-alive";
/// The header a reconnecting `EventSource` sends.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// `GET /notifications`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(notifications))
}

/// `lastEventId` is the query form of `Last-Event-ID`, for clients behind proxies that drop it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct NotificationsQuery {
    /// Resume after this event id, for clients that cannot send `Last-Event-ID` (which wins when
    /// both are sent). Empty means none.
    #[serde(rename = "lastEventId")]
    #[param(value_type = Option<u64>, minimum = 0)]
    last_event_id: Option<String>,
    /// Only the events of this task (`queue.*` events whose `taskId` it is), plus the
    /// connected message, lag notices and keep-alives: what a worker or a page following one
    /// task needs.
    #[param(value_type = Option<uuid::Uuid>, example = "5f0c3b7e-8a2d-4c1e-9b6f-2d4e8a1c7b3f")]
    task: Option<String>,
}

/// The header a reconnecting `EventSource` sends.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads it with the query fallback"
)]
struct ResumeHeader {
    /// Resume after this event id; wins over `lastEventId`. Empty means none.
    #[param(rename = "Last-Event-ID", minimum = 0)]
    last_event_id: Option<u64>,
}

/// One Server-Sent Event.
#[derive(ToSchema)]
#[expect(dead_code, reason = "documentation only: events are written by `Sse`")]
struct ServerSentEvent {
    /// The event id, for `Last-Event-ID`; absent on the connected message and on lag notices,
    /// so that a client's last id is always an event it really received.
    #[schema(nullable = false, example = "42")]
    id: Option<String>,
    /// A `NotificationData` object as JSON text.
    #[schema(schema_with = notification_data_text)]
    data: String,
    /// Milliseconds a browser waits before reconnecting; sent with the connected message.
    #[schema(nullable = false)]
    retry: Option<u64>,
}

/// The JSON of an event's `data:` line.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "documentation only: the event bus builds events as JSON maps"
)]
struct NotificationData {
    /// The event id, equal to its `id:` line. Every event but the connected message and lag
    /// notices has one.
    #[schema(nullable = false)]
    id: Option<u64>,
    #[schema(inline, nullable = false)]
    r#type: Option<Level>,
    /// Human-readable text; the first event of a stream is just
    /// `{"message":"Connected to notification stream"}`.
    #[schema(example = "Task enqueued: Process payment")]
    message: String,
    /// The application event: `queue.enqueued`, `queue.dequeued`, `queue.leased`,
    /// `queue.acked`, `queue.retried`, `queue.expired`, `queue.dead`, `queue.deleted`,
    /// `auth.login`, `auth.logout`, or `stream.lagged` when this client fell behind and events
    /// were skipped. Absent on periodic notifications.
    #[schema(nullable = false, example = "queue.enqueued")]
    event: Option<String>,
    /// Queue events: the task's id.
    #[schema(nullable = false)]
    task_id: Option<uuid::Uuid>,
    /// Queue events: the task.
    #[schema(nullable = false)]
    task: Option<String>,
    /// Queue events: the task's priority.
    #[schema(nullable = false)]
    priority: Option<i64>,
    /// `queue.enqueued` and `queue.dequeued`: tasks available afterwards.
    #[schema(nullable = false)]
    queue_size: Option<u64>,
    /// `queue.enqueued`: `queued`, or `delayed` until `availableAt`.
    #[schema(nullable = false)]
    state: Option<String>,
    /// `queue.enqueued` (delayed) and `queue.retried`: when the task is available, in ms since
    /// the epoch.
    #[schema(nullable = false)]
    available_at: Option<u64>,
    /// Delivery events: the delivery's number, from 1 (0 for a dead letter retried).
    #[schema(nullable = false)]
    attempt: Option<u32>,
    /// `queue.leased`: deliveries allowed.
    #[schema(nullable = false)]
    max_attempts: Option<u32>,
    /// `queue.leased`: when the lease runs out, in ms since the epoch.
    #[schema(nullable = false)]
    lease_expires_at: Option<u64>,
    /// `queue.retried`: `nack` or `dead_letter`; `queue.dead`: `nack` or `expired`.
    #[schema(nullable = false)]
    cause: Option<String>,
    /// `stream.lagged`: how many events this client missed.
    #[schema(nullable = false)]
    skipped: Option<u64>,
    /// When the event was published (RFC 3339).
    #[schema(nullable = false, format = DateTime)]
    timestamp: Option<String>,
}

fn notification_data_text() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .content_media_type("application/json")
        .content_schema(Some(NotificationData::schema()))
        .build()
}

/// A Server-Sent Events stream of notifications and application events.
///
/// Opens with `data: {"message":"Connected to notification stream"}` and a `retry:` hint, then,
/// for a client that resumes (`Last-Event-ID` header or `lastEventId` query), every retained event
/// after that id, then live events: one notification every `NOTIFY_INTERVAL_MS`, the same for
/// every subscriber, plus application events. Events are unnamed, so `EventSource.onmessage`
/// receives them; each has an `id:` line. Keep-alive comments keep idle connections open. A
/// client that falls behind skips ahead and is told so. The stream ends when the server stops.
///
/// ```text
/// retry: 3000
/// data: {"message":"Connected to notification stream"}
///
/// id: 1
/// data: {"id":1,"type":"info","message":"New user registered","timestamp":"2026-11-23T14:55:22Z"}
/// ```
#[utoipa::path(
    get,
    path = "/notifications",
    tag = tags::NOTIFICATIONS,
    security(("bearerAuth" = [])),
    params(NotificationsQuery, ResumeHeader),
    responses(
        (status = 200, description = "The event stream",
            headers(
                ("Cache-Control" = String, description = "`no-cache`"),
                ("X-Accel-Buffering" = String, description = "`no`: proxies must not buffer"),
            ),
            content(("text/event-stream", item_schema = inline(ServerSentEvent)))),
        (status = 400, body = ErrorBody,
            description = "`invalid_input`: `Last-Event-ID` or `lastEventId` is not an event id, \
                or `task` is not a UUID"),
        (status = 503, body = ErrorBody,
            description = "`too_many_streams` (`SSE_MAX_CONNECTIONS` streams are open) or \
                `store_unavailable` (the event store does not answer)",
            headers(("Retry-After" = u64, description = "Seconds to wait before reconnecting"))),
    ),
)]
async fn notifications(
    _: Access<Notifications>,
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
            retry_after: STREAMS_FULL_RETRY_AFTER,
        })?;
    let only = query
        .task
        .as_deref()
        .filter(|raw| !raw.is_empty())
        .map(|raw| parse_uuid("task", raw).map(TaskFilter::new))
        .transpose()?;
    let skipped = state.metrics.counter("sse_events_skipped_total", &[]);
    let deliveries = state
        .events
        .subscribe(resume_after)
        .await?
        .into_deliveries()
        .filter(move |delivery| {
            std::future::ready(only.as_ref().is_none_or(|only| only.keeps(delivery)))
        });
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
        .interval(state.config.events.sse_keepalive)
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
    NewEvent::app(
        "stream.lagged",
        Level::Warning,
        format_args!("{skipped} events were skipped because this client fell behind"),
    )
    .with("skipped", skipped)
    .to_json_without_id()
}

/// The events of one task.
///
/// An application event names its task in a `"taskId":"<uuid>"` member. Every other string
/// the bus writes is JSON-escaped, so a quote inside a value is written `\"` and that exact
/// text can only be the member itself: a substring search finds the task's events without
/// parsing every event.
struct TaskFilter {
    needle: String,
}

impl TaskFilter {
    fn new(task: uuid::Uuid) -> Self {
        Self {
            needle: format!("\"taskId\":\"{task}\""),
        }
    }

    /// Whether `delivery` goes to a client following this task: its events, and lag notices.
    fn keeps(&self, delivery: &Delivery) -> bool {
        match delivery {
            Delivery::Event(event) => event.data.contains(&self.needle),
            Delivery::Lagged { .. } => true,
        }
    }
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
    fn a_task_filter_keeps_that_tasks_events_only() {
        let mine = uuid::Uuid::new_v4();
        let other = uuid::Uuid::new_v4();
        let event = |id: uuid::Uuid, text: &str| {
            let bus = crate::events::MemoryEventBus::new(1);
            bus.publish_now(
                NewEvent::app("queue.leased", Level::Info, "leased")
                    .with("taskId", id)
                    .with("task", text),
            );
            let replay = bus.subscribe_now(Some(0)).replay;
            Delivery::Event(replay[0].clone())
        };
        let filter = TaskFilter::new(mine);
        assert!(filter.keeps(&event(mine, "mine")));
        assert!(!filter.keeps(&event(other, "other")));
        let forged = format!(r#"pretend "taskId":"{mine}" is here"#);
        assert!(
            !filter.keeps(&event(other, &forged)),
            "a task's text cannot pass for another task's id"
        );
        assert!(filter.keeps(&Delivery::Lagged { skipped: 3 }));
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
