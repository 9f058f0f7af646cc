//! Which notifications a committed change causes: a pure function of the
//! dispatcher's effects, run by the engine before the commit so that the
//! notifications are written in the same transaction (a crash after the
//! commit cannot lose them).
//!
//! - an offer → the volunteer it is for (`offer`);
//! - an escalation or a missed target → the operators (`escalated`,
//!   `response_breached`, `arrival_breached`);
//! - a new alert, an accept or an assignment, an arrival and a resolution
//!   → the senior's contacts (`pressed`, `accepted`, `on_scene`,
//!   `resolved`).

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::domain::alert::format_ts;
use crate::domain::{
    Alert, AlertId, Audience, Effects, Notification, Outgoing, PhoneMessage, TimelineKind,
    Timestamp, VolunteerId,
};

/// Which audiences have a channel at all (nothing is planned for one that
/// has none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    pub volunteers: bool,
    pub operators: bool,
    pub contacts: bool,
}

/// Whether the operators should still hear of this alert again: active,
/// nobody has accepted it, and it has nobody to offer it to or its response
/// target is missed.
pub fn needs_operators(a: &Alert) -> bool {
    matches!(
        a.state,
        crate::domain::AlertState::Open | crate::domain::AlertState::Offered
    ) && (a.escalated || a.response_breached)
}

/// The notifications `fx` causes, due at `now`.
/// `reachable` says which volunteers have a channel of their own (offers
/// go to every volunteer when `reach.volunteers`).
pub fn plan(
    fx: &Effects,
    now: Timestamp,
    reach: Reach,
    reachable: &dyn Fn(&VolunteerId) -> bool,
) -> Vec<Notification> {
    let mut out = Vec::new();
    let mut add = |alert_id: &AlertId, audience: Audience, event: &str, body: Value| {
        out.push(Notification {
            id: uuid::Uuid::now_v7().simple().to_string(),
            alert_id: alert_id.clone(),
            audience,
            event: event.to_string(),
            body: body.to_string(),
            due_at: now,
            attempts: 0,
            created_at: now,
        });
    };
    for o in &fx.outgoing {
        if let Outgoing::Phone(v, m @ PhoneMessage::Offer { alert_id, .. }) = o {
            if reach.volunteers || reachable(v) {
                let mut body = serde_json::to_value(m).unwrap_or(Value::Null);
                body["text"] = Value::String(offer_text(m));
                add(alert_id, Audience::Volunteer(v.clone()), "offer", body);
            }
        }
    }
    let alerts: HashMap<&AlertId, &Alert> = fx.alerts.iter().map(|a| (&a.id, a)).collect();
    for (alert_id, e) in &fx.timeline {
        let Some(&alert) = alerts.get(alert_id) else {
            continue;
        };
        let (audience, event) = match e.kind {
            TimelineKind::Escalated if reach.operators => (Audience::Operators, "escalated"),
            TimelineKind::ResponseBreached if reach.operators => {
                (Audience::Operators, "response_breached")
            }
            TimelineKind::ArrivalBreached if reach.operators => {
                (Audience::Operators, "arrival_breached")
            }
            TimelineKind::Pressed if reach.contacts => {
                (Audience::Contacts(alert.senior_id.clone()), "pressed")
            }
            TimelineKind::Accepted | TimelineKind::Assigned if reach.contacts => {
                (Audience::Contacts(alert.senior_id.clone()), "accepted")
            }
            TimelineKind::OnScene if reach.contacts => {
                (Audience::Contacts(alert.senior_id.clone()), "on_scene")
            }
            TimelineKind::Resolved if reach.contacts => {
                (Audience::Contacts(alert.senior_id.clone()), "resolved")
            }
            _ => continue,
        };
        let helper = helper_of(fx, alert);
        let mut body = alert_body(alert);
        if let Some((name, eta_s)) = &helper {
            body["volunteer_name"] = json!(name);
            body["eta_s"] = json!(eta_s);
        }
        body["text"] = Value::String(text(event, alert, helper.as_ref()));
        add(alert_id, audience, event, body);
    }
    out
}

/// The facts of an alert a notification carries (no senior card: the
/// operators have it on the dashboard, the family knows who they are).
pub fn alert_body(a: &Alert) -> Value {
    json!({
        "alert_id": a.id,
        "device_id": a.device_id,
        "senior_id": a.senior_id,
        "kind": a.kind,
        "state": a.state,
        "lat": a.lat,
        "lon": a.lon,
        "pressed_at": stamp(a.pressed_at),
        "response_deadline": stamp(a.response_deadline),
        "arrival_deadline": stamp(a.arrival_deadline),
        "escalated": a.escalated,
        "response_breached": a.response_breached,
        "arrival_breached": a.arrival_breached,
    })
}

