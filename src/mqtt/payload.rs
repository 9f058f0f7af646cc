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
    /// An alert event past the band's allowance of alert events a second
    /// (its active alert stays as it is; a band that hears no `received`
    /// sends the event again).
    #[error("more than {0} alert events a second from this device")]
    RateLimited(u32),
    /// The store refused the event for good (not an outage: an error that
    /// would recur on every retry). Counted and acknowledged so that one bad
    /// row cannot stall every band's intake behind it.
    #[error("the store refused it: {0}")]
    Refused(String),
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
            Reject::RateLimited(_) => "rate_limited",
            Reject::Refused(_) => "store_refused",
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

/// Property tests: whatever arrives on whatever topic, `parse` answers
/// without panicking, and it accepts exactly what contract section 1 allows,
/// with the values sent. The expectations are written out from the
/// contract here ([`props::contract_alert`], [`props::contract_topic`]), not
/// taken from the parser. Case counts are kept small enough for every
/// `cargo test` (a second or two in a debug build).
#[cfg(test)]
mod props {
    use proptest::prelude::*;
    use serde_json::{Map, Number, Value, json};

    use super::*;

    // ----- what the contract says -----------------------------------------

    /// The device id and channel of a band topic, as the contract writes it:
    /// `wristbands/{[A-Za-z0-9_-]{1,64}}/alert|status`.
    fn contract_topic(topic: &str) -> Option<(&str, Channel)> {
        let rest = topic.strip_prefix("wristbands/")?;
        let (device, channel) = rest.split_once('/')?;
        let channel = match channel {
            "alert" => Channel::Alert,
            "status" => Channel::Status,
            _ => return None,
        };
        let ok = (1..=64).contains(&device.len())
            && device
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        ok.then_some((device, channel))
    }

    /// What an accepted alert event must carry.
    #[derive(Debug, PartialEq)]
    struct Expected {
        event_id: String,
        kind: PressKind,
        ts: Option<Timestamp>,
        position: Option<(f64, f64)>,
        accuracy_m: Option<f64>,
        battery: Option<u8>,
    }

