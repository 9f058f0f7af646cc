//! The dispatcher's rules as unit tests on a virtual clock.
//!
//! Every test drives a [`Dispatcher`] through a [`World`]: the world moves
//! `now` by hand and sends [`Command::Tick`] (nothing sleeps, nothing does
//! I/O), plays the store (it keeps what each command's [`Effects`] wrote), and
//! after every command checks what must always hold: a volunteer holds at most
//! one pending offer and is busy with at most one alert, no free candidate
//! idles while an alert waits for one, what the dispatcher holds is what it
//! wrote, and a command that fails changes nothing and writes nothing.

use std::f64::consts::PI;

use super::*;
use crate::domain::geo::EARTH_RADIUS_M;
use crate::domain::ids::SeniorId;

// ----- fixtures ---------------------------------------------------------

const BASE_LAT: f64 = 30.50;
const BASE_LON: f64 = 120.60;
/// Metres per degree of latitude on the sphere the haversine uses, so a
/// point `m / M_PER_DEG` degrees north is exactly `m` metres away.
const M_PER_DEG: f64 = EARTH_RADIUS_M * PI / 180.0;

fn t0() -> Timestamp {
    "2026-11-25T03:00:00Z".parse().unwrap()
}

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn vid(s: &str) -> VolunteerId {
    VolunteerId::parse(s).unwrap()
}

fn aid(s: &str) -> AlertId {
    AlertId::parse(s).unwrap()
}

fn did(s: &str) -> DeviceId {
    DeviceId::parse(s).unwrap()
}

fn eid(s: &str) -> EventId {
    EventId::parse(s).unwrap()
}

fn pos(lat: f64, lon: f64) -> Position {
    Position::new(lat, lon).unwrap()
}

/// Where the seniors of most tests live.
fn base() -> Position {
    pos(BASE_LAT, BASE_LON)
}

/// `m` metres due north of `p`.
fn north_of(p: Position, m: f64) -> Position {
    pos(p.lat() + m / M_PER_DEG, p.lon())
}

/// `m` metres due north of the base.
fn north(m: f64) -> Position {
    north_of(base(), m)
}

/// About `km` kilometres east of the base: another neighbourhood.
fn east(km: f64) -> Position {
    let per_deg = M_PER_DEG * BASE_LAT.to_radians().cos();
    pos(BASE_LAT, BASE_LON + km * 1000.0 / per_deg)
}

fn senior(device: &str) -> SeniorCard {
    SeniorCard {
        id: SeniorId::parse(format!("s-{device}")).unwrap(),
        name: format!("Senior of {device}"),
        address: Some("7 Canal Lane".into()),
        notes: Some("deaf in one ear".into()),
    }
}

fn with_fanout(n: usize) -> Rules {
    Rules {
        offer_fanout: n,
        ..Rules::default()
    }
}

fn alert_of(reply: Reply) -> Alert {
    match reply {
        Reply::Alert(a) => *a,
        other => panic!("expected an alert, got {other:?}"),
    }
}

// ----- the world: a dispatcher, a clock and a make-believe store ---------

struct World {
    d: Dispatcher,
    now: Timestamp,
    /// What the last command caused.
    fx: Effects,
    /// The store: everything every command wrote, in order.
    rows: HashMap<AlertId, Alert>,
    vol_rows: HashMap<VolunteerId, Volunteer>,
    offer_rows: Vec<OfferRecord>,
    ingested: Vec<IngestedEvent>,
    timeline: Vec<(AlertId, TimelineEvent)>,
    /// Everything ever published.
    published: Vec<Outgoing>,
    /// The registry's side: volunteers' names, alerts' seniors.
    names: HashMap<VolunteerId, String>,
    seniors: HashMap<AlertId, SeniorCard>,
    seq: u32,
}

impl World {
    fn new() -> Self {
        Self::with(Rules::default())
    }

    /// A fresh dispatcher, after the first tick a shell sends at start.
    fn with(rules: Rules) -> Self {
        let mut w = World {
            d: Dispatcher::new(rules),
            now: t0(),
            fx: Effects::default(),
            rows: HashMap::new(),
            vol_rows: HashMap::new(),
            offer_rows: Vec::new(),
            ingested: Vec::new(),
            timeline: Vec::new(),
            published: Vec::new(),
            names: HashMap::new(),
            seniors: HashMap::new(),
            seq: 0,
        };
        assert_eq!(
            w.d.next_deadline(),
            Some(Timestamp::MIN_UTC),
            "tick me at once"
        );
        w.tick();
        assert!(w.fx.is_empty());
        w
    }

    /// Handles one command at `now` and checks everything that must hold.
    fn run(&mut self, cmd: Command) -> Result<Reply, DispatchError> {
        let before = format!("{:?}", self.d);
        let label = format!("{cmd:?}");
        let mut fx = Effects::default();
        let result = self.d.handle(self.now, cmd, &mut fx);
        if let Err(e) = &result {
            assert!(fx.is_empty(), "{label} failed ({e}) yet wrote {fx:?}");
            assert_eq!(
                before,
                format!("{:?}", self.d),
                "{label} failed ({e}) yet changed the state"
            );
        }
        self.absorb(fx);
        self.check();
        result
    }

    fn ok(&mut self, cmd: Command) -> Reply {
        let label = format!("{cmd:?}");
        self.run(cmd)
            .unwrap_or_else(|e| panic!("{label} failed: {e:?}"))
    }

    fn err(&mut self, cmd: Command) -> DispatchError {
        let label = format!("{cmd:?}");
        match self.run(cmd) {
            Ok(r) => panic!("{label} succeeded: {r:?}"),
            Err(e) => e,
        }
    }

    // ----- the clock -----

    fn tick(&mut self) {
        self.ok(Command::Tick);
    }

    fn advance(&mut self, s: i64) {
        self.advance_by(secs(s));
    }

    fn advance_ms(&mut self, n: i64) {
        self.advance_by(ms(n));
    }

    fn advance_by(&mut self, d: TimeDelta) {
        self.now += d;
        self.tick();
    }

    /// Moves the clock to `t` and ticks.
    fn advance_to(&mut self, t: Timestamp) {
        assert!(t >= self.now, "the clock never goes back");
        self.now = t;
        self.tick();
    }

    // ----- volunteers -----

    fn register(&mut self, v: &str) {
        self.names.insert(vid(v), format!("Volunteer {v}"));
        self.ok(Command::RegisterVolunteer {
            volunteer_id: vid(v),
            name: format!("Volunteer {v}"),
        });
    }

    /// Registers `v`, puts them on duty and tells where they are.
    fn volunteer(&mut self, v: &str, p: Position) {
        self.register(v);
        self.duty(v, true).unwrap();
        self.locate(v, p).unwrap();
    }

    /// A volunteer `m` metres north of the base.
    fn volunteer_at(&mut self, v: &str, m: f64) {
        self.volunteer(v, north(m));
    }

    fn duty(&mut self, v: &str, on_duty: bool) -> Result<Reply, DispatchError> {
        self.run(Command::SetDuty {
            volunteer_id: vid(v),
            on_duty,
        })
    }

    fn locate(&mut self, v: &str, p: Position) -> Result<Reply, DispatchError> {
        self.run(Command::SetLocation {
            volunteer_id: vid(v),
            position: p,
        })
    }

    // ----- band events -----

    /// A fresh `kind` event from `device`, at the base, with no band clock.
    fn press_cmd(&mut self, device: &str, kind: PressKind) -> Press {
        self.seq += 1;
        Press {
            device_id: did(device),
            event_id: eid(&format!("e{}", self.seq)),
            kind,
            device_ts: None,
            position: Some(base()),
            senior: senior(device),
            home: None,
            new_alert_id: aid(&format!("alert-{:03}", self.seq)),
        }
    }

    fn send(&mut self, p: Press) -> (PressOutcome, Option<AlertId>) {
        let card = p.senior.clone();
        match self.ok(Command::Press(p)) {
            Reply::Press { outcome, alert_id } => {
                if outcome == PressOutcome::Opened {
                    self.seniors.insert(alert_id.clone().unwrap(), card);
                }
                (outcome, alert_id)
            }
            other => panic!("a press answered {other:?}"),
        }
    }

    /// An sos from `device` at the base that opens an alert.
    fn press(&mut self, device: &str) -> AlertId {
        self.press_at(device, base())
    }

    fn press_at(&mut self, device: &str, p: Position) -> AlertId {
        let mut cmd = self.press_cmd(device, PressKind::Sos);
        cmd.position = Some(p);
        let (outcome, id) = self.send(cmd);
        assert_eq!(outcome, PressOutcome::Opened);
        id.unwrap()
    }

    // ----- answers and operators -----

    fn accept(&mut self, a: &AlertId, v: &str) -> Result<Reply, DispatchError> {
        self.run(Command::Accept {
            alert_id: a.clone(),
            volunteer_id: vid(v),
        })
    }

    fn decline(&mut self, a: &AlertId, v: &str) -> Result<Reply, DispatchError> {
        self.run(Command::Decline {
            alert_id: a.clone(),
            volunteer_id: vid(v),
        })
    }

    fn arrive(&mut self, a: &AlertId, v: &str) -> Result<Reply, DispatchError> {
        self.run(Command::Arrive {
            alert_id: a.clone(),
            volunteer_id: vid(v),
        })
    }

    fn resolve(&mut self, a: &AlertId, by: Actor) -> Result<Reply, DispatchError> {
        self.run(Command::Resolve {
            alert_id: a.clone(),
            by,
            outcome: "helped".into(),
            note: Some("all well".into()),
        })
    }

    fn cancel(&mut self, a: &AlertId) -> Result<Reply, DispatchError> {
        self.run(Command::Cancel {
            alert_id: a.clone(),
            by: Actor::Operator,
            reason: Some("false alarm".into()),
        })
    }

    fn assign(&mut self, a: &AlertId, v: &str) -> Result<Reply, DispatchError> {
        self.run(Command::Assign {
            alert_id: a.clone(),
            volunteer_id: vid(v),
        })
    }

    // ----- looking -----

    /// An active alert as the dispatcher holds it.
    fn alert(&self, a: &AlertId) -> &Alert {
        self.d
            .alert(a)
            .unwrap_or_else(|| panic!("{a} is not active"))
    }

    /// An alert as the store last got it (closed ones too).
    fn row(&self, a: &AlertId) -> &Alert {
        &self.rows[a]
    }

    fn state(&self, a: &AlertId) -> AlertState {
        self.row(a).state
    }

    fn vol(&self, v: &str) -> &Volunteer {
        self.d.volunteer(&vid(v)).unwrap()
    }

    /// Who holds a pending offer of `a`, in the order the offers went out.
    fn holders(&self, a: &AlertId) -> Vec<String> {
        self.alert(a)
            .offers
            .iter()
            .map(|o| o.volunteer_id.to_string())
            .collect()
    }

