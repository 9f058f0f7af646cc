//! The live simulator: plays bands and volunteers' phones against a running
//! service over real MQTT and HTTP, as the contract has them log in and
//! behave, and reports what it saw (see `report`). Steps: register seniors,
//! bands and volunteers; log the bands (or one gateway) and the phones (or
//! one admin watcher) in; put the volunteers on duty; press at a rate or in
//! a burst while bands send heartbeats and resend what was not `received`
//! in time, and volunteers answer offers, walk, arrive and resolve; wait
//! until everything pressed is settled or the drain time is over; read the
//! alerts back from the store; clean up (cancel what is left, volunteers off
//! duty) unless asked to keep it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::QoS;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::api::{Acted, Api, ApiError, StoredAlert};
use super::link::{Incoming, Link, LinkError, Links, Login};
use super::model::{Answer, Area, Behaviour, PlanError, exponential_s};
use super::report::Report;
use super::tally::{Progress, Tally};
use crate::domain::Position;

/// With more bands than this, bands speak through one gateway by default:
/// one MQTT connection per band does not scale to a province.
pub const GATEWAY_ABOVE: usize = 200;

/// How the simulated bands reach the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// One gateway login speaks for every band.
    Gateway,
    /// Each band logs in with its own secret.
    Bands,
}

impl Via {
    /// The default for a number of bands.
    pub fn for_bands(bands: usize) -> Via {
        if bands > GATEWAY_ABOVE {
            Via::Gateway
        } else {
            Via::Bands
        }
    }
}

/// When the presses are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Evenly spaced, this many a second.
    Steady(f64),
    /// At random (a Poisson process), this many a second on average.
    Poisson(f64),
    /// All of them within one second.
    Burst,
}

/// What to simulate against which service.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The service's HTTP base address, e.g. `http://127.0.0.1:8080`.
    pub http: String,
    /// The broker's host and port.
    pub mqtt: (String, u16),
    pub operator_token: String,
    /// The admin login (`ONEPRESS_MQTT_ADMIN`): when set, one connection
    /// watches every phone's offers instead of one login per volunteer.
    pub mqtt_admin: Option<(String, String)>,
    pub bands: usize,
    pub volunteers: usize,
    pub presses: usize,
    pub schedule: Schedule,
    /// The share of presses that are falls (the rest: the button).
    pub falls: f64,
    /// Each band's heartbeat period; None: no heartbeats.
    pub heartbeat: Option<Duration>,
    pub via: Via,
    /// Median time from an offer to its answer (log-normal).
    pub accept_delay: Duration,
    pub decline: f64,
    pub ignore: f64,
    /// Volunteers' walking speed, metres a second.
    pub speed_mps: f64,
    /// Time on scene before resolving.
    pub on_scene: Duration,
    /// How often each volunteer shares their location again.
    pub location_every: Option<Duration>,
    pub center: (f64, f64),
    pub radius_m: f64,
    pub seed: u64,
    /// Prefix of every id the run registers.
    pub prefix: String,
    /// A band publishes an event again when not `received` within this.
    pub resend_after: Duration,
    /// How long to wait after the last press for everything to settle.
    pub drain: Duration,
    /// Leave the run's alerts and volunteers as they are at the end.
    pub keep: bool,
    /// How long logins may take to be accepted and subscribed.
    pub login_timeout: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            http: "http://127.0.0.1:8080".into(),
            mqtt: ("127.0.0.1".into(), 1884),
            operator_token: String::new(),
            mqtt_admin: None,
            bands: 100,
            volunteers: 50,
            presses: 50,
            schedule: Schedule::Poisson(5.0),
            falls: 0.2,
            heartbeat: Some(Duration::from_secs(60)),
            via: Via::Bands,
            accept_delay: Duration::from_secs(10),
            decline: 0.1,
            ignore: 0.05,
            speed_mps: 1.4,
            on_scene: Duration::from_secs(5),
            location_every: Some(Duration::from_secs(300)),
            center: (30.51, 120.68),
            radius_m: 2000.0,
            seed: 1,
            prefix: run_id(),
            resend_after: Duration::from_secs(10),
            drain: Duration::from_secs(900),
            keep: false,
            login_timeout: Duration::from_secs(60),
        }
    }
}

