//! onepress under faults (issue 8, points 1–3). The real binary runs under
//! a stream of presses from real bands: each band is an MQTT client logged
//! in as itself that presses once, at its moment, and publishes the same
//! event again every 10 s until it sees `received` for it (the band resend
//! rule of CONTRACT §1). Meanwhile
//! 1. the service is killed with SIGKILL at random moments and started
//!    again on the same store (SQLite + the embedded broker, and
//!    PostgreSQL + a private Mosquitto), while volunteers accept, arrive
//!    and resolve;
//! 2. its PostgreSQL (a private cluster) is stopped for over 10 s;
//! 3. its Mosquitto (a private broker) is killed and started again.
//!
//! Each ends with every press stored exactly once (one alert per band and
//! event, with its own deadlines) and acknowledged to its band, and prints
//! its figures on one line starting with `faults:` (quoted in
//! RELIABILITY.md; run with `--nocapture` to see them). What breaks the
//! contract is collected as it happens, so a failing run still reports
//! its figures and every violation it saw, with the service's log.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use rand::Rng;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::common::db::{self, DropDatabase};
use crate::common::mosquitto::{self, PrivateMosquitto};
use crate::common::pg::PrivatePostgres;
use crate::common::service::{Service, free_port, wait_ready};
use crate::common::{Backend, Login, TestApp, s, unique};
use crate::on_both_backends;

/// A band publishes its event again when it has not seen `received` for it
/// within this long (CONTRACT §1).
const RESEND_AFTER: Duration = Duration::from_secs(10);
/// The targets the service runs with (set explicitly: deadlines are checked).
const RESPONSE_TARGET: chrono::Duration = chrono::Duration::minutes(3);
const ARRIVAL_TARGET: chrono::Duration = chrono::Duration::minutes(10);
/// How long an HTTP write may take to answer while the store is down:
/// about 2 s (the service may wait that long for a connection), with room
/// for a busy CI machine. Not a hang.
const PROMPT_503: Duration = Duration::from_secs(3);

on_both_backends!(sigkill_under_load);

// ----- the service and its surroundings ------------------------------------

/// The broker the service and the bands use.
enum Broker<'a> {
    /// The service's own, on this port (it dies with the service).
    Embedded(u16),
    /// A private Mosquitto whose password and ACL files the service writes.
    Mosquitto(&'a PrivateMosquitto),
}

/// The settings of a service on `database_url` and `broker`, listening for
/// HTTP on `http_port`.
fn service_env(
    http_port: u16,
    database_url: &str,
    broker: &Broker,
    token: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        (
            "ONEPRESS_HTTP_ADDR".into(),
            format!("127.0.0.1:{http_port}"),
        ),
        ("ONEPRESS_DATABASE_URL".into(), database_url.into()),
        ("ONEPRESS_OPERATOR_TOKEN".into(), token.into()),
        ("ONEPRESS_RESPONSE_TARGET".into(), "3m".into()),
        ("ONEPRESS_ARRIVAL_TARGET".into(), "10m".into()),
        ("ONEPRESS_SHUTDOWN_GRACE".into(), "3s".into()),
    ];
    match broker {
        Broker::Embedded(port) => {
            env.push(("ONEPRESS_MQTT_URL".into(), "embedded".into()));
            env.push((
                "ONEPRESS_EMBEDDED_MQTT_ADDR".into(),
                format!("127.0.0.1:{port}"),
            ));
            env.push(("ONEPRESS_MQTT_CLIENT_ID".into(), unique("onepress-svc")));
        }
        Broker::Mosquitto(m) => {
            // With use_username_as_clientid, the client id is the user.
            let user = unique("onepress-svc");
            let password = onepress::access::secret::new_secret();
            let files = [
                ("ONEPRESS_MOSQUITTO_PASSWORD_FILE", &m.password_file),
                ("ONEPRESS_MOSQUITTO_ACL_FILE", &m.acl_file),
                ("ONEPRESS_MOSQUITTO_PID_FILE", &m.pid_file),
            ];
            env.push((
                "ONEPRESS_MQTT_URL".into(),
                format!("mqtt://{user}:{password}@127.0.0.1:{}", m.port),
            ));
            env.push(("ONEPRESS_MQTT_CLIENT_ID".into(), user));
            for (k, path) in files {
                env.push((k.into(), path.display().to_string()));
            }
        }
    }
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// A service under test: the child process, HTTP helpers for when it is
/// up (`app`, which panics on a failed request) and a client with
/// timeouts for when it may not be (`http`).
struct Rig {
    service: Service,
    app: TestApp,
    http: reqwest::Client,
    base: String,
    token: String,
    /// Where bands connect.
    mqtt: (String, u16),
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(database_url: &str, broker: Broker<'_>, extra: &[(&str, &str)]) -> Rig {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let http_port = free_port();
        let token = unique("operator-token");
        let mqtt_port = match &broker {
            Broker::Embedded(port) => *port,
            Broker::Mosquitto(m) => m.port,
        };
        let env = service_env(http_port, database_url, &broker, &token, extra);
        let base = format!("http://127.0.0.1:{http_port}");
        let mqtt = ("127.0.0.1".to_string(), mqtt_port);
        let app = TestApp::external(
            base.clone(),
            token.clone(),
            mqtt.clone(),
            onepress::config::Settings::default(),
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("an HTTP client");
        let service = Service::start(env, dir.path());
        let rig = Rig {
            service,
            app,
            http,
            base,
            token,
            mqtt,
            _dir: dir,
        };
        rig.ready_within(Duration::from_secs(30)).await;
        rig
    }

    async fn ready_within(&self, within: Duration) {
        assert!(
            wait_ready(&self.http, &self.base, within).await,
            "the service was not ready within {within:?}; its log ends:\n{}",
            self.service.log_tail(40)
        );
    }

    /// One HTTP call that may fail: (status, JSON body) or why not.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        call(&self.http, &self.base, method, path, token, body).await
    }

