//! The HTTP API of contract section 3: the registry, the volunteers' own
//! calls, the alert actions and the operational probes.
//!
//! A thin adapter: handlers authenticate through the extractors of [`auth`],
//! turn request DTOs into domain types at the edge (`TryFrom`), send every
//! state change of an alert or of a volunteer's dispatch state to the
//! [`Engine`] and read everything else from the [`Store`]. Errors of every
//! layer become one [`ApiError`] with the contract's JSON body.
//!
//! Each routes module exports `router()`; [`router`] merges them and adds
//! the request trace and the body limit.

pub mod access;
pub mod alerts;
pub mod auth;
pub mod error;
pub mod extract;
pub mod health;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod push;
pub mod qr;
pub mod registry;
pub mod serve;
pub mod stats;
pub mod validate;
pub mod volunteer;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use sha2::{Digest, Sha256};
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::engine::Engine;
use crate::store::Store;

pub use auth::{Caller, Operator, VolunteerAuth};
pub use error::ApiError;

/// The largest request body read, in bytes; a larger one is a 413. The
/// biggest legitimate body (a senior with notes and contacts) is a few KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a client may take to send a request's body: a slow or stalled
/// client does not hold a connection and a handler for ever.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    pub settings: Arc<Settings>,
    /// sha256 (hex) of the operator token
    pub operator_token_hash: Arc<str>,
    /// true while the MQTT connection is up
    pub mqtt_connected: tokio::sync::watch::Receiver<bool>,
    /// Every alert the engine commits a change to (live views subscribe).
    pub alerts: tokio::sync::broadcast::Sender<crate::domain::Alert>,
    /// Cancelled when the service stops: open live views end on it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The public half of the service's VAPID key, and which push
    /// endpoints a subscription may name.
    pub push: PushConfig,
    /// The volunteers with a push subscription or an ntfy topic (told
    /// when either changes).
    pub reachable: crate::notify::Reachable,
    /// Verifies signed offer links (`POST /v1/offers/{id}/{action}`).
    pub link_key: crate::notify::links::LinkKey,
    /// The process's metrics recorder, rendered by `GET /metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Who may do what on the broker; told when a credential changes.
    pub access: Arc<crate::access::AccessControl>,
}

/// The whole API, ready to serve.
/// What the push routes need.
#[derive(Clone)]
pub struct PushConfig {
    pub public_key: String,
    pub policy: crate::notify::webpush::EndpointPolicy,
}

pub fn router(state: AppState) -> Router {
    api_routes()
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            BODY_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(live::request_span))
        .with_state(state)
}

/// The routes without layers or fallbacks, for a caller that adds its own
/// (further routes are merged here).
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(pages::router())
        .merge(registry::router())
        .merge(access::router())
        .merge(qr::router())
        .merge(volunteer::router())
        .merge(push::router())
        .merge(alerts::router())
        .merge(live::router())
        .merge(stats::router())
        .merge(metrics::router())
        .merge(openapi::router())
}

/// `response` with `Cache-Control: no-store`: for answers that carry a
/// secret shown once.
pub fn no_store(response: impl axum::response::IntoResponse) -> axum::response::Response {
    let mut response = response.into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// The hex SHA-256 of a token: what is stored and compared, never the token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh bearer token: 32 bytes from the thread's CSPRNG, hex-encoded
/// (64 URL-safe characters).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_token_is_hex_sha256() {
        // sha256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn new_tokens_are_long_url_safe_and_distinct() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
