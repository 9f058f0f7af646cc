//! Broker access, tried as an attacker would, on the embedded broker and on
//! a private Mosquitto run from the shipped configuration (its files kept
//! in step by the service): anonymous, wrong and replaced credentials; a
//! band speaking for another band; subscriptions to others' topics and to
//! wildcards; a will aimed elsewhere; impostors on a band's and on the
//! service's client id; a gateway's and a phone's rights; the shared id
//! namespace; and the HTTP broker hooks.

use std::time::Duration;

use rumqttc::ConnectReturnCode;
use serde_json::{Value, json};

use crate::common::mosquitto::{self, PrivateMosquitto};
use crate::common::{Backend, Broker, Login, Mqtt, TestApp, s, spawn_app_with, unique};

/// Which broker a matrix runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Embedded,
    Mosquitto,
}

/// An app on SQLite with the embedded broker, or with a private Mosquitto
/// whose password and ACL files the app writes.
async fn app_on(kind: Kind) -> (TestApp, Option<PrivateMosquitto>) {
    match kind {
        Kind::Embedded => {
            let app = spawn_app_with(Backend::SqliteEmbedded, |_| {})
                .await
                .expect("SQLite + embedded always runs");
            (app, None)
        }
        Kind::Mosquitto => {
            let (app, m) = mosquitto::spawn_app(Backend::SqliteEmbedded).await;
            (app, Some(m))
        }
    }
}

