//! Turns an MQTT message (topic, bytes) into a typed band event, or a
//! [`Reject`] with its reason. Pure: no I/O, never panics on any input.
//! Registration of the device is checked later, by the ingest.

use serde_json::{Map, Value};

use crate::domain::{DeviceId, EventId, Position, PressKind, Timestamp};

/// The largest payload the contract accepts.
pub const MAX_PAYLOAD: usize = 4096;

/// An event from a band.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Alert(DeviceId, AlertEvent),
    Status(DeviceId, StatusBeat),
}

/// `wristbands/{device_id}/alert`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub event_id: EventId,
    pub kind: PressKind,
    pub ts: Option<Timestamp>,
    pub position: Option<Position>,
    pub accuracy_m: Option<f64>,
    pub battery: Option<u8>,
}

/// `wristbands/{device_id}/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusBeat {
    pub ts: Option<Timestamp>,
    pub position: Option<Position>,
    pub battery: Option<u8>,
}

/// Why a message creates nothing. `reason()` is the metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    #[error("payload of {0} bytes is over the 4 KiB limit")]
    TooLarge(usize),
    #[error("payload is not a JSON object: {0}")]
    NotJson(String),
    #[error("invalid field `{field}`: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("topic {0:?} is not a band topic")]
    UnknownTopic(String),
    #[error("device id in the topic is invalid: {0}")]
    BadDevice(String),
    #[error("device {0} is not registered")]
    UnknownDevice(DeviceId),
    #[error("cancel with no active alert")]
    NothingToCancel,
    /// A heartbeat (QoS 0) that arrived while too many messages waited:
    /// dropped so that memory stays bounded (the band's next one will do).
    #[error("dropped: {0} messages are waiting to be taken in")]
    Overloaded(usize),
}

impl Reject {
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::TooLarge(_) => "too_large",
            Reject::NotJson(_) => "not_json",
            Reject::Invalid { .. } => "invalid_field",
            Reject::UnknownTopic(_) => "unknown_topic",
            Reject::BadDevice(_) => "invalid_device_id",
            Reject::UnknownDevice(_) => "unknown_device",
            Reject::NothingToCancel => "nothing_to_cancel",
            Reject::Overloaded(_) => "overloaded",
        }
    }
}

/// Which band topic a message came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Alert,
    Status,
}

/// Parses one message.
pub fn parse(topic: &str, payload: &[u8]) -> Result<Inbound, Reject> {
    let (device, channel) = parse_topic(topic)?;
    if payload.len() > MAX_PAYLOAD {
        return Err(Reject::TooLarge(payload.len()));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| Reject::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(Reject::NotJson("not an object".into()));
    };
    match channel {
        Channel::Alert => Ok(Inbound::Alert(device, alert_event(&obj)?)),
        Channel::Status => Ok(Inbound::Status(
            device,
            StatusBeat {
                ts: ts(&obj)?,
                position: position(&obj)?,
                battery: battery(&obj)?,
            },
        )),
    }
}

fn parse_topic(topic: &str) -> Result<(DeviceId, Channel), Reject> {
    let mut parts = topic.split('/');
    let (Some("wristbands"), Some(device), Some(kind), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::UnknownTopic(topic.into()));
    };
    let channel = match kind {
        "alert" => Channel::Alert,
        "status" => Channel::Status,
        _ => return Err(Reject::UnknownTopic(topic.into())),
    };
    let device = DeviceId::parse(device).map_err(|e| Reject::BadDevice(e.to_string()))?;
    Ok((device, channel))
}

fn invalid(field: &'static str, why: impl Into<String>) -> Reject {
    Reject::Invalid {
        field,
        why: why.into(),
    }
}

/// A field that is present and not null.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn alert_event(obj: &Map<String, Value>) -> Result<AlertEvent, Reject> {
    let event_id = match field(obj, "event_id") {
        None => return Err(invalid("event_id", "is required")),
        Some(Value::String(s)) => {
            EventId::parse(s.as_str()).map_err(|e| invalid("event_id", e.to_string()))?
        }
        Some(_) => return Err(invalid("event_id", "must be a string")),
    };
    let kind = match field(obj, "kind") {
        None => return Err(invalid("kind", "is required")),
        Some(Value::String(s)) => match s.as_str() {
            "sos" => PressKind::Sos,
            "fall" => PressKind::Fall,
            "cancel" => PressKind::Cancel,
            other => {
                return Err(invalid(
                    "kind",
                    format!("{other:?} is not sos, fall or cancel"),
                ));
            }
        },
        Some(_) => return Err(invalid("kind", "must be a string")),
    };
    let accuracy_m = match field(obj, "accuracy_m") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(a) if a.is_finite() && a >= 0.0 => Some(a),
            _ => return Err(invalid("accuracy_m", "must be a non-negative number")),
        },
    };
    Ok(AlertEvent {
        event_id,
        kind,
        ts: ts(obj)?,
        position: position(obj)?,
        accuracy_m,
        battery: battery(obj)?,
    })
}

