//! Benchmark 2e: the service's resident memory with 1M registered bands
//! (seniors and devices, each with a broker login) and 100k volunteers (on
//! duty, located, each with a login and a token), on both backends:
//! SQLite + the embedded broker, and PostgreSQL + a private Mosquitto
//! started from the shipped `config/mosquitto.conf` (the service writes its
//! password and ACL files, every login in them, as in production).
//!
//! The registry is seeded once per backend by bulk SQL into a fresh store
//! (migrated by the service's own code), then each run copies it (SQLite:
//! the file; PostgreSQL: `CREATE DATABASE … TEMPLATE`), starts the real
//! release binary (`onepress serve`) on the copy, waits for `/readyz`,
//! drives heartbeats from many bands and a few presses over MQTT (so that
//! the heartbeat batches, the dispatcher and the broker are touched), lets
//! it settle and reads `VmRSS` and `VmHWM` from `/proc/<pid>/status`.
//!
//! Run: `cargo build --release && cargo bench --bench memory`.
//! Vary with `MEMORY_BANDS` (1000000), `MEMORY_VOLUNTEERS` (100000),
//! `MEMORY_HEARTBEATS` (200000), `MEMORY_PRESSES` (100), `MEMORY_RUNS` (3),
//! `MEMORY_BACKENDS` (`sqlite,postgres`) and `MEMORY_PG_URL` (a server,
//! `postgres://postgres@127.0.0.1:5432/postgres`).

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, SqliteConnection};
use support::Mosquitto;

const ADMIN_USER: &str = "memory-bench-admin";
const ADMIN_PASSWORD: &str = "memory-bench-admin-password";
const OPERATOR_TOKEN: &str = "memory-bench-operator-token";
/// The one MQTT secret every seeded band and phone has (its hash is in
/// every principal row, as a real secret's would be).
const BAND_SECRET: &str = "memory-bench-band-secret";

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite + embedded broker",
            Backend::Postgres => "PostgreSQL + Mosquitto",
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    ready_s: f64,
    rss_ready_kib: u64,
    rss_kib: u64,
    hwm_kib: u64,
    /// The private Mosquitto's resident memory (a separate process).
    broker_rss_kib: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scale = Scale {
        bands: env_usize("MEMORY_BANDS", 1_000_000),
        volunteers: env_usize("MEMORY_VOLUNTEERS", 100_000),
        heartbeats: env_usize("MEMORY_HEARTBEATS", 200_000),
        presses: env_usize("MEMORY_PRESSES", 100),
    };
    let runs = env_usize("MEMORY_RUNS", 3).max(1);
    let backends: Vec<Backend> = std::env::var("MEMORY_BACKENDS")
        .unwrap_or_else(|_| "sqlite,postgres".into())
        .split(',')
        .map(|b| match b.trim() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" => Ok(Backend::Postgres),
            other => bail!("MEMORY_BACKENDS: unknown backend {other:?}"),
        })
        .collect::<anyhow::Result<_>>()?;
    let binary = service_binary()?;
    eprintln!("service: {}", binary.display());
    let mut results = Vec::new();
    for backend in backends {
        let figures = match backend {
            Backend::Sqlite => sqlite_runs(&binary, &scale, runs).await?,
            Backend::Postgres => postgres_runs(&binary, &scale, runs).await?,
        };
        results.push((backend, figures));
    }
    println!(
        "\nresident memory of `onepress serve` with {} bands and {} volunteers \
         ({} heartbeats and {} presses driven), {runs} fresh runs each:",
        scale.bands, scale.volunteers, scale.heartbeats, scale.presses
    );
    println!(
        "{:<26} {:>9} {:>18} {:>18} {:>18} {:>14}",
        "backend", "ready", "RSS at ready", "RSS after load", "peak (VmHWM)", "Mosquitto RSS"
    );
    for (backend, figures) in &results {
        let spread = |f: &dyn Fn(&Figures) -> f64, unit: &str| {
            let mut v: Vec<f64> = figures.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            let med = v[v.len() / 2];
            format!("{med:.0} {unit} ({:.0}–{:.0})", v[0], v[v.len() - 1])
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        let broker = if figures.iter().all(|f| f.broker_rss_kib.is_some()) {
            spread(&|f| mib(f.broker_rss_kib.unwrap_or(0)), "MiB")
        } else {
            "(in process)".into()
        };
        println!(
            "{:<26} {:>9} {:>18} {:>18} {:>18} {:>14}",
            backend.label(),
            {
                let mut v: Vec<f64> = figures.iter().map(|f| f.ready_s).collect();
                v.sort_by(f64::total_cmp);
                format!("{:.1} s", v[v.len() / 2])
            },
            spread(&|f| mib(f.rss_ready_kib), "MiB"),
            spread(&|f| mib(f.rss_kib), "MiB"),
            spread(&|f| mib(f.hwm_kib), "MiB"),
            broker
        );
    }
    println!("(median of the runs, min–max in brackets; 1 GiB = 1024 MiB)");
    Ok(())
}

