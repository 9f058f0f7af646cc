//! Bad input from a band is rejected with a reason, counted, acknowledged,
//! and never stops the service; heartbeats update the device.

use serde_json::json;

use crate::common::{Backend, s, spawn_app};
use crate::lifecycle::wait_for_device_alert;
use crate::on_both_backends;

on_both_backends!(
    bad_input_is_counted_and_the_service_goes_on,
    heartbeats_update_the_device
);

async fn bad_input_is_counted_and_the_service_goes_on(backend: Backend) {
    let Some((app, _broker)) = crate::common::isolated_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(Some((30.51, 120.68))).await;
    let stranger = crate::common::unique("unregistered");
    let band = app.mqtt_client("band").await;
    let topic = format!("wristbands/{device}/alert");
    let reasons = [
        "too_large",
        "not_json",
        "invalid_field",
        "unknown_device",
        "nothing_to_cancel",
    ];
    let unknown = "onepress_ingest_rejected_total{reason=\"unknown_device\"}";
    let unknown_before = app.metric(unknown).await;
    let mut before = Vec::new();
    for r in reasons {
        before.push(
            app.metric(&format!("onepress_ingest_rejected_total{{reason=\"{r}\"}}"))
                .await,
        );
    }

    let big = json!({"event_id": "big", "kind": "sos", "pad": "x".repeat(5000)}).to_string();
    band.publish(&topic, big).await;
    band.publish(&topic, "not json at all").await;
    band.publish(
        &topic,
        json!({"event_id": "e", "kind": "sos", "lat": 91, "lon": 0}).to_string(),
    )
    .await;
    band.press(&stranger, "e-1", "sos", None).await;
    band.publish(
        &format!("wristbands/{stranger}/status"),
        r#"{"battery": 50}"#,
    )
    .await;
    band.press(&device, "c-0", "cancel", None).await;
    // A good press after all of that is still taken.
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    let a = app.alert(&alert).await;
    assert_eq!(s(&a, "device_id"), device);
    // The cancel came first: it must not have overtaken the press.
    assert_ne!(s(&a, "state"), "cancelled", "{a:#}");
    // And a press followed at once by a cancel ends cancelled, in order.
    let (_, quick) = app.senior_with_band(Some((30.51, 120.68))).await;
    band.press(&quick, "p-1", "sos", None).await;
    band.press(&quick, "p-2", "cancel", None).await;
    let q = wait_for_device_alert(&app, &quick).await;
    app.wait_alert(&q, 10, |a| s(a, "state") == "cancelled")
        .await;

    for (r, b) in reasons.iter().zip(before) {
        let series = format!("onepress_ingest_rejected_total{{reason=\"{r}\"}}");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let now = app.metric(&series).await;
            if now >= b + 1.0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} stayed at {now}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // The stranger's press and heartbeat are both counted.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.metric(unknown).await < unknown_before + 2.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "unknown heartbeat not counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Nothing was created for the stranger or by the rejected messages.
    let all = app.op("GET", "/v1/alerts?state=all", None).await;
    assert_eq!(all.body.as_array().unwrap().len(), 2, "{:?}", all.body);
    app.stop().await;
}

async fn heartbeats_update_the_device(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(None).await;
    let band = app.mqtt_client("band").await;
    band.publish(
        &format!("wristbands/{device}/status"),
        json!({"battery": 15, "lat": 30.5, "lon": 120.6}).to_string(),
    )
    .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = app.op("GET", "/v1/devices?status=low_battery", None).await;
        if let Some(d) = r
            .body
            .as_array()
            .and_then(|l| l.iter().find(|d| s(d, "device_id") == device))
        {
            assert_eq!(d["battery"], json!(15));
            assert_eq!(d["lat"], json!(30.5));
            assert_eq!(d["online"], json!(true));
            assert!(d["last_seen"].is_string());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "heartbeat never recorded: {:?}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// A band whose registration the store cannot read (a corrupt row: not an
/// outage, so every retry would fail the same way) has its press refused
/// for good, counted `store_refused` and acknowledged, instead of being
/// retried forever with every later acknowledgement queued behind it; the
/// next band's press goes through. SQLite, where the test can corrupt a
/// row behind the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_cannot_be_read_refuses_one_press_and_stalls_no_other() {
    use sqlx::Connection;
    let Some((app, _broker)) = crate::common::isolated_app(Backend::SqliteEmbedded).await else {
        return;
    };
    let (poisoned_senior, poisoned) = app.senior_with_band(Some((30.51, 120.68))).await;
    let (_, healthy) = app.senior_with_band(Some((30.51, 120.68))).await;
    let mut db = sqlx::SqliteConnection::connect(&app.settings.database_url)
        .await
        .expect("the test opens the service's database");
    sqlx::query("UPDATE seniors SET contacts = 'not json' WHERE id = ?")
        .bind(&poisoned_senior)
        .execute(&mut db)
        .await
        .expect("the row is corrupted");
    db.close().await.ok();

    let mut watcher = app.mqtt_client("watcher").await;
    watcher.subscribe("wristbands/+/notify").await;
    let band = app.mqtt_client("band").await;
    band.press(&poisoned, "e-1", "sos", None).await;
    band.press(&healthy, "e-1", "sos", None).await;
    let topic = format!("wristbands/{healthy}/notify");
    watcher
        .expect(&topic, 10, |n| s(n, "state") == "received")
        .await;
    let refused = "onepress_ingest_rejected_total{reason=\"store_refused\"}";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.metric(refused).await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poisoned press was not refused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // It created nothing, and got no `received`.
    watcher
        .expect_none(&format!("wristbands/{poisoned}/notify"), 300, |_| true)
        .await;
    let all = app.op("GET", "/v1/alerts?state=all", None).await;
    assert_eq!(all.body.as_array().map(Vec::len), Some(1), "{:?}", all.body);
    app.stop().await;
}
