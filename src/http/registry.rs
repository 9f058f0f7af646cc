//! The registry calls (operators only): seniors, their bands and
//! volunteers' profiles and tokens.
//!
//! Profiles and bands are written to the store directly; a volunteer's name
//! is then also handed to the engine (`RegisterVolunteer`), since the
//! dispatcher keeps its own view of volunteers. A band's `online` and
//! `low_battery` are computed here, from its last heartbeat and the
//! settings, at the time of the request.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Operator;
use super::error::{ApiError, Invalid, invalid_id};
use super::extract::{ApiJson, ApiQuery, IdPath, object};
use super::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    Unprocessable,
};
use super::validate::{self, LatLon, MAX_NAME_CHARS, MAX_PHONE_CHARS, MAX_TEXT_CHARS};
use super::{AppState, hash_token, new_token};
use crate::access::secret;
use crate::domain::registry::{Contact, Device, Senior, VolunteerProfile, VolunteerRecord};
use crate::domain::{Command, DeviceId, Position, SeniorId, Timestamp, VolunteerId};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/seniors", get(list_seniors))
        .route("/v1/seniors/{id}", put(put_senior).get(get_senior))
        .route("/v1/devices", get(list_devices))
        .route("/v1/devices/{device_id}", put(put_device))
        .route("/v1/volunteers", get(list_volunteers))
        .route("/v1/volunteers/{id}", put(put_volunteer))
        .route("/v1/volunteers/{id}/token", post(issue_token))
}

// ----- seniors ------------------------------------------------------------

/// The body of `PUT /v1/seniors/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SeniorBody {
    /// Not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub name: String,
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub address: Option<String>,
    /// Where an alert without a location is sent.
    #[serde(default, deserialize_with = "object::optional")]
    pub home: Option<LatLon>,
    #[schema(max_length = 200, pattern = r"^[^\u0000]*$")]
    pub grid: Option<String>,
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub notes: Option<String>,
    #[schema(max_items = 50)]
    #[serde(default, deserialize_with = "object::optional_list")]
    pub contacts: Option<Vec<ContactBody>>,
}

/// Someone to call about a senior.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ContactBody {
    /// Not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub name: String,
    /// Not blank.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub phone: String,
}

impl TryFrom<ContactBody> for Contact {
    type Error = Invalid;
    fn try_from(c: ContactBody) -> Result<Self, Invalid> {
        Ok(Contact {
            name: validate::required("contacts.name", c.name, MAX_NAME_CHARS)?,
            phone: validate::required("contacts.phone", c.phone, MAX_PHONE_CHARS)?,
        })
    }
}

