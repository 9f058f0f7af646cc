//! Crash and restart: the real binary is killed with SIGKILL while an alert
//! holds a pending offer, started again on the same store, and the alert
//! carries on: the offer expires on schedule and moves to the next
//! volunteer, who can accept it. On PostgreSQL + Mosquitto, a press sent
//! while the service is down is delivered to it when it comes back (the
//! persistent session).

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::service::{Service, free_port};
use crate::common::{Backend, TestApp, backend_settings, s, unique};
use crate::lifecycle::wait_for_device_alert;
use crate::on_both_backends;

on_both_backends!(kill_9_with_an_open_alert_carries_on, sigterm_stops_cleanly);

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

async fn kill_9_with_an_open_alert_carries_on(backend: Backend) {
    let Some((settings, _keep)) = backend_settings(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let mqtt_port = free_port();
    let token = unique("operator-token");
    let mut env = service_env(&settings, http_port, mqtt_port, &token);
    env.push(("ONEPRESS_OFFER_TIMEOUT".into(), "4s".into()));
    let mqtt_addr = match backend {
        Backend::SqliteEmbedded => ("127.0.0.1".to_string(), mqtt_port),
        Backend::PostgresMosquitto => {
            let url = settings.mqtt_url.trim_start_matches("mqtt://").to_string();
            let (h, p) = url.rsplit_once(':').unwrap();
            (h.to_string(), p.parse().unwrap())
        }
    };
    // A TestApp-like handle for HTTP helpers against the child process.
    let app = TestApp::external(
        format!("http://127.0.0.1:{http_port}"),
        token,
        mqtt_addr,
        settings,
    );

    let mut service = Service::start(env, dir.path());
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
    service.kill();
    drop(band);

    // A press while the service is down (kept by Mosquitto's session).
    if backend == Backend::PostgresMosquitto {
        let band2 = app.mqtt_client("band2").await;
        band2.press(&device2, "e-1", "sos", None).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    service.restart();
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
    service.kill();
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
    let mut service = Service::start(env, dir.path());
    app.wait_ready().await;
    let status = Command::new("kill")
        .args(["-TERM", &service.pid().expect("running").to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = service.exit_status() {
            assert!(exit.success(), "exit status after SIGTERM: {exit:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 15 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
