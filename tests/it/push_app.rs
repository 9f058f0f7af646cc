//! Web Push through the running service: a volunteer's page hands its
//! push subscription to the service (`POST /v1/me/push`), and an offer
//! reaches it with the page closed, encrypted for that browser and signed
//! with the service's VAPID key, which the test's push service checks; a
//! subscription the push service says is gone is dropped; the service
//! refuses subscriptions it must not send to.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::push::PushService;
use crate::common::{Backend, TestApp, s, spawn_app_with};
use crate::lifecycle::wait_for_device_alert;
use crate::on_both_backends;

on_both_backends!(an_offer_is_pushed_to_the_volunteers_browser);

async fn notified(app: &TestApp, alert: &str, outcome: &str) -> Value {
    app.wait_alert(alert, 10, |a| {
        a["timeline"].as_array().is_some_and(|t| {
            t.iter().any(|e| {
                s(e, "type") == "notified"
                    && s(e, "channel") == "web_push"
                    && s(e, "outcome") == outcome
            })
        })
    })
    .await
}

async fn an_offer_is_pushed_to_the_volunteers_browser(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| s.push_allow_loopback = true).await else {
        return;
    };
    let push = PushService::start().await;
    let key = app.call("GET", "/v1/push/key", None, None).await;
    assert_eq!(key.status, 200, "{key:?}");
    let public_key = s(&key.body, "public_key").to_string();
    let (volunteer, token) = app.volunteer("Wang Fang", Some((30.5122, 120.6805))).await;
    let (sub_id, subscription) = push.subscribe(&public_key);
    let body = serde_json::to_value(&subscription).unwrap();
    let r = app
        .call("POST", "/v1/me/push", Some(&token), Some(body.clone()))
        .await;
    assert_eq!(r.status, 201, "{r:?}");

    // The page is closed: the offer comes by push.
    let (_, device) = app.senior_with_band(Some((30.5101, 120.6805))).await;
    let band = app.mqtt_client("band").await;
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    let message = push.next_message(&sub_id, Duration::from_secs(10)).await;
    let offer: Value = serde_json::from_slice(&message.plaintext).expect("JSON");
    assert_eq!(s(&offer, "type"), "offer", "{offer}");
    assert_eq!(s(&offer, "alert_id"), alert);
    assert_eq!(offer["senior"]["name"], "Jiang Lan");
    assert!(s(&offer, "text").contains("Jiang Lan"), "{offer}");
    assert_eq!(message.urgency.as_deref(), Some("high"));
    assert!(
        message.ttl > 0 && message.ttl <= 45,
        "kept until the offer expires: {}",
        message.ttl
    );
    notified(&app, &alert, "delivered").await;

    // The browser unsubscribed: the push service answers 410 from now on,
    // and the service drops the subscription after the next offer.
    push.answer(&sub_id, 410);
    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert}/decline"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let (_, device2) = app.senior_with_band(Some((30.5101, 120.6805))).await;
    band.press(&device2, "e-1", "sos", None).await;
    let second = wait_for_device_alert(&app, &device2).await;
    notified(&app, &second, "gone").await;
    let r = app
        .call(
            "DELETE",
            "/v1/me/push",
            Some(&token),
            Some(json!({"endpoint": body["endpoint"]})),
        )
        .await;
    assert_eq!(r.status, 404, "the gone subscription was dropped: {r:?}");

    // What the service must not send to is refused.
    let mut elsewhere = body.clone();
    elsewhere["endpoint"] = json!("http://push.example.com/push/x");
    let mut short = body.clone();
    short["keys"]["auth"] = json!("c2hvcnQ");
    for bad in [elsewhere, short, json!({"endpoint": body["endpoint"]})] {
        let r = app
            .call("POST", "/v1/me/push", Some(&token), Some(bad.clone()))
            .await;
        assert!(r.status == 422 || r.status == 400, "{bad}: {r:?}");
    }
    let r = app.call("POST", "/v1/me/push", None, Some(body)).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(!volunteer.is_empty());
    app.stop().await;
}