/// A short random run id, `sim-` and six letters or digits.
pub fn run_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..6)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("sim-{tail}")
}

/// What stops a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid plan: {0}")]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("stopped before the first press")]
    Stopped,
}

impl Plan {
    fn check(&self) -> Result<(Area, Behaviour), PlanError> {
        let prefix_ok = (1..=40).contains(&self.prefix.len())
            && self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !prefix_ok {
            return Err(PlanError::new(
                "prefix",
                "must be 1-40 letters, digits, '-' or '_'",
            ));
        }
        if self.bands == 0 {
            return Err(PlanError::new("bands", "must be at least 1"));
        }
        if let Schedule::Steady(r) | Schedule::Poisson(r) = self.schedule {
            if !(r.is_finite() && r > 0.0) {
                return Err(PlanError::new("rate", "must be more than 0 a second"));
            }
        }
        if !(0.0..=1.0).contains(&self.falls) {
            return Err(PlanError::new("falls", "must be a probability in [0, 1]"));
        }
        if !(self.speed_mps.is_finite() && self.speed_mps > 0.0) {
            return Err(PlanError::new("speed", "must be more than 0 m/s"));
        }
        if self.heartbeat.is_some_and(|h| h.is_zero())
            || self.location_every.is_some_and(|l| l.is_zero())
        {
            return Err(PlanError::new("period", "a period must be more than 0"));
        }
        let center = Position::new(self.center.0, self.center.1)
            .map_err(|e| PlanError::new("center", e.to_string()))?;
        let area = Area::new(center, self.radius_m)?;
        let behaviour = Behaviour::new(self.accept_delay.as_secs_f64(), self.decline, self.ignore)?;
        Ok((area, behaviour))
    }

    /// When press `k` (from 0) is due, after the first.
    fn offsets(&self, rng: &mut impl Rng) -> Vec<Duration> {
        let n = self.presses;
        let mut at = 0.0;
        (0..n)
            .map(|k| {
                let s = match self.schedule {
                    Schedule::Steady(r) => k as f64 / r,
                    Schedule::Burst => k as f64 / n.max(1) as f64,
                    Schedule::Poisson(r) => {
                        if k > 0 {
                            at += exponential_s(1.0 / r, rng);
                        }
                        at
                    }
                };
                Duration::from_secs_f64(s)
            })
            .collect()
    }
}

/// The run's people and places, drawn from the seed.
struct World {
    seniors: Vec<String>,
    devices: Vec<String>,
    homes: Vec<Position>,
    volunteers: Vec<String>,
    spots: Vec<Position>,
}

impl World {
    fn draw(plan: &Plan, area: &Area, rng: &mut StdRng) -> Self {
        let p = &plan.prefix;
        Self {
            seniors: (0..plan.bands).map(|i| format!("{p}-s{i}")).collect(),
            devices: (0..plan.bands).map(|i| format!("{p}-b{i}")).collect(),
            homes: (0..plan.bands).map(|_| area.sample(rng)).collect(),
            volunteers: (0..plan.volunteers).map(|i| format!("{p}-v{i}")).collect(),
            spots: (0..plan.volunteers).map(|_| area.sample(rng)).collect(),
        }
    }
}

/// How the bands publish.
enum Bands {
    Gateway(Link),
    Each(Vec<Link>),
}

impl Bands {
    fn link(&self, band: usize) -> Option<&Link> {
        match self {
            Bands::Gateway(l) => Some(l),
            Bands::Each(ls) => ls.get(band),
        }
    }

