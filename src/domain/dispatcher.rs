//! The dispatcher: the rules that get a volunteer to an alert.
//!
//! It owns the live state of one shard (active alerts, volunteers, the
//! spatial indexes, the timers) and moves it in answer to [`Command`]s,
//! writing down in [`Effects`] what the shell must persist and publish.
//! It never awaits, never reads the clock (time is passed in) and never
//! touches a socket or a database: everything here is tested on a virtual
//! clock. A command that fails leaves the state untouched and adds no
//! effects.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::TimeDelta;

use super::alert::{
    Actor, Alert, AlertKind, AlertState, BandNotice, Offer, OfferOutcome, Outgoing, PhoneMessage,
    SeniorCard, TimelineEvent, TimelineKind, Timestamp, WithdrawReason,
};
use super::geo::Position;
use super::ids::{AlertId, DeviceId, EventId, VolunteerId};
use super::nearby::NearbyIndex;

/// The tunable rules of dispatch (contract section 4).
#[derive(Debug, Clone)]
pub struct Rules {
    pub offer_timeout: Duration,
    pub offer_fanout: usize,
    pub response_target: Duration,
    pub arrival_target: Duration,
    /// Metres per second.
    pub volunteer_speed: f64,
    pub volunteer_location_max_age: Duration,
    /// Metres.
    pub max_offer_distance: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            offer_timeout: Duration::from_secs(45),
            offer_fanout: 1,
            response_target: Duration::from_secs(180),
            arrival_target: Duration::from_secs(600),
            volunteer_speed: 1.4,
            volunteer_location_max_age: Duration::from_secs(15 * 60),
            max_offer_distance: 5000.0,
        }
    }
}

/// How far back and forward of its arrival a band's own clock is believed.
const DEVICE_TS_PAST: Duration = Duration::from_secs(600);
const DEVICE_TS_FUTURE: Duration = Duration::from_secs(5);

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// `t + d`, or the last representable instant when that is past it (a
/// setting of a thousand years must not panic the engine).
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add_signed(delta(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// `t - d`, or the first representable instant.
fn before(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_sub_signed(delta(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// What a band event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PressKind {
    Sos,
    Fall,
    Cancel,
}

/// A validated band event for a registered device.
#[derive(Debug, Clone)]
pub struct Press {
    pub device_id: DeviceId,
    pub event_id: EventId,
    pub kind: PressKind,
    /// The band's own clock, if it sent one.
    pub device_ts: Option<Timestamp>,
    /// Where the band says it is, if it knows.
    pub position: Option<Position>,
    /// The senior wearing the band.
    pub senior: SeniorCard,
    /// The senior's home, used when the band sends no position.
    pub home: Option<Position>,
    /// The id to give the alert if this press opens one (chosen by the
    /// shell, so that the dispatcher stays deterministic).
    pub new_alert_id: AlertId,
}

/// Everything the dispatcher can be asked to do.
#[derive(Debug, Clone)]
pub enum Command {
    Press(Press),
    Accept {
        alert_id: AlertId,
        volunteer_id: VolunteerId,
    },
    Decline {
        alert_id: AlertId,
        volunteer_id: VolunteerId,
    },
    Arrive {
        alert_id: AlertId,
        volunteer_id: VolunteerId,
    },
    Resolve {
        alert_id: AlertId,
        by: Actor,
        outcome: String,
        note: Option<String>,
    },
    Cancel {
        alert_id: AlertId,
        by: Actor,
        reason: Option<String>,
    },
    Assign {
        alert_id: AlertId,
        volunteer_id: VolunteerId,
    },
    SetDuty {
        volunteer_id: VolunteerId,
        on_duty: bool,
    },
    SetLocation {
        volunteer_id: VolunteerId,
        position: Position,
    },
    /// A volunteer was registered or renamed (the profile itself is written
    /// by the registry; the dispatcher needs the name and the id).
    RegisterVolunteer {
        volunteer_id: VolunteerId,
        name: String,
    },
    /// Time has passed: fire what is due.
    Tick,
}

/// What became of a band event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PressOutcome {
    /// A new alert.
    Opened,
    /// Another press joined the device's active alert.
    Joined,
    /// The same `(device, event)` again: nothing changed.
    Redelivered,
    /// The senior called the active alert off.
    Cancelled,
    /// A cancel with no active alert to call off.
    NothingToCancel,
}

/// The dispatcher's answer to a command that succeeded.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Press {
        outcome: PressOutcome,
        alert_id: Option<AlertId>,
    },
    Alert(Box<Alert>),
    Volunteer(Box<Volunteer>),
    Done,
}

/// Why a command was refused. The state is untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// Not an active alert of this shard (unknown, or already closed: the
    /// store can tell which).
    #[error("alert {0} is not active")]
    NotActive(AlertId),
    #[error("alert {0} was never offered to this volunteer")]
    NotOffered(AlertId),
    #[error("the offer of alert {0} is no longer open (expired, declined, withdrawn or taken)")]
    OfferGone(AlertId),
    #[error("alert {0} is not assigned to this volunteer")]
    NotAssigned(AlertId),
    #[error("alert {alert_id} is {state}: {action} is not possible")]
    WrongState {
        alert_id: AlertId,
        state: AlertState,
        action: &'static str,
    },
    #[error("unknown volunteer {0}")]
    UnknownVolunteer(VolunteerId),
    #[error("volunteer {0} is busy with another alert")]
    VolunteerBusy(VolunteerId),
}

/// A volunteer as the dispatcher sees one.
#[derive(Debug, Clone, PartialEq)]
pub struct Volunteer {
    pub id: VolunteerId,
    pub name: String,
    pub on_duty: bool,
    pub position: Option<Position>,
    pub location_at: Option<Timestamp>,
    /// The alert this volunteer accepted or was assigned, until it closes.
    pub busy_alert: Option<AlertId>,
    /// The alert this volunteer holds a pending offer for.
    pub pending_offer: Option<AlertId>,
}

impl Volunteer {
    pub fn new(id: VolunteerId, name: String) -> Self {
        Self {
            id,
            name,
            on_duty: false,
            position: None,
            location_at: None,
            busy_alert: None,
            pending_offer: None,
        }
    }

    /// Free to be offered an alert (location freshness aside).
    fn is_available(&self) -> bool {
        self.on_duty
            && self.busy_alert.is_none()
            && self.pending_offer.is_none()
            && self.position.is_some()
    }
}

/// One offer's row in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferRecord {
    pub alert_id: AlertId,
    pub volunteer_id: VolunteerId,
    pub offered_at: Timestamp,
    pub expires_at: Timestamp,
    pub distance_m: u32,
    pub eta_s: u32,
    /// `None` while pending.
    pub outcome: Option<OfferOutcome>,
    pub closed_at: Option<Timestamp>,
}

/// A band event that has been taken into account, for deduplication.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedEvent {
    pub device_id: DeviceId,
    pub event_id: EventId,
    pub alert_id: Option<AlertId>,
    pub at: Timestamp,
}

