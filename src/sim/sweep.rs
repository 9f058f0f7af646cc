//! The what-if sweep: which fan-out and offer timeout give a community the
//! response it wants from the volunteers it has.
//!
//! A [`Scenario`] (volunteers and seniors scattered over a disc, presses at
//! random moments of a stretch of time, volunteers who accept, decline or
//! ignore each offer after a drawn delay, walk over, help, and are free
//! again) is played through the real [`Dispatcher`] on a virtual clock, once
//! for each (fan-out, offer timeout) pair of a grid, and each run is summed
//! up in a [`SweepRow`]. Events come off a priority queue in time order; the
//! dispatcher's own deadlines are honoured with [`Command::Tick`] at
//! [`Dispatcher::next_deadline`]. Everything here is pure and synchronous
//! (no I/O, no tokio, no wall clock): the same seed gives the same rows.
//! [`run_cli`] is the edge that parses arguments and prints the table.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::f64::consts::PI;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::TimeDelta;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::domain::dispatcher::after;
use crate::domain::geo::EARTH_RADIUS_M;
use crate::domain::sla::percentile;
use crate::domain::{
    Actor, AlertId, Command, DeviceId, DispatchError, Dispatcher, Effects, EventId, OfferOutcome,
    Outgoing, PhoneMessage, Position, Press, PressKind, PressOutcome, Reply, Rules, SeniorCard,
    SeniorId, TimelineKind, Timestamp, VolunteerId,
};

/// Metres per degree of latitude on the sphere `Position::distance_m` uses.
const M_PER_DEG: f64 = EARTH_RADIUS_M * PI / 180.0;
/// The largest area a scenario may cover: a community, not a continent.
const MAX_RADIUS_M: f64 = 100_000.0;
/// No drawn answer delay is longer than this.
const MAX_ANSWER_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Phones are assumed to report their location often enough never to go
/// stale during a run.
const LOCATION_NEVER_STALE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How long a volunteer takes to answer an offer: log-normal around a
/// median (`sigma` 0 makes it exactly the median).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerDelay {
    pub median: Duration,
    /// Spread of the logarithm: 0.8 puts 90 % of answers within about a
    /// quarter and four times the median.
    pub sigma: f64,
}

impl AnswerDelay {
    fn draw(&self, rng: &mut StdRng) -> Duration {
        if self.sigma == 0.0 {
            return self.median.min(MAX_ANSWER_DELAY);
        }
        // Box-Muller: a standard normal from two uniforms, u1 in (0, 1].
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos();
        let s = self.median.as_secs_f64() * (self.sigma * z).exp();
        Duration::from_secs_f64(s.clamp(0.0, MAX_ANSWER_DELAY.as_secs_f64()))
    }
}

/// A community and how its volunteers behave.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Volunteers on duty the whole time, each waiting at a fixed spot
    /// (home) drawn uniformly in the area.
    pub volunteers: usize,
    /// Seniors with a band, each at home, drawn uniformly in the area.
    pub seniors: usize,
    pub centre: Position,
    /// The area: a disc of this radius around `centre`, in metres.
    pub radius_m: f64,
    /// Presses over `duration`, each at a uniformly random moment by a
    /// uniformly random senior.
    pub presses: usize,
    pub duration: Duration,
    /// The chance that a volunteer accepts an offer (1 in 20 is 0.05).
    pub accept: f64,
    /// Of the offers not accepted, the share declined with the button; the
    /// rest are ignored and expire.
    pub decline: f64,
    /// How long a volunteer takes to accept or decline.
    pub answer_delay: AnswerDelay,
    /// From arrival to resolving the alert; the volunteer is busy until then.
    pub on_scene: Duration,
    /// An alert nobody has accepted this long after its press is called off
    /// by an operator (who then sends help outside the model).
    pub give_up_after: Duration,
    /// The deployment's rules; each run overrides `offer_fanout` and
    /// `offer_timeout`. `volunteer_speed` is the walking speed.
    pub rules: Rules,
    pub seed: u64,
}

impl Scenario {
    /// A scenario of the question: 40 volunteers within 1.5 km,
    /// accepting 1 offer in 20.
    pub fn community(centre: Position) -> Self {
        Self {
            volunteers: 40,
            seniors: 2000,
            centre,
            radius_m: 1500.0,
            presses: 48,
            duration: Duration::from_secs(24 * 3600),
            accept: 0.05,
            decline: 0.5,
            answer_delay: AnswerDelay {
                median: Duration::from_secs(20),
                sigma: 0.8,
            },
            on_scene: Duration::from_secs(30 * 60),
            give_up_after: Duration::from_secs(30 * 60),
            rules: Rules::default(),
            seed: 7,
        }
    }

    /// Checks what the model needs to be meaningful.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        for (name, value) in [("accept", self.accept), ("decline", self.decline)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ScenarioError::Probability { name, value });
            }
        }
        if !(self.radius_m > 0.0 && self.radius_m <= MAX_RADIUS_M) {
            return Err(ScenarioError::Radius(self.radius_m));
        }
        if self.duration.is_zero() {
            return Err(ScenarioError::Duration);
        }
        let sigma = self.answer_delay.sigma;
        if !(sigma.is_finite() && sigma >= 0.0) {
            return Err(ScenarioError::Sigma(sigma));
        }
        let speed = self.rules.volunteer_speed;
        if !(speed.is_finite() && speed > 0.0) {
            return Err(ScenarioError::Speed(speed));
        }
        if self.presses > 0 && self.seniors == 0 {
            return Err(ScenarioError::NoSeniors);
        }
        Ok(())
    }
}

