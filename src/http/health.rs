//! The operational probes (no auth): `GET /healthz`, alive as long as the
//! process answers, and `GET /readyz`, ready only while the store answers a
//! ping and the MQTT connection is up. The readiness body says which part is
//! down, so an orchestrator's log tells why traffic was withheld.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// How long readiness waits for the store before calling it down.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process answers.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// Liveness: 200 as long as the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Whether the service can take work, and which part is down if not.
#[derive(Debug, Serialize, PartialEq, ToSchema)]
struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// `up` or `down`.
    store: &'static str,
    /// `up` or `down`.
    mqtt: &'static str,
}

impl Readiness {
    fn of(store_up: bool, mqtt_up: bool) -> (StatusCode, Self) {
        let word = |up: bool| if up { "up" } else { "down" };
        let ready = store_up && mqtt_up;
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (
            status,
            Readiness {
                status: if ready { "ready" } else { "unavailable" },
                store: word(store_up),
                mqtt: word(mqtt_up),
            },
        )
    }
}

/// Readiness: 200 only while the store answers and the MQTT connection is up.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: the body says which part is down", body = Readiness),
    )
)]
#[tracing::instrument(skip_all)]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let store_up = match tokio::time::timeout(STORE_PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store is down");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: the store did not answer in time");
            false
        }
    };
    let mqtt_up = *state.mqtt_connected.borrow();
    if !mqtt_up {
        tracing::warn!("readiness: the MQTT connection is down");
    }
    let (status, body) = Readiness::of(store_up, mqtt_up);
    (status, Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_both_are_up() {
        assert_eq!(Readiness::of(true, true).0, StatusCode::OK);
        let (status, body) = Readiness::of(true, false);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body.mqtt, "down");
        assert_eq!(body.store, "up");
        let (status, body) = Readiness::of(false, true);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body.store, "down");
    }
}