/// What the shell must write (in one transaction) and then publish.
/// Snapshots of the same alert or volunteer replace each other, so a batch
/// of commands can share one `Effects`.
#[derive(Debug, Default, Clone)]
pub struct Effects {
    /// Alerts as they now stand (insert or update), in order of first touch.
    pub alerts: Vec<Alert>,
    /// Timeline events to append, in order.
    pub timeline: Vec<(AlertId, TimelineEvent)>,
    /// Offer rows to insert or update, in order.
    pub offers: Vec<OfferRecord>,
    /// Volunteers' dispatch state as it now stands.
    pub volunteers: Vec<Volunteer>,
    /// For each volunteer this batch claimed or released, the alert they
    /// were busy with before it (what the store holds): the store's claim
    /// accepts that row as well, so a batch that frees a volunteer and
    /// claims them again (resolve A, assign to B) is not a conflict.
    pub busy_before: HashMap<VolunteerId, Option<AlertId>>,
    /// Band events to remember.
    pub ingested: Vec<IngestedEvent>,
    /// Messages to publish once all of the above is committed.
    pub outgoing: Vec<Outgoing>,
    /// Response milestones reached, for metrics only (nothing to write).
    pub milestones: Vec<Milestone>,
    /// Notifications to write with the rest (the dispatcher leaves this
    /// empty; the shell plans them from the effects before the commit).
    pub notifications: Vec<super::notice::Notification>,
    /// Where each alert and volunteer already sits in `alerts` and
    /// `volunteers`, so that a batch of hundreds touching them again does
    /// not search the lists each time.
    pub slots: Slots,
}

/// Positions in [`Effects::alerts`] and [`Effects::volunteers`], kept by the
/// dispatcher. A hint only: a slot that does not hold the id (lists built
/// by hand) is looked up again.
#[derive(Debug, Default, Clone)]
pub struct Slots {
    alerts: HashMap<AlertId, usize>,
    volunteers: HashMap<VolunteerId, usize>,
}

/// Replaces the item of `list` with `item`'s key, or appends it.
fn put_slot<T: Clone, K: Eq + std::hash::Hash + Clone>(
    list: &mut Vec<T>,
    slots: &mut HashMap<K, usize>,
    item: &T,
    key: impl Fn(&T) -> &K,
) {
    let at = slots
        .get(key(item))
        .copied()
        .filter(|&i| list.get(i).is_some_and(|x| key(x) == key(item)))
        .or_else(|| list.iter().position(|x| key(x) == key(item)));
    match at {
        Some(i) => list[i] = item.clone(),
        None => {
            slots.insert(key(item).clone(), list.len());
            list.push(item.clone());
        }
    }
}

/// A step of an alert's response, measured from its press, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Milestone {
    pub alert_id: AlertId,
    pub kind: MilestoneKind,
    /// From `pressed_at` to the milestone.
    pub since_press: TimeDelta,
}

/// Which step: only the first of each counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MilestoneKind {
    /// The first offer ever made for the alert.
    FirstOffer,
    /// The first accept or manual assignment (`accepted_at` is set).
    FirstAccept,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
            && self.timeline.is_empty()
            && self.offers.is_empty()
            && self.volunteers.is_empty()
            && self.ingested.is_empty()
            && self.outgoing.is_empty()
    }

    /// True when something must be written to the store.
    pub fn has_writes(&self) -> bool {
        !(self.alerts.is_empty()
            && self.timeline.is_empty()
            && self.offers.is_empty()
            && self.volunteers.is_empty()
            && self.ingested.is_empty()
            && self.notifications.is_empty())
    }

    fn put_alert(&mut self, alert: &Alert) {
        put_slot(&mut self.alerts, &mut self.slots.alerts, alert, |a| &a.id);
    }

    fn put_volunteer(&mut self, v: &Volunteer) {
        put_slot(&mut self.volunteers, &mut self.slots.volunteers, v, |x| {
            &x.id
        });
    }
}

/// An active alert with what dispatch needs to remember about it.
#[derive(Debug, Clone)]
pub struct ActiveAlert {
    pub alert: Alert,
    pub senior: SeniorCard,
    /// Band events that opened or joined it.
    pub events: HashSet<EventId>,
    /// Volunteers who declined it or let an offer expire.
    pub excluded: HashSet<VolunteerId>,
    /// Everyone it was ever offered to.
    pub offered: HashSet<VolunteerId>,
}

/// The state a dispatcher is rebuilt from after a start or a failure.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub volunteers: Vec<Volunteer>,
    pub alerts: Vec<ActiveAlert>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    OfferExpiry(AlertId, VolunteerId),
    Response(AlertId),
    Arrival(AlertId),
}

/// The rules and the live state of one shard.
#[derive(Debug)]
pub struct Dispatcher {
    rules: Rules,
    alerts: HashMap<AlertId, ActiveAlert>,
    by_device: HashMap<DeviceId, AlertId>,
    volunteers: HashMap<VolunteerId, Volunteer>,
    /// Volunteers on duty, located, not busy, holding no offer.
    available: NearbyIndex<VolunteerId>,
    /// Located, unassigned alerts holding fewer offers than the fan-out.
    waiting: NearbyIndex<AlertId>,
    timers: BTreeSet<(Timestamp, Timer)>,
    /// Set after a restore: the first tick offers what can be offered.
    reconcile: bool,
}

impl Dispatcher {
    pub fn new(rules: Rules) -> Self {
        Self::restore(rules, Snapshot::default())
    }

    /// Rebuilds the live state from the store's view of it. Timers already
    /// past fire on the first [`Command::Tick`].
    pub fn restore(mut rules: Rules, snapshot: Snapshot) -> Self {
        rules.offer_fanout = rules.offer_fanout.max(1);
        let mut volunteers: HashMap<VolunteerId, Volunteer> = snapshot
            .volunteers
            .into_iter()
            .map(|mut v| {
                v.pending_offer = None;
                (v.id.clone(), v)
            })
            .collect();
        let mut alerts = HashMap::new();
        let mut by_device = HashMap::new();
        let mut timers = BTreeSet::new();
        for active in snapshot.alerts {
            let a = &active.alert;
            if !a.state.is_active() {
                continue;
            }
            for offer in &a.offers {
                if let Some(v) = volunteers.get_mut(&offer.volunteer_id) {
                    v.pending_offer = Some(a.id.clone());
                }
                timers.insert((
                    offer.expires_at,
                    Timer::OfferExpiry(a.id.clone(), offer.volunteer_id.clone()),
                ));
            }
            if !a.response_breached && matches!(a.state, AlertState::Open | AlertState::Offered) {
                timers.insert((a.response_deadline, Timer::Response(a.id.clone())));
            }
            if !a.arrival_breached && a.state != AlertState::OnScene {
                timers.insert((a.arrival_deadline, Timer::Arrival(a.id.clone())));
            }
            by_device.insert(a.device_id.clone(), a.id.clone());
            alerts.insert(a.id.clone(), active);
        }
        let available = NearbyIndex::bulk(
            volunteers
                .values()
                .filter(|v| v.is_available())
                .filter_map(|v| v.position.map(|p| (v.id.clone(), p))),
        );
        let mut d = Self {
            rules,
            alerts,
            by_device,
            volunteers,
            available,
            waiting: NearbyIndex::new(),
            timers,
            reconcile: true,
        };
        let ids: Vec<AlertId> = d.alerts.keys().cloned().collect();
        for id in ids {
            d.update_waiting(&id);
        }
        d
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The earliest moment something is due, for the shell to sleep until.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        if self.reconcile {
            return Some(Timestamp::MIN_UTC);
        }
        self.timers.first().map(|(t, _)| *t)
    }