impl TryFrom<(SeniorId, SeniorBody)> for Senior {
    type Error = Invalid;
    fn try_from((id, b): (SeniorId, SeniorBody)) -> Result<Self, Invalid> {
        Ok(Senior {
            id,
            name: validate::required("name", b.name, MAX_NAME_CHARS)?,
            address: validate::optional("address", b.address, MAX_TEXT_CHARS)?,
            home: b.home.map(Position::try_from).transpose()?,
            grid: validate::optional("grid", b.grid, MAX_NAME_CHARS)?,
            notes: validate::optional("notes", b.notes, MAX_TEXT_CHARS)?,
            contacts: validate::list("contacts", b.contacts)?
                .into_iter()
                .map(Contact::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Registers a senior or replaces what is known of them.
#[utoipa::path(
    put,
    path = "/v1/seniors/{id}",
    tag = "registry",
    params(("id" = SeniorId, Path, description = "The senior's id")),
    request_body = SeniorBody,
    responses(
        (status = 200, description = "The senior as stored", body = Senior),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(senior_id = %id))]
async fn put_senior(
    _: Operator,
    State(state): State<AppState>,
    IdPath(id): IdPath<SeniorId>,
    ApiJson(body): ApiJson<SeniorBody>,
) -> Result<Json<Senior>, ApiError> {
    let senior = Senior::try_from((id, body))?;
    state.store.upsert_senior(&senior).await?;
    Ok(Json(senior))
}

/// One senior.
#[utoipa::path(
    get,
    path = "/v1/seniors/{id}",
    tag = "registry",
    params(("id" = SeniorId, Path, description = "The senior's id")),
    responses(
        (status = 200, description = "The senior", body = Senior),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(senior_id = %id))]
async fn get_senior(
    _: Operator,
    State(state): State<AppState>,
    IdPath(id): IdPath<SeniorId>,
) -> Result<Json<Senior>, ApiError> {
    match state.store.get_senior(&id).await? {
        Some(senior) => Ok(Json(senior)),
        None => Err(ApiError::not_found(format_args!("senior {id}"))),
    }
}

/// Every senior.
#[utoipa::path(
    get,
    path = "/v1/seniors",
    tag = "registry",
    responses(
        (status = 200, description = "The seniors, by id", body = [Senior]),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
async fn list_seniors(
    _: Operator,
    State(state): State<AppState>,
) -> Result<Json<Vec<Senior>>, ApiError> {
    Ok(Json(state.store.list_seniors().await?))
}

// ----- devices ------------------------------------------------------------

/// The body of `PUT /v1/devices/{device_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DeviceBody {
    /// The senior who wears the band; must be registered.
    #[schema(value_type = SeniorId)]
    pub senior_id: String,
}

/// A band as listed: the stored device with what its heartbeats mean now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeviceView {
    #[serde(flatten)]
    pub device: Device,
    /// A heartbeat came within `device_offline_after`.
    pub online: bool,
    /// The last battery reading is at or below `low_battery` (an extension).
    pub low_battery: bool,
}

impl DeviceView {
    pub fn new(device: Device, now: Timestamp, offline_after: Duration, low_battery: u8) -> Self {
        let offline_after =
            chrono::TimeDelta::from_std(offline_after).unwrap_or(chrono::TimeDelta::MAX);
        let online = device
            .last_seen
            .is_some_and(|seen| now.signed_duration_since(seen) <= offline_after);
        let low_battery = device.battery.is_some_and(|b| b <= low_battery);
        Self {
            device,
            online,
            low_battery,
        }
    }
}

/// `?status=` of `GET /v1/devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Offline,
    LowBattery,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// Only the bands that are offline (no heartbeat within
    /// `device_offline_after`), or whose battery is low.
    #[param(inline)]
    pub status: Option<DeviceStatus>,
}

impl DeviceStatus {
    fn matches(self, d: &DeviceView) -> bool {
        match self {
            DeviceStatus::Offline => !d.online,
            DeviceStatus::LowBattery => d.low_battery,
        }
    }
}

fn view(state: &AppState, device: Device, now: Timestamp) -> DeviceView {
    DeviceView::new(
        device,
        now,
        state.settings.device_offline_after,
        state.settings.low_battery,
    )
}

/// Registers a band as worn by a senior (or moves it to another).
#[utoipa::path(
    put,
    path = "/v1/devices/{device_id}",
    tag = "registry",
    params(("device_id" = DeviceId, Path, description = "The band's id, as in its MQTT topics")),
    request_body = DeviceBody,
    responses(
        (status = 200, description = "The band as stored", body = DeviceView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(device_id = %device_id, senior_id = tracing::field::Empty))]
async fn put_device(
    _: Operator,
    State(state): State<AppState>,
    IdPath(device_id): IdPath<DeviceId>,
    ApiJson(body): ApiJson<DeviceBody>,
) -> Result<Json<DeviceView>, ApiError> {
    let senior_id = SeniorId::parse(body.senior_id).map_err(|e| invalid_id("senior_id", e))?;
    tracing::Span::current().record("senior_id", senior_id.as_str());
    super::access::refuse_reserved(&state, device_id.as_str())?;
    let device = state
        .store
        .upsert_device(&device_id, &senior_id)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::NotFound(_) => ApiError::not_found(format_args!("senior {senior_id}")),
            other => other,
        })?;
    Ok(Json(view(&state, device, crate::engine::now())))
}

/// The bands, with what their last heartbeat said.
#[utoipa::path(
    get,
    path = "/v1/devices",
    tag = "registry",
    params(DeviceQuery),
    responses(
        (status = 200, description = "The bands, by id", body = [DeviceView]),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(status = ?query.status))]
async fn list_devices(
    _: Operator,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<DeviceQuery>,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    let now = crate::engine::now();
    let devices = state
        .store
        .list_devices()
        .await?
        .into_iter()
        .map(|d| view(&state, d, now))
        .filter(|d| query.status.is_none_or(|s| s.matches(d)))
        .collect();
    Ok(Json(devices))
}

// ----- volunteers ---------------------------------------------------------

