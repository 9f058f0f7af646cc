//! ntfy (the self-hosted push server with phone apps): a volunteer who gave
//! a topic URL gets each offer there, urgent, with a tap target and Accept
//! and Decline buttons; the Accept button's signed link accepts the offer
//! for that volunteer without their token, and a forged link is refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::common::{Backend, s, spawn_app_with};
use crate::lifecycle::wait_for_device_alert;
use crate::on_both_backends;

on_both_backends!(an_offer_reaches_ntfy_and_its_accept_button_works);

type Seen = Arc<Mutex<Vec<Value>>>;

async fn publish(State(seen): State<Seen>, Json(message): Json<Value>) -> Json<Value> {
    seen.lock().unwrap().push(message);
    Json(json!({"id": "x", "event": "message"}))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn an_offer_reaches_ntfy_and_its_accept_button_works(backend: Backend) {
    // A stand-in ntfy server: JSON publishing at its root.
    let seen: Seen = Arc::default();
    let router = axum::Router::new()
        .route("/", axum::routing::post(publish))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // By name: a topic URL names a host, never an address.
    let ntfy = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let port = free_port();
    let Some(app) = spawn_app_with(backend, move |s| {
        s.http_addr = format!("127.0.0.1:{port}").parse().unwrap();
        s.public_url = Some(format!("http://127.0.0.1:{port}"));
        s.push_allow_loopback = true;
    })
    .await
    else {
        return;
    };
    let (volunteer, token) = app.volunteer("Wang Fang", None).await;
    let topic = format!("{volunteer}-offers");
    let r = app
        .op(
            "PUT",
            &format!("/v1/volunteers/{volunteer}"),
            Some(json!({"name": "Wang Fang", "ntfy_url": format!("{ntfy}/{topic}")})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s(&r.body, "ntfy_url"), format!("{ntfy}/{topic}"));
    app.go_on_duty(&token, 30.5122, 120.6805).await;
    // The volunteer's browser subscription points at a push service that
    // takes the connection and never answers: it must not hold up ntfy.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stuck = format!(
        "http://127.0.0.1:{}/push/x",
        blackhole.local_addr().unwrap().port()
    );
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = blackhole.accept().await {
            held.push(socket);
        }
    });
    let r = app
        .call(
            "POST",
            "/v1/me/push",
            Some(&token),
            Some(json!({"endpoint": stuck, "keys": {
                "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
                "auth": "BTBZMqHH6r4Tts7J_aSIgg"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = app
        .op(
            "PUT",
            &format!("/v1/volunteers/{volunteer}"),
            Some(json!({"name": "Wang Fang", "ntfy_url": "ftp://ntfy.example.org/x"})),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");

    let (_, device) = app.senior_with_band(Some((30.5101, 120.6805))).await;
    let band = app.mqtt_client("band").await;
    let pressed = tokio::time::Instant::now();
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let message = loop {
        if let Some(m) = seen.lock().unwrap().first().cloned() {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing reached ntfy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Well before the stuck push request times out (5 s).
    assert!(
        pressed.elapsed() < Duration::from_secs(4),
        "ntfy waited for the stuck push service: {:?}",
        pressed.elapsed()
    );
    assert_eq!(s(&message, "topic"), topic, "{message}");
    assert_eq!(s(&message, "title"), "Help needed: Jiang Lan");
    assert_eq!(message["priority"], 5);
    assert!(s(&message, "message").contains("3 Lotus Lane"), "{message}");
    assert!(s(&message, "click").ends_with(&format!("/volunteer#alert={alert}")));
    let actions = message["actions"].as_array().expect("buttons");
    let url = |label: &str| {
        actions
            .iter()
            .find(|a| s(a, "label") == label)
            .map(|a| s(a, "url").to_string())
            .expect("the button")
    };
    let (accept, decline) = (url("Accept"), url("Decline"));
    assert!(actions.iter().all(|a| s(a, "method") == "POST"));

    // A forged or altered link does nothing.
    let http = reqwest::Client::new();
    let forged = format!("{}0", &accept[..accept.len() - 1]);
    let forged = if forged == accept {
        accept.replace("sig=", "sig=0")
    } else {
        forged
    };
    let r = http.post(&forged).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(accept.replace("/accept?", "/decline?"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a link's action cannot be changed");
    assert_eq!(s(&app.alert(&alert).await, "state"), "offered");

    // The real button accepts, as Wang Fang, with no token.
    let r = http.post(&accept).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let done: Value = r.json().await.unwrap();
    assert_eq!(s(&done, "done"), "accepted");
    let a = app.alert(&alert).await;
    assert_eq!(s(&a, "state"), "accepted");
    assert_eq!(s(&a, "volunteer_id"), volunteer);
    // Its decline, now, changes nothing (the offer ended in the accept).
    let r = http.post(&decline).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s(&app.alert(&alert).await, "state"), "accepted");
    // Each channel's try is in the timeline once the slowest one is done
    // (the stuck push service: its request times out after 5 s).
    app.wait_alert(&alert, 15, |a| {
        let tried = |channel: &str, outcome: &str| {
            a["timeline"].as_array().is_some_and(|t| {
                t.iter().any(|e| {
                    s(e, "type") == "notified"
                        && s(e, "channel") == channel
                        && s(e, "outcome") == outcome
                })
            })
        };
        tried("ntfy", "delivered") && tried("web_push", "failed")
    })
    .await;
    app.stop().await;
}