    /// A field as the contract reads it: absent and `null` are the same.
    fn given<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
        obj.get(name).filter(|v| !v.is_null())
    }

    /// `Some(Some(t))` for a valid `ts`, `Some(None)` for none, `None` for
    /// an invalid one.
    fn contract_ts(obj: &Map<String, Value>) -> Option<Option<Timestamp>> {
        match given(obj, "ts") {
            None => Some(None),
            Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| Some(crate::domain::alert::to_millis(t.to_utc()))),
            Some(_) => None,
        }
    }

    /// `lat` and `lon`: both or neither, numbers, in range.
    fn contract_position(obj: &Map<String, Value>) -> Option<Option<(f64, f64)>> {
        match (given(obj, "lat"), given(obj, "lon")) {
            (None, None) => Some(None),
            (Some(Value::Number(lat)), Some(Value::Number(lon))) => {
                let (lat, lon) = (lat.as_f64()?, lon.as_f64()?);
                ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
                    .then_some(Some((lat, lon)))
            }
            _ => None,
        }
    }

    /// `battery`: a whole number of percent, 0 to 100.
    fn contract_battery(obj: &Map<String, Value>) -> Option<Option<u8>> {
        match given(obj, "battery") {
            None => Some(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(b) if b <= 100 => Some(Some(b as u8)),
                _ => None,
            },
            Some(_) => None,
        }
    }

    /// What the contract makes of an alert payload: None if it is rejected.
    fn contract_alert(payload: &[u8]) -> Option<Expected> {
        if payload.len() > MAX_PAYLOAD {
            return None;
        }
        let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(payload) else {
            return None;
        };
        let event_id = match given(&obj, "event_id") {
            Some(Value::String(s))
                if (1..=64).contains(&s.chars().count()) && !s.contains('\0') =>
            {
                s.clone()
            }
            _ => return None,
        };
        let kind = match given(&obj, "kind").and_then(Value::as_str) {
            Some("sos") => PressKind::Sos,
            Some("fall") => PressKind::Fall,
            Some("cancel") => PressKind::Cancel,
            _ => return None,
        };
        let accuracy_m = match given(&obj, "accuracy_m") {
            None => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(a) if a >= 0.0 => Some(a),
                _ => return None,
            },
            Some(_) => return None,
        };
        Some(Expected {
            event_id,
            kind,
            ts: contract_ts(&obj)?,
            position: contract_position(&obj)?,
            accuracy_m,
            battery: contract_battery(&obj)?,
        })
    }

    /// What the contract makes of a heartbeat: None if it is rejected.
    fn contract_beat(payload: &[u8]) -> Option<StatusBeat> {
        if payload.len() > MAX_PAYLOAD {
            return None;
        }
        let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(payload) else {
            return None;
        };
        let position = match contract_position(&obj)? {
            None => None,
            Some((lat, lon)) => Some(Position::new(lat, lon).ok()?),
        };
        Some(StatusBeat {
            ts: contract_ts(&obj)?,
            position,
            battery: contract_battery(&obj)?,
        })
    }

    fn seen(event: &AlertEvent) -> Expected {
        Expected {
            event_id: event.event_id.as_str().to_string(),
            kind: event.kind,
            ts: event.ts,
            position: event.position.map(|p| (p.lat(), p.lon())),
            accuracy_m: event.accuracy_m,
            battery: event.battery,
        }
    }

    // ----- what is generated ------------------------------------------------

    /// Strings a band, a bug or an attacker might send: ordinary text, the
    /// contract's edges (1 and 64, 65 characters), NUL and other control
    /// characters, U+0085, U+2028, astral characters, and anything at all.
    fn nasty_string() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z0-9-]{1,8}",
            Just("sos".to_string()),
            Just("fall".to_string()),
            Just("cancel".to_string()),
            Just("SOS".to_string()),
            Just("sos ".to_string()),
            "[\\x00-\\x1f\\u{85}\\u{2028}\\u{1F600}a]{0,6}",
            "[a-z]{64}",
            "[a-z]{65}",
            "\\PC{60,66}",
            Just("2026-11-25T03:00:00Z".to_string()),
            Just("2026-11-25T03:00:00.123+08:00".to_string()),
            Just("2026-11-25 03:00:00".to_string()),
            Just("NaN".to_string()),
            Just("Infinity".to_string()),
            any::<String>(),
        ]
    }

    /// Numbers around every range the contract sets, and far outside.
    fn nasty_number() -> impl Strategy<Value = Value> {
        prop_oneof![
            (-200i64..=200).prop_map(Value::from),
            (-200.0f64..200.0).prop_map(Value::from),
            prop::sample::select(vec![
                -90.0, 90.0, -180.0, 180.0, -0.0, 0.5, 100.0, 100.5, 101.0, 1e300, -1e300, 5e-324,
            ])
            .prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ]
    }

    /// Any JSON value, nested a few levels.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            nasty_number(),
            nasty_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(nasty_string(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A field's value: mostly `valid`, sometimes absent, one of `invalid`
    /// or anything at all (`null` included). `absent` weighs how often it is
    /// left out (an error for a required field).
    fn field(
        absent: u32,
        valid: impl Strategy<Value = Value> + 'static,
        invalid: impl Strategy<Value = Value> + 'static,
    ) -> BoxedStrategy<Option<Value>> {
        prop_oneof![
            absent => Just(None),
            24 => valid.prop_map(Some),
            3 => invalid.prop_map(Some),
            1 => json_value().prop_map(Some),
        ]
        .boxed()
    }

    fn select(values: Vec<Value>) -> impl Strategy<Value = Value> {
        prop::sample::select(values)
    }

    /// `lat` and `lon` together: both or neither, in range or just out,
    /// one without the other, of the wrong type.
    fn lat_lon() -> impl Strategy<Value = (Option<Value>, Option<Value>)> {
        let lat = prop_oneof![
            (-90.0f64..=90.0).prop_map(Value::from),
            (-90i64..=90).prop_map(Value::from),
            select(vec![json!(-90.0), json!(90), json!(-0.0)]),
        ];
        let lon = prop_oneof![
            (-180.0f64..=180.0).prop_map(Value::from),
            (-180i64..=180).prop_map(Value::from),
            select(vec![json!(-180), json!(180.0), json!(-0.0)]),
        ];
        let bad_lat = select(vec![
            json!(90.000_000_1),
            json!(-91),
            json!(1e300),
            json!(u64::MAX),
            json!("30.5"),
        ]);
        let bad_lon = select(vec![
            json!(180.000_000_1),
            json!(-181),
            json!(360),
            json!(i64::MIN),
            json!([120.5]),
        ]);
        prop_oneof![
            4 => Just((None, None)),
            18 => (lat.clone(), lon.clone()).prop_map(|(a, o)| (Some(a), Some(o))),
            1 => (bad_lat, lon.clone()).prop_map(|(a, o)| (Some(a), Some(o))),
            1 => (lat.clone(), bad_lon).prop_map(|(a, o)| (Some(a), Some(o))),
            1 => lat.clone().prop_map(|a| (Some(a), None)),
            1 => lon.prop_map(|o| (None, Some(o))),
            1 => (json_value(), lat).prop_map(|(a, o)| (Some(a), Some(o))),
        ]
    }

    /// An RFC 3339 time between 1970 and 2100 at any whole-minute offset,
    /// with or without milliseconds, and the instant it names (to the ms).
    fn rfc3339() -> impl Strategy<Value = (String, Timestamp)> {
        (0i64..4_102_444_800_000, -1439i32..1440, any::<bool>()).prop_map(
            |(ms, offset_min, fraction)| {
                let offset = chrono::FixedOffset::east_opt(offset_min * 60).expect("within a day");
                let ms = if fraction {
                    ms
                } else {
                    ms - ms.rem_euclid(1000)
                };
                let t = chrono::DateTime::from_timestamp_millis(ms).expect("in range");
                let format = if fraction {
                    chrono::SecondsFormat::Millis
                } else {
                    chrono::SecondsFormat::Secs
                };
                let text = t
                    .with_timezone(&offset)
                    .to_rfc3339_opts(format, offset_min == 0);
                (text, t)
            },
        )
    }

    /// The fields of an alert event or a heartbeat, each mostly right and
    /// sometimes wrong in the ways a band could get it wrong (so that many
    /// whole events are valid, and many are wrong in one field only), plus
    /// unknown fields and a padding that takes the payload near and over
    /// 4 KiB.
    fn event_like() -> impl Strategy<Value = Vec<u8>> {
        let event_id = field(
            1,
            prop_oneof!["[^\\x00]{1,64}", "[a-z]{64}", "\\PC{1,3}"].prop_map(Value::String),
            prop_oneof![
                Just(json!("")),
                "[a-z]{65}".prop_map(Value::String),
                "[a-z]{0,3}\\x00[a-z]{0,3}".prop_map(Value::String),
                Just(json!(7)),
            ],
        );
        let kind = field(
            1,
            select(vec![json!("sos"), json!("fall"), json!("cancel")]),
            select(vec![json!("SOS"), json!("sos "), json!("help"), json!("")]),
        );
        let ts = field(
            6,
            rfc3339().prop_map(|(text, _)| Value::String(text)),
            prop_oneof![
                nasty_string().prop_map(Value::String),
                Just(json!("2026-11-25T03:00:00")),
                Just(json!("2026-11-25 03:00:00Z")),
                Just(json!(1_764_039_600)),
            ],
        );
        let accuracy = field(
            6,
            prop_oneof![
                (0.0f64..1e6).prop_map(Value::from),
                (0u32..5000).prop_map(Value::from)
            ],
            select(vec![json!(-0.5), json!(-1), json!(i64::MIN), json!("20")]),
        );
        let battery = field(
            6,
            (0u8..=100).prop_map(Value::from),
            select(vec![
                json!(-1),
                json!(101),
                json!(255),
                json!(256),
                json!(50.5),
                json!(80.0),
                json!(-0.0),
                json!(u64::MAX),
                json!("80"),
            ]),
        );
        (
            (event_id, kind, ts, lat_lon(), accuracy, battery),
            prop::collection::btree_map("[a-z_]{1,10}", json_value(), 0..3),
            prop_oneof![4 => Just(None), 1 => (3900usize..4200).prop_map(Some)],
        )
            .prop_map(
                |((event_id, kind, ts, (lat, lon), accuracy, battery), extra, pad)| {
                    let mut obj: Map<String, Value> = extra.into_iter().collect();
                    let fields = [
                        ("event_id", event_id),
                        ("kind", kind),
                        ("ts", ts),
                        ("lat", lat),
                        ("lon", lon),
                        ("accuracy_m", accuracy),
                        ("battery", battery),
                    ];
                    for (name, value) in fields {
                        if let Some(v) = value {
                            obj.insert(name.to_string(), v);
                        }
                    }
                    let mut bytes = serde_json::to_vec(&Value::Object(obj.clone())).unwrap();
                    if let Some(target) = pad {
                        // A padding field that brings the payload to `target`
                        // bytes (when it is not over already).
                        let overhead = bytes.len() + r#","zz_pad":"""#.len();
                        obj.insert(
                            "zz_pad".into(),
                            Value::String("x".repeat(target.saturating_sub(overhead))),
                        );
                        bytes = serde_json::to_vec(&Value::Object(obj)).unwrap();
                    }
                    bytes
                },
            )
    }

    /// A valid band id: `[A-Za-z0-9_-]{1,64}`.
    fn device_id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,64}"
    }

    /// Topics near the band topics and far from them.
    fn topic() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            device_id(),
            Just(String::new()),
            Just("+".to_string()),
            Just("#".to_string()),
            "[A-Za-z0-9_-]{65}",
            "[A-Za-z0-9_ /+#.\\x00é-]{1,70}",
            any::<String>(),
        ];
        let channel = prop_oneof![
            Just("alert".to_string()),
            Just("status".to_string()),
            Just("notify".to_string()),
            Just("Alert".to_string()),
            Just("alert/".to_string()),
            Just("alert/x".to_string()),
            Just(String::new()),
            any::<String>(),
        ];
        let root = prop_oneof![
            4 => Just("wristbands".to_string()),
            1 => Just("Wristbands".to_string()),
            1 => Just("volunteers".to_string()),
            1 => Just(String::new()),
            1 => any::<String>(),
        ];
        prop_oneof![
            4 => (root, segment, channel).prop_map(|(r, s, c)| format!("{r}/{s}/{c}")),
            1 => any::<String>(),
        ]
    }

    /// A contract-valid alert event: the JSON sent and what it must become.
    fn valid_event() -> impl Strategy<Value = (Value, Expected)> {
        let kind = prop::sample::select(vec![
            ("sos", PressKind::Sos),
            ("fall", PressKind::Fall),
            ("cancel", PressKind::Cancel),
        ]);
        let ts = rfc3339();
        let lat = prop_oneof![
            -90.0f64..=90.0,
            prop::sample::select(vec![-90.0, 0.0, 90.0])
        ];
        let lon = prop_oneof![
            -180.0f64..=180.0,
            prop::sample::select(vec![-180.0, 0.0, 180.0])
        ];
        (
            "[^\\x00]{1,64}",
            kind,
            prop::option::of(ts),
            prop::option::of((lat, lon)),
            prop::option::of(prop_oneof![0u32..5000, Just(0)].prop_map(f64::from)),
            prop::option::of(0u8..=100),
            prop::collection::btree_map("x_[a-z]{1,8}", json_value(), 0..3),
        )
            .prop_map(
                |(event_id, (kind_text, kind), ts, position, accuracy_m, battery, extra)| {
                    let mut obj: Map<String, Value> = extra.into_iter().collect();
                    obj.insert("event_id".into(), json!(event_id));
                    obj.insert("kind".into(), json!(kind_text));
                    if let Some((text, _)) = &ts {
                        obj.insert("ts".into(), json!(text));
                    }
                    if let Some((lat, lon)) = position {
                        obj.insert("lat".into(), json!(lat));
                        obj.insert("lon".into(), json!(lon));
                    }
                    if let Some(a) = accuracy_m {
                        obj.insert("accuracy_m".into(), json!(a));
                    }
                    if let Some(b) = battery {
                        obj.insert("battery".into(), json!(b));
                    }
                    let expected = Expected {
                        event_id,
                        kind,
                        ts: ts.map(|(_, t)| t),
                        position,
                        accuracy_m,
                        battery,
                    };
                    (Value::Object(obj), expected)
                },
            )
    }

    /// The properties below only mean something if the generated payloads
    /// are often accepted and often not: a generator drifting to all-bad
    /// input would make them pass vacuously.
    #[test]
    fn the_generated_payloads_are_a_mix_of_good_and_bad() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = event_like();
        let (mut alerts, mut beats, mut large) = (0, 0, 0);
        const N: usize = 500;
        for _ in 0..N {
            let payload = strategy.new_tree(&mut runner).unwrap().current();
            alerts += usize::from(contract_alert(&payload).is_some());
            beats += usize::from(contract_beat(&payload).is_some());
            large += usize::from(payload.len() > MAX_PAYLOAD);
        }
        assert!(
            (N / 5..N * 4 / 5).contains(&alerts),
            "{alerts} of {N} valid"
        );
        assert!(
            (N / 5..N * 19 / 20).contains(&beats),
            "{beats} of {N} valid"
        );
        assert!(
            (N / 50..N / 5).contains(&large),
            "{large} of {N} over 4 KiB"
        );
    }

    // ----- the properties ---------------------------------------------------

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bytes on any topic: an answer, never a panic; and nothing
        /// over 4 KiB or other than a JSON object is ever accepted.
        #[test]
        fn arbitrary_bytes_on_any_topic_never_panic(
            topic in topic(),
            payload in prop::collection::vec(any::<u8>(), 0..4200),
        ) {
            match parse(&topic, &payload) {
                Ok(_) => {
                    prop_assert!(payload.len() <= MAX_PAYLOAD);
                    prop_assert!(matches!(
                        serde_json::from_slice::<Value>(&payload),
                        Ok(Value::Object(_))
                    ));
                }
                Err(r) => {
                    // What the ingest does with a rejection: count and log it.
                    crate::mqtt::ingest::reject(&topic, &r);
                    prop_assert!(!r.reason().is_empty());
                }
            }
        }

        /// Only `wristbands/{valid id}/alert|status` is a band topic, and
        /// the device is the id in it.
        #[test]
        fn only_the_band_topics_parse(topic in topic()) {
            let parsed = parse_topic(&topic);
            match contract_topic(&topic) {
                Some((device, channel)) => {
                    let (d, c) = parsed.map_err(|e| {
                        TestCaseError::fail(format!("{topic:?} refused: {e}"))
                    })?;
                    prop_assert_eq!(d.as_str(), device);
                    prop_assert_eq!(c, channel);
                }
                None => prop_assert!(
                    matches!(parsed, Err(Reject::UnknownTopic(_) | Reject::BadDevice(_))),
                    "{:?}: {:?}", topic, parsed
                ),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// JSON objects with the fields right, wrong, missing, of the wrong
        /// type, at the edges of their ranges, near and over 4 KiB: an alert
        /// event is accepted exactly when the contract says so, with the
        /// values it carries.
        #[test]
        fn alert_events_are_accepted_exactly_as_the_contract_says(
            device in device_id(),
            payload in event_like(),
        ) {
            let topic = format!("wristbands/{device}/alert");
            let expected = contract_alert(&payload);
            match (parse(&topic, &payload), expected) {
                (Ok(Inbound::Alert(d, event)), Some(expected)) => {
                    prop_assert_eq!(d.as_str(), device.as_str());
                    prop_assert_eq!(seen(&event), expected);
                }
                (Err(_), None) => {}
                (got, expected) => prop_assert!(
                    false,
                    "{}: parsed {:?}, the contract says {:?}",
                    String::from_utf8_lossy(&payload), got, expected
                ),
            }
        }

        /// The same for heartbeats (all fields optional).
        #[test]
        fn heartbeats_are_accepted_exactly_as_the_contract_says(
            device in device_id(),
            payload in event_like(),
        ) {
            let topic = format!("wristbands/{device}/status");
            match (parse(&topic, &payload), contract_beat(&payload)) {
                (Ok(Inbound::Status(d, beat)), Some(expected)) => {
                    prop_assert_eq!(d.as_str(), device.as_str());
                    prop_assert_eq!(beat, expected);
                }
                (Err(_), None) => {}
                (got, expected) => prop_assert!(
                    false,
                    "{}: parsed {:?}, the contract says {:?}",
                    String::from_utf8_lossy(&payload), got, expected
                ),
            }
        }

        /// Any JSON value at all (arrays, strings, deep nesting) as a
        /// payload: never a panic, and accepted only if the contract agrees.
        #[test]
        fn any_json_value_is_judged_as_the_contract_says(value in json_value()) {
            let payload = serde_json::to_vec(&value).unwrap();
            let accepted = parse("wristbands/band-1/alert", &payload).is_ok();
            prop_assert_eq!(accepted, contract_alert(&payload).is_some());
            let accepted = parse("wristbands/band-1/status", &payload).is_ok();
            prop_assert_eq!(accepted, contract_beat(&payload).is_some());
        }

        /// Every valid event, with unknown fields beside it, is accepted with
        /// exactly the values sent.
        #[test]
        fn valid_events_round_trip((value, expected) in valid_event(), device in device_id()) {
            let payload = serde_json::to_vec(&value).unwrap();
            let topic = format!("wristbands/{device}/alert");
            match parse(&topic, &payload) {
                Ok(Inbound::Alert(d, event)) => {
                    prop_assert_eq!(d.as_str(), device.as_str());
                    prop_assert_eq!(seen(&event), expected);
                }
                other => prop_assert!(false, "{value}: {other:?}"),
            }
        }
    }
}
