//! The live views and the figures: the operators' SSE stream
//! (`GET /v1/alerts/stream`), the SLA report (`GET /v1/stats/sla`) and the
//! Prometheus series of `GET /metrics`, against the real service.

use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, s, spawn_app, spawn_app_with};
use crate::lifecycle::wait_for_device_alert;
use crate::on_both_backends;

const HOME: (f64, f64) = (30.5101, 120.6805);
/// About 110 m north of HOME.
const NEAR: (f64, f64) = (30.5111, 120.6805);

on_both_backends!(
    the_stream_pushes_presses_and_breaches_as_they_happen,
    the_stream_is_for_operators_only,
    streams_end_when_the_service_stops,
    sla_figures_count_what_happened,
    metrics_count_the_flow,
);

// ----- an SSE client -------------------------------------------------------

/// A streaming response body.
type Body = Pin<Box<dyn Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>;

/// One server-sent event.
#[derive(Debug, Clone)]
struct SseEvent {
    event: String,
    data: String,
}

/// Reads `event:`/`data:` blocks off a streaming response.
struct SseClient {
    body: Body,
    buffer: String,
}

impl SseClient {
    /// Opens the stream with the token in the header, or in the query.
    async fn open(app: &TestApp, token: &str, in_query: bool) -> SseClient {
        let url = format!("{}/v1/alerts/stream", app.base);
        let request = if in_query {
            app.http.get(url).query(&[("access_token", token)])
        } else {
            app.http.get(url).bearer_auth(token)
        };
        let response = request.send().await.expect("the stream answers");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{response:?}"
        );
        SseClient {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped); None when the stream
    /// ended. Fails after `secs`.
    async fn next(&mut self, secs: u64) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return Some(event);
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Some(Err(_))) | Ok(None) => return None,
                Err(_) => panic!("no event within {secs}s"),
            }
        }
    }

    /// The next `alert` event whose alert satisfies `pred` (others skipped).
    async fn expect_alert(&mut self, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self
                .next(left.as_secs().max(1))
                .await
                .expect("the stream is open");
            assert_ne!(event.event, "resync", "a test client fell behind");
            if event.event == "alert" {
                let alert: Value = serde_json::from_str(&event.data).expect("JSON data");
                if pred(&alert) {
                    return alert;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching alert event within {secs}s"
            );
        }
    }
}

/// An SSE block: `event:` and `data:` lines (data lines joined with `\n`);
/// None for a comment-only block.
fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_string()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if event.is_none() && data.is_empty() {
        return None;
    }
    Some(SseEvent {
        event: event.unwrap_or_else(|| "message".into()),
        data: data.join("\n"),
    })
}

// ----- the stream ------------------------------------------------------------

async fn the_stream_pushes_presses_and_breaches_as_they_happen(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.response_target = Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let (vol, _) = app.volunteer("Wang Fang", Some(NEAR)).await;
    let mut by_header = SseClient::open(&app, &app.token, false).await;
    let mut by_query = SseClient::open(&app, &app.token, true).await;

    let band = app.band_client(&device).await;
    band.press(&device, "e-1", "sos", None).await;
    // Offered to the volunteer: pushed, with no GET from anyone.
    let offered = by_header
        .expect_alert(10, |a| {
            s(a, "device_id") == device && s(a, "state") == "offered"
        })
        .await;
    assert_eq!(offered["offers"][0]["volunteer_id"], json!(vol));
    assert_eq!(offered["response_breached"], json!(false));
    assert!(offered.get("timeline").is_none(), "{offered:#}");
    let id = s(&offered, "id").to_string();
    by_query
        .expect_alert(10, |a| s(a, "id") == id && s(a, "state") == "offered")
        .await;

    // Nobody accepts: the breach is pushed at the deadline.
    let breached = by_header
        .expect_alert(10, |a| {
            s(a, "id") == id && a["response_breached"] == json!(true)
        })
        .await;
    let deadline: DateTime<Utc> = s(&breached, "response_deadline").parse().unwrap();
    let late = (Utc::now() - deadline).num_milliseconds();
    assert!(late < 2000, "the breach came {late} ms after the deadline");
    by_query
        .expect_alert(10, |a| {
            s(a, "id") == id && a["response_breached"] == json!(true)
        })
        .await;
    app.stop().await;
}

