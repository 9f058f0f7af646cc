//! `onepress simulate` against the real application, on both backends (the
//! PostgreSQL one on a private Mosquitto that enforces the access table):
//! small runs whose every press must be stored once, offered, accepted and
//! resolved, with no volunteer offered two alerts at once, and whose report
//! adds up. Nothing here asserts a timing.

use std::time::Duration;

use onepress::sim::{self, Plan, Report, Schedule, Via};

use crate::common::{Backend, TestApp, isolated_app_with, unique};
use crate::on_both_backends;

on_both_backends!(
    own_logins_every_press_is_stored_and_helped,
    gateway_and_admin_with_declines_and_ignores_lose_nothing,
);

/// A small, quick community: volunteers answer at once and walk fast.
fn small_plan(app: &TestApp) -> Plan {
    Plan {
        http: app.base.clone(),
        mqtt: app.mqtt.clone(),
        operator_token: app.token.clone(),
        bands: 20,
        volunteers: 10,
        presses: 30,
        schedule: Schedule::Steady(20.0),
        heartbeat: Some(Duration::from_millis(500)),
        via: Via::Bands,
        accept_delay: Duration::from_millis(50),
        decline: 0.0,
        ignore: 0.0,
        speed_mps: 2000.0,
        on_scene: Duration::from_millis(50),
        radius_m: 2000.0,
        seed: 7,
        prefix: unique("sim"),
        drain: Duration::from_secs(90),
        ..Plan::default()
    }
}

/// What every run must show, whatever the volunteers did.
fn assert_sound(r: &Report, presses: usize) {
    let p = &r.presses;
    assert_eq!(p.sent, presses, "{r}");
    assert_eq!((p.received, p.stored), (presses, presses), "{r}");
    assert_eq!((p.lost, p.duplicated), (0, 0), "{r}");
    assert_eq!(p.opened + p.joined, p.stored, "{r}");
    assert_eq!(r.alerts.opened, p.opened, "{r}");
    assert_eq!((r.offers.double, r.offers.while_busy), (0, 0), "{r}");
    assert_eq!(r.http_errors, 0, "{r}");
    assert!(r.is_sound(), "{r}");
}

/// Every alert the run opened was offered, accepted, on scene and resolved.
fn assert_all_helped(r: &Report) {
    let a = &r.alerts;
    assert!(a.opened > 0, "{r}");
    assert_eq!(
        (a.offered, a.accepted, a.on_scene, a.resolved, a.unfinished),
        (a.opened, a.opened, a.opened, a.opened, 0),
        "{r}"
    );
    assert_eq!(r.press_to_offer.count, a.opened, "{r}");
    assert_eq!(r.press_to_accept.count, a.opened, "{r}");
    assert_eq!(a.response.of, a.opened, "{r}");
}

/// Bands and phones each log in as themselves.
async fn own_logins_every_press_is_stored_and_helped(backend: Backend) {
    let Some((app, _broker)) = isolated_app_with(backend, |_| {}).await else {
        return;
    };
    let plan = small_plan(&app);
    let prefix = plan.prefix.clone();
    let r = sim::run(plan, false).await.expect("the simulation runs");
    assert_sound(&r, 30);
    assert_all_helped(&r);
    assert_eq!((r.via.as_str(), r.phones.as_str()), ("bands", "phones"));
    // Nobody declined, ignored or raced: one accept per alert.
    assert_eq!(r.offers.accepted, r.alerts.opened, "{r}");
    assert_eq!((r.offers.declined, r.offers.ignored), (0, 0), "{r}");
    assert!(r.heartbeats > 0, "{r}");

    // The clean-up took the run's volunteers off duty.
    let vols = app.op("GET", "/v1/volunteers", None).await;
    let ours: Vec<_> = vols
        .body
        .as_array()
        .expect("a list")
        .iter()
        .filter(|v| v["id"].as_str().is_some_and(|id| id.starts_with(&prefix)))
        .collect();
    assert_eq!(ours.len(), 10);
    assert!(ours.iter().all(|v| v["on_duty"] == false), "{ours:?}");
}

/// One gateway for the bands, the admin login for the phones; volunteers
/// decline and let offers expire, so alerts move from one to the next.
async fn gateway_and_admin_with_declines_and_ignores_lose_nothing(backend: Backend) {
    let Some((app, _broker)) = isolated_app_with(backend, |s| {
        s.offer_timeout = Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let admin = app.admin_login("unused");
    let plan = Plan {
        via: Via::Gateway,
        mqtt_admin: Some((admin.username, admin.password)),
        volunteers: 20,
        decline: 0.25,
        ignore: 0.15,
        ..small_plan(&app)
    };
    let r = sim::run(plan, false).await.expect("the simulation runs");
    assert_sound(&r, 30);
    assert_all_helped(&r);
    assert_eq!((r.via.as_str(), r.phones.as_str()), ("gateway", "admin"));
    let o = &r.offers;
    assert!(o.declined + o.ignored > 0, "{r}");
    assert!(
        o.received >= r.alerts.opened + o.declined + o.ignored,
        "{r}"
    );
}

/// The command line, end to end: a short run printed as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_prints_a_sound_json_summary() {
    let Some((app, _broker)) = isolated_app_with(Backend::SqliteEmbedded, |_| {}).await else {
        return;
    };
    let mqtt = format!("{}:{}", app.mqtt.0, app.mqtt.1);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_onepress"))
        .args(["simulate", "--http", &app.base, "--mqtt", &mqtt])
        .args(["--operator-token", &app.token, "--prefix", &unique("cli")])
        .args(["--bands", "6", "--volunteers", "4", "--presses", "6"])
        .args(["--rate", "20", "--arrivals", "steady", "--heartbeat", "1s"])
        .args(["--accept-delay", "20ms", "--decline", "0", "--ignore", "0"])
        .args(["--speed", "2000", "--on-scene", "20ms", "--drain", "60s"])
        .args(["--json", "--quiet"])
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: Report = serde_json::from_slice(&out.stdout).expect("a JSON report on stdout");
    assert_sound(&r, 6);
    assert_all_helped(&r);
}
