//! One band floods the broker with alert events (contract §1: more than 10
//! a second are rejected `rate_limited`): another band's press is still
//! stored and answered `received` (a stall fails by a generous deadline;
//! nothing is timed here), and only the allowance of the flood reaches the
//! flooding band's alert. The PostgreSQL variant runs on a private
//! Mosquitto, so that the flood reaches no other test's service.

use std::time::{Duration, Instant};

use rumqttc::QoS;
use serde_json::json;

use crate::common::{Backend, mosquitto, s};
use crate::lifecycle::wait_for_device_alert;
use crate::on_both_backends;

on_both_backends!(a_flood_from_one_band_never_holds_up_another_bands_press);

/// How long the flood lasts; the other band presses in the middle of it.
const FLOOD_FOR: Duration = Duration::from_secs(3);

async fn a_flood_from_one_band_never_holds_up_another_bands_press(backend: Backend) {
    let Some((app, _broker)) = crate::common::isolated_app(backend).await else {
        return;
    };
    let (_, flooder) = app.senior_with_band(Some((30.51, 120.68))).await;
    let (_, other) = app.senior_with_band(Some((30.52, 120.69))).await;
    let flood_login = app.band_login(&flooder).await;
    let other_login = app.band_login(&other).await;
    let flood_band = mosquitto::connects(&app, flood_login).await;
    let mut other_band = mosquitto::connects(&app, other_login).await;
    let notify = format!("wristbands/{other}/notify");
    other_band.subscribe(&notify).await;

    // The flood: distinct events, QoS 1, as fast as the broker takes them.
    let topic = format!("wristbands/{flooder}/alert");
    let client = flood_band.client.clone();
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        let mut sent = 0usize;
        while started.elapsed() < FLOOD_FOR {
            let body = json!({"event_id": format!("f-{sent}"), "kind": "sos"}).to_string();
            client
                .publish(&topic, QoS::AtLeastOnce, false, body)
                .await
                .expect("the flood is published");
            sent += 1;
        }
        (sent, started.elapsed())
    });
    // In the thick of it, another band presses.
    let alert = wait_for_device_alert(&app, &flooder).await;
    tokio::time::sleep_until((started + FLOOD_FOR / 3).into()).await;
    let pressed = Instant::now();
    other_band.press(&other, "e-1", "sos", None).await;
    let received = other_band
        .expect(&notify, 10, |n| {
            s(n, "state") == "received" && s(n, "event_id") == "e-1"
        })
        .await;
    let answered = pressed.elapsed();
    let during = !flood.is_finished();
    assert!(received["alert_id"].is_string(), "{received}");
    let (sent, took) = flood.await.expect("the flood task");

    // Only the allowance reached the flooder's alert: at most 10 events in
    // each second the flood lasted (and the one after, for the last ones in
    // flight); the rest were rejected and acknowledged.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = app.alert(&alert).await;
    let taken = a["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter(|e| matches!(s(e, "type"), "pressed" | "pressed_again"))
        .count();
    let allowance = 10 * (took.as_secs() as usize + 2);
    eprintln!(
        "flood [{backend:?}]: {sent} events in {took:?} ({:.0}/s); taken into the alert: {taken}; \
         the other band's press answered in {answered:?} (flood still on: {during})",
        sent as f64 / took.as_secs_f64()
    );
    assert!(sent > 1000, "not a flood: {sent} events");
    assert!(
        during,
        "the other band was answered only after the flood ended"
    );
    assert!(taken >= 1, "the flooder's first press opened the alert");
    assert!(
        taken <= allowance,
        "{taken} of the flood's events reached the alert, over the allowance of {allowance}"
    );
    // Every event past the allowance is rejected and counted, once the
    // service has worked through what the broker still held for it.
    let excess = (sent - allowance) as f64;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rejected = app
            .metric("onepress_ingest_rejected_total{reason=\"rate_limited\"}")
            .await;
        if rejected >= excess {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rejected} rejected as rate_limited, fewer than the {excess} past the allowance"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The service is still whole: the other band's alert is there.
    wait_for_device_alert(&app, &other).await;
    app.stop().await;
}
