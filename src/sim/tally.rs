//! The simulator's ledger: every press the bands sent, every notice and
//! offer that came back, and what each simulated volunteer holds, with the
//! checks the service must pass (no press lost, none duplicated, no
//! volunteer offered two alerts at once). Pure: the live driver feeds it
//! what it sees with the instant it saw it, and reads the report from it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;

use super::api::StoredAlert;
use super::report::{Alerts, Latency, Offers, Presses, Rate};

/// How long past its `expires_at` an offer the service has not withdrawn
/// still counts as pending (clocks and a withdrawal in flight).
pub const EXPIRY_GRACE: Duration = Duration::from_secs(2);

/// One press event of one band.
#[derive(Debug, Clone)]
pub struct Press {
    pub band: usize,
    pub event_id: String,
    pub fall: bool,
    /// The first publish, and the band's clock then (the event's `ts`).
    pub sent_at: Instant,
    pub wall: DateTime<Utc>,
    /// The latest publish (first or resent).
    pub last_sent: Instant,
    /// The alert the band was told `received` for, and when.
    pub received: Option<(String, Instant)>,
    /// Told `received` for two different alerts.
    pub duplicated: bool,
}

#[derive(Debug, Default)]
struct Band {
    /// The alert the band last heard of that is not resolved or cancelled.
    active: Option<String>,
    /// Presses sent and not yet `received`.
    in_flight: usize,
}

#[derive(Debug, Default)]
struct SeenAlert {
    /// The press that opened it: the first `received` naming it.
    opener: Option<usize>,
    first_offer: Option<Instant>,
    accepted: Option<Instant>,
    /// Resolved or cancelled, as its band heard.
    closed: bool,
}

/// What a simulated volunteer holds, as their phone knows it.
#[derive(Debug, Clone, PartialEq)]
enum Hold {
    Free,
    Offer {
        alert: String,
        expires_at: Option<DateTime<Utc>>,
    },
    Busy(String),
}

/// Running counts, shown while the run goes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub sent: usize,
    pub received: usize,
    pub offered: usize,
    pub accepted: usize,
    pub closed: usize,
}

/// Counts kept as they happen.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub heartbeats: usize,
    pub resent: usize,
    pub http_errors: usize,
    pub mqtt_reconnects: usize,
    pub offers: Offers,
}

/// The ledger of one run.
#[derive(Debug)]
pub struct Tally {
    band_ids: HashMap<String, usize>,
    volunteer_ids: HashMap<String, usize>,
    bands: Vec<Band>,
    holds: Vec<Hold>,
    presses: Vec<Press>,
    events: HashMap<(usize, String), usize>,
    alerts: HashMap<String, SeenAlert>,
    offers_seen: HashSet<(usize, String)>,
    withdrawals_seen: HashSet<(usize, String)>,
    pub counters: Counters,
}