    /// (volunteer, alert) of every offer the last command sent to a phone.
    fn offers_sent(&self) -> Vec<(String, AlertId)> {
        self.fx
            .outgoing
            .iter()
            .filter_map(|o| match o {
                Outgoing::Phone(v, PhoneMessage::Offer { alert_id, .. }) => {
                    Some((v.to_string(), alert_id.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// (volunteer, alert, reason) of every withdrawal the last command sent.
    fn withdrawals(&self) -> Vec<(String, AlertId, WithdrawReason)> {
        self.fx
            .outgoing
            .iter()
            .filter_map(|o| match o {
                Outgoing::Phone(v, PhoneMessage::Withdrawn { alert_id, reason }) => {
                    Some((v.to_string(), alert_id.clone(), *reason))
                }
                _ => None,
            })
            .collect()
    }

    /// What the last command sent to `v`'s phone.
    fn phone(&self, v: &str) -> Vec<PhoneMessage> {
        self.fx
            .outgoing
            .iter()
            .filter_map(|o| match o {
                Outgoing::Phone(x, m) if x.as_str() == v => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// What the last command sent to `device`'s band.
    fn band(&self, device: &str) -> Vec<BandNotice> {
        self.fx
            .outgoing
            .iter()
            .filter_map(|o| match o {
                Outgoing::Band(x, n) if x.as_str() == device => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    fn band_states(&self, device: &str) -> Vec<String> {
        self.band(device).into_iter().map(|n| n.state).collect()
    }

    /// The timeline event types the last command appended to `a`.
    fn kinds(&self, a: &AlertId) -> Vec<TimelineKind> {
        self.fx
            .timeline
            .iter()
            .filter(|(x, _)| x == a)
            .map(|(_, e)| e.kind)
            .collect()
    }

    /// `a`'s whole timeline as the store has it.
    fn history(&self, a: &AlertId) -> Vec<TimelineKind> {
        self.events(a).iter().map(|e| e.kind).collect()
    }

    fn events(&self, a: &AlertId) -> Vec<TimelineEvent> {
        self.timeline
            .iter()
            .filter(|(x, _)| x == a)
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn count(&self, a: &AlertId, kind: TimelineKind) -> usize {
        self.history(a).iter().filter(|k| **k == kind).count()
    }

    /// The last offer row written for (`a`, `v`).
    fn offer_row(&self, a: &AlertId, v: &str) -> OfferRecord {
        self.offer_rows
            .iter()
            .rev()
            .find(|r| &r.alert_id == a && r.volunteer_id.as_str() == v)
            .cloned()
            .unwrap_or_else(|| panic!("no offer row for {a} and {v}"))
    }

    /// Every timer the dispatcher holds, in firing order.
    fn timers(&self) -> Vec<(Timestamp, Timer)> {
        self.d.timers.iter().cloned().collect()
    }

    // ----- the store's side -----

    /// Takes in what a command caused, as the shell would write it.
    fn absorb(&mut self, fx: Effects) {
        let ids: HashSet<&AlertId> = fx.alerts.iter().map(|a| &a.id).collect();
        assert_eq!(ids.len(), fx.alerts.len(), "an alert twice in one Effects");
        let vids: HashSet<&VolunteerId> = fx.volunteers.iter().map(|v| &v.id).collect();
        assert_eq!(vids.len(), fx.volunteers.len(), "a volunteer twice");
        // Whatever refers to an alert comes with the alert's row or after it.
        let known = |a: &AlertId| self.rows.contains_key(a) || ids.contains(a);
        for (a, e) in &fx.timeline {
            assert!(known(a), "timeline event {e:?} for unwritten alert {a}");
            assert!(e.at <= self.now, "a timeline event in the future: {e:?}");
        }
        for o in &fx.offers {
            assert!(known(&o.alert_id), "offer row for unwritten alert: {o:?}");
        }
        for i in &fx.ingested {
            assert!(i.alert_id.as_ref().is_none_or(known), "{i:?}");
        }
        // Each alert's timeline is in time order, but for breaches: they
        // are stamped at their deadline, which may be before what was
        // recorded ahead of them (a press the band dates back, a tick
        // after downtime).
        let mut last_at: HashMap<&AlertId, Timestamp> = HashMap::new();
        let breach = |e: &TimelineEvent| {
            matches!(
                e.kind,
                TimelineKind::ResponseBreached | TimelineKind::ArrivalBreached
            )
        };
        for (a, e) in self.timeline.iter().chain(fx.timeline.iter()) {
            if breach(e) {
                let row = self
                    .rows
                    .get(a)
                    .or_else(|| fx.alerts.iter().find(|x| &x.id == a));
                if let Some(row) = row {
                    let deadline = if e.kind == TimelineKind::ResponseBreached {
                        row.response_deadline
                    } else {
                        row.arrival_deadline
                    };
                    assert_eq!(e.at, deadline, "a breach stamped off its deadline");
                }
                continue;
            }
            if let Some(prev) = last_at.insert(a, e.at) {
                assert!(prev <= e.at, "timeline of {a} goes back in time");
            }
        }
        for a in &fx.alerts {
            self.rows.insert(a.id.clone(), a.clone());
        }
        for v in &fx.volunteers {
            self.vol_rows.insert(v.id.clone(), v.clone());
        }
        self.offer_rows.extend(fx.offers.iter().cloned());
        self.ingested.extend(fx.ingested.iter().cloned());
        self.timeline.extend(fx.timeline.iter().cloned());
        self.published.extend(fx.outgoing.iter().cloned());
        self.fx = fx;
    }

    /// Pending offers as the offer rows have them: (alert, volunteer) → row.
    fn pending_rows(&self) -> HashMap<(AlertId, VolunteerId), OfferRecord> {
        let mut last = HashMap::new();
        for r in &self.offer_rows {
            last.insert((r.alert_id.clone(), r.volunteer_id.clone()), r.clone());
        }
        last.retain(|_, r| r.outcome.is_none());
        last
    }

    /// The active alerts and volunteers as a store rebuilds them from the
    /// rows it was given (a volunteer's pending offer is not a column).
    fn store_snapshot(&self) -> Snapshot {
        let mut alerts: Vec<ActiveAlert> = self
            .rows
            .values()
            .filter(|a| a.state.is_active())
            .map(|a| {
                let rows = self.offer_rows.iter().filter(|r| r.alert_id == a.id);
                ActiveAlert {
                    alert: a.clone(),
                    senior: self.seniors[&a.id].clone(),
                    events: self
                        .ingested
                        .iter()
                        .filter(|i| i.alert_id.as_ref() == Some(&a.id))
                        .map(|i| i.event_id.clone())
                        .collect(),
                    excluded: rows
                        .clone()
                        .filter(|r| {
                            matches!(
                                r.outcome,
                                Some(OfferOutcome::Declined | OfferOutcome::Expired)
                            )
                        })
                        .map(|r| r.volunteer_id.clone())
                        .collect(),
                    offered: rows.map(|r| r.volunteer_id.clone()).collect(),
                }
            })
            .collect();
        alerts.sort_by(|a, b| a.alert.id.cmp(&b.alert.id));
        let mut volunteers: Vec<Volunteer> = self
            .names
            .iter()
            .map(|(id, name)| match self.vol_rows.get(id) {
                Some(v) => Volunteer {
                    name: name.clone(),
                    pending_offer: None,
                    ..v.clone()
                },
                None => Volunteer::new(id.clone(), name.clone()),
            })
            .collect();
        volunteers.sort_by(|a, b| a.id.cmp(&b.id));
        Snapshot { volunteers, alerts }
    }

    /// A crash and a start: the dispatcher is rebuilt from the store alone.
    fn restart(&mut self) {
        self.restart_with(self.d.rules().clone());
    }

    fn restart_with(&mut self, rules: Rules) {
        let snapshot = self.store_snapshot();
        self.d = Dispatcher::restore(rules, snapshot);
        self.check();
    }

    // ----- what must always hold -----

    fn check(&self) {
        let d = &self.d;
        let now = self.now;
        let fanout = d.rules.offer_fanout;
        let pending = self.pending_rows();
        for (id, active) in &d.alerts {
            let a = &active.alert;
            assert!(a.state.is_active(), "{id} is {} yet held", a.state);
            assert_eq!(d.by_device.get(&a.device_id), Some(id));
            assert_eq!(
                self.rows.get(id),
                Some(a),
                "{id} changed but was not written"
            );
            match a.state {
                AlertState::Open => {
                    assert!(a.offers.is_empty() && a.volunteer_id.is_none(), "{a:?}");
                    assert!(d.reconcile || a.escalated, "{id} open, not escalated");
                }
                AlertState::Offered => {
                    assert!(!a.offers.is_empty() && a.volunteer_id.is_none(), "{a:?}");
                    assert!(!a.escalated, "{id} offered yet escalated");
                    assert!(a.offers.len() <= fanout, "{id} over the fan-out");
                }
                _ => {
                    assert!(a.offers.is_empty(), "{id} assigned, offers pending");
                    assert!(!a.escalated, "{id} assigned yet escalated");
                    let v = a.volunteer_id.as_ref().expect("assigned to someone");
                    assert_eq!(d.volunteers[v].busy_alert.as_ref(), Some(id));
                }
            }
            for o in &a.offers {
                let v = &o.volunteer_id;
                assert_eq!(d.volunteers[v].pending_offer.as_ref(), Some(id));
                assert!(active.offered.contains(v) && !active.excluded.contains(v));
                let timer = (o.expires_at, Timer::OfferExpiry(id.clone(), v.clone()));
                assert!(d.timers.contains(&timer), "no timer for {o:?}");
                let row = &pending[&(id.clone(), v.clone())];
                assert_eq!(
                    (row.expires_at, row.distance_m),
                    (o.expires_at, o.distance_m)
                );
            }
            let n_pending = pending.keys().filter(|(x, _)| x == id).count();
            assert_eq!(n_pending, a.offers.len(), "offer rows of {id}");
            // What only the dispatcher remembers, the store can rebuild.
            let rows: Vec<&OfferRecord> = self
                .offer_rows
                .iter()
                .filter(|r| &r.alert_id == id)
                .collect();
            let offered: HashSet<VolunteerId> =
                rows.iter().map(|r| r.volunteer_id.clone()).collect();
            assert_eq!(offered, active.offered, "offered of {id}");
            let excluded: HashSet<VolunteerId> = rows
                .iter()
                .filter(|r| {
                    matches!(
                        r.outcome,
                        Some(OfferOutcome::Declined | OfferOutcome::Expired)
                    )
                })
                .map(|r| r.volunteer_id.clone())
                .collect();
            assert_eq!(excluded, active.excluded, "excluded of {id}");
            let events: HashSet<EventId> = self
                .ingested
                .iter()
                .filter(|i| i.alert_id.as_ref() == Some(id))
                .map(|i| i.event_id.clone())
                .collect();
            assert_eq!(events, active.events, "events of {id}");
            // Timers.
            if !a.response_breached && matches!(a.state, AlertState::Open | AlertState::Offered) {
                let t = (a.response_deadline, Timer::Response(id.clone()));
                assert!(d.timers.contains(&t), "no response timer for {id}");
            }
            if !a.arrival_breached && a.state != AlertState::OnScene {
                let t = (a.arrival_deadline, Timer::Arrival(id.clone()));
                assert!(d.timers.contains(&t), "no arrival timer for {id}");
            }
            // Waiting for offers: open to more, and somewhere.
            let wants = matches!(a.state, AlertState::Open | AlertState::Offered)
                && a.offers.len() < fanout
                && a.position().is_some();
            assert_eq!(d.waiting.contains(id), wants, "waiting index for {id}");
        }
        // Closed alerts hold no offers.
        for (key, r) in &pending {
            assert!(
                d.alerts.contains_key(&key.0),
                "pending row of a closed alert {r:?}"
            );
        }
        for (t_at, t) in &d.timers {
            match t {
                Timer::OfferExpiry(a, v) => {
                    let o = d.alerts.get(a).and_then(|x| x.alert.pending_offer(v));
                    assert_eq!(o.map(|o| o.expires_at), Some(*t_at), "stale {t:?}");
                }
                Timer::Response(a) => {
                    assert_eq!(d.alerts[a].alert.response_deadline, *t_at)
                }
                Timer::Arrival(a) => assert_eq!(d.alerts[a].alert.arrival_deadline, *t_at),
            }
        }
        for (id, v) in &d.volunteers {
            assert!(
                v.busy_alert.is_none() || v.pending_offer.is_none(),
                "{id} busy and offered at once"
            );
            if let Some(a) = &v.busy_alert {
                let holder = d.alerts.get(a).and_then(|x| x.alert.volunteer_id.as_ref());
                assert_eq!(holder, Some(id), "{id} busy with {a}");
            }
            if let Some(a) = &v.pending_offer {
                assert!(d.alerts[a].alert.pending_offer(id).is_some());
            }
            assert_eq!(d.available.contains(id), v.is_available(), "index of {id}");
            match self.vol_rows.get(id) {
                Some(r) => assert_eq!(
                    (r.on_duty, r.position, r.location_at, &r.busy_alert),
                    (v.on_duty, v.position, v.location_at, &v.busy_alert),
                    "{id} changed but was not written"
                ),
                None => assert!(!v.on_duty && v.position.is_none() && v.busy_alert.is_none()),
            }
        }
        if d.reconcile {
            return;
        }
        assert_eq!(d.next_deadline(), d.timers.first().map(|(t, _)| *t));
        // Nobody idles who could be offered a waiting alert.
        for active in d.alerts.values() {
            let a = &active.alert;
            let Some(p) = a.position() else { continue };
            if !matches!(a.state, AlertState::Open | AlertState::Offered)
                || a.offers.len() >= fanout
            {
                continue;
            }
            for v in d.volunteers.values() {
                let idle = v.is_available()
                    && d.is_fresh(v, now)
                    && !active.excluded.contains(&v.id)
                    && v.position
                        .is_some_and(|q| q.distance_m(&p) <= d.rules.max_offer_distance);
                assert!(!idle, "{} idles while {} waits", v.id, a.id);
            }
        }
    }
}

// ----- the harness itself ------------------------------------------------

#[test]
fn an_idle_dispatcher_has_nothing_due() {
    let mut w = World::new();
    assert_eq!(w.d.next_deadline(), None);
    w.advance(3600);
    assert!(w.fx.is_empty());
}

#[test]
fn the_world_places_volunteers_at_exact_distances() {
    assert!((north(4999.0).distance_m(&base()) - 4999.0).abs() < 0.01);
    assert!((north(123.0).distance_m(&base()) - 123.0).abs() < 0.01);
    assert!((east(20.0).distance_m(&base()) - 20_000.0).abs() < 5.0);
}

#[test]
fn next_deadline_is_the_earliest_timer() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    // The offer expires before the response deadline.
    assert_eq!(w.d.next_deadline(), Some(t0() + secs(45)));
    w.accept(&a, "a").unwrap();
    assert_eq!(w.d.next_deadline(), Some(t0() + secs(180)));
}

// ----- candidates ----------------------------------------------------------

#[test]
fn the_nearest_volunteer_is_offered_first() {
    let mut w = World::new();
    w.volunteer_at("far", 900.0);
    w.volunteer_at("near", 100.0);
    w.volunteer_at("mid", 400.0);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["near"]);
    assert_eq!(w.offers_sent(), [("near".to_string(), a.clone())]);
    assert_eq!(w.state(&a), AlertState::Offered);
}

#[test]
fn candidates_come_in_order_of_distance_as_each_declines() {
    let mut w = World::new();
    w.volunteer_at("c", 3000.0);
    w.volunteer_at("a", 1000.0);
    w.volunteer_at("b", 2000.0);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["a"]);
    w.decline(&a, "a").unwrap();
    assert_eq!(w.holders(&a), ["b"]);
    w.decline(&a, "b").unwrap();
    assert_eq!(w.holders(&a), ["c"]);
}

#[test]
fn the_offer_tells_the_phone_what_it_needs() {
    let mut w = World::new();
    w.volunteer_at("a", 700.0);
    let a = w.press("band-1");
    let msgs = w.phone("a");
    assert_eq!(msgs.len(), 1);
    let PhoneMessage::Offer {
        alert_id,
        kind,
        lat,
        lon,
        distance_m,
        eta_s,
        expires_at,
        senior: card,
    } = &msgs[0]
    else {
        panic!("{msgs:?}")
    };
    assert_eq!(alert_id, &a);
    assert_eq!(*kind, AlertKind::Sos);
    assert_eq!((*lat, *lon), (Some(BASE_LAT), Some(BASE_LON)));
    assert_eq!(*distance_m, 700);
    assert_eq!(*eta_s, 500); // 700 m at 1.4 m/s
    assert_eq!(*expires_at, t0() + secs(45));
    assert_eq!(card, &senior("band-1"));
    let offer = &w.alert(&a).offers[0];
    assert_eq!(
        (
            offer.offered_at,
            offer.expires_at,
            offer.distance_m,
            offer.eta_s
        ),
        (t0(), t0() + secs(45), 700, 500)
    );
}

#[test]
fn an_offer_is_a_timeline_event_with_distance_and_eta() {
    let mut w = World::new();
    w.volunteer_at("a", 140.0);
    let a = w.press("band-1");
    assert_eq!(w.kinds(&a), [TimelineKind::Pressed, TimelineKind::Offered]);
    let ev = &w.events(&a)[1];
    assert_eq!(ev.volunteer_id, Some(vid("a")));
    assert_eq!((ev.distance_m, ev.eta_s), (Some(140), Some(100)));
}

#[test]
fn an_off_duty_volunteer_is_not_a_candidate() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.duty("a", false).unwrap();
    let a = w.press("band-1");
    assert_eq!(w.state(&a), AlertState::Open);
    assert!(w.row(&a).escalated);
    assert!(w.offers_sent().is_empty());
}

#[test]
fn a_volunteer_who_never_said_where_they_are_is_not_a_candidate() {
    let mut w = World::new();
    w.register("a");
    w.duty("a", true).unwrap();
    let a = w.press("band-1");
    assert!(w.row(&a).escalated);
    assert!(w.offers_sent().is_empty());
}

#[test]
fn a_registered_volunteer_starts_off_duty() {
    let mut w = World::new();
    w.register("a");
    let v = w.vol("a");
    assert!(!v.on_duty && v.position.is_none() && v.busy_alert.is_none());
    assert_eq!(v.name, "Volunteer a");
}

#[test]
fn a_busy_volunteer_is_not_a_candidate() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    w.accept(&first, "a").unwrap();
    let second = w.press("band-2");
    assert!(w.row(&second).escalated);
    assert!(w.offers_sent().is_empty());
    assert_eq!(w.vol("a").busy_alert, Some(first));
}

#[test]
fn a_volunteer_holding_an_offer_elsewhere_is_not_a_candidate() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 2000.0);
    let first = w.press("band-1");
    assert_eq!(w.holders(&first), ["a"]);
    let second = w.press("band-2");
    // "a" is nearer but holds the first alert's offer.
    assert_eq!(w.holders(&second), ["b"]);
}

#[test]
fn a_location_exactly_max_age_old_is_still_fresh() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.advance(15 * 60);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["a"]);
}

#[test]
fn a_location_just_older_than_max_age_is_stale() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.advance_by(secs(15 * 60) + ms(1));
    let a = w.press("band-1");
    assert!(w.row(&a).escalated);
    assert!(w.offers_sent().is_empty());
}

#[test]
fn location_max_age_is_a_rule() {
    let mut w = World::with(Rules {
        volunteer_location_max_age: Duration::from_secs(60),
        ..Rules::default()
    });
    w.volunteer_at("a", 100.0);
    w.advance(61);
    let a = w.press("band-1");
    assert!(w.row(&a).escalated);
}

#[test]
fn durations_past_the_calendar_saturate_instead_of_panicking() {
    let forever = Duration::from_secs(u64::MAX);
    let mut w = World::with(Rules {
        volunteer_location_max_age: forever,
        offer_timeout: forever,
        response_target: forever,
        arrival_target: forever,
        ..Rules::default()
    });
    w.volunteer_at("a", 100.0);
    w.advance(3600);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["a"], "a location is fresh for ever");
    let row = w.row(&a);
    assert!(row.response_deadline > t0() + secs(3600 * 24 * 365 * 1000));
    assert!(row.arrival_deadline >= row.response_deadline);
    w.advance(3600);
    assert_eq!(w.holders(&a), ["a"], "the offer never expires");
}

#[test]
fn a_stale_volunteer_who_sends_a_location_is_offered_the_waiting_alert() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.advance(16 * 60);
    let a = w.press("band-1");
    assert!(w.row(&a).escalated);
    w.locate("a", north(150.0)).unwrap();
    assert_eq!(w.holders(&a), ["a"]);
    assert_eq!(w.alert(&a).offers[0].distance_m, 150);
}

#[test]
fn a_volunteer_just_inside_max_distance_is_offered() {
    let mut w = World::new();
    w.volunteer_at("a", 4999.0);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["a"]);
    assert_eq!(w.alert(&a).offers[0].distance_m, 4999);
}

#[test]
fn a_volunteer_just_outside_max_distance_is_not_offered() {
    let mut w = World::new();
    w.volunteer_at("a", 5001.0);
    let a = w.press("band-1");
    assert!(w.row(&a).escalated);
    assert!(w.offers_sent().is_empty());
}

#[test]
fn max_offer_distance_is_a_rule() {
    let mut w = World::with(Rules {
        max_offer_distance: 1000.0,
        ..Rules::default()
    });
    w.volunteer_at("out", 1001.0);
    w.volunteer_at("in", 999.0);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["in"]);
    w.decline(&a, "in").unwrap();
    assert!(w.row(&a).escalated);
}

#[test]
fn a_volunteer_moving_into_range_is_offered_the_waiting_alert() {
    let mut w = World::new();
    w.volunteer_at("a", 8000.0);
    let a = w.press("band-1");
    assert!(w.row(&a).escalated);
    w.locate("a", north(6000.0)).unwrap();
    assert!(w.offers_sent().is_empty());
    w.locate("a", north(4000.0)).unwrap();
    assert_eq!(w.holders(&a), ["a"]);
    assert!(!w.row(&a).escalated);
}

#[test]
fn equally_distant_volunteers_are_taken_in_id_order() {
    let mut w = World::new();
    w.volunteer_at("vol-b", 300.0);
    w.volunteer_at("vol-c", 300.0);
    w.volunteer_at("vol-a", 300.0);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["vol-a"]);
    w.decline(&a, "vol-a").unwrap();
    assert_eq!(w.holders(&a), ["vol-b"]);
    w.decline(&a, "vol-b").unwrap();
    assert_eq!(w.holders(&a), ["vol-c"]);
}

#[test]
fn the_tie_break_does_not_depend_on_who_came_on_duty_first() {
    for order in [["x", "y"], ["y", "x"]] {
        let mut w = World::with(with_fanout(1));
        for v in order {
            w.volunteer_at(v, 250.0);
        }
        let a = w.press("band-1");
        assert_eq!(w.holders(&a), ["x"], "order {order:?}");
    }
}

