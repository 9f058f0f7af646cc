//! What the end-to-end benchmarks share: the real `onepress` binary as a
//! child process on a fresh store (a temporary SQLite file with the
//! embedded broker, or a database of its own on the local PostgreSQL with a
//! private Mosquitto started from the shipped `config/mosquitto.conf`), a
//! registry seeded in bulk, the admin's MQTT clients, and the figures.
//!
//! Nothing here is timed against a limit: the benchmarks print figures and
//! fail only on wrong behaviour (a lost alert, a double offer).

#![allow(dead_code)]

pub mod presses;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, EventLoop, MqttOptions};
use sqlx::{AssertSqlSafe, Connection, Executor};

/// The admin login the benchmarks use (one password for all: loopback).
pub const ADMIN_USER: &str = "bench-admin";
pub const ADMIN_PASSWORD: &str = "bench-admin-password-0123456789";
pub const OPERATOR_TOKEN: &str = "bench-operator-token-0123456789";
/// The local PostgreSQL server (trust authentication).
pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which store and broker a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file and the embedded broker: `serve` with no settings.
    SqliteEmbedded,
    /// PostgreSQL and Mosquitto from the shipped configuration.
    PostgresMosquitto,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::SqliteEmbedded => "sqlite+embedded",
            Backend::PostgresMosquitto => "postgres+mosquitto",
        }
    }

    /// The backends named in `BENCH_BACKENDS` (`sqlite`, `postgres`,
    /// comma-separated); both by default.
    pub fn from_env() -> anyhow::Result<Vec<Backend>> {
        let wanted = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
        wanted
            .split(',')
            .map(|b| match b.trim() {
                "sqlite" => Ok(Backend::SqliteEmbedded),
                "postgres" => Ok(Backend::PostgresMosquitto),
                other => bail!("BENCH_BACKENDS: unknown backend {other:?}"),
            })
            .collect()
    }
}

pub fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child process killed (SIGKILL) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Mosquitto from the shipped configuration, moved to a temporary directory
/// and a free port on 127.0.0.1.
pub struct Mosquitto {
    _child: Killed,
    pub port: u16,
    pub dir: PathBuf,
}

impl Mosquitto {
    /// Its process id (to read its memory).
    pub fn pid(&self) -> u32 {
        self._child.0.id()
    }

    pub async fn start(dir: &Path) -> anyhow::Result<Mosquitto> {
        for sub in ["auth", "data"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let port = free_port()?;
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/mosquitto.conf"
        ))?;
        let mut conf = shipped
            .replace(
                "listener 1883 0.0.0.0",
                &format!("listener {port} 127.0.0.1"),
            )
            .replace("/mosquitto/", &format!("{}/", dir.display()));
        // As root Mosquitto would switch to its own user, who cannot read
        // a private temporary directory.
        conf.push_str("\nuser root\n");
        let conf_path = dir.join("mosquitto.conf");
        std::fs::write(&conf_path, conf)?;
        std::fs::write(dir.join("auth/passwd"), "")?;
        std::fs::write(dir.join("auth/acl"), "")?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("mosquitto runs (apt-get install mosquitto)")?;
        let m = Mosquitto {
            _child: Killed(child),
            port,
            dir: dir.to_path_buf(),
        };
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
                && dir.join("auth/mosquitto.pid").exists()
            {
                return Ok(m);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the private Mosquitto did not start")
    }
}

/// A database of its own on the local PostgreSQL, dropped at the end.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> anyhow::Result<PgDatabase> {
        let name = format!("onepress_bench_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(PG_SERVER)
            .await
            .context("the local PostgreSQL (127.0.0.1:5432)")?;
        admin
            .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await?;
        if let Ok(ms) = std::env::var("BENCH_PG_LOG_SLOWER_THAN_MS") {
            // Statements slower than this go to the server's log.
            let ms: u32 = ms.parse()?;
            admin
                .execute(AssertSqlSafe(format!(
                    r#"ALTER DATABASE "{name}" SET log_min_duration_statement = {ms}"#
                )))
                .await?;
        }
        let base = PG_SERVER.rsplit_once('/').map_or(PG_SERVER, |(b, _)| b);
        let url = match std::env::var("BENCH_PG_SOCKET") {
            // The service on PostgreSQL's Unix socket instead of TCP.
            Ok(dir) => format!("postgres://postgres@localhost/{name}?host={dir}"),
            Err(_) => format!("{base}/{name}"),
        };
        Ok(PgDatabase { url, name })
    }

    pub async fn drop_it(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(PG_SERVER).await {
            let _ = admin
                .execute(AssertSqlSafe(format!(
                    r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#,
                    self.name
                )))
                .await;
        }
    }
}

