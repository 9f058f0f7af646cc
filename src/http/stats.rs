//! `GET /v1/stats/sla?from=&to=` (operators): the SLA figures of contract
//! section 3 over the alerts pressed in `[from, to)`, computed by
//! [`SlaFigures::of`] from what the store returns.
//!
//! The window, decided here:
//! - `from` and `to` are RFC 3339 times; a malformed one is a 400. A `+`
//!   in an offset must be percent-encoded (`%2B`) in a URL; one that
//!   arrived decoded as a space is read back as `+`.
//! - `to` defaults to now, `from` to 24 hours before `to`.
//! - `from` must be before `to`; otherwise a 400 (an empty or reversed
//!   window is a caller's mistake, not a question with the answer "0").
//! - Times are taken to the millisecond, the store's precision; the answer
//!   echoes the window used as `from` and `to` (an extension).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Operator;
use super::error::ApiError;
use super::extract::ApiQuery;
use super::openapi::{BadRequest, Forbidden, Unauthorized, Unavailable};
use crate::domain::Timestamp;
use crate::domain::alert::{to_millis, ts_serde};
use crate::domain::sla::SlaFigures;
use crate::engine;

/// The window when the query names no `from`.
pub const DEFAULT_WINDOW: TimeDelta = TimeDelta::hours(24);

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/stats/sla", get(sla))
}

/// The query of `GET /v1/stats/sla`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SlaQuery {
    /// The window's start, included (RFC 3339); 24 hours before `to` by
    /// default.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// The window's end, excluded (RFC 3339); now by default.
    #[param(format = DateTime)]
    pub to: Option<String>,
}

impl SlaQuery {
    /// The window `[from, to)` this query asks for, `now` standing in for
    /// a missing `to` (see the module docs).
    pub fn window(&self, now: Timestamp) -> Result<(Timestamp, Timestamp), ApiError> {
        let to = match &self.to {
            Some(raw) => parse_time("to", raw)?,
            None => to_millis(now),
        };
        let from = match &self.from {
            Some(raw) => parse_time("from", raw)?,
            None => to - DEFAULT_WINDOW,
        };
        if from >= to {
            return Err(ApiError::BadRequest(format!(
                "from ({}) must be before to ({})",
                crate::domain::alert::format_ts(&from),
                crate::domain::alert::format_ts(&to)
            )));
        }
        Ok((from, to))
    }
}

/// An RFC 3339 time, in UTC, to the millisecond; a 400 naming the field if
/// it is not one.
fn parse_time(field: &str, raw: &str) -> Result<Timestamp, ApiError> {
    let raw = raw.trim();
    let parsed = DateTime::parse_from_rfc3339(raw).or_else(|e| {
        // `+01:00` sent unencoded in a query string arrives as ` 01:00`.
        match raw.rsplit_once(' ') {
            Some((time, offset)) if offset.contains(':') && !time.contains(' ') => {
                DateTime::parse_from_rfc3339(&format!("{time}+{offset}"))
            }
            _ => Err(e),
        }
    });
    parsed
        .map(|t| to_millis(t.with_timezone(&Utc)))
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "{field}: not an RFC 3339 time ({e}), e.g. 2026-11-25T03:00:00Z"
            ))
        })
}

/// The answer: the figures, and the window they cover.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlaReport {
    /// The window's start, included (an extension).
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub from: Timestamp,
    /// The window's end, excluded (an extension).
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub to: Timestamp,
    #[serde(flatten)]
    pub figures: SlaFigures,
}

/// The SLA figures over the alerts pressed in `[from, to)` (cancelled ones
/// left out).
#[utoipa::path(
    get,
    path = "/v1/stats/sla",
    tag = "alerts",
    params(SlaQuery),
    responses(
        (status = 200, description = "The figures and the window they cover", body = SlaReport),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    extensions(("x-onepress-roles" = json!(["operator"]))),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(from = ?query.from, to = ?query.to))]
async fn sla(
    _: Operator,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SlaQuery>,
) -> Result<Json<SlaReport>, ApiError> {
    let (from, to) = query.window(engine::now())?;
    let alerts = state.store.alerts_pressed_between(from, to).await?;
    Ok(Json(SlaReport {
        from,
        to,
        figures: SlaFigures::of(&alerts),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn query(from: Option<&str>, to: Option<&str>) -> SlaQuery {
        SlaQuery {
            from: from.map(Into::into),
            to: to.map(Into::into),
        }
    }

    #[test]
    fn the_window_defaults_to_the_last_24_hours() {
        let now = ts("2026-11-25T03:00:00.123456Z");
        let (from, to) = query(None, None).window(now).unwrap();
        assert_eq!(to, ts("2026-11-25T03:00:00.123Z"));
        assert_eq!(from, ts("2026-11-24T03:00:00.123Z"));
        // A `to` alone moves the window with it.
        let (from, _) = query(None, Some("2026-01-02T00:00:00Z"))
            .window(now)
            .unwrap();
        assert_eq!(from, ts("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn times_with_offsets_are_taken_in_utc() {
        let (from, to) = query(
            Some("2026-11-25T08:00:00+08:00"),
            Some("2026-11-25T01:00:00Z"),
        )
        .window(Utc::now())
        .unwrap();
        assert_eq!(from, ts("2026-11-25T00:00:00Z"));
        assert_eq!(to, ts("2026-11-25T01:00:00Z"));
        // The `+` decoded as a space by the query string.
        let (from, _) = query(
            Some("2026-11-25T08:00:00 08:00"),
            Some("2026-11-25T01:00:00Z"),
        )
        .window(Utc::now())
        .unwrap();
        assert_eq!(from, ts("2026-11-25T00:00:00Z"));
    }

    #[test]
    fn malformed_times_are_400s_naming_the_field() {
        for bad in [
            "yesterday",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "",
            "1700000000",
        ] {
            let e = query(Some(bad), None).window(Utc::now()).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
            assert!(e.to_string().starts_with("from:"), "{e}");
        }
        let e = query(None, Some("2026-11-25T03:00:00"))
            .window(Utc::now())
            .unwrap_err();
        assert!(e.to_string().starts_with("to:"), "{e}");
    }

    #[test]
    fn from_must_be_before_to() {
        let t = "2026-11-25T03:00:00Z";
        assert_eq!(
            query(Some(t), Some(t))
                .window(Utc::now())
                .unwrap_err()
                .status(),
            400
        );
        let e = query(Some(t), Some("2026-11-25T02:00:00Z"))
            .window(Utc::now())
            .unwrap_err();
        assert_eq!(e.status(), 400);
    }
}