#[test]
fn a_fanout_of_two_offers_the_two_nearest_at_once() {
    let mut w = World::with(with_fanout(2));
    w.volunteer_at("c", 300.0);
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["a", "b"]);
    assert_eq!(w.offers_sent().len(), 2);
    assert_eq!(
        w.kinds(&a),
        [
            TimelineKind::Pressed,
            TimelineKind::Offered,
            TimelineKind::Offered
        ]
    );
    assert!(w.vol("c").pending_offer.is_none());
}

#[test]
fn a_fanout_of_three_offers_three() {
    let mut w = World::with(with_fanout(3));
    for (v, m) in [("a", 100.0), ("b", 200.0), ("c", 300.0), ("d", 400.0)] {
        w.volunteer_at(v, m);
    }
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["a", "b", "c"]);
}

#[test]
fn fewer_candidates_than_the_fanout_get_offers_and_nothing_is_escalated() {
    let mut w = World::with(with_fanout(3));
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["a", "b"]);
    assert!(!w.row(&a).escalated);
    assert!(!w.kinds(&a).contains(&TimelineKind::Escalated));
}

#[test]
fn a_fanout_is_topped_up_when_another_volunteer_comes_on_duty() {
    let mut w = World::with(with_fanout(2));
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["a"]);
    w.volunteer_at("b", 3000.0);
    assert_eq!(w.holders(&a), ["a", "b"]);
    // Full: a third volunteer is not offered it.
    w.volunteer_at("c", 50.0);
    assert_eq!(w.holders(&a), ["a", "b"]);
    assert!(w.vol("c").pending_offer.is_none());
}

#[test]
fn a_fanout_is_topped_up_after_a_decline() {
    let mut w = World::with(with_fanout(2));
    for (v, m) in [("a", 100.0), ("b", 200.0), ("c", 300.0)] {
        w.volunteer_at(v, m);
    }
    let a = w.press("band-1");
    w.decline(&a, "a").unwrap();
    assert_eq!(w.holders(&a), ["b", "c"]);
    assert_eq!(w.offers_sent(), [("c".to_string(), a.clone())]);
}

#[test]
fn a_fanout_of_zero_is_taken_as_one() {
    let mut w = World::with(with_fanout(0));
    assert_eq!(w.d.rules().offer_fanout, 1);
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["a"]);
}

#[test]
fn unknown_volunteers_cannot_change_duty_or_location() {
    let mut w = World::new();
    let e = w.err(Command::SetDuty {
        volunteer_id: vid("ghost"),
        on_duty: true,
    });
    assert_eq!(e, DispatchError::UnknownVolunteer(vid("ghost")));
    let e = w.err(Command::SetLocation {
        volunteer_id: vid("ghost"),
        position: base(),
    });
    assert_eq!(e, DispatchError::UnknownVolunteer(vid("ghost")));
}

#[test]
fn registering_again_renames_and_keeps_the_dispatch_state() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.ok(Command::RegisterVolunteer {
        volunteer_id: vid("a"),
        name: "Wang Fang".into(),
    });
    w.names.insert(vid("a"), "Wang Fang".into());
    let v = w.vol("a");
    assert_eq!(v.name, "Wang Fang");
    assert!(v.on_duty && v.position.is_some());
    let a = w.press("band-1");
    w.accept(&a, "a").unwrap();
    assert_eq!(
        w.band("band-1")[0].volunteer_name.as_deref(),
        Some("Wang Fang")
    );
}

// ----- offers: expiry, decline, accept -----------------------------------

#[test]
fn an_offer_expires_exactly_at_the_offer_timeout_not_before() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.advance_to(t0() + secs(45) - ms(1));
    assert!(w.fx.is_empty(), "{:?}", w.fx);
    assert_eq!(w.holders(&a), ["a"]);
    w.advance_ms(1);
    assert_eq!(w.holders(&a), ["b"]);
    assert_eq!(
        w.kinds(&a),
        [TimelineKind::OfferExpired, TimelineKind::Offered]
    );
}

#[test]
fn the_next_candidate_gets_a_full_offer_timeout() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.advance(45);
    assert_eq!(w.alert(&a).offers[0].expires_at, t0() + secs(90));
    assert_eq!(w.d.next_deadline(), Some(t0() + secs(90)));
}

#[test]
fn offer_timeout_is_a_rule() {
    let mut w = World::with(Rules {
        offer_timeout: Duration::from_millis(2500),
        ..Rules::default()
    });
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    assert_eq!(w.alert(&a).offers[0].expires_at, t0() + ms(2500));
    w.advance_ms(2499);
    assert_eq!(w.holders(&a), ["a"]);
    w.advance_ms(1);
    assert!(w.row(&a).escalated);
}

#[test]
fn an_expired_offer_is_recorded_and_withdrawn_from_the_phone() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.advance(45);
    assert_eq!(
        w.withdrawals(),
        [("a".to_string(), a.clone(), WithdrawReason::Expired)]
    );
    let row = w.offer_row(&a, "a");
    assert_eq!(row.outcome, Some(OfferOutcome::Expired));
    assert_eq!(row.closed_at, Some(t0() + secs(45)));
    assert_eq!(row.offered_at, t0());
    let ev = &w.events(&a)[2];
    assert_eq!(ev.kind, TimelineKind::OfferExpired);
    assert_eq!(ev.volunteer_id, Some(vid("a")));
    assert_eq!(ev.at, t0() + secs(45));
    assert!(w.vol("a").pending_offer.is_none());
}

#[test]
fn the_last_offer_expiring_escalates_and_tells_the_band() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    assert!(!w.row(&a).escalated);
    w.advance(45);
    assert_eq!(w.state(&a), AlertState::Open);
    assert!(w.row(&a).escalated);
    assert_eq!(
        w.kinds(&a),
        [TimelineKind::OfferExpired, TimelineKind::Escalated]
    );
    assert_eq!(w.band_states("band-1"), ["open"]);
}

#[test]
fn a_decline_moves_on_at_once_not_at_expiry() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.advance(3);
    w.decline(&a, "a").unwrap();
    assert_eq!(w.holders(&a), ["b"]);
    assert_eq!(w.alert(&a).offers[0].offered_at, t0() + secs(3));
    assert_eq!(w.kinds(&a), [TimelineKind::Declined, TimelineKind::Offered]);
    let row = w.offer_row(&a, "a");
    assert_eq!(row.outcome, Some(OfferOutcome::Declined));
    assert_eq!(row.closed_at, Some(t0() + secs(3)));
    // The phone that declined is not told it was withdrawn.
    assert!(w.phone("a").is_empty());
    // The declined offer's timer is gone.
    assert_eq!(w.d.next_deadline(), Some(t0() + secs(48)));
}

#[test]
fn declining_the_only_offer_escalates() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    let reply = alert_of(w.decline(&a, "a").unwrap());
    assert_eq!(reply.state, AlertState::Open);
    assert!(reply.escalated);
    assert_eq!(
        w.kinds(&a),
        [TimelineKind::Declined, TimelineKind::Escalated]
    );
    assert_eq!(w.band_states("band-1"), ["open"]);
}

#[test]
fn a_volunteer_whose_offer_expired_is_never_offered_that_alert_again() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.advance(45);
    // Moving, or going off and on duty, does not make them a candidate again.
    w.locate("a", north(50.0)).unwrap();
    w.duty("a", false).unwrap();
    w.duty("a", true).unwrap();
    w.advance(600);
    assert!(w.row(&a).escalated);
    assert_eq!(w.count(&a, TimelineKind::Offered), 1);
}

#[test]
fn a_volunteer_who_declined_is_never_offered_that_alert_again() {
    let mut w = World::with(with_fanout(2));
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.decline(&a, "a").unwrap();
    w.locate("a", north(20.0)).unwrap();
    assert!(w.vol("a").pending_offer.is_none());
    assert!(w.row(&a).escalated);
}

#[test]
fn a_volunteer_whose_offer_expired_is_offered_another_waiting_alert_at_once() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    w.advance(10);
    let second = w.press("band-2");
    assert!(w.row(&second).escalated);
    w.advance(35);
    assert_eq!(w.holders(&second), ["a"]);
    assert_eq!(w.offers_sent(), [("a".to_string(), second.clone())]);
    assert!(w.row(&first).escalated);
    assert!(!w.row(&second).escalated);
}

#[test]
fn a_volunteer_who_declined_is_offered_another_waiting_alert_at_once() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    let second = w.press("band-2");
    w.decline(&first, "a").unwrap();
    assert_eq!(w.holders(&second), ["a"]);
    assert!(w.row(&first).escalated);
}

#[test]
fn the_first_accept_wins_and_the_other_offers_are_withdrawn_as_taken() {
    let mut w = World::with(with_fanout(3));
    for (v, m) in [("a", 100.0), ("b", 200.0), ("c", 300.0)] {
        w.volunteer_at(v, m);
    }
    let a = w.press("band-1");
    w.advance(5);
    let reply = alert_of(w.accept(&a, "b").unwrap());
    assert_eq!(reply.state, AlertState::Accepted);
    assert_eq!(reply.volunteer_id, Some(vid("b")));
    let mut withdrawn = w.withdrawals();
    withdrawn.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        withdrawn,
        [
            ("a".to_string(), a.clone(), WithdrawReason::Taken),
            ("c".to_string(), a.clone(), WithdrawReason::Taken),
        ]
    );
    assert!(
        w.phone("b").is_empty(),
        "the winner is not told it was taken"
    );
    assert_eq!(w.offer_row(&a, "b").outcome, Some(OfferOutcome::Accepted));
    assert_eq!(w.offer_row(&a, "a").outcome, Some(OfferOutcome::Withdrawn));
    assert_eq!(w.offer_row(&a, "c").outcome, Some(OfferOutcome::Withdrawn));
    let kinds = w.kinds(&a);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == TimelineKind::OfferWithdrawn)
            .count(),
        2
    );
    assert_eq!(kinds.last(), Some(&TimelineKind::Accepted));
    let withdrawn_ev = w
        .events(&a)
        .into_iter()
        .find(|e| e.kind == TimelineKind::OfferWithdrawn)
        .unwrap();
    assert_eq!(withdrawn_ev.reason.as_deref(), Some("taken"));
    assert!(w.vol("a").pending_offer.is_none() && w.vol("c").pending_offer.is_none());
}

#[test]
fn a_loser_who_accepts_after_the_alert_was_taken_gets_offer_gone() {
    let mut w = World::with(with_fanout(2));
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.accept(&a, "a").unwrap();
    assert_eq!(
        w.err(Command::Accept {
            alert_id: a.clone(),
            volunteer_id: vid("b")
        }),
        DispatchError::OfferGone(a.clone())
    );
    assert_eq!(w.alert(&a).volunteer_id, Some(vid("a")));
}

#[test]
fn an_accept_after_the_offer_expired_gets_offer_gone() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.advance(45);
    let e = w.accept(&a, "a").unwrap_err();
    assert_eq!(e, DispatchError::OfferGone(a.clone()));
    assert!(w.vol("a").busy_alert.is_none());
}

#[test]
fn an_accept_after_declining_gets_offer_gone() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.decline(&a, "a").unwrap();
    assert_eq!(w.accept(&a, "a").unwrap_err(), DispatchError::OfferGone(a));
}

#[test]
fn an_accept_one_millisecond_before_expiry_wins() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.advance_to(t0() + secs(45) - ms(1));
    w.accept(&a, "a").unwrap();
    assert_eq!(w.state(&a), AlertState::Accepted);
    w.advance_ms(1);
    assert!(
        w.fx.is_empty(),
        "the expiry of an accepted offer does nothing"
    );
}

#[test]
fn an_accept_that_reaches_the_dispatcher_before_the_expiry_tick_is_still_too_late() {
    // The shell's timer and a phone's request race: the request can arrive
    // after `expires_at` but before the `Tick` that expires the offer.
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.now = t0() + secs(45);
    assert_eq!(
        w.accept(&a, "a").unwrap_err(),
        DispatchError::OfferGone(a.clone())
    );
    w.tick();
    assert_eq!(w.holders(&a), ["b"]);
    assert_eq!(w.offer_row(&a, "a").outcome, Some(OfferOutcome::Expired));
}

#[test]
fn an_accept_by_someone_never_offered_the_alert_is_not_offered() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    assert_eq!(
        w.accept(&a, "b").unwrap_err(),
        DispatchError::NotOffered(a.clone())
    );
    // Also an unknown volunteer.
    assert_eq!(
        w.accept(&a, "ghost").unwrap_err(),
        DispatchError::NotOffered(a)
    );
}

#[test]
fn an_accept_of_an_unknown_or_closed_alert_is_not_active() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let nope = aid("no-such-alert");
    assert_eq!(
        w.accept(&nope, "a").unwrap_err(),
        DispatchError::NotActive(nope)
    );
    let a = w.press("band-1");
    w.cancel(&a).unwrap();
    assert_eq!(w.accept(&a, "a").unwrap_err(), DispatchError::NotActive(a));
}

#[test]
fn an_accept_retried_by_the_winner_changes_nothing() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.advance(10);
    let first = alert_of(w.accept(&a, "a").unwrap());
    w.advance(2);
    let again = alert_of(w.accept(&a, "a").unwrap());
    assert!(w.fx.is_empty(), "{:?}", w.fx);
    assert_eq!(first, again);
    assert_eq!(again.accepted_at, Some(t0() + secs(10)));
    // Still so once the volunteer is on scene.
    w.arrive(&a, "a").unwrap();
    let later = alert_of(w.accept(&a, "a").unwrap());
    assert_eq!(later.state, AlertState::OnScene);
    assert!(w.fx.is_empty());
}

#[test]
fn an_accept_makes_the_volunteer_busy_and_records_the_time() {
    let mut w = World::new();
    w.volunteer_at("a", 280.0);
    let a = w.press("band-1");
    w.advance(7);
    w.accept(&a, "a").unwrap();
    let alert = w.alert(&a).clone();
    assert_eq!(alert.state, AlertState::Accepted);
    assert_eq!(alert.accepted_at, Some(t0() + secs(7)));
    assert!(alert.offers.is_empty());
    let v = w.vol("a");
    assert_eq!(v.busy_alert, Some(a.clone()));
    assert!(v.pending_offer.is_none());
    assert!(
        w.fx.volunteers
            .iter()
            .any(|v| v.id == vid("a") && v.busy_alert.is_some())
    );
    let ev = w.events(&a).pop().unwrap();
    assert_eq!(ev.kind, TimelineKind::Accepted);
    assert_eq!(
        (ev.volunteer_id, ev.distance_m, ev.eta_s),
        (Some(vid("a")), Some(280), Some(200))
    );
}

#[test]
fn an_accept_tells_the_band_who_is_coming_and_when() {
    let mut w = World::new();
    w.volunteer_at("a", 420.0);
    let a = w.press("band-1");
    w.accept(&a, "a").unwrap();
    let notices = w.band("band-1");
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].alert_id, Some(a));
    assert_eq!(notices[0].state, "accepted");
    assert_eq!(notices[0].volunteer_name.as_deref(), Some("Volunteer a"));
    assert_eq!(notices[0].eta_s, Some(300));
}

#[test]
fn volunteers_whose_offers_were_taken_are_offered_other_waiting_alerts() {
    let mut w = World::with(with_fanout(2));
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let first = w.press("band-1");
    let second = w.press_at("band-2", north(300.0));
    assert!(w.row(&second).escalated);
    w.accept(&first, "a").unwrap();
    assert_eq!(w.holders(&second), ["b"]);
    assert_eq!(
        w.withdrawals(),
        [("b".to_string(), first.clone(), WithdrawReason::Taken)]
    );
}

#[test]
fn a_decline_by_someone_never_offered_the_alert_is_not_offered() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    assert_eq!(
        w.decline(&a, "b").unwrap_err(),
        DispatchError::NotOffered(a.clone())
    );
    let nope = aid("nope");
    assert_eq!(
        w.decline(&nope, "a").unwrap_err(),
        DispatchError::NotActive(nope)
    );
}

#[test]
fn declining_an_offer_that_already_ended_changes_nothing() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.advance(45);
    assert_eq!(w.holders(&a), ["b"]);
    let reply = alert_of(w.decline(&a, "a").unwrap());
    assert!(w.fx.is_empty(), "{:?}", w.fx);
    assert_eq!(reply.offers.len(), 1);
    // Nor does the winner declining after accepting.
    w.accept(&a, "b").unwrap();
    w.decline(&a, "b").unwrap();
    assert!(w.fx.is_empty());
    assert_eq!(w.alert(&a).volunteer_id, Some(vid("b")));
}

#[test]
fn accepting_removes_the_offer_timer() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.accept(&a, "a").unwrap();
    assert!(
        !w.timers()
            .iter()
            .any(|(_, t)| matches!(t, Timer::OfferExpiry(..)))
    );
}

// ----- nobody to offer it to: escalation ---------------------------------