    fn all(&self) -> Vec<&Link> {
        match self {
            Bands::Gateway(l) => vec![l],
            Bands::Each(ls) => ls.iter().collect(),
        }
    }
}

/// Everything a running simulation shares between its tasks.
struct Sim {
    plan: Plan,
    world: World,
    api: Api,
    behaviour: Behaviour,
    tokens: Vec<String>,
    bands: Bands,
    tally: Mutex<Tally>,
    rng: Mutex<StdRng>,
    /// Volunteers' actors stop on it.
    actors: CancellationToken,
    /// Heartbeats, resends, location refreshes and the progress bar stop on it.
    background: CancellationToken,
}

/// Registrations in flight at once.
const CONCURRENCY: usize = 16;

impl Sim {
    fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rng(&self) -> MutexGuard<'_, StdRng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn http_error(&self, e: &ApiError) {
        tracing::debug!(error = %e, "simulated call failed");
        self.tally().counters.http_errors += 1;
    }

    /// An alert event, as the band publishes it (again, when resent).
    fn press_payload(&self, band: usize, event_id: &str, fall: bool, at: DateTime<Utc>) -> String {
        let home = self.world.homes[band];
        json!({
            "event_id": event_id,
            "kind": if fall { "fall" } else { "sos" },
            "ts": at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "lat": home.lat(),
            "lon": home.lon(),
            "accuracy_m": 15,
            "battery": battery(band),
        })
        .to_string()
    }

    async fn publish(&self, band: usize, topic: &str, qos: QoS, payload: String) {
        let Some(link) = self.bands.link(band) else {
            return;
        };
        let topic = format!("wristbands/{}/{topic}", self.world.devices[band]);
        if let Err(e) = link.publish(topic, qos, payload).await {
            tracing::debug!(error = %e, "simulated publish failed");
        }
    }

    /// Sleeps, or returns false when the actors are told to stop.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.actors.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

/// A band's battery level: somewhere between 40 and 99, fixed per band.
fn battery(band: usize) -> u64 {
    40 + (band as u64 * 37) % 60
}

/// A message on a phone's topic (the fields the simulator reads).
#[derive(Deserialize)]
struct PhoneMessage {
    #[serde(rename = "type")]
    kind: String,
    alert_id: String,
    distance_m: Option<f64>,
    lat: Option<f64>,
    lon: Option<f64>,
    expires_at: Option<DateTime<Utc>>,
}

/// A notice on a band's topic.
#[derive(Deserialize)]
struct BandNotice {
    alert_id: Option<String>,
    event_id: Option<String>,
    state: String,
}

/// Runs a plan to the end: see the module's comment.
pub async fn run(plan: Plan, progress: bool) -> anyhow::Result<Report> {
    run_until(plan, progress, CancellationToken::new()).await
}

/// [`run`], stopping early (and still reporting) once `stop` is cancelled.
pub async fn run_until(
    plan: Plan,
    progress: bool,
    stop: CancellationToken,
) -> anyhow::Result<Report> {
    Ok(simulate(plan, progress, stop).await?)
}

