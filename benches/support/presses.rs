//! Presses over real MQTT, as a black box sees them: bands publish alert
//! events (QoS 1, as the admin login, one connection), phones listen on
//! every volunteer's offers topic (another admin connection), and each
//! press is followed from its publish to its `received` on the band's
//! notify topic and to its first offer. A volunteer offered a second alert
//! while an offer is pending is counted (the service must never do that).
//!
//! With `cancel_after_offer`, a band calls its alert off (a `cancel` event)
//! as soon as the offer is seen, which frees the volunteer again: a
//! sustained rate then needs only a pool of bands and volunteers, not one
//! per press.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Event, Packet, QoS};
use serde_json::{Value, json};

use super::Service;

/// What happened to one press.
#[derive(Debug, Clone)]
struct Press {
    band: usize,
    sent: Instant,
    received: Option<Instant>,
    offered: Option<Instant>,
}

#[derive(Default)]
struct Tracker {
    presses: HashMap<String, Press>,
    /// Per band, its press under way (until its alert is cancelled).
    active: HashMap<usize, String>,
    /// Per volunteer, the alert of the offer they hold.
    holding: HashMap<String, String>,
    double_offers: usize,
    /// Offers for an alert that already had one (a second candidate after
    /// an expiry, or a repeat).
    later_offers: usize,
    unknown_offers: usize,
}

/// The outcome of a run.
pub struct Outcome {
    pub presses: usize,
    pub received: usize,
    pub offered: usize,
    pub double_offers: usize,
    pub later_offers: usize,
    pub unknown_offers: usize,
    /// Publish → `received` on the band's topic.
    pub to_received: Vec<Duration>,
    /// Publish → the first offer on a volunteer's topic.
    pub to_offer: Vec<Duration>,
    /// From the first press to the last `received` / the last first offer.
    pub all_received_after: Option<Duration>,
    pub all_offered_after: Option<Duration>,
    /// How long publishing took (against the schedule).
    pub publish_span: Duration,
    /// Presses that waited for a free band (the pool was exhausted).
    pub waited_for_band: usize,
}

fn band_of_senior(senior: &str) -> Option<usize> {
    senior.strip_prefix('s')?.parse().ok()
}

fn band_of_topic(topic: &str) -> Option<usize> {
    topic
        .strip_prefix("wristbands/b")?
        .strip_suffix("/notify")?
        .parse()
        .ok()
}

