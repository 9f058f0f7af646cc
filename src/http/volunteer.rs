//! A volunteer's own calls, with their own token: `GET /v1/me` (profile,
//! pending offers, current alert), going on or off duty and reporting where
//! they are. Duty and location are dispatch state, so they go through the
//! engine; the answer is then read back from the store.

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::VolunteerAuth;
use super::error::ApiError;
use super::extract::ApiJson;
use super::openapi::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable, Unprocessable,
};
use super::validate::LatLon;
use crate::domain::alert::ts_serde;
use crate::domain::registry::VolunteerRecord;
use crate::domain::{
    Alert, AlertId, AlertKind, Command, Position, SeniorCard, Timestamp, VolunteerId,
};
use crate::store::PendingOffer;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/me/duty", put(set_duty))
        .route("/v1/me/location", put(set_location))
}

/// The answer of `GET /v1/me`: the volunteer as `GET /v1/volunteers` lists
/// them, plus what they are asked to do.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub volunteer: VolunteerRecord,
    /// Offers waiting for this volunteer's answer.
    pub offers: Vec<OfferView>,
    /// The alert this volunteer accepted or was assigned, until it closes.
    pub current_alert: Option<CurrentAlert>,
}

/// A pending offer, shaped like the MQTT `offer` message (without `type`),
/// plus when it was made and when the senior pressed.
#[derive(Debug, Serialize, ToSchema)]
pub struct OfferView {
    pub alert_id: AlertId,
    pub kind: AlertKind,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub distance_m: u32,
    pub eta_s: u32,
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub offered_at: Timestamp,
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub pressed_at: Timestamp,
    pub senior: SeniorCard,
}

impl From<PendingOffer> for OfferView {
    fn from(p: PendingOffer) -> Self {
        OfferView {
            alert_id: p.alert.id,
            kind: p.alert.kind,
            lat: p.alert.lat,
            lon: p.alert.lon,
            distance_m: p.offer.distance_m,
            eta_s: p.offer.eta_s,
            offered_at: p.offer.offered_at,
            expires_at: p.offer.expires_at,
            pressed_at: p.alert.pressed_at,
            senior: p.senior,
        }
    }
}

/// The alert a volunteer is on, with whom they are going to.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentAlert {
    #[serde(flatten)]
    pub alert: Alert,
    pub senior: Option<SeniorCard>,
}

async fn record(state: &AppState, id: &VolunteerId) -> Result<VolunteerRecord, ApiError> {
    state
        .store
        .get_volunteer(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("volunteer {id}")))
}

async fn current_alert(
    state: &AppState,
    volunteer: &VolunteerRecord,
) -> Result<Option<CurrentAlert>, ApiError> {
    let Some(alert_id) = &volunteer.busy_alert else {
        return Ok(None);
    };
    let Some(alert) = state.store.get_alert(alert_id).await? else {
        return Ok(None);
    };
    if !alert.state.is_active() {
        return Ok(None);
    }
    let senior = state
        .store
        .get_senior(&alert.senior_id)
        .await?
        .map(|s| SeniorCard {
            id: s.id,
            name: s.name,
            address: s.address,
            notes: s.notes,
        });
    Ok(Some(CurrentAlert { alert, senior }))
}

/// The calling volunteer: profile, dispatch state, pending offers, current alert.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "volunteer",
    responses(
        (status = 200, description = "The volunteer", body = Me),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["volunteer"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(volunteer_id = %id))]
async fn me(
    VolunteerAuth(id): VolunteerAuth,
    State(state): State<AppState>,
) -> Result<Json<Me>, ApiError> {
    let volunteer = record(&state, &id).await?;
    let offers = state
        .store
        .pending_offers(&id)
        .await?
        .into_iter()
        .map(OfferView::from)
        .collect();
    let current_alert = current_alert(&state, &volunteer).await?;
    Ok(Json(Me {
        volunteer,
        offers,
        current_alert,
    }))
}

/// The body of `PUT /v1/me/duty`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DutyBody {
    pub on_duty: bool,
}

/// Goes on or off duty. Going off duty withdraws a pending offer (`off_duty`).
#[utoipa::path(
    put,
    path = "/v1/me/duty",
    tag = "volunteer",
    request_body = DutyBody,
    responses(
        (status = 200, description = "The volunteer", body = VolunteerRecord),
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
#[tracing::instrument(skip_all, fields(volunteer_id = %id, on_duty = body.on_duty))]
async fn set_duty(
    VolunteerAuth(id): VolunteerAuth,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DutyBody>,
) -> Result<Json<VolunteerRecord>, ApiError> {
    state
        .engine
        .call(Command::SetDuty {
            volunteer_id: id.clone(),
            on_duty: body.on_duty,
        })
        .await?;
    Ok(Json(record(&state, &id).await?))
}

/// Reports where the volunteer is now.
#[utoipa::path(
    put,
    path = "/v1/me/location",
    tag = "volunteer",
    request_body = LatLon,
    responses(
        (status = 200, description = "The volunteer", body = VolunteerRecord),
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
async fn set_location(
    VolunteerAuth(id): VolunteerAuth,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LatLon>,
) -> Result<Json<VolunteerRecord>, ApiError> {
    let position = Position::try_from(body)?;
    state
        .engine
        .call(Command::SetLocation {
            volunteer_id: id.clone(),
            position,
        })
        .await?;
    Ok(Json(record(&state, &id).await?))
}
