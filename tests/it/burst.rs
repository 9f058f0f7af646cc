//! A surge on the default setup: 2,000 bands press within one second while
//! a volunteer waits near each senior, so the service publishes offers and
//! notices while presses pour in. Every press must be stored (`received`)
//! and offered. This is the scenario that once locked the service's broker
//! connection up (traffic both ways at once); here it fails on a stall by
//! a generous deadline, and measures nothing (see `benches/burst.rs`).

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;

use crate::common::{Backend, spawn_app_with, unique};

const PRESSES: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surge_of_2000_presses_is_stored_and_offered_whole() {
    let app = spawn_app_with(Backend::SqliteEmbedded, |s| {
        s.offer_timeout = Duration::from_secs(600);
    })
    .await
    .unwrap();
    let run = unique("surge");
    let spot = |i: usize| {
        (
            30.20 + (i % 50) as f64 * 0.002,
            120.10 + (i / 50) as f64 * 0.002,
        )
    };
    // The registry: a senior and band per press, a volunteer beside each.
    futures::stream::iter(0..PRESSES)
        .map(|i| {
            let app = &app;
            let run = &run;
            async move {
                let (lat, lon) = spot(i);
                let r = app
                    .op(
                        "PUT",
                        &format!("/v1/seniors/{run}-s{i}"),
                        Some(json!({"name": format!("Senior {i}"), "home": {"lat": lat, "lon": lon}})),
                    )
                    .await;
                assert_eq!(r.status, 200, "{r:?}");
                let r = app
                    .op(
                        "PUT",
                        &format!("/v1/devices/{run}-b{i}"),
                        Some(json!({"senior_id": format!("{run}-s{i}")})),
                    )
                    .await;
                assert_eq!(r.status, 200, "{r:?}");
                let id = format!("{run}-v{i}");
                let r = app
                    .op("PUT", &format!("/v1/volunteers/{id}"), Some(json!({"name": "V"})))
                    .await;
                assert_eq!(r.status, 200, "{r:?}");
                let r = app.op("POST", &format!("/v1/volunteers/{id}/token"), None).await;
                let token = r.body["token"].as_str().expect("a token").to_string();
                app.go_on_duty(&token, lat + 0.0003, lon).await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    // One client watches every band's notices and every phone's offers;
    // another plays the bands (both with the admin login).
    let watcher = app.admin_login("surge-watch");
    let mut opts = MqttOptions::new(watcher.client_id, &app.mqtt.0, app.mqtt.1);
    opts.set_credentials(watcher.username, watcher.password)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (watch, mut watch_loop) = AsyncClient::new(opts, 10_000);
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(ev) = watch_loop.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = seen_tx.send(None);
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let m: serde_json::Value =
                        serde_json::from_slice(&p.payload).unwrap_or_default();
                    let _ = seen_tx.send(Some((p.topic.clone(), m)));
                }
                _ => {}
            }
        }
    });
    for filter in ["wristbands/+/notify", "volunteers/+/offers"] {
        watch.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        assert!(matches!(seen.recv().await, Some(None)), "SUBACK");
    }
    let bands = app.admin_login("surge-bands");
    let mut opts = MqttOptions::new(bands.client_id, &app.mqtt.0, app.mqtt.1);
    opts.set_credentials(bands.username, bands.password)
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000);
    let (presser, mut press_loop) = AsyncClient::new(opts, 10_000);
    tokio::spawn(async move { while press_loop.poll().await.is_ok() {} });

    let started = tokio::time::Instant::now();
    let gap = Duration::from_secs(1) / PRESSES as u32;
    for i in 0..PRESSES {
        tokio::time::sleep_until(started + gap * i as u32).await;
        presser
            .publish(
                format!("wristbands/{run}-b{i}/alert"),
                QoS::AtLeastOnce,
                false,
                json!({"event_id": "surge-1", "kind": "sos"}).to_string(),
            )
            .await
            .unwrap();
    }

    let mut received = HashSet::new();
    let mut alert_ids = HashSet::new();
    let mut offered = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while received.len() < PRESSES || offered.len() < PRESSES {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, seen.recv()).await {
            Ok(Some(Some((topic, m)))) => {
                if topic.starts_with("wristbands/") && m["state"] == "received" {
                    received.insert(topic);
                    alert_ids.insert(m["alert_id"].as_str().unwrap_or_default().to_string());
                } else if m["type"] == "offer" {
                    offered.insert(m["senior"]["id"].as_str().unwrap_or_default().to_string());
                }
            }
            Ok(_) => {}
            Err(_) => panic!(
                "stalled: after 90 s, {} of {PRESSES} presses received and {} offered",
                received.len(),
                offered.len()
            ),
        }
    }
    // One alert per press, none twice.
    assert_eq!(alert_ids.len(), PRESSES);
}
