//! Notifications: what people outside MQTT are told about an alert (a
//! volunteer of an offer, the operators of an escalation or a breach, a
//! senior's family of its progress), as records the shell writes in the
//! same transaction as the change that caused them and delivers after it.

use super::alert::Timestamp;
use super::ids::{AlertId, SeniorId, VolunteerId};

/// Whom a notification is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// The volunteer an offer is for.
    Volunteer(VolunteerId),
    /// The operators at the community centre.
    Operators,
    /// The contacts registered for a senior (their family).
    Contacts(SeniorId),
}

impl Audience {
    /// The stored and displayed form: `volunteer:<id>`, `operators`,
    /// `contacts:<senior id>`.
    pub fn label(&self) -> String {
        match self {
            Audience::Volunteer(v) => format!("volunteer:{v}"),
            Audience::Operators => "operators".into(),
            Audience::Contacts(s) => format!("contacts:{s}"),
        }
    }

    /// Reads [`Audience::label`] back.
    pub fn parse(label: &str) -> Option<Self> {
        match label.split_once(':') {
            None if label == "operators" => Some(Audience::Operators),
            Some(("volunteer", id)) => VolunteerId::parse(id).ok().map(Audience::Volunteer),
            Some(("contacts", id)) => SeniorId::parse(id).ok().map(Audience::Contacts),
            _ => None,
        }
    }
}

/// One notification due: to `audience`, about `event` of `alert_id`, with a
/// JSON `body` (the facts a channel renders), due at `due_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Unique, stable across retries (a receiver can drop repeats by it).
    pub id: String,
    pub alert_id: AlertId,
    pub audience: Audience,
    /// `offer`, `escalated`, `response_breached`, `arrival_breached`,
    /// `pressed`, `accepted`, `on_scene`, `resolved`.
    pub event: String,
    /// A JSON object.
    pub body: String,
    pub due_at: Timestamp,
    /// Deliveries tried so far.
    pub attempts: u32,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_round_trip_and_strangers_are_refused() {
        for a in [
            Audience::Operators,
            Audience::Volunteer(VolunteerId::parse("v-1").unwrap()),
            Audience::Contacts(SeniorId::parse("s_17").unwrap()),
        ] {
            assert_eq!(Audience::parse(&a.label()), Some(a));
        }
        for bad in [
            "",
            "operator",
            "volunteer:",
            "contacts:a b",
            "someone:x",
            "operators:x",
        ] {
            assert_eq!(Audience::parse(bad), None, "{bad}");
        }
    }
}
