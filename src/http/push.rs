//! Web Push for volunteers (an extension): the page asks for the service's
//! public VAPID key (`GET /v1/push/key`, no auth: it is public), subscribes
//! with the browser's push service, and hands the subscription over
//! (`POST /v1/me/push`); `DELETE /v1/me/push` takes it back. Offers are then
//! pushed to every subscription of the volunteer, with the page closed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::VolunteerAuth;
use super::error::ApiError;
use super::extract::{ApiJson, object};
use super::openapi::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable, Unprocessable,
};
use crate::domain::registry::PushEndpoint;
use crate::notify::webpush::{PushSubscription, PushSubscriptionJson, PushSubscriptionKeys};

/// Subscriptions kept per volunteer (a phone, a tablet, a laptop…); the
/// oldest goes when a new one comes past this.
pub const PER_VOLUNTEER: u32 = 10;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/push/key", get(key))
        .route("/v1/me/push", post(subscribe).delete(unsubscribe))
}

/// The service's public VAPID key, as the browser's
/// `pushManager.subscribe({applicationServerKey})` takes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushKey {
    /// The P-256 public key, uncompressed, base64url without padding.
    pub public_key: String,
}

/// The service's public VAPID key (public: no auth).
#[utoipa::path(
    get,
    path = "/v1/push/key",
    tag = "volunteer",
    responses((status = 200, description = "The key", body = PushKey)),
)]
async fn key(State(state): State<AppState>) -> Json<PushKey> {
    Json(PushKey {
        public_key: state.push.public_key.clone(),
    })
}

/// A browser's push subscription, as `PushSubscription.toJSON()` gives it
/// (`expirationTime` and other members are ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionBody {
    /// The push service's URL for this browser (https).
    #[schema(max_length = 2048, pattern = r"^[^\u0000]*$")]
    pub endpoint: String,
    #[serde(deserialize_with = "object::required")]
    pub keys: SubscriptionKeys,
}

/// The browser's keys, base64url.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key (65 bytes).
    #[schema(max_length = 100, pattern = r"^[^\u0000]*$")]
    pub p256dh: String,
    /// The authentication secret (16 bytes).
    #[schema(max_length = 40, pattern = r"^[^\u0000]*$")]
    pub auth: String,
}

/// The subscription as kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct Subscribed {
    pub endpoint: String,
}

/// Keeps a push subscription for the calling volunteer: offers are pushed
/// to it from now on. The same endpoint again replaces it.
#[utoipa::path(
    post,
    path = "/v1/me/push",
    tag = "volunteer",
    request_body = SubscriptionBody,
    responses(
        (status = 201, description = "Kept", body = Subscribed),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["volunteer"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(volunteer_id = %id))]
async fn subscribe(
    VolunteerAuth(id): VolunteerAuth,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SubscriptionBody>,
) -> Result<(StatusCode, Json<Subscribed>), ApiError> {
    let json = PushSubscriptionJson {
        endpoint: body.endpoint,
        keys: PushSubscriptionKeys {
            p256dh: body.keys.p256dh,
            auth: body.keys.auth,
        },
    };
    let checked = PushSubscription::parse(&json, state.push.policy)
        .map_err(|e| ApiError::Unprocessable(format!("subscription: {e}")))?;
    let stored = PushEndpoint {
        endpoint: checked.endpoint().to_string(),
        p256dh: json.keys.p256dh,
        auth: json.keys.auth,
    };
    state
        .store
        .add_push_endpoint(&id, &stored, crate::engine::now(), PER_VOLUNTEER)
        .await?;
    state.reachable.refresh(state.store.as_ref(), &id).await;
    Ok((
        StatusCode::CREATED,
        Json(Subscribed {
            endpoint: stored.endpoint,
        }),
    ))
}

/// Which subscription to take back.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UnsubscribeBody {
    #[schema(max_length = 2048, pattern = r"^[^\u0000]*$")]
    pub endpoint: String,
}

/// Takes back one of the calling volunteer's push subscriptions.
#[utoipa::path(
    delete,
    path = "/v1/me/push",
    tag = "volunteer",
    request_body = UnsubscribeBody,
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["volunteer"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(volunteer_id = %id))]
async fn unsubscribe(
    VolunteerAuth(id): VolunteerAuth,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<UnsubscribeBody>,
) -> Result<StatusCode, ApiError> {
    // Stored in the URL's normal form; what is no URL was never stored.
    let endpoint = super::validate::required(
        "endpoint",
        body.endpoint,
        crate::notify::webpush::MAX_ENDPOINT_LEN,
    )?;
    let endpoint = reqwest::Url::parse(&endpoint)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::Unprocessable("endpoint: not a URL".into()))?;
    if state.store.remove_push_endpoint(&id, &endpoint).await? {
        state.reachable.refresh(state.store.as_ref(), &id).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("push subscription"))
    }
}
