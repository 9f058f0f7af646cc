//! Notifications through the signed webhook (issue: reach): the family
//! hears of a press and of who is coming, a volunteer's phone gets the
//! offer, the operators hear of an escalation; each try is in the alert's
//! timeline; a dead webhook never delays an offer on MQTT and is retried;
//! what was due when the service stopped is delivered after it starts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, backend_settings, s, spawn_from, unique};
use crate::lifecycle::wait_for_device_alert;
use crate::on_both_backends;

on_both_backends!(
    the_operators_hear_again_until_someone_acts,
    family_volunteer_and_operators_hear_through_the_signed_webhook,
    a_failing_webhook_delays_no_offer_and_is_retried,
    what_was_due_at_a_stop_is_delivered_after_the_start
);

/// One request the receiver took.
#[derive(Debug, Clone)]
struct Hook {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Hook {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A webhook receiver on a free port: records every request; answers
/// with the statuses queued (then 200), each after `delay`.
#[derive(Clone, Default)]
struct Receiver {
    hooks: Arc<Mutex<Vec<Hook>>>,
    answers: Arc<Mutex<Vec<u16>>>,
    delay: Arc<Mutex<Duration>>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let r = Receiver::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(take))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (r, url)
    }

    /// The first request for which `pred` holds, within `secs`.
    async fn wait(&self, secs: u64, pred: impl Fn(&Value) -> bool) -> Hook {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(h) = self
                .hooks
                .lock()
                .unwrap()
                .iter()
                .find(|h| pred(&h.json()))
                .cloned()
            {
                return h;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching webhook within {secs}s; got {:?}",
                self.hooks
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|h| h.json()["event"].clone())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|h| pred(&h.json()))
            .count()
    }
}

