//! Settings: defaults, then a TOML file, then `ONEPRESS_*` variables
//! (contract section 4). Durations are in humantime form (`45s`, `3m`).
//! Secrets live in [`Secret`], which never prints.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::Rules;

/// A value that must never reach a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Every setting of the service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub database_url: String,
    /// `embedded`, or `mqtt://[user:password@]host:port`.
    pub mqtt_url: String,
    pub mqtt_client_id: String,
    pub embedded_mqtt_addr: SocketAddr,
    pub operator_token: Option<Secret>,
    #[serde(with = "humantime_serde")]
    pub offer_timeout: Duration,
    pub offer_fanout: usize,
    #[serde(with = "humantime_serde")]
    pub response_target: Duration,
    #[serde(with = "humantime_serde")]
    pub arrival_target: Duration,
    /// Metres per second.
    pub volunteer_speed: f64,
    #[serde(with = "humantime_serde")]
    pub volunteer_location_max_age: Duration,
    /// Metres.
    pub max_offer_distance: f64,
    #[serde(with = "humantime_serde")]
    pub device_offline_after: Duration,
    /// Percent at or below which a band is low on battery.
    pub low_battery: u8,
    /// How long a graceful stop may take before tasks are dropped.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// `user:password` of a login that may do anything on the embedded
    /// broker (tools, integrations).
    pub mqtt_admin: Option<Secret>,
    /// The token an external broker presents on the broker hooks
    /// (`POST /v1/mqtt/auth`, `/v1/mqtt/acl`); None: hooks off (404).
    pub broker_hook_token: Option<Secret>,
    /// Mosquitto's `password_file`, kept in step with the registry by the
    /// service (with `mosquitto_acl_file`).
    pub mosquitto_password_file: Option<PathBuf>,
    /// Mosquitto's `acl_file`, kept in step with the registry.
    pub mosquitto_acl_file: Option<PathBuf>,
    /// Mosquitto's `pid_file`: the process sent SIGHUP after each rewrite.
    pub mosquitto_pid_file: Option<PathBuf>,
    /// `text` (plain when not a terminal) or `json` (one object a line).
    pub log_format: crate::telemetry::LogFormat,
    /// Where notifications are POSTed (an SMS or voice gateway, a chat
    /// bridge): offers to volunteers without another channel, escalations
    /// and breaches to the operators, progress to a senior's contacts.
    /// None: no webhook.
    pub notify_webhook_url: Option<String>,
    /// The key of the webhook's HMAC-SHA256 signature (at least 16
    /// characters); required with `notify_webhook_url`.
    pub notify_webhook_secret: Option<Secret>,
    /// The service's address as phones reach it, e.g.
    /// `https://onepress.example.org`: the tap target and the Accept and
    /// Decline buttons of an ntfy notification point there. None: ntfy
    /// notifications carry the text only.
    pub public_url: Option<String>,
    /// How often the operators are told again of an alert that still has
    /// nobody (escalated, or its response target missed) until an operator
    /// acts on it or a volunteer accepts.
    #[serde(with = "humantime_serde")]
    pub escalation_repeat: Duration,
    /// Who runs this service, for the push services (RFC 8292 `sub`):
    /// `mailto:` an address, or an `https:` URL.
    pub vapid_subject: String,
    /// Also accept Web Push endpoints on the loopback interface (a push
    /// service on the same machine, tests). Never in production.
    pub push_allow_loopback: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: ([127, 0, 0, 1], 8080).into(),
            database_url: "sqlite://onepress.db".into(),
            mqtt_url: "embedded".into(),
            mqtt_client_id: "onepress".into(),
            embedded_mqtt_addr: ([127, 0, 0, 1], 1884).into(),
            operator_token: None,
            offer_timeout: Duration::from_secs(45),
            offer_fanout: 1,
            response_target: Duration::from_secs(180),
            arrival_target: Duration::from_secs(600),
            volunteer_speed: 1.4,
            volunteer_location_max_age: Duration::from_secs(15 * 60),
            max_offer_distance: 5000.0,
            device_offline_after: Duration::from_secs(30 * 60),
            low_battery: 20,
            shutdown_grace: Duration::from_secs(10),
            mqtt_admin: None,
            broker_hook_token: None,
            mosquitto_password_file: None,
            mosquitto_acl_file: None,
            mosquitto_pid_file: None,
            log_format: crate::telemetry::LogFormat::Text,
            notify_webhook_url: None,
            notify_webhook_secret: None,
            public_url: None,
            escalation_repeat: Duration::from_secs(120),
            vapid_subject: "mailto:onepress@localhost".into(),
            push_allow_loopback: false,
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid setting {key}: {why}")]
    Invalid { key: &'static str, why: String },
}

