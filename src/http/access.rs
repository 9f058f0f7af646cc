//! Broker logins over HTTP: operators issue a band's or a gateway's MQTT
//! secret (shown once, kept as a hash), and an external broker asks who
//! may connect and what each may do (the broker hooks, in the form of
//! EMQX's HTTP authentication and authorization).
//!
//! The hooks answer 404 unless `broker_hook_token` is set, and 401 unless
//! the broker presents it as a bearer token. Every decision is
//! [`AccessControl`]'s, that is the one rule of [`crate::access::rule`].
//! A question with a field longer than the document allows is a 422.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Operator;
use super::error::{ApiError, Invalid};
use super::extract::{ApiJson, IdPath};
use super::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    Unprocessable,
};
use super::validate;
use crate::access::{self, Action, Denied, secret};
use crate::domain::registry::PrincipalKind;
use crate::domain::{DeviceId, GatewayId};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/devices/{device_id}/secret", post(device_secret))
        .route("/v1/gateways/{id}/secret", post(gateway_secret))
        .route("/v1/mqtt/auth", post(hook_auth))
        .route("/v1/mqtt/acl", post(hook_acl))
}

/// An MQTT login, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct MqttLogin {
    /// The MQTT user name; also the client id the band or gateway must
    /// connect with.
    pub username: String,
    /// The secret (64 hex characters). Only its hash is kept: it cannot be
    /// shown again, only replaced.
    pub password: String,
}

/// Refuses an id kept for the service's or the admin's own logins.
pub fn refuse_reserved(state: &AppState, id: &str) -> Result<(), ApiError> {
    if state.access.is_reserved(id) {
        return Err(ApiError::Conflict(
            "id_taken",
            format!("the id {id} is reserved for the service's own broker logins"),
        ));
    }
    Ok(())
}

/// Makes a secret for `id`, keeps its hash, cuts off the old one.
async fn issue(state: &AppState, kind: PrincipalKind, id: &str) -> Result<Response, ApiError> {
    refuse_reserved(state, id)?;
    let password = secret::new_secret();
    state
        .store
        .set_secret(kind, id, &secret::hash(&password), crate::engine::now())
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::NotFound(_) => ApiError::not_found(format_args!("device {id}")),
            other => other,
        })?;
    state.access.credentials_changed(id);
    tracing::info!(kind = kind.as_str(), "MQTT secret issued");
    Ok(super::no_store(Json(MqttLogin {
        username: id.to_string(),
        password,
    })))
}

/// Issues a band's MQTT secret (its login: user name = client id = the
/// band's id). A new secret replaces the old one at once, and a band still
/// connected with the old one is disconnected.
#[utoipa::path(
    post,
    path = "/v1/devices/{device_id}/secret",
    tag = "registry",
    params(("device_id" = DeviceId, Path, description = "The band's id")),
    responses(
        (status = 200, description = "The band's login, shown once", body = MqttLogin,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(device_id = %id))]
async fn device_secret(
    _: Operator,
    State(state): State<AppState>,
    IdPath(id): IdPath<DeviceId>,
) -> Result<Response, ApiError> {
    issue(&state, PrincipalKind::Device, id.as_str()).await
}

/// Issues a gateway's MQTT secret, creating the gateway if it is new. A
/// gateway relays many bands: it may publish to any band's alert and status
/// topics and read any band's notices, nothing else.
#[utoipa::path(
    post,
    path = "/v1/gateways/{id}/secret",
    tag = "registry",
    params(("id" = GatewayId, Path, description = "The gateway's id")),
    responses(
        (status = 200, description = "The gateway's login, shown once", body = MqttLogin,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(gateway_id = %id))]
async fn gateway_secret(
    _: Operator,
    State(state): State<AppState>,
    IdPath(id): IdPath<GatewayId>,
) -> Result<Response, ApiError> {
    issue(&state, PrincipalKind::Gateway, id.as_str()).await
}

// ----- the broker hooks --------------------------------------------------------

/// The longest `clientid` and `username` the hooks take, in characters.
pub const MAX_HOOK_ID_CHARS: usize = 256;
/// The longest `password` the hooks take, in characters.
pub const MAX_HOOK_PASSWORD_CHARS: usize = 1024;
/// The longest `topic`: MQTT's limit, 65,535 bytes, is at most as many
/// characters (a body that long is over the 64 KiB limit anyway: 413).
pub const MAX_TOPIC_CHARS: usize = 65_535;

/// The broker's question at CONNECT.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AuthRequest {
    #[schema(max_length = 256)]
    pub clientid: String,
    #[schema(max_length = 256)]
    pub username: Option<String>,
    #[schema(max_length = 1024)]
    pub password: Option<String>,
}

impl AuthRequest {
    /// The lengths the document states.
    fn check(&self) -> Result<(), Invalid> {
        validate::length("clientid", &self.clientid, MAX_HOOK_ID_CHARS)?;
        validate::length_of("username", self.username.as_deref(), MAX_HOOK_ID_CHARS)?;
        validate::length_of(
            "password",
            self.password.as_deref(),
            MAX_HOOK_PASSWORD_CHARS,
        )
    }
}