struct Scale {
    bands: usize,
    volunteers: usize,
    heartbeats: usize,
    presses: usize,
}

/// The release binary next to this bench's target directory, built first
/// if it is not there.
fn service_binary() -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // This executable is target/release/deps/memory-<hash>.
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let binary = target.join("release/onepress");
    if !binary.exists() {
        eprintln!(
            "{} is missing: running `cargo build --release --bin onepress` first…",
            binary.display()
        );
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--release", "--bin", "onepress"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .context("running cargo build --release")?;
        if !status.success() || !binary.exists() {
            bail!("could not build {}", binary.display());
        }
    }
    Ok(binary)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The bulk inserts, for a backend whose row source is `rows(n)`: a
/// relation with one column `i` from 0 to n - 1, and `hex64(x)`: x as 64
/// hex digits.
fn seed_statements(
    scale: &Scale,
    rows: impl Fn(usize) -> (String, String),
    hex64: impl Fn(&str) -> String,
) -> Vec<String> {
    let hash = onepress::access::secret::hash(BAND_SECRET);
    assert!(!hash.contains('\''), "a $6$ hash holds no quote");
    let now = now_ms();
    // Spread over Zhejiang, the same spots for a band and its senior.
    let lat = "(27.0 + (i * 7919 % 4200) / 1000.0)";
    let lon = "(118.0 + (i * 104729 % 4900) / 1000.0)";
    let insert = |n: usize, body: &str| {
        let (with, from) = rows(n);
        format!("{with} {body} {from}")
    };
    let (b, v) = (scale.bands, scale.volunteers);
    vec![
        insert(
            b,
            &format!(
                "INSERT INTO seniors (id, name, address, home_lat, home_lon, notes, contacts) \
                 SELECT 's' || i, 'Senior ' || i, i || ' Canal Lane, Hangzhou', {lat}, {lon}, \
                 'hard of hearing', '[]'"
            ),
        ),
        insert(
            b,
            &format!(
                "INSERT INTO devices (device_id, senior_id, last_seen, battery, lat, lon) \
                 SELECT 'b' || i, 's' || i, {now}, 80, {lat}, {lon}"
            ),
        ),
        insert(
            b,
            &format!(
                "INSERT INTO principals (id, kind, secret_hash, changed_at) \
                 SELECT 'b' || i, 'device', '{hash}', {now}"
            ),
        ),
        insert(
            v,
            &format!(
                "INSERT INTO volunteers (id, name, phone, skills, on_duty, lat, lon, location_at) \
                 SELECT 'v' || i, 'Volunteer ' || i, '+86 138 0000 ' || i, '[]', TRUE, \
                 {lat} + 0.0003, {lon}, {now}"
            ),
        ),
        insert(
            v,
            &format!(
                "INSERT INTO principals (id, kind, secret_hash, changed_at) \
                 SELECT 'v' || i, 'volunteer', '{hash}', {now}"
            ),
        ),
        insert(
            v,
            &format!(
                "INSERT INTO volunteer_tokens (volunteer_id, token_hash) SELECT 'v' || i, {}",
                hex64("i")
            ),
        ),
    ]
}

async fn sqlite_runs(binary: &Path, scale: &Scale, runs: usize) -> anyhow::Result<Vec<Figures>> {
    let dir = tempfile::tempdir()?;
    let template = dir.path().join("seeded.db");
    let url = format!("sqlite://{}", template.display());
    let started = Instant::now();
    // Created and migrated by the service's own store code.
    drop(onepress::store::connect(&url).await?);
    let mut conn = SqliteConnection::connect(&url).await?;
    let statements = seed_statements(
        scale,
        |n| {
            (
                format!(
                    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {n})"
                ),
                "FROM n".into(),
            )
        },
        |x| format!("printf('%064x', {x})"),
    );
    for sql in statements {
        conn.execute(AssertSqlSafe(sql)).await?;
    }
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    conn.close().await?;
    eprintln!(
        "SQLite: seeded {} bands and {} volunteers in {:.1?} ({} MiB)",
        scale.bands,
        scale.volunteers,
        started.elapsed(),
        std::fs::metadata(&template)?.len() >> 20
    );
    let mut out = Vec::new();
    for run in 1..=runs {
        let db = dir.path().join(format!("run{run}.db"));
        std::fs::copy(&template, &db)?;
        let url = format!("sqlite://{}", db.display());
        let env = vec![("ONEPRESS_DATABASE_URL".to_string(), url.clone())];
        let f = measure(binary, scale, &url, env, None, dir.path(), run).await?;
        report(Backend::Sqlite, run, &f);
        out.push(f);
        std::fs::remove_file(&db)?;
        for ext in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("run{run}.db{ext}")));
        }
    }
    Ok(out)
}

