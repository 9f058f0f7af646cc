//! Crash and restart: the real binary is killed with SIGKILL while an alert
//! holds a pending offer, started again on the same store, and the alert
//! carries on: the offer expires on schedule and moves to the next
//! volunteer, who can accept it. On PostgreSQL + Mosquitto, a press sent
//! while the service is down is delivered to it when it comes back (the
//! persistent session).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::{Backend, TestApp, backend_settings, s, unique};
use crate::lifecycle::wait_for_device_alert;
use crate::on_both_backends;

on_both_backends!(
    kill_9_with_an_open_alert_carries_on,
    sigterm_stops_cleanly,
    a_restart_publishes_again_what_bands_and_phones_should_hold
);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Service {
    child: Child,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The variables that run the binary on the test's backend and ports.
fn service_env(
    settings: &onepress::config::Settings,
    http_port: u16,
    mqtt_port: u16,
    token: &str,
) -> Vec<(String, String)> {
    [
        ("ONEPRESS_HTTP_ADDR", format!("127.0.0.1:{http_port}")),
        ("ONEPRESS_DATABASE_URL", settings.database_url.clone()),
        ("ONEPRESS_MQTT_URL", settings.mqtt_url.clone()),
        (
            "ONEPRESS_EMBEDDED_MQTT_ADDR",
            format!("127.0.0.1:{mqtt_port}"),
        ),
        ("ONEPRESS_MQTT_CLIENT_ID", settings.mqtt_client_id.clone()),
        ("ONEPRESS_OPERATOR_TOKEN", token.to_string()),
        (
            "ONEPRESS_MQTT_ADMIN",
            settings
                .mqtt_admin
                .as_ref()
                .map(|a| a.expose().to_string())
                .unwrap_or_default(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What it takes to run the real binary on a test's backend: its
/// environment, a handle for HTTP and MQTT helpers, and its working
/// directory.
struct Prepared {
    env: Vec<(String, String)>,
    app: TestApp,
    dir: tempfile::TempDir,
}

fn prepare(
    backend: Backend,
    settings: onepress::config::Settings,
    extra: &[(&str, &str)],
) -> Prepared {
    let http_port = free_port();
    let mqtt_port = free_port();
    let token = unique("operator-token");
    let mut env = service_env(&settings, http_port, mqtt_port, &token);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mqtt_addr = match backend {
        Backend::SqliteEmbedded => ("127.0.0.1".to_string(), mqtt_port),
        Backend::PostgresMosquitto => {
            let url = settings.mqtt_url.trim_start_matches("mqtt://").to_string();
            let (h, p) = url.rsplit_once(':').expect("host:port");
            (h.to_string(), p.parse().expect("a port"))
        }
    };
    let app = TestApp::external(
        format!("http://127.0.0.1:{http_port}"),
        token,
        mqtt_addr,
        settings,
    );
    Prepared {
        env,
        app,
        dir: tempfile::tempdir().expect("a working directory"),
    }
}

fn start(env: &[(String, String)], dir: &std::path::Path) -> Service {
    let child = Command::new(env!("CARGO_BIN_EXE_onepress"))
        .arg("serve")
        .current_dir(dir)
        .env_remove("ONEPRESS_CONFIG")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    Service { child }
}

async fn kill_9_with_an_open_alert_carries_on(backend: Backend) {
    let Some((settings, _keep)) = backend_settings(backend).await else {
        return;
    };
    let Prepared { env, app, dir } =
        prepare(backend, settings, &[("ONEPRESS_OFFER_TIMEOUT", "4s")]);
    let mut service = start(&env, dir.path());
    app.wait_ready().await;
    let (_, device) = app.senior_with_band(Some((30.5101, 120.6805))).await;
    let (near, _) = app.volunteer("Near", Some((30.5111, 120.6805))).await;
    let (far, far_token) = app.volunteer("Far", Some((30.5151, 120.6805))).await;
    let (_, device2) = app.senior_with_band(Some((30.5101, 120.6805))).await;
    let band = app.mqtt_client("band").await;
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    let before = app
        .wait_alert(&alert, 10, |a| {
            a["offers"][0]["volunteer_id"] == json!(near)
        })
        .await;

    // SIGKILL: no chance to clean up.
    service.child.kill().expect("kill -9");
    service.child.wait().expect("reaped");
    drop(band);

    // A press while the service is down (kept by Mosquitto's session).
    if backend == Backend::PostgresMosquitto {
        let band2 = app.mqtt_client("band2").await;
        band2.press(&device2, "e-1", "sos", None).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    service = start(&env, dir.path());
    app.wait_ready().await;
    let after = app.alert(&alert).await;
    assert_eq!(after["id"], before["id"]);
    assert_eq!(after["pressed_at"], before["pressed_at"]);
    assert_eq!(after["response_deadline"], before["response_deadline"]);
    // The pending offer expires on its original schedule and moves on.
    let moved = app
        .wait_alert(&alert, 15, |a| a["offers"][0]["volunteer_id"] == json!(far))
        .await;
    assert!(
        moved["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| s(e, "type") == "offer_expired" && s(e, "volunteer_id") == near)
    );
    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert}/accept"),
            Some(&far_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    if backend == Backend::PostgresMosquitto {
        // Delivered from the persistent session after the restart.
        wait_for_device_alert(&app, &device2).await;
    }
    drop(service);
    crate::common::forget_session(&app.settings).await;
}

async fn sigterm_stops_cleanly(backend: Backend) {
    let Some((settings, _keep)) = backend_settings(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let token = unique("operator-token");
    let env = service_env(&settings, http_port, free_port(), &token);
    let app = TestApp::external(
        format!("http://127.0.0.1:{http_port}"),
        token,
        ("127.0.0.1".into(), 0),
        settings,
    );
    let mut service = start(&env, dir.path());
    app.wait_ready().await;
    let status = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = service.child.try_wait().expect("try_wait") {
            assert!(exit.success(), "exit status after SIGTERM: {exit:?}");
            crate::common::forget_session(&app.settings).await;
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 15 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects `login` anew until the broker hands it a retained message on
/// `topic` for which `pred` holds (a subscription made before the service
/// published would get it live, not retained); fails after `secs`.
async fn retained_for(
    app: &TestApp,
    login: &crate::common::Login,
    topic: &str,
    secs: u64,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let mut m = crate::common::Mqtt::try_connect(&app.mqtt.0, app.mqtt.1, login.clone())
            .await
            .expect("logs in");
        m.subscribe(topic).await;
        if let Some(v) = m.try_retained(topic, 1000).await {
            if pred(&v) {
                return v;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no matching retained message on {topic} within {secs}s"
        );
    }
}

/// Contract §1 "Delivery guarantees": after a restart the service publishes
/// again, retained, the latest notice of each active alert and each pending
/// offer. The broker is made to forget them first (the embedded one dies
/// with the service; on Mosquitto the test clears them), so what a band or
/// phone gets after the restart can only come from the re-publication.
async fn a_restart_publishes_again_what_bands_and_phones_should_hold(backend: Backend) {
    let Some((settings, _keep)) = backend_settings(backend).await else {
        return;
    };
    let Prepared { env, app, dir } =
        prepare(backend, settings, &[("ONEPRESS_OFFER_TIMEOUT", "10m")]);
    let mut service = start(&env, dir.path());
    app.wait_ready().await;
    // Two alerts: one offered to a volunteer whose phone is not connected,
    // one with nobody to offer it to (its band holds `received`).
    let (_, offered_band) = app.senior_with_band(Some((30.5101, 120.6805))).await;
    let (volunteer, volunteer_token) = app.volunteer("Near", Some((30.5111, 120.6805))).await;
    let admin = app.mqtt_client("band").await;
    admin.press(&offered_band, "e-1", "sos", None).await;
    let offered = wait_for_device_alert(&app, &offered_band).await;
    app.wait_alert(&offered, 10, |a| {
        a["offers"][0]["volunteer_id"] == json!(volunteer)
    })
    .await;
    let (_, lonely_band) = app.senior_with_band(Some((30.5101, 120.6805))).await;
    admin.press(&lonely_band, "e-1", "sos", None).await;
    let lonely = wait_for_device_alert(&app, &lonely_band).await;
    app.wait_alert(&lonely, 10, |a| a["escalated"] == json!(true))
        .await;
    let band_login = app.band_login(&offered_band).await;
    let lonely_login = app.band_login(&lonely_band).await;

    service.child.kill().expect("kill -9");
    service.child.wait().expect("reaped");
    let offers_topic = format!("volunteers/{volunteer}/offers");
    let notify = |d: &str| format!("wristbands/{d}/notify");
    if backend == Backend::PostgresMosquitto {
        // Mosquitto keeps retained messages: clear them, so that only a
        // re-publication can bring them back.
        for topic in [
            offers_topic.clone(),
            notify(&offered_band),
            notify(&lonely_band),
        ] {
            admin
                .client
                .publish(&topic, rumqttc::QoS::AtLeastOnce, true, Vec::<u8>::new())
                .await
                .expect("clear the retained message");
        }
        let mut probe = app.mqtt_client("probe").await;
        probe.subscribe(&offers_topic).await;
        assert!(
            probe.try_retained(&offers_topic, 500).await.is_none(),
            "the retained offer was not cleared"
        );
    }
    drop(admin);

    service = start(&env, dir.path());
    app.wait_ready().await;
    let phone = crate::common::Login {
        client_id: volunteer.clone(),
        username: volunteer.clone(),
        password: volunteer_token,
    };
    let offer = retained_for(&app, &phone, &offers_topic, 15, |v| {
        s(v, "type") == "offer" && s(v, "alert_id") == offered
    })
    .await;
    assert!(offer["senior"]["name"].is_string(), "{offer}");
    assert!(offer["expires_at"].is_string(), "{offer}");
    let notice = retained_for(&app, &band_login, &notify(&offered_band), 15, |v| {
        s(v, "alert_id") == offered
    })
    .await;
    assert_eq!(s(&notice, "state"), "offered", "{notice}");
    let notice = retained_for(&app, &lonely_login, &notify(&lonely_band), 15, |v| {
        s(v, "alert_id") == lonely
    })
    .await;
    assert_eq!(s(&notice, "state"), "received", "{notice}");
    assert_eq!(s(&notice, "event_id"), "e-1", "{notice}");
    drop(service);
    crate::common::forget_session(&app.settings).await;
}