#[test]
fn with_no_candidate_an_alert_stays_open_and_escalated() {
    let mut w = World::new();
    let a = w.press("band-1");
    let alert = w.alert(&a).clone();
    assert_eq!(alert.state, AlertState::Open);
    assert!(alert.escalated);
    assert!(alert.offers.is_empty());
    assert_eq!(
        w.kinds(&a),
        [TimelineKind::Pressed, TimelineKind::Escalated]
    );
    let ev = &w.events(&a)[1];
    assert_eq!(ev.at, t0());
    assert!(ev.reason.is_some());
    // The operators see it: the escalated alert is written.
    assert!(w.fx.alerts.iter().any(|x| x.id == a && x.escalated));
}

#[test]
fn an_escalated_alert_is_escalated_once_not_at_every_tick() {
    let mut w = World::new();
    let a = w.press("band-1");
    for _ in 0..10 {
        w.advance(10);
    }
    assert_eq!(w.count(&a, TimelineKind::Escalated), 1);
}

#[test]
fn an_escalated_alert_is_offered_when_a_volunteer_comes_on_duty() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.duty("a", false).unwrap();
    let a = w.press("band-1");
    w.advance(20);
    w.duty("a", true).unwrap();
    assert_eq!(w.holders(&a), ["a"]);
    let alert = w.alert(&a);
    assert_eq!(alert.state, AlertState::Offered);
    assert!(!alert.escalated, "escalated clears once offered");
    assert_eq!(alert.offers[0].offered_at, t0() + secs(20));
    assert_eq!(w.band_states("band-1"), ["offered"]);
}

#[test]
fn an_escalated_alert_is_offered_when_a_volunteer_sends_a_first_location() {
    let mut w = World::new();
    w.register("a");
    w.duty("a", true).unwrap();
    let a = w.press("band-1");
    w.locate("a", north(300.0)).unwrap();
    assert_eq!(w.holders(&a), ["a"]);
}

#[test]
fn an_escalated_alert_is_offered_when_a_volunteer_resolves_another_alert() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    w.accept(&first, "a").unwrap();
    let second = w.press("band-2");
    assert!(w.row(&second).escalated);
    w.arrive(&first, "a").unwrap();
    w.resolve(&first, Actor::Volunteer(vid("a"))).unwrap();
    assert_eq!(w.holders(&second), ["a"]);
    assert_eq!(w.offers_sent(), [("a".to_string(), second.clone())]);
}

#[test]
fn an_escalated_alert_is_offered_when_another_alert_the_volunteer_holds_is_cancelled() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    let second = w.press("band-2");
    w.cancel(&first).unwrap();
    assert_eq!(w.holders(&second), ["a"]);
    assert_eq!(
        w.withdrawals(),
        [("a".to_string(), first, WithdrawReason::Cancelled)]
    );
}

#[test]
fn an_escalated_alert_is_offered_when_an_offer_elsewhere_is_declined() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    let second = w.press("band-2");
    w.decline(&first, "a").unwrap();
    assert_eq!(w.holders(&second), ["a"]);
}

#[test]
fn an_alert_escalates_again_when_its_next_offer_fails_too() {
    let mut w = World::new();
    let a = w.press("band-1");
    w.volunteer_at("a", 100.0);
    assert!(!w.row(&a).escalated);
    w.advance(45);
    assert!(w.row(&a).escalated);
    assert_eq!(
        w.history(&a),
        [
            TimelineKind::Pressed,
            TimelineKind::Escalated,
            TimelineKind::Offered,
            TimelineKind::OfferExpired,
            TimelineKind::Escalated,
        ]
    );
    assert_eq!(w.band_states("band-1"), ["open"]);
}

#[test]
fn a_freed_volunteer_is_offered_the_oldest_waiting_alert_first() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.duty("a", false).unwrap();
    // The older press is farther away; it still comes first.
    let older = w.press_at("band-1", north(2000.0));
    w.advance(5);
    let newer = w.press_at("band-2", north(150.0));
    w.duty("a", true).unwrap();
    assert_eq!(w.holders(&older), ["a"]);
    assert!(w.row(&newer).escalated);
}

#[test]
fn a_freed_volunteer_is_not_offered_a_waiting_alert_out_of_reach() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    let far = w.press_at("band-2", east(20.0));
    assert!(w.row(&far).escalated);
    w.decline(&first, "a").unwrap();
    assert!(w.vol("a").pending_offer.is_none());
    assert!(w.row(&far).escalated);
}

#[test]
fn a_freed_volunteer_with_a_stale_location_is_offered_nothing() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    w.accept(&first, "a").unwrap();
    w.advance(16 * 60);
    let second = w.press("band-2");
    w.resolve(&first, Actor::Operator).unwrap();
    assert!(w.vol("a").busy_alert.is_none());
    assert!(w.row(&second).escalated);
    assert!(w.offers_sent().is_empty());
    w.locate("a", north(100.0)).unwrap();
    assert_eq!(w.holders(&second), ["a"]);
}

#[test]
fn a_volunteer_freed_by_a_decline_is_not_offered_an_alert_they_declined_before() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    w.decline(&first, "a").unwrap();
    let second = w.press("band-2");
    assert_eq!(w.holders(&second), ["a"]);
    w.decline(&second, "a").unwrap();
    assert!(w.vol("a").pending_offer.is_none());
    assert!(w.row(&first).escalated && w.row(&second).escalated);
}

// ----- one alert at a time -------------------------------------------------

#[test]
fn a_volunteer_is_never_offered_two_alerts_at_once() {
    let mut w = World::with(with_fanout(3));
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    let second = w.press("band-2");
    let third = w.press("band-3");
    assert_eq!(w.holders(&first), ["a"]);
    assert!(w.alert(&second).offers.is_empty());
    assert!(w.alert(&third).offers.is_empty());
    // When the first offer ends, the next alert (only one) gets them.
    w.decline(&first, "a").unwrap();
    assert_eq!(w.holders(&second), ["a"]);
    assert!(w.alert(&third).offers.is_empty());
}

#[test]
fn a_volunteer_busy_with_an_alert_is_offered_no_other() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    w.accept(&first, "a").unwrap();
    w.locate("a", north(10.0)).unwrap();
    w.duty("a", false).unwrap();
    w.duty("a", true).unwrap();
    let second = w.press("band-2");
    assert!(w.row(&second).escalated);
    assert_eq!(w.vol("a").busy_alert, Some(first));
}

#[test]
fn going_off_duty_while_offered_withdraws_the_offer_and_moves_on_at_once() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.advance(5);
    w.duty("a", false).unwrap();
    assert_eq!(
        w.withdrawals(),
        [("a".to_string(), a.clone(), WithdrawReason::OffDuty)]
    );
    assert_eq!(w.holders(&a), ["b"]);
    assert_eq!(w.alert(&a).offers[0].offered_at, t0() + secs(5));
    assert_eq!(
        w.kinds(&a),
        [TimelineKind::OfferWithdrawn, TimelineKind::Offered]
    );
    assert_eq!(w.events(&a)[2].reason.as_deref(), Some("off_duty"));
    assert_eq!(w.offer_row(&a, "a").outcome, Some(OfferOutcome::Withdrawn));
    assert!(!w.vol("a").on_duty);
    assert!(
        w.fx.volunteers
            .iter()
            .any(|v| v.id == vid("a") && !v.on_duty)
    );
}

#[test]
fn going_off_duty_with_no_one_next_escalates_at_once() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.advance(5);
    w.duty("a", false).unwrap();
    assert!(w.row(&a).escalated);
    assert_eq!(
        w.kinds(&a),
        [TimelineKind::OfferWithdrawn, TimelineKind::Escalated]
    );
    assert_eq!(w.band_states("band-1"), ["open"]);
    // And the old expiry does nothing.
    w.advance(40);
    assert!(w.fx.is_empty());
}

#[test]
fn going_off_duty_with_a_fanout_keeps_the_other_offers_and_tops_up() {
    let mut w = World::with(with_fanout(2));
    for (v, m) in [("a", 100.0), ("b", 200.0), ("c", 300.0)] {
        w.volunteer_at(v, m);
    }
    let a = w.press("band-1");
    w.duty("a", false).unwrap();
    assert_eq!(w.holders(&a), ["b", "c"]);
    assert!(!w.kinds(&a).contains(&TimelineKind::Escalated));
}

#[test]
fn going_off_duty_is_not_declining_the_alert() {
    // Judgement call: the contract excludes only who declined or let an
    // offer expire, so a volunteer back on duty may be offered it again.
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.duty("a", false).unwrap();
    assert!(w.row(&a).escalated);
    w.duty("a", true).unwrap();
    assert_eq!(w.holders(&a), ["a"]);
}

#[test]
fn going_off_duty_while_busy_keeps_the_alert() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.accept(&a, "a").unwrap();
    w.duty("a", false).unwrap();
    assert!(w.withdrawals().is_empty());
    assert_eq!(w.vol("a").busy_alert, Some(a.clone()));
    assert_eq!(w.state(&a), AlertState::Accepted);
    w.arrive(&a, "a").unwrap();
    assert_eq!(w.state(&a), AlertState::OnScene);
}

#[test]
fn setting_the_duty_a_volunteer_already_has_changes_nothing() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let reply = w.duty("a", true).unwrap();
    assert!(w.fx.is_empty());
    assert!(matches!(reply, Reply::Volunteer(v) if v.on_duty));
    w.duty("a", false).unwrap();
    w.duty("a", false).unwrap();
    assert!(w.fx.is_empty());
}

#[test]
fn duty_and_location_are_written_for_the_store() {
    let mut w = World::new();
    w.register("a");
    w.duty("a", true).unwrap();
    assert_eq!(w.fx.volunteers.len(), 1);
    assert!(w.fx.volunteers[0].on_duty);
    w.advance(3);
    w.locate("a", north(10.0)).unwrap();
    let row = &w.fx.volunteers[0];
    assert_eq!(row.position, Some(north(10.0)));
    assert_eq!(row.location_at, Some(t0() + secs(3)));
}

// ----- response and arrival targets ----------------------------------------

#[test]
fn the_response_deadline_fires_exactly_when_it_passes_not_before() {
    let mut w = World::new();
    let a = w.press("band-1");
    assert_eq!(w.alert(&a).response_deadline, t0() + secs(180));
    w.advance_to(t0() + secs(180) - ms(1));
    assert!(w.fx.is_empty());
    assert!(!w.alert(&a).response_breached);
    w.advance_ms(1);
    assert!(w.alert(&a).response_breached);
    assert_eq!(w.kinds(&a), [TimelineKind::ResponseBreached]);
    assert_eq!(w.events(&a).last().unwrap().at, t0() + secs(180));
    // Pushed at that moment: the alert is written with the flag.
    assert!(w.fx.alerts.iter().any(|x| x.id == a && x.response_breached));
}

#[test]
fn the_response_deadline_fires_once() {
    let mut w = World::new();
    let a = w.press("band-1");
    w.advance(180);
    w.advance(1);
    w.advance(100);
    assert_eq!(w.count(&a, TimelineKind::ResponseBreached), 1);
}

#[test]
fn the_response_deadline_does_not_fire_once_accepted() {
    let mut w = World::with(Rules {
        offer_timeout: Duration::from_secs(300),
        ..Rules::default()
    });
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.advance(179);
    w.accept(&a, "a").unwrap();
    w.advance(1);
    assert!(w.fx.is_empty(), "{:?}", w.fx);
    assert!(!w.alert(&a).response_breached);
}

#[test]
fn the_response_deadline_fires_while_the_alert_is_offered() {
    let mut w = World::with(Rules {
        offer_timeout: Duration::from_secs(300),
        ..Rules::default()
    });
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.advance(180);
    assert_eq!(w.state(&a), AlertState::Offered);
    assert!(w.row(&a).response_breached);
    // A late accept is still an accept.
    w.advance(10);
    w.accept(&a, "a").unwrap();
    assert_eq!(w.state(&a), AlertState::Accepted);
    assert!(w.row(&a).response_breached);
}

#[test]
fn the_arrival_deadline_fires_exactly_when_it_passes_not_before() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.accept(&a, "a").unwrap();
    w.advance_to(t0() + secs(600) - ms(1));
    assert!(!w.alert(&a).arrival_breached);
    w.advance_ms(1);
    assert!(w.alert(&a).arrival_breached);
    assert!(!w.alert(&a).response_breached);
    assert_eq!(w.kinds(&a), [TimelineKind::ArrivalBreached]);
    assert!(w.fx.alerts.iter().any(|x| x.id == a && x.arrival_breached));
    w.advance(600);
    assert_eq!(w.count(&a, TimelineKind::ArrivalBreached), 1);
}

#[test]
fn an_alert_nobody_answers_breaches_both_targets_in_turn() {
    let mut w = World::new();
    let a = w.press("band-1");
    w.advance(180);
    assert_eq!(w.kinds(&a), [TimelineKind::ResponseBreached]);
    w.advance(420);
    assert_eq!(w.kinds(&a), [TimelineKind::ArrivalBreached]);
    assert_eq!(w.d.next_deadline(), None);
}

#[test]
fn a_late_tick_fires_every_overdue_deadline_at_once() {
    let mut w = World::new();
    let a = w.press("band-1");
    w.advance(3600);
    assert_eq!(
        w.kinds(&a),
        [
            TimelineKind::ResponseBreached,
            TimelineKind::ArrivalBreached
        ]
    );
    let alert = w.alert(&a);
    assert!(alert.response_breached && alert.arrival_breached);
}

#[test]
fn the_arrival_deadline_does_not_fire_once_on_scene() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.accept(&a, "a").unwrap();
    w.advance(599);
    w.arrive(&a, "a").unwrap();
    w.advance(1);
    assert!(w.fx.is_empty(), "{:?}", w.fx);
    assert!(!w.alert(&a).arrival_breached);
}

#[test]
fn closed_alerts_breach_nothing_and_leave_no_timers() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let resolved = w.press("band-1");
    w.accept(&resolved, "a").unwrap();
    w.resolve(&resolved, Actor::Volunteer(vid("a"))).unwrap();
    let cancelled = w.press("band-2");
    w.cancel(&cancelled).unwrap();
    assert_eq!(w.d.next_deadline(), None);
    w.advance(3600);
    assert!(w.fx.is_empty());
    assert!(!w.row(&resolved).response_breached && !w.row(&cancelled).arrival_breached);
}

#[test]
fn targets_are_rules() {
    let mut w = World::with(Rules {
        response_target: Duration::from_secs(60),
        arrival_target: Duration::from_secs(90),
        ..Rules::default()
    });
    let a = w.press("band-1");
    let alert = w.alert(&a).clone();
    assert_eq!(alert.response_deadline, t0() + secs(60));
    assert_eq!(alert.arrival_deadline, t0() + secs(90));
    w.advance(60);
    assert_eq!(w.kinds(&a), [TimelineKind::ResponseBreached]);
    w.advance(30);
    assert_eq!(w.kinds(&a), [TimelineKind::ArrivalBreached]);
}

#[test]
fn an_accept_that_reaches_the_dispatcher_before_the_deadline_tick_still_breaches() {
    // The request races the shell's timer: it arrives after the response
    // deadline but before the `Tick`. The breach must not be lost.
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.duty("a", false).unwrap();
    let a = w.press("band-1");
    w.advance(170);
    w.duty("a", true).unwrap();
    w.now = t0() + secs(180) + ms(2);
    w.accept(&a, "a").unwrap();
    let alert = w.alert(&a).clone();
    assert!(alert.response_breached);
    assert_eq!(
        w.kinds(&a),
        [TimelineKind::ResponseBreached, TimelineKind::Accepted]
    );
    w.tick();
    assert!(w.fx.is_empty());
    assert_eq!(w.count(&a, TimelineKind::ResponseBreached), 1);
}

#[test]
fn an_arrival_that_reaches_the_dispatcher_before_the_deadline_tick_still_breaches() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.accept(&a, "a").unwrap();
    w.now = t0() + secs(600);
    w.arrive(&a, "a").unwrap();
    assert!(w.alert(&a).arrival_breached);
    assert_eq!(
        w.kinds(&a),
        [TimelineKind::ArrivalBreached, TimelineKind::OnScene]
    );
    w.tick();
    assert!(w.fx.is_empty());
}

#[test]
fn an_assignment_that_reaches_the_dispatcher_before_the_deadline_tick_still_breaches() {
    let mut w = World::new();
    w.register("a");
    let a = w.press("band-1");
    w.now = t0() + secs(180);
    w.assign(&a, "a").unwrap();
    assert!(w.alert(&a).response_breached);
    assert_eq!(
        w.kinds(&a),
        [TimelineKind::ResponseBreached, TimelineKind::Assigned]
    );
}

#[test]
fn a_resolve_that_reaches_the_dispatcher_before_the_deadline_tick_still_breaches() {
    let (mut w, a) = accepted();
    w.now = t0() + secs(600) + ms(5);
    let closed = alert_of(w.resolve(&a, Actor::Operator).unwrap());
    assert!(closed.arrival_breached && !closed.response_breached);
    assert_eq!(
        w.kinds(&a),
        [TimelineKind::ArrivalBreached, TimelineKind::Resolved]
    );
}

