//! The alert calls: listing and reading alerts, and every action on one
//! (accept, decline, arrive, resolve, cancel, assign).
//!
//! Actions go to the engine; the dispatcher decides and the answer is the
//! alert as it stands after the commit. Reads go to the store. Who may do
//! what: accept, decline and arrive are a volunteer's own; resolve is the
//! assigned volunteer's or an operator's; cancel, assign and the listing are
//! an operator's. A volunteer may read only an alert that was offered to
//! (or assigned to) them.
//!
//! Statuses of refusals (see also [`super::error`]):
//! - not offered to me / not assigned to me → 403;
//! - my offer expired, was declined, withdrawn or taken, wrong state,
//!   volunteer busy → 409;
//! - unknown alert → 404;
//! - an alert that is closed (resolved or cancelled): 409 for an operator
//!   and for a volunteer who had a part in it (was offered it or was
//!   assigned), 403 for any other volunteer: a volunteer learns nothing of
//!   alerts that were never theirs.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Caller, Operator, VolunteerAuth};
use super::error::{ApiError, Invalid, invalid_id};
use super::extract::{ApiJson, ApiQuery, IdPath, OptionalJson};
use super::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    Unprocessable,
};
use super::validate::{self, MAX_NAME_CHARS, MAX_TEXT_CHARS};
use crate::domain::{Alert, AlertId, Command, DispatchError, Reply, TimelineEvent, VolunteerId};
use crate::engine::CallError;
use crate::store::AlertFilter;

/// Alerts listed when the query names no `limit`.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
/// The most alerts one listing returns; a larger `limit` is lowered to it.
pub const MAX_LIST_LIMIT: u32 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/alerts", get(list_alerts))
        .route("/v1/alerts/{id}", get(get_alert))
        .route("/v1/alerts/{id}/accept", post(accept))
        .route("/v1/alerts/{id}/decline", post(decline))
        .route("/v1/alerts/{id}/arrive", post(arrive))
        .route("/v1/alerts/{id}/resolve", post(resolve))
        .route("/v1/alerts/{id}/cancel", post(cancel))
        .route("/v1/alerts/{id}/assign", post(assign))
        .route("/v1/offers/{id}/{action}", post(offer_link))
}

// ----- reads ----------------------------------------------------------------

/// `?state=` of `GET /v1/alerts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateQuery {
    #[default]
    Active,
    All,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `active` (open, offered, accepted, on scene; the default) or `all`.
    #[param(inline)]
    pub state: Option<StateQuery>,
    /// How many alerts, newest first: 100 by default; more than 1000 is
    /// lowered to 1000; 0 is a 422.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 4294967295_u64)]
    pub limit: Option<u32>,
}

impl ListQuery {
    /// The store's filter and the effective limit: default
    /// [`DEFAULT_LIST_LIMIT`], at most [`MAX_LIST_LIMIT`], 0 is refused.
    pub fn resolve(&self) -> Result<(AlertFilter, u32), Invalid> {
        let filter = match self.state.unwrap_or_default() {
            StateQuery::Active => AlertFilter::Active,
            StateQuery::All => AlertFilter::All,
        };
        let limit = match self.limit {
            None => DEFAULT_LIST_LIMIT,
            Some(0) => return Err(Invalid::field("limit", "must be at least 1")),
            Some(n) => n.min(MAX_LIST_LIMIT),
        };
        Ok((filter, limit))
    }
}

/// Alerts, newest first.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "alerts",
    params(ListQuery),
    responses(
        (status = 200, description = "The alerts, newest first", body = [Alert]),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(state = ?query.state, limit = ?query.limit))]
async fn list_alerts(
    _: Operator,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Alert>>, ApiError> {
    let (filter, limit) = query.resolve()?;
    Ok(Json(state.store.list_alerts(filter, limit).await?))
}

/// An alert with its timeline, oldest event first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertWithTimeline {
    #[serde(flatten)]
    pub alert: Alert,
    pub timeline: Vec<TimelineEvent>,
}

