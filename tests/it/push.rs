//! Web Push sending (`onepress::notify::webpush`) against a push service
//! the test runs (`common::push`), which checks the VAPID token as a real
//! one does and decrypts the message as a browser does. No app, store or
//! broker: the sending side alone.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::SecretKey;
use serde_json::json;

use crate::common::push::{PushService, decrypt, unix_now, vapid_header};
use onepress::notify::webpush::{
    self, EndpointPolicy, MAX_PAYLOAD, PushError, PushSubscription, Transient, Urgency, VapidKeys,
    VapidSubject,
};

const WAIT: Duration = Duration::from_secs(5);

fn subject() -> VapidSubject {
    VapidSubject::parse("mailto:ops@onepress.example").expect("valid")
}

fn client() -> reqwest::Client {
    webpush::client(Duration::from_secs(5)).expect("a client")
}

/// A subscription to `service` restricted to `keys`, as the service would
/// read it from a volunteer's page.
fn subscribe(service: &PushService, keys: &VapidKeys) -> (String, PushSubscription) {
    let (id, json) = service.subscribe(&keys.public_key());
    let sub = PushSubscription::parse(&json, EndpointPolicy::AllowLoopback).expect("valid");
    (id, sub)
}

async fn send(
    keys: &VapidKeys,
    sub: &PushSubscription,
    payload: &[u8],
) -> Result<webpush::Delivered, PushError> {
    webpush::send(
        &client(),
        keys,
        &subject(),
        sub,
        payload,
        Duration::from_secs(180),
        Urgency::High,
    )
    .await
}

#[tokio::test]
async fn a_push_reaches_the_endpoint_and_decrypts_to_the_payload() {
    let service = PushService::start().await;
    let keys = VapidKeys::generate();
    let (id, sub) = subscribe(&service, &keys);
    let payload =
        json!({"type": "offer", "alert_id": "alert-1", "text": "Help needed: Li Na"}).to_string();

    let delivered = send(&keys, &sub, payload.as_bytes())
        .await
        .expect("delivered");
    assert_eq!(delivered.status, 201);
    assert!(
        delivered
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with(service.origin())),
        "{delivered:?}"
    );

    let got = service.next_message(&id, WAIT).await;
    assert_eq!(String::from_utf8_lossy(&got.plaintext), payload);
    assert_eq!(got.ttl, 180);
    assert_eq!(got.urgency.as_deref(), Some("high"));
    assert_eq!(got.claims["aud"], service.origin());
    assert_eq!(got.claims["sub"], "mailto:ops@onepress.example");
    assert!(service.refusals().is_empty(), "{:?}", service.refusals());
}

#[tokio::test]
async fn the_largest_payload_and_a_one_byte_one_get_through() {
    let service = PushService::start().await;
    let keys = VapidKeys::generate();
    let (id, sub) = subscribe(&service, &keys);

    let largest = vec![b'a'; MAX_PAYLOAD];
    send(&keys, &sub, &largest).await.expect("delivered");
    assert_eq!(service.next_message(&id, WAIT).await.plaintext, largest);
    send(&keys, &sub, b"x").await.expect("delivered");
    assert_eq!(service.next_message(&id, WAIT).await.plaintext, b"x");
}