async fn postgres_runs(binary: &Path, scale: &Scale, runs: usize) -> anyhow::Result<Vec<Figures>> {
    let server = std::env::var("MEMORY_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    let stem = format!("onepress_memory_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&server)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let template = format!("{stem}_seeded");
    let mut made = vec![template.clone()];
    let result = async {
        admin
            .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{template}""#)))
            .await?;
        let url = format!("{base}/{template}");
        let started = Instant::now();
        let store = onepress::store::connect(&url).await?;
        drop(store);
        let mut conn = PgConnection::connect(&url).await?;
        let statements = seed_statements(
            scale,
            |n| {
                (
                    String::new(),
                    format!("FROM generate_series(0::bigint, {n} - 1) AS n(i)"),
                )
            },
            |x| format!("lpad(to_hex({x}), 64, '0')"),
        );
        for sql in statements {
            conn.execute(AssertSqlSafe(sql)).await?;
        }
        conn.execute("VACUUM ANALYZE").await?;
        conn.close().await?;
        eprintln!(
            "PostgreSQL: seeded {} bands and {} volunteers in {:.1?}",
            scale.bands,
            scale.volunteers,
            started.elapsed()
        );
        let mut out = Vec::new();
        let dir = tempfile::tempdir()?;
        for run in 1..=runs {
            let name = format!("{stem}_run{run}");
            made.push(name.clone());
            // Retried: the template may still be held for a moment by the
            // service's pool that just closed.
            let mut tries = 0;
            while let Err(e) = admin
                .execute(AssertSqlSafe(format!(
                    r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#
                )))
                .await
            {
                tries += 1;
                if tries > 50 {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mosquitto = Mosquitto::start(&dir.path().join(format!("mosquitto-{run}"))).await?;
            let service = format!("onepress-memory-{run}");
            let password = onepress::access::secret::new_secret();
            let url = format!("{base}/{name}");
            let env = vec![
                ("ONEPRESS_DATABASE_URL".to_string(), url.clone()),
                (
                    "ONEPRESS_MQTT_URL".into(),
                    format!("mqtt://{service}:{password}@127.0.0.1:{}", mosquitto.port),
                ),
                ("ONEPRESS_MQTT_CLIENT_ID".into(), service),
                (
                    "ONEPRESS_MOSQUITTO_PASSWORD_FILE".into(),
                    mosquitto.dir.join("auth/passwd").display().to_string(),
                ),
                (
                    "ONEPRESS_MOSQUITTO_ACL_FILE".into(),
                    mosquitto.dir.join("auth/acl").display().to_string(),
                ),
                (
                    "ONEPRESS_MOSQUITTO_PID_FILE".into(),
                    mosquitto
                        .dir
                        .join("auth/mosquitto.pid")
                        .display()
                        .to_string(),
                ),
            ];
            let f = measure(binary, scale, &url, env, Some(&mosquitto), dir.path(), run).await?;
            report(Backend::Postgres, run, &f);
            out.push(f);
            drop(mosquitto);
            admin
                .execute(AssertSqlSafe(format!(
                    r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                )))
                .await?;
            made.pop();
        }
        anyhow::Ok(out)
    }
    .await;
    for name in made {
        let _ = admin
            .execute(AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .await;
    }
    result
}

fn report(backend: Backend, run: usize, f: &Figures) {
    eprintln!(
        "{} run {run}: ready in {:.1} s; VmRSS {} MiB at ready, {} MiB after load; VmHWM {} MiB{}",
        backend.label(),
        f.ready_s,
        f.rss_ready_kib / 1024,
        f.rss_kib / 1024,
        f.hwm_kib / 1024,
        f.broker_rss_kib
            .map(|k| format!("; Mosquitto VmRSS {} MiB", k / 1024))
            .unwrap_or_default()
    );
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_of(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The service process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the service with `env`, waits until ready, drives it, measures.
async fn measure(
    binary: &Path,
    scale: &Scale,
    db_url: &str,
    mut env: Vec<(String, String)>,
    mosquitto: Option<&Mosquitto>,
    dir: &Path,
    run: usize,
) -> anyhow::Result<Figures> {
    let http_port = free_port()?;
    let mqtt_port = free_port()?;
    env.extend([
        (
            "ONEPRESS_HTTP_ADDR".to_string(),
            format!("127.0.0.1:{http_port}"),
        ),
        (
            "ONEPRESS_EMBEDDED_MQTT_ADDR".into(),
            format!("127.0.0.1:{mqtt_port}"),
        ),
        ("ONEPRESS_OPERATOR_TOKEN".into(), OPERATOR_TOKEN.into()),
        (
            "ONEPRESS_MQTT_ADMIN".into(),
            format!("{ADMIN_USER}:{ADMIN_PASSWORD}"),
        ),
    ]);
    let log_path = dir.join(format!("service-run{run}.log"));
    let mut cmd = Command::new(binary);
    cmd.arg("serve")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?);
    // Nothing from the caller's environment names a setting.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ONEPRESS_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env);
    let started = Instant::now();
    let mut service = Service(cmd.spawn().context("starting onepress serve")?);
    let pid = service.0.id();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http_port}");
    let deadline = started + Duration::from_secs(600);
    loop {
        if let Some(status) = service.0.try_wait()? {
            bail!(
                "the service exited ({status}) before it was ready; its log: {}",
                log_path.display()
            );
        }
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("not ready after 10 minutes; log: {}", log_path.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_s = started.elapsed().as_secs_f64();
    let (rss_ready_kib, _) = memory_of(pid)?;

    // Load: heartbeats from many bands, then a few presses.
    let port = mosquitto.map_or(mqtt_port, |m| m.port);
    let mut opts = MqttOptions::new(ADMIN_USER, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_credentials(ADMIN_USER, ADMIN_PASSWORD)
        .set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    let polling = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(_) => {}
                Err(e) => {
                    eprintln!("load generator's MQTT connection: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    let load = Instant::now();
    for i in 0..scale.heartbeats {
        let band = (i * 7) % scale.bands.max(1);
        let body = json!({"battery": 55, "lat": 30.2 + (i % 1000) as f64 * 1e-4, "lon": 120.1});
        client
            .publish(
                format!("wristbands/b{band}/status"),
                QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .await?;
    }
    for i in 0..scale.presses {
        let band = (i * 10_007) % scale.bands.max(1);
        let body = json!({"event_id": format!("memory-{run}-{i}"), "kind": "sos"});
        client
            .publish(
                format!("wristbands/b{band}/alert"),
                QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .await?;
    }
    // Wait for the presses to become alerts (and the heartbeats before
    // them to have been read).
    let deadline = Instant::now() + Duration::from_secs(120);
    let active = loop {
        let alerts: serde_json::Value = http
            .get(format!("{base}/v1/alerts?state=active&limit=1000"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let n = alerts.as_array().map_or(0, Vec::len);
        if n >= scale.presses || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Settle: every band's heartbeat written (or no progress for 5 s),
    // then a few seconds more for the allocator's caches to be as they stay.
    let bands_beating = scale.heartbeats.min(scale.bands) as i64;
    let mut recorded = heartbeats_recorded(db_url).await?;
    let mut progress_at = Instant::now();
    while recorded < bands_beating && progress_at.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = heartbeats_recorded(db_url).await?;
        if now > recorded {
            progress_at = Instant::now();
        }
        recorded = now;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "run {run}: {} heartbeats and {} presses sent in {:.1?}; {recorded} bands' heartbeats recorded; {active} alerts active",
        scale.heartbeats,
        scale.presses,
        load.elapsed()
    );
    let (rss_kib, hwm_kib) = memory_of(pid)?;
    let broker_rss_kib = match mosquitto {
        Some(m) => Some(memory_of(m.pid())?.0),
        None => None,
    };
    let _ = client.disconnect().await;
    polling.abort();
    drop(service);
    if active < scale.presses {
        bail!(
            "only {active} of {} presses became alerts; log: {}",
            scale.presses,
            log_path.display()
        );
    }
    Ok(Figures {
        ready_s,
        rss_ready_kib,
        rss_kib,
        hwm_kib,
        broker_rss_kib,
    })
}

/// How many bands have the battery level the load's heartbeats carry.
async fn heartbeats_recorded(db_url: &str) -> anyhow::Result<i64> {
    const COUNT: &str = "SELECT COUNT(*) FROM devices WHERE battery = 55";
    let (n,): (i64,) = if db_url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(db_url).await?;
        sqlx::query_as(COUNT).fetch_one(&mut conn).await?
    } else {
        let mut conn = PgConnection::connect(db_url).await?;
        sqlx::query_as(COUNT).fetch_one(&mut conn).await?
    };
    Ok(n)
}