/// One alert with its timeline. A volunteer may read only an alert that was offered
/// or assigned to them (any other: 403, whether it exists or not).
#[utoipa::path(
    get,
    path = "/v1/alerts/{id}",
    tag = "alerts",
    params(("id" = AlertId, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "The alert and its timeline", body = AlertWithTimeline),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator", "volunteer"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(alert_id = %id, caller = %caller.label()))]
async fn get_alert(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath<AlertId>,
) -> Result<Json<AlertWithTimeline>, ApiError> {
    if let Some(v) = caller.volunteer() {
        // Checked before existence: a volunteer cannot probe for alerts.
        if !state.store.was_offered(&id, v).await? {
            return Err(not_yours(&id));
        }
    }
    let alert = state
        .store
        .get_alert(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format_args!("alert {id}")))?;
    let timeline = state.store.timeline(&id).await?;
    Ok(Json(AlertWithTimeline { alert, timeline }))
}

// ----- actions --------------------------------------------------------------

fn not_yours(id: &AlertId) -> ApiError {
    ApiError::forbidden(format!("alert {id} is not yours"))
}

/// Sends an action on an alert to the engine and answers with the alert.
/// `caller` is the volunteer acting, if it is one (for the closed-alert
/// rule of the module docs).
async fn act(
    state: &AppState,
    id: &AlertId,
    caller: Option<&VolunteerId>,
    command: Command,
) -> Result<Json<Alert>, ApiError> {
    match state.engine.call(command).await {
        Ok(Reply::Alert(alert)) => Ok(Json(*alert)),
        Ok(other) => Err(ApiError::Internal(format!(
            "the engine answered an action on alert {id} with {other:?}"
        ))),
        Err(CallError::Refused(DispatchError::NotActive(_))) => {
            Err(not_active(state, id, caller).await)
        }
        Err(e) => Err(e.into()),
    }
}

/// The dispatcher holds only active alerts: ask the store whether this one
/// is unknown (404) or closed (409, or 403 for a volunteer it never
/// concerned).
async fn not_active(state: &AppState, id: &AlertId, caller: Option<&VolunteerId>) -> ApiError {
    let alert = match state.store.get_alert(id).await {
        Ok(Some(alert)) => alert,
        Ok(None) => return ApiError::not_found(format_args!("alert {id}")),
        Err(e) => return e.into(),
    };
    if let Some(v) = caller {
        if alert.volunteer_id.as_ref() != Some(v) {
            match state.store.was_offered(id, v).await {
                Ok(true) => {}
                Ok(false) => return not_yours(id),
                Err(e) => return e.into(),
            }
        }
    }
    ApiError::Conflict(
        "alert_closed",
        format!("alert {id} is {}: it can no longer change", alert.state),
    )
}

/// Accepts my offer: I am on my way. 409 (`offer_gone`) if my offer expired, was
/// withdrawn or taken; 403 if it was never offered to me.
#[utoipa::path(
    post,
    path = "/v1/alerts/{id}/accept",
    tag = "alerts",
    params(("id" = AlertId, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "The alert after the action", body = Alert),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["volunteer"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(alert_id = %id, volunteer_id = %v))]
async fn accept(
    VolunteerAuth(v): VolunteerAuth,
    State(state): State<AppState>,
    IdPath(id): IdPath<AlertId>,
) -> Result<Json<Alert>, ApiError> {
    let command = Command::Accept {
        alert_id: id.clone(),
        volunteer_id: v.clone(),
    };
    act(&state, &id, Some(&v), command).await
}

/// Declines my offer; the next candidate is offered at once.
#[utoipa::path(
    post,
    path = "/v1/alerts/{id}/decline",
    tag = "alerts",
    params(("id" = AlertId, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "The alert after the action", body = Alert),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["volunteer"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(alert_id = %id, volunteer_id = %v))]
async fn decline(
    VolunteerAuth(v): VolunteerAuth,
    State(state): State<AppState>,
    IdPath(id): IdPath<AlertId>,
) -> Result<Json<Alert>, ApiError> {
    let command = Command::Decline {
        alert_id: id.clone(),
        volunteer_id: v.clone(),
    };
    act(&state, &id, Some(&v), command).await
}

/// The assigned volunteer is with the senior: `on_scene`.
#[utoipa::path(
    post,
    path = "/v1/alerts/{id}/arrive",
    tag = "alerts",
    params(("id" = AlertId, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "The alert after the action", body = Alert),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["volunteer"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(alert_id = %id, volunteer_id = %v))]
async fn arrive(
    VolunteerAuth(v): VolunteerAuth,
    State(state): State<AppState>,
    IdPath(id): IdPath<AlertId>,
) -> Result<Json<Alert>, ApiError> {
    let command = Command::Arrive {
        alert_id: id.clone(),
        volunteer_id: v.clone(),
    };
    act(&state, &id, Some(&v), command).await
}