/// A fresh, empty store for `backend`: a SQLite file in `dir`, or a
/// database of its own on the local PostgreSQL (drop it at the end).
pub async fn fresh_store(
    backend: Backend,
    dir: &Path,
) -> anyhow::Result<(String, Option<PgDatabase>)> {
    Ok(match backend {
        Backend::SqliteEmbedded => (
            format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
            None,
        ),
        Backend::PostgresMosquitto => {
            let pg = PgDatabase::create().await?;
            (pg.url.clone(), Some(pg))
        }
    })
}

/// Registers `bands` seniors and bands (`s{i}`, `b{i}`) and `volunteers`
/// volunteers (`v{j}`, on duty, located now) straight into the store's
/// tables, in a few statements: registering a province one HTTP request
/// at a time would take longer than the benchmark. The schema is made by
/// the store itself first (its migrations).
pub async fn seed(database_url: &str, bands: usize, volunteers: usize) -> anyhow::Result<()> {
    drop(onepress::store::connect(database_url).await?);
    let now_ms = chrono::Utc::now().timestamp_millis();
    // Recursive CTEs: both engines take them (SQLite has no generate_series).
    let series = |n: usize| {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}) ",
            n.max(1) - 1
        )
    };
    // Band i on a grid over a city (100 x 100 points 150 m apart: about
    // 15 km across); volunteer j 30 m north of band j % bands.
    let (lat, lon) = (
        "(30.20 + (i % 100) * 0.0015)",
        "(120.10 + ((i / 100) % 100) * 0.0015)",
    );
    let b = bands.max(1);
    let (vlat, vlon) = (
        format!("(30.20027 + ((i % {b}) % 100) * 0.0015)"),
        format!("(120.10 + (((i % {b}) / 100) % 100) * 0.0015)"),
    );
    let statements = [
        format!(
            "{}INSERT INTO seniors (id, name, address, home_lat, home_lon) \
             SELECT 's' || i, 'Senior ' || i, i || ' Lotus Lane', {lat}, {lon} FROM n",
            series(bands)
        ),
        format!(
            "{}INSERT INTO devices (device_id, senior_id) SELECT 'b' || i, 's' || i FROM n",
            series(bands)
        ),
        format!(
            "{}INSERT INTO principals (id, kind) SELECT 'b' || i, 'device' FROM n",
            series(bands)
        ),
        format!(
            "{}INSERT INTO volunteers (id, name, on_duty, lat, lon, location_at) \
             SELECT 'v' || i, 'Volunteer ' || i, TRUE, {vlat}, {vlon}, {now_ms} FROM n",
            series(volunteers),
        ),
        format!(
            "{}INSERT INTO principals (id, kind) SELECT 'v' || i, 'volunteer' FROM n",
            series(volunteers)
        ),
    ];
    if database_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(database_url).await?;
        for s in &statements {
            c.execute(AssertSqlSafe(s.clone())).await?;
        }
    } else {
        let mut c = sqlx::PgConnection::connect(database_url).await?;
        for s in &statements {
            c.execute(AssertSqlSafe(s.clone())).await?;
        }
        c.execute("VACUUM ANALYZE").await?;
    }
    Ok(())
}

/// The real binary, `onepress serve`, with the settings a backend needs,
/// logging to `service.log` in its directory.
pub struct Service {
    child: Killed,
    pub base: String,
    pub mqtt: (String, u16),
    pub database_url: String,
    pub dir: PathBuf,
    _mosquitto: Option<Mosquitto>,
}

