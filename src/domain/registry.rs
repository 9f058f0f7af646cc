//! The registry: seniors, their bands, and volunteers' profiles. Plain data,
//! kept by the store and shown over HTTP.

use serde::{Deserialize, Serialize};

use super::alert::{Timestamp, ts_serde};
use super::geo::Position;
use super::ids::{DeviceId, SeniorId, VolunteerId};

/// Someone to call about a senior.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Contact {
    pub name: String,
    pub phone: String,
}

/// A senior living alone who wears a band.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Senior {
    pub id: SeniorId,
    pub name: String,
    pub address: Option<String>,
    pub home: Option<Position>,
    pub grid: Option<String>,
    pub notes: Option<String>,
    pub contacts: Vec<Contact>,
}

/// A band and what its heartbeats last said.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Device {
    pub device_id: DeviceId,
    pub senior_id: SeniorId,
    #[serde(with = "ts_serde::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<Timestamp>,
    pub battery: Option<u8>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

/// A heartbeat, as the store records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub device_id: DeviceId,
    pub at: Timestamp,
    pub battery: Option<u8>,
    pub position: Option<Position>,
}

/// What an operator registers about a volunteer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VolunteerProfile {
    pub id: VolunteerId,
    pub name: String,
    pub phone: Option<String>,
    pub grid: Option<String>,
    pub skills: Vec<String>,
    /// The volunteer's ntfy topic URL (an extension): offers are published
    /// there too, with Accept and Decline buttons.
    pub ntfy_url: Option<String>,
}

/// A volunteer's profile with their dispatch state, as the store has it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VolunteerRecord {
    #[serde(flatten)]
    pub profile: VolunteerProfile,
    pub on_duty: bool,
    /// Busy: accepted or assigned an alert that is not closed.
    pub busy: bool,
    pub busy_alert: Option<super::ids::AlertId>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    #[serde(with = "ts_serde::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub location_at: Option<Timestamp>,
}

/// The kinds of registered id that log in to the broker. They share one
/// namespace: an id belongs to one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    Device,
    Volunteer,
    Gateway,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Device => "device",
            PrincipalKind::Volunteer => "volunteer",
            PrincipalKind::Gateway => "gateway",
        }
    }
}

impl std::str::FromStr for PrincipalKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "device" => Ok(PrincipalKind::Device),
            "volunteer" => Ok(PrincipalKind::Volunteer),
            "gateway" => Ok(PrincipalKind::Gateway),
            other => Err(format!("unknown principal kind {other:?}")),
        }
    }
}

/// A registered id's broker login: its kind and the `$6$` hash of its
/// MQTT password (None: it cannot log in yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: String,
    pub kind: PrincipalKind,
    pub secret_hash: Option<String>,
}

/// A volunteer's Web Push subscription as stored: the push service's
/// endpoint and the browser's keys (base64url), checked before they are
/// stored and again before each use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEndpoint {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}