/// Presses `count` times at `rate` a second (a burst: `count` over one
/// second is `rate == count`), using bands `0..bands` in turn, and waits up
/// to `settle` after the last for every press to be received and offered.
pub async fn run(
    service: &Service,
    bands: usize,
    count: usize,
    rate: f64,
    cancel_after_offer: bool,
    settle: Duration,
) -> anyhow::Result<Outcome> {
    let tracker: Arc<Mutex<Tracker>> = Arc::default();
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    // Bands publish on one connection and hear back on another, so that
    // the notices coming in never queue behind the presses going out.
    let (bands_client, mut bands_loop) = service.gateway_client("bench-bands", 100_000).await?;
    let (publisher, mut publisher_loop) = service.gateway_client("bench-presses", 100_000).await?;
    let publisher_task = tokio::spawn(async move {
        loop {
            if publisher_loop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let (phones, mut phones_loop) = service.admin_client("bench-phones", 100_000).await?;
    bands_client
        .subscribe("wristbands/+/notify", QoS::AtLeastOnce)
        .await?;
    phones
        .subscribe("volunteers/+/offers", QoS::AtLeastOnce)
        .await?;

    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(2);
    // The bands' connection: `received` and state changes of each alert.
    let t = tracker.clone();
    let ready = ready_tx.clone();
    let bands_task = tokio::spawn(async move {
        loop {
            let ev = match bands_loop.poll().await {
                Ok(ev) => ev,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = ready.try_send(());
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let now = Instant::now();
                    let Ok(m) = serde_json::from_slice::<Value>(&p.payload) else {
                        continue;
                    };
                    let Some(band) = band_of_topic(&p.topic) else {
                        continue;
                    };
                    let Ok(mut t) = t.lock() else { return };
                    match m["state"].as_str() {
                        Some("received") => {
                            let event = m["event_id"].as_str().unwrap_or_default();
                            if let Some(press) = t.presses.get_mut(event) {
                                press.received.get_or_insert(now);
                            }
                        }
                        Some("cancelled") | Some("resolved") => {
                            t.active.remove(&band);
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    });
    // The phones' connection: offers and withdrawals.
    let t = tracker.clone();
    let canceller = publisher.clone();
    let ready = ready_tx;
    let run2 = run_id.clone();
    let phones_task = tokio::spawn(async move {
        let mut cancels = 0u64;
        loop {
            let ev = match phones_loop.poll().await {
                Ok(ev) => ev,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    let _ = ready.try_send(());
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let now = Instant::now();
                    let Ok(m) = serde_json::from_slice::<Value>(&p.payload) else {
                        continue;
                    };
                    let volunteer = p
                        .topic
                        .strip_prefix("volunteers/")
                        .and_then(|r| r.strip_suffix("/offers"))
                        .unwrap_or_default()
                        .to_string();
                    let alert = m["alert_id"].as_str().unwrap_or_default().to_string();
                    let Ok(mut t) = t.lock() else { return };
                    match m["type"].as_str() {
                        Some("offer") => {
                            if let Some(held) = t.holding.get(&volunteer) {
                                if *held != alert {
                                    t.double_offers += 1;
                                }
                            }
                            t.holding.insert(volunteer, alert);
                            let band = m["senior"]["id"].as_str().and_then(band_of_senior);
                            let event = band.and_then(|b| t.active.get(&b).cloned());
                            let Some((band, event)) = band.zip(event) else {
                                t.unknown_offers += 1;
                                continue;
                            };
                            let Some(press) = t.presses.get_mut(&event) else {
                                t.unknown_offers += 1;
                                continue;
                            };
                            if press.offered.is_some() {
                                t.later_offers += 1;
                                continue;
                            }
                            press.offered = Some(now);
                            if cancel_after_offer {
                                cancels += 1;
                                let body = json!({"event_id": format!("{run2}-c{cancels}"), "kind": "cancel"});
                                let _ = canceller.try_publish(
                                    format!("wristbands/b{band}/alert"),
                                    QoS::AtLeastOnce,
                                    false,
                                    body.to_string(),
                                );
                            }
                        }
                        Some("withdrawn") if t.holding.get(&volunteer) == Some(&alert) => {
                            t.holding.remove(&volunteer);
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    });
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), ready_rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no SUBACK within 10 s"))?;
    }

    let started = Instant::now();
    let mut next_band = 0usize;
    let mut waited = 0usize;
    for i in 0..count {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        // The next band with no press under way.
        let band = loop {
            let free = {
                let t = tracker
                    .lock()
                    .map_err(|_| anyhow::anyhow!("tracker poisoned"))?;
                (0..bands)
                    .map(|k| (next_band + k) % bands)
                    .find(|b| !t.active.contains_key(b))
            };
            match free {
                Some(b) => break b,
                None => {
                    waited += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        next_band = band + 1;
        let event = format!("{run_id}-p{i}");
        {
            let mut t = tracker
                .lock()
                .map_err(|_| anyhow::anyhow!("tracker poisoned"))?;
            t.active.insert(band, event.clone());
            t.presses.insert(
                event.clone(),
                Press {
                    band,
                    sent: Instant::now(),
                    received: None,
                    offered: None,
                },
            );
        }
        let body = json!({"event_id": event, "kind": "sos"}).to_string();
        publisher
            .publish(
                format!("wristbands/b{band}/alert"),
                QoS::AtLeastOnce,
                false,
                body,
            )
            .await?;
    }
    let publish_span = started.elapsed();
    let deadline = Instant::now() + settle;
    loop {
        let done = tracker
            .lock()
            .map(|t| {
                t.presses
                    .values()
                    .all(|p| p.received.is_some() && p.offered.is_some())
            })
            .unwrap_or(true);
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Late duplicates and double offers have a moment to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    bands_task.abort();
    phones_task.abort();
    publisher_task.abort();
    let t = tracker
        .lock()
        .map_err(|_| anyhow::anyhow!("tracker poisoned"))?;
    let presses: Vec<&Press> = t.presses.values().collect();
    let first = presses.iter().map(|p| p.sent).min().unwrap_or(started);
    let last_of = |f: fn(&Press) -> Option<Instant>| {
        if presses.iter().all(|p| f(p).is_some()) {
            presses.iter().filter_map(|p| f(p)).max().map(|l| l - first)
        } else {
            None
        }
    };
    Ok(Outcome {
        presses: presses.len(),
        received: presses.iter().filter(|p| p.received.is_some()).count(),
        offered: presses.iter().filter(|p| p.offered.is_some()).count(),
        double_offers: t.double_offers,
        later_offers: t.later_offers,
        unknown_offers: t.unknown_offers,
        to_received: presses
            .iter()
            .filter_map(|p| p.received.map(|r| r - p.sent))
            .collect(),
        to_offer: presses
            .iter()
            .filter_map(|p| p.offered.map(|o| o - p.sent))
            .collect(),
        all_received_after: last_of(|p| p.received),
        all_offered_after: last_of(|p| p.offered),
        publish_span,
        waited_for_band: waited,
    })
}
