//! What the integration tests share: `spawn_app` starts the real
//! application on free ports with its own database and its own MQTT client
//! id, on one of two backends:
//! - SQLite + the embedded broker (always), and
//! - PostgreSQL + an external broker (Mosquitto), from
//!   `ONEPRESS_TEST_DATABASE_URL` and `ONEPRESS_TEST_MQTT_URL`. Outside CI a
//!   variable missing at build time makes that variant `#[ignore]`d with the
//!   reason (see build.rs), so the summary counts it; with `CI` set a
//!   missing server fails the run.
//!
//! A service under test keeps a persistent session on the shared broker;
//! [`forget_session`] ends it when the app stops, so test runs leave no
//! sessions (and no queues of other tests' messages) behind.
//!
//! `Mqtt` is a real MQTT client playing a band or a phone.

#![allow(dead_code)]

pub mod db;
pub mod mosquitto;
pub mod pg;
pub mod push;
pub mod service;

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use mosquitto::PrivateMosquitto;
use onepress::app::Application;
use onepress::config::{Secret, Settings};

pub const MQTT_ENV: &str = "ONEPRESS_TEST_MQTT_URL";

/// Which store and broker an app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    SqliteEmbedded,
    PostgresMosquitto,
}

/// Runs a scenario `async fn name(backend: Backend)` on both backends, as
/// `name::sqlite_embedded` and `name::postgres_mosquitto`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_embedded() {
                    super::$name($crate::common::Backend::SqliteEmbedded).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    any(onepress_no_test_postgres, onepress_no_test_mosquitto),
                    ignore = "set ONEPRESS_TEST_DATABASE_URL and ONEPRESS_TEST_MQTT_URL to test PostgreSQL + Mosquitto"
                )]
                async fn postgres_mosquitto() {
                    super::$name($crate::common::Backend::PostgresMosquitto).await
                }
            }
        )*
    };
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty())
}

/// The external broker's URL, or None (skip) outside CI.
pub fn external_mqtt_url() -> Option<String> {
    match std::env::var(MQTT_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if in_ci() => {
            panic!("CI must test an external broker: set {MQTT_ENV} (e.g. mqtt://127.0.0.1:1883)")
        }
        _ => None,
    }
}

/// A unique, contract-valid id with a readable prefix.
pub fn unique(prefix: &str) -> String {
    let u = uuid::Uuid::now_v7().simple().to_string();
    format!("{prefix}-{}", &u[u.len() - 12..])
}

/// The database and broker settings of a backend, plus what keeps the
/// database alive (a temp dir or a drop guard). None: skipped.
pub async fn backend_settings(
    backend: Backend,
) -> Option<(Settings, Box<dyn std::any::Any + Send>)> {
    let mut s = Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        embedded_mqtt_addr: "127.0.0.1:0".parse().unwrap(),
        mqtt_client_id: unique("onepress-test"),
        operator_token: Some(Secret::new(unique("operator-token"))),
        // Test clients that watch or speak for anyone log in as the admin.
        mqtt_admin: Some(Secret::new(format!(
            "{}:{}",
            unique("admin"),
            onepress::access::secret::new_secret()
        ))),
        shutdown_grace: Duration::from_secs(3),
        ..Settings::default()
    };
    let keep: Box<dyn std::any::Any + Send> = match backend {
        Backend::SqliteEmbedded => {
            let (url, dir) = db::sqlite_url().await;
            s.database_url = url;
            s.mqtt_url = "embedded".into();
            Box::new(dir)
        }
        Backend::PostgresMosquitto => {
            let Some(mqtt) = external_mqtt_url() else {
                eprintln!(
                    "skipped: set {MQTT_ENV} and {} to test PostgreSQL + Mosquitto",
                    db::PG_ENV
                );
                return None;
            };
            let Some(url) = db::postgres_url().await else {
                eprintln!("skipped: set {} to test PostgreSQL", db::PG_ENV);
                return None;
            };
            s.database_url = url.clone();
            s.mqtt_url = mqtt;
            Box::new(db::DropDatabase(url))
        }
    };
    Some((s, keep))
}

