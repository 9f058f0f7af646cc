//! A push service for tests: an axum server on a free loopback port that
//! plays a browser's push service and the browser behind it, as
//! `web-push-testing` does, in process.
//!
//! [`PushService::subscribe`] makes what `pushManager.subscribe` makes: a
//! P-256 key pair and a 16-byte auth secret kept here, and a subscription
//! (`{endpoint, keys}`) restricted to one application server key. A
//! `POST /push/{id}` then has to pass what a real push service checks
//! (RFC 8030, RFC 8292):
//! - `Authorization: vapid t=<jwt>, k=<key>`: 401 if absent; 403 if `k` is
//!   not the subscription's key, the ES256 signature does not verify
//!   against `k`, `aud` is not this server's origin, `exp` is past or more
//!   than 24 hours ahead, or `sub` is not a `mailto:` or `https:` URL;
//! - `Content-Encoding: aes128gcm` and a `TTL` header (else 400), a body of
//!   at most 4096 bytes (else 413);
//!
//! and is then decrypted with the subscriber's private key and auth secret
//! (RFC 8291, written out here from the RFC rather than taken from the
//! crate that encrypts) and recorded for the test to await. A request
//! that fails a check is recorded as a [`Refusal`] with the reason.
//! [`PushService::answer`] makes a subscription answer a fixed status
//! instead (410 for an expired subscription, 500 for an outage).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::{PublicKey, SecretKey};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use onepress::notify::webpush::{PushSubscriptionJson, PushSubscriptionKeys};

/// What `pushManager.subscribe` keeps in the browser: the subscription's
/// private key and auth secret, and the application server key it is
/// restricted to.
#[derive(Clone)]
pub struct Subscriber {
    pub secret: SecretKey,
    pub auth: [u8; 16],
    pub application_server_key: Vec<u8>,
}

/// A message that passed every check, decrypted.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub plaintext: Vec<u8>,
    pub ttl: u64,
    pub urgency: Option<String>,
    /// The JWT's claims.
    pub claims: Value,
}

/// A request the service refused, and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub id: String,
    pub status: StatusCode,
    pub reason: String,
}

#[derive(Default)]
struct Shared {
    origin: String,
    subscribers: Mutex<HashMap<String, Subscriber>>,
    answers: Mutex<HashMap<String, StatusCode>>,
    received: Mutex<Vec<Received>>,
    refused: Mutex<Vec<Refusal>>,
    requests: AtomicUsize,
    arrived: Notify,
}