#[tokio::test]
async fn a_message_signed_with_another_vapid_key_is_refused() {
    let service = PushService::start().await;
    let (id, sub) = subscribe(&service, &VapidKeys::generate());

    let err = send(&VapidKeys::generate(), &sub, b"hello")
        .await
        .expect_err("refused");
    match err {
        PushError::Rejected { status, reason } => {
            assert_eq!(status, 403);
            assert!(reason.contains("application server key"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(service.received().is_empty());
    assert_eq!(service.refusals().len(), 1);
    assert_eq!(service.refusals()[0].id, id);
}

/// Requests a broken or hostile sender would make, straight at the
/// service: each differs from a good one in one point and is refused, and
/// the good one passes, so the checks are real.
#[tokio::test]
async fn the_test_endpoint_checks_the_vapid_token() {
    let service = PushService::start().await;
    let keys = VapidKeys::generate();
    let vapid = SecretKey::from_slice(
        &URL_SAFE_NO_PAD
            .decode(keys.to_private().expose())
            .expect("base64url"),
    )
    .expect("a scalar");
    let other = SecretKey::from_slice(&[7u8; 32]).expect("a scalar");
    let (id, json) = service.subscribe(&keys.public_key());
    let subscriber = service.subscriber(&id);
    let now = unix_now();
    let good =
        json!({"aud": service.origin(), "exp": now + 3600, "sub": "mailto:ops@onepress.example"});
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let wrong_port = format!("{}1", service.origin());
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("no Authorization", None, 401),
        (
            "signed by another key than k",
            Some(vapid_header(&other, &vapid.public_key(), &good)),
            403,
        ),
        (
            "k is not the subscription's key",
            Some(vapid_header(&other, &other.public_key(), &good)),
            403,
        ),
        (
            "aud with another port",
            Some(vapid_header(
                &vapid,
                &vapid.public_key(),
                &with("aud", json!(wrong_port)),
            )),
            403,
        ),
        (
            "expired",
            Some(vapid_header(
                &vapid,
                &vapid.public_key(),
                &with("exp", json!(now - 1)),
            )),
            403,
        ),
        (
            "more than 24 h ahead",
            Some(vapid_header(
                &vapid,
                &vapid.public_key(),
                &with("exp", json!(now + 24 * 3600 + 60)),
            )),
            403,
        ),
        (
            "sub not a URL",
            Some(vapid_header(
                &vapid,
                &vapid.public_key(),
                &with("sub", json!("ops")),
            )),
            403,
        ),
        (
            "good",
            Some(vapid_header(&vapid, &vapid.public_key(), &good)),
            201,
        ),
    ];
    let ua_public = subscriber.secret.public_key();
    let http = client();
    for (case, authorization, want) in cases {
        let body = web_push_native::encrypt(b"hi".to_vec(), &ua_public, &subscriber.auth.into())
            .expect("encrypts");
        let mut req = http
            .post(&json.endpoint)
            .header("ttl", "60")
            .header("content-encoding", "aes128gcm")
            .body(body);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let r = req.send().await.expect("an answer");
        assert_eq!(r.status(), want, "{case}: {:?}", r.text().await);
    }
    assert_eq!(service.next_message(&id, WAIT).await.plaintext, b"hi");
    assert_eq!(service.refusals().len(), 7, "{:?}", service.refusals());
}

#[tokio::test]
async fn an_expired_subscription_is_gone() {
    let service = PushService::start().await;
    let keys = VapidKeys::generate();
    let (id, sub) = subscribe(&service, &keys);
    service.answer(&id, 410);
    let err = send(&keys, &sub, b"hello").await.expect_err("gone");
    assert!(matches!(err, PushError::Gone(s) if s == 410), "{err:?}");

    // A push service that no longer knows the subscription says 404.
    let json = webpush::PushSubscriptionJson {
        endpoint: format!("{}/push/nobody", service.origin()),
        keys: sub.to_json().keys,
    };
    let unknown = PushSubscription::parse(&json, EndpointPolicy::AllowLoopback).expect("valid");
    let err = send(&keys, &unknown, b"hello").await.expect_err("gone");
    assert!(matches!(err, PushError::Gone(s) if s == 404), "{err:?}");
}

#[tokio::test]
async fn a_redirect_is_not_followed_but_refused() {
    let service = PushService::start().await;
    let keys = VapidKeys::generate();
    let (id, sub) = subscribe(&service, &keys);
    service.answer(&id, 307);
    let err = send(&keys, &sub, b"hello").await.expect_err("refused");
    assert!(
        matches!(err, PushError::Rejected { status, .. } if status == 307),
        "{err:?}"
    );
    assert_eq!(service.requests(), 1);
}

#[tokio::test]
async fn an_outage_is_transient() {
    let service = PushService::start().await;
    let keys = VapidKeys::generate();
    let (id, sub) = subscribe(&service, &keys);
    service.answer(&id, 500);
    let err = send(&keys, &sub, b"hello").await.expect_err("transient");
    assert!(
        matches!(err, PushError::Transient(Transient::Status { status, .. }) if status == 500),
        "{err:?}"
    );
    assert!(err.is_transient());

    // Nobody listening: a network error, also transient, without the URL.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("bound").port()
    };
    let json = webpush::PushSubscriptionJson {
        endpoint: format!("http://127.0.0.1:{port}/push/secret-path"),
        keys: sub.to_json().keys,
    };
    let closed = PushSubscription::parse(&json, EndpointPolicy::AllowLoopback).expect("valid");
    let err = send(&keys, &closed, b"hello").await.expect_err("transient");
    assert!(
        matches!(err, PushError::Transient(Transient::Network(_))),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("secret-path"), "{err:?}");
}

#[tokio::test]
async fn an_oversize_or_empty_payload_fails_without_a_request() {
    let service = PushService::start().await;
    let keys = VapidKeys::generate();
    let (_, sub) = subscribe(&service, &keys);
    let started = Instant::now();
    let err = send(&keys, &sub, &vec![b'a'; MAX_PAYLOAD + 1])
        .await
        .expect_err("too large");
    assert!(
        matches!(err, PushError::PayloadTooLarge { len } if len == MAX_PAYLOAD + 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("at most 3993 bytes"), "{err}");
    let err = send(&keys, &sub, b"").await.expect_err("empty");
    assert!(matches!(err, PushError::PayloadEmpty), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(service.requests(), 0);
}

/// The test service's decryption is RFC 8291's, not the sender's crate
/// checked against itself: it opens the RFC's own example (Appendix A).
#[test]
fn the_test_endpoint_decrypts_the_rfc_8291_example() {
    let b64 = |s: &str| URL_SAFE_NO_PAD.decode(s).expect("base64url");
    let body = b64(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
    );
    let ua_private =
        SecretKey::from_slice(&b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")).expect("key");
    let auth: [u8; 16] = b64("BTBZMqHH6r4Tts7J_aSIgg").try_into().expect("16 bytes");
    assert_eq!(
        decrypt(&body, &ua_private, &auth).expect("decrypts"),
        b"When I grow up, I want to be a watermelon"
    );
    let mut tampered = body.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(decrypt(&tampered, &ua_private, &auth).is_err());
    let mut wrong_auth = auth;
    wrong_auth[0] ^= 1;
    assert!(decrypt(&body, &ua_private, &wrong_auth).is_err());
}