#[test]
fn a_refused_late_command_records_no_breach() {
    // A command that fails changes nothing, not even a due breach: the tick
    // records it.
    let (mut w, a) = accepted();
    w.now = t0() + secs(600);
    assert_eq!(
        w.arrive(&a, "b").unwrap_err(),
        DispatchError::NotAssigned(a.clone())
    );
    assert!(!w.alert(&a).arrival_breached);
    w.tick();
    assert!(w.alert(&a).arrival_breached);
}

#[test]
fn an_arrival_one_millisecond_before_the_deadline_is_in_time() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.accept(&a, "a").unwrap();
    w.now = t0() + secs(600) - ms(1);
    w.arrive(&a, "a").unwrap();
    w.advance(1);
    assert!(!w.alert(&a).arrival_breached);
    assert_eq!(w.alert(&a).on_scene_at, Some(t0() + secs(600) - ms(1)));
}

#[test]
fn eta_is_distance_over_volunteer_speed() {
    let mut w = World::with(Rules {
        volunteer_speed: 2.0,
        ..Rules::default()
    });
    w.volunteer_at("a", 1000.0);
    let a = w.press("band-1");
    let o = &w.alert(&a).offers[0];
    assert_eq!((o.distance_m, o.eta_s), (1000, 500));
}

#[test]
fn an_alert_whose_best_eta_misses_the_arrival_deadline_is_at_risk() {
    let mut w = World::new();
    // 842 m at 1.4 m/s: 601 s, one second over the 600 s target.
    w.volunteer_at("a", 842.0);
    let a = w.press("band-1");
    assert_eq!(w.alert(&a).offers[0].eta_s, 601);
    assert!(w.alert(&a).arrival_at_risk);
    assert!(w.fx.alerts.iter().any(|x| x.id == a && x.arrival_at_risk));
}

#[test]
fn an_eta_that_arrives_exactly_at_the_deadline_is_not_at_risk() {
    let mut w = World::new();
    w.volunteer_at("a", 840.0);
    let a = w.press("band-1");
    assert_eq!(w.alert(&a).offers[0].eta_s, 600);
    assert!(!w.alert(&a).arrival_at_risk);
}

#[test]
fn arrival_risk_counts_the_time_already_lost() {
    let mut w = World::new();
    let a = w.press("band-1");
    w.advance(300);
    // 500 m is 357 s: fine at the press, too late five minutes on.
    w.volunteer_at("a", 500.0);
    assert_eq!(w.holders(&a), ["a"]);
    assert!(w.alert(&a).arrival_at_risk);
}

#[test]
fn arrival_risk_uses_the_best_eta_of_the_offers_out() {
    let mut w = World::with(with_fanout(2));
    w.volunteer_at("near", 500.0);
    w.volunteer_at("far", 3000.0);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["near", "far"]);
    assert!(!w.alert(&a).arrival_at_risk);
}

#[test]
fn arrival_risk_once_flagged_stays_flagged() {
    // What the code does (the contract does not say when the flag clears):
    // a later, nearer offer does not clear it.
    let mut w = World::new();
    w.volunteer_at("far", 3000.0);
    let a = w.press("band-1");
    assert!(w.alert(&a).arrival_at_risk);
    w.volunteer_at("near", 100.0);
    w.decline(&a, "far").unwrap();
    assert_eq!(w.holders(&a), ["near"]);
    assert!(w.alert(&a).arrival_at_risk);
}

#[test]
fn an_alert_nobody_is_offered_is_not_flagged_at_risk() {
    let mut w = World::new();
    let a = w.press("band-1");
    assert!(!w.alert(&a).arrival_at_risk);
}

// ----- pressed_at: the band's clock, within reason -------------------------

fn pressed_at_for(device_ts: Option<TimeDelta>) -> (Timestamp, Timestamp) {
    let mut w = World::new();
    w.advance(3600);
    let mut p = w.press_cmd("band-1", PressKind::Sos);
    p.device_ts = device_ts.map(|d| w.now + d);
    let (_, id) = w.send(p);
    let a = w.alert(&id.unwrap()).clone();
    assert_eq!(a.received_at, w.now);
    assert_eq!(a.response_deadline, a.pressed_at + secs(180));
    assert_eq!(a.arrival_deadline, a.pressed_at + secs(600));
    (a.pressed_at, w.now)
}

#[test]
fn pressed_at_is_the_band_time_when_it_is_plausible() {
    let (pressed, received) = pressed_at_for(Some(secs(-42)));
    assert_eq!(pressed, received - secs(42));
}

#[test]
fn pressed_at_is_the_band_time_exactly_ten_minutes_back() {
    let (pressed, received) = pressed_at_for(Some(secs(-600)));
    assert_eq!(pressed, received - secs(600));
}

#[test]
fn pressed_at_is_the_receipt_when_the_band_time_is_just_over_ten_minutes_back() {
    let (pressed, received) = pressed_at_for(Some(secs(-600) - ms(1)));
    assert_eq!(pressed, received);
}

#[test]
fn pressed_at_is_the_band_time_exactly_five_seconds_ahead() {
    let (pressed, received) = pressed_at_for(Some(secs(5)));
    assert_eq!(pressed, received + secs(5));
}

#[test]
fn pressed_at_is_the_receipt_when_the_band_time_is_just_over_five_seconds_ahead() {
    let (pressed, received) = pressed_at_for(Some(secs(5) + ms(1)));
    assert_eq!(pressed, received);
}

#[test]
fn pressed_at_is_the_receipt_when_the_band_sends_no_time() {
    let (pressed, received) = pressed_at_for(None);
    assert_eq!(pressed, received);
}

#[test]
fn pressed_at_is_the_receipt_when_the_band_clock_is_years_off() {
    let (pressed, received) = pressed_at_for(Some(TimeDelta::days(-3650)));
    assert_eq!(pressed, received);
}

#[test]
fn a_press_the_band_dates_ten_minutes_back_breaches_both_targets_at_the_next_tick() {
    let mut w = World::new();
    let mut p = w.press_cmd("band-1", PressKind::Sos);
    p.device_ts = Some(t0() - secs(600));
    let (_, id) = w.send(p);
    let a = id.unwrap();
    assert_eq!(w.d.next_deadline(), Some(t0() - secs(420)));
    w.tick();
    assert_eq!(
        w.kinds(&a),
        [
            TimelineKind::ResponseBreached,
            TimelineKind::ArrivalBreached
        ]
    );
}

#[test]
fn deadlines_count_from_the_band_time() {
    let mut w = World::new();
    let mut p = w.press_cmd("band-1", PressKind::Sos);
    p.device_ts = Some(t0() - secs(100));
    let (_, id) = w.send(p);
    let a = id.unwrap();
    w.advance_to(t0() + secs(80) - ms(1));
    assert!(!w.alert(&a).response_breached);
    w.advance_ms(1);
    assert!(w.alert(&a).response_breached);
}

// ----- band events -----------------------------------------------------------

#[test]
fn a_press_opens_an_alert_and_acknowledges_the_event() {
    let mut w = World::new();
    let p = w.press_cmd("band-1", PressKind::Sos);
    let (outcome, id) = w.send(p);
    assert_eq!(outcome, PressOutcome::Opened);
    let a = id.unwrap();
    assert_eq!(a, aid("alert-001"), "the shell chooses the id");
    let alert = w.alert(&a).clone();
    assert_eq!(alert.device_id, did("band-1"));
    assert_eq!(alert.senior_id, senior("band-1").id);
    assert_eq!(alert.kind, AlertKind::Sos);
    assert_eq!(alert.event_id, eid("e1"));
    assert_eq!((alert.pressed_at, alert.received_at), (t0(), t0()));
    assert_eq!(w.d.active_alert_of(&did("band-1")).map(|x| &x.id), Some(&a));
    let received = &w.band("band-1")[0];
    assert_eq!(received.state, "received");
    assert_eq!(received.event_id, Some(eid("e1")));
    assert_eq!(received.alert_id, Some(a.clone()));
    assert_eq!(
        w.fx.ingested,
        [IngestedEvent {
            device_id: did("band-1"),
            event_id: eid("e1"),
            alert_id: Some(a.clone()),
            at: t0(),
        }]
    );
    let pressed = &w.events(&a)[0];
    assert_eq!(pressed.kind, TimelineKind::Pressed);
    assert_eq!(pressed.event_id, Some(eid("e1")));
    assert_eq!(pressed.by.as_deref(), Some("senior"));
}

#[test]
fn a_fall_opens_a_fall_alert() {
    let mut w = World::new();
    let p = w.press_cmd("band-1", PressKind::Fall);
    let (_, id) = w.send(p);
    assert_eq!(w.alert(&id.unwrap()).kind, AlertKind::Fall);
}

#[test]
fn a_redelivered_event_changes_nothing_but_is_acknowledged_again() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let p = w.press_cmd("band-1", PressKind::Sos);
    let (_, id) = w.send(p.clone());
    let a = id.unwrap();
    let before = w.alert(&a).clone();
    w.advance(3);
    let mut again = p;
    again.new_alert_id = aid("would-be-new");
    assert_eq!(w.send(again), (PressOutcome::Redelivered, Some(a.clone())));
    assert!(!w.fx.has_writes(), "{:?}", w.fx);
    assert_eq!(w.band_states("band-1"), ["received"]);
    assert_eq!(w.band("band-1")[0].event_id, Some(eid("e1")));
    assert_eq!(w.fx.outgoing.len(), 1);
    assert_eq!(w.alert(&a), &before);
    assert_eq!(w.d.active_alerts().count(), 1);
}

#[test]
fn a_redelivered_joining_event_is_recognised_too() {
    let mut w = World::new();
    let a = w.press("band-1");
    let second = w.press_cmd("band-1", PressKind::Sos);
    assert_eq!(w.send(second.clone()).0, PressOutcome::Joined);
    assert_eq!(w.send(second).0, PressOutcome::Redelivered);
    assert_eq!(w.count(&a, TimelineKind::PressedAgain), 1);
}

#[test]
fn an_event_id_already_seen_is_a_redelivery_whatever_its_kind() {
    let mut w = World::new();
    let a = w.press("band-1");
    let sos_again = w.press_cmd("band-1", PressKind::Sos);
    w.send(sos_again);
    // An event id the alert already took in is a redelivery, even if the
    // payload now says `cancel`: it cancels nothing.
    let mut same_id = w.press_cmd("band-1", PressKind::Cancel);
    same_id.event_id = eid("e2");
    assert_eq!(w.send(same_id).0, PressOutcome::Redelivered);
    assert!(w.d.alert(&a).is_some());
}

#[test]
fn a_second_press_joins_the_active_alert() {
    let mut w = World::new();
    let a = w.press("band-1");
    w.advance(20);
    let mut p = w.press_cmd("band-1", PressKind::Fall);
    p.position = Some(north(300.0));
    let (outcome, id) = w.send(p);
    assert_eq!((outcome, id), (PressOutcome::Joined, Some(a.clone())));
    assert_eq!(w.kinds(&a), [TimelineKind::PressedAgain]);
    let ev = w.events(&a).pop().unwrap();
    assert_eq!(ev.event_id, Some(eid("e2")));
    assert_eq!(ev.at, t0() + secs(20));
    assert_eq!(w.band_states("band-1"), ["received"]);
    assert_eq!(w.fx.ingested.len(), 1);
    assert_eq!(w.fx.ingested[0].alert_id, Some(a.clone()));
    // The alert itself is as it was: still an sos, where it was.
    let alert = w.alert(&a);
    assert_eq!(alert.kind, AlertKind::Sos);
    assert_eq!(alert.lat, Some(BASE_LAT));
    assert_eq!(w.d.active_alerts().count(), 1);
}

#[test]
fn a_press_from_another_band_opens_another_alert() {
    let mut w = World::new();
    let a = w.press("band-1");
    let b = w.press("band-2");
    assert_ne!(a, b);
    assert_eq!(w.d.active_alerts().count(), 2);
    assert_eq!(w.d.active_alert_of(&did("band-2")).map(|x| &x.id), Some(&b));
}

#[test]
fn a_cancel_from_the_band_cancels_the_active_alert() {
    let mut w = World::with(with_fanout(2));
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.advance(4);
    let p = w.press_cmd("band-1", PressKind::Cancel);
    assert_eq!(w.send(p), (PressOutcome::Cancelled, Some(a.clone())));
    assert!(w.d.alert(&a).is_none());
    assert!(w.d.active_alert_of(&did("band-1")).is_none());
    let row = w.row(&a);
    assert_eq!(row.state, AlertState::Cancelled);
    assert_eq!(row.cancelled_at, Some(t0() + secs(4)));
    assert!(row.offers.is_empty());
    assert_eq!(w.band_states("band-1"), ["received", "cancelled"]);
    let mut withdrawn = w.withdrawals();
    withdrawn.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        withdrawn,
        [
            ("a".to_string(), a.clone(), WithdrawReason::Cancelled),
            ("b".to_string(), a.clone(), WithdrawReason::Cancelled),
        ]
    );
    let ev = w.events(&a).pop().unwrap();
    assert_eq!(ev.kind, TimelineKind::Cancelled);
    assert_eq!(ev.by.as_deref(), Some("senior"));
    assert!(w.vol("a").pending_offer.is_none() && w.vol("b").pending_offer.is_none());
    assert_eq!(w.fx.ingested[0].alert_id, Some(a));
}

#[test]
fn a_cancel_from_the_band_releases_the_volunteer_on_the_way() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    w.accept(&first, "a").unwrap();
    let waiting = w.press("band-2");
    let p = w.press_cmd("band-1", PressKind::Cancel);
    w.send(p);
    assert!(w
        .phone("a")
        .iter()
        .any(|m| matches!(m, PhoneMessage::Withdrawn { alert_id, reason: WithdrawReason::Cancelled } if *alert_id == first)));
    assert_ne!(w.vol("a").busy_alert, Some(first));
    assert_eq!(w.holders(&waiting), ["a"]);
}

#[test]
fn a_cancel_with_no_active_alert_changes_nothing_but_is_acknowledged() {
    let mut w = World::new();
    let p = w.press_cmd("band-1", PressKind::Cancel);
    let event = p.clone();
    assert_eq!(w.send(p), (PressOutcome::NothingToCancel, None));
    assert!(w.fx.alerts.is_empty() && w.fx.timeline.is_empty() && w.fx.offers.is_empty());
    assert_eq!(w.d.active_alerts().count(), 0);
    // Remembered, so that a redelivery cannot cancel a later alert…
    assert_eq!(w.fx.ingested.len(), 1);
    assert_eq!(w.fx.ingested[0].alert_id, None);
    // …and acknowledged, so that the band stops resending it.
    assert_eq!(
        w.fx.outgoing,
        vec![Outgoing::Band(
            event.device_id.clone(),
            BandNotice::received(None, event.event_id.clone())
        )]
    );
}

#[test]
fn a_cancel_does_not_touch_another_bands_alert() {
    let mut w = World::new();
    let a = w.press("band-1");
    let p = w.press_cmd("band-2", PressKind::Cancel);
    assert_eq!(w.send(p).0, PressOutcome::NothingToCancel);
    assert!(w.d.alert(&a).is_some());
}

#[test]
fn a_press_after_a_cancel_opens_a_new_alert() {
    let mut w = World::new();
    let a = w.press("band-1");
    let p = w.press_cmd("band-1", PressKind::Cancel);
    w.send(p);
    let b = w.press("band-1");
    assert_ne!(a, b);
    assert_eq!(w.alert(&b).state, AlertState::Open);
}

#[test]
fn a_press_with_no_position_uses_the_seniors_home() {
    let mut w = World::new();
    w.volunteer_at("a", 1500.0);
    let mut p = w.press_cmd("band-1", PressKind::Sos);
    p.position = None;
    p.home = Some(north(1000.0));
    let (_, id) = w.send(p);
    let a = id.unwrap();
    let alert = w.alert(&a);
    assert_eq!(alert.position(), Some(north(1000.0)));
    assert_eq!(alert.offers[0].distance_m, 500);
}

#[test]
fn the_bands_position_wins_over_the_home() {
    let mut w = World::new();
    let mut p = w.press_cmd("band-1", PressKind::Sos);
    p.position = Some(north(10.0));
    p.home = Some(east(3.0));
    let (_, id) = w.send(p);
    assert_eq!(w.alert(&id.unwrap()).position(), Some(north(10.0)));
}

#[test]
fn an_alert_with_no_position_and_no_home_is_escalated_and_never_offered() {
    let mut w = World::new();
    w.volunteer_at("a", 0.0);
    let mut p = w.press_cmd("band-1", PressKind::Sos);
    p.position = None;
    let (_, id) = w.send(p);
    let a = id.unwrap();
    let alert = w.alert(&a).clone();
    assert_eq!((alert.lat, alert.lon), (None, None));
    assert_eq!(alert.state, AlertState::Open);
    assert!(alert.escalated);
    assert!(w.offers_sent().is_empty());
    // Nothing that frees or moves a volunteer changes that.
    w.locate("a", north(1.0)).unwrap();
    w.duty("a", false).unwrap();
    w.duty("a", true).unwrap();
    w.advance(60);
    assert!(
        w.published
            .iter()
            .all(|o| !matches!(o, Outgoing::Phone(..)))
    );
    assert!(w.alert(&a).offers.is_empty());
}