impl Tally {
    pub fn new(devices: &[String], volunteers: &[String]) -> Self {
        Self {
            band_ids: devices
                .iter()
                .enumerate()
                .map(|(i, d)| (d.clone(), i))
                .collect(),
            volunteer_ids: volunteers
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), i))
                .collect(),
            bands: devices.iter().map(|_| Band::default()).collect(),
            holds: vec![Hold::Free; volunteers.len()],
            presses: Vec::new(),
            events: HashMap::new(),
            alerts: HashMap::new(),
            offers_seen: HashSet::new(),
            withdrawals_seen: HashSet::new(),
            counters: Counters::default(),
        }
    }

    pub fn band_index(&self, device: &str) -> Option<usize> {
        self.band_ids.get(device).copied()
    }

    pub fn volunteer_index(&self, volunteer: &str) -> Option<usize> {
        self.volunteer_ids.get(volunteer).copied()
    }

    pub fn press(&self, i: usize) -> Option<&Press> {
        self.presses.get(i)
    }

    /// A band to press: one with nothing active and nothing in flight when
    /// a few random tries find one, else any (its press then joins).
    pub fn pick_band(&self, rng: &mut impl Rng) -> usize {
        let n = self.bands.len().max(1);
        let mut pick = rng.random_range(0..n);
        for _ in 0..16 {
            let b = &self.bands[pick];
            if b.active.is_none() && b.in_flight == 0 {
                break;
            }
            pick = rng.random_range(0..n);
        }
        pick
    }

    /// Records a press published now; returns its number.
    pub fn pressed(
        &mut self,
        band: usize,
        event_id: String,
        fall: bool,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> usize {
        let i = self.presses.len();
        self.events.insert((band, event_id.clone()), i);
        self.presses.push(Press {
            band,
            event_id,
            fall,
            sent_at: now,
            wall,
            last_sent: now,
            received: None,
            duplicated: false,
        });
        if let Some(b) = self.bands.get_mut(band) {
            b.in_flight += 1;
        }
        i
    }

    /// The presses to publish again: not `received` within `after` of
    /// their latest publish. They count as published again now.
    pub fn due_resends(&mut self, now: Instant, after: Duration) -> Vec<usize> {
        let mut due = Vec::new();
        for (i, p) in self.presses.iter_mut().enumerate() {
            if p.received.is_none() && now.duration_since(p.last_sent) >= after {
                p.last_sent = now;
                due.push(i);
            }
        }
        self.counters.resent += due.len();
        due
    }

    /// A notice on `wristbands/{device}/notify`.
    pub fn band_notice(
        &mut self,
        device: &str,
        alert_id: Option<&str>,
        event_id: Option<&str>,
        state: &str,
        now: Instant,
    ) {
        let (Some(band), Some(alert)) = (self.band_index(device), alert_id) else {
            return;
        };
        if state == "received" {
            let Some(&i) = event_id.and_then(|e| self.events.get(&(band, e.to_string()))) else {
                return;
            };
            let p = &mut self.presses[i];
            match &p.received {
                Some((known, _)) if known != alert => p.duplicated = true,
                Some(_) => return, // a repeat (redelivery, retained)
                None => {
                    p.received = Some((alert.to_string(), now));
                    self.bands[band].in_flight = self.bands[band].in_flight.saturating_sub(1);
                }
            }
            let seen = self.alerts.entry(alert.to_string()).or_default();
            seen.opener.get_or_insert(i);
            if !seen.closed {
                self.bands[band].active = Some(alert.to_string());
            }
            return;
        }
        let seen = self.alerts.entry(alert.to_string()).or_default();
        if matches!(state, "resolved" | "cancelled") {
            seen.closed = true;
            if self.bands[band].active.as_deref() == Some(alert) {
                self.bands[band].active = None;
            }
        } else if !seen.closed {
            self.bands[band].active = Some(alert.to_string());
        }
    }

    /// An offer on `volunteers/{volunteer}/offers`. True when it is new and
    /// the volunteer should answer it; repeats (redelivery, retained) and
    /// unknown volunteers are false.
    pub fn offer(
        &mut self,
        volunteer: usize,
        alert: &str,
        expires_at: Option<DateTime<Utc>>,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> bool {
        let Some(hold) = self.holds.get(volunteer) else {
            return false;
        };
        if !self.offers_seen.insert((volunteer, alert.to_string())) {
            return false;
        }
        match hold {
            Hold::Offer {
                alert: other,
                expires_at,
            } if other != alert && still_pending(*expires_at, wall) => {
                self.counters.offers.double += 1;
            }
            Hold::Busy(other) if other != alert => self.counters.offers.while_busy += 1,
            _ => {}
        }
        self.holds[volunteer] = Hold::Offer {
            alert: alert.to_string(),
            expires_at,
        };
        self.counters.offers.received += 1;
        let seen = self.alerts.entry(alert.to_string()).or_default();
        seen.first_offer.get_or_insert(now);
        true
    }

    /// A `withdrawn` message for an offer.
    pub fn withdrawn(&mut self, volunteer: usize, alert: &str) {
        if !self.withdrawals_seen.insert((volunteer, alert.to_string())) {
            return;
        }
        if self.holds_offer(volunteer, alert) {
            self.counters.offers.withdrawn += 1;
            self.holds[volunteer] = Hold::Free;
        }
    }

    /// Whether the volunteer still holds this alert's offer.
    pub fn holds_offer(&self, volunteer: usize, alert: &str) -> bool {
        matches!(self.holds.get(volunteer), Some(Hold::Offer { alert: a, .. }) if a == alert)
    }

    pub fn ignored(&mut self) {
        self.counters.offers.ignored += 1;
    }

    /// The volunteer declines (recorded before the request: the next offer
    /// may reach the phone before the answer to the decline does).
    pub fn declining(&mut self, volunteer: usize, alert: &str) {
        if self.holds_offer(volunteer, alert) {
            self.holds[volunteer] = Hold::Free;
        }
        self.counters.offers.declined += 1;
    }

    /// The service took the volunteer's accept.
    pub fn accepted(&mut self, volunteer: usize, alert: &str, now: Instant) {
        if let Some(h) = self.holds.get_mut(volunteer) {
            *h = Hold::Busy(alert.to_string());
        }
        let seen = self.alerts.entry(alert.to_string()).or_default();
        seen.accepted.get_or_insert(now);
        self.counters.offers.accepted += 1;
    }

    /// The service answered an accept 409 (expired or taken).
    pub fn conflict(&mut self, volunteer: usize, alert: &str) {
        if self.holds_offer(volunteer, alert) {
            self.holds[volunteer] = Hold::Free;
        }
        self.counters.offers.conflicts += 1;
    }

    /// The volunteer resolves (recorded before the request, as a decline).
    pub fn resolving(&mut self, volunteer: usize, alert: &str) {
        if self.holds.get(volunteer) == Some(&Hold::Busy(alert.to_string())) {
            self.holds[volunteer] = Hold::Free;
        }
    }

    pub fn progress(&self) -> Progress {
        let opened = || self.alerts.values().filter(|a| a.opener.is_some());
        Progress {
            sent: self.presses.len(),
            received: self.presses.iter().filter(|p| p.received.is_some()).count(),
            offered: opened().filter(|a| a.first_offer.is_some()).count(),
            accepted: opened().filter(|a| a.accepted.is_some()).count(),
            closed: opened().filter(|a| a.closed).count(),
        }
    }

    /// Every press received and every alert they opened closed.
    pub fn settled(&self) -> bool {
        self.presses.iter().all(|p| p.received.is_some())
            && self
                .alerts
                .values()
                .filter(|a| a.opener.is_some())
                .all(|a| a.closed)
    }

    /// The ids of the alerts the run's presses were told of.
    pub fn alert_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .presses
            .iter()
            .filter_map(|p| p.received.as_ref().map(|(a, _)| a.clone()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        ids.sort();
        ids
    }

    /// The findings, given the run's alerts as the store has them (by id)
    /// and the extra alerts found stored for an event that already had one.
    pub fn findings(
        &self,
        devices: &[String],
        stored: &HashMap<String, StoredAlert>,
        extra_stored: usize,
    ) -> (Presses, Latency, Latency, Alerts, Offers) {
        let mut presses = Presses {
            sent: self.presses.len(),
            falls: self.presses.iter().filter(|p| p.fall).count(),
            resent: self.counters.resent,
            ..Presses::default()
        };
        for (i, p) in self.presses.iter().enumerate() {
            presses.duplicated += usize::from(p.duplicated);
            let Some((alert, _)) = &p.received else {
                presses.lost += 1;
                continue;
            };
            presses.received += 1;
            let found = stored
                .get(alert)
                .is_some_and(|a| devices.get(p.band) == Some(&a.device_id));
            if !found {
                presses.lost += 1;
                continue;
            }
            presses.stored += 1;
            if self.alerts.get(alert).and_then(|a| a.opener) == Some(i) {
                presses.opened += 1;
            } else {
                presses.joined += 1;
            }
        }
        presses.duplicated += extra_stored;

        let mut to_offer = Vec::new();
        let mut to_accept = Vec::new();
        let mut alerts = Alerts::default();
        let (mut response, mut arrival) = (0, 0);
        for (id, seen) in &self.alerts {
            let Some(opener) = seen.opener.and_then(|i| self.presses.get(i)) else {
                continue;
            };
            alerts.opened += 1;
            if let Some(at) = seen.first_offer {
                alerts.offered += 1;
                to_offer.push(at.saturating_duration_since(opener.sent_at));
            }
            if let Some(at) = seen.accepted {
                to_accept.push(at.saturating_duration_since(opener.sent_at));
            }
            let Some(a) = stored.get(id) else {
                alerts.unfinished += 1;
                continue;
            };
            alerts.accepted += usize::from(a.accepted_at.is_some());
            alerts.on_scene += usize::from(a.on_scene_at.is_some());
            alerts.resolved += usize::from(a.state == "resolved");
            alerts.unfinished += usize::from(a.is_active());
            response += usize::from(a.accepted_at.is_some_and(|t| t <= a.response_deadline));
            arrival += usize::from(a.on_scene_at.is_some_and(|t| t <= a.arrival_deadline));
        }
        alerts.response = Rate::new(response, alerts.opened);
        alerts.arrival = Rate::new(arrival, alerts.opened);
        (
            presses,
            Latency::of(to_offer),
            Latency::of(to_accept),
            alerts,
            self.counters.offers.clone(),
        )
    }
}

fn still_pending(expires_at: Option<DateTime<Utc>>, wall: DateTime<Utc>) -> bool {
    let grace = chrono::TimeDelta::from_std(EXPIRY_GRACE).unwrap_or_default();
    expires_at.is_none_or(|e| wall <= e + grace)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use rand::SeedableRng;

    use super::*;

    fn devices() -> Vec<String> {
        vec!["b0".to_string(), "b1".to_string()]
    }

    fn tally() -> Tally {
        Tally::new(&devices(), &["v0".to_string(), "v1".to_string()])
    }

    fn stored(id: &str, device: &str, state: &str) -> StoredAlert {
        let t = Utc::now();
        StoredAlert {
            id: id.into(),
            device_id: device.into(),
            event_id: "e".into(),
            state: state.into(),
            pressed_at: t,
            accepted_at: Some(t + TimeDelta::seconds(10)),
            on_scene_at: Some(t + TimeDelta::seconds(700)),
            response_deadline: t + TimeDelta::seconds(180),
            arrival_deadline: t + TimeDelta::seconds(600),
        }
    }

    #[test]
    fn a_press_received_offered_and_accepted_is_measured() {
        let mut t = tally();
        let t0 = Instant::now();
        let p = t.pressed(0, "e0".into(), false, t0, Utc::now());
        // The offer may come before the band's `received`.
        assert!(t.offer(1, "A", None, t0 + Duration::from_millis(20), Utc::now()));
        t.band_notice(
            "b0",
            Some("A"),
            Some("e0"),
            "received",
            t0 + Duration::from_millis(30),
        );
        t.accepted(1, "A", t0 + Duration::from_millis(500));
        assert!(!t.settled());
        t.band_notice(
            "b0",
            Some("A"),
            None,
            "resolved",
            t0 + Duration::from_secs(1),
        );
        assert!(t.settled());
        assert_eq!(t.press(p).unwrap().received.as_ref().unwrap().0, "A");
        let store = HashMap::from([("A".to_string(), stored("A", "b0", "resolved"))]);
        let (presses, offer, accept, alerts, _) = t.findings(&devices(), &store, 0);
        assert_eq!((presses.sent, presses.stored, presses.lost), (1, 1, 0));
        assert_eq!((presses.opened, presses.joined), (1, 0));
        assert_eq!(offer.p50_ms, Some(20.0));
        assert_eq!(accept.max_ms, Some(500.0));
        assert_eq!(
            (alerts.opened, alerts.resolved, alerts.unfinished),
            (1, 1, 0)
        );
        assert_eq!(alerts.response.rate, 1.0);
        assert_eq!(alerts.arrival.rate, 0.0, "on scene after the deadline");
    }

    #[test]
    fn a_press_never_received_or_not_stored_is_lost() {
        let mut t = tally();
        let t0 = Instant::now();
        t.pressed(0, "e0".into(), false, t0, Utc::now());
        t.pressed(1, "e1".into(), true, t0, Utc::now());
        t.band_notice("b1", Some("B"), Some("e1"), "received", t0);
        let (presses, ..) = t.findings(&devices(), &HashMap::new(), 0);
        assert_eq!((presses.sent, presses.falls), (2, 1));
        assert_eq!((presses.received, presses.stored, presses.lost), (1, 0, 2));
        // Stored under another band: not this press's alert.
        let store = HashMap::from([("B".to_string(), stored("B", "b0", "open"))]);
        let (presses, ..) = t.findings(&devices(), &store, 0);
        assert_eq!(presses.lost, 2);
    }

    #[test]
    fn a_second_press_on_an_active_alert_joins_it() {
        let mut t = tally();
        let t0 = Instant::now();
        t.pressed(0, "e0".into(), false, t0, Utc::now());
        t.band_notice("b0", Some("A"), Some("e0"), "received", t0);
        t.pressed(0, "e1".into(), false, t0, Utc::now());
        t.band_notice("b0", Some("A"), Some("e1"), "received", t0);
        let store = HashMap::from([("A".to_string(), stored("A", "b0", "open"))]);
        let (presses, _, _, alerts, _) = t.findings(&devices(), &store, 0);
        assert_eq!((presses.opened, presses.joined, presses.stored), (1, 1, 2));
        assert_eq!((alerts.opened, alerts.unfinished), (1, 1));
    }

    #[test]
    fn one_event_told_two_alerts_is_duplicated() {
        let mut t = tally();
        let t0 = Instant::now();
        t.pressed(0, "e0".into(), false, t0, Utc::now());
        t.band_notice("b0", Some("A"), Some("e0"), "received", t0);
        t.band_notice("b0", Some("A"), Some("e0"), "received", t0); // a repeat
        let (presses, ..) = t.findings(&devices(), &HashMap::new(), 0);
        assert_eq!(presses.duplicated, 0);
        t.band_notice("b0", Some("B"), Some("e0"), "received", t0);
        let (presses, ..) = t.findings(&devices(), &HashMap::new(), 2);
        assert_eq!(presses.duplicated, 3);
    }

    #[test]
    fn unanswered_presses_are_resent_after_the_resend_time() {
        let mut t = tally();
        let t0 = Instant::now();
        t.pressed(0, "e0".into(), false, t0, Utc::now());
        t.pressed(1, "e1".into(), false, t0, Utc::now());
        t.band_notice("b1", Some("B"), Some("e1"), "received", t0);
        let ten = Duration::from_secs(10);
        assert!(t.due_resends(t0 + Duration::from_secs(9), ten).is_empty());
        assert_eq!(t.due_resends(t0 + ten, ten), vec![0]);
        assert!(
            t.due_resends(t0 + ten + Duration::from_secs(1), ten)
                .is_empty()
        );
        assert_eq!(t.counters.resent, 1);
    }

    #[test]
    fn bands_with_an_active_alert_are_not_picked_while_others_are_idle() {
        let mut t = tally();
        let t0 = Instant::now();
        t.pressed(0, "e0".into(), false, t0, Utc::now());
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..50 {
            assert_eq!(t.pick_band(&mut rng), 1);
        }
        t.band_notice("b0", Some("A"), Some("e0"), "received", t0);
        t.band_notice("b0", Some("A"), None, "resolved", t0);
        let picks: HashSet<usize> = (0..50).map(|_| t.pick_band(&mut rng)).collect();
        assert_eq!(picks.len(), 2);
    }

    #[test]
    fn a_second_offer_while_one_is_pending_is_a_double_offer() {
        let mut t = tally();
        let (t0, wall) = (Instant::now(), Utc::now());
        let later = Some(wall + TimeDelta::seconds(45));
        assert!(t.offer(0, "A", later, t0, wall));
        assert!(!t.offer(0, "A", later, t0, wall), "a repeat is not new");
        assert!(t.offer(0, "B", later, t0, wall));
        assert_eq!(t.counters.offers.double, 1);
    }

    #[test]
    fn offers_after_an_ended_offer_are_fine() {
        let mut t = tally();
        let (t0, wall) = (Instant::now(), Utc::now());
        let later = Some(wall + TimeDelta::seconds(45));
        // Withdrawn, then another.
        t.offer(0, "A", later, t0, wall);
        t.withdrawn(0, "A");
        t.offer(0, "B", later, t0, wall);
        // Declined, then another.
        t.declining(0, "B");
        t.offer(0, "C", later, t0, wall);
        // 409 on accept, then another.
        t.conflict(0, "C");
        t.offer(0, "D", later, t0, wall);
        // Accepted and resolved, then another.
        t.accepted(0, "D", t0);
        t.resolving(0, "D");
        t.offer(0, "E", later, t0, wall);
        // Expired long ago without a withdrawal seen.
        let past = Some(wall - TimeDelta::seconds(10));
        t.offer(1, "F", past, t0, wall);
        t.offer(1, "G", later, t0, wall);
        let o = &t.counters.offers;
        assert_eq!((o.double, o.while_busy), (0, 0));
        assert_eq!(
            (o.received, o.withdrawn, o.declined, o.conflicts),
            (7, 1, 1, 1)
        );
    }

    #[test]
    fn an_offer_to_a_busy_volunteer_is_counted() {
        let mut t = tally();
        let (t0, wall) = (Instant::now(), Utc::now());
        t.offer(0, "A", None, t0, wall);
        t.accepted(0, "A", t0);
        t.offer(0, "B", None, t0, wall);
        assert_eq!(t.counters.offers.while_busy, 1);
    }
}