    /// Every alert (newest first), or None if the service does not answer.
    async fn alerts(&self) -> Option<Vec<Value>> {
        match self
            .call(
                "GET",
                "/v1/alerts?state=all&limit=1000",
                Some(&self.token),
                None,
            )
            .await
        {
            Ok((200, Value::Array(list))) => Some(list),
            _ => None,
        }
    }

    async fn readyz(&self) -> Option<u16> {
        self.readyz_within(Duration::from_secs(5)).await
    }

    /// `/readyz`'s status, or None without an answer within `within`.
    async fn readyz_within(&self, within: Duration) -> Option<u16> {
        let r = self
            .http
            .get(format!("{}/readyz", self.base))
            .timeout(within.max(Duration::from_millis(1)))
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    }
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut req = http.request(method.parse().expect("a method"), format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Where the `i`th senior lives (and presses): a grid of ~100 m steps.
fn spot(i: usize) -> (f64, f64) {
    (
        30.50 + (i % 10) as f64 * 0.001,
        120.68 + (i / 10) as f64 * 0.001,
    )
}

/// Registers `bands` seniors with a band each and `volunteers` volunteers
/// on duty among them. Returns the bands (id, where) and the volunteers'
/// (id, token).
async fn register(
    app: &TestApp,
    bands: usize,
    volunteers: usize,
) -> (Vec<(String, (f64, f64))>, Vec<(String, String)>) {
    let devices = futures::stream::iter(0..bands)
        .map(|i| async move {
            let (_, device) = app.senior_with_band(Some(spot(i))).await;
            (device, spot(i))
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
    let vols = futures::stream::iter(0..volunteers)
        .map(|i| async move {
            let (lat, lon) = spot(i * 7 % bands.max(1));
            app.volunteer("Wang Fang", Some((lat + 0.0004, lon))).await
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
    (devices, vols)
}

// ----- bands ----------------------------------------------------------------

/// What a band did and saw.
#[derive(Debug, Default, Clone)]
struct BandLog {
    /// The `ts` of its event: when it was first pressed.
    ts: Option<DateTime<Utc>>,
    /// Publications of its event: the press and every resend.
    sends: u32,
    first_sent: Option<Instant>,
    /// When it first saw `received` for its event.
    received: Option<Instant>,
    /// Every `received` for its event, and the alert ids they named.
    receipts: u32,
    alert_ids: HashSet<String>,
    /// CONNACKs: 1 + how often it reconnected.
    connects: u32,
    /// Whether the broker acknowledged (PUBACK) a publication of its event
    /// before the band saw `received`, and it still had to send it again.
    pubacked: bool,
    resent_after_puback: bool,
}

/// A wristband: its own MQTT connection (clean session, as a band would
/// have), which reconnects after any error and subscribes to its notify
/// topic on every CONNACK.
struct Band {
    device: String,
    event: String,
    at: (f64, f64),
    client: AsyncClient,
    log: Arc<Mutex<BandLog>>,
    received: watch::Receiver<bool>,
    stop: CancellationToken,
}

impl Drop for Band {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Band {
    fn connect(mqtt: &(String, u16), login: Login, at: (f64, f64)) -> Band {
        let device = login.username.clone();
        let event = unique("press");
        let mut opts = MqttOptions::new(&login.client_id, &mqtt.0, mqtt.1);
        opts.set_keep_alive(Duration::from_secs(5))
            .set_clean_session(true)
            .set_credentials(&login.username, &login.password);
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let log = Arc::new(Mutex::new(BandLog::default()));
        let (seen, received) = watch::channel(false);
        let stop = CancellationToken::new();
        let notify = format!("wristbands/{device}/notify");
        let (c, l, st, ev) = (client.clone(), log.clone(), stop.clone(), event.clone());
        tokio::spawn(async move {
            loop {
                let polled = tokio::select! {
                    _ = st.cancelled() => break,
                    p = eventloop.poll() => p,
                };
                match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        l.lock().unwrap().connects += 1;
                        // Queued, not awaited: the loop is what sends it.
                        let _ = c.try_subscribe(&notify, QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        l.lock().unwrap().pubacked = true;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == notify => {
                        let m: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                        if s(&m, "state") == "received" && s(&m, "event_id") == ev {
                            let mut log = l.lock().unwrap();
                            log.receipts += 1;
                            log.received.get_or_insert_with(Instant::now);
                            log.alert_ids.insert(s(&m, "alert_id").to_string());
                            seen.send_replace(true);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        tokio::select! {
                            _ = st.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        }
                    }
                }
            }
        });
        Band {
            device,
            event,
            at,
            client,
            log,
            received,
            stop,
        }
    }

    /// Presses at `when`, then publishes the same event again every
    /// [`RESEND_AFTER`] until `received` comes.
    fn press_at(&self, when: Instant) {
        let (client, log, stop) = (self.client.clone(), self.log.clone(), self.stop.clone());
        let mut received = self.received.clone();
        let topic = format!("wristbands/{}/alert", self.device);
        let event = self.event.clone();
        let (lat, lon) = self.at;
        tokio::spawn(async move {
            tokio::time::sleep_until(when).await;
            // Whole milliseconds, as sent.
            let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
            log.lock().unwrap().ts = time(&json!(ts));
            let payload = json!({
                "event_id": event, "kind": "sos", "ts": ts,
                "lat": lat, "lon": lon, "battery": 80,
            })
            .to_string();
            loop {
                if *received.borrow() {
                    break;
                }
                // Queued for the connection (sent once it is up); a full
                // queue is a lost try, as on a band: the next resend will do.
                let _ = client.try_publish(&topic, QoS::AtLeastOnce, false, payload.clone());
                {
                    let mut l = log.lock().unwrap();
                    l.sends += 1;
                    l.first_sent.get_or_insert_with(Instant::now);
                    if l.pubacked {
                        l.resent_after_puback = true;
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::timeout(RESEND_AFTER, received.wait_for(|r| *r)) => {}
                }
            }
        });
    }

    fn log(&self) -> BandLog {
        self.log.lock().unwrap().clone()
    }
}

/// Many bands.
struct Fleet {
    bands: Vec<Band>,
}

impl Fleet {
    /// Issues each band its MQTT secret and connects it; waits until every
    /// band is connected (Mosquitto takes a new login in a moment later).
    async fn connect(
        app: &TestApp,
        mqtt: &(String, u16),
        devices: &[(String, (f64, f64))],
    ) -> Fleet {
        // One at a time: on SQLite, secrets issued at once answer 503
        // "database is locked" (the write transaction reads first).
        let mut logins = Vec::with_capacity(devices.len());
        for (d, at) in devices {
            logins.push((app.band_login(d).await, *at));
        }
        let bands: Vec<Band> = logins
            .into_iter()
            .map(|(login, at)| Band::connect(mqtt, login, at))
            .collect();
        let fleet = Fleet { bands };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting = fleet.bands.iter().filter(|b| b.log().connects == 0).count();
            if waiting == 0 {
                return fleet;
            }
            assert!(
                Instant::now() < deadline,
                "{waiting} bands could not connect within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Band `i` presses at `start + i * spread / n`: a steady stream.
    fn stream(&self, start: Instant, spread: Duration) {
        let n = self.bands.len().max(1) as u32;
        for (i, band) in self.bands.iter().enumerate() {
            band.press_at(start + spread * i as u32 / n);
        }
    }

    /// Waits until every band has seen `received`; returns when the last
    /// one did, or None after `within` (or if a band never pressed).
    async fn all_received(&self, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let logs: Vec<BandLog> = self.bands.iter().map(Band::log).collect();
            if logs.iter().all(|l| l.received.is_some()) {
                return logs.iter().filter_map(|l| l.received).max();
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn sends(&self) -> u32 {
        self.bands.iter().map(|b| b.log().sends).sum()
    }

    /// Bands that had to resend although the broker had acknowledged their
    /// event: it was held unstored (store down) or lost on the way (a broker
    /// that died with it, or had no session for the service to give it to).
    fn resent_after_puback(&self) -> usize {
        self.bands
            .iter()
            .filter(|b| b.log().resent_after_puback)
            .count()
    }

    fn reconnects(&self) -> u32 {
        self.bands
            .iter()
            .map(|b| b.log().connects.saturating_sub(1))
            .sum()
    }
}

// ----- volunteers -------------------------------------------------------------

/// Counts of what the volunteers did.
#[derive(Debug, Default)]
struct Work {
    accepted: u32,
    resolved: u32,
}

/// Each volunteer's phone, as an HTTP loop: accept the first pending offer,
/// arrive, resolve, next. Errors (the service down) are shrugged off.
fn volunteers_at_work(
    rig: &Rig,
    volunteers: &[(String, String)],
    stop: CancellationToken,
) -> (Arc<Mutex<Work>>, Vec<tokio::task::JoinHandle<()>>) {
    let work = Arc::new(Mutex::new(Work::default()));
    let tasks = volunteers
        .iter()
        .map(|(_, token)| {
            let (http, base, token) = (rig.http.clone(), rig.base.clone(), token.clone());
            let (work, stop) = (work.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let Ok((200, me)) =
                        call(&http, &base, "GET", "/v1/me", Some(&token), None).await
                    else {
                        continue;
                    };
                    let current = &me["current_alert"];
                    let (path, body) = if current.is_object() {
                        let id = s(current, "id");
                        match s(current, "state") {
                            "accepted" => (format!("/v1/alerts/{id}/arrive"), None),
                            "on_scene" => (
                                format!("/v1/alerts/{id}/resolve"),
                                Some(json!({"outcome": "helped_up", "note": "fault test"})),
                            ),
                            _ => continue,
                        }
                    } else if let Some(offer) = me["offers"].get(0) {
                        (format!("/v1/alerts/{}/accept", s(offer, "alert_id")), None)
                    } else {
                        continue;
                    };
                    if let Ok((200, _)) =
                        call(&http, &base, "POST", &path, Some(&token), body).await
                    {
                        let mut w = work.lock().unwrap();
                        if path.ends_with("/accept") {
                            w.accepted += 1;
                        } else if path.ends_with("/resolve") {
                            w.resolved += 1;
                        }
                    }
                }
            })
        })
        .collect();
    (work, tasks)
}

// ----- checks -----------------------------------------------------------------

fn time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What the store holds of the presses, and what is wrong with it.
#[derive(Debug, Default)]
struct Tally {
    presses: usize,
    sends: u32,
    /// Bands that resent after the broker's PUBACK (see [`BandLog`]).
    resent_after_puback: usize,
    stored: usize,
    lost: usize,
    duplicated: usize,
    unacknowledged: usize,
    /// The alerts, with their timelines.
    alerts: Vec<Value>,
}

/// Reads every alert with its timeline and checks the presses against
/// them: one alert per band, holding its event once (one `pressed`, no
/// `pressed_again`), the one its band was told of, with `pressed_at` the
/// band's `ts` and the deadlines the targets after it.
async fn tally(rig: &Rig, fleet: &Fleet, problems: &mut Vec<String>) -> Tally {
    let list = rig.alerts().await.expect("the alerts are listed");
    let mut alerts = Vec::with_capacity(list.len());
    for a in list {
        let id = s(&a, "id").to_string();
        match rig
            .call("GET", &format!("/v1/alerts/{id}"), Some(&rig.token), None)
            .await
        {
            Ok((200, full)) => alerts.push(full),
            other => panic!("alert {id} cannot be read: {other:?}"),
        }
    }
    let mut by_device: HashMap<&str, Vec<&Value>> = HashMap::new();
    for a in &alerts {
        by_device.entry(s(a, "device_id")).or_default().push(a);
    }
    let mut t = Tally {
        presses: fleet.bands.len(),
        sends: fleet.sends(),
        resent_after_puback: fleet.resent_after_puback(),
        ..Tally::default()
    };
    let ours: HashSet<&str> = fleet.bands.iter().map(|b| b.device.as_str()).collect();
    for device in by_device.keys().filter(|d| !ours.contains(**d)) {
        problems.push(format!("an alert for {device}, which never pressed"));
    }
    for band in &fleet.bands {
        let log = band.log();
        let found = by_device
            .get(band.device.as_str())
            .cloned()
            .unwrap_or_default();
        if log.received.is_none() {
            t.unacknowledged += 1;
            problems.push(format!(
                "{} never saw `received` for {} ({} sends)",
                band.device, band.event, log.sends
            ));
        }
        match found.len() {
            0 => {
                t.lost += 1;
                problems.push(format!("{}: press {} not stored", band.device, band.event));
                continue;
            }
            1 => t.stored += 1,
            n => {
                t.stored += 1;
                t.duplicated += n - 1;
                let ids: Vec<&str> = found.iter().map(|a| s(a, "id")).collect();
                problems.push(format!(
                    "{}: one press stored as {n} alerts {ids:?}",
                    band.device
                ));
            }
        }
        let a = found[0];
        let id = s(a, "id");
        let events = a["timeline"].as_array().cloned().unwrap_or_default();
        let count = |kind: &str| events.iter().filter(|e| s(e, "type") == kind).count();
        if count("pressed") != 1 || count("pressed_again") != 0 {
            t.duplicated += count("pressed_again");
            problems.push(format!(
                "{id} ({}): {} `pressed` and {} `pressed_again` for one press",
                band.device,
                count("pressed"),
                count("pressed_again")
            ));
        }
        if log.received.is_some() && log.alert_ids != HashSet::from([id.to_string()]) {
            problems.push(format!(
                "{}: told of alert(s) {:?}, stored as {id}",
                band.device, log.alert_ids
            ));
        }
        let Some(ts) = log.ts else { continue };
        let expected = [
            ("pressed_at", ts),
            ("response_deadline", ts + RESPONSE_TARGET),
            ("arrival_deadline", ts + ARRIVAL_TARGET),
        ];
        for (field, want) in expected {
            if time(&a[field]) != Some(want) {
                problems.push(format!(
                    "{id}: {field} is {}, not {} (the band's ts + target)",
                    a[field],
                    want.to_rfc3339_opts(SecondsFormat::Millis, true)
                ));
            }
        }
    }
    t.alerts = alerts;
    t
}

/// No volunteer is busy with two alerts at once (from accept or
/// assignment to resolution or cancellation, by the timelines), none is
/// on two active alerts now, and none holds two pending offers.
fn volunteers_check(alerts: &[Value], problems: &mut Vec<String>) {
    let mut spans: HashMap<String, Vec<(i64, i64, String)>> = HashMap::new();
    let ms = |e: &Value| time(&e["at"]).map_or(0, |t| t.timestamp_millis());
    for a in alerts {
        let events = a["timeline"].as_array().cloned().unwrap_or_default();
        let Some(start) = events
            .iter()
            .find(|e| matches!(s(e, "type"), "accepted" | "assigned"))
        else {
            continue;
        };
        let end = events
            .iter()
            .find(|e| matches!(s(e, "type"), "resolved" | "cancelled"))
            .map_or(i64::MAX, ms);
        spans
            .entry(s(start, "volunteer_id").to_string())
            .or_default()
            .push((ms(start), end, s(a, "id").to_string()));
    }
    for (v, mut list) in spans {
        list.sort();
        for w in list.windows(2) {
            if w[1].0 < w[0].1 {
                problems.push(format!(
                    "volunteer {v} busy with {} and {} at once",
                    w[0].2, w[1].2
                ));
            }
        }
    }
    let mut on: HashMap<&str, u32> = HashMap::new();
    let mut offered: HashMap<&str, u32> = HashMap::new();
    for a in alerts {
        if matches!(s(a, "state"), "accepted" | "on_scene") {
            *on.entry(s(a, "volunteer_id")).or_default() += 1;
        }
        for o in a["offers"].as_array().into_iter().flatten() {
            *offered.entry(s(o, "volunteer_id")).or_default() += 1;
        }
    }
    for (v, n) in on.into_iter().chain(offered).filter(|(_, n)| *n > 1) {
        problems.push(format!("volunteer {v} on or offered {n} active alerts"));
    }
}

/// What each alert looked like when first seen: its times, and the expiry
/// of each of its offers. Whatever is seen later must agree.
#[derive(Default)]
struct FirstSeen {
    times: HashMap<String, [Value; 3]>,
    offers: HashMap<(String, String), Value>,
    looks: u32,
}

impl FirstSeen {
    fn observe(&mut self, alerts: &[Value], problems: &mut Vec<String>) {
        self.looks += 1;
        for a in alerts {
            let id = s(a, "id").to_string();
            let now = [
                a["pressed_at"].clone(),
                a["response_deadline"].clone(),
                a["arrival_deadline"].clone(),
            ];
            let first = self.times.entry(id.clone()).or_insert_with(|| now.clone());
            if *first != now {
                problems.push(format!("{id}: times changed from {first:?} to {now:?}"));
            }
            for o in a["offers"].as_array().into_iter().flatten() {
                let key = (id.clone(), s(o, "volunteer_id").to_string());
                let first = self
                    .offers
                    .entry(key)
                    .or_insert_with(|| o["expires_at"].clone());
                if *first != o["expires_at"] {
                    problems.push(format!(
                        "{id}: the offer to {} now expires at {}, was {first}",
                        s(o, "volunteer_id"),
                        o["expires_at"]
                    ));
                }
            }
        }
    }
}

/// Fails with every problem found and the service's ERROR lines.
fn verdict(rig: &Rig, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    let errors: Vec<String> = rig
        .service
        .log_grep("ERROR", 200)
        .into_iter()
        .filter(|l| !l.contains("tower_http"))
        .collect();
    let errors = errors[errors.len().saturating_sub(15)..].join("\n");
    let shown = &problems[..problems.len().min(40)];
    // The whole log outlives the test's directory, for a closer look.
    let kept = std::env::temp_dir().join(format!("{}.log", unique("onepress-faults")));
    let kept = match std::fs::copy(rig.service.log_path(), &kept) {
        Ok(_) => kept.display().to_string(),
        Err(e) => format!("(not kept: {e})"),
    };
    // (The end of the log follows, from `Service`'s drop.)
    panic!(
        "{} problem(s){}:\n- {}\n\nERROR lines of the service's log (last 15; all of it in {kept}):\n{errors}",
        problems.len(),
        if shown.len() < problems.len() {
            " (the first 40)"
        } else {
            ""
        },
        shown.join("\n- "),
    );
}

/// How long after `from` the last band saw `received`: "never", "0s"
/// when all had before `from`.
fn caught_up(last: Option<Instant>, from: Instant) -> String {
    last.map_or("never".into(), |t| secs(t.saturating_duration_since(from)))
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

// ----- 1. SIGKILL under load ----------------------------------------------------

const KILL_BANDS: usize = 80;
const KILL_VOLUNTEERS: usize = 8;
const KILLS: usize = 4;
/// The presses are spread over this long (the kills take about as long).
const KILL_SPREAD: Duration = Duration::from_secs(14);

/// The service is killed (SIGKILL) 4 times at random moments while 80 bands
/// press and 8 volunteers work, and started again on the same store each
/// time. Every press ends stored once, acknowledged, with deadlines that
/// never moved; no volunteer was ever busy with two alerts.
async fn sigkill_under_load(backend: Backend) {
    let started = Instant::now();
    // The store and broker: the broker must outlive the service's
    // restarts only on Mosquitto (the embedded one dies with it).
    let (database_url, _drop_db, _sqlite_dir, mosquitto) = match backend {
        Backend::SqliteEmbedded => {
            let (url, dir) = db::sqlite_url().await;
            (url, None, Some(dir), None)
        }
        Backend::PostgresMosquitto => {
            let Some(url) = db::postgres_url().await else {
                eprintln!("skipped: set {} to test PostgreSQL", db::PG_ENV);
                return;
            };
            let guard = DropDatabase(url.clone());
            (url, Some(guard), None, Some(mosquitto::start().await))
        }
    };
    let broker = match &mosquitto {
        Some(m) => Broker::Mosquitto(m),
        None => Broker::Embedded(free_port()),
    };
    let mut rig = Rig::start(&database_url, broker, &[("ONEPRESS_OFFER_TIMEOUT", "5s")]).await;
    let (devices, volunteers) = register(&rig.app, KILL_BANDS, KILL_VOLUNTEERS).await;
    let fleet = Fleet::connect(&rig.app, &rig.mqtt, &devices).await;
    let stop = CancellationToken::new();
    let (work, workers) = volunteers_at_work(&rig, &volunteers, stop.clone());

    let mut problems = Vec::new();
    let mut first_seen = FirstSeen::default();
    let load = Instant::now();
    fleet.stream(load, KILL_SPREAD);
    let mut downtime = Duration::ZERO;
    for kill in 1..=KILLS {
        let (up_for, down_for) = {
            let mut rng = rand::rng();
            (
                Duration::from_millis(rng.random_range(1000..3500)),
                Duration::from_millis(rng.random_range(100..1500)),
            )
        };
        tokio::time::sleep(up_for).await;
        if let Some(alerts) = rig.alerts().await {
            first_seen.observe(&alerts, &mut problems);
        }
        if !rig.service.alive() {
            problems.push(format!("the service had exited before kill {kill}"));
        }
        rig.service.kill();
        let killed = Instant::now();
        tokio::time::sleep(down_for).await;
        rig.service.restart();
        rig.ready_within(Duration::from_secs(30)).await;
        downtime += killed.elapsed();
        if let Some(alerts) = rig.alerts().await {
            first_seen.observe(&alerts, &mut problems);
        }
    }
    let recovered = Instant::now();
    let last = fleet.all_received(Duration::from_secs(60)).await;
    let catch_up = caught_up(last, recovered);
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }

    let t = tally(&rig, &fleet, &mut problems).await;
    first_seen.observe(&t.alerts, &mut problems);
    volunteers_check(&t.alerts, &mut problems);
    let work = work.lock().unwrap();
    eprintln!(
        "faults: sigkill_under_load [{backend:?}]: presses {} (sends {}; resent after a broker PUBACK {}), stored {}, lost {}, duplicated {}, \
         unacknowledged {}; kills survived {KILLS} (down {} in all); band reconnects {}; \
         volunteers accepted {} resolved {}; alert views compared {}; catch-up after the last restart {}; \
         test time {}",
        t.presses,
        t.sends,
        t.resent_after_puback,
        t.stored,
        t.lost,
        t.duplicated,
        t.unacknowledged,
        secs(downtime),
        fleet.reconnects(),
        work.accepted,
        work.resolved,
        first_seen.looks,
        catch_up,
        secs(started.elapsed()),
    );
    verdict(&rig, &problems);
}

// ----- 2. database outage ---------------------------------------------------------

const OUTAGE_BANDS: usize = 40;
const OUTAGE_OFFER_TIMEOUT: chrono::Duration = chrono::Duration::seconds(4);
const OUTAGE: Duration = Duration::from_secs(11);
/// Presses before the outage, during it, and a few after.
const OUTAGE_SPREAD: Duration = Duration::from_secs(17);
const OUTAGE_FROM: Duration = Duration::from_secs(3);

/// How long the test waits for an HTTP write during the outage before it
/// calls it hung (short enough to stay inside the outage).
const WRITE_GIVE_UP: Duration = Duration::from_secs(7);

/// A write over HTTP during the outage: how long it took, and what is
/// wrong with the answer (want 503 `unavailable` within [`PROMPT_503`]).
async fn timed_write(
    rig: &Rig,
    what: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Value,
) -> (Duration, Option<String>) {
    let t = Instant::now();
    let req = rig
        .http
        .request(
            method.parse().expect("a method"),
            format!("{}{path}", rig.base),
        )
        .bearer_auth(token)
        .json(&body)
        .timeout(WRITE_GIVE_UP);
    let answer = match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or_default();
            Ok((status, body))
        }
        Err(e) if e.is_timeout() => Err(format!("no answer within {WRITE_GIVE_UP:?}")),
        Err(e) => Err(e.to_string()),
    };
    let took = t.elapsed();
    let ok = matches!(&answer, Ok((503, b)) if b["error"]["code"] == "unavailable");
    let problem = (!ok || took > PROMPT_503).then(|| {
        format!(
            "{what} ({method} {path}) while the store is down: {answer:?} after {took:.1?} \
             (want 503 `unavailable` within {PROMPT_503:?})"
        )
    });
    (took, problem)
}

/// The service's PostgreSQL (a private cluster) is stopped for 11 s while
/// 40 bands press: the process stays up, `/readyz` says 503, HTTP writes
/// answer 503 `unavailable` at once, and no press is acknowledged; once the
/// cluster is back every press is stored once and acknowledged, and
/// dispatch goes on (every alert gets a fresh offer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_under_load() {
    let started = Instant::now();
    let Some(mut pg) = PrivatePostgres::create().await else {
        return;
    };
    // Offers expire every 4 s, during the outage too (the engine's timers
    // fire then, and cannot commit); two volunteers an alert, so that one
    // is always free for the next offer.
    let mut rig = Rig::start(
        &pg.url(),
        Broker::Embedded(free_port()),
        &[("ONEPRESS_OFFER_TIMEOUT", "4s")],
    )
    .await;
    let (devices, _volunteers) = register(&rig.app, OUTAGE_BANDS, 2 * OUTAGE_BANDS).await;
    let fleet = Fleet::connect(&rig.app, &rig.mqtt, &devices).await;
    // For the writes tried during the outage.
    let (_, spare_token) = rig.app.volunteer("Li Wei", None).await;
    let (spare_senior, _) = rig.app.senior_with_band(None).await;

    let mut problems = Vec::new();
    let load = Instant::now();
    fleet.stream(load, OUTAGE_SPREAD);
    tokio::time::sleep_until(load + OUTAGE_FROM).await;
    // An alert to try to cancel during the outage (which must not cancel it).
    let cancelled = rig
        .alerts()
        .await
        .and_then(|list| list.last().map(|a| s(a, "id").to_string()))
        .expect("alerts before the outage");
    pg.stop().await;
    let down = Instant::now();

    // Readiness goes 503 (the ping gives up after 2 s).
    let mut to_503 = None;
    while down.elapsed() < Duration::from_secs(5) {
        if rig.readyz().await == Some(503) {
            to_503 = Some(down.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if to_503.is_none() {
        problems.push("/readyz did not answer 503 within 5 s of the store going down".into());
    }
    // Writes: a volunteer going on duty, an operator registering a band
    // (both read the store first), an operator cancelling an alert (straight
    // to the engine).
    let device_path = format!("/v1/devices/{}", unique("band"));
    let cancel_path = format!("/v1/alerts/{cancelled}/cancel");
    let ((duty, p1), (device, p2), (cancel, p3)) = tokio::join!(
        timed_write(
            &rig,
            "going on duty",
            "PUT",
            "/v1/me/duty",
            &spare_token,
            json!({"on_duty": true}),
        ),
        timed_write(
            &rig,
            "registering a band",
            "PUT",
            &device_path,
            &rig.token,
            json!({"senior_id": spare_senior}),
        ),
        timed_write(
            &rig,
            "cancelling an alert",
            "POST",
            &cancel_path,
            &rig.token,
            json!({"reason": "fault test"}),
        ),
    );
    problems.extend(p1.into_iter().chain(p2).chain(p3));
    // Until the end of the outage: still alive, still not ready.
    let mut ready_during = 0;
    while down.elapsed() < OUTAGE {
        if !rig.service.alive() {
            problems.push(format!(
                "the service exited {:?} into the outage",
                down.elapsed()
            ));
            break;
        }
        let left = OUTAGE.saturating_sub(down.elapsed());
        if rig.readyz_within(left).await == Some(200) {
            ready_during += 1;
        }
        tokio::time::sleep(left.min(Duration::from_millis(500))).await;
    }
    if ready_during > 0 {
        problems.push(format!(
            "/readyz answered 200 {ready_during} time(s) with the store down"
        ));
    }
    let outage = down.elapsed();
    pg.start().await;
    let back = Instant::now();
    let back_at = Utc::now();

    // Pressed during the outage: held, not acknowledged (2 s of grace for
    // what was committed just before it).
    let (mut held, mut acked) = (0, 0);
    for b in &fleet.bands {
        let log = b.log();
        if log.first_sent.is_some_and(|t| t >= down && t < back) {
            held += 1;
        }
        if let Some(r) = log
            .received
            .filter(|r| *r > down + Duration::from_secs(1) && *r < back)
        {
            acked += 1;
            problems.push(format!(
                "{} got `received` {:?} into the outage",
                b.device,
                r - down
            ));
        }
    }
    let last = fleet.all_received(Duration::from_secs(60)).await;
    let catch_up = caught_up(last, back);
    let ready_again = wait_ready(&rig.http, &rig.base, Duration::from_secs(30))
        .await
        .then(|| back.elapsed());
    if ready_again.is_none() {
        problems.push("/readyz not 200 within 30 s of the store coming back".into());
    }
    // Writes work again.
    let r = rig
        .call(
            "PUT",
            "/v1/me/duty",
            Some(&spare_token),
            Some(json!({"on_duty": true})),
        )
        .await;
    if !matches!(r, Ok((200, _))) {
        problems.push(format!("going on duty once the store is back: {r:?}"));
    }
    // Dispatch goes on: every alert has an offer made after the store came
    // back (offers expire every few seconds, also during the outage).
    let all_offered = offered_within(
        &rig,
        OUTAGE_BANDS,
        Some(back_at + OUTAGE_OFFER_TIMEOUT),
        Duration::from_secs(20),
    )
    .await;
    if all_offered.is_none() {
        problems
            .push("not every alert got a new offer within 20 s of the store coming back".into());
    }
    let t = tally(&rig, &fleet, &mut problems).await;
    offers_check(&t.alerts, &mut problems);
    volunteers_check(&t.alerts, &mut problems);
    eprintln!(
        "faults: database_outage_under_load: presses {} (sends {}; resent after a broker PUBACK {}), stored {}, lost {}, duplicated {}, \
         unacknowledged {}; outage {}; pressed during it {held}, acknowledged during it {acked}; /readyz 503 after {}; \
         writes answered in {} (duty), {} (band) and {} (cancel); ready again {} after restart; \
         catch-up {}; every alert offered anew {} later; test time {}",
        t.presses,
        t.sends,
        t.resent_after_puback,
        t.stored,
        t.lost,
        t.duplicated,
        t.unacknowledged,
        secs(outage),
        to_503.map_or("never".into(), secs),
        secs(duty),
        secs(device),
        secs(cancel),
        ready_again.map_or("never".into(), secs),
        catch_up,
        all_offered.map_or("never".into(), secs),
        secs(started.elapsed()),
    );
    if !problems.is_empty() {
        eprintln!("PostgreSQL's log ends:\n{}", pg.log_tail(10));
    }
    verdict(&rig, &problems);
}

/// Waits until `n` alerts are listed and each has an offer out (one that
/// expires after `expiring_after`, if given: made after a moment); how
/// long it took.
async fn offered_within(
    rig: &Rig,
    n: usize,
    expiring_after: Option<DateTime<Utc>>,
    within: Duration,
) -> Option<Duration> {
    let t = Instant::now();
    let fresh = |o: &Value| expiring_after.is_none_or(|after| time(&o["expires_at"]) > Some(after));
    while t.elapsed() < within {
        if let Some(alerts) = rig.alerts().await {
            let offered = alerts
                .iter()
                .filter(|a| a["offers"].as_array().is_some_and(|o| o.iter().any(fresh)))
                .count();
            if alerts.len() >= n && offered >= n {
                return Some(t.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// With a volunteer for each, every alert has an offer out.
fn offers_check(alerts: &[Value], problems: &mut Vec<String>) {
    for a in alerts {
        let offers = a["offers"].as_array().map_or(0, Vec::len);
        if s(a, "state") != "offered" || offers != 1 {
            problems.push(format!(
                "{} is {} with {offers} offer(s), not offered to one volunteer",
                s(a, "id"),
                s(a, "state")
            ));
        }
    }
}

// ----- 3. broker killed -------------------------------------------------------------

const BROKER_BANDS: usize = 40;
const BROKER_SPREAD: Duration = Duration::from_secs(12);
/// When Mosquitto is killed (from the start of the stream) and for how long.
const BROKER_KILLS: [(Duration, Duration); 2] = [
    (Duration::from_secs(2), Duration::from_secs(4)),
    (Duration::from_secs(9), Duration::from_secs(3)),
];

/// The service's Mosquitto (private, persistence on as shipped) is killed
/// with SIGKILL and started again on the same port and files, twice, while
/// 40 bands press: the service stays up, `/readyz` says 503 while the
/// broker is away, the service reconnects by itself, and every press is
/// stored once, acknowledged and offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_under_load() {
    let started = Instant::now();
    let mut m = mosquitto::start().await;
    let (database_url, _sqlite_dir) = db::sqlite_url().await;
    let mut rig = Rig::start(
        &database_url,
        Broker::Mosquitto(&m),
        &[("ONEPRESS_OFFER_TIMEOUT", "10m")],
    )
    .await;
    let (devices, _volunteers) = register(&rig.app, BROKER_BANDS, BROKER_BANDS).await;
    let fleet = Fleet::connect(&rig.app, &rig.mqtt, &devices).await;

    let mut problems = Vec::new();
    let load = Instant::now();
    fleet.stream(load, BROKER_SPREAD);
    let mut outages = Vec::new();
    let mut reconnects = Vec::new();
    for (i, (at, down_for)) in BROKER_KILLS.iter().enumerate() {
        tokio::time::sleep_until(load + *at).await;
        m.kill();
        let down = Instant::now();
        let mut saw_503 = false;
        while down.elapsed() < *down_for {
            match rig.readyz().await {
                Some(503) => saw_503 = true,
                Some(200) if down.elapsed() > Duration::from_secs(1) => problems.push(format!(
                    "/readyz 200 {:?} after broker kill {}",
                    down.elapsed(),
                    i + 1
                )),
                _ => {}
            }
            if !rig.service.alive() {
                problems.push(format!(
                    "the service exited with the broker down (kill {})",
                    i + 1
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !saw_503 {
            problems.push(format!(
                "/readyz never 503 while the broker was down (kill {})",
                i + 1
            ));
        }
        m.restart().await;
        outages.push(down.elapsed());
        let back = Instant::now();
        if wait_ready(&rig.http, &rig.base, Duration::from_secs(30)).await {
            reconnects.push(back.elapsed());
        } else {
            problems.push(format!(
                "the service did not reconnect within 30 s (kill {})",
                i + 1
            ));
        }
    }
    let back = Instant::now();
    let last = fleet.all_received(Duration::from_secs(60)).await;
    let catch_up = caught_up(last, back);
    let all_offered = offered_within(&rig, BROKER_BANDS, None, Duration::from_secs(20)).await;
    let t = tally(&rig, &fleet, &mut problems).await;
    offers_check(&t.alerts, &mut problems);
    volunteers_check(&t.alerts, &mut problems);
    let list = |ds: &[Duration]| ds.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ");
    eprintln!(
        "faults: broker_killed_under_load: presses {} (sends {}; resent after a broker PUBACK {}), stored {}, lost {}, duplicated {}, \
         unacknowledged {}; broker kills survived {} (down {}); service ready again after {}; \
         band reconnects {}; catch-up after the last restart {}; all offered {}; test time {}",
        t.presses,
        t.sends,
        t.resent_after_puback,
        t.stored,
        t.lost,
        t.duplicated,
        t.unacknowledged,
        outages.len(),
        list(&outages),
        list(&reconnects),
        fleet.reconnects(),
        catch_up,
        all_offered.map_or("never".into(), secs),
        secs(started.elapsed()),
    );
    verdict(&rig, &problems);
}