fn stamp(t: Timestamp) -> String {
    format_ts(&t)
}

/// The name and ETA the band was told for this alert's helper, if this
/// change told it.
fn helper_of(fx: &Effects, alert: &Alert) -> Option<(String, Option<u32>)> {
    fx.outgoing.iter().rev().find_map(|o| match o {
        Outgoing::Band(d, n) if d == &alert.device_id && n.alert_id.as_ref() == Some(&alert.id) => {
            n.volunteer_name.clone().map(|name| (name, n.eta_s))
        }
        _ => None,
    })
}

fn minutes(eta_s: u32) -> u32 {
    eta_s.div_ceil(60).max(1)
}

fn offer_text(m: &PhoneMessage) -> String {
    match m {
        PhoneMessage::Offer {
            senior,
            distance_m,
            eta_s,
            ..
        } => {
            let at = senior.address.as_deref().unwrap_or("the senior's home");
            format!(
                "Help needed: {} at {at}, {distance_m} m away (about {} min). Accept or decline in the onepress page.",
                senior.name,
                minutes(*eta_s)
            )
        }
        _ => String::new(),
    }
}

pub fn text(event: &str, a: &Alert, helper: Option<&(String, Option<u32>)>) -> String {
    match (event, helper) {
        ("pressed", _) => {
            "Your relative pressed the help button; a volunteer is being found.".into()
        }
        ("accepted", Some((name, Some(eta)))) => {
            format!("{name} is coming, about {} min.", minutes(*eta))
        }
        ("accepted", Some((name, None))) => format!("{name} is coming."),
        ("accepted", None) => "A volunteer is coming.".into(),
        ("on_scene", Some((name, _))) => format!("{name} has arrived."),
        ("on_scene", None) => "The volunteer has arrived.".into(),
        ("resolved", _) => "Resolved: the volunteer has finished helping.".into(),
        ("escalated", _) => format!("Alert {} has nobody to offer it to: act now.", a.id),
        ("response_breached", _) => {
            format!(
                "Alert {}: nobody accepted within the response target.",
                a.id
            )
        }
        ("arrival_breached", _) => {
            format!("Alert {}: nobody on scene within the arrival target.", a.id)
        }
        ("reminder", _) => format!(
            "Still waiting: alert {} ({}) has nobody on the way. Assign someone or call.",
            a.id, a.state
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Command, DeviceId, Dispatcher, EventId, Position, Press, PressKind, Rules, SeniorCard,
        SeniorId,
    };

    const ALL: Reach = Reach {
        volunteers: true,
        operators: true,
        contacts: true,
    };

    fn t0() -> Timestamp {
        "2026-11-25T03:00:00Z".parse().unwrap()
    }

    fn run(d: &mut Dispatcher, at: Timestamp, c: Command) -> Effects {
        let mut fx = Effects::default();
        d.handle(at, c, &mut fx).expect("the command succeeds");
        fx
    }

    fn press(device: &str) -> Command {
        Command::Press(Press {
            device_id: DeviceId::parse(device).unwrap(),
            event_id: EventId::parse("e-1").unwrap(),
            kind: PressKind::Sos,
            device_ts: None,
            position: Some(Position::new(30.51, 120.68).unwrap()),
            senior: SeniorCard {
                id: SeniorId::parse("s-17").unwrap(),
                name: "Jiang Lan".into(),
                address: Some("3 Lotus Lane".into()),
                notes: None,
            },
            home: None,
            new_alert_id: AlertId::parse("a-1").unwrap(),
        })
    }

    fn events(ns: &[Notification]) -> Vec<(String, String)> {
        ns.iter()
            .map(|n| (n.audience.label(), n.event.clone()))
            .collect()
    }

    fn volunteer(d: &mut Dispatcher, id: &str) {
        let v = VolunteerId::parse(id).unwrap();
        run(
            d,
            t0(),
            Command::RegisterVolunteer {
                volunteer_id: v.clone(),
                name: "Wang Fang".into(),
            },
        );
        run(
            d,
            t0(),
            Command::SetDuty {
                volunteer_id: v.clone(),
                on_duty: true,
            },
        );
        run(
            d,
            t0(),
            Command::SetLocation {
                volunteer_id: v,
                position: Position::new(30.5122, 120.68).unwrap(),
            },
        );
    }

    #[test]
    fn without_the_webhook_an_offer_is_planned_only_for_a_volunteer_with_a_channel() {
        let mut d = Dispatcher::new(Rules {
            offer_fanout: 2,
            ..Rules::default()
        });
        volunteer(&mut d, "v1");
        volunteer(&mut d, "v2");
        let fx = run(&mut d, t0(), press("band-1"));
        let offered = fx
            .outgoing
            .iter()
            .filter(|o| matches!(o, Outgoing::Phone(_, PhoneMessage::Offer { .. })))
            .count();
        assert_eq!(offered, 2, "both were offered over MQTT");
        let no_webhook = Reach {
            volunteers: false,
            ..ALL
        };
        let v2 = VolunteerId::parse("v2").unwrap();
        let ns = plan(&fx, t0(), no_webhook, &|v| *v == v2);
        assert_eq!(
            events(&ns),
            [
                ("volunteer:v2".to_string(), "offer".to_string()),
                ("contacts:s-17".to_string(), "pressed".to_string()),
            ]
        );
        // Nobody with a channel: no outbox row for the offers at all.
        let ns = plan(&fx, t0(), no_webhook, &|_| false);
        assert_eq!(
            events(&ns),
            [("contacts:s-17".to_string(), "pressed".to_string())]
        );
    }

    #[test]
    fn a_press_tells_the_family_and_offers_the_volunteer() {
        let mut d = Dispatcher::new(Rules::default());
        volunteer(&mut d, "v1");
        let fx = run(&mut d, t0(), press("band-1"));
        let ns = plan(&fx, t0(), ALL, &|_| false);
        assert_eq!(
            events(&ns),
            [
                ("volunteer:v1".to_string(), "offer".to_string()),
                ("contacts:s-17".to_string(), "pressed".to_string()),
            ]
        );
        let offer: Value = serde_json::from_str(&ns[0].body).unwrap();
        assert_eq!(offer["senior"]["name"], "Jiang Lan");
        assert!(offer["text"].as_str().unwrap().contains("3 Lotus Lane"));
        // The family hears no name or address of anyone else.
        let pressed: Value = serde_json::from_str(&ns[1].body).unwrap();
        assert!(pressed.get("senior").is_none());
        assert!(ns.iter().all(|n| n.due_at == t0() && n.attempts == 0));
        assert_ne!(ns[0].id, ns[1].id);
    }

    #[test]
    fn an_accept_tells_the_family_who_is_coming_and_when() {
        let mut d = Dispatcher::new(Rules::default());
        volunteer(&mut d, "v1");
        run(&mut d, t0(), press("band-1"));
        let fx = run(
            &mut d,
            t0(),
            Command::Accept {
                alert_id: AlertId::parse("a-1").unwrap(),
                volunteer_id: VolunteerId::parse("v1").unwrap(),
            },
        );
        let ns = plan(&fx, t0(), ALL, &|_| false);
        assert_eq!(
            events(&ns),
            [("contacts:s-17".to_string(), "accepted".to_string())]
        );
        let body: Value = serde_json::from_str(&ns[0].body).unwrap();
        assert_eq!(body["volunteer_name"], "Wang Fang");
        // 245 m at 1.4 m/s: 175 s, "about 3 min".
        assert_eq!(body["text"], "Wang Fang is coming, about 3 min.");
    }

    #[test]
    fn nobody_to_offer_it_to_tells_the_operators_and_breaches_do_too() {
        let mut d = Dispatcher::new(Rules::default());
        let fx = run(&mut d, t0(), press("band-1"));
        let ns = plan(&fx, t0(), ALL, &|_| false);
        assert_eq!(
            events(&ns),
            [
                ("contacts:s-17".to_string(), "pressed".to_string()),
                ("operators".to_string(), "escalated".to_string()),
            ]
        );
        let later = t0() + chrono::TimeDelta::seconds(181);
        let fx = run(&mut d, later, Command::Tick);
        let ns = plan(&fx, later, ALL, &|_| false);
        assert_eq!(
            events(&ns),
            [("operators".to_string(), "response_breached".to_string())]
        );
    }

    #[test]
    fn nothing_is_planned_for_an_audience_without_a_channel() {
        let mut d = Dispatcher::new(Rules::default());
        volunteer(&mut d, "v1");
        let fx = run(&mut d, t0(), press("band-1"));
        assert!(plan(&fx, t0(), Reach::default(), &|_| false).is_empty());
        let only_family = Reach {
            contacts: true,
            ..Reach::default()
        };
        assert_eq!(
            events(&plan(&fx, t0(), only_family, &|_| false)),
            [("contacts:s-17".to_string(), "pressed".to_string())]
        );
    }
}