/// The body of `PUT /v1/volunteers/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VolunteerBody {
    /// Not blank; the band shows it when they accept.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub name: String,
    #[schema(max_length = 64, pattern = r"^[^\u0000]*$")]
    pub phone: Option<String>,
    #[schema(max_length = 200, pattern = r"^[^\u0000]*$")]
    pub grid: Option<String>,
    /// Each not blank, at most 200 characters.
    #[schema(schema_with = skills_schema)]
    pub skills: Option<Vec<String>>,
    /// (extension) The volunteer's ntfy topic, e.g.
    /// `https://ntfy.example.org/wang-fang-7f3a`: offers are published there
    /// with Accept and Decline buttons. An http or https URL.
    #[schema(
        max_length = 512,
        pattern = r"^https?://([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[!-~]*)?$"
    )]
    pub ntfy_url: Option<String>,
}

/// `skills` in the OpenAPI document: null, or up to 50 names.
fn skills_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_NAME_CHARS))
                .pattern(Some(validate::NAME_PATTERN)),
        )
        .max_items(Some(validate::MAX_LIST_LEN))
        .build()
}

impl TryFrom<(VolunteerId, VolunteerBody)> for VolunteerProfile {
    type Error = Invalid;
    fn try_from((id, b): (VolunteerId, VolunteerBody)) -> Result<Self, Invalid> {
        Ok(VolunteerProfile {
            id,
            name: validate::required("name", b.name, MAX_NAME_CHARS)?,
            phone: validate::optional("phone", b.phone, MAX_PHONE_CHARS)?,
            grid: validate::optional("grid", b.grid, MAX_NAME_CHARS)?,
            skills: validate::list("skills", b.skills)?
                .into_iter()
                .map(|s| validate::required("skills", s, MAX_NAME_CHARS))
                .collect::<Result<_, _>>()?,
            ntfy_url: validate::optional("ntfy_url", b.ntfy_url, 512)?
                .map(|u| {
                    if validate::http_url(&u) {
                        Ok(u)
                    } else {
                        Err(Invalid::field(
                            "ntfy_url",
                            "must be an http or https URL to a host name",
                        ))
                    }
                })
                .transpose()?,
        })
    }
}

/// Registers a volunteer or replaces their profile (their duty, location and token
/// are kept).
///
/// Writes the profile, then tells the dispatcher the name. If the second
/// step fails the answer is a 503 and a retry of the same PUT completes it.
#[utoipa::path(
    put,
    path = "/v1/volunteers/{id}",
    tag = "registry",
    params(("id" = VolunteerId, Path, description = "The volunteer's id")),
    request_body = VolunteerBody,
    responses(
        (status = 200, description = "The volunteer as stored", body = VolunteerRecord),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(volunteer_id = %id))]
async fn put_volunteer(
    _: Operator,
    State(state): State<AppState>,
    IdPath(id): IdPath<VolunteerId>,
    ApiJson(body): ApiJson<VolunteerBody>,
) -> Result<Json<VolunteerRecord>, ApiError> {
    let profile = VolunteerProfile::try_from((id.clone(), body))?;
    super::access::refuse_reserved(&state, id.as_str())?;
    state.store.upsert_volunteer(&profile).await?;
    state.reachable.refresh(state.store.as_ref(), &id).await;
    state
        .engine
        .call(Command::RegisterVolunteer {
            volunteer_id: id.clone(),
            name: profile.name.clone(),
        })
        .await?;
    match state.store.get_volunteer(&id).await? {
        Some(record) => Ok(Json(record)),
        None => Err(ApiError::Internal(format!(
            "volunteer {id} missing right after it was written"
        ))),
    }
}

