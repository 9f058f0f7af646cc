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

/// Runs the binary until it is built, then stops it (SIGTERM) and returns
/// what it wrote to stderr.
fn logs_of_a_run(extra: &[(&str, &str)]) -> String {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onepress"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("ONEPRESS_CONFIG")
        .env_remove("RUST_LOG")
        .env("ONEPRESS_HTTP_ADDR", "127.0.0.1:0")
        .env("ONEPRESS_EMBEDDED_MQTT_ADDR", "127.0.0.1:0")
        .env("ONEPRESS_OPERATOR_TOKEN", "a-test-operator-token-0123")
        .envs(extra.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    // Long enough to be built and connected to its own broker.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM stops it cleanly: {status}");
    reader.join().unwrap()
}

#[test]
fn logs_to_a_file_are_plain_text() {
    let text = logs_of_a_run(&[]);
    assert!(text.contains("onepress built"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a file: {text:?}");
}

#[test]
fn json_logs_are_one_object_a_line() {
    let text = logs_of_a_run(&[("ONEPRESS_LOG_FORMAT", "json")]);
    let mut built = false;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string(), "{line}");
        built |= v["fields"]["message"] == "onepress built";
    }
    assert!(built, "{text}");
}

/// A first start that fails (the HTTP port is taken) keeps no operator
/// token: the next start generates one and prints it.
#[test]
fn a_failed_first_start_keeps_no_token_nobody_saw() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let run = |http: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_onepress"))
            .arg("serve")
            .current_dir(dir.path())
            .env_remove("ONEPRESS_CONFIG")
            .env_remove("ONEPRESS_OPERATOR_TOKEN")
            .env("ONEPRESS_HTTP_ADDR", http)
            .env("ONEPRESS_EMBEDDED_MQTT_ADDR", "127.0.0.1:0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs")
    };
    let failed = run(taken.local_addr().unwrap().to_string())
        .wait_with_output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("binding HTTP"));
    assert!(!String::from_utf8_lossy(&failed.stdout).contains("operator token is"));

    let mut child = run("127.0.0.1:0".into());
    std::thread::sleep(std::time::Duration::from_secs(3));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
    let mut stdout = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(
        stdout.contains("the operator token is: "),
        "the second start prints a fresh token: {stdout}"
    );
}