/// Where an MQTT broker is.
#[derive(Debug, Clone, PartialEq)]
pub enum MqttTarget {
    Embedded,
    External {
        host: String,
        port: u16,
        username: Option<String>,
        password: Option<Secret>,
    },
}

impl Settings {
    /// Reads the settings: defaults, then the file named by `ONEPRESS_CONFIG`
    /// (or `config/onepress.toml` when present), then the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let file = std::env::var_os("ONEPRESS_CONFIG")
            .map(PathBuf::from)
            .or_else(|| {
                let default = PathBuf::from("config/onepress.toml");
                default.exists().then_some(default)
            });
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid {
                    key: "ONEPRESS_CONFIG",
                    why: format!("{} does not exist", file.display()),
                });
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only the variables that name a setting: others sharing the prefix
        // (ONEPRESS_CONFIG, the test suite's ONEPRESS_TEST_*) are not ours.
        let known: Vec<String> = match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let env = Env::prefixed("ONEPRESS_").filter(move |k| known.iter().any(|n| k == n.as_str()));
        Self::from_figment(figment.merge(env))
    }

    /// Extracts and checks settings from any figment (tests build their own).
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let s: Settings = figment.extract().map_err(Box::new)?;
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, why: &str| {
            Err(ConfigError::Invalid {
                key,
                why: why.to_string(),
            })
        };
        if self.offer_fanout == 0 {
            return invalid("offer_fanout", "must be at least 1");
        }
        if !(self.volunteer_speed.is_finite() && self.volunteer_speed > 0.0) {
            return invalid("volunteer_speed", "must be a positive number");
        }
        if !(self.max_offer_distance.is_finite() && self.max_offer_distance >= 0.0) {
            return invalid("max_offer_distance", "must be a non-negative number");
        }
        const HOUR: u64 = 3600;
        const DAY: u64 = 24 * HOUR;
        // Every duration between a floor and a ceiling: a typo such as
        // `1000000y` is refused here, never met later by the engine.
        let bounds: [(&'static str, Duration, u64, u64); 7] = [
            ("escalation_repeat", self.escalation_repeat, 1, HOUR),
            ("offer_timeout", self.offer_timeout, 1, DAY),
            ("response_target", self.response_target, 1, DAY),
            ("arrival_target", self.arrival_target, 1, DAY),
            (
                "volunteer_location_max_age",
                self.volunteer_location_max_age,
                1,
                7 * DAY,
            ),
            (
                "device_offline_after",
                self.device_offline_after,
                1,
                30 * DAY,
            ),
            ("shutdown_grace", self.shutdown_grace, 0, HOUR),
        ];
        for (key, value, min, max) in bounds {
            if value < Duration::from_secs(min) || value > Duration::from_secs(max) {
                return Err(ConfigError::Invalid {
                    key,
                    why: format!(
                        "must be between {} and {} (got {})",
                        humantime::format_duration(Duration::from_secs(min)),
                        humantime::format_duration(Duration::from_secs(max)),
                        humantime::format_duration(value)
                    ),
                });
            }
        }
        if self.volunteer_speed > 100.0 {
            return invalid("volunteer_speed", "must be at most 100 (metres per second)");
        }
        if self.max_offer_distance > 1_000_000.0 {
            return invalid("max_offer_distance", "must be at most 1000000 (metres)");
        }
        if self.low_battery > 100 {
            return invalid("low_battery", "must be a percentage (0-100)");
        }
        if self.mqtt_client_id.is_empty() || self.mqtt_client_id.len() > 128 {
            return invalid("mqtt_client_id", "must be 1-128 characters");
        }
        if let Some(t) = &self.operator_token {
            if t.expose().len() < 16 {
                return invalid("operator_token", "must be at least 16 characters");
            }
        }
        self.mqtt_target()?;
        self.mqtt_admin()?;
        if let Some(t) = &self.broker_hook_token {
            if t.expose().len() < 16 {
                return invalid("broker_hook_token", "must be at least 16 characters");
            }
        }
        match (&self.mosquitto_password_file, &self.mosquitto_acl_file) {
            (Some(_), Some(_)) | (None, None) => {}
            _ => {
                return invalid(
                    "mosquitto_password_file",
                    "set both mosquitto_password_file and mosquitto_acl_file, or neither",
                );
            }
        }
        match (&self.notify_webhook_url, &self.notify_webhook_secret) {
            (None, None) => {}
            (Some(url), Some(secret)) => {
                let ok = (url.starts_with("http://") || url.starts_with("https://"))
                    && url.len() <= 2048
                    && reqwest::Url::parse(url).is_ok();
                if !ok {
                    return invalid("notify_webhook_url", "must be an http:// or https:// URL");
                }
                if secret.expose().len() < 16 {
                    return invalid("notify_webhook_secret", "must be at least 16 characters");
                }
            }
            (Some(_), None) => {
                return invalid(
                    "notify_webhook_secret",
                    "is required with notify_webhook_url (the signature's key)",
                );
            }
            (None, Some(_)) => {
                return invalid(
                    "notify_webhook_url",
                    "is required with notify_webhook_secret",
                );
            }
        }
        if let Some(url) = &self.public_url {
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok || url.len() > 512 {
                return invalid("public_url", "must be an http:// or https:// URL");
            }
        }
        if crate::notify::webpush::VapidSubject::parse(&self.vapid_subject).is_err() {
            return invalid(
                "vapid_subject",
                "must be mailto:someone@somewhere or an https:// URL",
            );
        }
        if self.mosquitto_pid_file.is_some() && self.mosquitto_password_file.is_none() {
            return invalid(
                "mosquitto_pid_file",
                "needs mosquitto_password_file and mosquitto_acl_file",
            );
        }
        Ok(())
    }

    /// The admin login (`mqtt_admin`), split into user and password.
    pub fn mqtt_admin(&self) -> Result<Option<(String, Secret)>, ConfigError> {
        let Some(admin) = &self.mqtt_admin else {
            return Ok(None);
        };
        let invalid = |why: &str| ConfigError::Invalid {
            key: "mqtt_admin",
            why: why.to_string(),
        };
        let (user, password) = admin
            .expose()
            .split_once(':')
            .ok_or_else(|| invalid("must be user:password"))?;
        if user.is_empty() || user.contains(char::is_whitespace) || user.len() > 128 {
            return Err(invalid("the user must be 1-128 characters without spaces"));
        }
        if password.len() < 16 {
            return Err(invalid("the password must be at least 16 characters"));
        }
        Ok(Some((user.to_string(), Secret::new(password))))
    }

    pub fn rules(&self) -> Rules {
        Rules {
            offer_timeout: self.offer_timeout,
            offer_fanout: self.offer_fanout,
            response_target: self.response_target,
            arrival_target: self.arrival_target,
            volunteer_speed: self.volunteer_speed,
            volunteer_location_max_age: self.volunteer_location_max_age,
            max_offer_distance: self.max_offer_distance,
        }
    }

    /// Parses `mqtt_url`.
    pub fn mqtt_target(&self) -> Result<MqttTarget, ConfigError> {
        parse_mqtt_url(&self.mqtt_url).map_err(|why| ConfigError::Invalid {
            key: "mqtt_url",
            why,
        })
    }
}

