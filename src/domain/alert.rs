//! What an alert is: its states, its timeline, the offers made for it, and
//! the messages that tell a band or a phone about it. Plain data; the rules
//! that move it live in `dispatcher`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};

use super::geo::Position;
use super::ids::{AlertId, DeviceId, EventId, SeniorId, VolunteerId};

/// A point in time, UTC, to the millisecond.
pub type Timestamp = DateTime<Utc>;

/// Truncates a time to whole milliseconds, the precision the store keeps.
pub fn to_millis(ts: Timestamp) -> Timestamp {
    use chrono::DurationRound;
    ts.duration_trunc(chrono::TimeDelta::milliseconds(1))
        .unwrap_or(ts)
}

/// RFC 3339 with milliseconds and `Z`, as the contract writes times.
pub fn format_ts(ts: &Timestamp) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub mod ts_serde {
    //! Serde for `Timestamp` in the contract's form.
    use super::*;
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_ts(ts))
    }
    pub mod option {
        use super::*;
        pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match ts {
                Some(ts) => s.serialize_str(&format_ts(ts)),
                None => s.serialize_none(),
            }
        }
    }
}

/// Why a string names no variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: {value:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $what, value: s.to_string() }),
                }
            }
        }
    };
}

named_enum!(
    /// What opened an alert.
    AlertKind, "alert kind" { Sos => "sos", Fall => "fall" }
);

named_enum!(
    /// Where an alert is in its life cycle.
    AlertState, "alert state" {
        Open => "open",
        Offered => "offered",
        Accepted => "accepted",
        OnScene => "on_scene",
        Resolved => "resolved",
        Cancelled => "cancelled",
    }
);

impl AlertState {
    /// Open, offered, accepted or on scene.
    pub fn is_active(&self) -> bool {
        !matches!(self, AlertState::Resolved | AlertState::Cancelled)
    }
}

named_enum!(
    /// How an offer ended.
    OfferOutcome, "offer outcome" {
        Accepted => "accepted",
        Declined => "declined",
        Expired => "expired",
        Withdrawn => "withdrawn",
    }
);

named_enum!(
    /// Why an offer was taken back from a volunteer's phone.
    WithdrawReason, "withdraw reason" {
        Taken => "taken",
        Cancelled => "cancelled",
        Expired => "expired",
        OffDuty => "off_duty",
        Assigned => "assigned",
    }
);

named_enum!(
    /// The timeline event types of the contract.
    TimelineKind, "timeline event type" {
        Pressed => "pressed",
        PressedAgain => "pressed_again",
        Offered => "offered",
        Declined => "declined",
        OfferExpired => "offer_expired",
        OfferWithdrawn => "offer_withdrawn",
        Accepted => "accepted",
        Assigned => "assigned",
        Escalated => "escalated",
        ResponseBreached => "response_breached",
        ArrivalBreached => "arrival_breached",
        OnScene => "on_scene",
        Resolved => "resolved",
        Cancelled => "cancelled",
        Notified => "notified",
    }
);

/// Who did something to an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The senior, through the band.
    Senior,
    /// An operator at the community centre.
    Operator,
    /// A volunteer.
    Volunteer(VolunteerId),
}

impl Actor {
    /// The `by` field of a timeline event.
    pub fn label(&self) -> String {
        match self {
            Actor::Senior => "senior".into(),
            Actor::Operator => "operator".into(),
            Actor::Volunteer(v) => format!("volunteer:{v}"),
        }
    }
}

/// One entry of an alert's append-only timeline.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimelineEvent {
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    #[serde(rename = "type")]
    pub kind: TimelineKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volunteer_id: Option<VolunteerId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The band's event id, for `pressed` and `pressed_again` (an extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    /// For `notified` (an extension): the channel that carried the
    /// notification (`webhook`, …), with `recipient` (`volunteer:<id>`,
    /// `operators`, `contacts:<senior id>`) and `outcome` (`delivered`,
    /// `retrying`, `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
}

impl TimelineEvent {
    pub fn new(at: Timestamp, kind: TimelineKind) -> Self {
        Self {
            at,
            kind,
            volunteer_id: None,
            distance_m: None,
            eta_s: None,
            by: None,
            reason: None,
            outcome: None,
            note: None,
            event_id: None,
            channel: None,
            recipient: None,
        }
    }

    pub fn volunteer(mut self, v: &VolunteerId) -> Self {
        self.volunteer_id = Some(v.clone());
        self
    }