impl Service {
    /// Starts it on `database_url` (already seeded) and waits until ready.
    pub async fn start(
        backend: Backend,
        database_url: &str,
        dir: &Path,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Service> {
        let http_port = free_port()?;
        let mut env: Vec<(String, String)> = vec![
            (
                "ONEPRESS_HTTP_ADDR".into(),
                format!("127.0.0.1:{http_port}"),
            ),
            ("ONEPRESS_DATABASE_URL".into(), database_url.into()),
            ("ONEPRESS_OPERATOR_TOKEN".into(), OPERATOR_TOKEN.into()),
            (
                "ONEPRESS_MQTT_ADMIN".into(),
                format!("{ADMIN_USER}:{ADMIN_PASSWORD}"),
            ),
        ];
        let (mqtt_port, mosquitto) = match backend {
            Backend::SqliteEmbedded => {
                let port = free_port()?;
                env.push(("ONEPRESS_MQTT_URL".into(), "embedded".into()));
                env.push((
                    "ONEPRESS_EMBEDDED_MQTT_ADDR".into(),
                    format!("127.0.0.1:{port}"),
                ));
                (port, None)
            }
            Backend::PostgresMosquitto => {
                let m = Mosquitto::start(&dir.join("mosquitto")).await?;
                let auth = m.dir.join("auth");
                let user = "onepress-bench-svc";
                env.extend([
                    (
                        "ONEPRESS_MQTT_URL".into(),
                        format!(
                            "mqtt://{user}:service-password-0123456789@127.0.0.1:{}",
                            m.port
                        ),
                    ),
                    ("ONEPRESS_MQTT_CLIENT_ID".into(), user.into()),
                    (
                        "ONEPRESS_MOSQUITTO_PASSWORD_FILE".into(),
                        auth.join("passwd").display().to_string(),
                    ),
                    (
                        "ONEPRESS_MOSQUITTO_ACL_FILE".into(),
                        auth.join("acl").display().to_string(),
                    ),
                    (
                        "ONEPRESS_MOSQUITTO_PID_FILE".into(),
                        auth.join("mosquitto.pid").display().to_string(),
                    ),
                ]);
                (m.port, Some(m))
            }
        };
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let log = std::fs::File::create(dir.join("service.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_onepress"))
            .arg("serve")
            .current_dir(dir)
            .env_remove("ONEPRESS_CONFIG")
            .env("RUST_LOG", "warn")
            .envs(env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("the onepress binary starts")?;
        let service = Service {
            child: Killed(child),
            base: format!("http://127.0.0.1:{http_port}"),
            mqtt: ("127.0.0.1".into(), mqtt_port),
            database_url: database_url.into(),
            dir: dir.to_path_buf(),
            _mosquitto: mosquitto,
        };
        let http = reqwest::Client::new();
        for _ in 0..1200 {
            if let Ok(r) = http.get(format!("{}/readyz", service.base)).send().await {
                if r.status() == 200 {
                    return Ok(service);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the service was not ready within a minute; its log: {}",
            dir.join("service.log").display()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Connects as the admin (the phones' side: it alone may subscribe to
    /// every volunteer's topic). One admin connection at a time: Mosquitto
    /// takes the username as the client id, so a second one would take the
    /// first's place.
    pub async fn admin_client(
        &self,
        name: &str,
        capacity: usize,
    ) -> anyhow::Result<(AsyncClient, EventLoop)> {
        let id = format!("{name}-{}", uuid::Uuid::now_v7().simple());
        self.client(&id, ADMIN_USER, ADMIN_PASSWORD, capacity).await
    }

    /// Connects as a gateway of its own (created now): it publishes for
    /// any band and hears every band's notices.
    pub async fn gateway_client(
        &self,
        name: &str,
        capacity: usize,
    ) -> anyhow::Result<(AsyncClient, EventLoop)> {
        let id = format!("{name}-{}", uuid::Uuid::now_v7().simple());
        let login: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/gateways/{id}/secret", self.base))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let password = login["password"].as_str().unwrap_or_default().to_string();
        self.client(&id, &id, &password, capacity).await
    }

    /// Connects, retrying while the broker has not taken the login in yet
    /// (Mosquitto reloads its files after the service writes them). The
    /// event loop is handed back to be polled by the caller.
    async fn client(
        &self,
        client_id: &str,
        user: &str,
        password: &str,
        capacity: usize,
    ) -> anyhow::Result<(AsyncClient, EventLoop)> {
        let mut opts = MqttOptions::new(client_id, &self.mqtt.0, self.mqtt.1);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_credentials(user, password)
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_inflight(1000);
        for _ in 0..100 {
            let (client, mut ev) = AsyncClient::new(opts.clone(), capacity);
            // As the service does: no Nagle delay on small packets.
            let mut network = rumqttc::NetworkOptions::new();
            network.set_tcp_nodelay(true);
            ev.set_network_options(network);
            match ev.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(c)))
                    if c.code == rumqttc::ConnectReturnCode::Success =>
                {
                    return Ok((client, ev));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        bail!("the login {user} was not accepted within 10 s")
    }

    /// The service's `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.base))
            .await?
            .text()
            .await?)
    }

    /// Resident and peak memory of the process, from /proc, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Counts rows of a table in the service's store.
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        let sql = AssertSqlSafe(sql.to_string());
        if self.database_url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&self.database_url).await?;
            Ok(sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut c).await?)
        } else {
            let mut c = sqlx::PgConnection::connect(&self.database_url).await?;
            Ok(sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut c).await?)
        }
    }
}