async fn take(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let delay = *r.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    r.hooks.lock().unwrap().push(Hook {
        headers,
        body: body.to_vec(),
    });
    let status = {
        let mut answers = r.answers.lock().unwrap();
        if answers.is_empty() {
            200
        } else {
            answers.remove(0)
        }
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

const SECRET: &str = "a-webhook-secret-of-the-test";

/// The signature checks out with the shared secret.
fn assert_signed(h: &Hook) {
    let ts: i64 = h.headers["x-onepress-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = onepress::notify::webhook::sign(SECRET, ts, &h.body);
    assert_eq!(
        h.headers["x-onepress-signature"].to_str().unwrap(),
        expected
    );
    assert_eq!(
        h.headers["x-onepress-delivery"].to_str().unwrap(),
        s(&h.json(), "id")
    );
}

async fn app_with_webhook(
    backend: Backend,
    url: &str,
) -> Option<(TestApp, Box<dyn std::any::Any + Send>)> {
    app_with_webhook_and(backend, url, |_| {}).await
}

async fn app_with_webhook_and(
    backend: Backend,
    url: &str,
    adjust: impl FnOnce(&mut onepress::config::Settings),
) -> Option<(TestApp, Box<dyn std::any::Any + Send>)> {
    let (mut settings, keep) = backend_settings(backend).await?;
    adjust(&mut settings);
    settings.notify_webhook_url = Some(url.to_string());
    settings.notify_webhook_secret = Some(onepress::config::Secret::new(SECRET.to_string()));
    let app = spawn_from(settings, Box::new(())).await;
    Some((app, keep))
}

/// A senior with a son to tell and a band; returns (senior, device).
async fn senior_with_family(app: &TestApp) -> (String, String) {
    let senior = unique("senior");
    let device = unique("band");
    let r = app
        .op(
            "PUT",
            &format!("/v1/seniors/{senior}"),
            Some(json!({"name": "Jiang Lan", "address": "3 Lotus Lane",
                        "home": {"lat": 30.5101, "lon": 120.6805},
                        "contacts": [{"name": "Jiang Wei", "phone": "+86 138 0000 0001"}]})),
        )
        .await;
    assert!(r.status < 300, "{r:?}");
    let r = app
        .op(
            "PUT",
            &format!("/v1/devices/{device}"),
            Some(json!({"senior_id": senior})),
        )
        .await;
    assert!(r.status < 300, "{r:?}");
    (senior, device)
}

/// How many `notified` entries of the alert's timeline have `outcome`.
fn notified(alert: &Value, outcome: &str) -> usize {
    alert["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter(|e| s(e, "type") == "notified" && s(e, "outcome") == outcome)
                .count()
        })
        .unwrap_or(0)
}

fn event_for<'a>(event: &'a str, alert: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |v: &Value| s(v, "event") == event && s(v, "alert_id") == alert
}

async fn family_volunteer_and_operators_hear_through_the_signed_webhook(backend: Backend) {
    let (hooks, url) = Receiver::start().await;
    let Some((app, _keep)) = app_with_webhook(backend, &url).await else {
        return;
    };
    let (senior, device) = senior_with_family(&app).await;
    let (volunteer, token) = app.volunteer("Wang Fang", Some((30.5122, 120.6805))).await;
    let band = app.mqtt_client("band").await;
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;

    let pressed = hooks.wait(10, event_for("pressed", &alert)).await;
    assert_signed(&pressed);
    let p = pressed.json();
    assert_eq!(s(&p, "audience"), format!("contacts:{senior}"));
    assert_eq!(p["recipients"][0]["phone"], "+86 138 0000 0001");
    assert_eq!(p["recipients"][0]["senior_name"], "Jiang Lan");

    let offer = hooks.wait(10, event_for("offer", &alert)).await;
    assert_signed(&offer);
    let o = offer.json();
    assert_eq!(s(&o, "audience"), format!("volunteer:{volunteer}"));
    assert_eq!(o["data"]["senior"]["address"], "3 Lotus Lane");
    assert!(s(&o["data"], "text").contains("Jiang Lan"), "{o}");

    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert}/accept"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let accepted = hooks.wait(10, event_for("accepted", &alert)).await.json();
    assert!(
        s(&accepted["data"], "text").starts_with("Wang Fang is coming, about "),
        "{accepted}"
    );

    // Nobody near this one: the operators are told.
    let (_, far_device) = senior_with_family(&app).await;
    band.press(&far_device, "e-1", "sos", Some((31.9, 121.9)))
        .await;
    let lonely = wait_for_device_alert(&app, &far_device).await;
    let escalated = hooks.wait(10, event_for("escalated", &lonely)).await.json();
    assert_eq!(s(&escalated, "audience"), "operators");

    // Each try is in the alert's timeline.
    let a = app
        .wait_alert(&alert, 10, |a| notified(a, "delivered") >= 3)
        .await;
    let notified: Vec<_> = a["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| s(e, "type") == "notified")
        .collect();
    assert!(
        notified.iter().all(|e| s(e, "channel") == "webhook"),
        "{notified:?}"
    );
    assert!(
        notified
            .iter()
            .any(|e| s(e, "recipient") == format!("volunteer:{volunteer}")
                && s(e, "note") == "offer"),
        "{notified:?}"
    );
    app.stop().await;
}

async fn a_failing_webhook_delays_no_offer_and_is_retried(backend: Backend) {
    let (hooks, url) = Receiver::start().await;
    // The first two tries fail with 500, each after 4 s.
    *hooks.answers.lock().unwrap() = vec![500, 500];
    *hooks.delay.lock().unwrap() = Duration::from_secs(4);
    let Some((app, _keep)) = app_with_webhook(backend, &url).await else {
        return;
    };
    let (_, device) = senior_with_family(&app).await;
    let (volunteer, token) = app.volunteer("Wang Fang", Some((30.5122, 120.6805))).await;
    let mut phone = app.phone_client(&volunteer, &token).await;
    let topic = format!("volunteers/{volunteer}/offers");
    phone.subscribe(&topic).await;
    let band = app.mqtt_client("band").await;
    let pressed = tokio::time::Instant::now();
    band.press(&device, "e-1", "sos", None).await;
    // The offer reaches the phone while the webhook is still stuck on its
    // first request.
    let offer = phone.expect(&topic, 3, |m| s(m, "type") == "offer").await;
    assert!(
        pressed.elapsed() < Duration::from_secs(4),
        "the offer waited for the webhook"
    );
    let alert = s(&offer, "alert_id").to_string();
    *hooks.delay.lock().unwrap() = Duration::ZERO;
    // Retried until delivered; the failures are in the timeline too.
    let a = app
        .wait_alert(&alert, 30, |a| {
            a["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| s(e, "type") == "notified" && s(e, "outcome") == "delivered")
                .count()
                >= 2
        })
        .await;
    let outcomes: Vec<&str> = a["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| s(e, "type") == "notified")
        .map(|e| s(e, "outcome"))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "retrying").count(),
        2,
        "{outcomes:?}"
    );
    // Each notification was delivered once (receivers get the same id on
    // every try, so they can drop repeats).
    let delivered_offer = hooks.count(event_for("offer", &alert));
    assert!(delivered_offer >= 1);
    app.stop().await;
}

async fn what_was_due_at_a_stop_is_delivered_after_the_start(backend: Backend) {
    // Nobody listens yet: the first tries fail (connection refused).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let Some((mut settings, keep)) = backend_settings(backend).await else {
        return;
    };
    settings.notify_webhook_url = Some(url.clone());
    settings.notify_webhook_secret = Some(onepress::config::Secret::new(SECRET.to_string()));
    let app = spawn_from(settings.clone(), Box::new(())).await;
    let (_, device) = senior_with_family(&app).await;
    let band = app.mqtt_client("band").await;
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    app.wait_alert(&alert, 10, |a| notified(a, "retrying") >= 1)
        .await;
    drop(band);
    app.stop().await;

    // The receiver comes up on that port, and the service starts again.
    let r = Receiver::default();
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(take))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let app = spawn_from(settings, Box::new(())).await;
    let pressed = r.wait(20, event_for("pressed", &alert)).await;
    assert_signed(&pressed);
    assert_eq!(
        pressed.json()["attempt"].as_u64().map(|n| n > 1),
        Some(true)
    );
    app.stop().await;
    drop(keep);
}

