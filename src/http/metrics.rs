//! `GET /metrics` (no auth): the process's metrics in the Prometheus text
//! format, as the recorder installed by [`crate::app::metrics_handle`]
//! holds them. The health gauges are set at each scrape, just before
//! rendering: `onepress_store_up` (the store answered a ping within
//! [`STORE_PING_TIMEOUT`]) and `onepress_mqtt_connected` (connected and
//! subscribed). Every other series is counted where it happens; the
//! catalogue is [`crate::telemetry::describe_metrics`].

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

/// How long a scrape waits for the store before calling it down.
pub const STORE_PING_TIMEOUT: Duration = Duration::from_secs(1);

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format: at least \
            `onepress_ingest_rejected_total{reason}`, `onepress_alerts_total{kind}`, \
            `onepress_offers_total{outcome}`, `onepress_breaches_total{target}` and the histograms \
            `onepress_press_to_offer_seconds` and `onepress_press_to_accept_seconds`.",
            body = String, content_type = "text/plain"),
    )
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let store_up = matches!(
        tokio::time::timeout(STORE_PING_TIMEOUT, state.store.ping()).await,
        Ok(Ok(()))
    );
    let mqtt_up = *state.mqtt_connected.borrow();
    metrics::gauge!("onepress_store_up").set(if store_up { 1.0 } else { 0.0 });
    metrics::gauge!("onepress_mqtt_connected").set(if mqtt_up { 1.0 } else { 0.0 });
    ([(CONTENT_TYPE, PROMETHEUS_TEXT)], state.metrics.render())
}
