//! The one error type of the HTTP API and how each case becomes a response.
//!
//! Every handler returns `Result<_, ApiError>`; `?` converts store, engine
//! and dispatcher errors through the `From` impls below. The body is always
//! `{"error": {"code": "…", "message": "…"}}` (contract section 3). Causes of
//! 5xx answers are logged here and never sent: the client gets a generic
//! message. Bad input never yields a 5xx: the extractors in
//! [`super::extract`] turn every rejection into a 400, 413 or 422.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::geo::PositionError;
use crate::domain::{DispatchError, IdError};
use crate::engine::CallError;
use crate::store::StoreError;

/// The body of every error answer (also the schema the OpenAPI document
/// gives for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "senior s-17 not found"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// For programs: `bad_request` (400), `unauthorized` (401), `forbidden`
    /// (403), `not_found` (404), `method_not_allowed` (405), `offer_gone`,
    /// `wrong_state`, `volunteer_busy`, `alert_closed` or `conflict` (409),
    /// `payload_too_large` (413), `invalid` (422), `internal` (500),
    /// `unavailable` (503).
    pub code: String,
    /// For people.
    pub message: String,
}

/// What went wrong with a request, one variant per kind of answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, a malformed `Authorization` header, or an unknown token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// A known token of the wrong role, or an alert that is not the caller's.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is understood but the state does not allow it; the code
    /// tells which case (`offer_gone`, `wrong_state`, `volunteer_busy`,
    /// `alert_closed`, `conflict`).
    #[error("{1}")]
    Conflict(&'static str, String),
    /// Not JSON, wrong types, missing fields, a malformed query string.
    #[error("{0}")]
    BadRequest(String),
    /// The body is over the limit the router sets.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// Well-formed input whose values are not acceptable: an id in the path,
    /// a coordinate out of range, an empty name.
    #[error("{0}")]
    Unprocessable(String),
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The store or the engine cannot serve right now; retrying may work.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::Conflict(..) => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `code` of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) | ApiError::NoRoute => "not_found",
            ApiError::Conflict(code, _) => code,
            ApiError::BadRequest(_) => "bad_request",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::Unprocessable(_) => "invalid",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The human-readable `message` of the body: the error itself, except
    /// for 5xx, whose cause stays in the log.
    fn public_message(&self) -> String {
        match self {
            ApiError::Unavailable(_) => "the service is unavailable; try again".into(),
            ApiError::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn forbidden(why: impl Into<String>) -> Self {
        ApiError::Forbidden(why.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "request answered 503");
            }
            ApiError::Internal(cause) => {
                tracing::error!(cause = %cause, "request answered 500");
            }
            _ => {}
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.public_message(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body is refused unread, and hyper closes the connection
            // rather than read the rest of a large one: say so, or a
            // client sends its next request on a connection about to close
            // (and gets a broken pipe or an incomplete answer instead).
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(why) => ApiError::Conflict("conflict", why),
            StoreError::IdTaken { .. } => ApiError::Conflict("id_taken", e.to_string()),
            // The database is down or overloaded: worth a retry.
            StoreError::Database(_) => ApiError::Unavailable(e.to_string()),
            StoreError::Corrupt(_) | StoreError::Migrate(_) | StoreError::UnsupportedUrl(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

/// The context-free mapping of a refusal. `NotActive` needs the store to
/// tell "unknown" (404) from "closed" (409/403); the alert handlers do that
/// before falling back to this 404.
impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        let message = e.to_string();
        match e {
            DispatchError::NotActive(id) => ApiError::not_found(format_args!("alert {id}")),
            DispatchError::NotOffered(_) | DispatchError::NotAssigned(_) => {
                ApiError::Forbidden(message)
            }
            DispatchError::OfferGone(_) => ApiError::Conflict("offer_gone", message),
            DispatchError::WrongState { .. } => ApiError::Conflict("wrong_state", message),
            DispatchError::VolunteerBusy(_) => ApiError::Conflict("volunteer_busy", message),
            DispatchError::UnknownVolunteer(_) => ApiError::NotFound(message),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Refused(d) => d.into(),
            CallError::Unavailable(cause) => ApiError::Unavailable(cause),
            CallError::Failed(cause) => ApiError::Internal(cause),
            CallError::Stopped => ApiError::Unavailable("the engine is stopping".into()),
        }
    }
}

/// A value in a request that is well-formed JSON but not acceptable: the
/// error of the DTO → domain conversions. Always a 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn field(field: &str, why: impl std::fmt::Display) -> Self {
        Invalid(format!("{field}: {why}"))
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Unprocessable(e.0)
    }
}

impl From<PositionError> for Invalid {
    fn from(e: PositionError) -> Self {
        Invalid(e.to_string())
    }
}

/// Names an id error with the field it came from.
pub fn invalid_id(field: &str, e: IdError) -> Invalid {
    Invalid::field(field, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AlertId, AlertState, VolunteerId};

    fn alert() -> AlertId {
        AlertId::parse("a1").unwrap()
    }

    fn status_of(e: impl Into<ApiError>) -> StatusCode {
        e.into().status()
    }

    #[test]
    fn refusals_map_to_the_contract_statuses() {
        let v = VolunteerId::parse("v1").unwrap();
        assert_eq!(status_of(DispatchError::NotOffered(alert())), 403);
        assert_eq!(status_of(DispatchError::NotAssigned(alert())), 403);
        assert_eq!(status_of(DispatchError::OfferGone(alert())), 409);
        assert_eq!(status_of(DispatchError::VolunteerBusy(v.clone())), 409);
        assert_eq!(
            status_of(DispatchError::WrongState {
                alert_id: alert(),
                state: AlertState::Open,
                action: "arrive"
            }),
            409
        );
        assert_eq!(status_of(DispatchError::UnknownVolunteer(v)), 404);
        assert_eq!(status_of(DispatchError::NotActive(alert())), 404);
    }

    #[test]
    fn engine_trouble_is_a_503() {
        assert_eq!(status_of(CallError::Unavailable("disk full".into())), 503);
        assert_eq!(status_of(CallError::Stopped), 503);
        assert_eq!(
            status_of(CallError::Refused(DispatchError::OfferGone(alert()))),
            409
        );
    }

    #[test]
    fn store_errors_map_by_kind() {
        assert_eq!(status_of(StoreError::NotFound("senior")), 404);
        assert_eq!(status_of(StoreError::Corrupt("x".into())), 500);
    }

    #[tokio::test]
    async fn the_body_has_the_contract_shape_and_hides_causes() {
        let response = ApiError::Internal("password=hunter2".into()).into_response();
        assert_eq!(response.status(), 500);
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("hunter2"));
    }

    #[test]
    fn a_401_names_the_scheme() {
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn a_413_closes_the_connection() {
        let response = ApiError::PayloadTooLarge.into_response();
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let response = ApiError::BadRequest("x".into()).into_response();
        assert!(response.headers().get(header::CONNECTION).is_none());
    }

    #[test]
    fn a_conflict_carries_its_code() {
        let e: ApiError = DispatchError::OfferGone(alert()).into();
        assert_eq!(e.code(), "offer_gone");
    }
}