/// A running application and a way to talk to it.
pub struct TestApp {
    pub base: String,
    pub token: String,
    pub mqtt: (String, u16),
    pub http: reqwest::Client,
    pub settings: Settings,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _keep: Box<dyn std::any::Any + Send>,
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// Starts an app with settings adjusted by `adjust`, and waits until it is
/// ready (store reachable, subscribed at the broker).
pub async fn spawn_app_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let (mut settings, keep) = backend_settings(backend).await?;
    adjust(&mut settings);
    Some(spawn_from(settings, keep).await)
}

/// Starts an app with exactly these settings (e.g. again, on the store a
/// stopped one used); `keep` is dropped with the app.
pub async fn spawn_from(settings: Settings, keep: Box<dyn std::any::Any + Send>) -> TestApp {
    let token = settings
        .operator_token
        .clone()
        .unwrap()
        .expose()
        .to_string();
    let app = Application::build(settings.clone())
        .await
        .expect("the app builds");
    let base = format!("http://{}", app.http_addr());
    let mqtt = app.mqtt_addr();
    let shutdown = app.shutdown_token();
    let task = tokio::spawn(app.run_until_stopped());
    let t = TestApp {
        base,
        token,
        mqtt,
        http: reqwest::Client::new(),
        settings,
        shutdown,
        task: Some(task),
        _keep: keep,
    };
    t.wait_ready().await;
    t
}

/// The app under test on `backend`, its PostgreSQL variant on a private
/// Mosquitto: on the shared broker it would see (and count in its metrics)
/// every other test's presses, and they its own. For tests that assert
/// counts.
pub async fn isolated_app(backend: Backend) -> Option<(TestApp, Option<PrivateMosquitto>)> {
    isolated_app_with(backend, |_| {}).await
}

/// [`isolated_app`] with settings adjusted by `adjust` first.
pub async fn isolated_app_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
) -> Option<(TestApp, Option<PrivateMosquitto>)> {
    match backend {
        Backend::SqliteEmbedded => Some((spawn_app_with(backend, adjust).await?, None)),
        Backend::PostgresMosquitto => {
            // Fails in CI, skips elsewhere, as for any PostgreSQL test.
            backend_settings(backend).await?;
            let (app, m) = mosquitto::spawn_app_with(backend, adjust).await;
            Some((app, Some(m)))
        }
    }
}

impl TestApp {
    /// A handle on a service running elsewhere (a child process).
    pub fn external(
        base: String,
        token: String,
        mqtt: (String, u16),
        settings: Settings,
    ) -> TestApp {
        TestApp {
            base,
            token,
            mqtt,
            http: reqwest::Client::new(),
            settings,
            shutdown: CancellationToken::new(),
            task: None,
            _keep: Box::new(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Not stopped by `stop`: once the app is gone (its runtime may be
        // shutting down with the test), end its session from a thread of
        // its own.
        if let Some(task) = self.task.take() {
            let settings = self.settings.clone();
            let forget = std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !task.is_finished() && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(forget_session(&settings));
                }
            });
            // Wait for it where the runtime allows (the test process may
            // end right after this drop), letting the app's tasks run on.
            let multi_thread = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if multi_thread {
                tokio::task::block_in_place(|| {
                    let _ = forget.join();
                });
            }
        }
    }
}

