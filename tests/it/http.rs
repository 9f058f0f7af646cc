//! The HTTP API's edges over real HTTP: who may call what (401/403), the
//! registry's round trips, how bad input is answered (400/413/422, always in
//! the contract's error shape, never a 5xx), device status filters, token
//! reissue, a volunteer's view of alerts and the operational probes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Answer, Backend, TestApp, s, spawn_app, unique};
use crate::on_both_backends;

const HOME: (f64, f64) = (30.5101, 120.6805);

on_both_backends!(
    calls_without_a_valid_token_are_401,
    a_token_of_the_wrong_role_is_403,
    registry_round_trips,
    a_device_of_an_unknown_senior_is_404,
    bad_input_is_a_4xx_in_the_error_shape,
    an_oversized_body_is_413,
    devices_filter_by_status,
    a_reissued_token_replaces_the_old_one,
    volunteers_see_only_their_alerts,
    closed_alerts_refuse_actions,
    health_and_readiness,
);

/// Asserts the status and the contract's error shape; returns the code.
fn assert_error(r: &Answer, status: u16) -> String {
    assert_eq!(r.status, status, "{r:?}");
    let code = r.body["error"]["code"].as_str().unwrap_or_default();
    assert!(!code.is_empty(), "no error.code in {r:?}");
    assert!(
        r.body["error"]["message"].as_str().is_some(),
        "no error.message in {r:?}"
    );
    code.to_string()
}