    pub fn by(mut self, actor: &Actor) -> Self {
        self.by = Some(actor.label());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// A pending offer of an alert to a volunteer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Offer {
    pub volunteer_id: VolunteerId,
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub offered_at: Timestamp,
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    pub distance_m: u32,
    pub eta_s: u32,
}

/// What a volunteer is told about the senior in an offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeniorCard {
    pub id: SeniorId,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// An alert as the contract shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Alert {
    pub id: AlertId,
    pub device_id: DeviceId,
    pub senior_id: SeniorId,
    pub kind: AlertKind,
    pub state: AlertState,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub pressed_at: Timestamp,
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
    pub volunteer_id: Option<VolunteerId>,
    #[serde(with = "ts_serde::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub accepted_at: Option<Timestamp>,
    #[serde(with = "ts_serde::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub on_scene_at: Option<Timestamp>,
    #[serde(with = "ts_serde::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolved_at: Option<Timestamp>,
    /// When it was cancelled (an extension).
    #[serde(with = "ts_serde::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cancelled_at: Option<Timestamp>,
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub response_deadline: Timestamp,
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub arrival_deadline: Timestamp,
    pub response_breached: bool,
    pub arrival_breached: bool,
    /// True while the alert waits with nobody to offer it to.
    pub escalated: bool,
    pub arrival_at_risk: bool,
    /// The band's id for the event that opened the alert (an extension).
    pub event_id: EventId,
    /// The outcome given on resolution (an extension).
    pub outcome: Option<String>,
    /// Pending offers.
    pub offers: Vec<Offer>,
}

impl Alert {
    pub fn position(&self) -> Option<Position> {
        match (self.lat, self.lon) {
            (Some(lat), Some(lon)) => Position::new(lat, lon).ok(),
            _ => None,
        }
    }

    pub fn pending_offer(&self, v: &VolunteerId) -> Option<&Offer> {
        self.offers.iter().find(|o| &o.volunteer_id == v)
    }
}

/// A message for a band: `wristbands/{device_id}/notify`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandNotice {
    /// Null only in the `received` for a `cancel` that found no active
    /// alert (there is nothing it belongs to).
    pub alert_id: Option<AlertId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    /// `received`, or the alert's new state.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volunteer_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<u32>,
}

impl BandNotice {
    /// The end-to-end acknowledgement of a band event: it is stored.
    pub fn received(alert_id: Option<AlertId>, event_id: EventId) -> Self {
        Self {
            alert_id,
            event_id: Some(event_id),
            state: "received".into(),
            volunteer_name: None,
            eta_s: None,
        }
    }
}

/// A message for a volunteer's phone: `volunteers/{volunteer_id}/offers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PhoneMessage {
    Offer {
        alert_id: AlertId,
        kind: AlertKind,
        lat: Option<f64>,
        lon: Option<f64>,
        distance_m: u32,
        eta_s: u32,
        #[serde(with = "ts_serde")]
        expires_at: Timestamp,
        senior: SeniorCard,
    },
    Withdrawn {
        alert_id: AlertId,
        reason: WithdrawReason,
    },
    /// An operator sent this volunteer by hand (an extension: a new message
    /// type on the same topic).
    Assigned {
        alert_id: AlertId,
        kind: AlertKind,
        lat: Option<f64>,
        lon: Option<f64>,
        distance_m: Option<u32>,
        eta_s: Option<u32>,
        senior: SeniorCard,
    },
}

/// Something to publish once the effects that caused it are committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Band(DeviceId, BandNotice),
    Phone(VolunteerId, PhoneMessage),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in TimelineKind::ALL {
            assert_eq!(k.as_str().parse::<TimelineKind>(), Ok(*k));
        }
        for s in AlertState::ALL {
            assert_eq!(s.as_str().parse::<AlertState>(), Ok(*s));
        }
        assert!("nope".parse::<AlertState>().is_err());
    }

    #[test]
    fn serde_names_match_as_str() {
        for r in WithdrawReason::ALL {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::String(r.as_str().into())
            );
        }
    }

    #[test]
    fn timestamps_are_written_with_millis_and_z() {
        let ts: Timestamp = "2026-11-25T03:00:00.123Z".parse().unwrap();
        assert_eq!(format_ts(&ts), "2026-11-25T03:00:00.123Z");
    }

    #[test]
    fn a_withdrawal_has_the_contract_shape() {
        let m = PhoneMessage::Withdrawn {
            alert_id: AlertId::parse("a1").unwrap(),
            reason: WithdrawReason::OffDuty,
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"type": "withdrawn", "alert_id": "a1", "reason": "off_duty"})
        );
    }
}
