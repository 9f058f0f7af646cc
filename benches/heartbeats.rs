//! Benchmark 2b (issue 10): heartbeat ingest through Mosquitto into the
//! service, beside a bare subscriber on the same broker, same stream, same
//! run. The figure is the ratio of the service's sustained rate to the bare
//! subscriber's.
//!
//! Each run is fresh: a private Mosquitto from the shipped
//! `config/mosquitto.conf` on a free port (`support::Mosquitto`), the real
//! release binary (`onepress serve`) as a child process on a new SQLite file
//! or a new PostgreSQL database, `HB_BANDS` bands registered by bulk SQL,
//! `HB_PUBLISHERS` gateways publishing heartbeats for all bands round-robin
//! as fast as the broker takes them (or at `HB_RATE` a second in all), and
//! a bare rumqttc subscriber on `wristbands/+/status` at the service's QoS.
//! After `HB_WARMUP` seconds the counters are read, again `HB_SECONDS`
//! later: the bare subscriber's count, and the service's accepted and
//! rejected status messages from its `/metrics`. Then the publishers stop,
//! both drain, and the store is asked whose `last_seen` was recorded.
//!
//! Run: `cargo bench --bench heartbeats` (`HB_BACKENDS=sqlite,postgres`,
//! `HB_RUNS`, `HB_BANDS`, `HB_SECONDS`, `HB_QOS`, `HB_PUBLISHERS`,
//! `HB_RATE`; `HB_KEEP_LOG=path` keeps the service's log; PostgreSQL at `ONEPRESS_BENCH_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, where each run creates and
//! drops its own database).

#[path = "support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPERATOR_TOKEN: &str = "heartbeat-bench-operator-token";
/// The bare subscriber's login (the admin: it may read every topic).
const ADMIN: (&str, &str) = ("hb-bench-admin", "hb-bench-admin-password");
const SERVICE: (&str, &str) = ("onepress-hb-bench", "hb-bench-service-password");

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Params {
    bands: usize,
    seconds: u64,
    warmup: u64,
    qos: u8,
    publishers: usize,
    /// Offered messages a second in all; 0: as fast as the broker takes them.
    rate: u64,
    pg_server: String,
}

/// One run's figures.
#[derive(Debug, Default, Clone)]
struct Figures {
    offered: f64,
    bare: f64,
    service: f64,
    rejected_overloaded: f64,
    published: u64,
    bare_total: u64,
    service_total: u64,
    overloaded_total: u64,
    recorded: i64,
    bands: usize,
}

impl Figures {
    fn ratio(&self) -> f64 {
        if self.bare > 0.0 {
            self.service / self.bare
        } else {
            0.0
        }
    }
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_all())
}