/// Sends a raw body (not necessarily JSON) as the operator.
async fn raw(app: &TestApp, method: &str, path: &str, token: &str, body: String) -> Answer {
    let r = app
        .http
        .request(method.parse().unwrap(), format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the request is answered");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// Presses a band with no volunteer around and returns the new alert's id.
async fn open_alert(app: &TestApp, device: &str) -> String {
    let mut band = app.band_client(device).await;
    let topic = format!("wristbands/{device}/notify");
    band.subscribe(&topic).await;
    band.press(device, &unique("e"), "sos", None).await;
    let received = band
        .expect(&topic, 10, |m| s(m, "state") == "received")
        .await;
    s(&received, "alert_id").to_string()
}

async fn calls_without_a_valid_token_are_401(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for path in ["/v1/seniors", "/v1/me", "/v1/alerts", "/v1/devices"] {
        let r = app.call("GET", path, None, None).await;
        assert_eq!(assert_error(&r, 401), "unauthorized", "{path}");
        let r = app.call("GET", path, Some("not-a-token"), None).await;
        assert_eq!(assert_error(&r, 401), "unauthorized", "{path}");
    }
    // A malformed header is no token either.
    let r = app
        .http
        .get(format!("{}/v1/seniors", app.base))
        .header("authorization", format!("Basic {}", app.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    // Actions too, before anything else is looked at.
    let r = app
        .call("POST", "/v1/alerts/whatever/accept", None, None)
        .await;
    assert_error(&r, 401);
}

async fn a_token_of_the_wrong_role_is_403(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, vol_token) = app.volunteer("Wang Fang", None).await;
    for (method, path, body) in [
        ("GET", "/v1/seniors", None),
        ("PUT", "/v1/seniors/s-1", Some(json!({"name": "x"}))),
        ("GET", "/v1/devices", None),
        ("GET", "/v1/volunteers", None),
        ("POST", "/v1/volunteers/v-1/token", None),
        ("GET", "/v1/alerts", None),
        (
            "POST",
            "/v1/alerts/a-1/cancel",
            Some(json!({"reason": "x"})),
        ),
        (
            "POST",
            "/v1/alerts/a-1/assign",
            Some(json!({"volunteer_id": "v-1"})),
        ),
    ] {
        let r = app.call(method, path, Some(&vol_token), body).await;
        assert_eq!(assert_error(&r, 403), "forbidden", "{method} {path}");
    }
    // And the operator is not a volunteer.
    for (method, path, body) in [
        ("GET", "/v1/me", None),
        ("PUT", "/v1/me/duty", Some(json!({"on_duty": true}))),
        ("POST", "/v1/alerts/a-1/accept", None),
    ] {
        let r = app.op(method, path, body).await;
        assert_error(&r, 403);
    }
}

async fn registry_round_trips(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let senior = unique("senior");
    let body = json!({
        "name": "Jiang Lan", "address": "3 Lotus Lane", "home": {"lat": HOME.0, "lon": HOME.1},
        "grid": "g-7", "notes": "deaf in one ear",
        "contacts": [{"name": "Jiang Wei", "phone": "+86 138 0000 0000"}],
        "some_future_field": true
    });
    let r = app
        .op("PUT", &format!("/v1/seniors/{senior}"), Some(body))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = app.op("GET", &format!("/v1/seniors/{senior}"), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s(&r.body, "id"), senior);
    assert_eq!(s(&r.body, "name"), "Jiang Lan");
    assert_eq!(s(&r.body, "address"), "3 Lotus Lane");
    assert_eq!(r.body["home"]["lat"].as_f64(), Some(HOME.0));
    assert_eq!(s(&r.body, "grid"), "g-7");
    assert_eq!(s(&r.body["contacts"][0], "phone"), "+86 138 0000 0000");

    // A second PUT replaces.
    let r = app
        .op(
            "PUT",
            &format!("/v1/seniors/{senior}"),
            Some(json!({"name": "Jiang Lan Sr."})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = app.op("GET", "/v1/seniors", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let listed = r.body.as_array().expect("a list");
    let mine = listed
        .iter()
        .find(|x| s(x, "id") == senior)
        .expect("listed");
    assert_eq!(s(mine, "name"), "Jiang Lan Sr.");

    let r = app
        .op("GET", &format!("/v1/seniors/{}", unique("nobody")), None)
        .await;
    assert_eq!(assert_error(&r, 404), "not_found");

    // A band.
    let device = unique("band");
    let r = app
        .op(
            "PUT",
            &format!("/v1/devices/{device}"),
            Some(json!({"senior_id": senior})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s(&r.body, "device_id"), device);
    let r = app.op("GET", "/v1/devices", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let d = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|d| s(d, "device_id") == device)
        .expect("listed")
        .clone();
    assert_eq!(s(&d, "senior_id"), senior);
    assert_eq!(d["online"], json!(false));
    for key in ["last_seen", "battery", "lat", "lon"] {
        assert!(d.get(key).is_some(), "{key} missing: {d}");
    }

    // A volunteer.
    let vol = unique("vol");
    let r = app
        .op(
            "PUT",
            &format!("/v1/volunteers/{vol}"),
            Some(json!({"name": "Wang Fang", "phone": "139", "grid": "g-7", "skills": ["first_aid"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = app
        .op(
            "PUT",
            &format!("/v1/volunteers/{vol}"),
            Some(json!({"name": "Wang Fang2"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = app.op("GET", "/v1/volunteers", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|v| s(v, "id") == vol)
        .expect("listed")
        .clone();
    assert_eq!(s(&v, "name"), "Wang Fang2");
    assert_eq!(v["on_duty"], json!(false));
    assert_eq!(v["busy"], json!(false));
    for key in ["lat", "lon", "location_at"] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }

    // The volunteer's own view follows duty and location.
    let r = app
        .op("POST", &format!("/v1/volunteers/{vol}/token"), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let token = s(&r.body, "token").to_string();
    app.go_on_duty(&token, HOME.0, HOME.1).await;
    let r = app.call("GET", "/v1/me", Some(&token), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s(&r.body, "id"), vol);
    assert_eq!(s(&r.body, "name"), "Wang Fang2");
    assert_eq!(r.body["on_duty"], json!(true));
    assert_eq!(r.body["lat"].as_f64(), Some(HOME.0));
    assert_eq!(r.body["offers"], json!([]));
    assert_eq!(r.body["current_alert"], Value::Null);
    let r = app
        .call(
            "PUT",
            "/v1/me/duty",
            Some(&token),
            Some(json!({"on_duty": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["on_duty"], json!(false));
}

async fn a_device_of_an_unknown_senior_is_404(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let r = app
        .op(
            "PUT",
            &format!("/v1/devices/{}", unique("band")),
            Some(json!({"senior_id": unique("nobody")})),
        )
        .await;
    assert_eq!(assert_error(&r, 404), "not_found");
    // Tokens for unknown volunteers, likewise.
    let r = app
        .op(
            "POST",
            &format!("/v1/volunteers/{}/token", unique("nobody")),
            None,
        )
        .await;
    assert_error(&r, 404);
}

async fn bad_input_is_a_4xx_in_the_error_shape(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let senior = format!("/v1/seniors/{}", unique("senior"));
    // Not JSON, wrong types, missing fields, no body: 400.
    for body in [
        "{not json",
        r#"{"name": 17}"#,
        r#"{"address": "x"}"#,
        "",
        r#"{"name": "Li", "home": {"lat": "north", "lon": 1}}"#,
    ] {
        let r = raw(&app, "PUT", &senior, &app.token, body.to_string()).await;
        assert_eq!(assert_error(&r, 400), "bad_request", "{body}");
    }
    // Well-formed but unacceptable: 422.
    for body in [
        json!({"name": ""}),
        json!({"name": "x".repeat(201)}),
        json!({"name": "Li", "home": {"lat": 91.0, "lon": 120.0}}),
        json!({"name": "Li", "home": {"lat": 30.0, "lon": -180.5}}),
        json!({"name": "Li", "notes": "n".repeat(2001)}),
        // NUL: PostgreSQL cannot store it; never a 503.
        json!({"name": "Li\u{0}"}),
        json!({"name": "Li", "contacts": [{"name": "Wei", "phone": "\u{0}"}]}),
    ] {
        let r = app.op("PUT", &senior, Some(body.clone())).await;
        assert_eq!(assert_error(&r, 422), "invalid", "{body}");
    }
    // Bad ids, in the path or in a body.
    let r = app
        .op(
            "PUT",
            "/v1/seniors/has%20space",
            Some(json!({"name": "Li"})),
        )
        .await;
    assert_error(&r, 422);
    let r = app
        .op(
            "PUT",
            &format!("/v1/devices/{}", unique("band")),
            Some(json!({"senior_id": "no/slash"})),
        )
        .await;
    assert_error(&r, 422);
    let r = app
        .op("GET", &format!("/v1/alerts/{}", "a".repeat(65)), None)
        .await;
    assert_error(&r, 422);
    for (method, path) in [
        ("GET", "/v1/alerts/a%00"),
        ("POST", "/v1/alerts/%00/cancel"),
    ] {
        let r = app.op(method, path, None).await;
        assert_eq!(assert_error(&r, 422), "invalid", "{path}");
    }

    // A volunteer's location out of range.
    let (_, token) = app.volunteer("Wang Fang", None).await;
    for body in [
        json!({"lat": 90.5, "lon": 120.0}),
        json!({"lat": 30.0, "lon": 181}),
    ] {
        let r = app
            .call("PUT", "/v1/me/location", Some(&token), Some(body))
            .await;
        assert_eq!(assert_error(&r, 422), "invalid");
    }
    let r = app
        .call(
            "PUT",
            "/v1/me/location",
            Some(&token),
            Some(json!({"lat": 30.0})),
        )
        .await;
    assert_error(&r, 400);
    let r = app
        .call(
            "PUT",
            "/v1/me/duty",
            Some(&token),
            Some(json!({"on_duty": "yes"})),
        )
        .await;
    assert_error(&r, 400);

    // Bad query strings.
    let r = app.op("GET", "/v1/alerts?state=sometimes", None).await;
    assert_error(&r, 400);
    let r = app.op("GET", "/v1/alerts?limit=-1", None).await;
    assert_error(&r, 400);
    let r = app.op("GET", "/v1/alerts?limit=0", None).await;
    assert_error(&r, 422);
    let r = app.op("GET", "/v1/alerts?state=all&limit=5", None).await;
    assert_eq!(r.status, 200, "{r:?}");

    // Unknown routes and methods answer in the same shape.
    let r = app.op("GET", "/v1/nothing-here", None).await;
    assert_error(&r, 404);
    let r = app.op("DELETE", "/v1/seniors", None).await;
    assert_error(&r, 405);
}

async fn an_oversized_body_is_413(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let body = json!({"name": "Li", "notes": "n".repeat(100 * 1024)}).to_string();
    let r = raw(
        &app,
        "PUT",
        &format!("/v1/seniors/{}", unique("senior")),
        &app.token,
        body,
    )
    .await;
    assert_eq!(assert_error(&r, 413), "payload_too_large");
}

/// The devices in a `GET /v1/devices` answer.
async fn device_ids(app: &TestApp, query: &str) -> Vec<String> {
    let r = app.op("GET", &format!("/v1/devices{query}"), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| s(d, "device_id").to_string())
        .collect()
}

async fn devices_filter_by_status(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, silent) = app.senior_with_band(Some(HOME)).await;
    let (_, weak) = app.senior_with_band(Some(HOME)).await;
    let (_, strong) = app.senior_with_band(Some(HOME)).await;

    // Heartbeats of several bands: a gateway relays them.
    let band = app.gateway_client("gw").await;
    band.publish(
        &format!("wristbands/{weak}/status"),
        json!({"battery": 12, "lat": HOME.0, "lon": HOME.1}).to_string(),
    )
    .await;
    band.publish(
        &format!("wristbands/{strong}/status"),
        json!({"battery": 90}).to_string(),
    )
    .await;
    // Heartbeats are written in batches: wait until both show.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.op("GET", "/v1/devices", None).await;
        let seen = r
            .body
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                [weak.as_str(), strong.as_str()].contains(&s(d, "device_id"))
                    && d["online"] == json!(true)
            })
            .count();
        if seen == 2 {
            let w = r
                .body
                .as_array()
                .unwrap()
                .iter()
                .find(|d| s(d, "device_id") == weak)
                .unwrap()
                .clone();
            assert_eq!(w["battery"], json!(12));
            assert_eq!(w["lat"].as_f64(), Some(HOME.0));
            assert!(!s(&w, "last_seen").is_empty());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "heartbeats never showed: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let offline = device_ids(&app, "?status=offline").await;
    assert!(offline.contains(&silent));
    assert!(!offline.contains(&weak) && !offline.contains(&strong));
    let low = device_ids(&app, "?status=low_battery").await;
    assert!(low.contains(&weak));
    assert!(!low.contains(&silent) && !low.contains(&strong));
    let all = device_ids(&app, "").await;
    for d in [&silent, &weak, &strong] {
        assert!(all.contains(d));
    }
    let r = app.op("GET", "/v1/devices?status=on_fire", None).await;
    assert_error(&r, 400);
}

async fn a_reissued_token_replaces_the_old_one(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (vol, old) = app.volunteer("Wang Fang", None).await;
    assert_eq!(
        app.call("GET", "/v1/me", Some(&old), None).await.status,
        200
    );
    let r = app
        .op("POST", &format!("/v1/volunteers/{vol}/token"), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let new = s(&r.body, "token").to_string();
    assert!(new.len() >= 32 && new != old);
    let r = app.call("GET", "/v1/me", Some(&old), None).await;
    assert_error(&r, 401);
    let r = app.call("GET", "/v1/me", Some(&new), None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s(&r.body, "id"), vol);
}

async fn volunteers_see_only_their_alerts(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    // Off duty: never offered anything.
    let (_, token) = app.volunteer("Wang Fang", None).await;
    let alert_id = open_alert(&app, &device).await;

    // The operator reads it, with its timeline, and finds it listed.
    let a = app.alert(&alert_id).await;
    assert_eq!(s(&a, "device_id"), device);
    let timeline = a["timeline"].as_array().expect("a timeline");
    assert_eq!(s(&timeline[0], "type"), "pressed");
    let r = app.op("GET", "/v1/alerts", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body
            .as_array()
            .unwrap()
            .iter()
            .any(|x| s(x, "id") == alert_id)
    );

    // The volunteer may neither read nor take it.
    let r = app
        .call("GET", &format!("/v1/alerts/{alert_id}"), Some(&token), None)
        .await;
    assert_eq!(assert_error(&r, 403), "forbidden");
    for action in ["accept", "decline", "arrive"] {
        let r = app
            .call(
                "POST",
                &format!("/v1/alerts/{alert_id}/{action}"),
                Some(&token),
                None,
            )
            .await;
        assert_error(&r, 403);
    }
    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert_id}/resolve"),
            Some(&token),
            Some(json!({"outcome": "ok"})),
        )
        .await;
    assert_error(&r, 403);
    // Nor learn whether an alert exists.
    let r = app
        .call(
            "GET",
            &format!("/v1/alerts/{}", unique("alert")),
            Some(&token),
            None,
        )
        .await;
    assert_error(&r, 403);
    // Assigning a volunteer nobody registered.
    let r = app
        .op(
            "POST",
            &format!("/v1/alerts/{alert_id}/assign"),
            Some(json!({"volunteer_id": unique("vol")})),
        )
        .await;
    assert_error(&r, 404);
    // The operator does learn it.
    let r = app
        .op("GET", &format!("/v1/alerts/{}", unique("alert")), None)
        .await;
    assert_error(&r, 404);
    let r = app
        .op(
            "POST",
            &format!("/v1/alerts/{}/cancel", unique("alert")),
            None,
        )
        .await;
    assert_error(&r, 404);
}

async fn closed_alerts_refuse_actions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let (_, stranger) = app.volunteer("Li Ming", None).await;
    let alert_id = open_alert(&app, &device).await;

    // Cancel takes its body or none.
    let r = app
        .op("POST", &format!("/v1/alerts/{alert_id}/cancel"), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s(&r.body, "state"), "cancelled");

    let r = app
        .op(
            "POST",
            &format!("/v1/alerts/{alert_id}/cancel"),
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_error(&r, 409);
    let r = app
        .op(
            "POST",
            &format!("/v1/alerts/{alert_id}/resolve"),
            Some(json!({"outcome": "ok"})),
        )
        .await;
    assert_error(&r, 409);
    // A volunteer it never concerned is told it is not theirs.
    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert_id}/accept"),
            Some(&stranger),
            None,
        )
        .await;
    assert_error(&r, 403);
    // Assigning needs a known volunteer, then an active alert.
    let r = app
        .op(
            "POST",
            &format!("/v1/alerts/{alert_id}/assign"),
            Some(json!({"volunteer_id": "not valid"})),
        )
        .await;
    assert_error(&r, 422);
    let r = app
        .op(
            "POST",
            &format!("/v1/alerts/{alert_id}/assign"),
            Some(json!({"volunteer_id": unique("vol")})),
        )
        .await;
    assert!(r.status == 404 || r.status == 409, "{r:?}");
    assert_error(&r, r.status);

    // Listing: active by default, `all` includes the cancelled one.
    let r = app.op("GET", "/v1/alerts", None).await;
    assert!(
        !r.body
            .as_array()
            .unwrap()
            .iter()
            .any(|x| s(x, "id") == alert_id)
    );
    let r = app
        .op("GET", "/v1/alerts?state=all&limit=1000000", None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body
            .as_array()
            .unwrap()
            .iter()
            .any(|x| s(x, "id") == alert_id)
    );
}

async fn health_and_readiness(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = app.call("GET", "/readyz", None, None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s(&r.body, "status"), "ready");
    assert_eq!(s(&r.body, "store"), "up");
    assert_eq!(s(&r.body, "mqtt"), "up");
}

/// A client that announces a body and never sends it is answered (400)
/// once the body timeout passes, instead of holding the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(Backend::SqliteEmbedded).await.unwrap();
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /v1/seniors/s-slow HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        app.token
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), sock.read(&mut answer))
        .await
        .expect("answered before the test's own limit")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "not before the timeout"
    );
    let r = app.op("GET", "/v1/seniors/s-slow", None).await;
    assert_eq!(r.status, 404, "nothing half written");
}

/// A client that trickles its headers (slowloris) is cut off once the
/// header timeout (10 s) passes, one that opens a connection and says
/// nothing once the idle timeout (30 s) passes, and the service answers
/// everyone else meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(Backend::SqliteEmbedded).await.unwrap();
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut trickle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    trickle
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(r.status, 200, "others are served meanwhile");
    for (name, sock) in [("trickling", &mut trickle), ("idle", &mut idle)] {
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(45), sock.read(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("the {name} connection was still open after 45 s"))
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&answer[..n]);
        // Closed, or told 408 first.
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{name}: {text}");
    }
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "cut off before the timeout"
    );
}