async fn simulate(plan: Plan, progress: bool, stop: CancellationToken) -> Result<Report, SimError> {
    let (area, behaviour) = plan.check()?;
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let world = World::draw(&plan, &area, &mut rng);
    let offsets = plan.offsets(&mut rng);
    let api = Api::new(&plan.http, &plan.operator_token)?;
    let bar = Bar::new(progress);
    let started = Instant::now();

    let (inbox_tx, inbox) = mpsc::unbounded_channel();
    let links_stop = CancellationToken::new();
    // However the run ends (an error included), its connections close.
    let _close_links = links_stop.clone().drop_guard();
    let links = Links {
        host: plan.mqtt.0.clone(),
        port: plan.mqtt.1,
        inbox: inbox_tx,
        reconnects: Arc::new(AtomicUsize::new(0)),
        stop: links_stop.clone(),
    };
    let (tokens, bands, _phones) = tokio::select! {
        r = set_up(&plan, &world, &api, &bar, &links) => r?,
        _ = stop.cancelled() => return Err(SimError::Stopped),
    };
    let setup_s = started.elapsed().as_secs_f64();

    let tally = Tally::new(&world.devices, &world.volunteers);
    let sim = Arc::new(Sim {
        tally: Mutex::new(tally),
        rng: Mutex::new(rng),
        plan,
        world,
        api,
        behaviour,
        tokens,
        bands,
        actors: CancellationToken::new(),
        background: CancellationToken::new(),
    });
    // However the run ends, volunteers and background tasks stop.
    let _stop_actors = sim.actors.clone().drop_guard();
    let _stop_background = sim.background.clone().drop_guard();
    tokio::spawn(observe(sim.clone(), inbox));
    tokio::spawn(heartbeats(sim.clone()));
    tokio::spawn(resends(sim.clone()));
    tokio::spawn(relocations(sim.clone()));

    // Press.
    bar.phase("pressing", sim.plan.presses as u64);
    tokio::spawn(show_progress(sim.clone(), bar.clone()));
    let t0 = Instant::now();
    for (k, offset) in offsets.iter().enumerate() {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until((t0 + *offset).into()) => {}
        }
        let (band, fall) = {
            let mut rng = sim.rng();
            let fall = rng.random::<f64>() < sim.plan.falls;
            (sim.tally().pick_band(&mut *rng), fall)
        };
        let (event_id, wall) = (format!("p{k}"), Utc::now());
        let payload = sim.press_payload(band, &event_id, fall, wall);
        sim.tally()
            .pressed(band, event_id, fall, Instant::now(), wall);
        sim.publish(band, "alert", QoS::AtLeastOnce, payload).await;
    }
    let pressing_s = t0.elapsed().as_secs_f64();

    // Drain.
    bar.phase("settling", 0);
    let deadline = Instant::now() + sim.plan.drain;
    while !sim.tally().settled() && Instant::now() < deadline && !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let run_s = t0.elapsed().as_secs_f64();
    sim.actors.cancel();
    sim.background.cancel();

    // What the store has.
    bar.phase("reading back", 0);
    let ids = sim.tally().alert_ids();
    let stored: HashMap<String, StoredAlert> = futures::stream::iter(ids)
        .map(|id| {
            let api = &sim.api;
            async move { api.alert(&id).await }
        })
        .buffer_unordered(CONCURRENCY)
        .try_filter_map(|a| async move { Ok(a) })
        .map_ok(|a| (a.id.clone(), a))
        .try_collect()
        .await?;
    let extra = extra_alerts(&sim.api.newest_alerts(1000).await?, &sim.world.devices);

    if !sim.plan.keep {
        bar.phase("cleaning up", 0);
        clean_up(&sim, &stored).await;
    }
    links_stop.cancel();
    bar.finish();

    let t = sim.tally();
    let (presses, press_to_offer, press_to_accept, alerts, offers) =
        t.findings(&sim.world.devices, &stored, extra);
    Ok(Report {
        prefix: sim.plan.prefix.clone(),
        seed: sim.plan.seed,
        bands: sim.plan.bands,
        volunteers: sim.plan.volunteers,
        via: match &sim.bands {
            Bands::Gateway(_) => "gateway".into(),
            Bands::Each(_) => "bands".into(),
        },
        phones: if sim.plan.mqtt_admin.is_some() {
            "admin".into()
        } else {
            "phones".into()
        },
        setup_s,
        pressing_s,
        run_s,
        heartbeats: t.counters.heartbeats,
        presses,
        press_to_offer,
        press_to_accept,
        alerts,
        offers,
        http_errors: t.counters.http_errors,
        mqtt_reconnects: links.reconnects.load(Ordering::Relaxed),
    })
}

