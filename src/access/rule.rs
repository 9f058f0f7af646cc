//! The one rule of who may do what on the broker (the access table of the
//! project's MQTT reference, `docs/mqtt.md`): written once here and used by
//! the embedded broker's hooks, the Mosquitto files and the HTTP broker
//! hooks alike. Pure: no I/O, no store, no clock.
//!
//! A principal's rights are a short list of [`Grant`]s (an action and a
//! topic filter). A publish is allowed when its topic matches a grant; a
//! subscription when every topic its filter could match is matched by a
//! grant ([`covers`]): a band may subscribe to its own notify topic, never to
//! `wristbands/+/notify` or `#`. The admin login and the service itself may
//! do anything.

use std::fmt;

use crate::domain::{DeviceId, GatewayId, VolunteerId};

/// Who is connected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A wristband, logged in with its own secret.
    Band(DeviceId),
    /// A volunteer's phone, logged in with the volunteer's API token.
    Phone(VolunteerId),
    /// A band vendor's platform relaying many bands.
    Gateway(GatewayId),
    /// The admin login of the settings (tools, integrations).
    Admin,
    /// The service's own connection.
    Service,
}

impl Principal {
    /// Whether this principal may do anything (MQTT "superuser").
    pub fn is_superuser(&self) -> bool {
        matches!(self, Principal::Admin | Principal::Service)
    }

    /// The registry id the principal logs in with, if it has one.
    pub fn registry_id(&self) -> Option<&str> {
        match self {
            Principal::Band(id) => Some(id.as_str()),
            Principal::Phone(id) => Some(id.as_str()),
            Principal::Gateway(id) => Some(id.as_str()),
            Principal::Admin | Principal::Service => None,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Band(id) => write!(f, "band:{id}"),
            Principal::Phone(id) => write!(f, "phone:{id}"),
            Principal::Gateway(id) => write!(f, "gateway:{id}"),
            Principal::Admin => f.write_str("admin"),
            Principal::Service => f.write_str("service"),
        }
    }
}

/// What a client asks to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Publish,
    Subscribe,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
        }
    }
}

/// One right: an action on the topics a filter matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub action: Action,
    pub filter: String,
}

/// What a band may do, `{id}` standing for its own id.
pub const BAND_GRANTS: &[(Action, &str)] = &[
    (Action::Publish, "wristbands/{id}/alert"),
    (Action::Publish, "wristbands/{id}/status"),
    (Action::Subscribe, "wristbands/{id}/notify"),
];
/// What a volunteer's phone may do, `{id}` standing for its own id.
pub const PHONE_GRANTS: &[(Action, &str)] = &[(Action::Subscribe, "volunteers/{id}/offers")];
/// What a gateway may do: speak for any band, read any band's notices.
pub const GATEWAY_GRANTS: &[(Action, &str)] = &[
    (Action::Publish, "wristbands/+/alert"),
    (Action::Publish, "wristbands/+/status"),
    (Action::Subscribe, "wristbands/+/notify"),
];
/// What the admin and the service may do (all a broker file can say;
/// [`allowed`] lets them do anything).
pub const SUPERUSER_GRANTS: &[(Action, &str)] = &[(Action::Publish, "#"), (Action::Subscribe, "#")];

fn expand(template: &[(Action, &str)], id: &str) -> Vec<Grant> {
    template
        .iter()
        .map(|(action, filter)| Grant {
            action: *action,
            filter: filter.replace("{id}", id),
        })
        .collect()
}

/// Everything a principal may do, as grants.
pub fn grants(p: &Principal) -> Vec<Grant> {
    match p {
        Principal::Band(id) => expand(BAND_GRANTS, id.as_str()),
        Principal::Phone(id) => expand(PHONE_GRANTS, id.as_str()),
        Principal::Gateway(_) => expand(GATEWAY_GRANTS, ""),
        Principal::Admin | Principal::Service => expand(SUPERUSER_GRANTS, ""),
    }
}

