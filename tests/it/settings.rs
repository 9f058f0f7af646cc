//! Settings that shape a start: the operator token generated on first
//! start, printed once, and kept across restarts.

use onepress::app::Application;

use crate::common::{Backend, backend_settings};
use crate::on_both_backends;

on_both_backends!(generated_operator_token_is_kept_across_restarts);

async fn generated_operator_token_is_kept_across_restarts(backend: Backend) {
    let Some((mut settings, _keep)) = backend_settings(backend).await else {
        return;
    };
    settings.operator_token = None;
    let first = Application::build(settings.clone())
        .await
        .expect("first start");
    let token = first
        .generated_operator_token()
        .expect("a token is generated on first start")
        .to_string();
    assert!(token.len() >= 32);
    let stop = first.shutdown_token();
    let run = tokio::spawn(first.run_until_stopped());
    stop.cancel();
    run.await.unwrap().unwrap();

    settings.mqtt_client_id = crate::common::unique("onepress-test");
    let second = Application::build(settings).await.expect("second start");
    assert_eq!(second.generated_operator_token(), None, "printed once only");
    let base = format!("http://{}", second.http_addr());
    let stop = second.shutdown_token();
    let run = tokio::spawn(second.run_until_stopped());
    let http = reqwest::Client::new();
    let ok = http
        .get(format!("{base}/v1/seniors"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = http
        .get(format!("{base}/v1/seniors"))
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    stop.cancel();
    run.await.unwrap().unwrap();
}

/// A setting out of its bounds stops the binary at once, naming the key,
/// instead of starting a service that fails at the first press.
#[test]
fn an_unbounded_duration_stops_the_binary_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onepress"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("ONEPRESS_CONFIG")
        .env("ONEPRESS_VOLUNTEER_LOCATION_MAX_AGE", "1000000y")
        .env("ONEPRESS_HTTP_ADDR", "127.0.0.1:0")
        .env("ONEPRESS_EMBEDDED_MQTT_ADDR", "127.0.0.1:0")
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("volunteer_location_max_age") && stderr.contains("must be between"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("onepress.db").exists(),
        "nothing was created"
    );
}
