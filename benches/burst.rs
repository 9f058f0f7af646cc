//! End to end, over a real broker: a burst of presses (default 2,000 in one
//! second, one per band) against the real application, measuring for each
//! press the time from publishing it to its offer reaching the nearest
//! volunteer's phone topic, and checking that every press got its offer.
//!
//! Runs the app in-process on a temp SQLite file and the embedded broker, or
//! on PostgreSQL + an external broker when `ONEPRESS_BENCH_DATABASE_URL`
//! (a server, e.g. `postgres://postgres@127.0.0.1:5432/postgres`) and
//! `ONEPRESS_BENCH_MQTT_URL` (e.g. `mqtt://127.0.0.1:1883`) are set.
//!
//! Run: `cargo bench --bench burst` (`BURST_PRESSES`, `BURST_SECONDS` to vary).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tokio::sync::Mutex;

use onepress::app::Application;
use onepress::config::{Secret, Settings};

/// The admin login's password (a benchmark's, on a loopback broker).
const ADMIN_PASSWORD: &str = "burst-bench-admin-password";

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let presses = env_usize("BURST_PRESSES", 2000);
    let seconds = env_usize("BURST_SECONDS", 1).max(1);
    let volunteers = presses + presses / 2;
    let dir = tempfile::tempdir()?;
    let token = "burst-bench-operator-token".to_string();
    let mut settings = Settings {
        http_addr: "127.0.0.1:0".parse()?,
        embedded_mqtt_addr: "127.0.0.1:0".parse()?,
        database_url: format!("sqlite://{}", dir.path().join("burst.db").display()),
        operator_token: Some(Secret::new(token.clone())),
        mqtt_client_id: format!("onepress-burst-{}", uuid::Uuid::now_v7().simple()),
        // The load generator logs in as the admin (it speaks for every band).
        mqtt_admin: Some(Secret::new(format!("burst-admin:{ADMIN_PASSWORD}"))),
        ..Settings::default()
    };
    let mut pg_drop = None;
    if let (Ok(server), Ok(mqtt)) = (
        std::env::var("ONEPRESS_BENCH_DATABASE_URL"),
        std::env::var("ONEPRESS_BENCH_MQTT_URL"),
    ) {
        let name = format!("onepress_bench_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&server).await?;
        admin
            .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await?;
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        settings.database_url = format!("{base}/{name}");
        settings.mqtt_url = mqtt;
        pg_drop = Some((server, name));
    }
    let backend = if pg_drop.is_some() {
        "postgres+external broker"
    } else {
        "sqlite+embedded broker"
    };
    let app = Application::build(settings).await?;
    let base = format!("http://{}", app.http_addr());
    let (host, port) = app.mqtt_addr();
    let store = app.store();
    let stop = app.shutdown_token();
    let served = tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().as_u16() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Registry: bands in a grid over a city, volunteers spread among them.
    eprintln!("registering {presses} bands and {volunteers} volunteers ({backend})…");
    let spot = |i: usize| {
        (
            30.20 + (i % 50) as f64 * 0.002,
            120.10 + (i / 50) as f64 * 0.002,
        )
    };
    for i in 0..presses {
        let (lat, lon) = spot(i);
        let put = |path: String, body: serde_json::Value| {
            http.put(format!("{base}{path}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
        };
        put(
            format!("/v1/seniors/s{i}"),
            json!({"name": format!("Senior {i}"), "home": {"lat": lat, "lon": lon}}),
        )
        .await?
        .error_for_status()?;
        put(
            format!("/v1/devices/b{i}"),
            json!({"senior_id": format!("s{i}")}),
        )
        .await?
        .error_for_status()?;
    }
    for i in 0..volunteers {
        let (lat, lon) = spot(i * 7 % presses);
        http.put(format!("{base}/v1/volunteers/v{i}"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("Volunteer {i}")}))
            .send()
            .await?
            .error_for_status()?;
        let t: serde_json::Value = http
            .post(format!("{base}/v1/volunteers/v{i}/token"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let vt = t["token"].as_str().unwrap_or_default().to_string();
        for (path, body) in [
            ("/v1/me/location", json!({"lat": lat + 0.0003, "lon": lon})),
            ("/v1/me/duty", json!({"on_duty": true})),
        ] {
            http.put(format!("{base}{path}"))
                .bearer_auth(&vt)
                .json(&body)
                .send()
                .await?
                .error_for_status()?;
        }
    }
    drop(store);

    // A phone-side listener on every volunteer's offers.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let got: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut opts = MqttOptions::new(
        format!("burst-phones-{}", uuid::Uuid::now_v7().simple()),
        &host,
        port,
    );
    opts.set_keep_alive(Duration::from_secs(30))
        .set_credentials("burst-admin", ADMIN_PASSWORD)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (phones, mut phone_loop) = AsyncClient::new(opts, 10_000);
    phones
        .subscribe("volunteers/+/offers", QoS::AtLeastOnce)
        .await?;
    let (sent2, got2) = (sent.clone(), got.clone());
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    tokio::spawn(async move {
        while let Ok(ev) = phone_loop.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let now = Instant::now();
                    let Ok(m) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                        continue;
                    };
                    if m["type"] != "offer" {
                        continue;
                    }
                    let senior = m["senior"]["id"].as_str().unwrap_or_default().to_string();
                    if let Some(at) = sent2.lock().await.get(&senior) {
                        got2.lock().await.push(now - *at);
                    }
                }
                _ => {}
            }
        }
    });
    subscribed.await?;

    // The burst.
    let mut opts = MqttOptions::new(
        format!("burst-bands-{}", uuid::Uuid::now_v7().simple()),
        &host,
        port,
    );
    opts.set_keep_alive(Duration::from_secs(30))
        .set_credentials("burst-admin", ADMIN_PASSWORD)
        .set_inflight(1000);
    let (bands, mut band_loop) = AsyncClient::new(opts, 10_000);
    tokio::spawn(async move { while band_loop.poll().await.is_ok() {} });
    eprintln!("pressing {presses} bands over {seconds} s…");
    let started = Instant::now();
    let gap = Duration::from_secs(seconds as u64) / presses as u32;
    for i in 0..presses {
        let due = started + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        sent.lock().await.insert(format!("s{i}"), Instant::now());
        let body = json!({"event_id": "burst-1", "kind": "sos"}).to_string();
        bands
            .publish(
                format!("wristbands/b{i}/alert"),
                QoS::AtLeastOnce,
                false,
                body,
            )
            .await?;
    }
    let publish_time = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.lock().await.len() < presses && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = got.lock().await.clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
    };
    println!("backend: {backend}");
    println!("presses published: {presses} in {publish_time:.2?}");
    println!(
        "offers received: {} (every press got one: {})",
        lat.len(),
        lat.len() == presses
    );
    if !lat.is_empty() {
        println!(
            "press→offer over MQTT: p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  max {:.1?}",
            pct(0.50).unwrap_or_default(),
            pct(0.90).unwrap_or_default(),
            pct(0.99).unwrap_or_default(),
            lat.last().copied().unwrap_or_default()
        );
    }
    stop.cancel();
    let _ = served.await;
    if let Some((server, name)) = pg_drop {
        let mut admin = PgConnection::connect(&server).await?;
        let _ = admin
            .execute(AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .await;
    }
    if lat.len() != presses {
        anyhow::bail!("{} presses got no offer", presses - lat.len());
    }
    Ok(())
}