/// Every volunteer, with their dispatch state.
#[utoipa::path(
    get,
    path = "/v1/volunteers",
    tag = "registry",
    responses(
        (status = 200, description = "The volunteers, by id", body = [VolunteerRecord]),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
async fn list_volunteers(
    _: Operator,
    State(state): State<AppState>,
) -> Result<Json<Vec<VolunteerRecord>>, ApiError> {
    Ok(Json(state.store.list_volunteers().await?))
}

/// A volunteer's new bearer token.
#[derive(Debug, Serialize, ToSchema)]
struct TokenIssued {
    /// Shown once: only its hash is kept.
    token: String,
}

/// Issues a new token; the store keeps only its hash, so the old token stops
/// working at once, over HTTP and as the phone's MQTT login (a phone still
/// connected with it is disconnected). The answer must not be cached.
#[utoipa::path(
    post,
    path = "/v1/volunteers/{id}/token",
    tag = "registry",
    params(("id" = VolunteerId, Path, description = "The volunteer's id")),
    responses(
        (status = 200, description = "The new token; the old one stops working", body = TokenIssued,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(volunteer_id = %id))]
async fn issue_token(
    _: Operator,
    State(state): State<AppState>,
    IdPath(id): IdPath<VolunteerId>,
) -> Result<Response, ApiError> {
    let token = new_token();
    state
        .store
        .set_volunteer_token(&id, &hash_token(&token), &secret::hash(&token))
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::NotFound(_) => ApiError::not_found(format_args!("volunteer {id}")),
            other => other,
        })?;
    // The phone's MQTT login was the old token: cut it off.
    state.access.credentials_changed(id.as_str());
    tracing::info!("volunteer token issued");
    Ok(super::no_store(Json(TokenIssued { token })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn senior_body(json: serde_json::Value) -> Result<Senior, Invalid> {
        let body: SeniorBody = serde_json::from_value(json).unwrap();
        Senior::try_from((SeniorId::parse("s-1").unwrap(), body))
    }

    #[test]
    fn a_full_senior_converts() {
        let s = senior_body(serde_json::json!({
            "name": "Jiang Lan", "address": "3-201", "home": {"lat": 30.5, "lon": 120.6},
            "grid": "g1", "notes": "deaf in one ear",
            "contacts": [{"name": "Jiang Wei", "phone": "+86 138"}], "unknown": 1
        }))
        .unwrap();
        assert_eq!(s.name, "Jiang Lan");
        assert_eq!(s.home, Some(Position::new(30.5, 120.6).unwrap()));
        assert_eq!(s.contacts.len(), 1);
    }

    #[test]
    fn a_minimal_senior_converts() {
        let s = senior_body(serde_json::json!({"name": "Li"})).unwrap();
        assert!(s.home.is_none() && s.contacts.is_empty());
    }

    #[test]
    fn bad_seniors_are_invalid() {
        assert!(senior_body(serde_json::json!({"name": " "})).is_err());
        assert!(senior_body(serde_json::json!({"name": "x".repeat(201)})).is_err());
        assert!(
            senior_body(serde_json::json!({"name": "Li", "home": {"lat": 99, "lon": 0}})).is_err()
        );
        assert!(senior_body(serde_json::json!({"name": "Li", "notes": "n".repeat(2001)})).is_err());
        assert!(
            senior_body(
                serde_json::json!({"name": "Li", "contacts": [{"name": "", "phone": "1"}]})
            )
            .is_err()
        );
    }

    #[test]
    fn volunteer_profiles_convert_and_check() {
        let id = VolunteerId::parse("v-1").unwrap();
        let ok: VolunteerBody = serde_json::from_value(
            serde_json::json!({"name": "Wang Fang", "skills": ["first_aid"]}),
        )
        .unwrap();
        let p = VolunteerProfile::try_from((id.clone(), ok)).unwrap();
        assert_eq!(p.skills, vec!["first_aid".to_string()]);
        let bad: VolunteerBody =
            serde_json::from_value(serde_json::json!({"name": "W", "skills": [""]})).unwrap();
        assert!(VolunteerProfile::try_from((id, bad)).is_err());
    }

    fn device(last_seen: Option<&str>, battery: Option<u8>) -> Device {
        Device {
            device_id: DeviceId::parse("band-1").unwrap(),
            senior_id: SeniorId::parse("s-1").unwrap(),
            last_seen: last_seen.map(|t| t.parse().unwrap()),
            battery,
            lat: None,
            lon: None,
        }
    }

    #[test]
    fn online_and_low_battery_follow_the_settings() {
        let now: Timestamp = "2026-11-25T03:00:00Z".parse().unwrap();
        let after = Duration::from_secs(30 * 60);
        let v = DeviceView::new(
            device(Some("2026-11-25T02:30:00Z"), Some(20)),
            now,
            after,
            20,
        );
        assert!(v.online && v.low_battery);
        let v = DeviceView::new(
            device(Some("2026-11-25T02:29:59Z"), Some(21)),
            now,
            after,
            20,
        );
        assert!(!v.online && !v.low_battery);
        let v = DeviceView::new(device(None, None), now, after, 20);
        assert!(!v.online && !v.low_battery);
        assert!(DeviceStatus::Offline.matches(&v));
        assert!(!DeviceStatus::LowBattery.matches(&v));
    }

    #[test]
    fn a_device_view_has_the_contract_fields() {
        let now: Timestamp = "2026-11-25T03:00:00Z".parse().unwrap();
        let v = DeviceView::new(device(None, Some(50)), now, Duration::from_secs(60), 20);
        let json = serde_json::to_value(&v).unwrap();
        for key in [
            "device_id",
            "senior_id",
            "last_seen",
            "battery",
            "lat",
            "lon",
            "online",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
    }
}