#[test]
fn an_alert_with_no_position_can_be_assigned_by_hand() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let mut p = w.press_cmd("band-1", PressKind::Sos);
    p.position = None;
    let (_, id) = w.send(p);
    let a = id.unwrap();
    w.assign(&a, "a").unwrap();
    let alert = w.alert(&a);
    assert_eq!(alert.state, AlertState::Accepted);
    assert!(!alert.escalated);
    let msgs = w.phone("a");
    assert!(matches!(
        &msgs[..],
        [PhoneMessage::Assigned {
            distance_m: None,
            eta_s: None,
            lat: None,
            ..
        }]
    ));
    assert_eq!(w.band("band-1")[0].eta_s, None);
}

// ----- arrive, resolve, cancel ---------------------------------------------------

/// A world where "a" accepted the alert of band-1 at t0 + 10 s.
fn accepted() -> (World, AlertId) {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.advance(10);
    w.accept(&a, "a").unwrap();
    (w, a)
}

#[test]
fn the_assigned_volunteer_arrives_on_scene() {
    let (mut w, a) = accepted();
    w.advance(200);
    let reply = alert_of(w.arrive(&a, "a").unwrap());
    assert_eq!(reply.state, AlertState::OnScene);
    assert_eq!(reply.on_scene_at, Some(t0() + secs(210)));
    assert_eq!(w.kinds(&a), [TimelineKind::OnScene]);
    assert_eq!(w.events(&a).pop().unwrap().volunteer_id, Some(vid("a")));
    assert_eq!(w.band_states("band-1"), ["on_scene"]);
    assert_eq!(w.vol("a").busy_alert, Some(a));
}

#[test]
fn only_the_assigned_volunteer_can_arrive() {
    let (mut w, a) = accepted();
    assert_eq!(
        w.arrive(&a, "b").unwrap_err(),
        DispatchError::NotAssigned(a.clone())
    );
    assert_eq!(
        w.arrive(&a, "ghost").unwrap_err(),
        DispatchError::NotAssigned(a)
    );
}

#[test]
fn nobody_can_arrive_at_an_alert_nobody_accepted() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    assert_eq!(
        w.arrive(&a, "a").unwrap_err(),
        DispatchError::NotAssigned(a)
    );
}

#[test]
fn arriving_twice_changes_nothing() {
    let (mut w, a) = accepted();
    w.arrive(&a, "a").unwrap();
    w.advance(30);
    let reply = alert_of(w.arrive(&a, "a").unwrap());
    assert!(w.fx.is_empty());
    assert_eq!(reply.on_scene_at, Some(t0() + secs(10)));
}

#[test]
fn the_assigned_volunteer_resolves_and_is_free_again() {
    let (mut w, a) = accepted();
    w.arrive(&a, "a").unwrap();
    w.advance(100);
    let closed = alert_of(w.resolve(&a, Actor::Volunteer(vid("a"))).unwrap());
    assert_eq!(closed.state, AlertState::Resolved);
    assert_eq!(closed.resolved_at, Some(t0() + secs(110)));
    assert_eq!(closed.outcome.as_deref(), Some("helped"));
    assert!(!closed.escalated);
    assert_eq!(w.row(&a), &closed);
    assert!(w.d.alert(&a).is_none());
    assert!(w.d.active_alert_of(&did("band-1")).is_none());
    assert_eq!(w.band_states("band-1"), ["resolved"]);
    let ev = w.events(&a).pop().unwrap();
    assert_eq!(ev.kind, TimelineKind::Resolved);
    assert_eq!(ev.by.as_deref(), Some("volunteer:a"));
    assert_eq!(ev.volunteer_id, Some(vid("a")));
    assert_eq!(ev.outcome.as_deref(), Some("helped"));
    assert_eq!(ev.note.as_deref(), Some("all well"));
    assert!(w.vol("a").busy_alert.is_none());
    assert!(
        w.fx.volunteers
            .iter()
            .any(|v| v.id == vid("a") && v.busy_alert.is_none())
    );
    // Resolving is not withdrawing: the phone is not told "withdrawn".
    assert!(w.phone("a").is_empty());
}

#[test]
fn an_operator_resolves_an_alert() {
    let (mut w, a) = accepted();
    let closed = alert_of(w.resolve(&a, Actor::Operator).unwrap());
    assert_eq!(closed.state, AlertState::Resolved);
    assert_eq!(w.events(&a).pop().unwrap().by.as_deref(), Some("operator"));
    assert!(w.vol("a").busy_alert.is_none());
}

#[test]
fn a_volunteer_not_assigned_cannot_resolve() {
    let (mut w, a) = accepted();
    let e = w.resolve(&a, Actor::Volunteer(vid("b"))).unwrap_err();
    assert_eq!(e, DispatchError::NotAssigned(a.clone()));
    let mut w2 = World::new();
    w2.volunteer_at("a", 100.0);
    let open = w2.press("band-1");
    let e = w2.resolve(&open, Actor::Volunteer(vid("a"))).unwrap_err();
    assert_eq!(
        e,
        DispatchError::NotAssigned(open),
        "an offer is not an assignment"
    );
}

#[test]
fn an_operator_resolving_an_offered_alert_withdraws_the_offers() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.resolve(&a, Actor::Operator).unwrap();
    assert_eq!(
        w.withdrawals(),
        [("a".to_string(), a.clone(), WithdrawReason::Cancelled)]
    );
    assert_eq!(w.offer_row(&a, "a").outcome, Some(OfferOutcome::Withdrawn));
    assert!(w.vol("a").pending_offer.is_none());
}

#[test]
fn a_closed_alert_cannot_be_closed_again() {
    let (mut w, a) = accepted();
    w.resolve(&a, Actor::Operator).unwrap();
    assert_eq!(
        w.resolve(&a, Actor::Operator).unwrap_err(),
        DispatchError::NotActive(a.clone())
    );
    assert_eq!(
        w.cancel(&a).unwrap_err(),
        DispatchError::NotActive(a.clone())
    );
    assert_eq!(
        w.arrive(&a, "a").unwrap_err(),
        DispatchError::NotActive(a.clone())
    );
    assert_eq!(w.assign(&a, "b").unwrap_err(), DispatchError::NotActive(a));
}

#[test]
fn resolving_frees_the_volunteer_for_a_waiting_alert() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    w.accept(&first, "a").unwrap();
    let waiting = w.press("band-2");
    w.resolve(&first, Actor::Volunteer(vid("a"))).unwrap();
    assert_eq!(w.holders(&waiting), ["a"]);
}

#[test]
fn an_operator_cancels_an_alert_on_scene() {
    let (mut w, a) = accepted();
    w.arrive(&a, "a").unwrap();
    let closed = alert_of(w.cancel(&a).unwrap());
    assert_eq!(closed.state, AlertState::Cancelled);
    assert_eq!(closed.on_scene_at, Some(t0() + secs(10)));
    assert_eq!(
        w.withdrawals(),
        [("a".to_string(), a.clone(), WithdrawReason::Cancelled)]
    );
    let ev = w.events(&a).pop().unwrap();
    assert_eq!(ev.kind, TimelineKind::Cancelled);
    assert_eq!(ev.by.as_deref(), Some("operator"));
    assert_eq!(ev.reason.as_deref(), Some("false alarm"));
    assert!(w.vol("a").busy_alert.is_none());
}

#[test]
fn cancelling_releases_the_volunteer_for_a_waiting_alert() {
    let (mut w, a) = accepted();
    // "b" takes the next alert; a third waits.
    let second = w.press("band-2");
    assert_eq!(w.holders(&second), ["b"]);
    let third = w.press("band-3");
    assert!(w.row(&third).escalated);
    w.cancel(&a).unwrap();
    assert_eq!(w.holders(&third), ["a"]);
}

#[test]
fn cancelling_an_open_alert_needs_no_volunteer() {
    let mut w = World::new();
    let a = w.press("band-1");
    let closed = alert_of(w.cancel(&a).unwrap());
    assert_eq!(closed.state, AlertState::Cancelled);
    assert!(w.withdrawals().is_empty());
    assert_eq!(w.band_states("band-1"), ["cancelled"]);
}

#[test]
fn an_unknown_alert_is_not_active_for_every_command() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let x = aid("nope");
    let e = DispatchError::NotActive(x.clone());
    assert_eq!(w.arrive(&x, "a").unwrap_err(), e);
    assert_eq!(w.resolve(&x, Actor::Operator).unwrap_err(), e);
    assert_eq!(w.cancel(&x).unwrap_err(), e);
    assert_eq!(w.assign(&x, "a").unwrap_err(), e);
}

// ----- dispatch by hand ------------------------------------------------------------

#[test]
fn an_operator_assigns_a_free_volunteer_to_an_escalated_alert() {
    let mut w = World::new();
    w.volunteer_at("a", 8000.0); // out of offer range: only by hand
    let a = w.press("band-1");
    assert!(w.row(&a).escalated);
    w.advance(30);
    let reply = alert_of(w.assign(&a, "a").unwrap());
    assert_eq!(reply.state, AlertState::Accepted);
    assert_eq!(reply.volunteer_id, Some(vid("a")));
    assert_eq!(reply.accepted_at, Some(t0() + secs(30)));
    assert!(!reply.escalated);
    assert_eq!(w.vol("a").busy_alert, Some(a.clone()));
    let ev = w.events(&a).pop().unwrap();
    assert_eq!(ev.kind, TimelineKind::Assigned);
    assert_eq!(ev.by.as_deref(), Some("operator"));
    assert_eq!(ev.volunteer_id, Some(vid("a")));
    assert_eq!(ev.distance_m, Some(8000));
    assert_eq!(ev.eta_s, Some(5714));
    let msgs = w.phone("a");
    assert_eq!(msgs.len(), 1);
    let PhoneMessage::Assigned {
        alert_id,
        distance_m,
        eta_s,
        senior: card,
        ..
    } = &msgs[0]
    else {
        panic!("{msgs:?}")
    };
    assert_eq!(
        (alert_id, *distance_m, *eta_s),
        (&a, Some(8000), Some(5714))
    );
    assert_eq!(card, &senior("band-1"));
    let notice = &w.band("band-1")[0];
    assert_eq!(notice.state, "accepted");
    assert_eq!(notice.volunteer_name.as_deref(), Some("Volunteer a"));
    assert_eq!(notice.eta_s, Some(5714));
}

#[test]
fn a_busy_volunteer_cannot_be_assigned() {
    let (mut w, first) = accepted();
    let second = w.press("band-2");
    assert_eq!(
        w.assign(&second, "a").unwrap_err(),
        DispatchError::VolunteerBusy(vid("a"))
    );
    assert_eq!(w.vol("a").busy_alert, Some(first));
}

#[test]
fn an_unknown_volunteer_cannot_be_assigned() {
    let mut w = World::new();
    let a = w.press("band-1");
    assert_eq!(
        w.assign(&a, "ghost").unwrap_err(),
        DispatchError::UnknownVolunteer(vid("ghost"))
    );
}

#[test]
fn assigning_the_volunteer_already_assigned_changes_nothing() {
    let (mut w, a) = accepted();
    let before = w.alert(&a).clone();
    let reply = alert_of(w.assign(&a, "a").unwrap());
    assert!(w.fx.is_empty());
    assert_eq!(reply, before);
}

#[test]
fn an_alert_on_scene_cannot_be_assigned() {
    let (mut w, a) = accepted();
    w.arrive(&a, "a").unwrap();
    let e = w.assign(&a, "b").unwrap_err();
    assert_eq!(
        e,
        DispatchError::WrongState {
            alert_id: a,
            state: AlertState::OnScene,
            action: "assign"
        }
    );
}

#[test]
fn assigning_withdraws_the_pending_offers_as_assigned() {
    let mut w = World::with(with_fanout(2));
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    w.volunteer_at("c", 300.0);
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["a", "b"]);
    w.assign(&a, "c").unwrap();
    let mut withdrawn = w.withdrawals();
    withdrawn.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        withdrawn,
        [
            ("a".to_string(), a.clone(), WithdrawReason::Assigned),
            ("b".to_string(), a.clone(), WithdrawReason::Assigned),
        ]
    );
    assert_eq!(w.offer_row(&a, "a").outcome, Some(OfferOutcome::Withdrawn));
    assert!(
        w.events(&a)
            .iter()
            .any(|e| e.kind == TimelineKind::OfferWithdrawn
                && e.reason.as_deref() == Some("assigned"))
    );
    assert_eq!(w.alert(&a).volunteer_id, Some(vid("c")));
    // Their offers withdrawn, they cannot accept any more.
    assert_eq!(w.accept(&a, "a").unwrap_err(), DispatchError::OfferGone(a));
}

#[test]
fn volunteers_whose_offers_were_withdrawn_by_an_assignment_get_waiting_alerts() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("c", 4000.0);
    let first = w.press("band-1");
    assert_eq!(w.holders(&first), ["a"]);
    let second = w.press("band-2");
    assert_eq!(w.holders(&second), ["c"]);
    let third = w.press("band-3");
    assert!(w.row(&third).escalated);
    w.register("d");
    w.assign(&first, "d").unwrap();
    assert_eq!(w.holders(&third), ["a"]);
}

#[test]
fn assigning_the_holder_of_this_alerts_offer_closes_it_as_accepted() {
    let mut w = World::with(with_fanout(2));
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.assign(&a, "b").unwrap();
    assert_eq!(w.offer_row(&a, "b").outcome, Some(OfferOutcome::Accepted));
    assert_eq!(
        w.withdrawals(),
        [("a".to_string(), a.clone(), WithdrawReason::Assigned)]
    );
    assert!(
        w.phone("b")
            .iter()
            .any(|m| matches!(m, PhoneMessage::Assigned { .. }))
    );
    assert_eq!(w.vol("b").busy_alert, Some(a));
}

#[test]
fn assigning_a_volunteer_holding_another_alerts_offer_moves_that_alert_on() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let first = w.press("band-1");
    assert_eq!(w.holders(&first), ["a"]);
    let second = w.press("band-2");
    assert_eq!(w.holders(&second), ["b"]);
    w.advance(3);
    w.assign(&second, "a").unwrap();
    assert_eq!(
        w.withdrawals(),
        [
            ("a".to_string(), first.clone(), WithdrawReason::Assigned),
            ("b".to_string(), second.clone(), WithdrawReason::Assigned),
        ]
    );
    // The first alert, its holder gone, goes at once to "b", freed in turn.
    assert_eq!(w.holders(&first), ["b"]);
    assert_eq!(w.alert(&first).offers[0].offered_at, t0() + secs(3));
    // Being taken away is not declining: "a" could be offered it again.
    assert!(!w.d.alerts[&first].excluded.contains(&vid("a")));
}

#[test]
fn assigning_a_volunteer_holding_another_alerts_offer_escalates_it_if_nobody_is_left() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    let second = w.press("band-2");
    w.assign(&second, "a").unwrap();
    assert!(w.row(&first).escalated);
    assert_eq!(w.state(&first), AlertState::Open);
    assert!(w.kinds(&first).contains(&TimelineKind::Escalated));
}

#[test]
fn reassigning_an_accepted_alert_releases_the_first_volunteer() {
    let (mut w, a) = accepted();
    let waiting = w.press_at("band-2", north(50.0));
    // "b" holds the waiting alert's offer; assign "c" instead of "a".
    w.volunteer_at("c", 8000.0);
    w.advance(20);
    w.assign(&a, "c").unwrap();
    assert_eq!(w.alert(&a).volunteer_id, Some(vid("c")));
    assert_eq!(w.vol("c").busy_alert, Some(a.clone()));
    assert!(w.vol("a").busy_alert.is_none());
    assert!(
        w.withdrawals()
            .contains(&("a".to_string(), a.clone(), WithdrawReason::Assigned))
    );
    assert_eq!(
        w.band("band-1")[0].volunteer_name.as_deref(),
        Some("Volunteer c")
    );
    // The response time stays that of the first accept.
    assert_eq!(w.alert(&a).accepted_at, Some(t0() + secs(10)));
    // "a", free again, is offered what is waiting if there is room.
    assert_eq!(w.holders(&waiting), ["b"]);
    w.decline(&waiting, "b").unwrap();
    assert_eq!(w.holders(&waiting), ["a"]);
}

#[test]
fn a_released_volunteer_gets_a_waiting_alert_at_once() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let first = w.press("band-1");
    w.accept(&first, "a").unwrap();
    let waiting = w.press("band-2");
    w.register("z");
    w.assign(&first, "z").unwrap();
    assert_eq!(w.holders(&waiting), ["a"]);
}