    pub fn alert(&self, id: &AlertId) -> Option<&Alert> {
        self.alerts.get(id).map(|a| &a.alert)
    }

    pub fn active_alert_of(&self, device: &DeviceId) -> Option<&Alert> {
        self.by_device.get(device).and_then(|id| self.alert(id))
    }

    pub fn active_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values().map(|a| &a.alert)
    }

    pub fn volunteer(&self, id: &VolunteerId) -> Option<&Volunteer> {
        self.volunteers.get(id)
    }

    /// The latest message each band with an active alert and each phone
    /// with a pending offer should hold: what the shell publishes again
    /// (retained) after a restart or a failed commit, when what was
    /// published from memory may have been lost. A band gets `received` for
    /// an alert nobody has been offered yet, else the alert's state (with
    /// the volunteer's name and ETA once accepted); a phone, its offer with
    /// the original expiry. In alert id order, so repeats are comparable.
    pub fn latest_messages(&self) -> Vec<Outgoing> {
        let mut ids: Vec<&AlertId> = self.alerts.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let active = &self.alerts[id];
            let a = &active.alert;
            let notice = match a.state {
                AlertState::Open => BandNotice::received(Some(id.clone()), a.event_id.clone()),
                state => {
                    let helper = a.volunteer_id.as_ref().and_then(|v| self.volunteers.get(v));
                    let eta_s = match (a.position(), helper.and_then(|v| v.position)) {
                        (Some(p), Some(q)) if state == AlertState::Accepted => {
                            Some(self.distance_eta(p, q).1)
                        }
                        _ => None,
                    };
                    BandNotice {
                        alert_id: Some(id.clone()),
                        event_id: None,
                        state: state.as_str().to_string(),
                        volunteer_name: helper.map(|v| v.name.clone()),
                        eta_s,
                    }
                }
            };
            out.push(Outgoing::Band(a.device_id.clone(), notice));
            for o in &a.offers {
                out.push(Outgoing::Phone(
                    o.volunteer_id.clone(),
                    PhoneMessage::Offer {
                        alert_id: id.clone(),
                        kind: a.kind,
                        lat: a.lat,
                        lon: a.lon,
                        distance_m: o.distance_m,
                        eta_s: o.eta_s,
                        expires_at: o.expires_at,
                        senior: active.senior.clone(),
                    },
                ));
            }
        }
        out
    }

    /// Handles one command at `now`, adding what it caused to `fx`.
    pub fn handle(
        &mut self,
        now: Timestamp,
        command: Command,
        fx: &mut Effects,
    ) -> Result<Reply, DispatchError> {
        match command {
            Command::Press(press) => Ok(self.press(now, press, fx)),
            Command::Accept {
                alert_id,
                volunteer_id,
            } => self.accept(now, &alert_id, &volunteer_id, fx),
            Command::Decline {
                alert_id,
                volunteer_id,
            } => self.decline(now, &alert_id, &volunteer_id, fx),
            Command::Arrive {
                alert_id,
                volunteer_id,
            } => self.arrive(now, &alert_id, &volunteer_id, fx),
            Command::Resolve {
                alert_id,
                by,
                outcome,
                note,
            } => self.resolve(now, &alert_id, by, outcome, note, fx),
            Command::Cancel {
                alert_id,
                by,
                reason,
            } => self.cancel(now, &alert_id, &by, reason, fx),
            Command::Assign {
                alert_id,
                volunteer_id,
            } => self.assign(now, &alert_id, &volunteer_id, fx),
            Command::SetDuty {
                volunteer_id,
                on_duty,
            } => self.set_duty(now, &volunteer_id, on_duty, fx),
            Command::SetLocation {
                volunteer_id,
                position,
            } => self.set_location(now, &volunteer_id, position, fx),
            Command::RegisterVolunteer { volunteer_id, name } => {
                let v = self
                    .volunteers
                    .entry(volunteer_id.clone())
                    .or_insert_with(|| Volunteer::new(volunteer_id, name.clone()));
                v.name = name;
                Ok(Reply::Volunteer(Box::new(v.clone())))
            }
            Command::Tick => {
                self.tick(now, fx);
                Ok(Reply::Done)
            }
        }
    }

    // ----- band events -------------------------------------------------

    fn press(&mut self, now: Timestamp, p: Press, fx: &mut Effects) -> Reply {
        let active = self.by_device.get(&p.device_id).cloned();
        if let Some(alert_id) = &active {
            if self.alerts[alert_id].events.contains(&p.event_id) {
                fx.outgoing.push(received(Some(alert_id), &p));
                return Reply::Press {
                    outcome: PressOutcome::Redelivered,
                    alert_id: Some(alert_id.clone()),
                };
            }
        }
        match (p.kind, active) {
            (PressKind::Cancel, None) => {
                // Nothing to call off; still remembered (a redelivery must
                // not cancel a later alert) and acknowledged to the band, so
                // that it stops resending.
                fx.ingested.push(IngestedEvent {
                    device_id: p.device_id.clone(),
                    event_id: p.event_id.clone(),
                    alert_id: None,
                    at: now,
                });
                fx.outgoing.push(received(None, &p));
                Reply::Press {
                    outcome: PressOutcome::NothingToCancel,
                    alert_id: None,
                }
            }
            (PressKind::Cancel, Some(alert_id)) => {
                self.remember_event(now, &alert_id, &p, fx);
                let cancelled = TimelineEvent::new(now, TimelineKind::Cancelled)
                    .by(&Actor::Senior)
                    .reason("cancelled on the band");
                // The alert is active: `by_device` holds active alerts only.
                let _ = self.close(now, &alert_id, AlertState::Cancelled, cancelled, None, fx);
                Reply::Press {
                    outcome: PressOutcome::Cancelled,
                    alert_id: Some(alert_id),
                }
            }
            (_, Some(alert_id)) => {
                self.remember_event(now, &alert_id, &p, fx);
                let mut ev = TimelineEvent::new(now, TimelineKind::PressedAgain);
                ev.event_id = Some(p.event_id.clone());
                fx.timeline.push((alert_id.clone(), ev));
                Reply::Press {
                    outcome: PressOutcome::Joined,
                    alert_id: Some(alert_id),
                }
            }
            (kind, None) => {
                let alert_id = self.open(now, p, kind, fx);
                Reply::Press {
                    outcome: PressOutcome::Opened,
                    alert_id: Some(alert_id),
                }
            }
        }
    }

    /// Records a band event against an alert and acknowledges it to the band.
    fn remember_event(&mut self, now: Timestamp, alert_id: &AlertId, p: &Press, fx: &mut Effects) {
        if let Some(a) = self.alerts.get_mut(alert_id) {
            a.events.insert(p.event_id.clone());
        }
        fx.ingested.push(IngestedEvent {
            device_id: p.device_id.clone(),
            event_id: p.event_id.clone(),
            alert_id: Some(alert_id.clone()),
            at: now,
        });
        fx.outgoing.push(received(Some(alert_id), p));
    }

    fn open(&mut self, now: Timestamp, p: Press, kind: PressKind, fx: &mut Effects) -> AlertId {
        let pressed_at = match p.device_ts {
            Some(ts) if ts >= before(now, DEVICE_TS_PAST) && ts <= after(now, DEVICE_TS_FUTURE) => {
                ts
            }
            _ => now,
        };
        let position = p.position.or(p.home);
        let id = p.new_alert_id.clone();
        let alert = Alert {
            id: id.clone(),
            device_id: p.device_id.clone(),
            senior_id: p.senior.id.clone(),
            kind: if kind == PressKind::Fall {
                AlertKind::Fall
            } else {
                AlertKind::Sos
            },
            state: AlertState::Open,
            lat: position.map(|p| p.lat()),
            lon: position.map(|p| p.lon()),
            pressed_at,
            received_at: now,
            volunteer_id: None,
            accepted_at: None,
            on_scene_at: None,
            resolved_at: None,
            cancelled_at: None,
            response_deadline: after(pressed_at, self.rules.response_target),
            arrival_deadline: after(pressed_at, self.rules.arrival_target),
            response_breached: false,
            arrival_breached: false,
            escalated: false,
            arrival_at_risk: false,
            event_id: p.event_id.clone(),
            outcome: None,
            offers: Vec::new(),
        };
        self.timers
            .insert((alert.response_deadline, Timer::Response(id.clone())));
        self.timers
            .insert((alert.arrival_deadline, Timer::Arrival(id.clone())));
        self.by_device.insert(p.device_id.clone(), id.clone());
        self.alerts.insert(
            id.clone(),
            ActiveAlert {
                alert,
                senior: p.senior.clone(),
                events: HashSet::new(),
                excluded: HashSet::new(),
                offered: HashSet::new(),
            },
        );
        // The alert row must precede its timeline and offers.
        self.touch(&id, fx);
        self.remember_event(now, &id, &p, fx);
        let mut ev = TimelineEvent::new(now, TimelineKind::Pressed);
        ev.event_id = Some(p.event_id.clone());
        ev.by = Some(Actor::Senior.label());
        fx.timeline.push((id.clone(), ev));
        self.top_up(now, &id, fx);
        self.settle(now, &id, fx);
        id
    }

    // ----- volunteers' answers -----------------------------------------

    fn accept(
        &mut self,
        now: Timestamp,
        alert_id: &AlertId,
        v: &VolunteerId,
        fx: &mut Effects,
    ) -> Result<Reply, DispatchError> {
        let active = self.active(alert_id)?;
        let alert = &active.alert;
        if alert.volunteer_id.as_ref() == Some(v) {
            // A retry of an accept that already won.
            return Ok(Reply::Alert(Box::new(alert.clone())));
        }
        let Some(offer) = alert.pending_offer(v).cloned() else {
            return Err(if active.offered.contains(v) {
                DispatchError::OfferGone(alert_id.clone())
            } else {
                DispatchError::NotOffered(alert_id.clone())
            });
        };
        // Expired, though the tick that says so may not have come yet.
        if offer.expires_at <= now {
            return Err(DispatchError::OfferGone(alert_id.clone()));
        }
        self.catch_up(now, alert_id, fx);
        self.close_offer(now, alert_id, v, OfferOutcome::Accepted, fx);
        let others = self.withdraw_all(now, alert_id, WithdrawReason::Taken, fx);
        let name = self.claim(alert_id, v, fx);
        let a = self.alert_mut(alert_id);
        a.state = AlertState::Accepted;
        a.volunteer_id = Some(v.clone());
        let first_accept = a.accepted_at.is_none().then(|| now - a.pressed_at);
        a.accepted_at = Some(now);
        a.escalated = false;
        if let Some(since_press) = first_accept {
            fx.milestones.push(Milestone {
                alert_id: alert_id.clone(),
                kind: MilestoneKind::FirstAccept,
                since_press,
            });
        }
        let mut ev = TimelineEvent::new(now, TimelineKind::Accepted).volunteer(v);
        ev.distance_m = Some(offer.distance_m);
        ev.eta_s = Some(offer.eta_s);
        fx.timeline.push((alert_id.clone(), ev));
        self.notify_band(alert_id, Some(name), Some(offer.eta_s), fx);
        self.update_waiting(alert_id);
        self.touch(alert_id, fx);
        for other in others {
            self.offer_to_free_volunteer(now, &other, fx);
        }
        Ok(self.reply_alert(alert_id))
    }

    fn decline(
        &mut self,
        now: Timestamp,
        alert_id: &AlertId,
        v: &VolunteerId,
        fx: &mut Effects,
    ) -> Result<Reply, DispatchError> {
        let active = self.active(alert_id)?;
        if active.alert.pending_offer(v).is_none() {
            return if active.offered.contains(v) {
                // Declining what already ended changes nothing.
                Ok(self.reply_alert(alert_id))
            } else {
                Err(DispatchError::NotOffered(alert_id.clone()))
            };
        }
        self.close_offer(now, alert_id, v, OfferOutcome::Declined, fx);
        self.alerts
            .get_mut(alert_id)
            .map(|a| a.excluded.insert(v.clone()));
        fx.timeline.push((
            alert_id.clone(),
            TimelineEvent::new(now, TimelineKind::Declined).volunteer(v),
        ));
        self.top_up(now, alert_id, fx);
        self.settle(now, alert_id, fx);
        self.offer_to_free_volunteer(now, v, fx);
        Ok(self.reply_alert(alert_id))
    }

    fn arrive(
        &mut self,
        now: Timestamp,
        alert_id: &AlertId,
        v: &VolunteerId,
        fx: &mut Effects,
    ) -> Result<Reply, DispatchError> {
        let alert = &self.active(alert_id)?.alert;
        if alert.volunteer_id.as_ref() != Some(v) {
            return Err(DispatchError::NotAssigned(alert_id.clone()));
        }
        match alert.state {
            AlertState::OnScene => return Ok(self.reply_alert(alert_id)),
            AlertState::Accepted => {}
            state => return Err(wrong_state(alert_id, state, "arrive")),
        }
        self.catch_up(now, alert_id, fx);
        let a = self.alert_mut(alert_id);
        a.state = AlertState::OnScene;
        a.on_scene_at = Some(now);
        fx.timeline.push((
            alert_id.clone(),
            TimelineEvent::new(now, TimelineKind::OnScene).volunteer(v),
        ));
        self.notify_band(alert_id, None, None, fx);
        self.touch(alert_id, fx);
        Ok(self.reply_alert(alert_id))
    }

    fn resolve(
        &mut self,
        now: Timestamp,
        alert_id: &AlertId,
        by: Actor,
        outcome: String,
        note: Option<String>,
        fx: &mut Effects,
    ) -> Result<Reply, DispatchError> {
        let alert = &self.active(alert_id)?.alert;
        if let Actor::Volunteer(v) = &by {
            if alert.volunteer_id.as_ref() != Some(v) {
                return Err(DispatchError::NotAssigned(alert_id.clone()));
            }
        }
        let mut ev = TimelineEvent::new(now, TimelineKind::Resolved).by(&by);
        ev.volunteer_id = alert.volunteer_id.clone();
        ev.outcome = Some(outcome.clone());
        ev.note = note;
        let closed = self.close(now, alert_id, AlertState::Resolved, ev, Some(outcome), fx)?;
        Ok(Reply::Alert(Box::new(closed)))
    }

    fn cancel(
        &mut self,
        now: Timestamp,
        alert_id: &AlertId,
        by: &Actor,
        reason: Option<String>,
        fx: &mut Effects,
    ) -> Result<Reply, DispatchError> {
        self.active(alert_id)?;
        let mut ev = TimelineEvent::new(now, TimelineKind::Cancelled).by(by);
        ev.reason = reason;
        let closed = self.close(now, alert_id, AlertState::Cancelled, ev, None, fx)?;
        Ok(Reply::Alert(Box::new(closed)))
    }

    /// An operator sends a volunteer by hand.
    fn assign(
        &mut self,
        now: Timestamp,
        alert_id: &AlertId,
        v: &VolunteerId,
        fx: &mut Effects,
    ) -> Result<Reply, DispatchError> {
        let alert = &self.active(alert_id)?.alert;
        let vol = self
            .volunteers
            .get(v)
            .ok_or_else(|| DispatchError::UnknownVolunteer(v.clone()))?;
        match &vol.busy_alert {
            Some(a) if a == alert_id => return Ok(self.reply_alert(alert_id)),
            Some(_) => return Err(DispatchError::VolunteerBusy(v.clone())),
            None => {}
        }
        if !matches!(
            alert.state,
            AlertState::Open | AlertState::Offered | AlertState::Accepted
        ) {
            return Err(wrong_state(alert_id, alert.state, "assign"));
        }
        let (distance_m, eta_s) = match (alert.position(), vol.position) {
            (Some(a), Some(b)) => {
                let (d, e) = self.distance_eta(a, b);
                (Some(d), Some(e))
            }
            _ => (None, None),
        };
        // The volunteer's offer elsewhere, if any, goes back to its alert.
        let mut freed_alert = None;
        if let Some(other) = vol.pending_offer.clone() {
            if &other != alert_id {
                self.withdraw(now, &other, v, WithdrawReason::Assigned, fx);
                freed_alert = Some(other);
            }
        }
        self.catch_up(now, alert_id, fx);
        if self.alerts[alert_id].alert.pending_offer(v).is_some() {
            self.close_offer(now, alert_id, v, OfferOutcome::Accepted, fx);
        }
        let mut freed = self.withdraw_all(now, alert_id, WithdrawReason::Assigned, fx);
        // Whoever had accepted it is released.
        if let Some(previous) = self.alerts[alert_id].alert.volunteer_id.clone() {
            self.release(&previous, fx);
            fx.outgoing.push(Outgoing::Phone(
                previous.clone(),
                PhoneMessage::Withdrawn {
                    alert_id: alert_id.clone(),
                    reason: WithdrawReason::Assigned,
                },
            ));
            freed.push(previous);
        }
        let name = self.claim(alert_id, v, fx);
        let a = self.alert_mut(alert_id);
        a.state = AlertState::Accepted;
        a.volunteer_id = Some(v.clone());
        // The response happened at the first accept or assignment; a later
        // reassignment does not move it (the SLA measures the first).
        let first_accept = a.accepted_at.is_none().then(|| now - a.pressed_at);
        a.accepted_at.get_or_insert(now);
        a.escalated = false;
        if let Some(since_press) = first_accept {
            fx.milestones.push(Milestone {
                alert_id: alert_id.clone(),
                kind: MilestoneKind::FirstAccept,
                since_press,
            });
        }
        let mut ev = TimelineEvent::new(now, TimelineKind::Assigned)
            .volunteer(v)
            .by(&Actor::Operator);
        ev.distance_m = distance_m;
        ev.eta_s = eta_s;
        fx.timeline.push((alert_id.clone(), ev));
        let assigned = self.assignment_message(alert_id, distance_m, eta_s);
        fx.outgoing.push(Outgoing::Phone(v.clone(), assigned));
        self.notify_band(alert_id, Some(name), eta_s, fx);
        self.update_waiting(alert_id);
        self.touch(alert_id, fx);
        if let Some(other) = freed_alert {
            self.top_up(now, &other, fx);
            self.settle(now, &other, fx);
        }
        for f in freed {
            self.offer_to_free_volunteer(now, &f, fx);
        }
        Ok(self.reply_alert(alert_id))
    }

    // ----- volunteers' state -------------------------------------------

    fn set_duty(
        &mut self,
        now: Timestamp,
        v: &VolunteerId,
        on_duty: bool,
        fx: &mut Effects,
    ) -> Result<Reply, DispatchError> {
        let vol = self
            .volunteers
            .get_mut(v)
            .ok_or_else(|| DispatchError::UnknownVolunteer(v.clone()))?;
        if vol.on_duty != on_duty {
            vol.on_duty = on_duty;
            let pending = vol.pending_offer.clone();
            if !on_duty {
                if let Some(alert_id) = pending {
                    self.withdraw(now, &alert_id, v, WithdrawReason::OffDuty, fx);
                    self.top_up(now, &alert_id, fx);
                    self.settle(now, &alert_id, fx);
                }
            }
            self.refresh_available(v);
            self.touch_volunteer(v, fx);
            self.offer_to_free_volunteer(now, v, fx);
        }
        Ok(Reply::Volunteer(Box::new(self.volunteers[v].clone())))
    }

    fn set_location(
        &mut self,
        now: Timestamp,
        v: &VolunteerId,
        position: Position,
        fx: &mut Effects,
    ) -> Result<Reply, DispatchError> {
        let vol = self
            .volunteers
            .get_mut(v)
            .ok_or_else(|| DispatchError::UnknownVolunteer(v.clone()))?;
        vol.position = Some(position);
        vol.location_at = Some(now);
        self.refresh_available(v);
        self.touch_volunteer(v, fx);
        self.offer_to_free_volunteer(now, v, fx);
        Ok(Reply::Volunteer(Box::new(self.volunteers[v].clone())))
    }

    // ----- time ----------------------------------------------------------

    fn tick(&mut self, now: Timestamp, fx: &mut Effects) {
        if self.reconcile {
            self.reconcile = false;
            let mut waiting: Vec<(Timestamp, AlertId)> = self
                .alerts
                .values()
                .filter(|a| matches!(a.alert.state, AlertState::Open | AlertState::Offered))
                .map(|a| (a.alert.pressed_at, a.alert.id.clone()))
                .collect();
            waiting.sort();
            for (_, id) in waiting {
                self.top_up(now, &id, fx);
                self.settle(now, &id, fx);
            }
        }
        while let Some((at, timer)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::OfferExpiry(alert_id, v) => self.expire_offer(now, at, &alert_id, &v, fx),
                Timer::Response(alert_id) => self.breach(&alert_id, true, fx),
                Timer::Arrival(alert_id) => self.breach(&alert_id, false, fx),
            }
        }
    }

    fn expire_offer(
        &mut self,
        now: Timestamp,
        at: Timestamp,
        alert_id: &AlertId,
        v: &VolunteerId,
        fx: &mut Effects,
    ) {
        let Some(active) = self.alerts.get(alert_id) else {
            return;
        };
        // A timer for an offer that has since ended (or been made again).
        if active.alert.pending_offer(v).map(|o| o.expires_at) != Some(at) {
            return;
        }
        self.close_offer(now, alert_id, v, OfferOutcome::Expired, fx);
        self.alerts
            .get_mut(alert_id)
            .map(|a| a.excluded.insert(v.clone()));
        fx.timeline.push((
            alert_id.clone(),
            TimelineEvent::new(now, TimelineKind::OfferExpired).volunteer(v),
        ));
        fx.outgoing.push(Outgoing::Phone(
            v.clone(),
            PhoneMessage::Withdrawn {
                alert_id: alert_id.clone(),
                reason: WithdrawReason::Expired,
            },
        ));
        self.top_up(now, alert_id, fx);
        self.settle(now, alert_id, fx);
        self.offer_to_free_volunteer(now, v, fx);
    }

    fn breach(&mut self, alert_id: &AlertId, response: bool, fx: &mut Effects) {
        let Some(active) = self.alerts.get_mut(alert_id) else {
            return;
        };
        let a = &mut active.alert;
        let (kind, deadline) = if response {
            if a.response_breached || !matches!(a.state, AlertState::Open | AlertState::Offered) {
                return;
            }
            a.response_breached = true;
            (TimelineKind::ResponseBreached, a.response_deadline)
        } else {
            if a.arrival_breached
                || !matches!(
                    a.state,
                    AlertState::Open | AlertState::Offered | AlertState::Accepted
                )
            {
                return;
            }
            a.arrival_breached = true;
            (TimelineKind::ArrivalBreached, a.arrival_deadline)
        };
        // Stamped at the deadline itself, not when it is noticed: after a
        // restart or a late tick the timeline still says when the target
        // was missed.
        fx.timeline
            .push((alert_id.clone(), TimelineEvent::new(deadline, kind)));
        self.touch(alert_id, fx);
    }

    /// Records the breach of a target that `now` has passed though its timer
    /// has not fired yet: a command can reach the dispatcher after a
    /// deadline but before the `Tick` the shell sends for it, and the
    /// command must not hide the breach (an accept or an arrival after the
    /// deadline is late, whatever the order). The timer, when it fires,
    /// then finds the breach recorded.
    fn catch_up(&mut self, now: Timestamp, alert_id: &AlertId, fx: &mut Effects) {
        let Some(a) = self.alerts.get(alert_id).map(|a| &a.alert) else {
            return;
        };
        let (response, arrival) = (a.response_deadline <= now, a.arrival_deadline <= now);
        if response {
            self.breach(alert_id, true, fx);
        }
        if arrival {
            self.breach(alert_id, false, fx);
        }
    }

    // ----- the machinery -------------------------------------------------

    fn active(&self, alert_id: &AlertId) -> Result<&ActiveAlert, DispatchError> {
        self.alerts
            .get(alert_id)
            .ok_or_else(|| DispatchError::NotActive(alert_id.clone()))
    }

    /// Only called for alerts known to be active.
    fn alert_mut(&mut self, alert_id: &AlertId) -> &mut Alert {
        &mut self
            .alerts
            .get_mut(alert_id)
            .expect("alert_mut is called for active alerts only")
            .alert
    }

    fn reply_alert(&self, alert_id: &AlertId) -> Reply {
        match self.alerts.get(alert_id) {
            Some(a) => Reply::Alert(Box::new(a.alert.clone())),
            None => Reply::Done,
        }
    }

    fn touch(&self, alert_id: &AlertId, fx: &mut Effects) {
        if let Some(a) = self.alerts.get(alert_id) {
            fx.put_alert(&a.alert);
        }
    }

    fn touch_volunteer(&self, v: &VolunteerId, fx: &mut Effects) {
        if let Some(vol) = self.volunteers.get(v) {
            fx.put_volunteer(vol);
        }
    }

    fn is_fresh(&self, vol: &Volunteer, now: Timestamp) -> bool {
        vol.location_at
            .is_some_and(|at| after(at, self.rules.volunteer_location_max_age) >= now)
    }

    fn distance_eta(&self, a: Position, b: Position) -> (u32, u32) {
        let d = a.distance_m(&b);
        let speed = if self.rules.volunteer_speed > 0.0 {
            self.rules.volunteer_speed
        } else {
            f64::MIN_POSITIVE
        };
        (
            d.round().min(u32::MAX as f64) as u32,
            (d / speed).round().min(u32::MAX as f64) as u32,
        )
    }

    /// Puts the volunteer in or out of the index of available volunteers.
    fn refresh_available(&mut self, v: &VolunteerId) {
        match self.volunteers.get(v) {
            Some(vol) if vol.is_available() => {
                if let Some(p) = vol.position {
                    self.available.insert(v.clone(), p);
                }
            }
            _ => self.available.remove(v),
        }
    }

    /// Puts the alert in or out of the index of alerts waiting for offers.
    fn update_waiting(&mut self, alert_id: &AlertId) {
        let fanout = self.rules.offer_fanout;
        let wants = self.alerts.get(alert_id).and_then(|a| {
            let alert = &a.alert;
            let open = matches!(alert.state, AlertState::Open | AlertState::Offered)
                && alert.offers.len() < fanout;
            if open { alert.position() } else { None }
        });
        match wants {
            Some(p) => self.waiting.insert(alert_id.clone(), p),
            None => self.waiting.remove(alert_id),
        }
    }

    /// Offers the alert to the nearest candidates until it holds as many
    /// pending offers as the fan-out allows.
    fn top_up(&mut self, now: Timestamp, alert_id: &AlertId, fx: &mut Effects) {
        let Some(active) = self.alerts.get(alert_id) else {
            return;
        };
        let alert = &active.alert;
        if !matches!(alert.state, AlertState::Open | AlertState::Offered) {
            return;
        }
        let Some(position) = alert.position() else {
            return;
        };
        let needed = self.rules.offer_fanout.saturating_sub(alert.offers.len());
        let candidates = self.nearest_available(now, position, needed, &active.excluded);
        for v in candidates {
            self.make_offer(now, alert_id, &v, fx);
        }
    }

    /// Who an alert at `from` would be offered to now: up to `limit`
    /// volunteers, nearest first, on duty, neither busy nor holding an
    /// offer, with a fresh location within the maximum offer distance,
    /// none of them in `excluded` (who declined it or let an offer
    /// expire). Equally distant volunteers come in id order.
    pub fn nearest_available(
        &self,
        now: Timestamp,
        from: Position,
        limit: usize,
        excluded: &HashSet<VolunteerId>,
    ) -> Vec<VolunteerId> {
        self.available
            .nearest(from, self.rules.max_offer_distance, limit, |v| {
                !excluded.contains(v)
                    && self
                        .volunteers
                        .get(v)
                        .is_some_and(|vol| self.is_fresh(vol, now))
            })
    }

    fn make_offer(
        &mut self,
        now: Timestamp,
        alert_id: &AlertId,
        v: &VolunteerId,
        fx: &mut Effects,
    ) {
        let (Some(active), Some(vol)) = (self.alerts.get(alert_id), self.volunteers.get(v)) else {
            return;
        };
        let (Some(a_pos), Some(v_pos)) = (active.alert.position(), vol.position) else {
            return;
        };
        let (distance_m, eta_s) = self.distance_eta(a_pos, v_pos);
        let expires_at = after(now, self.rules.offer_timeout);
        let offer = Offer {
            volunteer_id: v.clone(),
            offered_at: now,
            expires_at,
            distance_m,
            eta_s,
        };
        let senior = active.senior.clone();
        let active = self.alerts.get_mut(alert_id).expect("checked active above");
        if active.offered.is_empty() {
            fx.milestones.push(Milestone {
                alert_id: alert_id.clone(),
                kind: MilestoneKind::FirstOffer,
                since_press: now - active.alert.pressed_at,
            });
        }
        active.offered.insert(v.clone());
        let a = &mut active.alert;
        a.offers.push(offer);
        let was_open = a.state == AlertState::Open;
        a.state = AlertState::Offered;
        a.escalated = false;
        let message = PhoneMessage::Offer {
            alert_id: alert_id.clone(),
            kind: a.kind,
            lat: a.lat,
            lon: a.lon,
            distance_m,
            eta_s,
            expires_at,
            senior,
        };
        if let Some(vol) = self.volunteers.get_mut(v) {
            vol.pending_offer = Some(alert_id.clone());
        }
        self.refresh_available(v);
        self.timers
            .insert((expires_at, Timer::OfferExpiry(alert_id.clone(), v.clone())));
        fx.offers.push(OfferRecord {
            alert_id: alert_id.clone(),
            volunteer_id: v.clone(),
            offered_at: now,
            expires_at,
            distance_m,
            eta_s,
            outcome: None,
            closed_at: None,
        });
        let mut ev = TimelineEvent::new(now, TimelineKind::Offered).volunteer(v);
        ev.distance_m = Some(distance_m);
        ev.eta_s = Some(eta_s);
        fx.timeline.push((alert_id.clone(), ev));
        fx.outgoing.push(Outgoing::Phone(v.clone(), message));
        if was_open {
            self.notify_band(alert_id, None, None, fx);
        }
        self.touch(alert_id, fx);
    }

    /// After offers changed: escalate an alert nobody holds, flag one that
    /// cannot make its arrival target, and file it as waiting or not.
    fn settle(&mut self, now: Timestamp, alert_id: &AlertId, fx: &mut Effects) {
        let Some(active) = self.alerts.get_mut(alert_id) else {
            return;
        };
        let a = &mut active.alert;
        if matches!(a.state, AlertState::Open | AlertState::Offered) {
            if a.offers.is_empty() {
                let was_offered = a.state == AlertState::Offered;
                a.state = AlertState::Open;
                if !a.escalated {
                    a.escalated = true;
                    fx.timeline.push((
                        alert_id.clone(),
                        TimelineEvent::new(now, TimelineKind::Escalated)
                            .reason("no volunteer available"),
                    ));
                }
                if was_offered {
                    self.notify_band(alert_id, None, None, fx);
                }
            } else if let Some(best) = a.offers.iter().map(|o| o.eta_s).min() {
                if !a.arrival_at_risk && now + TimeDelta::seconds(best.into()) > a.arrival_deadline
                {
                    a.arrival_at_risk = true;
                }
            }
        }
        self.update_waiting(alert_id);
        self.touch(alert_id, fx);
    }

    /// A volunteer who just became free is offered the most urgent alert
    /// waiting within reach (oldest press first).
    fn offer_to_free_volunteer(&mut self, now: Timestamp, v: &VolunteerId, fx: &mut Effects) {
        let Some(vol) = self.volunteers.get(v) else {
            return;
        };
        if !self.available.contains(v) || !self.is_fresh(vol, now) {
            return;
        }
        let Some(position) = vol.position else {
            return;
        };
        let best = self
            .waiting
            .within(position, self.rules.max_offer_distance)
            .into_iter()
            .filter_map(|id| self.alerts.get(&id))
            .filter(|a| !a.excluded.contains(v) && a.alert.pending_offer(v).is_none())
            .filter(|a| {
                a.alert
                    .position()
                    .is_some_and(|p| p.distance_m(&position) <= self.rules.max_offer_distance)
            })
            .map(|a| (a.alert.pressed_at, a.alert.id.clone()))
            .min();
        if let Some((_, alert_id)) = best {
            self.make_offer(now, &alert_id, v, fx);
            self.settle(now, &alert_id, fx);
        }
    }

    /// Ends a pending offer: removes it from the alert, frees the volunteer
    /// and records the outcome. Everything else is the caller's.
    fn close_offer(
        &mut self,
        now: Timestamp,
        alert_id: &AlertId,
        v: &VolunteerId,
        outcome: OfferOutcome,
        fx: &mut Effects,
    ) {
        let Some(active) = self.alerts.get_mut(alert_id) else {
            return;
        };
        let Some(i) = active
            .alert
            .offers
            .iter()
            .position(|o| &o.volunteer_id == v)
        else {
            return;
        };
        let offer = active.alert.offers.remove(i);
        self.timers.remove(&(
            offer.expires_at,
            Timer::OfferExpiry(alert_id.clone(), v.clone()),
        ));
        if let Some(vol) = self.volunteers.get_mut(v) {
            if vol.pending_offer.as_ref() == Some(alert_id) {
                vol.pending_offer = None;
            }
        }
        self.refresh_available(v);
        fx.offers.push(OfferRecord {
            alert_id: alert_id.clone(),
            volunteer_id: v.clone(),
            offered_at: offer.offered_at,
            expires_at: offer.expires_at,
            distance_m: offer.distance_m,
            eta_s: offer.eta_s,
            outcome: Some(outcome),
            closed_at: Some(now),
        });
        self.touch(alert_id, fx);
    }

    /// Takes one pending offer back and tells the volunteer's phone why.
    fn withdraw(
        &mut self,
        now: Timestamp,
        alert_id: &AlertId,
        v: &VolunteerId,
        reason: WithdrawReason,
        fx: &mut Effects,
    ) {
        self.close_offer(now, alert_id, v, OfferOutcome::Withdrawn, fx);
        fx.timeline.push((
            alert_id.clone(),
            TimelineEvent::new(now, TimelineKind::OfferWithdrawn)
                .volunteer(v)
                .reason(reason.as_str()),
        ));
        fx.outgoing.push(Outgoing::Phone(
            v.clone(),
            PhoneMessage::Withdrawn {
                alert_id: alert_id.clone(),
                reason,
            },
        ));
    }

    /// Takes back every pending offer of an alert; returns who was freed.
    fn withdraw_all(
        &mut self,
        now: Timestamp,
        alert_id: &AlertId,
        reason: WithdrawReason,
        fx: &mut Effects,
    ) -> Vec<VolunteerId> {
        let pending: Vec<VolunteerId> = self
            .alerts
            .get(alert_id)
            .map(|a| {
                a.alert
                    .offers
                    .iter()
                    .map(|o| o.volunteer_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for v in &pending {
            self.withdraw(now, alert_id, v, reason, fx);
        }
        pending
    }

    /// Makes the volunteer busy with the alert; returns their name.
    fn claim(&mut self, alert_id: &AlertId, v: &VolunteerId, fx: &mut Effects) -> String {
        let name = match self.volunteers.get_mut(v) {
            Some(vol) => {
                fx.busy_before
                    .entry(v.clone())
                    .or_insert_with(|| vol.busy_alert.clone());
                vol.busy_alert = Some(alert_id.clone());
                if vol.pending_offer.as_ref() == Some(alert_id) {
                    vol.pending_offer = None;
                }
                vol.name.clone()
            }
            None => String::new(),
        };
        self.refresh_available(v);
        self.touch_volunteer(v, fx);
        name
    }

    /// Frees a volunteer from the alert they were busy with.
    fn release(&mut self, v: &VolunteerId, fx: &mut Effects) {
        if let Some(vol) = self.volunteers.get_mut(v) {
            fx.busy_before
                .entry(v.clone())
                .or_insert_with(|| vol.busy_alert.clone());
            vol.busy_alert = None;
        }
        self.refresh_available(v);
        self.touch_volunteer(v, fx);
    }

    /// Resolves or cancels an active alert; returns its final form.
    fn close(
        &mut self,
        now: Timestamp,
        alert_id: &AlertId,
        state: AlertState,
        event: TimelineEvent,
        outcome: Option<String>,
        fx: &mut Effects,
    ) -> Result<Alert, DispatchError> {
        self.active(alert_id)?;
        self.catch_up(now, alert_id, fx);
        let mut freed = self.withdraw_all(now, alert_id, WithdrawReason::Cancelled, fx);
        let Some(mut active) = self.alerts.remove(alert_id) else {
            return Err(DispatchError::NotActive(alert_id.clone()));
        };
        let a = &mut active.alert;
        a.state = state;
        match state {
            AlertState::Resolved => a.resolved_at = Some(now),
            _ => a.cancelled_at = Some(now),
        }
        a.outcome = outcome;
        a.escalated = false;
        let device = a.device_id.clone();
        if self.by_device.get(&device) == Some(alert_id) {
            self.by_device.remove(&device);
        }
        self.waiting.remove(alert_id);
        let deadlines = [
            (a.response_deadline, Timer::Response(alert_id.clone())),
            (a.arrival_deadline, Timer::Arrival(alert_id.clone())),
        ];
        for t in deadlines {
            self.timers.remove(&t);
        }
        fx.timeline.push((alert_id.clone(), event));
        fx.put_alert(a);
        let closed = a.clone();
        fx.outgoing.push(Outgoing::Band(
            device,
            BandNotice {
                alert_id: Some(alert_id.clone()),
                event_id: None,
                state: state.as_str().to_string(),
                volunteer_name: None,
                eta_s: None,
            },
        ));
        if let Some(v) = closed.volunteer_id.clone() {
            self.release(&v, fx);
            if state == AlertState::Cancelled {
                fx.outgoing.push(Outgoing::Phone(
                    v.clone(),
                    PhoneMessage::Withdrawn {
                        alert_id: alert_id.clone(),
                        reason: WithdrawReason::Cancelled,
                    },
                ));
            }
            freed.push(v);
        }
        for v in freed {
            self.offer_to_free_volunteer(now, &v, fx);
        }
        Ok(closed)
    }

    fn notify_band(
        &self,
        alert_id: &AlertId,
        volunteer_name: Option<String>,
        eta_s: Option<u32>,
        fx: &mut Effects,
    ) {
        if let Some(a) = self.alerts.get(alert_id) {
            fx.outgoing.push(Outgoing::Band(
                a.alert.device_id.clone(),
                BandNotice {
                    alert_id: Some(alert_id.clone()),
                    event_id: None,
                    state: a.alert.state.as_str().to_string(),
                    volunteer_name,
                    eta_s,
                },
            ));
        }
    }

    /// What the phone of a volunteer assigned by hand is sent.
    fn assignment_message(
        &self,
        alert_id: &AlertId,
        distance_m: Option<u32>,
        eta_s: Option<u32>,
    ) -> PhoneMessage {
        let active = &self.alerts[alert_id];
        let a = &active.alert;
        PhoneMessage::Assigned {
            alert_id: alert_id.clone(),
            kind: a.kind,
            lat: a.lat,
            lon: a.lon,
            distance_m,
            eta_s,
            senior: active.senior.clone(),
        }
    }
}

fn received(alert_id: Option<&AlertId>, p: &Press) -> Outgoing {
    Outgoing::Band(
        p.device_id.clone(),
        BandNotice::received(alert_id.cloned(), p.event_id.clone()),
    )
}

fn wrong_state(alert_id: &AlertId, state: AlertState, action: &'static str) -> DispatchError {
    DispatchError::WrongState {
        alert_id: alert_id.clone(),
        state,
        action,
    }
}

#[cfg(test)]
#[path = "dispatcher_tests.rs"]
mod tests;