/// Registers everyone, logs the bands and phones in and puts the
/// volunteers on duty: the volunteers' tokens, the bands' links, the
/// phones' links.
async fn set_up(
    plan: &Plan,
    world: &World,
    api: &Api,
    bar: &Bar,
    links: &Links,
) -> Result<(Vec<String>, Bands, Vec<Link>), SimError> {
    api.ready().await?;
    bar.phase("registering", (plan.bands + plan.volunteers) as u64);
    let (tokens, band_logins) = register(api, plan, world, bar).await?;

    bar.phase("logging in", 0);
    let bands = match band_logins {
        None => {
            let id = format!("{}-gw", plan.prefix);
            let password = api.gateway_secret(&id).await?;
            let login = Login {
                client_id: id.clone(),
                username: id,
                password,
            };
            Bands::Gateway(links.open(login, vec!["wristbands/+/notify".into()], 100_000))
        }
        Some(logins) => Bands::Each(
            logins
                .into_iter()
                .map(|l| {
                    let topic = format!("wristbands/{}/notify", l.username);
                    links.open(l, vec![topic], 1000)
                })
                .collect(),
        ),
    };
    let phones: Vec<Link> = match &plan.mqtt_admin {
        Some((user, password)) => vec![links.open(
            Login {
                client_id: format!("{}-watch", plan.prefix),
                username: user.clone(),
                password: password.clone(),
            },
            vec!["volunteers/+/offers".into()],
            1000,
        )],
        None => world
            .volunteers
            .iter()
            .zip(&tokens)
            .map(|(v, t)| {
                let login = Login {
                    client_id: v.clone(),
                    username: v.clone(),
                    password: t.clone(),
                };
                links.open(login, vec![format!("volunteers/{v}/offers")], 100)
            })
            .collect(),
    };
    for link in bands.all().into_iter().chain(&phones) {
        link.subscribed(plan.login_timeout).await?;
    }

    bar.phase("going on duty", plan.volunteers as u64);
    futures::stream::iter(world.spots.iter().zip(&tokens))
        .map(|(spot, token)| async move {
            api.location(token, spot.lat(), spot.lon()).await?;
            api.duty(token, true).await?;
            bar.inc();
            Ok::<_, ApiError>(())
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok((tokens, bands, phones))
}

/// Registers seniors, bands and volunteers; returns the volunteers' tokens
/// and, when bands log in each for itself, their logins.
async fn register(
    api: &Api,
    plan: &Plan,
    world: &World,
    bar: &Bar,
) -> Result<(Vec<String>, Option<Vec<Login>>), ApiError> {
    let own_logins = plan.via == Via::Bands;
    let band_logins: Vec<Option<Login>> = futures::stream::iter(0..plan.bands)
        .map(|i| async move {
            let (senior, device, home) = (&world.seniors[i], &world.devices[i], world.homes[i]);
            api.put_senior(senior, &format!("Senior {i}"), home.lat(), home.lon())
                .await?;
            api.put_device(device, senior).await?;
            let login = if own_logins {
                Some(Login {
                    client_id: device.clone(),
                    username: device.clone(),
                    password: api.device_secret(device).await?,
                })
            } else {
                None
            };
            bar.inc();
            Ok::<_, ApiError>(login)
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let tokens = futures::stream::iter(&world.volunteers)
        .enumerate()
        .map(|(i, v)| async move {
            api.put_volunteer(v, &format!("Volunteer {i}")).await?;
            let token = api.volunteer_token(v).await?;
            bar.inc();
            Ok::<_, ApiError>(token)
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let logins = own_logins.then(|| band_logins.into_iter().flatten().collect());
    Ok((tokens, logins))
}

/// Reads every message the links receive and hands it to the ledger and
/// the volunteers.
async fn observe(sim: Arc<Sim>, mut inbox: mpsc::UnboundedReceiver<Incoming>) {
    while let Some(m) = inbox.recv().await {
        let mut parts = m.topic.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("wristbands"), Some(device), Some("notify"), None) => {
                let Ok(n) = serde_json::from_slice::<BandNotice>(&m.payload) else {
                    continue;
                };
                sim.tally().band_notice(
                    device,
                    n.alert_id.as_deref(),
                    n.event_id.as_deref(),
                    &n.state,
                    m.at,
                );
            }
            (Some("volunteers"), Some(volunteer), Some("offers"), None) => {
                let Ok(msg) = serde_json::from_slice::<PhoneMessage>(&m.payload) else {
                    continue;
                };
                let Some(v) = sim.tally().volunteer_index(volunteer) else {
                    continue;
                };
                match msg.kind.as_str() {
                    "offer" => {
                        let new =
                            sim.tally()
                                .offer(v, &msg.alert_id, msg.expires_at, m.at, Utc::now());
                        if new && !sim.actors.is_cancelled() {
                            tokio::spawn(answer(sim.clone(), v, msg));
                        }
                    }
                    "withdrawn" => sim.tally().withdrawn(v, &msg.alert_id),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// A volunteer answers an offer: accepts (then walks, arrives, resolves),
/// declines, or lets it expire.
async fn answer(sim: Arc<Sim>, v: usize, offer: PhoneMessage) {
    let choice = sim.behaviour.answer(&mut *sim.rng());
    let token = &sim.tokens[v];
    let alert = offer.alert_id.as_str();
    let (accept, delay) = match choice {
        Answer::Ignore => {
            sim.tally().ignored();
            return;
        }
        Answer::Decline(d) => (false, d),
        Answer::Accept(d) => (true, d),
    };
    if !sim.pause(Duration::from_secs_f64(delay)).await {
        return;
    }
    // Withdrawn meanwhile: the phone no longer shows it.
    if !sim.tally().holds_offer(v, alert) {
        return;
    }
    if !accept {
        sim.tally().declining(v, alert);
        if let Err(e) = sim.api.act(token, alert, "decline", None).await {
            sim.http_error(&e);
        }
        return;
    }
    match sim.api.act(token, alert, "accept", None).await {
        Ok(Acted::Done) => sim.tally().accepted(v, alert, Instant::now()),
        Ok(Acted::Conflict) => return sim.tally().conflict(v, alert),
        Err(e) => return sim.http_error(&e),
    }
    let walk = offer.distance_m.unwrap_or(0.0).max(0.0) / sim.plan.speed_mps;
    if !sim.pause(Duration::from_secs_f64(walk)).await {
        return;
    }
    match sim.api.act(token, alert, "arrive", None).await {
        Ok(Acted::Done) => {}
        Ok(Acted::Conflict) => return, // called off meanwhile
        Err(e) => return sim.http_error(&e),
    }
    if !sim.pause(sim.plan.on_scene).await {
        return;
    }
    sim.tally().resolving(v, alert);
    let body = json!({"outcome": "helped", "note": "simulated"});
    if let Err(e) = sim.api.act(token, alert, "resolve", Some(body)).await {
        return sim.http_error(&e);
    }
    // The volunteer is now where the senior is.
    if let (Some(lat), Some(lon)) = (offer.lat, offer.lon) {
        if let Err(e) = sim.api.location(token, lat, lon).await {
            sim.http_error(&e);
        }
    }
}

/// Calls `each(i)` for i = 0, 1, …, n-1, 0, … evenly spread over `period`,
/// until the background stops.
async fn round_robin<F, Fut>(sim: &Sim, n: usize, period: Duration, each: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if n == 0 {
        return;
    }
    let gap = period.div_f64(n as f64);
    let (mut next, mut i) = (Instant::now(), 0);
    loop {
        tokio::select! {
            _ = sim.background.cancelled() => return,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        let now = Instant::now();
        while next <= now {
            each(i).await;
            i = (i + 1) % n;
            next += gap;
        }
    }
}

/// Every band's heartbeat, at QoS 0, spread evenly over the period.
async fn heartbeats(sim: Arc<Sim>) {
    let Some(period) = sim.plan.heartbeat else {
        return;
    };
    round_robin(&sim, sim.plan.bands, period, |band| {
        let sim = &sim;
        async move {
            let home = sim.world.homes[band];
            let body = json!({"battery": battery(band), "lat": home.lat(), "lon": home.lon()});
            sim.publish(band, "status", QoS::AtMostOnce, body.to_string())
                .await;
            sim.tally().counters.heartbeats += 1;
        }
    })
    .await;
}

/// Volunteers share their location again now and then, so that it never
/// grows too old to be used.
async fn relocations(sim: Arc<Sim>) {
    let Some(period) = sim.plan.location_every else {
        return;
    };
    // The first round went out at setup.
    tokio::select! {
        _ = sim.background.cancelled() => return,
        _ = tokio::time::sleep(period) => {}
    }
    round_robin(&sim, sim.plan.volunteers, period, |v| {
        let sim = &sim;
        async move {
            let spot = sim.world.spots[v];
            if let Err(e) = sim
                .api
                .location(&sim.tokens[v], spot.lat(), spot.lon())
                .await
            {
                sim.http_error(&e);
            }
        }
    })
    .await;
}

/// Bands publish again what was not `received` in time (contract §1).
async fn resends(sim: Arc<Sim>) {
    loop {
        tokio::select! {
            _ = sim.background.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let due: Vec<_> = {
            let mut t = sim.tally();
            let due = t.due_resends(Instant::now(), sim.plan.resend_after);
            due.into_iter()
                .filter_map(|i| t.press(i).cloned())
                .collect()
        };
        for p in due {
            let payload = sim.press_payload(p.band, &p.event_id, p.fall, p.wall);
            sim.publish(p.band, "alert", QoS::AtLeastOnce, payload)
                .await;
        }
    }
}

/// Stored alerts beyond the first for one band event, among the listed ones
/// of the run's bands.
fn extra_alerts(listed: &[StoredAlert], devices: &[String]) -> usize {
    let ours: std::collections::HashSet<&String> = devices.iter().collect();
    let mut per_event: HashMap<(&str, &str), usize> = HashMap::new();
    for a in listed.iter().filter(|a| ours.contains(&a.device_id)) {
        *per_event.entry((&a.device_id, &a.event_id)).or_default() += 1;
    }
    per_event.values().map(|n| n - 1).sum()
}

/// Cancels the run's alerts still active and takes its volunteers off duty,
/// so that the next run starts from a quiet service.
async fn clean_up(sim: &Sim, stored: &HashMap<String, StoredAlert>) {
    let active = stored
        .values()
        .filter(|a| a.is_active())
        .map(|a| a.id.clone());
    futures::stream::iter(active)
        .for_each_concurrent(CONCURRENCY, |id| async move {
            if let Err(e) = sim.api.cancel(&id, "simulation ended").await {
                sim.http_error(&e);
            }
        })
        .await;
    futures::stream::iter(&sim.tokens)
        .for_each_concurrent(CONCURRENCY, |t| async move {
            if let Err(e) = sim.api.duty(t, false).await {
                sim.http_error(&e);
            }
        })
        .await;
}

/// The progress bar, hidden when not wanted.
#[derive(Clone)]
struct Bar(ProgressBar);

impl Bar {
    fn new(visible: bool) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self(ProgressBar::with_draw_target(None, target))
    }

    /// A new phase: a bar of `len` steps, or a spinner when 0.
    fn phase(&self, name: &'static str, len: u64) {
        let template = if len > 0 {
            "{prefix:>13} [{bar:30}] {pos}/{len} {elapsed} {msg}"
        } else {
            "{prefix:>13} {spinner} {elapsed} {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.0.set_style(style.progress_chars("=> "));
        }
        self.0.set_prefix(name);
        self.0.set_position(0);
        self.0.set_length(len);
        self.0.set_message("");
        self.0.enable_steady_tick(Duration::from_millis(200));
    }

    fn inc(&self) {
        self.0.inc(1);
    }

    fn show(&self, p: Progress) {
        if self.0.length().unwrap_or(0) > 0 {
            self.0.set_position(p.sent as u64);
        }
        self.0.set_message(format!(
            "received {} · offered {} · accepted {} · closed {}",
            p.received, p.offered, p.accepted, p.closed
        ));
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

async fn show_progress(sim: Arc<Sim>, bar: Bar) {
    loop {
        bar.show(sim.tally().progress());
        tokio::select! {
            _ = sim.background.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            operator_token: "x".repeat(20),
            ..Plan::default()
        }
    }

    #[test]
    fn the_default_plan_is_valid_and_its_prefix_random() {
        assert!(plan().check().is_ok());
        let (a, b) = (run_id(), run_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 10);
    }

    #[test]
    fn plans_that_cannot_run_are_refused() {
        let bad = [
            Plan {
                prefix: "a b".into(),
                ..plan()
            },
            Plan {
                prefix: "x".repeat(41),
                ..plan()
            },
            Plan { bands: 0, ..plan() },
            Plan {
                schedule: Schedule::Steady(0.0),
                ..plan()
            },
            Plan {
                schedule: Schedule::Poisson(f64::INFINITY),
                ..plan()
            },
            Plan {
                falls: 2.0,
                ..plan()
            },
            Plan {
                speed_mps: 0.0,
                ..plan()
            },
            Plan {
                heartbeat: Some(Duration::ZERO),
                ..plan()
            },
            Plan {
                center: (91.0, 0.0),
                ..plan()
            },
            Plan {
                radius_m: -1.0,
                ..plan()
            },
            Plan {
                decline: 0.7,
                ignore: 0.7,
                ..plan()
            },
        ];
        for p in bad {
            assert!(p.check().is_err(), "{p:?}");
        }
    }

    #[test]
    fn schedules_space_presses_as_asked() {
        let mut rng = StdRng::seed_from_u64(1);
        let steady = Plan {
            presses: 5,
            schedule: Schedule::Steady(10.0),
            ..plan()
        };
        let o = steady.offsets(&mut rng);
        assert_eq!(o[0], Duration::ZERO);
        assert_eq!(o[4], Duration::from_millis(400));
        let burst = Plan {
            presses: 4,
            schedule: Schedule::Burst,
            ..plan()
        };
        let o = burst.offsets(&mut rng);
        assert_eq!(o[3], Duration::from_millis(750));
        let poisson = Plan {
            presses: 2000,
            schedule: Schedule::Poisson(100.0),
            ..plan()
        };
        let o = poisson.offsets(&mut rng);
        assert!(o.is_sorted());
        let span = o[1999].as_secs_f64();
        assert!((18.0..22.0).contains(&span), "{span}");
    }

    #[test]
    fn many_bands_go_through_a_gateway() {
        assert_eq!(Via::for_bands(GATEWAY_ABOVE), Via::Bands);
        assert_eq!(Via::for_bands(GATEWAY_ABOVE + 1), Via::Gateway);
    }

    #[test]
    fn extra_alerts_count_second_alerts_of_one_event() {
        let t = Utc::now();
        let a = |id: &str, device: &str, event: &str| StoredAlert {
            id: id.into(),
            device_id: device.into(),
            event_id: event.into(),
            state: "open".into(),
            pressed_at: t,
            accepted_at: None,
            on_scene_at: None,
            response_deadline: t,
            arrival_deadline: t,
        };
        let devices = vec!["b0".to_string(), "b1".to_string()];
        let listed = [
            a("1", "b0", "p0"),
            a("2", "b0", "p0"),
            a("3", "b0", "p1"),
            a("4", "b1", "p0"),
            a("5", "other", "p0"),
            a("6", "other", "p0"),
        ];
        assert_eq!(extra_alerts(&listed, &devices), 1);
    }
}