fn ts(obj: &Map<String, Value>) -> Result<Option<Timestamp>, Reject> {
    match field(obj, "ts") {
        None => Ok(None),
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(crate::domain::alert::to_millis(t.to_utc())))
            .map_err(|e| invalid("ts", format!("not an RFC 3339 time: {e}"))),
        Some(_) => Err(invalid("ts", "must be an RFC 3339 string")),
    }
}

fn position(obj: &Map<String, Value>) -> Result<Option<Position>, Reject> {
    match (field(obj, "lat"), field(obj, "lon")) {
        (None, None) => Ok(None),
        (Some(lat), Some(lon)) => {
            let lat = lat
                .as_f64()
                .ok_or_else(|| invalid("lat", "must be a number"))?;
            let lon = lon
                .as_f64()
                .ok_or_else(|| invalid("lon", "must be a number"))?;
            Position::new(lat, lon).map(Some).map_err(|e| match e {
                crate::domain::geo::PositionError::Latitude => invalid("lat", e.to_string()),
                crate::domain::geo::PositionError::Longitude => invalid("lon", e.to_string()),
            })
        }
        (Some(_), None) => Err(invalid("lon", "lat and lon come together")),
        (None, Some(_)) => Err(invalid("lat", "lat and lon come together")),
    }
}