/// Why a scenario or a grid cannot be played.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScenarioError {
    #[error("{name} must be a probability between 0 and 1, got {value}")]
    Probability { name: &'static str, value: f64 },
    #[error("the radius must be more than 0 and at most {MAX_RADIUS_M} m, got {0}")]
    Radius(f64),
    #[error("the simulated duration must be more than zero")]
    Duration,
    #[error("the answer delay's sigma must be finite and not negative, got {0}")]
    Sigma(f64),
    #[error("the walking speed must be more than 0 m/s, got {0}")]
    Speed(f64),
    #[error("presses need at least one senior")]
    NoSeniors,
    #[error("a fan-out must be at least 1")]
    Fanout,
    #[error("an offer timeout must be more than zero")]
    Timeout,
}

/// One run of the grid: the rules tried and what the presses got.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    pub fanout: usize,
    #[serde(with = "humantime_serde")]
    pub offer_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub response_target: Duration,
    #[serde(with = "humantime_serde")]
    pub arrival_target: Duration,
    /// Presses sent.
    pub presses: u64,
    /// Alerts they opened (a press while its senior's alert is still active
    /// joins it instead).
    pub alerts: u64,
    /// Alerts a volunteer accepted, in time or not.
    pub answered: u64,
    /// Alerts accepted within the response target.
    pub answered_in_target: u64,
    /// `answered_in_target / alerts` (0 without alerts).
    pub response_share: f64,
    /// Press-to-accept percentiles over all alerts, in seconds; null when
    /// that share of the alerts was never accepted.
    pub response_p50_s: Option<f64>,
    pub response_p90_s: Option<f64>,
    pub response_p99_s: Option<f64>,
    /// Alerts with a volunteer on scene within the arrival target.
    pub arrived_in_target: u64,
    /// `arrived_in_target / alerts` (0 without alerts).
    pub arrival_share: f64,
    /// Alerts that were at some point left with nobody to offer them to.
    pub escalated: u64,
    /// Alerts nobody had accepted by the response target.
    pub response_breaches: u64,
    /// Alerts nobody was on scene for by the arrival target.
    pub arrival_breaches: u64,
    /// Alerts called off unaccepted after `give_up_after`.
    pub given_up: u64,
    /// Offers sent in all.
    pub offers: u64,
    /// `offers / alerts` (0 without alerts).
    pub offers_per_alert: f64,
    /// Offers made to a volunteer who already held an offer or was busy
    /// helping, as seen in the dispatcher's effects: always 0 unless the
    /// dispatcher is wrong.
    pub double_offers: u64,
}

/// Plays the scenario once for every (fan-out, timeout) pair, fan-out
/// major. Every run sees the same volunteers, seniors and presses; the
/// volunteers' answers are drawn from the same seed.
pub fn sweep(
    scenario: &Scenario,
    fanouts: &[usize],
    timeouts: &[Duration],
) -> Result<Vec<SweepRow>, ScenarioError> {
    scenario.validate()?;
    if fanouts.contains(&0) {
        return Err(ScenarioError::Fanout);
    }
    if timeouts.iter().any(Duration::is_zero) {
        return Err(ScenarioError::Timeout);
    }
    let layout = Layout::draw(scenario)?;
    let mut rows = Vec::with_capacity(fanouts.len() * timeouts.len());
    for &fanout in fanouts {
        for &timeout in timeouts {
            rows.push(play(scenario, &layout, fanout, timeout));
        }
    }
    Ok(rows)
}

/// The rows as a plain text table; rows whose response share reaches
/// `target_share` are marked with `*`.
pub fn render_table(rows: &[SweepRow], target_share: f64) -> String {
    let mut out = String::new();
    let (response, arrival) = rows
        .first()
        .map(|r| (r.response_target, r.arrival_target))
        .unwrap_or_default();
    let answered = format!("≤{} answered", humantime::format_duration(response));
    let on_scene = format!("≤{} on scene", humantime::format_duration(arrival));
    let _ = writeln!(
        out,
        "  {:>7} {:>7} {:>12} {:>7} {:>7} {:>7} {:>13} {:>9} {:>8} {:>12}",
        "fan-out",
        "timeout",
        answered,
        "p50",
        "p90",
        "p99",
        on_scene,
        "escalated",
        "breached",
        "offers/alert"
    );
    for r in rows {
        let mark = if r.response_share >= target_share {
            '*'
        } else {
            ' '
        };
        let _ = writeln!(
            out,
            "{mark} {:>7} {:>7} {:>12} {:>7} {:>7} {:>7} {:>13} {:>9} {:>8} {:>12.1}",
            r.fanout,
            humantime::format_duration(r.offer_timeout).to_string(),
            share(r.response_share),
            seconds(r.response_p50_s),
            seconds(r.response_p90_s),
            seconds(r.response_p99_s),
            share(r.arrival_share),
            r.escalated,
            r.response_breaches,
            r.offers_per_alert,
        );
    }
    let doubled: u64 = rows.iter().map(|r| r.double_offers).sum();
    if doubled > 0 {
        let _ = writeln!(
            out,
            "! {doubled} offers went to a volunteer already holding one or helping"
        );
    }
    let _ = writeln!(
        out,
        "* at least {} of the alerts answered within {}",
        share(target_share),
        humantime::format_duration(response)
    );
    out
}