/// The sum of a Prometheus counter's samples whose line contains every one
/// of `labels` (e.g. `topic="status"`).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// p50, p90, p99 and max of `samples` (sorted here), in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> Option<[f64; 4]> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    Some([at(0.50), at(0.90), at(0.99), at(1.0)])
}

pub fn show(samples: &mut [Duration]) -> String {
    match percentiles(samples) {
        Some([p50, p90, p99, max]) => format!(
            "p50 {p50:.1} ms  p90 {p90:.1} ms  p99 {p99:.1} ms  max {max:.1} ms  (n={})",
            samples.len()
        ),
        None => "no samples".into(),
    }
}

/// A bare broker round trip at `rate` messages a second for `seconds`:
/// the admin publishes (QoS 1) on band notice topics of bands that do not
/// exist and a gateway's connection, subscribed, receives. The floor under
/// press-to-offer.
pub async fn broker_round_trip(
    service: &Service,
    rate: usize,
    seconds: u64,
) -> anyhow::Result<Vec<Duration>> {
    use rumqttc::{Event, Packet, QoS};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let (sub, mut sub_loop) = service.gateway_client("bench-rtt", 10_000).await?;
    sub.subscribe("wristbands/+/notify", QoS::AtLeastOnce)
        .await?;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let got: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let (s2, g2) = (sent.clone(), got.clone());
    let reader = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(ev) = sub_loop.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let now = Instant::now();
                    let at = s2.lock().ok().and_then(|m| m.get(&p.topic).copied());
                    if let (Some(at), Ok(mut g)) = (at, g2.lock()) {
                        g.push(now - at);
                    }
                }
                _ => {}
            }
        }
    });
    subscribed.await?;
    let (publisher, mut pub_loop) = service.admin_client("bench-rtt-pub", 10_000).await?;
    let poller = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let n = rate * seconds as usize;
    let started = Instant::now();
    for i in 0..n {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let t = format!("wristbands/rtt-{run}-{i}/notify");
        if let Ok(mut s) = sent.lock() {
            s.insert(t.clone(), Instant::now());
        }
        publisher
            .publish(t, QoS::AtLeastOnce, false, vec![b'x'; 200])
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().map(|g| g.len()).unwrap_or(n) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.abort();
    poller.abort();
    let samples = got.lock().map(|g| g.clone()).unwrap_or_default();
    Ok(samples)
}

/// A bare insert-and-commit loop on the same store for `seconds`: one row,
/// one transaction, one at a time, durable as the service's (SQLite
/// `synchronous=FULL` in WAL mode; PostgreSQL's defaults). The floor under
/// every commit the engine makes.
pub async fn commit_loop(database_url: &str, seconds: u64) -> anyhow::Result<Vec<Duration>> {
    use std::time::Instant;
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let create = "CREATE TABLE IF NOT EXISTS bench_commits (id BIGINT, at BIGINT)";
    let insert = "INSERT INTO bench_commits (id, at) VALUES ($1, $2)";
    if database_url.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = database_url.parse()?;
        let options = options
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
        let mut c = sqlx::SqliteConnection::connect_with(&options).await?;
        c.execute(create).await?;
        let mut i = 0i64;
        while Instant::now() < deadline {
            let t = Instant::now();
            let mut tx = c.begin().await?;
            sqlx::query(insert)
                .bind(i)
                .bind(i)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            samples.push(t.elapsed());
            i += 1;
        }
    } else {
        let mut c = sqlx::PgConnection::connect(database_url).await?;
        c.execute(create).await?;
        let mut i = 0i64;
        while Instant::now() < deadline {
            let t = Instant::now();
            let mut tx = c.begin().await?;
            sqlx::query(insert)
                .bind(i)
                .bind(i)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            samples.push(t.elapsed());
            i += 1;
        }
    }
    Ok(samples)
}