/// Ends the persistent session a service kept on the shared broker under
/// its (unique, per test) client id: a clean-session connect under that id
/// makes the broker discard it and whatever it queued. Nothing to do on the
/// embedded broker or a private one (they die with the test).
pub async fn forget_session(settings: &Settings) {
    let Some(rest) = settings.mqtt_url.strip_prefix("mqtt://") else {
        return;
    };
    if rest.contains('@') {
        return; // a private broker, with the service's own login
    }
    let Some((host, port)) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
    else {
        return;
    };
    let mut opts = MqttOptions::new(settings.mqtt_client_id.clone(), host, port);
    opts.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    let _ = client.try_disconnect();
                }
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// An HTTP answer: status and JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl TestApp {
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the app never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the app gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(15), task).await;
            let r = r
                .expect("the app stops in time")
                .expect("the app task ends");
            r.expect("the app stops cleanly");
            forget_session(&self.settings).await;
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("the request is answered");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, body }
    }

    /// As the operator.
    pub async fn op(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call(method, path, Some(&self.token.clone()), body)
            .await
    }

    /// Registers a senior living at `home` with a band; returns (senior, device).
    pub async fn senior_with_band(&self, home: Option<(f64, f64)>) -> (String, String) {
        let senior = unique("senior");
        let device = unique("band");
        let mut body =
            json!({"name": "Jiang Lan", "address": "3 Lotus Lane", "notes": "lives alone"});
        if let Some((lat, lon)) = home {
            body["home"] = json!({"lat": lat, "lon": lon});
        }
        let r = self
            .op("PUT", &format!("/v1/seniors/{senior}"), Some(body))
            .await;
        assert!(r.status < 300, "senior: {r:?}");
        let r = self
            .op(
                "PUT",
                &format!("/v1/devices/{device}"),
                Some(json!({"senior_id": senior})),
            )
            .await;
        assert!(r.status < 300, "device: {r:?}");
        (senior, device)
    }

    /// Registers a volunteer, issues a token, and if `at` is given puts
    /// them on duty there. Returns (id, token).
    pub async fn volunteer(&self, name: &str, at: Option<(f64, f64)>) -> (String, String) {
        let id = unique("vol");
        let r = self
            .op(
                "PUT",
                &format!("/v1/volunteers/{id}"),
                Some(json!({"name": name})),
            )
            .await;
        assert!(r.status < 300, "volunteer: {r:?}");
        let r = self
            .op("POST", &format!("/v1/volunteers/{id}/token"), None)
            .await;
        assert_eq!(r.status, 200, "token: {r:?}");
        let token = r.body["token"].as_str().expect("a token").to_string();
        if let Some((lat, lon)) = at {
            self.go_on_duty(&token, lat, lon).await;
        }
        (id, token)
    }

    pub async fn go_on_duty(&self, token: &str, lat: f64, lon: f64) {
        let r = self
            .call(
                "PUT",
                "/v1/me/location",
                Some(token),
                Some(json!({"lat": lat, "lon": lon})),
            )
            .await;
        assert!(r.status < 300, "location: {r:?}");
        let r = self
            .call(
                "PUT",
                "/v1/me/duty",
                Some(token),
                Some(json!({"on_duty": true})),
            )
            .await;
        assert!(r.status < 300, "duty: {r:?}");
    }

    pub async fn alert(&self, id: &str) -> Value {
        let r = self.op("GET", &format!("/v1/alerts/{id}"), None).await;
        assert_eq!(r.status, 200, "alert {id}: {r:?}");
        r.body
    }

    /// Polls an alert until `pred` holds (or fails after `secs`).
    pub async fn wait_alert(&self, id: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let a = self.alert(id).await;
            if pred(&a) {
                return a;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "alert never reached the expected state: {a:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of a Prometheus series (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Connects a test MQTT client with the admin login (it may publish
    /// and subscribe anywhere, like an integration tool).
    pub async fn mqtt_client(&self, name: &str) -> Mqtt {
        Mqtt::connect(&self.mqtt.0, self.mqtt.1, Some(self.admin_login(name))).await
    }

    /// The admin login of the app's settings, under a fresh client id.
    pub fn admin_login(&self, name: &str) -> Login {
        let (username, password) = self
            .settings
            .mqtt_admin()
            .expect("valid settings")
            .expect("test apps have an admin login");
        Login {
            client_id: unique(name),
            username,
            password: password.expose().to_string(),
        }
    }

    /// Issues a band's MQTT secret; returns its login.
    pub async fn band_login(&self, device: &str) -> Login {
        let r = self
            .op("POST", &format!("/v1/devices/{device}/secret"), None)
            .await;
        assert_eq!(r.status, 200, "band secret: {r:?}");
        assert_eq!(s(&r.body, "username"), device);
        Login {
            client_id: device.to_string(),
            username: device.to_string(),
            password: s(&r.body, "password").to_string(),
        }
    }

    /// A band's own connection, logged in with a freshly issued secret.
    pub async fn band_client(&self, device: &str) -> Mqtt {
        let login = self.band_login(device).await;
        Mqtt::try_connect(&self.mqtt.0, self.mqtt.1, login)
            .await
            .expect("the band logs in")
    }

    /// A gateway (speaking for any band), logged in with a fresh secret.
    pub async fn gateway_client(&self, name: &str) -> Mqtt {
        let id = unique(name);
        let r = self
            .op("POST", &format!("/v1/gateways/{id}/secret"), None)
            .await;
        assert_eq!(r.status, 200, "gateway secret: {r:?}");
        let login = Login {
            client_id: id.clone(),
            username: id,
            password: s(&r.body, "password").to_string(),
        };
        // Retried: Mosquitto takes a new login in a moment after it is issued.
        mosquitto::connects(self, login).await
    }

    /// A volunteer's phone, logged in with the volunteer's token.
    pub async fn phone_client(&self, volunteer: &str, token: &str) -> Mqtt {
        let login = Login {
            client_id: volunteer.to_string(),
            username: volunteer.to_string(),
            password: token.to_string(),
        };
        Mqtt::try_connect(&self.mqtt.0, self.mqtt.1, login)
            .await
            .expect("the phone logs in")
    }
}

/// A message a test client received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub body: Value,
    pub retain: bool,
}

