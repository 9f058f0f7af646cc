//! `GET /v1/alerts/stream`: the operators' live view, as Server-Sent Events.
//!
//! Each alert the engine commits a change to (a press, an offer, an
//! accept, a breach or an escalation at the moment it happens, a
//! resolution…) is sent as an `alert` event whose data is the alert as
//! `GET /v1/alerts/{id}` shows it, without the timeline. The engine's
//! broadcast channel never blocks the engine: a client that falls behind
//! loses the oldest changes and is sent a `resync` event
//! (`{"missed": n}`), after which it should re-read `GET /v1/alerts`; the
//! stream then goes on. A keep-alive comment goes out every
//! [`KEEP_ALIVE`] of silence, and every stream ends when the service
//! shuts down (graceful shutdown waits for open connections).
//!
//! Operators only. Since a browser's `EventSource` cannot set an
//! `Authorization` header, this one endpoint also takes the token as
//! `?access_token=` (an extension of the contract); a header, when
//! present, wins. So that such a token never reaches a log, the request
//! span of the whole router ([`request_span`]) writes `access_token=***`.
//! This module never changes anything.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::auth::{Caller, Operator, caller_of_token};
use super::error::ApiError;
use super::openapi::{Forbidden, Unauthorized, Unavailable};
use crate::domain::Alert;

/// The longest silence on a stream before a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/alerts/stream", get(stream))
}

/// An operator, by `Authorization: Bearer` or by `?access_token=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOperator;

#[derive(Debug, Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

impl FromRequestParts<AppState> for StreamOperator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.contains_key(AUTHORIZATION) {
            return Operator::from_request_parts(parts, state)
                .await
                .map(|_| StreamOperator);
        }
        // Only under its literal name, the one the request log redacts.
        let named = parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("access_token=")));
        let token = Query::<TokenQuery>::try_from_uri(&parts.uri)
            .ok()
            .filter(|_| named)
            .and_then(|Query(q)| q.access_token)
            .filter(|t| !t.trim().is_empty())
            .ok_or(ApiError::Unauthorized)?;
        match caller_of_token(token.trim(), state).await? {
            Caller::Operator => Ok(StreamOperator),
            Caller::Volunteer(_) => Err(ApiError::forbidden("this call is for operators")),
        }
    }
}

/// What a live view is told.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// An alert as it now stands.
    Alert(Box<Alert>),
    /// This many changes were lost: re-read the list.
    Resync { missed: u64 },
}

impl LiveEvent {
    /// The SSE form: `event: alert` or `event: resync`, JSON data.
    pub fn into_sse(self) -> Event {
        match self {
            LiveEvent::Alert(alert) => match Event::default().event("alert").json_data(&alert) {
                Ok(event) => event,
                Err(e) => {
                    // Cannot happen for plain data; if it did, the client
                    // missed one change and should re-read.
                    tracing::error!(alert_id = %alert.id, error = %e, "alert not serialisable");
                    LiveEvent::Resync { missed: 1 }.into_sse()
                }
            },
            LiveEvent::Resync { missed } => Event::default()
                .event("resync")
                .data(format!(r#"{{"missed":{missed}}}"#)),
        }
    }
}

/// The alert changes of `rx` as live events, until `stop` is cancelled or
/// the channel closes. A lag becomes one `Resync` and the stream goes on
/// with the oldest change still held.
pub fn live_events(
    rx: broadcast::Receiver<Alert>,
    stop: CancellationToken,
) -> impl Stream<Item = LiveEvent> + Send + 'static {
    futures::stream::unfold((rx, stop), |(mut rx, stop)| async move {
        let event = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            received = rx.recv() => match received {
                Ok(alert) => LiveEvent::Alert(Box::new(alert)),
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "a live view fell behind");
                    LiveEvent::Resync { missed }
                }
                Err(RecvError::Closed) => return None,
            },
        };
        Some((event, (rx, stop)))
    })
}

/// The SSE response for a stream of live events, with keep-alives.
pub fn sse(
    events: impl Stream<Item = LiveEvent> + Send + 'static,
    keep_alive: Duration,
) -> impl IntoResponse {
    let events = events.map(|e| Ok::<_, Infallible>(e.into_sse()));
    (
        // Tells a reverse proxy (nginx) not to buffer the stream.
        [(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        )],
        Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive")),
    )
}

/// The span of every HTTP request (as tower-http's default: `request`,
/// at debug level, with method, URI and version), the URI with the value
/// of any `access_token` query parameter replaced by `***`.
pub fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        uri = %redact_access_token(&request.uri().to_string()),
        version = ?request.version(),
    )
}