/// An alert nobody can take: the operators hear of it, and again every
/// `escalation_repeat`, each repetition a message of its own, until an
/// operator cancels it; then no more.
async fn the_operators_hear_again_until_someone_acts(backend: Backend) {
    let (hooks, url) = Receiver::start().await;
    let Some((app, _keep)) = app_with_webhook_and(backend, &url, |s| {
        s.escalation_repeat = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let (_, device) = senior_with_family(&app).await;
    let band = app.mqtt_client("band").await;
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    hooks.wait(10, event_for("escalated", &alert)).await;
    let reminders = |hooks: &Receiver| hooks.count(event_for("reminder", &alert));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while reminders(&hooks) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than 2 reminders in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = hooks.wait(1, event_for("reminder", &alert)).await;
    assert_signed(&first);
    let r = first.json();
    assert!(s(&r["data"], "text").starts_with("Still waiting"), "{r}");
    let ids: std::collections::HashSet<String> = hooks
        .hooks
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.json())
        .filter(event_for("reminder", &alert))
        .map(|h| s(&h, "id").to_string())
        .collect();
    assert!(ids.len() >= 2, "each reminder has its own id: {ids:?}");

    let c = app
        .op(
            "POST",
            &format!("/v1/alerts/{alert}/cancel"),
            Some(json!({"reason": "called her"})),
        )
        .await;
    assert_eq!(c.status, 200, "{c:?}");
    // At most one reminder already on its way; then silence.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_cancel = reminders(&hooks);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        reminders(&hooks),
        after_cancel,
        "reminders went on after the cancel"
    );
    let a = app.alert(&alert).await;
    assert!(
        a["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| s(e, "type") == "notified" && s(e, "note") == "reminder"),
        "{a}"
    );
    app.stop().await;
}
