//! Who is calling: bearer tokens turned into extractors.
//!
//! A handler that takes [`Operator`] is for operators only, one that takes
//! [`VolunteerAuth`] for volunteers only, one that takes [`Caller`] for
//! both. The token from `Authorization: Bearer <token>` is hashed (SHA-256)
//! and compared, in constant time, with the operator token's hash; if it is
//! not the operator's, the store is asked for the volunteer holding that
//! hash. Tokens themselves are never stored or logged.
//!
//! Missing, malformed or unknown token: 401. A known token of the wrong
//! role: 403. One endpoint, the live stream, also takes the token from the
//! query string (see `super::live`), through [`caller_of_token`].

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use super::{AppState, hash_token};
use crate::domain::{Actor, VolunteerId};

/// Anyone with a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Volunteer(VolunteerId),
}

impl Caller {
    /// The actor the dispatcher records for this caller.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Operator => Actor::Operator,
            Caller::Volunteer(v) => Actor::Volunteer(v.clone()),
        }
    }

    /// The volunteer calling, if it is one.
    pub fn volunteer(&self) -> Option<&VolunteerId> {
        match self {
            Caller::Operator => None,
            Caller::Volunteer(v) => Some(v),
        }
    }

    /// For logs: `operator` or `volunteer:{id}`.
    pub fn label(&self) -> String {
        self.actor().label()
    }
}

/// An operator at the community centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator;

/// A volunteer, authenticated by their own token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolunteerAuth(pub VolunteerId);

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive); `None` when missing or malformed.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub use crate::access::secret::constant_time_eq;

/// Resolves the caller of a request.
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
    caller_of_token(token, state).await
}

/// Resolves the holder of a token, however it came (the header, or the
/// query of the one endpoint that accepts it there).
pub async fn caller_of_token(token: &str, state: &AppState) -> Result<Caller, ApiError> {
    let hash = hash_token(token);
    if constant_time_eq(hash.as_bytes(), state.operator_token_hash.as_bytes()) {
        return Ok(Caller::Operator);
    }
    match state.store.volunteer_by_token(&hash).await? {
        Some(v) => Ok(Caller::Volunteer(v)),
        None => Err(ApiError::Unauthorized),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state).await
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Operator => Ok(Operator),
            Caller::Volunteer(_) => Err(ApiError::forbidden("this call is for operators")),
        }
    }
}

impl FromRequestParts<AppState> for VolunteerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Volunteer(v) => Ok(VolunteerAuth(v)),
            Caller::Operator => Err(ApiError::forbidden(
                "this call is for volunteers, with their own token",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(header: Option<&str>) -> Parts {
        let mut builder = Request::builder().uri("/v1/me");
        if let Some(h) = header {
            builder = builder.header(AUTHORIZATION, h);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_bearer_token_is_read_from_the_header() {
        assert_eq!(bearer(&parts(Some("Bearer abc"))), Some("abc"));
        assert_eq!(bearer(&parts(Some("bearer  abc "))), Some("abc"));
    }

    #[test]
    fn missing_or_malformed_headers_carry_no_token() {
        assert_eq!(bearer(&parts(None)), None);
        assert_eq!(bearer(&parts(Some("Bearer"))), None);
        assert_eq!(bearer(&parts(Some("Bearer "))), None);
        assert_eq!(bearer(&parts(Some("Basic dTpw"))), None);
        assert_eq!(bearer(&parts(Some("abc"))), None);
    }
}