async fn the_stream_is_for_operators_only(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, vol_token) = app.volunteer("Li Wei", None).await;
    let stream = "/v1/alerts/stream";
    let r = app.call("GET", stream, None, None).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.body["error"]["code"], "unauthorized");
    let r = app.call("GET", stream, Some("not-a-token"), None).await;
    assert_eq!(r.status, 401, "{r:?}");
    let r = app.call("GET", stream, Some(&vol_token), None).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body["error"]["code"], "forbidden");
    // The same by the query token.
    let query = |t: &str| format!("{stream}?access_token={t}");
    let r = app.call("GET", &query("not-a-token"), None, None).await;
    assert_eq!(r.status, 401, "{r:?}");
    let r = app.call("GET", &query(""), None, None).await;
    assert_eq!(r.status, 401, "{r:?}");
    let r = app.call("GET", &query(&vol_token), None, None).await;
    assert_eq!(r.status, 403, "{r:?}");
    // A header, when present, is the one that counts.
    let r = app
        .call("GET", &query(&app.token.clone()), Some("not-a-token"), None)
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    // Only the stream takes a query token.
    let r = app
        .call(
            "GET",
            &format!("/v1/alerts?access_token={}", app.token),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    app.stop().await;
}

async fn streams_end_when_the_service_stops(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut a = SseClient::open(&app, &app.token, false).await;
    let mut b = SseClient::open(&app, &app.token, true).await;
    // Stops in time (and cleanly) although two streams are open.
    let started = tokio::time::Instant::now();
    app.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(a.next(5).await.is_none(), "the stream went on");
    assert!(b.next(5).await.is_none(), "the stream went on");
}

// ----- SLA figures -------------------------------------------------------------