/// The answer at CONNECT.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthAnswer {
    /// `allow` or `deny`.
    #[schema(pattern = "^(allow|deny)$")]
    pub result: &'static str,
    /// True for the admin login and the service itself: they may do anything.
    pub is_superuser: bool,
}

/// The broker's question at PUBLISH or SUBSCRIBE.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AclRequest {
    #[schema(max_length = 256)]
    pub clientid: String,
    #[schema(max_length = 256)]
    pub username: Option<String>,
    /// The topic published to, or the filter subscribed to.
    #[schema(max_length = 65535)]
    pub topic: String,
    pub action: HookAction,
}

impl AclRequest {
    /// The lengths the document states.
    fn check(&self) -> Result<(), Invalid> {
        validate::length("clientid", &self.clientid, MAX_HOOK_ID_CHARS)?;
        validate::length_of("username", self.username.as_deref(), MAX_HOOK_ID_CHARS)?;
        validate::length("topic", &self.topic, MAX_TOPIC_CHARS)
    }
}

/// What the client asks to do.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookAction {
    Publish,
    Subscribe,
}

/// The answer at PUBLISH or SUBSCRIBE.
#[derive(Debug, Serialize, ToSchema)]
pub struct AclAnswer {
    /// `allow` or `deny`.
    #[schema(pattern = "^(allow|deny)$")]
    pub result: &'static str,
}

fn verdict(allow: bool) -> &'static str {
    if allow { "allow" } else { "deny" }
}

/// A caller of the broker hooks: the broker, holding the hook token. The
/// hooks are on only with a token (404 otherwise), and only for whoever
/// presents it (401 otherwise). Checked before the body is read.
pub struct BrokerHook;

impl FromRequestParts<AppState> for BrokerHook {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.settings.broker_hook_token else {
            return Err(ApiError::NoRoute);
        };
        let presented = super::auth::bearer(parts).ok_or(ApiError::Unauthorized)?;
        if secret::constant_time_eq(presented.as_bytes(), expected.expose().as_bytes()) {
            Ok(BrokerHook)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// May this client connect? (EMQX: HTTP authentication.)
#[utoipa::path(
    post,
    path = "/v1/mqtt/auth",
    tag = "broker",
    request_body = AuthRequest,
    responses(
        (status = 200, description = "The verdict", body = AuthAnswer),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    security(("broker_hook" = [])),
)]
#[tracing::instrument(skip_all, fields(clientid = tracing::field::Empty))]
async fn hook_auth(
    _: BrokerHook,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AuthRequest>,
) -> Result<Json<AuthAnswer>, ApiError> {
    body.check()?;
    tracing::Span::current().record("clientid", body.clientid.as_str());
    let login = state
        .access
        .login(
            &body.clientid,
            body.username.as_deref(),
            body.password.as_deref().map(str::as_bytes),
        )
        .await;
    match login {
        Ok(p) => Ok(Json(AuthAnswer {
            result: "allow",
            is_superuser: p.is_superuser(),
        })),
        Err(Denied::Unavailable(why)) => Err(ApiError::Unavailable(why)),
        Err(denied) => {
            tracing::info!(reason = %denied, "broker hook: connection refused");
            Ok(Json(AuthAnswer {
                result: "deny",
                is_superuser: false,
            }))
        }
    }
}

/// May this client publish to / subscribe to this topic? (EMQX: HTTP
/// authorization.)
#[utoipa::path(
    post,
    path = "/v1/mqtt/acl",
    tag = "broker",
    request_body = AclRequest,
    responses(
        (status = 200, description = "The verdict", body = AclAnswer),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    security(("broker_hook" = [])),
)]
#[tracing::instrument(skip_all, fields(clientid = tracing::field::Empty))]
async fn hook_acl(
    _: BrokerHook,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AclRequest>,
) -> Result<Json<AclAnswer>, ApiError> {
    body.check()?;
    tracing::Span::current().record("clientid", body.clientid.as_str());
    let action = match body.action {
        HookAction::Publish => Action::Publish,
        HookAction::Subscribe => Action::Subscribe,
    };
    let principal = match body.username.as_deref() {
        Some(u) => state.access.principal(u).await.map_err(|e| match e {
            Denied::Unavailable(why) => ApiError::Unavailable(why),
            other => ApiError::Internal(other.to_string()),
        })?,
        None => None,
    };
    let allow = principal.is_some_and(|p| {
        access::client_id_allowed(&p, &body.clientid, state.access.service_client_ids())
            && access::allowed(&p, action, &body.topic)
    });
    if !allow {
        tracing::info!(topic = %body.topic, action = action.as_str(), "broker hook: refused");
    }
    Ok(Json(AclAnswer {
        result: verdict(allow),
    }))
}