/// A URI (or query) with every `access_token=` value replaced by `***`.
pub fn redact_access_token(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_string();
    };
    let query: Vec<&str> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("access_token", _)) => "access_token=***",
            // The volunteer page accepts its token as `?token=` once.
            Some(("token", _)) => "token=***",
            _ => pair,
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Every change to an alert, live, as Server-Sent Events (never ends by
/// itself; a keep-alive comment every 15 s of silence).
#[utoipa::path(
    get,
    path = "/v1/alerts/stream",
    tag = "alerts",
    params(("access_token" = Option<String>, Query,
        description = "The operator token, for clients that cannot send a header (a browser's \
            `EventSource`); a header, when present, wins (an extension).")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "`event: alert` whose data is the alert (an `Alert`, without the \
                timeline) on every change; `event: resync` with data `{\"missed\": n}` when this \
                client fell behind and lost changes (an extension: re-read `GET /v1/alerts`)."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = []), ("access_token" = [])),
)]
#[tracing::instrument(skip_all)]
async fn stream(_: StreamOperator, State(state): State<AppState>) -> impl IntoResponse {
    // Subscribed before the answer starts: nothing committed after the
    // client sees the headers is missed.
    let rx = state.alerts.subscribe();
    tracing::debug!("live view opened");
    sse(live_events(rx, state.shutdown.clone()), KEEP_ALIVE)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::domain::alert::{AlertKind, AlertState, Timestamp};
    use crate::domain::{AlertId, DeviceId, EventId, SeniorId};

    fn alert(id: &str) -> Alert {
        let t0: Timestamp = "2026-11-25T03:00:00Z".parse().unwrap();
        Alert {
            id: AlertId::parse(id).unwrap(),
            device_id: DeviceId::parse("band-1").unwrap(),
            senior_id: SeniorId::parse("s-1").unwrap(),
            kind: AlertKind::Sos,
            state: AlertState::Open,
            lat: None,
            lon: None,
            pressed_at: t0,
            received_at: t0,
            volunteer_id: None,
            accepted_at: None,
            on_scene_at: None,
            resolved_at: None,
            cancelled_at: None,
            response_deadline: t0 + TimeDelta::minutes(3),
            arrival_deadline: t0 + TimeDelta::minutes(10),
            response_breached: false,
            arrival_breached: false,
            escalated: true,
            arrival_at_risk: false,
            event_id: EventId::parse("e-1").unwrap(),
            outcome: None,
            offers: Vec::new(),
        }
    }

    fn alert_event(id: &str) -> LiveEvent {
        LiveEvent::Alert(Box::new(alert(id)))
    }

    #[tokio::test]
    async fn changes_are_passed_on_in_order() {
        let (tx, rx) = broadcast::channel(16);
        let stop = CancellationToken::new();
        let mut events = Box::pin(live_events(rx, stop.clone()));
        tx.send(alert("a1")).unwrap();
        tx.send(alert("a2")).unwrap();
        assert_eq!(events.next().await, Some(alert_event("a1")));
        assert_eq!(events.next().await, Some(alert_event("a2")));
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_is_told_to_resync_and_goes_on() {
        let (tx, rx) = broadcast::channel(1);
        let mut events = Box::pin(live_events(rx, CancellationToken::new()));
        // The sender never waits for the slow reader.
        for id in ["a1", "a2", "a3"] {
            tx.send(alert(id)).unwrap();
        }
        assert_eq!(events.next().await, Some(LiveEvent::Resync { missed: 2 }));
        assert_eq!(events.next().await, Some(alert_event("a3")));
        tx.send(alert("a4")).unwrap();
        assert_eq!(events.next().await, Some(alert_event("a4")));
    }

    #[tokio::test]
    async fn the_stream_ends_at_shutdown_even_with_changes_waiting() {
        let (tx, rx) = broadcast::channel(16);
        let stop = CancellationToken::new();
        let mut events = Box::pin(live_events(rx, stop.clone()));
        tx.send(alert("a1")).unwrap();
        stop.cancel();
        assert_eq!(events.next().await, None);
    }

    #[tokio::test]
    async fn the_stream_ends_when_the_engine_is_gone() {
        let (tx, rx) = broadcast::channel::<Alert>(16);
        let mut events = Box::pin(live_events(rx, CancellationToken::new()));
        drop(tx);
        assert_eq!(events.next().await, None);
    }

    async fn body_text(response: axum::response::Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn events_are_written_as_named_sse_events_with_json_data() {
        let events = futures::stream::iter([alert_event("a1"), LiveEvent::Resync { missed: 7 }]);
        let response = sse(events, KEEP_ALIVE).into_response();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        let text = body_text(response).await;
        let mut blocks = text.split("\n\n").filter(|b| !b.is_empty());
        let first = blocks.next().unwrap();
        let data = first.strip_prefix("event: alert\ndata: ").unwrap();
        let json: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(json["id"], "a1");
        assert_eq!(json["state"], "open");
        assert_eq!(json["escalated"], true);
        assert!(json.get("timeline").is_none());
        assert_eq!(blocks.next(), Some("event: resync\ndata: {\"missed\":7}"));
        assert_eq!(blocks.next(), None);
    }

    #[test]
    fn access_tokens_never_reach_the_request_log() {
        assert_eq!(
            redact_access_token("/v1/alerts/stream?access_token=s3cret"),
            "/v1/alerts/stream?access_token=***"
        );
        assert_eq!(
            redact_access_token("/x?a=1&access_token=s3cret&b=2"),
            "/x?a=1&access_token=***&b=2"
        );
        assert_eq!(
            redact_access_token("/v1/alerts?state=all"),
            "/v1/alerts?state=all"
        );
        assert_eq!(redact_access_token("/healthz"), "/healthz");
        assert_eq!(
            redact_access_token("/volunteer?token=s3cret"),
            "/volunteer?token=***"
        );
    }

    #[tokio::test]
    async fn a_quiet_stream_sends_keep_alive_comments() {
        let every = Duration::from_millis(50);
        let response = sse(futures::stream::pending(), every).into_response();
        let mut body = response.into_body().into_data_stream();
        let started = tokio::time::Instant::now();
        for _ in 0..2 {
            let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
                .await
                .expect("a keep-alive in time")
                .unwrap()
                .unwrap();
            assert_eq!(&chunk[..], b": keep-alive\n\n");
        }
        assert!(started.elapsed() >= every * 2);
    }
}