#[test]
fn an_off_duty_volunteer_can_still_be_assigned_by_hand() {
    // What the code does: an operator's decision is not checked against duty.
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.duty("a", false).unwrap();
    let a = w.press("band-1");
    w.assign(&a, "a").unwrap();
    assert_eq!(w.state(&a), AlertState::Accepted);
}

#[test]
fn a_volunteer_with_no_location_is_assigned_without_distance() {
    let mut w = World::new();
    w.register("a");
    let a = w.press("band-1");
    w.assign(&a, "a").unwrap();
    let ev = w.events(&a).pop().unwrap();
    assert_eq!((ev.distance_m, ev.eta_s), (None, None));
}

#[test]
fn an_assigned_volunteer_arrives_and_resolves_like_one_who_accepted() {
    let mut w = World::new();
    w.register("a");
    let a = w.press("band-1");
    w.assign(&a, "a").unwrap();
    w.arrive(&a, "a").unwrap();
    w.resolve(&a, Actor::Volunteer(vid("a"))).unwrap();
    assert_eq!(w.state(&a), AlertState::Resolved);
}

#[test]
fn an_assignment_before_the_response_deadline_prevents_the_breach() {
    let mut w = World::new();
    w.register("a");
    let a = w.press("band-1");
    w.advance(100);
    w.assign(&a, "a").unwrap();
    w.advance(500);
    assert!(!w.alert(&a).response_breached);
    assert!(w.alert(&a).arrival_breached);
}

// ----- restore: a restart carries on from the store -------------------------------

/// The live state of two dispatchers is the same (timers aside).
fn assert_same_state(a: &Dispatcher, b: &Dispatcher) {
    let mut ids: Vec<&AlertId> = a.alerts.keys().collect();
    ids.sort();
    let mut ids_b: Vec<&AlertId> = b.alerts.keys().collect();
    ids_b.sort();
    assert_eq!(ids, ids_b);
    for id in ids {
        let (x, y) = (&a.alerts[id], &b.alerts[id]);
        assert_eq!(x.alert, y.alert);
        assert_eq!(x.senior, y.senior);
        assert_eq!(x.events, y.events);
        assert_eq!(x.excluded, y.excluded);
        assert_eq!(x.offered, y.offered);
        assert_eq!(a.waiting.contains(id), b.waiting.contains(id));
    }
    assert_eq!(a.volunteers, b.volunteers);
    for v in a.volunteers.keys() {
        assert_eq!(a.available.contains(v), b.available.contains(v), "{v}");
    }
    assert_eq!(a.by_device, b.by_device);
}

/// Alerts in every state, with exclusions, joins and a busy volunteer.
fn busy_world() -> (World, [AlertId; 4]) {
    let mut w = World::with(with_fanout(2));
    for (v, m) in [("a", 100.0), ("b", 200.0), ("c", 300.0)] {
        w.volunteer_at(v, m);
    }
    w.register("off");
    let accepted = w.press("band-1");
    w.decline(&accepted, "a").unwrap();
    w.accept(&accepted, "b").unwrap();
    let offered = w.press("band-2");
    let again = w.press_cmd("band-2", PressKind::Fall);
    w.send(again);
    w.advance(5);
    let escalated = w.press("band-3");
    let far = w.press_at("band-4", east(30.0));
    (w, [accepted, offered, escalated, far])
}

#[test]
fn a_restart_rebuilds_the_same_state_from_the_store() {
    let (w, _) = busy_world();
    let snapshot = w.store_snapshot();
    let restored = Dispatcher::restore(w.d.rules().clone(), snapshot);
    assert_same_state(&w.d, &restored);
}

#[test]
fn a_restarted_dispatcher_asks_for_a_tick_at_once() {
    let (mut w, [_, offered, ..]) = busy_world();
    w.restart();
    assert_eq!(w.d.next_deadline(), Some(Timestamp::MIN_UTC));
    w.tick();
    assert_eq!(
        w.d.next_deadline(),
        Some(w.alert(&offered).offers[0].expires_at)
    );
}

#[test]
fn a_restart_at_a_quiet_moment_changes_nothing() {
    let (mut w, _) = busy_world();
    w.restart();
    w.tick();
    assert!(w.fx.timeline.is_empty(), "{:?}", w.fx.timeline);
    assert!(w.fx.outgoing.is_empty(), "{:?}", w.fx.outgoing);
    assert!(w.fx.offers.is_empty());
}

#[test]
fn a_pending_offer_expires_on_time_after_a_restart() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.advance(10);
    w.restart();
    w.tick();
    w.advance_to(t0() + secs(45) - ms(1));
    assert_eq!(w.holders(&a), ["a"]);
    w.advance_ms(1);
    assert_eq!(w.holders(&a), ["b"]);
    assert_eq!(
        w.withdrawals(),
        [("a".to_string(), a.clone(), WithdrawReason::Expired)]
    );
}

#[test]
fn an_offer_that_expired_while_down_expires_at_the_first_tick() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    w.restart();
    w.now = t0() + secs(100);
    w.tick();
    assert_eq!(w.holders(&a), ["b"]);
    assert_eq!(w.alert(&a).offers[0].expires_at, t0() + secs(145));
    assert_eq!(w.offer_row(&a, "a").outcome, Some(OfferOutcome::Expired));
    // Not offered to "a" again.
    assert!(w.d.alerts[&a].excluded.contains(&vid("a")));
}

#[test]
fn deadlines_carry_on_after_a_restart() {
    let mut w = World::new();
    let a = w.press("band-1");
    w.advance(60);
    w.restart();
    w.tick();
    w.advance_to(t0() + secs(180) - ms(1));
    assert!(!w.alert(&a).response_breached);
    w.advance_ms(1);
    assert_eq!(w.kinds(&a), [TimelineKind::ResponseBreached]);
}

#[test]
fn deadlines_passed_while_down_fire_at_the_first_tick_once() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.accept(&a, "a").unwrap();
    let b = w.press("band-2");
    w.restart();
    w.now = t0() + secs(700);
    w.tick();
    assert_eq!(w.kinds(&a), [TimelineKind::ArrivalBreached]);
    assert_eq!(
        w.kinds(&b),
        [
            TimelineKind::ResponseBreached,
            TimelineKind::ArrivalBreached
        ]
    );
    w.advance(1);
    assert!(w.fx.is_empty());
}

#[test]
fn breaches_already_recorded_do_not_fire_again_after_a_restart() {
    let mut w = World::new();
    let a = w.press("band-1");
    w.advance(700);
    assert!(w.alert(&a).response_breached && w.alert(&a).arrival_breached);
    w.restart();
    assert!(w.d.timers.is_empty());
    w.advance(1);
    assert!(w.fx.timeline.is_empty());
}

#[test]
fn an_escalated_alert_is_offered_at_the_first_tick_if_someone_is_free() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.duty("a", false).unwrap();
    let a = w.press("band-1");
    assert!(w.row(&a).escalated);
    // While the service was down, "a" came on duty (another instance wrote it).
    w.vol_rows.get_mut(&vid("a")).unwrap().on_duty = true;
    w.restart();
    assert!(
        w.alert(&a).offers.is_empty(),
        "nothing is offered before the tick"
    );
    w.tick();
    assert_eq!(w.holders(&a), ["a"]);
    assert!(!w.row(&a).escalated);
    assert_eq!(w.offers_sent(), [("a".to_string(), a)]);
}

#[test]
fn a_restart_with_a_wider_max_distance_offers_what_is_now_in_reach() {
    let mut w = World::new();
    w.volunteer_at("a", 7000.0);
    let a = w.press("band-1");
    assert!(w.row(&a).escalated);
    w.restart_with(Rules {
        max_offer_distance: 10_000.0,
        ..Rules::default()
    });
    w.tick();
    assert_eq!(w.holders(&a), ["a"]);
}

#[test]
fn the_first_tick_after_a_restart_offers_the_oldest_alert_first() {
    let mut w = World::new();
    let older = w.press_at("band-1", north(3000.0));
    w.advance(1);
    let newer = w.press("band-2");
    w.volunteer_at("a", 100.0);
    // "a" went straight to the older alert.
    assert_eq!(w.holders(&older), ["a"]);
    w.duty("a", false).unwrap();
    assert!(w.row(&older).escalated);
    w.vol_rows.get_mut(&vid("a")).unwrap().on_duty = true;
    w.restart();
    w.tick();
    assert_eq!(w.holders(&older), ["a"]);
    assert!(w.row(&newer).escalated);
}

#[test]
fn a_busy_volunteer_stays_busy_after_a_restart() {
    let (mut w, a) = accepted();
    w.restart();
    w.tick();
    assert_eq!(w.vol("a").busy_alert, Some(a.clone()));
    let b = w.press("band-2");
    assert_eq!(w.holders(&b), ["b"]);
    w.arrive(&a, "a").unwrap();
    w.resolve(&a, Actor::Volunteer(vid("a"))).unwrap();
    assert!(w.vol("a").busy_alert.is_none());
}

#[test]
fn who_declined_stays_excluded_after_a_restart() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.decline(&a, "a").unwrap();
    w.restart();
    w.tick();
    w.locate("a", north(10.0)).unwrap();
    assert!(w.alert(&a).offers.is_empty());
    assert_eq!(w.accept(&a, "a").unwrap_err(), DispatchError::OfferGone(a));
}

#[test]
fn a_pending_offer_can_be_accepted_after_a_restart() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    w.restart();
    w.tick();
    w.advance(5);
    w.accept(&a, "a").unwrap();
    assert_eq!(w.state(&a), AlertState::Accepted);
}

#[test]
fn redeliveries_are_still_recognised_after_a_restart() {
    let mut w = World::new();
    let p = w.press_cmd("band-1", PressKind::Sos);
    let (_, id) = w.send(p.clone());
    w.restart();
    w.tick();
    assert_eq!(w.send(p), (PressOutcome::Redelivered, id));
}

#[test]
fn closed_alerts_in_a_snapshot_are_ignored() {
    let (w, a) = accepted();
    let mut snapshot = w.store_snapshot();
    let mut closed = snapshot.alerts[0].clone();
    closed.alert.id = aid("old");
    closed.alert.device_id = did("band-9");
    closed.alert.state = AlertState::Resolved;
    snapshot.alerts.push(closed);
    let d = Dispatcher::restore(Rules::default(), snapshot);
    assert!(d.alert(&aid("old")).is_none());
    assert!(d.active_alert_of(&did("band-9")).is_none());
    assert!(d.alert(&a).is_some());
}

#[test]
fn a_stale_pending_offer_in_a_volunteer_row_is_dropped() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let mut snapshot = w.store_snapshot();
    snapshot.volunteers[0].pending_offer = Some(aid("long-gone"));
    w.d = Dispatcher::restore(Rules::default(), snapshot);
    w.tick();
    assert!(w.vol("a").pending_offer.is_none());
    let a = w.press("band-1");
    assert_eq!(w.holders(&a), ["a"]);
}

#[test]
fn the_store_view_is_enough_to_restart_at_any_moment() {
    let (mut w, [accepted, offered, escalated, far]) = busy_world();
    for step in 0..12 {
        match step {
            0 => {
                assert_eq!(w.holders(&offered), ["a", "c"]);
                w.accept(&offered, "c").unwrap();
            }
            6 => {
                w.arrive(&accepted, "b").unwrap();
            }
            9 => {
                w.cancel(&far).unwrap();
            }
            _ => w.advance(20),
        }
        let before = w.store_snapshot();
        let restored = Dispatcher::restore(w.d.rules().clone(), before);
        assert_same_state(&w.d, &restored);
    }
    assert!(w.row(&escalated).response_breached);
}

// ----- effects -----------------------------------------------------------------------

#[test]
fn a_batch_sharing_one_effects_holds_one_entry_per_alert_the_latest() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let mut fx = Effects::default();
    let p = w.press_cmd("band-1", PressKind::Sos);
    let a = p.new_alert_id.clone();
    w.seniors.insert(a.clone(), p.senior.clone());
    let now = w.now;
    w.d.handle(now, Command::Press(p), &mut fx).unwrap();
    w.d.handle(
        now,
        Command::Accept {
            alert_id: a.clone(),
            volunteer_id: vid("a"),
        },
        &mut fx,
    )
    .unwrap();
    w.d.handle(
        now,
        Command::Arrive {
            alert_id: a.clone(),
            volunteer_id: vid("a"),
        },
        &mut fx,
    )
    .unwrap();
    assert_eq!(fx.alerts.len(), 1);
    assert_eq!(fx.alerts[0].state, AlertState::OnScene);
    assert_eq!(fx.volunteers.len(), 1);
    assert_eq!(fx.volunteers[0].busy_alert, Some(a.clone()));
    let kinds: Vec<TimelineKind> = fx.timeline.iter().map(|(_, e)| e.kind).collect();
    assert_eq!(
        kinds,
        [
            TimelineKind::Pressed,
            TimelineKind::Offered,
            TimelineKind::Accepted,
            TimelineKind::OnScene
        ]
    );
    // Offer rows: inserted pending, then updated with the outcome.
    assert_eq!(fx.offers.len(), 2);
    assert_eq!(fx.offers[0].outcome, None);
    assert_eq!(fx.offers[1].outcome, Some(OfferOutcome::Accepted));
    w.absorb(fx);
    w.check();
}

#[test]
fn a_new_alerts_row_comes_with_its_first_timeline_event() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    assert_eq!(w.fx.alerts.len(), 1);
    assert_eq!(w.fx.alerts[0].id, a);
    // The row is the alert as it stands after the press: already offered.
    assert_eq!(w.fx.alerts[0].state, AlertState::Offered);
    assert_eq!(w.fx.alerts[0].offers.len(), 1);
    assert!(w.fx.timeline.iter().all(|(x, _)| *x == a));
}

#[test]
fn an_offer_row_is_written_pending_and_then_with_its_outcome() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    let pending = w.fx.offers.clone();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].outcome,
            pending[0].closed_at,
            pending[0].expires_at
        ),
        (None, None, t0() + secs(45))
    );
    w.advance(9);
    w.decline(&a, "a").unwrap();
    assert_eq!(w.fx.offers.len(), 1);
    let closed = &w.fx.offers[0];
    assert_eq!(closed.outcome, Some(OfferOutcome::Declined));
    assert_eq!(closed.closed_at, Some(t0() + secs(9)));
    assert_eq!(
        (closed.offered_at, closed.distance_m, closed.eta_s),
        (
            pending[0].offered_at,
            pending[0].distance_m,
            pending[0].eta_s
        )
    );
}

#[test]
fn the_band_hears_received_before_offered() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.press("band-1");
    assert_eq!(w.band_states("band-1"), ["received", "offered"]);
}

#[test]
fn a_redelivery_publishes_but_writes_nothing() {
    let mut w = World::new();
    let p = w.press_cmd("band-1", PressKind::Sos);
    w.send(p.clone());
    w.send(p);
    assert!(!w.fx.has_writes());
    assert!(!w.fx.is_empty());
}

#[test]
fn a_refused_command_writes_and_publishes_nothing() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    w.volunteer_at("b", 200.0);
    let a = w.press("band-1");
    let mut fx = Effects::default();
    let now = w.now;
    let r = w.d.handle(
        now,
        Command::Accept {
            alert_id: a.clone(),
            volunteer_id: vid("b"),
        },
        &mut fx,
    );
    assert_eq!(r.unwrap_err(), DispatchError::NotOffered(a));
    assert!(fx.is_empty() && !fx.has_writes());
}

#[test]
fn every_state_change_is_told_to_the_band() {
    let mut w = World::new();
    w.volunteer_at("a", 100.0);
    let a = w.press("band-1");
    let mut states = w.band_states("band-1");
    w.accept(&a, "a").unwrap();
    states.extend(w.band_states("band-1"));
    w.arrive(&a, "a").unwrap();
    states.extend(w.band_states("band-1"));
    w.resolve(&a, Actor::Volunteer(vid("a"))).unwrap();
    states.extend(w.band_states("band-1"));
    assert_eq!(
        states,
        ["received", "offered", "accepted", "on_scene", "resolved"]
    );
}

// ----- property: random days never break the rules ---------------------------------

/// A small deterministic generator (no dependency, same walk every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// A position within about `km` kilometres of the base.
    fn near_base(&mut self, km: f64) -> Position {
        let deg = km * 1000.0 / M_PER_DEG;
        let mut unit = || (self.next() % 2001) as f64 / 1000.0 - 1.0;
        pos(BASE_LAT + unit() * deg, BASE_LON + unit() * deg)
    }
}

#[derive(Debug, Default)]
struct Tally {
    ok: HashMap<&'static str, usize>,
    refused: usize,
    restarts: usize,
}

