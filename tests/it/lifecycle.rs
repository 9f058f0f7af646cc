//! A press, end to end, over a real broker and real HTTP: the band is told
//! `received`, the nearest volunteer's phone gets the offer, and the whole
//! life cycle shows in the alert and its timeline.

use serde_json::json;

use crate::common::{Backend, s, spawn_app, spawn_app_with};
use crate::on_both_backends;

const HOME: (f64, f64) = (30.5101, 120.6805);
/// About 110 m and 550 m north of HOME.
const NEAR: (f64, f64) = (30.5111, 120.6805);
const FAR: (f64, f64) = (30.5151, 120.6805);

on_both_backends!(
    press_to_resolution,
    nearest_volunteer_is_offered_first,
    decline_moves_on_to_the_next,
    expired_offer_moves_on,
    no_volunteer_escalates_then_offers_when_one_comes,
    band_cancel_withdraws_the_offer,
    redelivery_and_second_press_join_the_alert,
    response_deadline_breach_is_recorded_when_it_passes,
    operator_assigns_and_cancels,
    a_cancel_with_nothing_to_cancel_is_still_acknowledged,
);

async fn press_to_resolution(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let (vol, vol_token) = app.volunteer("Wang Fang", Some(NEAR)).await;

    let mut band = app.band_client(&device).await;
    band.subscribe(&format!("wristbands/{device}/notify")).await;
    let mut phone = app.phone_client(&vol, &vol_token).await;
    phone.subscribe(&format!("volunteers/{vol}/offers")).await;

    band.press(&device, "e-1", "sos", None).await;
    let received = band
        .expect(&format!("wristbands/{device}/notify"), 10, |m| {
            s(m, "state") == "received"
        })
        .await;
    assert_eq!(s(&received, "event_id"), "e-1");
    let alert_id = s(&received, "alert_id").to_string();
    assert!(!alert_id.is_empty());

    let offer = phone
        .expect(&format!("volunteers/{vol}/offers"), 10, |m| {
            s(m, "type") == "offer"
        })
        .await;
    assert_eq!(s(&offer, "alert_id"), alert_id);
    assert_eq!(s(&offer, "kind"), "sos");
    let d = offer["distance_m"].as_u64().unwrap();
    assert!((100..=125).contains(&d), "distance {d}");
    assert_eq!(
        offer["eta_s"].as_u64().unwrap(),
        (d as f64 / 1.4).round() as u64
    );
    assert_eq!(s(&offer["senior"], "name"), "Jiang Lan");
    assert!(!s(&offer, "expires_at").is_empty());

    let a = app.alert(&alert_id).await;
    assert_eq!(s(&a, "state"), "offered");
    assert_eq!(a["offers"][0]["volunteer_id"], json!(vol));

    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert_id}/accept"),
            Some(&vol_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s(&r.body, "state"), "accepted");
    let accepted = band
        .expect(&format!("wristbands/{device}/notify"), 10, |m| {
            s(m, "state") == "accepted"
        })
        .await;
    assert_eq!(s(&accepted, "volunteer_name"), "Wang Fang");
    assert!(accepted["eta_s"].as_u64().is_some());

    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert_id}/arrive"),
            Some(&vol_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s(&r.body, "state"), "on_scene");

    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert_id}/resolve"),
            Some(&vol_token),
            Some(json!({"outcome": "helped", "note": "groceries brought"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s(&r.body, "state"), "resolved");
    band.expect(&format!("wristbands/{device}/notify"), 10, |m| {
        s(m, "state") == "resolved"
    })
    .await;

    let a = app.alert(&alert_id).await;
    assert_eq!(s(&a, "state"), "resolved");
    assert_eq!(s(&a, "volunteer_id"), vol);
    assert!(a["accepted_at"].is_string() && a["on_scene_at"].is_string());
    assert_eq!(a["response_breached"], json!(false));
    let types: Vec<&str> = a["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["pressed", "offered", "accepted", "on_scene", "resolved"]
    );
    let resolved = a["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(s(&resolved, "outcome"), "helped");
    assert_eq!(s(&resolved, "note"), "groceries brought");

    // The volunteer is free again.
    let me = app.call("GET", "/v1/me", Some(&vol_token), None).await;
    assert_eq!(me.status, 200);
    assert!(me.body["current_alert"].is_null(), "{:?}", me.body);
    app.stop().await;
}

async fn nearest_volunteer_is_offered_first(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let (far, _) = app.volunteer("Far", Some(FAR)).await;
    let (near, _) = app.volunteer("Near", Some(NEAR)).await;
    let band = app.band_client(&device).await;
    band.press(&device, "e-1", "fall", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    let a = app
        .wait_alert(&alert, 10, |a| s(a, "state") == "offered")
        .await;
    assert_eq!(s(&a, "kind"), "fall");
    assert_eq!(a["offers"].as_array().unwrap().len(), 1);
    assert_eq!(a["offers"][0]["volunteer_id"], json!(near));
    assert_ne!(near, far);
    app.stop().await;
}

async fn decline_moves_on_to_the_next(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let (near, near_token) = app.volunteer("Near", Some(NEAR)).await;
    let (far, far_token) = app.volunteer("Far", Some(FAR)).await;
    let mut phone = app.phone_client(&far, &far_token).await;
    phone.subscribe(&format!("volunteers/{far}/offers")).await;
    let band = app.band_client(&device).await;
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    app.wait_alert(&alert, 10, |a| {
        a["offers"][0]["volunteer_id"] == json!(near)
    })
    .await;

    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert}/decline"),
            Some(&near_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let offer = phone
        .expect(&format!("volunteers/{far}/offers"), 10, |m| {
            s(m, "type") == "offer"
        })
        .await;
    assert_eq!(s(&offer, "alert_id"), alert);

    // The one who declined can no longer accept it.
    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert}/accept"),
            Some(&near_token),
            None,
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert}/accept"),
            Some(&far_token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let a = app.alert(&alert).await;
    let types: Vec<&str> = a["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["pressed", "offered", "declined", "offered", "accepted"]
    );
    app.stop().await;
}

async fn expired_offer_moves_on(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.offer_timeout = std::time::Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let (near, near_token) = app.volunteer("Near", Some(NEAR)).await;
    let (far, _) = app.volunteer("Far", Some(FAR)).await;
    let mut phone = app.phone_client(&near, &near_token).await;
    phone.subscribe(&format!("volunteers/{near}/offers")).await;
    let band = app.band_client(&device).await;
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    phone
        .expect(&format!("volunteers/{near}/offers"), 10, |m| {
            s(m, "type") == "offer"
        })
        .await;
    let withdrawn = phone
        .expect(&format!("volunteers/{near}/offers"), 10, |m| {
            s(m, "type") == "withdrawn"
        })
        .await;
    assert_eq!(s(&withdrawn, "reason"), "expired");
    let a = app
        .wait_alert(&alert, 10, |a| a["offers"][0]["volunteer_id"] == json!(far))
        .await;
    assert!(
        a["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| s(e, "type") == "offer_expired" && s(e, "volunteer_id") == near)
    );
    let r = app
        .call(
            "POST",
            &format!("/v1/alerts/{alert}/accept"),
            Some(&near_token),
            None,
        )
        .await;
    assert_eq!(r.status, 409, "accept after expiry: {r:?}");
    app.stop().await;
}

async fn no_volunteer_escalates_then_offers_when_one_comes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let (vol, token) = app.volunteer("Late", None).await;
    let band = app.band_client(&device).await;
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    let a = app
        .wait_alert(&alert, 10, |a| a["escalated"] == json!(true))
        .await;
    assert_eq!(s(&a, "state"), "open");
    assert!(
        a["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| s(e, "type") == "escalated")
    );

    app.go_on_duty(&token, NEAR.0, NEAR.1).await;
    let a = app
        .wait_alert(&alert, 10, |a| s(a, "state") == "offered")
        .await;
    assert_eq!(a["offers"][0]["volunteer_id"], json!(vol));
    assert_eq!(a["escalated"], json!(false));
    app.stop().await;
}

async fn band_cancel_withdraws_the_offer(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let (vol, phone_token) = app.volunteer("Near", Some(NEAR)).await;
    let mut phone = app.phone_client(&vol, &phone_token).await;
    phone.subscribe(&format!("volunteers/{vol}/offers")).await;
    let mut band = app.band_client(&device).await;
    band.subscribe(&format!("wristbands/{device}/notify")).await;
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    phone
        .expect(&format!("volunteers/{vol}/offers"), 10, |m| {
            s(m, "type") == "offer"
        })
        .await;
    band.press(&device, "e-2", "cancel", None).await;
    let w = phone
        .expect(&format!("volunteers/{vol}/offers"), 10, |m| {
            s(m, "type") == "withdrawn"
        })
        .await;
    assert_eq!(s(&w, "reason"), "cancelled");
    band.expect(&format!("wristbands/{device}/notify"), 10, |m| {
        s(m, "state") == "cancelled"
    })
    .await;
    let a = app.alert(&alert).await;
    assert_eq!(s(&a, "state"), "cancelled");
    assert!(a["offers"].as_array().unwrap().is_empty());
    app.stop().await;
}

async fn redelivery_and_second_press_join_the_alert(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let mut band = app.band_client(&device).await;
    let topic = format!("wristbands/{device}/notify");
    band.subscribe(&topic).await;
    band.press(&device, "e-1", "sos", None).await;
    let first = band
        .expect(&topic, 10, |m| s(m, "state") == "received")
        .await;
    // The same event again (a band that missed `received`): same answer.
    band.press(&device, "e-1", "sos", None).await;
    let again = band
        .expect(&topic, 10, |m| s(m, "state") == "received")
        .await;
    assert_eq!(first["alert_id"], again["alert_id"]);
    assert_eq!(s(&again, "event_id"), "e-1");
    // A new press joins the active alert.
    band.press(&device, "e-2", "sos", None).await;
    let joined = band
        .expect(&topic, 10, |m| {
            s(m, "state") == "received" && s(m, "event_id") == "e-2"
        })
        .await;
    assert_eq!(first["alert_id"], joined["alert_id"]);

    let alerts = app.op("GET", "/v1/alerts?state=all", None).await;
    let mine: Vec<_> = alerts
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| s(a, "device_id") == device)
        .collect();
    assert_eq!(mine.len(), 1, "one alert for the device");
    let a = app.alert(s(&first, "alert_id")).await;
    let types: Vec<&str> = a["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.iter().filter(|t| **t == "pressed").count(), 1);
    assert_eq!(types.iter().filter(|t| **t == "pressed_again").count(), 1);
    app.stop().await;
}

async fn response_deadline_breach_is_recorded_when_it_passes(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |s| {
        s.response_target = std::time::Duration::from_secs(2);
        s.arrival_target = std::time::Duration::from_secs(3);
    })
    .await
    else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let band = app.band_client(&device).await;
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    let a = app.alert(&alert).await;
    assert_eq!(a["response_breached"], json!(false));
    // Nobody reads the alert in between: the breach is recorded by the
    // service's own timer, at the deadline.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let a = app.alert(&alert).await;
    assert_eq!(a["response_breached"], json!(true), "{a:#}");
    assert_eq!(a["arrival_breached"], json!(true), "{a:#}");
    let breach = a["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| s(e, "type") == "response_breached")
        .cloned()
        .expect("a response_breached event");
    let at: chrono::DateTime<chrono::Utc> = s(&breach, "at").parse().unwrap();
    let deadline: chrono::DateTime<chrono::Utc> = s(&a, "response_deadline").parse().unwrap();
    let late = (at - deadline).num_milliseconds();
    assert!(
        (0..1000).contains(&late),
        "breach recorded {late} ms after the deadline"
    );
    app.stop().await;
}

async fn operator_assigns_and_cancels(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(None).await;
    let (vol, phone_token) = app.volunteer("Grid worker", Some(NEAR)).await;
    let mut phone = app.phone_client(&vol, &phone_token).await;
    phone.subscribe(&format!("volunteers/{vol}/offers")).await;
    let band = app.band_client(&device).await;
    // No location and no home: escalated, for the operator to handle.
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    let a = app
        .wait_alert(&alert, 10, |a| a["escalated"] == json!(true))
        .await;
    assert!(a["lat"].is_null());

    let r = app
        .op(
            "POST",
            &format!("/v1/alerts/{alert}/assign"),
            Some(json!({"volunteer_id": vol})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(s(&r.body, "state"), "accepted");
    assert_eq!(s(&r.body, "volunteer_id"), vol);
    phone
        .expect(&format!("volunteers/{vol}/offers"), 10, |m| {
            s(m, "type") == "assigned"
        })
        .await;

    let r = app
        .op(
            "POST",
            &format!("/v1/alerts/{alert}/cancel"),
            Some(json!({"reason": "family is there"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let w = phone
        .expect(&format!("volunteers/{vol}/offers"), 10, |m| {
            s(m, "type") == "withdrawn"
        })
        .await;
    assert_eq!(s(&w, "reason"), "cancelled");
    let a = app.alert(&alert).await;
    assert_eq!(s(&a, "state"), "cancelled");
    let cancelled = a["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(s(&cancelled, "reason"), "family is there");
    // Acting on a closed alert is a conflict.
    let r = app
        .op(
            "POST",
            &format!("/v1/alerts/{alert}/cancel"),
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    app.stop().await;
}

async fn a_cancel_with_nothing_to_cancel_is_still_acknowledged(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(Some(HOME)).await;
    let mut band = app.band_client(&device).await;
    let topic = format!("wristbands/{device}/notify");
    band.subscribe(&topic).await;
    for _ in 0..2 {
        // The second time is a redelivery: acknowledged again.
        band.press(&device, "c-1", "cancel", None).await;
        let r = band
            .expect(&topic, 10, |m| s(m, "state") == "received")
            .await;
        assert_eq!(s(&r, "event_id"), "c-1");
        assert!(r["alert_id"].is_null(), "{r}");
    }
    // It is remembered: a later press opens an alert that the old cancel,
    // redelivered once more, does not touch.
    band.press(&device, "e-1", "sos", None).await;
    let alert = wait_for_device_alert(&app, &device).await;
    band.press(&device, "c-1", "cancel", None).await;
    band.expect(&topic, 10, |m| s(m, "event_id") == "c-1").await;
    let a = app.alert(&alert).await;
    assert_ne!(s(&a, "state"), "cancelled", "{a:#}");
    app.stop().await;
}

/// The id of the device's newest alert, once there is one.
pub async fn wait_for_device_alert(app: &crate::common::TestApp, device: &str) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = app.op("GET", "/v1/alerts?state=all&limit=500", None).await;
        if let Some(a) = r
            .body
            .as_array()
            .and_then(|l| l.iter().find(|a| s(a, "device_id") == device))
        {
            return s(a, "id").to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alert for {device}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