/// A running test push service; stops when dropped.
pub struct PushService {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl PushService {
    /// Starts a service on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let shared = Arc::new(Shared {
            origin: format!("http://{addr}"),
            ..Shared::default()
        });
        let app = Router::new()
            .route("/push/{id}", post(push))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
                .expect("the push service runs");
        });
        Self { shared, stop }
    }

    /// `http://127.0.0.1:<port>`, the `aud` a VAPID token must name.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// A new subscription restricted to `application_server_key` (the
    /// base64url public key a page would pass to `pushManager.subscribe`):
    /// its id and its `toJSON()` form.
    pub fn subscribe(&self, application_server_key: &str) -> (String, PushSubscriptionJson) {
        let id = super::unique("sub");
        let secret = loop {
            let bytes: [u8; 32] = rand::random();
            if let Ok(k) = SecretKey::from_bytes(&bytes.into()) {
                break k;
            }
        };
        let subscriber = Subscriber {
            auth: rand::random(),
            application_server_key: URL_SAFE_NO_PAD
                .decode(application_server_key)
                .expect("a base64url key"),
            secret,
        };
        let json = PushSubscriptionJson {
            endpoint: format!("{}/push/{id}", self.origin()),
            keys: PushSubscriptionKeys {
                p256dh: URL_SAFE_NO_PAD.encode(
                    subscriber
                        .secret
                        .public_key()
                        .to_encoded_point(false)
                        .as_bytes(),
                ),
                auth: URL_SAFE_NO_PAD.encode(subscriber.auth),
            },
        };
        self.shared
            .subscribers
            .lock()
            .unwrap()
            .insert(id.clone(), subscriber);
        (id, json)
    }

    /// The browser's side of subscription `id`.
    pub fn subscriber(&self, id: &str) -> Subscriber {
        self.shared.subscribers.lock().unwrap()[id].clone()
    }

    /// From now on subscription `id` answers `status` to every message.
    pub fn answer(&self, id: &str, status: u16) {
        let status = StatusCode::from_u16(status).expect("a status");
        self.shared
            .answers
            .lock()
            .unwrap()
            .insert(id.to_string(), status);
    }

    /// The next message for `id` not yet taken, waiting up to `within`.
    pub async fn next_message(&self, id: &str, within: Duration) -> Received {
        let wait = async {
            loop {
                let arrived = self.shared.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                {
                    let mut received = self.shared.received.lock().unwrap();
                    if let Some(i) = received.iter().position(|r| r.id == id) {
                        return received.remove(i);
                    }
                }
                arrived.await;
            }
        };
        match tokio::time::timeout(within, wait).await {
            Ok(r) => r,
            Err(_) => panic!(
                "no message for {id} within {within:?}; refused: {:?}",
                self.refusals()
            ),
        }
    }

    /// Messages received and not yet taken.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Requests refused so far.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.shared.refused.lock().unwrap().clone()
    }

    /// Requests that reached the service, whatever the answer.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for PushService {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn push(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let refuse = |status: StatusCode, reason: String| {
        shared.refused.lock().unwrap().push(Refusal {
            id: id.clone(),
            status,
            reason: reason.clone(),
        });
        (status, reason).into_response()
    };
    let Some(subscriber) = shared.subscribers.lock().unwrap().get(&id).cloned() else {
        return refuse(StatusCode::NOT_FOUND, "no such subscription".into());
    };
    let told = shared.answers.lock().unwrap().get(&id).copied();
    if let Some(status) = told {
        // A redirect points back here: a sender that follows redirects
        // loops.
        let location = format!("{}/push/{id}", shared.origin);
        return (status, [(header::LOCATION, location)], "as told").into_response();
    }
    let claims = match check_vapid(&headers, &shared.origin, &subscriber.application_server_key) {
        Ok(claims) => claims,
        Err((status, reason)) => return refuse(status, reason),
    };
    if headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        != Some("aes128gcm")
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Content-Encoding must be aes128gcm".into(),
        );
    }
    let Some(ttl) = headers
        .get("ttl")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return refuse(StatusCode::BAD_REQUEST, "a TTL header is required".into());
    };
    if body.len() > 4096 {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} bytes", body.len()),
        );
    }
    let plaintext = match decrypt(&body, &subscriber.secret, &subscriber.auth) {
        Ok(p) => p,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, format!("decryption: {why}")),
    };
    let urgency = headers
        .get("urgency")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let n = {
        let mut received = shared.received.lock().unwrap();
        received.push(Received {
            id: id.clone(),
            plaintext,
            ttl,
            urgency,
            claims,
        });
        received.len()
    };
    shared.arrived.notify_waiters();
    (
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("{}/message/{id}/{n}", shared.origin),
        )],
    )
        .into_response()
}