/// The body of `POST /v1/alerts/{id}/resolve`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResolveBody {
    /// What happened, e.g. `helped`; not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub outcome: String,
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub note: Option<String>,
}

/// A checked resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub outcome: String,
    pub note: Option<String>,
}

impl TryFrom<ResolveBody> for Resolution {
    type Error = Invalid;
    fn try_from(b: ResolveBody) -> Result<Self, Invalid> {
        Ok(Resolution {
            outcome: validate::required("outcome", b.outcome, MAX_NAME_CHARS)?,
            note: validate::optional("note", b.note, MAX_TEXT_CHARS)?,
        })
    }
}

/// Closes the alert: `resolved`. By the assigned volunteer or an operator.
#[utoipa::path(
    post,
    path = "/v1/alerts/{id}/resolve",
    tag = "alerts",
    params(("id" = AlertId, Path, description = "The alert's id")),
    request_body = ResolveBody,
    responses(
        (status = 200, description = "The alert after the action", body = Alert),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator", "volunteer"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(alert_id = %id, caller = %caller.label()))]
async fn resolve(
    caller: Caller,
    State(state): State<AppState>,
    IdPath(id): IdPath<AlertId>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<Alert>, ApiError> {
    let resolution = Resolution::try_from(body)?;
    let command = Command::Resolve {
        alert_id: id.clone(),
        by: caller.actor(),
        outcome: resolution.outcome,
        note: resolution.note,
    };
    act(&state, &id, caller.volunteer(), command).await
}

/// The body of `POST /v1/alerts/{id}/cancel`; it may be left out.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CancelBody {
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub reason: Option<String>,
}

/// Calls the alert off: `cancelled`; pending offers are withdrawn.
#[utoipa::path(
    post,
    path = "/v1/alerts/{id}/cancel",
    tag = "alerts",
    params(("id" = AlertId, Path, description = "The alert's id")),
    request_body = inline(Option<CancelBody>),
    responses(
        (status = 200, description = "The alert after the action", body = Alert),
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
#[tracing::instrument(skip_all, fields(alert_id = %id))]
async fn cancel(
    _: Operator,
    State(state): State<AppState>,
    IdPath(id): IdPath<AlertId>,
    OptionalJson(body): OptionalJson<CancelBody>,
) -> Result<Json<Alert>, ApiError> {
    let reason = validate::optional("reason", body.reason, MAX_TEXT_CHARS)?;
    let command = Command::Cancel {
        alert_id: id.clone(),
        by: crate::domain::Actor::Operator,
        reason,
    };
    act(&state, &id, None, command).await
}

/// The body of `POST /v1/alerts/{id}/assign`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AssignBody {
    #[schema(value_type = VolunteerId)]
    pub volunteer_id: String,
}

impl TryFrom<AssignBody> for VolunteerId {
    type Error = Invalid;
    fn try_from(b: AssignBody) -> Result<Self, Invalid> {
        VolunteerId::parse(b.volunteer_id).map_err(|e| invalid_id("volunteer_id", e))
    }
}

/// Dispatches a volunteer by hand (they get an `assigned` message): 404 if the
/// volunteer is unknown, 409 (`volunteer_busy`) if they are on another alert.
#[utoipa::path(
    post,
    path = "/v1/alerts/{id}/assign",
    tag = "alerts",
    params(("id" = AlertId, Path, description = "The alert's id")),
    request_body = AssignBody,
    responses(
        (status = 200, description = "The alert after the action", body = Alert),
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
#[tracing::instrument(skip_all, fields(alert_id = %id, volunteer_id = tracing::field::Empty))]
async fn assign(
    _: Operator,
    State(state): State<AppState>,
    IdPath(id): IdPath<AlertId>,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<Json<Alert>, ApiError> {
    let volunteer_id = VolunteerId::try_from(body)?;
    tracing::Span::current().record("volunteer_id", volunteer_id.as_str());
    let command = Command::Assign {
        alert_id: id.clone(),
        volunteer_id,
    };
    act(&state, &id, None, command).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_defaults_to_active_and_a_bounded_limit() {
        let q = ListQuery::default();
        assert_eq!(q.resolve(), Ok((AlertFilter::Active, DEFAULT_LIST_LIMIT)));
        let q = ListQuery {
            state: Some(StateQuery::All),
            limit: Some(MAX_LIST_LIMIT + 1),
        };
        assert_eq!(q.resolve(), Ok((AlertFilter::All, MAX_LIST_LIMIT)));
        let q = ListQuery {
            state: None,
            limit: Some(0),
        };
        assert!(q.resolve().is_err());
    }

    #[test]
    fn resolutions_need_an_outcome() {
        let ok = ResolveBody {
            outcome: "helped_up".into(),
            note: None,
        };
        assert!(Resolution::try_from(ok).is_ok());
        let blank = ResolveBody {
            outcome: " ".into(),
            note: None,
        };
        assert!(Resolution::try_from(blank).is_err());
        let long_note = ResolveBody {
            outcome: "ok".into(),
            note: Some("n".repeat(MAX_TEXT_CHARS + 1)),
        };
        assert!(Resolution::try_from(long_note).is_err());
    }

    #[test]
    fn assignments_need_a_valid_volunteer_id() {
        let ok = AssignBody {
            volunteer_id: "v-1".into(),
        };
        assert!(VolunteerId::try_from(ok).is_ok());
        let bad = AssignBody {
            volunteer_id: "v 1".into(),
        };
        assert!(VolunteerId::try_from(bad).is_err());
    }

    #[test]
    fn an_unknown_state_filter_does_not_parse() {
        let q: Result<ListQuery, _> = serde_json::from_value(serde_json::json!({"state": "open"}));
        assert!(q.is_err());
    }
}

// ----- signed offer links ----------------------------------------------------

/// The query of a signed offer link.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The volunteer the offer is for.
    #[param(max_length = 64, pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub volunteer: String,
    /// Unix seconds after which the link is refused.
    pub expires: i64,
    /// HMAC-SHA256 signature (hex) of the alert, the volunteer, the action
    /// and the expiry, by the service.
    #[param(max_length = 64, pattern = r"^[0-9a-f]{64}$")]
    pub sig: String,
}

/// What a signed offer link did.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkDone {
    pub alert_id: AlertId,
    /// `accepted` or `declined`.
    pub done: &'static str,
    /// The alert's state now.
    pub state: crate::domain::AlertState,
}

/// (extension) Accepts or declines an offer through a signed link, as the
/// volunteer it was made to, without their token: the link is good for this
/// alert, this volunteer and this action only, until the offer expires. The
/// service puts such links behind the Accept and Decline buttons of a
/// notification (ntfy). Answers as `accept`/`decline` do; 403 for a link
/// that is forged, altered or past its expiry.
#[utoipa::path(
    post,
    path = "/v1/offers/{id}/{action}",
    tag = "alerts",
    params(
        ("id" = AlertId, Path, description = "The alert's id"),
        ("action" = String, Path, description = "`accept` or `decline`"),
        LinkQuery,
    ),
    responses(
        (status = 200, description = "Done", body = LinkDone),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["signed link"]))),
)]
#[tracing::instrument(skip_all, fields(alert_id = %id, action = %action))]
async fn offer_link(
    State(state): State<AppState>,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
    ApiQuery(q): ApiQuery<LinkQuery>,
) -> Result<Json<LinkDone>, ApiError> {
    let id = AlertId::parse(id).map_err(|e| ApiError::Unprocessable(format!("alert id: {e}")))?;
    let action = crate::notify::links::LinkAction::parse(&action)
        .ok_or_else(|| ApiError::not_found("offer action"))?;
    let genuine = state
        .link_key
        .verify(id.as_str(), &q.volunteer, action, q.expires, &q.sig);
    if !genuine {
        return Err(ApiError::Forbidden("this link is not valid".into()));
    }
    if crate::engine::now().timestamp() > q.expires {
        return Err(ApiError::Forbidden("this link has expired".into()));
    }
    let v = VolunteerId::parse(q.volunteer).map_err(|e| invalid_id("volunteer", e))?;
    let (command, done) = match action {
        crate::notify::links::LinkAction::Accept => (
            Command::Accept {
                alert_id: id.clone(),
                volunteer_id: v.clone(),
            },
            "accepted",
        ),
        crate::notify::links::LinkAction::Decline => (
            Command::Decline {
                alert_id: id.clone(),
                volunteer_id: v.clone(),
            },
            "declined",
        ),
    };
    let Json(alert) = act(&state, &id, Some(&v), command).await?;
    Ok(Json(LinkDone {
        alert_id: alert.id,
        done,
        state: alert.state,
    }))
}
