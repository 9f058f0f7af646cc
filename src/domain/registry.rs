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