fn battery(obj: &Map<String, Value>) -> Result<Option<u8>, Reject> {
    match field(obj, "battery") {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(b) if b <= 100 => Ok(Some(b as u8)),
            _ => Err(invalid("battery", "must be an integer from 0 to 100")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "wristbands/band-1/alert";

    fn reason(topic: &str, payload: &str) -> &'static str {
        parse(topic, payload.as_bytes()).unwrap_err().reason()
    }

    #[test]
    fn the_contract_example_parses() {
        let p = r#"{"event_id": "a1b2-7", "kind": "sos", "ts": "2026-11-25T03:00:00Z",
            "lat": 30.5101, "lon": 120.6805, "accuracy_m": 20, "battery": 80}"#;
        let Inbound::Alert(device, ev) = parse(T, p.as_bytes()).unwrap() else {
            panic!("not an alert")
        };
        assert_eq!(device.as_str(), "band-1");
        assert_eq!(ev.event_id.as_str(), "a1b2-7");
        assert_eq!(ev.kind, PressKind::Sos);
        assert_eq!(ev.position.unwrap().lat(), 30.5101);
        assert_eq!(ev.battery, Some(80));
        assert_eq!(ev.accuracy_m, Some(20.0));
        assert_eq!(ev.ts.unwrap().to_rfc3339(), "2026-11-25T03:00:00+00:00");
    }

    #[test]
    fn minimal_events_and_unknown_fields_are_fine() {
        for kind in ["sos", "fall", "cancel"] {
            let p = format!(r#"{{"event_id": "e", "kind": "{kind}", "extra": [1, {{}}]}}"#);
            assert!(parse(T, p.as_bytes()).is_ok(), "{kind}");
        }
    }

    #[test]
    fn over_4_kib_is_too_large() {
        let p = format!(
            r#"{{"event_id": "e", "kind": "sos", "pad": "{}"}}"#,
            "x".repeat(4100)
        );
        assert_eq!(reason(T, &p), "too_large");
    }

    #[test]
    fn exactly_4_kib_is_accepted() {
        let head = r#"{"event_id": "e", "kind": "sos", "pad": ""#;
        let pad = "x".repeat(MAX_PAYLOAD - head.len() - 2);
        let p = format!("{head}{pad}\"}}");
        assert_eq!(p.len(), MAX_PAYLOAD);
        assert!(parse(T, p.as_bytes()).is_ok());
    }

    #[test]
    fn non_json_is_rejected() {
        assert_eq!(reason(T, "press!"), "not_json");
        assert_eq!(reason(T, ""), "not_json");
        assert_eq!(reason(T, "[1,2]"), "not_json");
        assert_eq!(reason(T, "\"sos\""), "not_json");
        assert_eq!(
            parse(T, &[0xff, 0xfe, 0x00]).unwrap_err().reason(),
            "not_json"
        );
    }

    #[test]
    fn missing_or_bad_required_fields_are_rejected() {
        assert_eq!(reason(T, r#"{"kind": "sos"}"#), "invalid_field");
        assert_eq!(reason(T, r#"{"event_id": "e"}"#), "invalid_field");
        assert_eq!(
            reason(T, r#"{"event_id": "", "kind": "sos"}"#),
            "invalid_field"
        );
        assert_eq!(
            reason(T, r#"{"event_id": 7, "kind": "sos"}"#),
            "invalid_field"
        );
        let long = format!(r#"{{"event_id": "{}", "kind": "sos"}}"#, "e".repeat(65));
        assert_eq!(reason(T, &long), "invalid_field");
        assert_eq!(
            reason(T, r#"{"event_id": "e", "kind": "help"}"#),
            "invalid_field"
        );
        assert_eq!(
            reason(T, r#"{"event_id": "e", "kind": null}"#),
            "invalid_field"
        );
        // No store can keep a NUL (PostgreSQL refuses it): stored, it would
        // be retried forever and hold up the band's later events.
        assert_eq!(
            reason(T, r#"{"event_id": "e\u0000", "kind": "sos"}"#),
            "invalid_field"
        );
    }

    #[test]
    fn optional_fields_are_checked() {
        let bad = [
            r#"{"event_id": "e", "kind": "sos", "lat": 30.5}"#,
            r#"{"event_id": "e", "kind": "sos", "lon": 120.5}"#,
            r#"{"event_id": "e", "kind": "sos", "lat": 91, "lon": 120.5}"#,
            r#"{"event_id": "e", "kind": "sos", "lat": 30, "lon": -181}"#,
            r#"{"event_id": "e", "kind": "sos", "lat": "30", "lon": 120}"#,
            r#"{"event_id": "e", "kind": "sos", "battery": 101}"#,
            r#"{"event_id": "e", "kind": "sos", "battery": -1}"#,
            r#"{"event_id": "e", "kind": "sos", "battery": 50.5}"#,
            r#"{"event_id": "e", "kind": "sos", "accuracy_m": -3}"#,
            r#"{"event_id": "e", "kind": "sos", "ts": "yesterday"}"#,
            r#"{"event_id": "e", "kind": "sos", "ts": 1732500000}"#,
        ];
        for p in bad {
            assert_eq!(reason(T, p), "invalid_field", "{p}");
        }
    }

    #[test]
    fn coordinates_are_read_to_the_last_bit() {
        // 17 significant digits, as a phone's JSON.stringify writes some
        // doubles: without serde_json's `float_roundtrip` this one came out
        // one ULP off (…835), and would then be echoed with other digits.
        let p = r#"{"event_id": "e", "kind": "sos", "lat": 15.406572870068837, "lon": 0}"#;
        let Inbound::Alert(_, ev) = parse(T, p.as_bytes()).unwrap() else {
            panic!("not an alert")
        };
        let lat = ev.position.unwrap().lat();
        assert_eq!(lat, "15.406572870068837".parse::<f64>().unwrap());
        assert_eq!(serde_json::to_string(&lat).unwrap(), "15.406572870068837");
    }

    #[test]
    fn nulls_count_as_absent() {
        let p = r#"{"event_id": "e", "kind": "sos", "lat": null, "lon": null, "ts": null}"#;
        assert!(parse(T, p.as_bytes()).is_ok());
    }

    #[test]
    fn topics_are_checked() {
        assert_eq!(reason("wristbands/a b/alert", "{}"), "invalid_device_id");
        assert_eq!(reason("wristbands/x/notify", "{}"), "unknown_topic");
        assert_eq!(reason("wristbands/x/alert/more", "{}"), "unknown_topic");
        assert_eq!(reason("volunteers/x/offers", "{}"), "unknown_topic");
    }

    #[test]
    fn heartbeats_parse_and_are_checked() {
        let t = "wristbands/band-1/status";
        let Inbound::Status(_, beat) =
            parse(t, br#"{"battery": 55, "lat": 30.51, "lon": 120.68}"#).unwrap()
        else {
            panic!("not a status")
        };
        assert_eq!(beat.battery, Some(55));
        assert!(parse(t, b"{}").is_ok());
        assert_eq!(reason(t, r#"{"battery": 500}"#), "invalid_field");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix of a valid payload and a
        // spread of byte soup.
        let valid =
            br#"{"event_id": "a1b2-7", "kind": "sos", "lat": 30.5, "lon": 120.6, "battery": 80}"#;
        for n in 0..valid.len() {
            let _ = parse(T, &valid[..n]);
        }
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let len = (x % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = parse(T, &bytes);
        }
    }
}