fn time(v: &Value, key: &str) -> DateTime<Utc> {
    s(v, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a time: {v:#}"))
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

async fn sla_figures_count_what_happened(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, band_a) = app.senior_with_band(Some(HOME)).await;
    let (_, band_b) = app.senior_with_band(Some(HOME)).await;
    let (_, band_c) = app.senior_with_band(Some(HOME)).await;
    let (_, vol_token) = app.volunteer("Wang Fang", Some(NEAR)).await;
    let band = app.gateway_client("gw").await;

    // A: accepted and on scene in time.
    band.press(&band_a, "e-1", "sos", None).await;
    let a = wait_for_device_alert(&app, &band_a).await;
    app.wait_alert(&a, 10, |x| s(x, "state") == "offered").await;
    for action in ["accept", "arrive"] {
        let r = app
            .call(
                "POST",
                &format!("/v1/alerts/{a}/{action}"),
                Some(&vol_token),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{action}: {r:?}");
    }
    // B: nobody free, still open. C: cancelled, left out.
    band.press(&band_b, "e-1", "sos", None).await;
    let b = wait_for_device_alert(&app, &band_b).await;
    band.press(&band_c, "e-1", "fall", None).await;
    let c = wait_for_device_alert(&app, &band_c).await;
    let r = app
        .op(
            "POST",
            &format!("/v1/alerts/{c}/cancel"),
            Some(json!({"reason": "false press"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    let a = app.alert(&a).await;
    let b = app.alert(&b).await;
    assert_eq!(s(&b, "state"), "open");
    let response_s = seconds(time(&a, "pressed_at"), time(&a, "accepted_at"));
    let arrival_s = seconds(time(&a, "pressed_at"), time(&a, "on_scene_at"));

    // The default window: the last 24 hours.
    let r = app.op("GET", "/v1/stats/sla", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let f = &r.body;
    assert_eq!(f["alerts"], json!(2), "{f:#}");
    assert_eq!(f["response_within_target"], json!(1), "{f:#}");
    assert_eq!(f["response_rate"], json!(0.5), "{f:#}");
    assert_eq!(f["arrival_within_target"], json!(1), "{f:#}");
    assert_eq!(f["arrival_rate"], json!(0.5), "{f:#}");
    assert_eq!(f["response_p50_s"], json!(response_s), "{f:#}");
    assert_eq!(f["response_p90_s"], json!(response_s), "{f:#}");
    assert_eq!(f["arrival_p50_s"], json!(arrival_s), "{f:#}");
    assert_eq!(f["arrival_p90_s"], json!(arrival_s), "{f:#}");
    let to = time(f, "to");
    assert_eq!((to - time(f, "from")).num_hours(), 24);

    // [A's press, B's press): A alone.
    let path = format!(
        "/v1/stats/sla?from={}&to={}",
        s(&a, "pressed_at"),
        s(&b, "pressed_at")
    );
    let r = app.op("GET", &path, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["alerts"], json!(1), "{r:?}");
    assert_eq!(r.body["response_rate"], json!(1.0), "{r:?}");
    assert_eq!(r.body["from"], a["pressed_at"]);

    // [B's press, …): B open and C cancelled: one alert, nothing reached.
    let r = app
        .op(
            "GET",
            &format!("/v1/stats/sla?from={}", s(&b, "pressed_at")),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["alerts"], json!(1), "{r:?}");
    assert_eq!(r.body["response_rate"], json!(0.0), "{r:?}");
    assert!(r.body["response_p50_s"].is_null(), "{r:?}");
    assert!(r.body["arrival_p90_s"].is_null(), "{r:?}");

    // A window with nothing in it.
    let r = app
        .op(
            "GET",
            "/v1/stats/sla?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["alerts"], json!(0));
    assert_eq!(r.body["arrival_rate"], json!(0.0));
    assert!(r.body["arrival_p50_s"].is_null());

    // Bad windows and bad callers.
    for bad in [
        "/v1/stats/sla?from=yesterday",
        "/v1/stats/sla?to=2026-11-25",
        "/v1/stats/sla?from=2026-11-25T03:00:00Z&to=2026-11-25T03:00:00Z",
    ] {
        let r = app.op("GET", bad, None).await;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert_eq!(r.body["error"]["code"], "bad_request", "{bad}");
    }
    let r = app
        .call("GET", "/v1/stats/sla", Some(&vol_token), None)
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = app.call("GET", "/v1/stats/sla", None, None).await;
    assert_eq!(r.status, 401, "{r:?}");
    app.stop().await;
}

// ----- metrics -------------------------------------------------------------------

/// The sum of the samples of `name` whose labels include all of `labels`
/// (`name` may be a histogram's `_bucket`, `_count` or `_sum`).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let wanted = labels.iter().all(|(k, v)| {
            series_labels
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        });
        if wanted {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    found
}

async fn scrape(app: &TestApp) -> String {
    let r = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics answer");
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    r.text().await.unwrap()
}

/// Waits until every (series, labels) has grown by at least its step since
/// `before` (counters are process-wide: other tests add to them too).
/// A series (name and some of its labels) and by how much it must grow.
type Growth<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

async fn wait_grown(app: &TestApp, before: &str, expected: &[Growth<'_>]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = scrape(app).await;
        let short: Vec<String> = expected
            .iter()
            .filter(|(name, labels, step)| {
                let was = sample(before, name, labels).unwrap_or(0.0);
                let is = sample(&now, name, labels).unwrap_or(0.0);
                is - was < *step
            })
            .map(|(name, labels, _)| format!("{name}{labels:?}"))
            .collect();
        if short.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "did not grow: {short:?}\n{now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metrics_count_the_flow(backend: Backend) {
    let Some((app, _broker)) = crate::common::isolated_app_with(backend, |s| {
        s.response_target = Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let (_, late_device) = app.senior_with_band(Some(HOME)).await;
    let (_, vol_token) = app.volunteer("Wang Fang", Some(NEAR)).await;
    let before = scrape(&app).await;

    // A press, offered and accepted; a heartbeat; a poison message.
    let band = app.gateway_client("gw").await;
    band.press(&device, "e-1", "sos", None).await;
    let id = wait_for_device_alert(&app, &device).await;
    app.wait_alert(&id, 10, |a| s(a, "state") == "offered")
        .await;
    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{id}/accept"),
            Some(&vol_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    band.publish(&format!("wristbands/{device}/status"), r#"{"battery": 50}"#)
        .await;
    band.publish(&format!("wristbands/{device}/alert"), "not json")
        .await;
    // A redelivery of the same event.
    band.press(&device, "e-1", "sos", None).await;
    // Another press while the only volunteer is busy: its response
    // deadline passes.
    band.press(&late_device, "e-1", "sos", None).await;

    wait_grown(
        &app,
        &before,
        &[
            ("onepress_alerts_total", &[("kind", "sos")], 2.0),
            (
                "onepress_ingest_messages_total",
                &[("topic", "alert"), ("outcome", "accepted")],
                2.0,
            ),
            (
                "onepress_ingest_messages_total",
                &[("topic", "alert"), ("outcome", "duplicate")],
                1.0,
            ),
            (
                "onepress_ingest_messages_total",
                &[("topic", "alert"), ("outcome", "rejected")],
                1.0,
            ),
            (
                "onepress_ingest_messages_total",
                &[("topic", "status"), ("outcome", "accepted")],
                1.0,
            ),
            (
                "onepress_ingest_rejected_total",
                &[("reason", "not_json")],
                1.0,
            ),
            ("onepress_offers_total", &[("outcome", "sent")], 1.0),
            ("onepress_offers_total", &[("outcome", "accepted")], 1.0),
            ("onepress_breaches_total", &[("target", "response")], 1.0),
            ("onepress_press_to_offer_seconds_count", &[], 1.0),
            ("onepress_press_to_accept_seconds_count", &[], 1.0),
            ("onepress_store_commit_seconds_count", &[], 1.0),
            ("onepress_engine_batch_size_count", &[], 1.0),
        ],
    )
    .await;

    let text = scrape(&app).await;
    // Real histograms, with buckets up to 10 minutes.
    for h in [
        "onepress_press_to_offer_seconds",
        "onepress_press_to_accept_seconds",
        "onepress_store_commit_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {h} histogram")),
            "{h}\n{text}"
        );
        for le in ["0.001", "600", "+Inf"] {
            let bucket = sample(&text, &format!("{h}_bucket"), &[("le", le)]);
            assert!(bucket.is_some(), "{h} le={le}\n{text}");
        }
    }
    assert!(sample(&text, "onepress_engine_batch_size_bucket", &[("le", "512")]).is_some());
    // The press-to-accept of this alert lies within a bucket of its size.
    let a = app.alert(&id).await;
    let took = seconds(time(&a, "pressed_at"), time(&a, "accepted_at"));
    assert!(took < 600.0);
    // Gauges: present for every active state, health up.
    for state in ["open", "offered", "accepted", "on_scene"] {
        assert!(
            sample(&text, "onepress_alerts_active", &[("state", state)]).is_some(),
            "{state}\n{text}"
        );
    }
    assert!(
        sample(&text, "onepress_mqtt_connected", &[]).is_some(),
        "{text}"
    );
    assert!(sample(&text, "onepress_store_up", &[]).is_some(), "{text}");
    assert!(text.contains("# HELP onepress_offers_total"), "{text}");
    app.stop().await;
}