/// May `p` publish to the topic name (`Publish`) or subscribe to the topic
/// filter (`Subscribe`) `topic`?
pub fn allowed(p: &Principal, action: Action, topic: &str) -> bool {
    if p.is_superuser() {
        return true;
    }
    let well_formed = match action {
        Action::Publish => valid_topic_name(topic),
        Action::Subscribe => valid_topic_filter(topic),
    };
    well_formed
        && grants(p)
            .iter()
            .any(|g| g.action == action && covers(&g.filter, topic))
}

/// May `p` connect with this client id? A band, phone or gateway only with
/// its own id (so nobody can take over another's session); the admin with
/// any id but the service's; the service only with its own.
pub fn client_id_allowed(p: &Principal, client_id: &str, service_ids: &[String]) -> bool {
    let is_service_id = service_ids.iter().any(|s| s == client_id);
    match p {
        Principal::Service => is_service_id,
        Principal::Admin => !is_service_id && !client_id.is_empty(),
        _ => p.registry_id() == Some(client_id),
    }
}

/// A topic name a client may publish to: not empty, no wildcard, no NUL.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// A well-formed topic filter: `+` and `#` only as whole levels, `#` last.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// Does the filter `grant` match every topic that `requested` (a topic name
/// or a filter) matches? Topics beginning with `$` are never matched by a
/// grant that starts with a wildcard, as in MQTT; a shared subscription
/// (`$share/…`) is covered only by a grant that names it.
pub fn covers(grant: &str, requested: &str) -> bool {
    let mut g = grant.split('/');
    let mut r = requested.split('/');
    let mut first = true;
    loop {
        match (g.next(), r.next()) {
            (Some("#"), rest) => return !(first && rest.is_some_and(|l| l.starts_with('$'))),
            (Some("+"), Some(level)) => {
                if level == "#" || (first && level.starts_with('$')) {
                    return false;
                }
            }
            (Some(gl), Some(rl)) => {
                if gl != rl || rl == "+" || rl == "#" {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::{Publish, Subscribe};

    fn band(id: &str) -> Principal {
        Principal::Band(DeviceId::parse(id).unwrap())
    }
    fn phone(id: &str) -> Principal {
        Principal::Phone(VolunteerId::parse(id).unwrap())
    }
    fn gateway(id: &str) -> Principal {
        Principal::Gateway(GatewayId::parse(id).unwrap())
    }

    #[test]
    fn a_band_publishes_only_its_own_alert_and_status() {
        let b = band("band-17");
        assert!(allowed(&b, Publish, "wristbands/band-17/alert"));
        assert!(allowed(&b, Publish, "wristbands/band-17/status"));
        assert!(!allowed(&b, Publish, "wristbands/band-18/alert"));
        assert!(!allowed(&b, Publish, "wristbands/band-18/status"));
        assert!(!allowed(&b, Publish, "wristbands/band-17/notify"));
        assert!(!allowed(&b, Publish, "volunteers/band-17/offers"));
        assert!(!allowed(&b, Publish, "wristbands/band-17/alert/x"));
        assert!(!allowed(&b, Publish, "wristbands/+/alert"));
        assert!(!allowed(&b, Publish, ""));
    }

    #[test]
    fn a_band_subscribes_only_to_its_own_notices() {
        let b = band("band-17");
        assert!(allowed(&b, Subscribe, "wristbands/band-17/notify"));
        for f in [
            "wristbands/band-18/notify",
            "wristbands/+/notify",
            "wristbands/band-17/+",
            "wristbands/band-17/#",
            "wristbands/#",
            "#",
            "+/+/+",
            "volunteers/+/offers",
            "$share/g/wristbands/band-17/notify",
            "$SYS/#",
        ] {
            assert!(!allowed(&b, Subscribe, f), "{f}");
        }
    }

    #[test]
    fn a_phone_publishes_nothing_and_reads_only_its_offers() {
        let p = phone("vol-3");
        assert!(allowed(&p, Subscribe, "volunteers/vol-3/offers"));
        assert!(!allowed(&p, Subscribe, "volunteers/vol-4/offers"));
        assert!(!allowed(&p, Subscribe, "volunteers/+/offers"));
        assert!(!allowed(&p, Subscribe, "#"));
        assert!(!allowed(&p, Publish, "volunteers/vol-3/offers"));
        assert!(!allowed(&p, Publish, "wristbands/vol-3/alert"));
    }

    #[test]
    fn a_gateway_speaks_for_any_band_but_reads_no_offers() {
        let g = gateway("gw-1");
        assert!(allowed(&g, Publish, "wristbands/band-1/alert"));
        assert!(allowed(&g, Publish, "wristbands/band-2/status"));
        assert!(allowed(&g, Subscribe, "wristbands/+/notify"));
        assert!(allowed(&g, Subscribe, "wristbands/band-1/notify"));
        assert!(!allowed(&g, Subscribe, "wristbands/#"));
        assert!(!allowed(&g, Subscribe, "volunteers/+/offers"));
        assert!(!allowed(&g, Subscribe, "wristbands/+/alert"));
        assert!(!allowed(&g, Publish, "wristbands/band-1/notify"));
        assert!(!allowed(&g, Publish, "volunteers/v/offers"));
    }

    #[test]
    fn admin_and_service_may_do_anything() {
        for p in [Principal::Admin, Principal::Service] {
            assert!(allowed(&p, Subscribe, "#"));
            assert!(allowed(&p, Subscribe, "$share/onepress/wristbands/+/alert"));
            assert!(allowed(&p, Publish, "volunteers/v/offers"));
        }
    }

    #[test]
    fn malformed_filters_and_names_are_refused() {
        let g = gateway("gw-1");
        assert!(!allowed(&g, Subscribe, "wristbands/+x/notify"));
        assert!(!allowed(&g, Subscribe, "wristbands/#/notify"));
        assert!(!allowed(&g, Publish, "wristbands/a\0/alert"));
        assert!(!valid_topic_filter(""));
        assert!(valid_topic_filter("a/+/#"));
        assert!(!valid_topic_filter("a/b#"));
    }

    #[test]
    fn covers_follows_mqtt_matching() {
        assert!(covers("#", "a/b/c"));
        assert!(covers("#", "#"));
        assert!(!covers("#", "$SYS/x"));
        assert!(covers("a/+/c", "a/+/c"));
        assert!(covers("a/+/c", "a/b/c"));
        assert!(!covers("a/+/c", "a/#"));
        assert!(!covers("a/+/c", "a/b"));
        assert!(!covers("a/b/c", "a/+/c"));
        assert!(covers("a/#", "a/b/#"));
        assert!(covers("a/#", "a"));
        assert!(!covers("+/x", "$SYS/x"));
        assert!(covers("a//b", "a//b"));
    }

    #[test]
    fn client_ids_belong_to_their_owner() {
        let service = vec!["onepress".to_string()];
        assert!(client_id_allowed(&band("b-1"), "b-1", &service));
        assert!(!client_id_allowed(&band("b-1"), "b-2", &service));
        assert!(!client_id_allowed(&phone("v-1"), "onepress", &service));
        assert!(client_id_allowed(&gateway("g"), "g", &service));
        assert!(client_id_allowed(&Principal::Admin, "tool-1", &service));
        assert!(!client_id_allowed(&Principal::Admin, "onepress", &service));
        assert!(!client_id_allowed(&Principal::Admin, "", &service));
        assert!(client_id_allowed(&Principal::Service, "onepress", &service));
        assert!(!client_id_allowed(&Principal::Service, "other", &service));
    }

    #[test]
    fn grants_are_what_the_files_say() {
        let g = grants(&band("b-1"));
        assert_eq!(g.len(), 3);
        assert!(
            g.iter()
                .all(|g| g.filter.starts_with("wristbands/b-1/") || g.action == Subscribe)
        );
    }
}