/// Plays `steps` random commands; `World` checks every rule after each.
fn random_day(seed: u64, fanout: usize, steps: usize) -> (World, Tally) {
    let mut w = World::with(Rules {
        offer_fanout: fanout,
        offer_timeout: Duration::from_secs(30),
        ..Rules::default()
    });
    let mut rng = Lcg(seed);
    let mut tally = Tally::default();
    let volunteers: Vec<String> = (0..7).map(|i| format!("v{i}")).collect();
    let devices: Vec<String> = (0..5).map(|i| format!("band-{i}")).collect();
    for v in &volunteers {
        let p = rng.near_base(6.0);
        w.volunteer(v, p);
    }
    let mut presses: Vec<Press> = Vec::new();
    for _ in 0..steps {
        let mut alerts: Vec<AlertId> = w.d.active_alerts().map(|a| a.id.clone()).collect();
        alerts.sort();
        if alerts.is_empty() || rng.chance(5) {
            // Sometimes a closed or unknown alert.
            let mut all: Vec<AlertId> = w.rows.keys().cloned().collect();
            all.sort();
            all.push(aid("unknown"));
            alerts = all;
        }
        let alert = alerts[rng.below(alerts.len())].clone();
        // A volunteer: often one the alert concerns, sometimes anyone.
        let concerned: Vec<String> =
            w.d.alert(&alert)
                .map(|a| {
                    a.offers
                        .iter()
                        .map(|o| o.volunteer_id.to_string())
                        .chain(a.volunteer_id.iter().map(|v| v.to_string()))
                        .collect()
                })
                .unwrap_or_default();
        let v = if !concerned.is_empty() && rng.chance(70) {
            concerned[rng.below(concerned.len())].clone()
        } else {
            volunteers[rng.below(volunteers.len())].clone()
        };
        let device = devices[rng.below(devices.len())].clone();
        let (name, result) = match rng.below(16) {
            0..=2 => {
                let kind = if rng.chance(80) {
                    PressKind::Sos
                } else {
                    PressKind::Fall
                };
                let mut p = w.press_cmd(&device, kind);
                p.position = if rng.chance(85) {
                    Some(rng.near_base(4.0))
                } else {
                    None
                };
                p.home = if rng.chance(50) {
                    Some(rng.near_base(4.0))
                } else {
                    None
                };
                if rng.chance(30) {
                    p.device_ts = Some(w.now - secs(rng.below(900) as i64));
                }
                presses.push(p.clone());
                w.send(p);
                ("press", Ok(Reply::Done))
            }
            3 => {
                let p = w.press_cmd(&device, PressKind::Cancel);
                w.send(p);
                ("band cancel", Ok(Reply::Done))
            }
            4 if !presses.is_empty() => {
                let mut p = presses[rng.below(presses.len())].clone();
                w.seq += 1;
                p.new_alert_id = aid(&format!("alert-{:03}", w.seq));
                w.send(p);
                ("redelivery", Ok(Reply::Done))
            }
            5 | 6 => ("accept", w.accept(&alert, &v)),
            7 => ("decline", w.decline(&alert, &v)),
            8 => ("arrive", w.arrive(&alert, &v)),
            9 => {
                let by = if rng.chance(50) {
                    Actor::Operator
                } else {
                    Actor::Volunteer(vid(&v))
                };
                ("resolve", w.resolve(&alert, by))
            }
            10 => ("cancel", w.cancel(&alert)),
            11 => ("assign", w.assign(&alert, &v)),
            12 => {
                let on = rng.chance(60);
                ("duty", w.duty(&v, on))
            }
            13 => {
                let p = rng.near_base(7.0);
                ("location", w.locate(&v, p))
            }
            14 if rng.chance(40) => {
                // Whatever is due fires first: then nothing is left to do.
                w.tick();
                let restored = Dispatcher::restore(w.d.rules().clone(), w.store_snapshot());
                assert_same_state(&w.d, &restored);
                w.restart();
                w.tick();
                assert!(
                    w.fx.timeline.is_empty() && w.fx.outgoing.is_empty(),
                    "a restart changed things: {:?} {:?}",
                    w.fx.timeline,
                    w.fx.outgoing
                );
                tally.restarts += 1;
                ("restart", Ok(Reply::Done))
            }
            _ => {
                let s = [1, 5, 15, 30, 45, 120][rng.below(6)];
                w.advance(s);
                ("advance", Ok(Reply::Done))
            }
        };
        match result {
            Ok(_) => *tally.ok.entry(name).or_default() += 1,
            Err(_) => tally.refused += 1,
        }
    }
    (w, tally)
}

#[test]
fn random_days_never_break_the_rules() {
    for (seed, fanout) in [(1, 1), (2, 1), (3, 2), (4, 3), (5, 1), (6, 2)] {
        let (w, tally) = random_day(seed, fanout, 600);
        let all_offers = w.offer_rows.len();
        let outcome = |o| w.offer_rows.iter().filter(|r| r.outcome == Some(o)).count();
        // The walk went everywhere worth going.
        assert!(
            tally.ok.get("accept").copied().unwrap_or(0) > 5,
            "{seed}: {tally:?}"
        );
        assert!(
            tally.ok.get("resolve").copied().unwrap_or(0) > 0,
            "{seed}: {tally:?}"
        );
        assert!(tally.refused > 10, "{seed}: {tally:?}");
        assert!(tally.restarts > 0, "{seed}: {tally:?}");
        assert!(
            outcome(OfferOutcome::Expired) > 0,
            "{seed}: {all_offers} offers"
        );
        assert!(outcome(OfferOutcome::Declined) > 0, "{seed}");
        assert!(outcome(OfferOutcome::Withdrawn) > 0, "{seed}");
        let breaches = w
            .timeline
            .iter()
            .filter(|(_, e)| e.kind == TimelineKind::ResponseBreached)
            .count();
        assert!(breaches > 0, "{seed}");
    }
}

#[test]
fn a_volunteer_never_holds_two_offers_nor_two_alerts_over_a_random_day() {
    // Replays the timeline the store got: between an offer and its end a
    // volunteer is offered nothing else, and nobody is sent to two seniors.
    let (w, _) = random_day(42, 3, 800);
    let mut holding: HashMap<VolunteerId, AlertId> = HashMap::new();
    let mut busy: HashMap<VolunteerId, AlertId> = HashMap::new();
    let mut assigned: HashMap<AlertId, VolunteerId> = HashMap::new();
    let mut offers = 0;
    for (a, e) in &w.timeline {
        let v = e.volunteer_id.clone();
        match e.kind {
            TimelineKind::Offered => {
                let v = v.unwrap();
                assert!(!busy.contains_key(&v), "{v} offered {a} while busy");
                let held = holding.insert(v.clone(), a.clone());
                assert!(held.is_none(), "{v} offered {a} while holding {held:?}");
                offers += 1;
            }
            TimelineKind::Declined | TimelineKind::OfferExpired | TimelineKind::OfferWithdrawn => {
                let v = v.unwrap();
                assert_eq!(holding.remove(&v).as_ref(), Some(a), "{e:?}");
            }
            TimelineKind::Accepted | TimelineKind::Assigned => {
                let v = v.unwrap();
                if holding.get(&v) == Some(a) {
                    holding.remove(&v);
                }
                assert!(!holding.contains_key(&v), "{v} busy while holding an offer");
                if let Some(previous) = assigned.insert(a.clone(), v.clone()) {
                    busy.remove(&previous);
                }
                let other = busy.insert(v.clone(), a.clone());
                assert!(other.is_none(), "{v} sent to {a} while busy with {other:?}");
            }
            TimelineKind::Resolved | TimelineKind::Cancelled => {
                if let Some(v) = assigned.remove(a) {
                    busy.remove(&v);
                }
            }
            _ => {}
        }
    }
    assert!(offers > 50, "{offers}");
    // The replay ends where the dispatcher is.
    for (v, vol) in &w.d.volunteers {
        assert_eq!(vol.pending_offer.as_ref(), holding.get(v), "{v}");
        assert_eq!(vol.busy_alert.as_ref(), busy.get(v), "{v}");
    }
}

#[test]
fn random_days_are_deterministic() {
    let (a, _) = random_day(7, 2, 300);
    let (b, _) = random_day(7, 2, 300);
    assert_eq!(a.timeline, b.timeline);
    assert_eq!(a.published, b.published);
}

// ----- milestones (for metrics) -----------------------------------------------

#[test]
fn the_first_offer_and_the_first_accept_are_milestones_once() {
    let mut w = World::new();
    let a = w.press("band-1");
    assert!(w.fx.milestones.is_empty(), "nobody to offer it to yet");
    w.advance(5);
    w.volunteer_at("v1", 100.0);
    assert_eq!(
        w.fx.milestones,
        [Milestone {
            alert_id: a.clone(),
            kind: MilestoneKind::FirstOffer,
            since_press: secs(5),
        }]
    );
    w.advance(3);
    w.volunteer_at("v2", 200.0);
    w.decline(&a, "v1").unwrap();
    assert_eq!(w.holders(&a), ["v2"]);
    assert!(w.fx.milestones.is_empty(), "a second offer is no milestone");
    w.advance(2);
    w.accept(&a, "v2").unwrap();
    assert_eq!(
        w.fx.milestones,
        [Milestone {
            alert_id: a.clone(),
            kind: MilestoneKind::FirstAccept,
            since_press: secs(10),
        }]
    );
    w.advance(1);
    w.assign(&a, "v1").unwrap();
    assert!(
        w.fx.milestones.is_empty(),
        "a reassignment keeps the first accept"
    );
}

#[test]
fn a_first_assignment_is_the_first_accept() {
    let mut w = World::new();
    w.register("v1");
    let a = w.press("band-1");
    w.advance(7);
    w.assign(&a, "v1").unwrap();
    assert_eq!(
        w.fx.milestones,
        [Milestone {
            alert_id: a,
            kind: MilestoneKind::FirstAccept,
            since_press: secs(7),
        }]
    );
}

// ----- faults: downtime, re-publication, one batch ------------------------

#[test]
fn a_breach_noticed_after_downtime_is_stamped_at_its_deadline() {
    let mut w = World::new();
    let a = w.press("band-1");
    // The service was down from 10 s to 15 min: the first tick after it
    // finds both targets passed.
    w.advance(10);
    w.restart();
    w.advance_to(t0() + secs(900));
    let events = w.events(&a);
    let at = |k: TimelineKind| events.iter().find(|e| e.kind == k).map(|e| e.at);
    assert_eq!(at(TimelineKind::ResponseBreached), Some(t0() + secs(180)));
    assert_eq!(at(TimelineKind::ArrivalBreached), Some(t0() + secs(600)));
    assert!(w.alert(&a).response_breached && w.alert(&a).arrival_breached);
}

#[test]
fn a_breach_caught_up_by_a_late_accept_is_stamped_at_its_deadline() {
    let mut w = World::with(Rules {
        offer_timeout: Duration::from_secs(3600),
        ..Rules::default()
    });
    w.volunteer_at("v1", 100.0);
    let a = w.press("band-1");
    // The accept reaches the dispatcher before the tick for the deadline.
    w.now = t0() + secs(200);
    w.accept(&a, "v1").unwrap();
    let breach = w
        .events(&a)
        .into_iter()
        .find(|e| e.kind == TimelineKind::ResponseBreached)
        .expect("the late accept records the breach");
    assert_eq!(breach.at, t0() + secs(180));
}

type ByRecipient<M> = Vec<(String, M)>;

/// What `latest_messages` says for each band and phone.
fn latest(w: &World) -> (ByRecipient<BandNotice>, ByRecipient<PhoneMessage>) {
    let mut bands = Vec::new();
    let mut phones = Vec::new();
    for m in w.d.latest_messages() {
        match m {
            Outgoing::Band(d, n) => bands.push((d.to_string(), n)),
            Outgoing::Phone(v, p) => phones.push((v.to_string(), p)),
        }
    }
    (bands, phones)
}

#[test]
fn the_latest_messages_follow_an_alert_through_its_life() {
    let mut w = World::new();
    assert!(w.d.latest_messages().is_empty());
    // Nobody to offer it to: the band holds `received` for its event.
    let a = w.press("band-1");
    let (bands, phones) = latest(&w);
    assert_eq!(bands.len(), 1);
    assert_eq!(bands[0].0, "band-1");
    assert_eq!(bands[0].1.state, "received");
    assert_eq!(bands[0].1.alert_id.as_ref(), Some(&a));
    assert_eq!(bands[0].1.event_id.as_ref(), Some(&w.alert(&a).event_id));
    assert!(phones.is_empty());

    // Offered: the band hears `offered`, the phone holds the very offer it
    // was sent, with its original expiry.
    w.volunteer_at("v1", 140.0);
    let sent = w.phone("v1");
    assert!(matches!(sent.as_slice(), [PhoneMessage::Offer { .. }]));
    let (bands, phones) = latest(&w);
    assert_eq!(bands[0].1.state, "offered");
    assert_eq!(phones, vec![("v1".to_string(), sent[0].clone())]);

    // Accepted: the band hears who is coming and when; no offer is left.
    w.advance(20);
    w.accept(&a, "v1").unwrap();
    let (bands, phones) = latest(&w);
    assert_eq!(bands[0].1.state, "accepted");
    assert_eq!(bands[0].1.volunteer_name.as_deref(), Some("Volunteer v1"));
    assert_eq!(bands[0].1.eta_s, Some(100), "140 m at 1.4 m/s");
    assert!(phones.is_empty());

    w.arrive(&a, "v1").unwrap();
    let (bands, _) = latest(&w);
    assert_eq!(bands[0].1.state, "on_scene");
    assert_eq!(bands[0].1.eta_s, None);

    // Closed: nothing left to say.
    w.resolve(&a, Actor::Operator).unwrap();
    assert!(w.d.latest_messages().is_empty());
}

#[test]
fn the_latest_messages_survive_a_restart_unchanged() {
    let mut w = World::with(with_fanout(2));
    w.volunteer_at("v1", 100.0);
    w.volunteer_at("v2", 200.0);
    w.volunteer_at("v3", 300.0);
    let a = w.press("band-1");
    let b = w.press("band-2");
    w.advance(5);
    w.accept(&a, "v1").unwrap();
    let before = w.d.latest_messages();
    assert!(!before.is_empty());
    w.restart();
    assert_eq!(w.d.latest_messages(), before);
    // Every pending offer is there, and nothing else for a phone.
    let (_, phones) = latest(&w);
    let mut holders: Vec<_> = phones.iter().map(|(v, _)| v.clone()).collect();
    holders.sort();
    let mut expected = w.holders(&b);
    expected.sort();
    assert_eq!(holders, expected);
}

#[test]
fn a_batch_that_frees_and_claims_a_volunteer_says_whom_they_were_busy_with() {
    let mut w = World::new();
    w.volunteer_at("v1", 100.0);
    let a = w.press("band-1");
    w.accept(&a, "v1").unwrap();
    let b = w.press("band-2");
    assert_eq!(w.vol("v1").busy_alert.as_ref(), Some(&a));
    // Resolve A, then assign v1 to B, in one batch (one Effects).
    let mut fx = Effects::default();
    let now = w.now + secs(30);
    w.d.handle(
        now,
        Command::Resolve {
            alert_id: a.clone(),
            by: Actor::Operator,
            outcome: "helped".into(),
            note: None,
        },
        &mut fx,
    )
    .unwrap();
    w.d.handle(
        now,
        Command::Assign {
            alert_id: b.clone(),
            volunteer_id: vid("v1"),
        },
        &mut fx,
    )
    .unwrap();
    let v1 = fx.volunteers.iter().find(|v| v.id == vid("v1")).unwrap();
    assert_eq!(v1.busy_alert.as_ref(), Some(&b));
    // The store holds v1 busy with A: that is what the claim may replace.
    assert_eq!(fx.busy_before.get(&vid("v1")), Some(&Some(a)));
}

// ----- who an alert would be offered to ---------------------------------

#[test]
fn nearest_available_skips_whoever_could_not_be_offered_it() {
    let mut w = World::new();
    w.volunteer_at("off-duty", 10.0);
    w.duty("off-duty", false).unwrap();
    w.volunteer_at("busy", 20.0);
    w.volunteer_at("declined", 30.0);
    w.volunteer_at("stale", 40.0);
    w.volunteer_at("near", 50.0);
    w.volunteer_at("far", 5_100.0);
    // "busy" takes an alert far away (the nearest free volunteer there).
    let elsewhere = w.press_at("band-x", north(20.0));
    w.accept(&elsewhere, "busy").unwrap();
    // Twenty minutes on, all but "stale" tell where they are again.
    w.advance(20 * 60);
    for (v, m) in [("declined", 30.0), ("near", 50.0), ("far", 5_100.0)] {
        w.locate(v, north(m)).unwrap();
    }
    let excluded: HashSet<VolunteerId> = [vid("declined")].into();
    assert_eq!(
        w.d.nearest_available(w.now, base(), 5, &excluded),
        vec![vid("near")],
        "off duty, busy, declined, stale and out of reach are all left out"
    );
    assert_eq!(
        w.d.nearest_available(w.now, base(), 5, &HashSet::new()),
        vec![vid("declined"), vid("near")]
    );
    assert!(
        w.d.nearest_available(w.now, base(), 0, &excluded)
            .is_empty()
    );
}