/// How a test client logs in.
#[derive(Debug, Clone)]
pub struct Login {
    pub client_id: String,
    pub username: String,
    pub password: String,
}

/// What the broker said to a client's CONNECT, SUBSCRIBE or connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broker {
    /// CONNACK accepted.
    Connected,
    /// CONNACK refused with this code.
    Refused(rumqttc::ConnectReturnCode),
    /// The connection ended (closed by the broker, or an I/O error).
    Closed,
    /// A SUBACK: one entry per filter, true when granted.
    SubAck(Vec<bool>),
}

/// A real MQTT client, as a band or a phone would be.
pub struct Mqtt {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Received>,
    events: mpsc::UnboundedReceiver<Broker>,
    stop: CancellationToken,
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Mqtt {
    /// Connects (without waiting for the broker's answer); with no login,
    /// anonymously under a fresh client id. It reconnects by itself.
    pub async fn connect(host: &str, port: u16, login: Option<Login>) -> Mqtt {
        let client_id = login
            .as_ref()
            .map_or_else(|| unique("anonymous"), |l| l.client_id.clone());
        let mut opts = MqttOptions::new(client_id, host, port);
        opts.set_keep_alive(Duration::from_secs(10))
            .set_clean_session(true)
            .set_max_packet_size(1 << 20, 1 << 20);
        if let Some(l) = &login {
            opts.set_credentials(&l.username, &l.password);
        }
        Self::start(opts)
    }

    /// Connects with a will, e.g. one aimed at another band's topic.
    pub async fn connect_with_will(host: &str, port: u16, login: Login, will_topic: &str) -> Mqtt {
        let mut opts = MqttOptions::new(login.client_id.clone(), host, port);
        opts.set_keep_alive(Duration::from_secs(10))
            .set_clean_session(true)
            .set_credentials(&login.username, &login.password)
            .set_last_will(rumqttc::LastWill::new(
                will_topic,
                r#"{"event_id":"will","kind":"sos"}"#,
                QoS::AtLeastOnce,
                false,
            ));
        Self::start(opts)
    }

    /// Connects and waits for the CONNACK: Err with what the broker said
    /// when it refused.
    pub async fn try_connect(host: &str, port: u16, login: Login) -> Result<Mqtt, Broker> {
        let mut m = Self::connect(host, port, Some(login)).await;
        match m.next_event(10).await {
            Broker::Connected => Ok(m),
            other => Err(other),
        }
    }

    fn start(opts: MqttOptions) -> Mqtt {
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = token.cancelled() => break,
                    ev = eventloop.poll() => ev,
                };
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        let _ = tx.send(Received {
                            topic: p.topic.clone(),
                            body,
                            retain: p.retain,
                        });
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = ev_tx.send(Broker::Connected);
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        let granted = ack
                            .return_codes
                            .iter()
                            .map(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)))
                            .collect();
                        let _ = ev_tx.send(Broker::SubAck(granted));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let said = match e {
                            rumqttc::ConnectionError::ConnectionRefused(code) => {
                                Broker::Refused(code)
                            }
                            _ => Broker::Closed,
                        };
                        let _ = ev_tx.send(said);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Mqtt {
            client,
            rx,
            events,
            stop,
        }
    }

    /// The broker's next word to this client (fails after `secs`).
    pub async fn next_event(&mut self, secs: u64) -> Broker {
        tokio::time::timeout(Duration::from_secs(secs), self.events.recv())
            .await
            .expect("the broker answers in time")
            .expect("the test MQTT client runs")
    }

    /// Waits until the connection is closed or refused (fails after `secs`).
    pub async fn expect_cut_off(&mut self, secs: u64) -> Broker {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(e @ (Broker::Closed | Broker::Refused(_)))) => return e,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the test MQTT client stopped"),
                Err(_) => panic!("the connection was not cut off within {secs}s"),
            }
        }
    }

    /// Subscribes and returns whether the broker granted it.
    pub async fn try_subscribe(&mut self, topic: &str) -> bool {
        self.client
            .subscribe(topic, QoS::AtLeastOnce)
            .await
            .expect("subscribe request");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(Broker::SubAck(granted))) => return granted.iter().all(|g| *g),
                Ok(Some(_)) => continue,
                _ => panic!("no SUBACK for {topic} within 10s"),
            }
        }
    }

    /// Subscribes and waits for the broker's SUBACK.
    pub async fn subscribe(&mut self, topic: &str) {
        assert!(
            self.try_subscribe(topic).await,
            "the broker refused the subscription to {topic}"
        );
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("publish request");
    }

    pub async fn press(&self, device: &str, event_id: &str, kind: &str, at: Option<(f64, f64)>) {
        let mut body = json!({"event_id": event_id, "kind": kind});
        if let Some((lat, lon)) = at {
            body["lat"] = json!(lat);
            body["lon"] = json!(lon);
        }
        self.publish(&format!("wristbands/{device}/alert"), body.to_string())
            .await;
    }

    /// The next message on `topic` for which `pred` holds (others on the
    /// way are skipped); fails after `secs`.
    pub async fn expect(&mut self, topic: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(m)) if m.topic == topic && pred(&m.body) => return m.body,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the test MQTT client stopped"),
                Err(_) => panic!("no matching message on {topic} within {secs}s"),
            }
        }
    }

    /// The next message on `topic` that carries the retain flag (sent by the
    /// broker from its store at subscription); fails after `secs`.
    pub async fn expect_retained(&mut self, topic: &str, secs: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(m)) if m.topic == topic && m.retain => return m.body,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the test MQTT client stopped"),
                Err(_) => panic!("no retained message on {topic} within {secs}s"),
            }
        }
    }

    /// The next retained message on `topic` within `ms`, if any.
    pub async fn try_retained(&mut self, topic: &str, ms: u64) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(m)) if m.topic == topic && m.retain => return Some(m.body),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Asserts that no message matching `pred` arrives on `topic` for `ms`.
    pub async fn expect_none(&mut self, topic: &str, ms: u64, pred: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(m)) if m.topic == topic && pred(&m.body) => {
                    panic!("unexpected message on {topic}: {}", m.body)
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    }
}

/// Reads a field of a JSON value as &str ("" when absent).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}