fn parse_mqtt_url(url: &str) -> Result<MqttTarget, String> {
    if url == "embedded" {
        return Ok(MqttTarget::Embedded);
    }
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or("must be `embedded` or mqtt://[user:password@]host:port")?;
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let hostport = hostport.trim_end_matches('/');
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("bad port {p:?} in mqtt_url"))?,
        ),
        None => (hostport, 1883),
    };
    if host.is_empty() {
        return Err("mqtt_url has no host".into());
    }
    let (username, password) = match auth {
        Some(a) => match a.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(Secret::new(p))),
            None => (Some(a.to_string()), None),
        },
        None => (None, None),
    };
    Ok(MqttTarget::External {
        host: host.trim_start_matches('[').trim_end_matches(']').into(),
        port,
        username,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut f = Figment::from(Serialized::defaults(Settings::default()));
        for (k, v) in pairs {
            f = f.merge(Toml::string(&format!("{k} = {v}")));
        }
        Settings::from_figment(f)
    }

    #[test]
    fn defaults_are_the_contract_defaults() {
        let s = with(&[]).unwrap();
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://onepress.db");
        assert_eq!(s.mqtt_target().unwrap(), MqttTarget::Embedded);
        assert_eq!(s.embedded_mqtt_addr.to_string(), "127.0.0.1:1884");
        assert_eq!(s.offer_timeout, Duration::from_secs(45));
        assert_eq!(s.response_target, Duration::from_secs(180));
        assert_eq!(s.arrival_target, Duration::from_secs(600));
        assert_eq!(s.volunteer_location_max_age, Duration::from_secs(900));
        assert_eq!(s.device_offline_after, Duration::from_secs(1800));
        assert_eq!(s.low_battery, 20);
        assert_eq!(s.offer_fanout, 1);
    }

    #[test]
    fn durations_take_the_humantime_form() {
        let s = with(&[
            ("offer_timeout", "\"1s\""),
            ("response_target", "\"3m 5s\""),
        ])
        .unwrap();
        assert_eq!(s.offer_timeout, Duration::from_secs(1));
        assert_eq!(s.response_target, Duration::from_secs(185));
        assert!(with(&[("offer_timeout", "\"soon\"")]).is_err());
    }

    #[test]
    fn impossible_values_are_refused() {
        assert!(with(&[("offer_fanout", "0")]).is_err());
        assert!(with(&[("volunteer_speed", "0.0")]).is_err());
        assert!(with(&[("low_battery", "101")]).is_err());
        assert!(with(&[("operator_token", "\"short\"")]).is_err());
        assert!(with(&[("no_such_setting", "1")]).is_err());
        assert!(with(&[("mqtt_admin", "\"admin\"")]).is_err());
        assert!(with(&[("mqtt_admin", "\"admin:short\"")]).is_err());
        assert!(with(&[("mqtt_admin", "\":0123456789abcdef\"")]).is_err());
        assert!(with(&[("broker_hook_token", "\"short\"")]).is_err());
        assert!(with(&[("mosquitto_password_file", "\"/tmp/p\"")]).is_err());
        assert!(with(&[("mosquitto_pid_file", "\"/tmp/pid\"")]).is_err());
        assert!(with(&[("log_format", "\"xml\"")]).is_err());
        assert_eq!(
            with(&[("log_format", "\"json\"")]).unwrap().log_format,
            crate::telemetry::LogFormat::Json
        );
    }

    #[test]
    fn durations_are_bounded() {
        for (key, value) in [
            ("volunteer_location_max_age", "\"1000000y\""),
            ("offer_timeout", "\"2days\""),
            ("offer_timeout", "\"500ms\""),
            ("response_target", "\"0s\""),
            ("arrival_target", "\"25h\""),
            ("device_offline_after", "\"31days\""),
            ("shutdown_grace", "\"2h\""),
        ] {
            let e = with(&[(key, value)]).expect_err(key);
            assert!(e.to_string().contains(key), "{e}");
            assert!(e.to_string().contains("must be between"), "{e}");
        }
        assert!(with(&[("volunteer_speed", "1000.0")]).is_err());
        assert!(with(&[("max_offer_distance", "1e9")]).is_err());
        let s = with(&[("volunteer_location_max_age", "\"7days\"")]).unwrap();
        assert_eq!(s.volunteer_location_max_age, Duration::from_secs(7 * 86400));
    }

    #[test]
    fn the_admin_login_splits_at_the_first_colon() {
        let s = with(&[("mqtt_admin", "\"tools:0123456789abcdef:x\"")]).unwrap();
        let (user, password) = s.mqtt_admin().unwrap().unwrap();
        assert_eq!(user, "tools");
        assert_eq!(password.expose(), "0123456789abcdef:x");
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn mqtt_urls_parse() {
        assert_eq!(
            parse_mqtt_url("mqtt://u:p@broker.local:1883").unwrap(),
            MqttTarget::External {
                host: "broker.local".into(),
                port: 1883,
                username: Some("u".into()),
                password: Some(Secret::new("p")),
            }
        );
        assert!(matches!(
            parse_mqtt_url("mqtt://127.0.0.1"),
            Ok(MqttTarget::External { port: 1883, .. })
        ));
        assert!(parse_mqtt_url("http://x:1").is_err());
        assert!(parse_mqtt_url("mqtt://x:notaport").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = with(&[
            ("operator_token", "\"0123456789abcdef-hush\""),
            ("notify_webhook_url", "\"https://sms.example/hook\""),
            ("notify_webhook_secret", "\"0123456789abcdef-quiet\""),
        ])
        .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("hush"), "{printed}");
        assert!(!printed.contains("quiet"), "{printed}");
    }

    #[test]
    fn the_webhook_needs_a_url_and_a_key_of_16_characters() {
        let url = ("notify_webhook_url", "\"https://sms.example/hook\"");
        let key = ("notify_webhook_secret", "\"0123456789abcdef\"");
        assert!(with(&[url, key]).unwrap().validate().is_ok());
        for bad in [
            vec![url],
            vec![key],
            vec![("notify_webhook_url", "\"ftp://sms.example/hook\""), key],
            vec![("notify_webhook_url", "\"not a url\""), key],
            vec![url, ("notify_webhook_secret", "\"short\"")],
        ] {
            assert!(with(&bad).and_then(|s| s.validate()).is_err(), "{bad:?}");
        }
    }
}