/// A share as a percentage, rounded down: "99.0 %" never hides 98.96 %.
fn share(x: f64) -> String {
    format!("{:.1} %", (x * 1000.0).floor() / 10.0)
}

/// Seconds as `45s` or `2m05s`; `never` for a percentile never reached.
fn seconds(s: Option<f64>) -> String {
    match s {
        None => "never".to_string(),
        Some(s) => {
            let s = s.round() as u64;
            if s < 60 {
                format!("{s}s")
            } else {
                format!("{}m{:02}s", s / 60, s % 60)
            }
        }
    }
}

// ----- the world a sweep plays in ----------------------------------------

/// What every run of a sweep shares: where everyone is, who presses when.
struct Layout {
    start: Timestamp,
    volunteers: Vec<Position>,
    seniors: Vec<Position>,
    /// (moment, senior) in time order.
    presses: Vec<(Timestamp, usize)>,
}

impl Layout {
    fn draw(s: &Scenario) -> Result<Self, ScenarioError> {
        let mut rng = StdRng::seed_from_u64(s.seed);
        let spot = |rng: &mut StdRng| -> Result<Position, ScenarioError> {
            // Uniform over the disc: the radius goes as the root of a uniform.
            let r = s.radius_m * rng.random::<f64>().sqrt();
            let theta = 2.0 * PI * rng.random::<f64>();
            let lat = s.centre.lat() + r * theta.cos() / M_PER_DEG;
            let per_deg_lon = M_PER_DEG * s.centre.lat().to_radians().cos();
            let lon = s.centre.lon() + r * theta.sin() / per_deg_lon;
            Position::new(lat, lon).map_err(|_| ScenarioError::Radius(s.radius_m))
        };
        let volunteers = (0..s.volunteers)
            .map(|_| spot(&mut rng))
            .collect::<Result<_, _>>()?;
        let seniors = (0..s.seniors)
            .map(|_| spot(&mut rng))
            .collect::<Result<_, _>>()?;
        let start = Timestamp::UNIX_EPOCH;
        let mut presses: Vec<(Timestamp, usize)> = (0..s.presses)
            .map(|_| {
                let at = s.duration.mul_f64(rng.random::<f64>());
                (after(start, at), rng.random_range(0..s.seniors))
            })
            .collect();
        presses.sort();
        Ok(Self {
            start,
            volunteers,
            seniors,
            presses,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Press(usize),
    Answer {
        alert: AlertId,
        volunteer: usize,
        accept: bool,
    },
    Arrive {
        alert: AlertId,
        volunteer: usize,
    },
    Resolve {
        alert: AlertId,
        volunteer: usize,
    },
    GiveUp(AlertId),
}

/// What the simulation knows of one alert.
struct Tally {
    senior: usize,
    pressed_at: Timestamp,
    accepted_after: Option<TimeDelta>,
    on_scene_after: Option<TimeDelta>,
    escalated: bool,
    response_breached: bool,
    arrival_breached: bool,
    given_up: bool,
}

/// What the simulation knows of one volunteer, from the effects alone.
#[derive(Default)]
struct Helper {
    pending: Option<AlertId>,
    helping: Option<AlertId>,
}

struct Run<'a> {
    s: &'a Scenario,
    layout: &'a Layout,
    d: Dispatcher,
    now: Timestamp,
    queue: BinaryHeap<Reverse<(Timestamp, u64, Event)>>,
    seq: u64,
    rng: StdRng,
    ids: Vec<VolunteerId>,
    index: HashMap<VolunteerId, usize>,
    helpers: Vec<Helper>,
    alerts: HashMap<AlertId, Tally>,
    presses: u64,
    offers: u64,
    double_offers: u64,
}

/// Plays the scenario once with these rules.
fn play(s: &Scenario, layout: &Layout, fanout: usize, timeout: Duration) -> SweepRow {
    let mut run = Run::new(s, layout, fanout, timeout);
    run.go_on_duty();
    for (at, senior) in &layout.presses {
        run.schedule(*at, Event::Press(*senior));
    }
    run.drain();
    run.row()
}

/// An id the simulation makes up; always a valid slug.
fn generated<T>(s: &str) -> T
where
    T: TryFrom<String>,
    T::Error: std::fmt::Debug,
{
    T::try_from(s.to_string()).unwrap_or_else(|e| panic!("{s} is a generated slug: {e:?}"))
}

impl<'a> Run<'a> {
    fn new(s: &'a Scenario, layout: &'a Layout, fanout: usize, timeout: Duration) -> Self {
        let rules = Rules {
            offer_fanout: fanout,
            offer_timeout: timeout,
            volunteer_location_max_age: LOCATION_NEVER_STALE,
            ..s.rules.clone()
        };
        let ids: Vec<VolunteerId> = (0..s.volunteers)
            .map(|i| generated(&format!("v{i}")))
            .collect();
        Run {
            s,
            layout,
            d: Dispatcher::new(rules),
            now: layout.start,
            queue: BinaryHeap::new(),
            seq: 0,
            // Answers come from their own stream, apart from the layout's.
            rng: StdRng::seed_from_u64(s.seed ^ 0x5eed_0fa1),
            index: ids.iter().cloned().zip(0..).collect(),
            helpers: (0..s.volunteers).map(|_| Helper::default()).collect(),
            ids,
            alerts: HashMap::new(),
            presses: 0,
            offers: 0,
            double_offers: 0,
        }
    }

    fn go_on_duty(&mut self) {
        for (i, v) in self.ids.clone().into_iter().enumerate() {
            let position = self.layout.volunteers[i];
            let commands = [
                Command::RegisterVolunteer {
                    volunteer_id: v.clone(),
                    name: format!("Volunteer {i}"),
                },
                Command::SetDuty {
                    volunteer_id: v.clone(),
                    on_duty: true,
                },
                Command::SetLocation {
                    volunteer_id: v,
                    position,
                },
            ];
            for c in commands {
                // A registered volunteer's duty and location are always taken.
                let _ = self.exec(c);
            }
        }
    }

    fn schedule(&mut self, at: Timestamp, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, event)));
    }

    /// Events and deadlines in time order (a deadline first on a tie)
    /// until nothing is left to happen.
    fn drain(&mut self) {
        loop {
            let next_event = self.queue.peek().map(|Reverse((at, _, _))| *at);
            match (self.d.next_deadline(), next_event) {
                (None, None) => break,
                (Some(deadline), e) if e.is_none_or(|e| deadline <= e) => {
                    self.now = self.now.max(deadline);
                    let _ = self.exec(Command::Tick);
                }
                _ => {
                    let Some(Reverse((at, _, event))) = self.queue.pop() else {
                        break;
                    };
                    self.now = self.now.max(at);
                    self.happen(event);
                }
            }
        }
    }

    /// Runs a command and takes in what it caused.
    fn exec(&mut self, command: Command) -> Result<Reply, DispatchError> {
        let mut fx = Effects::default();
        let result = self.d.handle(self.now, command, &mut fx);
        self.absorb(fx);
        result
    }

    fn happen(&mut self, event: Event) {
        match event {
            Event::Press(senior) => self.press(senior),
            Event::Answer {
                alert,
                volunteer,
                accept: true,
            } => {
                let accepted = self.exec(Command::Accept {
                    alert_id: alert.clone(),
                    volunteer_id: self.ids[volunteer].clone(),
                });
                // Too late (expired) or taken by another: nothing to do.
                if accepted.is_ok() {
                    let walk = self.walk(&alert, volunteer);
                    self.schedule(after(self.now, walk), Event::Arrive { alert, volunteer });
                }
            }
            Event::Answer {
                alert,
                volunteer,
                accept: false,
            } => {
                // Declining an offer that already ended changes nothing.
                let _ = self.exec(Command::Decline {
                    alert_id: alert,
                    volunteer_id: self.ids[volunteer].clone(),
                });
            }
            Event::Arrive { alert, volunteer } => {
                let arrived = self.exec(Command::Arrive {
                    alert_id: alert.clone(),
                    volunteer_id: self.ids[volunteer].clone(),
                });
                if arrived.is_ok() {
                    let done = after(self.now, self.s.on_scene);
                    self.schedule(done, Event::Resolve { alert, volunteer });
                }
            }
            Event::Resolve { alert, volunteer } => {
                let v = self.ids[volunteer].clone();
                let mut fx = Effects::default();
                let resolve = Command::Resolve {
                    alert_id: alert.clone(),
                    by: Actor::Volunteer(v),
                    outcome: "helped".to_string(),
                    note: None,
                };
                if self.d.handle(self.now, resolve, &mut fx).is_ok() {
                    // Free before the effects: they may offer the next alert.
                    self.helpers[volunteer].helping = None;
                }
                self.absorb(fx);
            }
            Event::GiveUp(alert) => {
                let waiting = self
                    .d
                    .alert(&alert)
                    .is_some_and(|a| a.accepted_at.is_none());
                if waiting {
                    let cancel = Command::Cancel {
                        alert_id: alert.clone(),
                        by: Actor::Operator,
                        reason: Some("no volunteer accepted (simulated)".to_string()),
                    };
                    if self.exec(cancel).is_ok() {
                        if let Some(t) = self.alerts.get_mut(&alert) {
                            t.given_up = true;
                        }
                    }
                }
            }
        }
    }

    fn press(&mut self, senior: usize) {
        self.presses += 1;
        let n = self.presses;
        let press = Press {
            device_id: generated::<DeviceId>(&format!("b{senior}")),
            event_id: generated::<EventId>(&format!("e{n}")),
            kind: PressKind::Sos,
            device_ts: None,
            position: Some(self.layout.seniors[senior]),
            senior: SeniorCard {
                id: generated::<SeniorId>(&format!("s{senior}")),
                name: format!("Senior {senior}"),
                address: None,
                notes: None,
            },
            home: None,
            new_alert_id: generated::<AlertId>(&format!("a{n}")),
        };
        let mut fx = Effects::default();
        let reply = self.d.handle(self.now, Command::Press(press), &mut fx);
        if let Ok(Reply::Press {
            outcome: PressOutcome::Opened,
            alert_id: Some(id),
        }) = reply
        {
            // Known before its effects, which may already accept or escalate.
            self.alerts.insert(
                id.clone(),
                Tally {
                    senior,
                    pressed_at: self.now,
                    accepted_after: None,
                    on_scene_after: None,
                    escalated: false,
                    response_breached: false,
                    arrival_breached: false,
                    given_up: false,
                },
            );
            let give_up = after(self.now, self.s.give_up_after);
            self.schedule(give_up, Event::GiveUp(id));
        }
        self.absorb(fx);
    }

    /// How long the volunteer walks from their spot to the alert's senior.
    fn walk(&self, alert: &AlertId, volunteer: usize) -> Duration {
        let Some(t) = self.alerts.get(alert) else {
            return Duration::ZERO;
        };
        let d = self.layout.volunteers[volunteer].distance_m(&self.layout.seniors[t.senior]);
        Duration::from_secs_f64(d / self.d.rules().volunteer_speed)
    }

    /// Takes in what a command caused: offers made and closed, volunteers'
    /// answers to draw, milestones and breaches to count.
    fn absorb(&mut self, fx: Effects) {
        for o in &fx.offers {
            let Some(&i) = self.index.get(&o.volunteer_id) else {
                continue;
            };
            let h = &mut self.helpers[i];
            match o.outcome {
                None => {
                    self.offers += 1;
                    if h.pending.is_some() || h.helping.is_some() {
                        self.double_offers += 1;
                    }
                    h.pending = Some(o.alert_id.clone());
                }
                Some(outcome) => {
                    if h.pending.as_ref() == Some(&o.alert_id) {
                        h.pending = None;
                    }
                    if outcome == OfferOutcome::Accepted {
                        h.helping = Some(o.alert_id.clone());
                    }
                }
            }
        }
        for m in &fx.milestones {
            if m.kind == crate::domain::MilestoneKind::FirstAccept {
                if let Some(t) = self.alerts.get_mut(&m.alert_id) {
                    t.accepted_after = Some(m.since_press);
                }
            }
        }
        for (id, ev) in &fx.timeline {
            let Some(t) = self.alerts.get_mut(id) else {
                continue;
            };
            match ev.kind {
                TimelineKind::Escalated => t.escalated = true,
                TimelineKind::ResponseBreached => t.response_breached = true,
                TimelineKind::ArrivalBreached => t.arrival_breached = true,
                TimelineKind::OnScene => t.on_scene_after = Some(ev.at - t.pressed_at),
                _ => {}
            }
        }
        for out in fx.outgoing {
            if let Outgoing::Phone(v, PhoneMessage::Offer { alert_id, .. }) = out {
                self.answer(&v, alert_id);
            }
        }
    }

    /// Draws what the volunteer will do with an offer just made.
    fn answer(&mut self, v: &VolunteerId, alert: AlertId) {
        let Some(&volunteer) = self.index.get(v) else {
            return;
        };
        let accept = self.rng.random::<f64>() < self.s.accept;
        if !accept && self.rng.random::<f64>() >= self.s.decline {
            return; // ignored: the offer expires
        }
        let at = after(self.now, self.s.answer_delay.draw(&mut self.rng));
        self.schedule(
            at,
            Event::Answer {
                alert,
                volunteer,
                accept,
            },
        );
    }

    fn row(self) -> SweepRow {
        let rules = self.d.rules();
        let response_target = delta(rules.response_target);
        let arrival_target = delta(rules.arrival_target);
        let alerts = self.alerts.len() as u64;
        let count =
            |f: &dyn Fn(&Tally) -> bool| self.alerts.values().filter(|t| f(t)).count() as u64;
        let answered_in_target = count(&|t| t.accepted_after.is_some_and(|d| d <= response_target));
        let arrived_in_target = count(&|t| t.on_scene_after.is_some_and(|d| d <= arrival_target));
        let mut response_s: Vec<f64> = self
            .alerts
            .values()
            .map(|t| {
                t.accepted_after.map_or(f64::INFINITY, |d| {
                    d.num_milliseconds().max(0) as f64 / 1000.0
                })
            })
            .collect();
        response_s.sort_by(f64::total_cmp);
        let pct = |p| percentile(&response_s, p).filter(|s| s.is_finite());
        // Every count is 0 when there are no alerts: 0, not NaN.
        let ratio = |n: u64| n as f64 / alerts.max(1) as f64;
        SweepRow {
            fanout: rules.offer_fanout,
            offer_timeout: rules.offer_timeout,
            response_target: rules.response_target,
            arrival_target: rules.arrival_target,
            presses: self.presses,
            alerts,
            answered: count(&|t| t.accepted_after.is_some()),
            answered_in_target,
            response_share: ratio(answered_in_target),
            response_p50_s: pct(50),
            response_p90_s: pct(90),
            response_p99_s: pct(99),
            arrived_in_target,
            arrival_share: ratio(arrived_in_target),
            escalated: count(&|t| t.escalated),
            response_breaches: count(&|t| t.response_breached),
            arrival_breaches: count(&|t| t.arrival_breached),
            given_up: count(&|t| t.given_up),
            offers: self.offers,
            offers_per_alert: ratio(self.offers),
            double_offers: self.double_offers,
        }
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

// ----- the command line ---------------------------------------------------

/// `onepress simulate --sweep`: the scenario and the grid to try.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Volunteers on duty in the area.
    #[arg(long, default_value_t = 40)]
    pub volunteers: usize,
    /// Seniors with a band in the area.
    #[arg(long, default_value_t = 2000)]
    pub seniors: usize,
    /// Radius of the area, in metres.
    #[arg(long, default_value_t = 1500.0)]
    pub radius_m: f64,
    /// Centre of the area.
    #[arg(long, default_value_t = 30.51, allow_negative_numbers = true)]
    pub centre_lat: f64,
    #[arg(long, default_value_t = 120.68, allow_negative_numbers = true)]
    pub centre_lon: f64,
    /// Presses a day, at random moments.
    #[arg(long, default_value_t = 48.0)]
    pub presses_per_day: f64,
    /// Days to simulate (p99 needs a few hundred presses at least).
    #[arg(long, default_value_t = 1.0)]
    pub days: f64,
    /// Chance that a volunteer accepts an offer.
    #[arg(long, default_value_t = 0.05)]
    pub accept: f64,
    /// Of the offers not accepted, the share declined (the rest are ignored).
    #[arg(long, default_value_t = 0.5)]
    pub decline: f64,
    /// Median time to accept or decline.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub answer_median: Duration,
    /// Spread of the log-normal answer time (0: always the median).
    #[arg(long, default_value_t = 0.8)]
    pub answer_sigma: f64,
    /// Walking speed, metres per second.
    #[arg(long, default_value_t = 1.4)]
    pub walking_speed: f64,
    /// From arrival to resolving: the volunteer is busy until then.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub on_scene: Duration,
    /// An alert nobody accepted is called off this long after its press.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub give_up: Duration,
    /// The response target.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub response_target: Duration,
    /// The arrival target.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub arrival_target: Duration,
    /// Fan-outs to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 3, 5, 8])]
    pub fanouts: Vec<usize>,
    /// Offer timeouts to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["30s", "45s", "60s", "90s"], value_parser = humantime::parse_duration)]
    pub timeouts: Vec<Duration>,
    /// Share of alerts to answer within the response target (rows that
    /// reach it are marked).
    #[arg(long, default_value_t = 0.99)]
    pub target: f64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print the rows as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl SweepArgs {
    /// The scenario these arguments describe.
    pub fn scenario(&self) -> anyhow::Result<Scenario> {
        let centre = Position::new(self.centre_lat, self.centre_lon)
            .map_err(|e| anyhow::anyhow!("--centre-lat/--centre-lon: {e}"))?;
        let presses = self.presses_per_day * self.days;
        if !(presses.is_finite() && presses >= 0.0) {
            anyhow::bail!("--presses-per-day and --days must be positive numbers");
        }
        if !(self.days.is_finite() && self.days > 0.0 && self.days <= 3650.0) {
            anyhow::bail!("--days must be more than 0 and at most 3650");
        }
        Ok(Scenario {
            volunteers: self.volunteers,
            seniors: self.seniors,
            centre,
            radius_m: self.radius_m,
            presses: presses.round() as usize,
            duration: Duration::from_secs_f64(self.days * 24.0 * 3600.0),
            accept: self.accept,
            decline: self.decline,
            answer_delay: AnswerDelay {
                median: self.answer_median,
                sigma: self.answer_sigma,
            },
            on_scene: self.on_scene,
            give_up_after: self.give_up,
            rules: Rules {
                response_target: self.response_target,
                arrival_target: self.arrival_target,
                volunteer_speed: self.walking_speed,
                ..Rules::default()
            },
            seed: self.seed,
        })
    }

    /// What `run_cli` prints.
    pub fn output(&self) -> anyhow::Result<String> {
        let scenario = self.scenario()?;
        let rows = sweep(&scenario, &self.fanouts, &self.timeouts)?;
        if self.json {
            return Ok(serde_json::to_string_pretty(&rows)? + "\n");
        }
        Ok(format!(
            "{} volunteers and {} seniors within {} m; {} presses over {:.1} days; \
             offers accepted {} of the time after a median {}; seed {}\n\n{}",
            scenario.volunteers,
            scenario.seniors,
            scenario.radius_m,
            scenario.presses,
            scenario.duration.as_secs_f64() / 86_400.0,
            share(scenario.accept),
            humantime::format_duration(scenario.answer_delay.median),
            scenario.seed,
            render_table(&rows, self.target),
        ))
    }
}

/// Runs the sweep the arguments describe and prints its table (or JSON).
pub fn run_cli(args: SweepArgs) -> anyhow::Result<()> {
    print!("{}", args.output()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centre() -> Position {
        Position::new(30.51, 120.68).unwrap()
    }

    /// A small day: 40 volunteers, 60 presses.
    fn scenario() -> Scenario {
        Scenario {
            presses: 60,
            ..Scenario::community(centre())
        }
    }

    /// Everyone accepts every offer at once.
    fn eager() -> Scenario {
        Scenario {
            accept: 1.0,
            answer_delay: AnswerDelay {
                median: Duration::ZERO,
                sigma: 0.0,
            },
            ..scenario()
        }
    }

    fn one(s: &Scenario, fanout: usize, timeout_s: u64) -> SweepRow {
        let layout = Layout::draw(s).unwrap();
        play(s, &layout, fanout, Duration::from_secs(timeout_s))
    }

    #[test]
    fn every_press_is_answered_at_once_when_everyone_accepts_at_once() {
        let r = one(&eager(), 1, 45);
        assert_eq!(r.alerts, 60);
        assert_eq!(r.answered_in_target, r.alerts);
        assert_eq!(r.response_share, 1.0);
        assert_eq!(r.response_p99_s, Some(0.0));
        assert_eq!((r.escalated, r.response_breaches, r.given_up), (0, 0, 0));
        assert_eq!(r.offers, r.alerts, "one offer each, accepted");
        // 1.5 km at most... well, 3 km across the disc at 1.4 m/s is 36 min:
        // most arrive within 10 min, not all.
        assert!(r.arrival_share > 0.5 && r.arrival_share <= 1.0, "{r:?}");
    }

    #[test]
    fn with_nobody_on_duty_nothing_is_answered_and_every_press_breaches() {
        let s = Scenario {
            volunteers: 0,
            ..scenario()
        };
        let r = one(&s, 3, 45);
        assert_eq!(r.alerts, 60);
        assert_eq!((r.answered, r.offers, r.arrived_in_target), (0, 0, 0));
        assert_eq!(r.escalated, r.alerts);
        assert_eq!(r.response_breaches, r.alerts);
        assert_eq!(r.arrival_breaches, r.alerts);
        assert_eq!(r.given_up, r.alerts);
        assert_eq!((r.response_p50_s, r.response_p99_s), (None, None));
        assert_eq!(r.response_share, 0.0);
    }

    #[test]
    fn as_many_presses_are_played_as_the_scenario_asks() {
        for presses in [0, 1, 17, 250] {
            let s = Scenario {
                presses,
                ..scenario()
            };
            let rows = sweep(&s, &[1, 4], &[Duration::from_secs(30)]).unwrap();
            for r in rows {
                assert_eq!(r.presses, presses as u64);
                // 2000 seniors: a press rarely finds its senior's alert active.
                assert!(r.alerts <= r.presses && r.alerts + 3 >= r.presses, "{r:?}");
            }
        }
        // One senior pressing 100 times a day joins the alert still active.
        let s = Scenario {
            seniors: 1,
            presses: 100,
            ..scenario()
        };
        let r = one(&s, 1, 45);
        assert_eq!(r.presses, 100);
        assert!(r.alerts < 100, "{r:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_table_and_another_seed_another() {
        let grid = |s: &Scenario| {
            sweep(
                s,
                &[1, 3],
                &[Duration::from_secs(30), Duration::from_secs(90)],
            )
            .unwrap()
        };
        let a = grid(&scenario());
        assert_eq!(a, grid(&scenario()));
        assert_eq!(
            render_table(&a, 0.99),
            render_table(&grid(&scenario()), 0.99)
        );
        let other = Scenario {
            seed: 8,
            ..scenario()
        };
        assert_ne!(a, grid(&other));
    }

    #[test]
    fn a_wider_fan_out_answers_more_presses_in_time() {
        // 1 in 5 accepts. One at a time, 60 s each, three offers fit in
        // three minutes: about 1 - 0.8^3 = 49 % answered in time. Five at
        // a time, fifteen offers: about 96 %. Summed over seeds so that no
        // one draw decides.
        let s = Scenario {
            accept: 0.2,
            presses: 100,
            ..scenario()
        };
        let (mut narrow, mut wide) = (0.0, 0.0);
        for seed in 1..=5 {
            let s = Scenario { seed, ..s.clone() };
            let rows = sweep(&s, &[1, 5], &[Duration::from_secs(60)]).unwrap();
            narrow += rows[0].response_share / 5.0;
            wide += rows[1].response_share / 5.0;
            assert!(rows[1].offers_per_alert > rows[0].offers_per_alert);
        }
        assert!((0.35..0.65).contains(&narrow), "fan-out 1: {narrow}");
        assert!(wide > 0.9, "fan-out 5: {wide}");
    }

    #[test]
    fn an_offer_timeout_shorter_than_the_answer_loses_every_accept() {
        let slow = Scenario {
            answer_delay: AnswerDelay {
                median: Duration::from_secs(40),
                sigma: 0.0,
            },
            ..eager()
        };
        let cut = one(&slow, 2, 30);
        assert_eq!(cut.answered, 0, "{cut:?}");
        assert_eq!(cut.response_breaches, cut.alerts);
        let waits = one(&slow, 2, 45);
        assert_eq!(waits.answered_in_target, waits.alerts);
        assert_eq!(waits.response_p50_s, Some(40.0));
    }

    #[test]
    fn a_busy_volunteer_is_never_offered_another_alert() {
        // Three volunteers, 200 presses a day, an hour on scene each:
        // volunteers are busy much of the time and alerts wait for them.
        let s = Scenario {
            volunteers: 3,
            presses: 200,
            accept: 0.5,
            on_scene: Duration::from_secs(3600),
            ..scenario()
        };
        for fanout in [1, 2, 3] {
            let r = one(&s, fanout, 30);
            assert_eq!(r.double_offers, 0);
            assert!(r.offers > 0);
            assert!(r.escalated > 0, "load never mattered: {r:?}");
        }
    }

    #[test]
    fn an_offer_to_a_volunteer_holding_one_or_helping_is_counted() {
        // The check itself, fed effects by hand: it would see a dispatcher
        // that offered a busy volunteer a second alert.
        let s = scenario();
        let layout = Layout::draw(&s).unwrap();
        let mut run = Run::new(&s, &layout, 1, Duration::from_secs(45));
        let offer = |alert: &str, outcome| {
            let mut fx = Effects::default();
            fx.offers.push(crate::domain::OfferRecord {
                alert_id: generated(alert),
                volunteer_id: generated("v0"),
                offered_at: layout.start,
                expires_at: layout.start,
                distance_m: 0,
                eta_s: 0,
                outcome,
                closed_at: None,
            });
            fx
        };
        run.absorb(offer("a1", None));
        assert_eq!((run.offers, run.double_offers), (1, 0));
        run.absorb(offer("a2", None));
        assert_eq!(run.double_offers, 1, "a second pending offer");
        run.absorb(offer("a1", Some(OfferOutcome::Accepted)));
        run.absorb(offer("a2", Some(OfferOutcome::Withdrawn)));
        run.absorb(offer("a3", None));
        assert_eq!(run.double_offers, 2, "an offer while helping");
    }

    #[test]
    fn a_volunteer_helping_is_not_there_for_the_next_press() {
        // One volunteer who accepts everything at once: a press while they
        // help (30 min on scene) waits with nobody to offer it to.
        let s = Scenario {
            volunteers: 1,
            presses: 100,
            ..eager()
        };
        let r = one(&s, 1, 45);
        assert!(r.escalated > 0 && r.answered < r.alerts, "{r:?}");
        let free = Scenario {
            on_scene: Duration::ZERO,
            presses: 10,
            ..s
        };
        let r = one(&free, 1, 45);
        assert!(r.answered > 0);
    }

    #[test]
    fn invalid_scenarios_and_grids_are_refused() {
        let bad = |s: Scenario| sweep(&s, &[1], &[Duration::from_secs(45)]).unwrap_err();
        assert_eq!(
            bad(Scenario {
                accept: 1.5,
                ..scenario()
            }),
            ScenarioError::Probability {
                name: "accept",
                value: 1.5
            }
        );
        assert!(matches!(
            bad(Scenario {
                decline: f64::NAN,
                ..scenario()
            }),
            ScenarioError::Probability {
                name: "decline",
                ..
            }
        ));
        assert_eq!(
            bad(Scenario {
                radius_m: 0.0,
                ..scenario()
            }),
            ScenarioError::Radius(0.0)
        );
        assert_eq!(
            bad(Scenario {
                duration: Duration::ZERO,
                ..scenario()
            }),
            ScenarioError::Duration
        );
        assert_eq!(
            bad(Scenario {
                seniors: 0,
                ..scenario()
            }),
            ScenarioError::NoSeniors
        );
        let mut slow = scenario();
        slow.rules.volunteer_speed = 0.0;
        assert_eq!(bad(slow), ScenarioError::Speed(0.0));
        let mut spread = scenario();
        spread.answer_delay.sigma = -1.0;
        assert_eq!(bad(spread), ScenarioError::Sigma(-1.0));
        let s = scenario();
        assert_eq!(
            sweep(&s, &[0], &[Duration::from_secs(45)]),
            Err(ScenarioError::Fanout)
        );
        assert_eq!(
            sweep(&s, &[1], &[Duration::ZERO]),
            Err(ScenarioError::Timeout)
        );
    }

    #[test]
    fn the_table_marks_the_rows_that_meet_the_target() {
        let rows = sweep(
            &scenario(),
            &[1, 8],
            &[Duration::from_secs(30), Duration::from_secs(90)],
        )
        .unwrap();
        let table = render_table(&rows, 0.99);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 1 + rows.len() + 1, "{table}");
        assert!(lines[0].contains("≤3m answered"), "{table}");
        for (line, r) in lines[1..=rows.len()].iter().zip(&rows) {
            assert_eq!(line.starts_with('*'), r.response_share >= 0.99, "{table}");
        }
        assert_eq!(share(0.98999), "98.9 %");
        assert_eq!(seconds(Some(125.4)), "2m05s");
        assert_eq!(seconds(None), "never");
    }

    #[test]
    fn rows_serialize_with_humantime_durations() {
        let rows = sweep(&scenario(), &[2], &[Duration::from_secs(45)]).unwrap();
        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(json[0]["fanout"], 2);
        assert_eq!(json[0]["offer_timeout"], "45s");
        assert_eq!(json[0]["response_target"], "3m");
    }

    #[test]
    fn the_command_line_reads_lists_and_durations() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            sweep: SweepArgs,
        }
        let cli = Cli::try_parse_from([
            "sweep",
            "--volunteers",
            "10",
            "--fanouts",
            "1,3",
            "--timeouts",
            "20s,1m",
            "--days",
            "0.5",
            "--json",
        ])
        .unwrap();
        let a = cli.sweep;
        assert_eq!(a.fanouts, vec![1, 3]);
        assert_eq!(
            a.timeouts,
            vec![Duration::from_secs(20), Duration::from_secs(60)]
        );
        let s = a.scenario().unwrap();
        assert_eq!((s.volunteers, s.presses), (10, 24));
        let rows: serde_json::Value = serde_json::from_str(&a.output().unwrap()).unwrap();
        assert_eq!(rows.as_array().map(Vec::len), Some(4));
        let defaults = Cli::try_parse_from(["sweep"]).unwrap().sweep;
        assert_eq!(defaults.fanouts, vec![1, 2, 3, 5, 8]);
        assert_eq!(defaults.timeouts.len(), 4);
        assert!(Cli::try_parse_from(["sweep", "--timeouts", "soon"]).is_err());
        let bad = Cli::try_parse_from(["sweep", "--accept", "2"])
            .unwrap()
            .sweep;
        assert!(bad.output().is_err());
    }

    /// The table in docs/sweep.md:
    /// `cargo test --lib sweep -- --ignored --nocapture print_table`.
    #[test]
    #[ignore]
    fn print_table() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            sweep: SweepArgs,
        }
        let args = Cli::parse_from(["sweep", "--days", "30"]).sweep;
        let started = std::time::Instant::now();
        let out = args.output().unwrap();
        println!("{out}");
        println!("({:?} for the whole grid)", started.elapsed());
    }
}