/// RFC 8292 §3 and §4.2: the token's claims, or the status and reason to
/// refuse with.
fn check_vapid(
    headers: &HeaderMap,
    origin: &str,
    application_server_key: &[u8],
) -> Result<Value, (StatusCode, String)> {
    let forbidden = |why: &str| (StatusCode::FORBIDDEN, why.to_string());
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err((StatusCode::UNAUTHORIZED, "no Authorization".into()));
    };
    let Some(params) = value.strip_prefix("vapid ") else {
        return Err((StatusCode::UNAUTHORIZED, "not the vapid scheme".into()));
    };
    let (mut t, mut k) = (None, None);
    for param in params.split(',') {
        match param.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.trim()),
            Some(("k", v)) => k = Some(v.trim()),
            _ => return Err(forbidden("malformed vapid parameters")),
        }
    }
    let (Some(token), Some(k)) = (t, k) else {
        return Err(forbidden("vapid needs t and k"));
    };
    let key = URL_SAFE_NO_PAD
        .decode(k)
        .map_err(|_| forbidden("k is not base64url"))?;
    if key != application_server_key {
        return Err(forbidden(
            "k is not the subscription's application server key",
        ));
    }
    let verifying =
        VerifyingKey::from_sec1_bytes(&key).map_err(|_| forbidden("k is not a P-256 point"))?;

    let parts: Vec<&str> = token.split('.').collect();
    let [head, claims, signature] = parts[..] else {
        return Err(forbidden("the token is not a JWS in compact form"));
    };
    let head = decode_json(head).ok_or_else(|| forbidden("the JWT header"))?;
    if head["alg"] != "ES256" {
        return Err(forbidden("alg must be ES256"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|s| Signature::from_slice(&s).ok())
        .ok_or_else(|| forbidden("the signature is not 64 bytes of r and s"))?;
    let signed = &token[..token.rfind('.').unwrap_or(0)];
    verifying
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| forbidden("the signature does not verify against k"))?;

    let claims = decode_json(claims).ok_or_else(|| forbidden("the JWT claims"))?;
    if claims["aud"] != origin {
        return Err(forbidden(&format!("aud {} is not {origin}", claims["aud"])));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let Some(exp) = claims["exp"].as_u64() else {
        return Err(forbidden("exp is required"));
    };
    if exp <= now {
        return Err(forbidden("the token has expired"));
    }
    if exp > now + 24 * 60 * 60 {
        return Err(forbidden("exp is more than 24 hours ahead"));
    }
    match claims["sub"].as_str() {
        Some(s) if s.starts_with("mailto:") || s.starts_with("https:") => Ok(claims),
        _ => Err(forbidden("sub must be a mailto: or https: URL")),
    }
}

fn decode_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// A `vapid` Authorization header signed by `signer` with `claims`, naming
/// `k` as the key: for requests a broken or hostile sender would make.
pub fn vapid_header(signer: &SecretKey, k: &PublicKey, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature: Signature = SigningKey::from(signer).sign(signing_input.as_bytes());
    format!(
        "vapid t={signing_input}.{}, k={}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        URL_SAFE_NO_PAD.encode(k.to_encoded_point(false).as_bytes())
    )
}

/// Seconds since 1970, for `exp` claims.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// What a browser does with a push message's body (RFC 8291 §3.4 and
/// §4, RFC 8188 §2): one `aes128gcm` record keyed from ECDH between the
/// subscription's key and the sender's one-off key in the header, and the
/// auth secret.
pub fn decrypt(body: &[u8], ua_secret: &SecretKey, auth: &[u8; 16]) -> Result<Vec<u8>, String> {
    if body.len() < 21 {
        return Err("shorter than the header".into());
    }
    let (salt, rest) = body.split_at(16);
    let rs = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let idlen = rest[4] as usize;
    if idlen != 65 || rest.len() < 5 + idlen {
        return Err(format!("keyid of {idlen} bytes, not 65"));
    }
    let as_public = PublicKey::from_sec1_bytes(&rest[5..5 + idlen])
        .map_err(|_| "keyid is not a P-256 point".to_string())?;
    let record = &rest[5 + idlen..];
    if record.len() > rs || rs < 18 {
        return Err(format!("one record of {} bytes with rs {rs}", record.len()));
    }

    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_public.as_affine());
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_secret.public_key().to_encoded_point(false).as_bytes());
    key_info.extend_from_slice(as_public.to_encoded_point(false).as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .map_err(|e| e.to_string())?;
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|e| e.to_string())?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|e| e.to_string())?;

    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|e| e.to_string())?;
    let mut padded = cipher
        .decrypt((&nonce).into(), record)
        .map_err(|_| "the record does not authenticate".to_string())?;
    while padded.last() == Some(&0) {
        padded.pop();
    }
    match padded.pop() {
        Some(2) => Ok(padded),
        Some(d) => Err(format!("delimiter {d}, not 2 (the last record)")),
        None => Err("no delimiter".into()),
    }
}