/// The broker refuses this login (eventually, for a just-replaced one).
async fn refused(app: &TestApp, login: Login) -> Broker {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Mqtt::try_connect(&app.mqtt.0, app.mqtt.1, login.clone()).await {
            Err(e @ Broker::Refused(_)) => return e,
            Ok(_) | Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "{} with client id {} was let in",
                login.username,
                login.client_id
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_login_refusal(b: &Broker) -> bool {
    matches!(
        b,
        Broker::Refused(ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized)
    )
}

/// The alerts of one band (any state).
async fn alerts_of(app: &TestApp, device: &str) -> Vec<Value> {
    let r = app.op("GET", "/v1/alerts?state=all&limit=500", None).await;
    assert_eq!(r.status, 200);
    r.body
        .as_array()
        .expect("a list")
        .iter()
        .filter(|a| a["device_id"] == json!(device))
        .cloned()
        .collect()
}

/// A band's heartbeat time, as the registry shows it.
async fn last_seen(app: &TestApp, device: &str) -> Value {
    let r = app.op("GET", "/v1/devices", None).await;
    r.body
        .as_array()
        .expect("a list")
        .iter()
        .find(|d| d["device_id"] == json!(device))
        .map(|d| d["last_seen"].clone())
        .unwrap_or(Value::Null)
}

/// Subscribing to `filter` is refused, or brings nothing when `publish`
/// sends a message there.
async fn cannot_read(client: &mut Mqtt, filter: &str, topic: &str, admin: &Mqtt) {
    if client.try_subscribe(filter).await {
        admin.publish(topic, r#"{"probe":true}"#).await;
        client.expect_none(topic, 500, |_| true).await;
    }
}

async fn matrix(kind: Kind) {
    let (app, _broker) = app_on(kind).await;
    let home = Some((30.5101, 120.6805));
    let (_, mine) = app.senior_with_band(home).await;
    let (_, victim) = app.senior_with_band(home).await;
    let admin = mosquitto::connects(&app, app.admin_login("admin")).await;

    // Anonymous, unknown and wrong credentials.
    let mut anon = Mqtt::connect(&app.mqtt.0, app.mqtt.1, None).await;
    let said = anon.next_event(10).await;
    assert!(is_login_refusal(&said), "anonymous: {said:?}");
    drop(anon);
    let mine_login = app.band_login(&mine).await;
    let wrong = Login {
        password: onepress::access::secret::new_secret(),
        ..mine_login.clone()
    };
    assert!(is_login_refusal(&refused(&app, wrong).await));
    let victim_login = app.band_login(&victim).await;
    let unknown = Login {
        client_id: unique("nobody"),
        username: unique("nobody"),
        password: victim_login.password.clone(),
    };
    assert!(is_login_refusal(&refused(&app, unknown).await));

    // The band itself: connects, reads its own notices, presses.
    let mut band = mosquitto::connects(&app, mine_login.clone()).await;
    band.subscribe(&format!("wristbands/{mine}/notify")).await;
    let mut victim_band = mosquitto::connects(&app, victim_login.clone()).await;
    victim_band
        .subscribe(&format!("wristbands/{victim}/notify"))
        .await;

    // Speaking for another band: a press, a cancel, a heartbeat. Then the
    // band's own press, on the same connection: once it is received, the
    // forged ones (sent before it) would have been too.
    band.press(&victim, "forged-1", "sos", None).await;
    band.publish(
        &format!("wristbands/{victim}/alert"),
        json!({"event_id": "forged-2", "kind": "cancel"}).to_string(),
    )
    .await;
    band.publish(
        &format!("wristbands/{victim}/status"),
        json!({"battery": 1}).to_string(),
    )
    .await;
    band.press(&mine, "own-1", "sos", None).await;
    band.expect(&format!("wristbands/{mine}/notify"), 10, |m| {
        m["state"] == "received"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await; // a heartbeat batch
    assert!(alerts_of(&app, &victim).await.is_empty(), "a forged press");
    assert_eq!(
        last_seen(&app, &victim).await,
        Value::Null,
        "a forged heartbeat"
    );
    assert_eq!(alerts_of(&app, &mine).await.len(), 1);

    // Reading others' notices, wildcards, offers.
    let other_notify = format!("wristbands/{victim}/notify");
    cannot_read(&mut band, &other_notify, &other_notify, &admin).await;
    cannot_read(&mut band, "wristbands/+/notify", &other_notify, &admin).await;
    cannot_read(&mut band, "#", &other_notify, &admin).await;
    cannot_read(
        &mut band,
        "volunteers/+/offers",
        "volunteers/v-x/offers",
        &admin,
    )
    .await;

    // An impostor on the victim's client id: the victim keeps its session.
    let impostor = Login {
        client_id: victim.clone(),
        ..mine_login.clone()
    };
    match kind {
        // The embedded broker refuses a client id that is not the login's.
        Kind::Embedded => assert!(is_login_refusal(&refused(&app, impostor).await)),
        // Mosquitto replaces it with the user name: the impostor is just
        // `mine` again (and takes over its own session, nobody else's).
        Kind::Mosquitto => drop(Mqtt::try_connect(&app.mqtt.0, app.mqtt.1, impostor).await),
    }
    // …and on the service's client id.
    let on_service = Login {
        client_id: app.settings.mqtt_client_id.clone(),
        ..app.admin_login("x")
    };
    if kind == Kind::Embedded {
        assert!(is_login_refusal(&refused(&app, on_service).await));
    } else {
        drop(Mqtt::try_connect(&app.mqtt.0, app.mqtt.1, on_service).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The service still hears presses and the victim still hears its notices.
    victim_band.press(&victim, "real-1", "sos", None).await;
    victim_band
        .expect(&format!("wristbands/{victim}/notify"), 10, |m| {
            m["state"] == "received"
        })
        .await;

    // A will aimed at another band's alert topic.
    let (_, third) = app.senior_with_band(home).await;
    let third_login = app.band_login(&third).await;
    let _ = mosquitto::connects(&app, third_login.clone()).await; // the login works
    let mut with_will = Mqtt::connect_with_will(
        &app.mqtt.0,
        app.mqtt.1,
        third_login,
        &format!("wristbands/{mine}/alert"),
    )
    .await;
    match with_will.next_event(10).await {
        Broker::Connected => {
            // Let the will fire: drop the connection without DISCONNECT.
            drop(with_will);
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        refusal => assert!(is_login_refusal(&refusal), "{refusal:?}"),
    }
    assert_eq!(
        alerts_of(&app, &mine).await.len(),
        1,
        "the will got through"
    );

    // A phone: its own offers only, publishes nothing.
    let (vol, token) = app.volunteer("Wang Fang", None).await;
    let (vol2, _) = app.volunteer("Li Wei", None).await;
    let phone_login = Login {
        client_id: vol.clone(),
        username: vol.clone(),
        password: token.clone(),
    };
    let mut phone = mosquitto::connects(&app, phone_login.clone()).await;
    phone.subscribe(&format!("volunteers/{vol}/offers")).await;
    let other_offers = format!("volunteers/{vol2}/offers");
    cannot_read(&mut phone, &other_offers, &other_offers, &admin).await;
    cannot_read(&mut phone, "volunteers/+/offers", &other_offers, &admin).await;
    phone.press(&victim, "from-a-phone", "sos", None).await;

    // A gateway speaks for any band and reads every band's notices.
    let r = app
        .op(
            "POST",
            &format!("/v1/gateways/{}/secret", unique("gw")),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let gw_login = Login {
        client_id: s(&r.body, "username").into(),
        username: s(&r.body, "username").into(),
        password: s(&r.body, "password").into(),
    };
    let mut gateway = mosquitto::connects(&app, gw_login).await;
    gateway.subscribe("wristbands/+/notify").await;
    cannot_read(&mut gateway, "volunteers/+/offers", &other_offers, &admin).await;
    gateway.press(&third, "via-gateway", "sos", None).await;
    gateway
        .expect(&format!("wristbands/{third}/notify"), 10, |m| {
            m["state"] == "received" && m["event_id"] == "via-gateway"
        })
        .await;
    assert!(
        alerts_of(&app, &victim)
            .await
            .iter()
            .all(|a| a["event_id"] != "from-a-phone"),
        "a phone pressed for a band"
    );

    // Replacing a secret or a token cuts off the live connection at once,
    // and the old one no longer logs in.
    drop(band);
    let mut band = mosquitto::connects(&app, mine_login.clone()).await;
    let new_login = app.band_login(&mine).await;
    band.expect_cut_off(10).await;
    assert!(is_login_refusal(&refused(&app, mine_login).await));
    drop(mosquitto::connects(&app, new_login).await);
    let r = app
        .op("POST", &format!("/v1/volunteers/{vol}/token"), None)
        .await;
    assert_eq!(r.status, 200);
    phone.expect_cut_off(10).await;
    assert!(is_login_refusal(&refused(&app, phone_login).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_table_holds_on_the_embedded_broker() {
    matrix(Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_table_holds_on_mosquitto() {
    matrix(Kind::Mosquitto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_share_one_namespace() {
    let app = spawn_app_with(Backend::SqliteEmbedded, |_| {})
        .await
        .unwrap();
    let (_, device) = app.senior_with_band(None).await;
    let (vol, _) = app.volunteer("Wang Fang", None).await;
    let (senior, _) = app.senior_with_band(None).await;
    let r = app
        .op(
            "PUT",
            &format!("/v1/devices/{vol}"),
            Some(json!({"senior_id": senior})),
        )
        .await;
    assert_eq!(
        (r.status, s(&r.body["error"], "code")),
        (409, "id_taken"),
        "{r:?}"
    );
    let r = app
        .op(
            "PUT",
            &format!("/v1/volunteers/{device}"),
            Some(json!({"name": "X"})),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    let r = app
        .op("POST", &format!("/v1/gateways/{device}/secret"), None)
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    let r = app
        .op("POST", &format!("/v1/gateways/{vol}/secret"), None)
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    // The service's own client id and the admin's user name are reserved.
    let service = app.settings.mqtt_client_id.clone();
    let r = app
        .op(
            "PUT",
            &format!("/v1/volunteers/{service}"),
            Some(json!({"name": "X"})),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    let admin = app.admin_login("x").username;
    let r = app
        .op("POST", &format!("/v1/gateways/{admin}/secret"), None)
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    // A band's secret needs a registered band; volunteers cannot call it.
    let r = app
        .op(
            "POST",
            &format!("/v1/devices/{}/secret", unique("ghost")),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    let (_, vtoken) = app.volunteer("Li", None).await;
    let r = app
        .call(
            "POST",
            &format!("/v1/devices/{device}/secret"),
            Some(&vtoken),
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = app
        .call("POST", &format!("/v1/devices/{device}/secret"), None, None)
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    // Shown once: a secret is 256 bits of hex, and never cached.
    let r = app
        .http
        .post(format!("{}/v1/devices/{device}/secret", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    let password = s(&body, "password");
    assert_eq!(password.len(), 64);
    assert!(password.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_hooks_answer_only_with_their_token() {
    // Off unless a token is set.
    let off = spawn_app_with(Backend::SqliteEmbedded, |_| {})
        .await
        .unwrap();
    let r = off
        .call(
            "POST",
            "/v1/mqtt/auth",
            Some("anything-at-all-0123"),
            Some(json!({"clientid": "x"})),
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");

    let hook = unique("hook-token");
    let h = hook.clone();
    let app = spawn_app_with(Backend::SqliteEmbedded, move |s| {
        s.broker_hook_token = Some(onepress::config::Secret::new(h));
    })
    .await
    .unwrap();
    let auth = |body: Value, token: Option<String>| {
        let app = &app;
        async move {
            app.call("POST", "/v1/mqtt/auth", token.as_deref(), Some(body))
                .await
        }
    };
    let acl = |body: Value| {
        let app = &app;
        let hook = hook.clone();
        async move {
            app.call("POST", "/v1/mqtt/acl", Some(&hook), Some(body))
                .await
        }
    };
    let (_, band) = app.senior_with_band(None).await;
    let login = app.band_login(&band).await;
    let good = json!({"clientid": band, "username": band, "password": login.password});
    assert_eq!(auth(good.clone(), None).await.status, 401);
    assert_eq!(
        auth(good.clone(), Some("wrong-token-0123456789".into()))
            .await
            .status,
        401
    );
    let r = auth(good.clone(), Some(hook.clone())).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, json!({"result": "allow", "is_superuser": false}));
    let mut wrong = good.clone();
    wrong["password"] = json!("nope");
    assert_eq!(auth(wrong, Some(hook.clone())).await.body["result"], "deny");
    let mut other_id = good.clone();
    other_id["clientid"] = json!("someone-else");
    assert_eq!(
        auth(other_id, Some(hook.clone())).await.body["result"],
        "deny"
    );
    assert_eq!(
        auth(json!({"clientid": band}), Some(hook.clone()))
            .await
            .body["result"],
        "deny"
    );
    let admin = app.admin_login("tool");
    let r = auth(
        json!({"clientid": admin.client_id, "username": admin.username, "password": admin.password}),
        Some(hook.clone()),
    )
    .await;
    assert_eq!(r.body, json!({"result": "allow", "is_superuser": true}));
    // Bad input is a 4xx, never a 5xx.
    let r = app
        .call(
            "POST",
            "/v1/mqtt/auth",
            Some(&hook),
            Some(json!({"username": 5})),
        )
        .await;
    assert!((400..500).contains(&r.status), "{r:?}");

    let ask = |topic: &str, action: &str| json!({"clientid": band, "username": band, "topic": topic, "action": action});
    for (topic, action, expected) in [
        (format!("wristbands/{band}/alert"), "publish", "allow"),
        (format!("wristbands/{band}/status"), "publish", "allow"),
        (format!("wristbands/{band}/notify"), "subscribe", "allow"),
        ("wristbands/other/alert".to_string(), "publish", "deny"),
        ("wristbands/+/notify".to_string(), "subscribe", "deny"),
        ("#".to_string(), "subscribe", "deny"),
        (format!("volunteers/{band}/offers"), "subscribe", "deny"),
    ] {
        let r = acl(ask(&topic, action)).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["result"], expected, "{action} {topic}");
    }
    let mut spoofed = ask(&format!("wristbands/{band}/alert"), "publish");
    spoofed["clientid"] = json!("another");
    assert_eq!(acl(spoofed).await.body["result"], "deny");
    let r =
        acl(json!({"clientid": band, "username": band, "topic": "x", "action": "delete"})).await;
    assert!((400..500).contains(&r.status), "{r:?}");
}

/// Messages to bands and phones are retained: a band that connects after
/// its press was stored gets the latest notice at once.
async fn a_late_band_gets_the_latest_notice_retained(backend: Backend) {
    let Some(app) = crate::common::spawn_app(backend).await else {
        return;
    };
    let (_, device) = app.senior_with_band(Some((30.5101, 120.6805))).await;
    let topic = format!("wristbands/{device}/notify");
    let mut presser = app.mqtt_client("presser").await;
    presser.subscribe(&topic).await;
    presser.press(&device, "e-1", "sos", None).await;
    // Once the notice went out live, the broker holds it.
    presser
        .expect(&topic, 10, |m| m["state"] == "received")
        .await;
    let mut band = app.band_client(&device).await;
    band.subscribe(&format!("wristbands/{device}/notify")).await;
    let m = band
        .expect_retained(&format!("wristbands/{device}/notify"), 10)
        .await;
    assert!(m["alert_id"].is_string(), "{m}");
}

crate::on_both_backends!(a_late_band_gets_the_latest_notice_retained);

crate::on_both_backends!(band_secrets_issued_at_once_all_succeed);

/// Forty band secrets, eight at a time: every one is issued (on SQLite a
/// transaction that read before writing was refused BUSY at once: 503s).
async fn band_secrets_issued_at_once_all_succeed(backend: Backend) {
    use futures::StreamExt;
    let Some(app) = crate::common::spawn_app(backend).await else {
        return;
    };
    let mut devices = Vec::new();
    for _ in 0..40 {
        devices.push(app.senior_with_band(None).await.1);
    }
    let statuses: Vec<u16> = futures::stream::iter(devices.iter())
        .map(|d| {
            let app = &app;
            async move {
                app.op("POST", &format!("/v1/devices/{d}/secret"), None)
                    .await
                    .status
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Still: an unknown band is a 404, another kind's id a 409.
    let r = app
        .op(
            "POST",
            &format!("/v1/devices/{}/secret", unique("nobody")),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    let (volunteer, _) = app.volunteer("Wang Fang", None).await;
    let r = app
        .op("POST", &format!("/v1/devices/{volunteer}/secret"), None)
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    app.stop().await;
}
