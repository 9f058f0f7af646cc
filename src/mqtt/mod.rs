//! The MQTT adapter: the embedded broker, the client connection, the
//! ingest of band events and the publishing of notices and offers.
//!
//! It turns MQTT into domain commands and domain messages into MQTT; it
//! never decides anything about an alert. Topics are the contract's.

pub mod client;
pub mod embedded;
pub mod ingest;
pub mod payload;
pub mod publish;

use crate::domain::{DeviceId, VolunteerId};

/// `wristbands/+/alert`, the filter the service subscribes to for presses.
pub const ALERT_FILTER: &str = "wristbands/+/alert";
/// `wristbands/+/status`, heartbeats.
pub const STATUS_FILTER: &str = "wristbands/+/status";

pub fn notify_topic(device: &DeviceId) -> String {
    format!("wristbands/{device}/notify")
}

pub fn offers_topic(volunteer: &VolunteerId) -> String {
    format!("volunteers/{volunteer}/offers")
}