async fn run_all() -> anyhow::Result<()> {
    let p = Params {
        bands: env_or("HB_BANDS", 100_000),
        seconds: env_or("HB_SECONDS", 20),
        warmup: env_or("HB_WARMUP", 3),
        qos: env_or("HB_QOS", 0u8).min(1),
        publishers: env_or("HB_PUBLISHERS", 2usize).max(1),
        rate: env_or("HB_RATE", 0),
        pg_server: std::env::var("ONEPRESS_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    };
    let runs: usize = env_or("HB_RUNS", 3usize).max(1);
    let backends: Vec<Backend> = std::env::var("HB_BACKENDS")
        .unwrap_or_else(|_| "sqlite,postgres".into())
        .split(',')
        .filter_map(|b| match b.trim() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "pg" => Some(Backend::Postgres),
            _ => None,
        })
        .collect();
    println!(
        "heartbeats: {} bands, {} publisher(s), QoS {}, offered {}, {} s measured after {} s warm-up, {} run(s) per backend",
        p.bands,
        p.publishers,
        p.qos,
        if p.rate == 0 {
            "as fast as the broker takes them".to_string()
        } else {
            format!("{}/s", p.rate)
        },
        p.seconds,
        p.warmup,
        runs
    );
    let mut all = Vec::new();
    for backend in backends {
        let mut figures = Vec::new();
        for i in 0..runs {
            let f = run(backend, &p)
                .await
                .with_context(|| format!("{backend:?} run {}", i + 1))?;
            println!(
                "{backend:?} run {}: offered {:.0}/s  bare {:.0}/s  service {:.0}/s  ratio {:.1} %  overloaded {:.0}/s | after draining: published {}, bare got {}, service accepted {}, overloaded {}; bands with last_seen recorded {}/{}",
                i + 1,
                f.offered,
                f.bare,
                f.service,
                100.0 * f.ratio(),
                f.rejected_overloaded,
                f.published,
                f.bare_total,
                f.service_total,
                f.overloaded_total,
                f.recorded,
                f.bands,
            );
            figures.push(f);
        }
        all.push((backend, figures));
    }
    println!("\nsummary (median [min–max] over runs):");
    for (backend, figures) in &all {
        let spread = |get: &dyn Fn(&Figures) -> f64| {
            let mut v: Vec<f64> = figures.iter().map(get).collect();
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let (om, ol, oh) = spread(&|f| f.offered);
        let (bm, bl, bh) = spread(&|f| f.bare);
        let (sm, sl, sh) = spread(&|f| f.service);
        let (rm, rl, rh) = spread(&|f| 100.0 * f.ratio());
        let (xm, xl, xh) = spread(&|f| f.rejected_overloaded);
        let every = figures.iter().all(|f| f.recorded == f.bands as i64);
        println!(
            "{backend:?}: offered {om:.0} [{ol:.0}–{oh:.0}]/s  bare {bm:.0} [{bl:.0}–{bh:.0}]/s  service {sm:.0} [{sl:.0}–{sh:.0}]/s  ratio {rm:.1} [{rl:.1}–{rh:.1}] %  overloaded {xm:.0} [{xl:.0}–{xh:.0}]/s  every band recorded: {every}"
        );
    }
    Ok(())
}

/// One fresh run on `backend`.
async fn run(backend: Backend, p: &Params) -> anyhow::Result<Figures> {
    let mosquitto_dir = tempfile::tempdir()?;
    let mosquitto = support::Mosquitto::start(mosquitto_dir.path()).await?;
    let dir = tempfile::tempdir()?;
    let (database_url, pg_drop) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("hb.db").display()),
            None,
        ),
        Backend::Postgres => {
            let name = format!("onepress_hb_{}", uuid::Uuid::now_v7().simple());
            let mut admin = PgConnection::connect(&p.pg_server).await?;
            admin
                .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
                .await?;
            let base = p
                .pg_server
                .rsplit_once('/')
                .map_or(p.pg_server.as_str(), |(b, _)| b);
            (format!("{base}/{name}"), Some(name))
        }
    };
    let outcome = measure(&mosquitto, &database_url, dir.path(), p).await;
    if let Ok(keep) = std::env::var("HB_KEEP_LOG") {
        let _ = std::fs::copy(dir.path().join("service.log"), keep);
    }
    if outcome.is_err() {
        let log = std::fs::read_to_string(dir.path().join("service.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!(
            "service log (last lines, newest first):\n{}",
            tail.join("\n")
        );
    }
    if let Some(name) = pg_drop {
        let mut admin = PgConnection::connect(&p.pg_server).await?;
        let _ = admin
            .execute(AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .await;
    }
    outcome
}

/// The service as a child process: `onepress serve`, stopped (SIGTERM,
/// then SIGKILL) when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn measure(
    mosquitto: &support::Mosquitto,
    database_url: &str,
    dir: &std::path::Path,
    p: &Params,
) -> anyhow::Result<Figures> {
    let http_port = support::free_port()?;
    let log = std::fs::File::create(dir.join("service.log"))?;
    let child = Command::new(env!("CARGO_BIN_EXE_onepress"))
        .arg("serve")
        .env("ONEPRESS_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("ONEPRESS_DATABASE_URL", database_url)
        .env(
            "ONEPRESS_MQTT_URL",
            format!(
                "mqtt://{}:{}@127.0.0.1:{}",
                SERVICE.0, SERVICE.1, mosquitto.port
            ),
        )
        .env("ONEPRESS_MQTT_CLIENT_ID", SERVICE.0)
        .env("ONEPRESS_MQTT_ADMIN", format!("{}:{}", ADMIN.0, ADMIN.1))
        .env("ONEPRESS_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env(
            "ONEPRESS_MOSQUITTO_PASSWORD_FILE",
            mosquitto.dir.join("auth/passwd"),
        )
        .env(
            "ONEPRESS_MOSQUITTO_ACL_FILE",
            mosquitto.dir.join("auth/acl"),
        )
        .env(
            "ONEPRESS_MOSQUITTO_PID_FILE",
            mosquitto.dir.join("auth/mosquitto.pid"),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting onepress serve")?;
    let _service = Service(child);
    let base = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("service.log")).unwrap_or_default();
            bail!("the service did not become ready:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    register(database_url, p.bands).await?;

    // The gateways the publishers log in as.
    let mut logins = Vec::new();
    for g in 0..p.publishers {
        let login: serde_json::Value = http
            .post(format!("{base}/v1/gateways/hb-gw-{g}/secret"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let field = |k: &str| login[k].as_str().unwrap_or_default().to_string();
        logins.push((field("username"), field("password")));
    }

    // The bare subscriber.
    let bare = Arc::new(AtomicU64::new(0));
    let qos = if p.qos == 1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let mut opts = MqttOptions::new(ADMIN.0, "127.0.0.1", mosquitto.port);
    opts.set_keep_alive(Duration::from_secs(60))
        .set_credentials(ADMIN.0, ADMIN.1)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (sub, mut sub_loop) = AsyncClient::new(opts, 1000);
    sub.subscribe("wristbands/+/status", qos).await?;
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let counter = bare.clone();
    let bare_task = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        loop {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    counter.fetch_add(1, Relaxed);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .context("the bare subscriber was not subscribed in time")??;
    // The service subscribes once connected; /readyz says so.

    // The publishers.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let started_ms = chrono::Utc::now().timestamp_millis();
    let mut publishers = Vec::new();
    for (g, (user, password)) in logins.into_iter().enumerate() {
        let stream = publisher::connect(mosquitto.port, &user, &password).await?;
        let share = publisher::Share {
            first: g,
            step: p.publishers,
            bands: p.bands,
            qos: p.qos,
            rate: p.rate / p.publishers as u64,
        };
        publishers.push(tokio::spawn(publisher::run(
            stream,
            share,
            stop.clone(),
            published.clone(),
        )));
    }

    let snapshot = |http: reqwest::Client| {
        let (bare, published) = (bare.clone(), published.clone());
        let url = format!("{base}/metrics");
        async move {
            // A pooled connection the server has just closed fails once.
            let mut tries = 0;
            let text = loop {
                match http.get(&url).send().await {
                    Ok(r) => break r.text().await?,
                    Err(e) if tries < 3 => {
                        tries += 1;
                        eprintln!("retrying /metrics: {e}");
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            anyhow::Ok(Snapshot {
                at: Instant::now(),
                bare: bare.load(Relaxed),
                published: published.load(Relaxed),
                accepted: metric(
                    &text,
                    "onepress_ingest_messages_total",
                    &["topic=\"status\"", "outcome=\"accepted\""],
                ),
                overloaded: metric(
                    &text,
                    "onepress_ingest_rejected_total",
                    &["reason=\"overloaded\""],
                ),
            })
        }
    };
    tokio::time::sleep(Duration::from_secs(p.warmup)).await;
    let s0 = snapshot(http.clone()).await?;
    tokio::time::sleep(Duration::from_secs(p.seconds)).await;
    let s1 = snapshot(http.clone()).await?;
    stop.store(true, Relaxed);
    for t in publishers {
        t.await??;
    }
    // Drain: until neither count moves for 2 s (at most 60 s).
    let mut last = snapshot(http.clone()).await?;
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = snapshot(http.clone()).await?;
        let still = now.bare == last.bare
            && now.accepted == last.accepted
            && now.overloaded == last.overloaded;
        last = now;
        if still || Instant::now() > drain_deadline {
            break;
        }
    }
    bare_task.abort();
    // The batch writer flushes every 250 ms.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let recorded = recorded_since(database_url, started_ms).await?;
    let secs = (s1.at - s0.at).as_secs_f64();
    Ok(Figures {
        offered: (s1.published - s0.published) as f64 / secs,
        bare: (s1.bare - s0.bare) as f64 / secs,
        service: (s1.accepted - s0.accepted) / secs,
        rejected_overloaded: (s1.overloaded - s0.overloaded) / secs,
        published: last.published,
        bare_total: last.bare,
        service_total: last.accepted as u64,
        overloaded_total: last.overloaded as u64,
        recorded,
        bands: p.bands,
    })
}

struct Snapshot {
    at: Instant,
    bare: u64,
    published: u64,
    accepted: f64,
    overloaded: f64,
}

/// The sum of a Prometheus counter's samples whose labels include all of
/// `labels` (0 if none).
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Registers `bands` seniors and one band each (`b0`…) by bulk SQL, in
/// the database the service has just migrated.
async fn register(database_url: &str, bands: usize) -> anyhow::Result<()> {
    let n = bands as i64;
    if database_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(database_url).await?;
        let mut tx = c.begin().await?;
        for q in [
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
             INSERT INTO seniors (id, name) SELECT 's' || i, 'Senior ' || i FROM n",
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
             INSERT INTO devices (device_id, senior_id) SELECT 'b' || i, 's' || i FROM n",
        ] {
            sqlx::query(q).bind(n).execute(&mut *tx).await?;
        }
        tx.commit().await?;
    } else {
        let mut c = PgConnection::connect(database_url).await?;
        let mut tx = c.begin().await?;
        for q in [
            "INSERT INTO seniors (id, name) SELECT 's' || i, 'Senior ' || i \
             FROM generate_series(0, $1 - 1) AS i",
            "INSERT INTO devices (device_id, senior_id) SELECT 'b' || i, 's' || i \
             FROM generate_series(0, $1 - 1) AS i",
        ] {
            sqlx::query(q).bind(n).execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Bands whose `last_seen` is at or after `since_ms`.
async fn recorded_since(database_url: &str, since_ms: i64) -> anyhow::Result<i64> {
    const Q: &str = "SELECT COUNT(*) FROM devices WHERE last_seen >= $1";
    Ok(if database_url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(database_url).await?;
        sqlx::query_scalar(Q)
            .bind(since_ms)
            .fetch_one(&mut c)
            .await?
    } else {
        let mut c = PgConnection::connect(database_url).await?;
        sqlx::query_scalar(Q)
            .bind(since_ms)
            .fetch_one(&mut c)
            .await?
    })
}

/// A heartbeat publisher speaking MQTT 3.1.1 straight over TCP: packets
/// are encoded into a buffer and written in large writes, so that the load
/// generator costs the shared two cores as little as possible.
mod publisher {
    use super::*;

    pub struct Share {
        /// This publisher's bands: `first`, `first + step`, … below `bands`.
        pub first: usize,
        pub step: usize,
        pub bands: usize,
        pub qos: u8,
        /// Messages a second; 0: as fast as the socket takes them.
        pub rate: u64,
    }

    fn remaining_length(buf: &mut Vec<u8>, mut len: usize) {
        loop {
            let mut byte = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                byte |= 0x80;
            }
            buf.push(byte);
            if len == 0 {
                break;
            }
        }
    }

    fn string(buf: &mut Vec<u8>, s: &[u8]) {
        buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
        buf.extend_from_slice(s);
    }

    /// Connects with a clean session and waits for the CONNACK, retrying
    /// while Mosquitto has not reloaded the just-issued login (10 s).
    pub async fn connect(
        port: u16,
        user: &str,
        password: &str,
    ) -> anyhow::Result<tokio::net::TcpStream> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut body = Vec::new();
            string(&mut body, b"MQTT");
            body.push(4); // 3.1.1
            body.push(0xC2); // user name, password, clean session
            body.extend_from_slice(&60u16.to_be_bytes());
            string(&mut body, user.as_bytes()); // client id = user name
            string(&mut body, user.as_bytes());
            string(&mut body, password.as_bytes());
            let mut packet = vec![0x10];
            remaining_length(&mut packet, body.len());
            packet.extend_from_slice(&body);
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            stream.set_nodelay(true)?;
            stream.write_all(&packet).await?;
            let mut ack = [0u8; 4];
            let got = tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut ack))
                .await
                .ok()
                .and_then(Result::ok);
            if got.is_some() && ack[0] == 0x20 && ack[3] == 0 {
                return Ok(stream);
            }
            if Instant::now() > deadline {
                bail!("gateway {user} could not log in (CONNACK {ack:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Publishes heartbeats for its bands round-robin until `stop`. A
    /// heartbeat carries battery, position and the time of its round.
    pub async fn run(
        stream: tokio::net::TcpStream,
        share: Share,
        stop: Arc<AtomicBool>,
        published: Arc<AtomicU64>,
    ) -> anyhow::Result<()> {
        let (mut read, mut write) = stream.into_split();
        // PUBACKs (QoS 1) and anything else the broker sends: read and
        // dropped.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while read.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        const CHUNK: usize = 256;
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut band = share.first;
        let mut packet_id: u16 = 0;
        let mut ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let started = Instant::now();
        let mut sent: u64 = 0;
        while !stop.load(Relaxed) {
            buf.clear();
            for _ in 0..CHUNK {
                let topic = format!("wristbands/b{band}/status");
                let payload = format!(
                    r#"{{"battery":{},"lat":30.{:04},"lon":120.{:04},"ts":"{ts}"}}"#,
                    band % 101,
                    band % 10_000,
                    (band / 7) % 10_000
                );
                let id_len = if share.qos == 1 { 2 } else { 0 };
                buf.push(if share.qos == 1 { 0x32 } else { 0x30 });
                remaining_length(&mut buf, 2 + topic.len() + id_len + payload.len());
                string(&mut buf, topic.as_bytes());
                if share.qos == 1 {
                    packet_id = packet_id.checked_add(1).unwrap_or(1);
                    buf.extend_from_slice(&packet_id.to_be_bytes());
                }
                buf.extend_from_slice(payload.as_bytes());
                band += share.step;
                if band >= share.bands {
                    band = share.first;
                    ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                }
            }
            write.write_all(&buf).await?;
            sent += CHUNK as u64;
            published.fetch_add(CHUNK as u64, Relaxed);
            if share.rate > 0 {
                let due = started + Duration::from_secs_f64(sent as f64 / share.rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        write.shutdown().await?;
        reader.abort();
        Ok(())
    }
}
