//! Web Push (RFC 8030): one message from the service to a browser's push
//! service, which wakes the browser's service worker even with the page
//! closed. This module owns the application server's VAPID key pair
//! (RFC 8292), the browser's push subscription, and [`send`], which
//! encrypts a message for one subscription (RFC 8291, `aes128gcm`), signs
//! the request and posts it.
//!
//! The encryption and the request's shape come from the `web-push-native`
//! crate. The VAPID token is signed here with `p256`'s ECDSA: the crate's
//! own leaves a non-default port out of the token's audience (RFC 8292
//! wants the origin of the push resource, port included) and ties the
//! token's lifetime to the message's TTL.
//!
//! What a failure means for the caller is in [`PushError`]: `Gone`, delete
//! the subscription; `Rejected`, give up on this message; `Transient`,
//! retry later with backoff. Nothing here retries or logs.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, StatusCode, header};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::{PublicKey, SecretKey};
use reqwest::Url;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use url::Host;

use crate::config::Secret;

/// The most plaintext one push message carries. A push service need not
/// accept more than 4096 bytes of body (RFC 8030 §7.2); the `aes128gcm`
/// header (86 bytes), the padding delimiter (1) and the AEAD tag (16) leave
/// 3993 (RFC 8291 §4).
pub const MAX_PAYLOAD: usize = 3993;

/// How long a VAPID token stays valid. RFC 8292 §2 allows at most 24 hours;
/// half that leaves room for a push service's clock running ahead.
pub const VAPID_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The longest endpoint URL a subscription may have (browsers' are a few
/// hundred characters).
pub const MAX_ENDPOINT_LEN: usize = 2048;

/// How much of a refusal's body is kept as its reason.
const REASON_LIMIT: usize = 512;

/// A decoding problem with a stored VAPID private key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the VAPID private key is not base64url")]
    NotBase64Url,
    #[error("the VAPID private key is {0} bytes, not 32")]
    Length(usize),
    #[error("the VAPID private key is not a valid P-256 scalar")]
    OutOfRange,
}

/// The application server's VAPID key pair (ECDSA on P-256). Its public key
/// is the `applicationServerKey` a page passes to `pushManager.subscribe`;
/// the push service then takes messages for that subscription only when
/// they are signed with the private key. `Debug` shows the public key only.
#[derive(Clone)]
pub struct VapidKeys {
    secret: SecretKey,
}

impl VapidKeys {
    /// A fresh key pair from the thread's CSPRNG.
    pub fn generate() -> Self {
        loop {
            let bytes: [u8; 32] = rand::random();
            // Fails only for zero or a value ≥ the group order (p < 2^-32).
            if let Ok(secret) = SecretKey::from_bytes(&bytes.into()) {
                return Self { secret };
            }
        }
    }

    /// The key pair back from its stored form ([`VapidKeys::to_private`]).
    /// Trailing `=` padding is accepted.
    pub fn from_private(stored: &str) -> Result<Self, KeyError> {
        let bytes = decode_b64url(stored).ok_or(KeyError::NotBase64Url)?;
        if bytes.len() != 32 {
            return Err(KeyError::Length(bytes.len()));
        }
        let secret = SecretKey::from_slice(&bytes).map_err(|_| KeyError::OutOfRange)?;
        Ok(Self { secret })
    }

    /// The form to store: the private scalar, 32 bytes in base64url without
    /// padding (as `web-push generate-vapid-keys` prints it, so a key pair
    /// moves between the two).
    pub fn to_private(&self) -> Secret {
        Secret::new(URL_SAFE_NO_PAD.encode(self.secret.to_bytes()))
    }

    /// The public key as a page's `applicationServerKey` wants it: the
    /// uncompressed point (65 bytes, `0x04 ‖ x ‖ y`) in base64url without
    /// padding. Also the `k` of the `Authorization` header.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key_bytes())
    }

    /// The public key's uncompressed point, 65 bytes.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        self.secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// A signed VAPID token (an ES256 JWT) for `endpoint`'s push service,
    /// issued at `now`.
    fn token(&self, subject: &VapidSubject, endpoint: &Url, now: SystemTime) -> String {
        #[derive(Serialize)]
        struct Claims<'a> {
            aud: String,
            exp: u64,
            sub: &'a str,
        }
        let issued = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let claims = Claims {
            aud: endpoint.origin().ascii_serialization(),
            exp: (issued + VAPID_TOKEN_LIFETIME).as_secs(),
            sub: &subject.0,
        };
        // Serialising a struct of strings and a number cannot fail.
        let claims = serde_json::to_vec(&claims).unwrap_or_default();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature: Signature = SigningKey::from(&self.secret).sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

impl fmt::Debug for VapidKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapidKeys")
            .field("public_key", &self.public_key())
            .field("private_key", &"***")
            .finish()
    }
}

/// A problem with a VAPID subject.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the VAPID subject must be a mailto: address or an https: URL without spaces")]
pub struct SubjectError;

/// Who runs the application server, for a push service's operator to
/// contact (RFC 8292 §2.1): `mailto:someone@example.org` or an `https:`
/// URL. Some push services refuse a subject with spaces or without a
/// scheme, so [`VapidSubject::parse`] does too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VapidSubject(String);

impl VapidSubject {
    /// A subject from configuration.
    pub fn parse(s: &str) -> Result<Self, SubjectError> {
        let s = s.trim();
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SubjectError);
        }
        let ok = if let Some(address) = s.strip_prefix("mailto:") {
            matches!(address.split_once('@'), Some((user, host)) if !user.is_empty() && !host.is_empty())
        } else {
            Url::parse(s)
                .map(|u| u.scheme() == "https" && u.host_str().is_some())
                .unwrap_or(false)
        };
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(SubjectError)
        }
    }

    /// The subject as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which endpoints a subscription may name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EndpointPolicy {
    /// `https` to a host name: every browser's push service. IP addresses,
    /// plain `http` and credentials in the URL are refused, so that a
    /// subscription cannot point the service at a machine on its own
    /// network by address.
    #[default]
    Public,
    /// [`EndpointPolicy::Public`], and also `http` or `https` to the
    /// loopback interface (`localhost`, `127.0.0.0/8`, `[::1]`): for tests
    /// and a push service run on the same machine. Not for production.
    AllowLoopback,
}

/// What is wrong with a push subscription.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscriptionError {
    #[error("the endpoint is not a URL")]
    EndpointNotUrl,
    #[error("the endpoint is longer than {MAX_ENDPOINT_LEN} characters")]
    EndpointTooLong,
    #[error("the endpoint must be https to a host name (got {0})")]
    EndpointNotAllowed(&'static str),
    #[error("keys.p256dh is not base64url")]
    P256dhNotBase64Url,
    #[error("keys.p256dh must be an uncompressed P-256 point of 65 bytes (got {0} bytes)")]
    P256dhLength(usize),
    #[error("keys.p256dh is not a point on P-256")]
    P256dhNotOnCurve,
    #[error("keys.auth is not base64url")]
    AuthNotBase64Url,
    #[error("keys.auth must be 16 bytes (got {0})")]
    AuthLength(usize),
}

/// A browser's push subscription as `PushSubscription.toJSON()` gives it:
/// `{"endpoint": …, "keys": {"p256dh": …, "auth": …}}` (`expirationTime`
/// and other members are ignored). The wire form of [`PushSubscription`].
#[derive(Clone, Serialize, Deserialize)]
pub struct PushSubscriptionJson {
    pub endpoint: String,
    pub keys: PushSubscriptionKeys,
}

/// The `keys` member of [`PushSubscriptionJson`], base64url.
#[derive(Clone, Serialize, Deserialize)]
pub struct PushSubscriptionKeys {
    pub p256dh: String,
    pub auth: String,
}

/// Where a browser's push service takes messages for one subscription, and
/// the keys to encrypt them with. Built only through
/// [`PushSubscription::parse`]; serde reads and writes the
/// [`PushSubscriptionJson`] shape and checks with
/// [`EndpointPolicy::Public`]. `Debug` shows the endpoint's origin only:
/// the endpoint's path and the auth secret are capabilities.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PushSubscriptionJson", into = "PushSubscriptionJson")]
pub struct PushSubscription {
    endpoint: Url,
    p256dh: PublicKey,
    auth: [u8; 16],
}

impl PushSubscription {
    /// Checks a subscription: the endpoint against `policy`, `p256dh` a
    /// P-256 point in uncompressed form (65 bytes), `auth` 16 bytes, both
    /// base64url (padding optional).
    pub fn parse(
        json: &PushSubscriptionJson,
        policy: EndpointPolicy,
    ) -> Result<Self, SubscriptionError> {
        let endpoint = parse_endpoint(&json.endpoint, policy)?;
        let p256dh =
            decode_b64url(&json.keys.p256dh).ok_or(SubscriptionError::P256dhNotBase64Url)?;
        if p256dh.len() != 65 || p256dh[0] != 0x04 {
            return Err(SubscriptionError::P256dhLength(p256dh.len()));
        }
        let p256dh =
            PublicKey::from_sec1_bytes(&p256dh).map_err(|_| SubscriptionError::P256dhNotOnCurve)?;
        let auth = decode_b64url(&json.keys.auth).ok_or(SubscriptionError::AuthNotBase64Url)?;
        let auth: [u8; 16] = auth
            .as_slice()
            .try_into()
            .map_err(|_| SubscriptionError::AuthLength(auth.len()))?;
        Ok(Self {
            endpoint,
            p256dh,
            auth,
        })
    }

    /// The push resource messages are posted to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The wire form, for storing.
    pub fn to_json(&self) -> PushSubscriptionJson {
        PushSubscriptionJson {
            endpoint: self.endpoint.to_string(),
            keys: PushSubscriptionKeys {
                p256dh: URL_SAFE_NO_PAD.encode(self.p256dh.to_encoded_point(false).as_bytes()),
                auth: URL_SAFE_NO_PAD.encode(self.auth),
            },
        }
    }
}

impl TryFrom<PushSubscriptionJson> for PushSubscription {
    type Error = SubscriptionError;

    fn try_from(json: PushSubscriptionJson) -> Result<Self, Self::Error> {
        Self::parse(&json, EndpointPolicy::Public)
    }
}

impl From<PushSubscription> for PushSubscriptionJson {
    fn from(sub: PushSubscription) -> Self {
        sub.to_json()
    }
}

impl fmt::Debug for PushSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushSubscription")
            .field("endpoint", &self.endpoint.origin().ascii_serialization())
            .finish_non_exhaustive()
    }
}

fn parse_endpoint(s: &str, policy: EndpointPolicy) -> Result<Url, SubscriptionError> {
    if s.len() > MAX_ENDPOINT_LEN {
        return Err(SubscriptionError::EndpointTooLong);
    }
    let url = Url::parse(s).map_err(|_| SubscriptionError::EndpointNotUrl)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SubscriptionError::EndpointNotAllowed(
            "credentials in the URL",
        ));
    }
    let loopback = match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => return Err(SubscriptionError::EndpointNotAllowed("no host")),
    };
    if loopback {
        return match policy {
            EndpointPolicy::AllowLoopback if matches!(url.scheme(), "http" | "https") => Ok(url),
            EndpointPolicy::AllowLoopback => Err(SubscriptionError::EndpointNotAllowed(
                "a scheme other than http or https",
            )),
            EndpointPolicy::Public => Err(SubscriptionError::EndpointNotAllowed("loopback")),
        };
    }
    if url.scheme() != "https" {
        return Err(SubscriptionError::EndpointNotAllowed(
            "a scheme other than https",
        ));
    }
    match url.host() {
        Some(Host::Domain(_)) => Ok(url),
        _ => Err(SubscriptionError::EndpointNotAllowed("an IP address")),
    }
}

/// How soon the browser should be woken for a message (RFC 8030 §5.3); a
/// phone in power saving may hold back anything below `High`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Urgency {
    VeryLow,
    Low,
    #[default]
    Normal,
    High,
}

impl Urgency {
    /// The `Urgency` header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VeryLow => "very-low",
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }
}

/// The push service took the message (it answers 201 Created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub status: StatusCode,
    /// The push message resource (`Location`), if the service named one.
    pub location: Option<String>,
}

/// Why a message did not reach the push service.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Nothing was sent: the message is over [`MAX_PAYLOAD`].
    #[error("a push message carries at most {MAX_PAYLOAD} bytes, this one is {len}")]
    PayloadTooLarge { len: usize },
    /// Nothing was sent: the message is empty. (The encryption would
    /// declare a record size of 17, below RFC 8188's minimum of 18, which
    /// a browser may refuse; an empty message has no use here.)
    #[error("a push message must not be empty")]
    PayloadEmpty,
    /// The subscription has expired or was cancelled (404 or 410): delete
    /// it, it will never work again.
    #[error("the push subscription is gone ({0})")]
    Gone(StatusCode),
    /// Refused for good (another 4xx, or a redirect): a bad VAPID token or
    /// key (401, 403), a malformed or oversized request (400, 413). Sending
    /// the same message again will not help. `reason` is the start of the
    /// service's explanation.
    #[error("the push service refused the message ({status}): {reason}")]
    Rejected { status: StatusCode, reason: String },
    /// Try again later, with backoff.
    #[error("the push service could not take the message now: {0}")]
    Transient(#[from] Transient),
    /// The request could not be built (encryption or the endpoint's form);
    /// a bug or a corrupt stored subscription, not worth retrying.
    #[error("the push request could not be built: {0}")]
    Build(String),
}

/// A failure worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum Transient {
    /// 5xx, 429 Too Many Requests or 408 Request Timeout; `retry_after` if
    /// the service said how long to wait (in seconds).
    #[error("status {status}")]
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, TLS, timeout. The endpoint's
    /// URL is left out of the error.
    #[error("network: {0}")]
    Network(#[source] reqwest::Error),
}

impl PushError {
    /// Worth trying again later?
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    /// How long the push service asked the caller to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient(Transient::Status { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }
}

/// A client fit for [`send`]: `timeout` for a whole request, and no
/// redirects (a push service does not redirect, and following one would
/// turn the POST into a GET without the message).
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("onepress/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends `payload` to one subscription: encrypted for it (RFC 8291), with a
/// VAPID token for its push service signed by `keys` and naming `subject`,
/// kept by the push service for at most `ttl` (whole seconds) while the
/// browser is unreachable, and delivered with `urgency`. Use a client
/// without redirects, such as [`client`]'s. A payload that is empty or
/// over [`MAX_PAYLOAD`] fails before anything is sent.
pub async fn send(
    client: &reqwest::Client,
    keys: &VapidKeys,
    subject: &VapidSubject,
    sub: &PushSubscription,
    payload: &[u8],
    ttl: Duration,
    urgency: Urgency,
) -> Result<Delivered, PushError> {
    let request = build_request(keys, subject, sub, payload, ttl, urgency, SystemTime::now())?;
    let request = reqwest::Request::try_from(request)
        .map_err(|e| PushError::Build(e.without_url().to_string()))?;
    let response = client
        .execute(request)
        .await
        .map_err(|e| Transient::Network(e.without_url()))?;
    outcome(response).await
}

/// The encrypted, signed POST for one message, as `http` sees it.
fn build_request(
    keys: &VapidKeys,
    subject: &VapidSubject,
    sub: &PushSubscription,
    payload: &[u8],
    ttl: Duration,
    urgency: Urgency,
    now: SystemTime,
) -> Result<http::Request<Vec<u8>>, PushError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(PushError::PayloadTooLarge { len: payload.len() });
    }
    if payload.is_empty() {
        return Err(PushError::PayloadEmpty);
    }
    let uri: http::Uri = sub
        .endpoint
        .as_str()
        .parse()
        .map_err(|e| PushError::Build(format!("endpoint: {e}")))?;
    let mut request = web_push_native::WebPushBuilder::new(uri, sub.p256dh, sub.auth.into())
        .with_valid_duration(ttl)
        .build(payload)
        .map_err(|e| PushError::Build(e.to_string()))?;
    let authorization = format!(
        "vapid t={}, k={}",
        keys.token(subject, &sub.endpoint, now),
        keys.public_key()
    );
    let headers = request.headers_mut();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::try_from(authorization).map_err(|e| PushError::Build(e.to_string()))?,
    );
    headers.insert("urgency", HeaderValue::from_static(urgency.as_str()));
    Ok(request)
}

/// What the push service's answer means (RFC 8030 §5, §6.2, §8.3).
async fn outcome(mut response: reqwest::Response) -> Result<Delivered, PushError> {
    let status = response.status();
    if status.is_success() {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        return Ok(Delivered { status, location });
    }
    match status {
        StatusCode::NOT_FOUND | StatusCode::GONE => Err(PushError::Gone(status)),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
            Err(transient(status, response.headers()))
        }
        s if s.is_server_error() => Err(transient(status, response.headers())),
        _ => {
            let mut body = Vec::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                body.extend_from_slice(&chunk);
                if body.len() >= REASON_LIMIT {
                    body.truncate(REASON_LIMIT);
                    break;
                }
            }
            let reason = String::from_utf8_lossy(&body).trim().to_string();
            Err(PushError::Rejected { status, reason })
        }
    }
}

fn transient(status: StatusCode, headers: &HeaderMap) -> PushError {
    let retry_after = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    PushError::Transient(Transient::Status {
        status,
        retry_after,
    })
}

/// base64url with or without `=` padding.
fn decode_b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier as _;
    use serde_json::{Value, json};

    /// A browser's side of a subscription: its key pair and auth secret.
    struct Browser {
        secret: SecretKey,
        auth: [u8; 16],
    }

    impl Browser {
        fn new() -> Self {
            Self {
                secret: VapidKeys::generate().secret,
                auth: rand::random(),
            }
        }

        fn subscription(&self, endpoint: &str) -> PushSubscription {
            let json = PushSubscriptionJson {
                endpoint: endpoint.into(),
                keys: PushSubscriptionKeys {
                    p256dh: URL_SAFE_NO_PAD
                        .encode(self.secret.public_key().to_encoded_point(false).as_bytes()),
                    auth: URL_SAFE_NO_PAD.encode(self.auth),
                },
            };
            PushSubscription::parse(&json, EndpointPolicy::AllowLoopback).expect("valid")
        }

        fn decrypt(&self, body: Vec<u8>) -> Vec<u8> {
            web_push_native::decrypt(body, &self.secret, &self.auth.into()).expect("decrypts")
        }
    }

    fn subject() -> VapidSubject {
        VapidSubject::parse("mailto:ops@example.org").expect("valid")
    }

    fn request(
        keys: &VapidKeys,
        sub: &PushSubscription,
        payload: &[u8],
        now: SystemTime,
    ) -> Result<http::Request<Vec<u8>>, PushError> {
        build_request(
            keys,
            &subject(),
            sub,
            payload,
            Duration::from_secs(180),
            Urgency::High,
            now,
        )
    }

    /// The `t` and `k` of a `vapid` Authorization header.
    fn vapid_parts(req: &http::Request<Vec<u8>>) -> (String, String) {
        let value = req.headers()[header::AUTHORIZATION]
            .to_str()
            .expect("ascii");
        let rest = value.strip_prefix("vapid ").expect("vapid scheme");
        let mut t = None;
        let mut k = None;
        for part in rest.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = Some(v.to_string()),
                Some(("k", v)) => k = Some(v.to_string()),
                _ => panic!("unexpected part {part}"),
            }
        }
        (t.expect("t"), k.expect("k"))
    }

    fn b64json(s: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url")).expect("json")
    }

    #[test]
    fn a_message_decrypts_to_its_payload_with_the_browsers_keys() {
        let browser = Browser::new();
        let sub = browser.subscription("https://push.example.net/wpush/v2/abc");
        let payload = br#"{"type":"offer","alert_id":"a1"}"#;
        let req = request(&VapidKeys::generate(), &sub, payload, SystemTime::now()).expect("built");

        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri(), "https://push.example.net/wpush/v2/abc");
        assert_eq!(req.headers()["content-encoding"], "aes128gcm");
        assert_eq!(req.headers()["ttl"], "180");
        assert_eq!(req.headers()["urgency"], "high");
        assert_ne!(req.body().as_slice(), payload.as_slice());
        assert_eq!(browser.decrypt(req.into_body()), payload);
    }

    #[test]
    fn each_message_is_encrypted_afresh() {
        let browser = Browser::new();
        let sub = browser.subscription("https://push.example.net/x");
        let keys = VapidKeys::generate();
        let a = request(&keys, &sub, b"same", SystemTime::now()).expect("built");
        let b = request(&keys, &sub, b"same", SystemTime::now()).expect("built");
        assert_ne!(a.body(), b.body());
    }

    #[test]
    fn the_largest_payload_fills_exactly_4096_bytes_and_one_more_or_none_is_refused() {
        let browser = Browser::new();
        let sub = browser.subscription("https://push.example.net/x");
        let keys = VapidKeys::generate();
        let payload = vec![b'x'; MAX_PAYLOAD];
        let req = request(&keys, &sub, &payload, SystemTime::now()).expect("built");
        assert_eq!(req.body().len(), 4096);
        assert_eq!(browser.decrypt(req.into_body()), payload);

        let err = request(&keys, &sub, &vec![b'x'; MAX_PAYLOAD + 1], SystemTime::now())
            .expect_err("too large");
        assert!(matches!(err, PushError::PayloadTooLarge { len } if len == MAX_PAYLOAD + 1));
        assert!(err.to_string().contains("3993"), "{err}");

        let err = request(&keys, &sub, b"", SystemTime::now()).expect_err("empty");
        assert!(matches!(err, PushError::PayloadEmpty), "{err:?}");
    }

    #[test]
    fn the_vapid_token_names_the_push_services_origin_expires_within_a_day_and_is_signed() {
        let keys = VapidKeys::generate();
        let sub = Browser::new().subscription("https://fcm.googleapis.com/fcm/send/abc?x=1");
        let now = SystemTime::now();
        let req = request(&keys, &sub, b"hi", now).expect("built");
        let (t, k) = vapid_parts(&req);
        assert_eq!(k, keys.public_key());

        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let head = b64json(parts[0]);
        assert_eq!(head["alg"], "ES256");
        assert_eq!(head["typ"], "JWT");
        let claims = b64json(parts[1]);
        assert_eq!(claims["aud"], "https://fcm.googleapis.com");
        assert_eq!(claims["sub"], "mailto:ops@example.org");
        let now_s = now
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let exp = claims["exp"].as_u64().expect("exp is a number");
        assert!(
            exp > now_s && exp <= now_s + 24 * 3600,
            "exp {exp}, now {now_s}"
        );

        let verifying = VerifyingKey::from_sec1_bytes(&URL_SAFE_NO_PAD.decode(&k).expect("k"))
            .expect("k is a point");
        let signature =
            Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("sig")).expect("r‖s");
        let signed = format!("{}.{}", parts[0], parts[1]);
        verifying
            .verify(signed.as_bytes(), &signature)
            .expect("signature verifies");
        assert!(
            verifying.verify(b"something else", &signature).is_err(),
            "the check can fail"
        );
    }

    #[test]
    fn the_audience_keeps_a_non_default_port_and_drops_the_default_one() {
        let keys = VapidKeys::generate();
        for (endpoint, aud) in [
            ("http://127.0.0.1:40123/push/7", "http://127.0.0.1:40123"),
            (
                "https://push.example.net:8443/p",
                "https://push.example.net:8443",
            ),
            ("https://push.example.net:443/p", "https://push.example.net"),
        ] {
            let sub = Browser::new().subscription(endpoint);
            let req = request(&keys, &sub, b"-", SystemTime::now()).expect("built");
            let (t, _) = vapid_parts(&req);
            let claims = b64json(t.split('.').nth(1).expect("claims"));
            assert_eq!(claims["aud"], aud, "{endpoint}");
        }
    }

    #[test]
    fn vapid_keys_survive_their_stored_form() {
        let keys = VapidKeys::generate();
        let stored = keys.to_private();
        assert_eq!(stored.expose().len(), 43);
        let back = VapidKeys::from_private(stored.expose()).expect("round trip");
        assert_eq!(back.public_key(), keys.public_key());
        let padded = format!("{}=", stored.expose());
        assert_eq!(
            VapidKeys::from_private(&padded)
                .expect("padding is fine")
                .public_key(),
            keys.public_key()
        );
        assert_ne!(
            VapidKeys::generate().public_key(),
            keys.public_key(),
            "fresh keys"
        );

        let public = URL_SAFE_NO_PAD
            .decode(keys.public_key())
            .expect("base64url");
        assert_eq!(public.len(), 65);
        assert_eq!(public[0], 0x04);
        assert_eq!(public, keys.public_key_bytes());
    }

    #[test]
    fn a_stored_key_gives_its_known_public_key() {
        // The user agent's key pair of RFC 8291, Appendix A.
        let keys =
            VapidKeys::from_private("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94").expect("valid");
        assert_eq!(
            keys.public_key(),
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
        );
    }

    #[test]
    fn a_stored_key_that_is_not_one_is_refused() {
        assert_eq!(
            VapidKeys::from_private("not base64!").unwrap_err(),
            KeyError::NotBase64Url
        );
        assert_eq!(
            VapidKeys::from_private(&URL_SAFE_NO_PAD.encode([7u8; 31])).unwrap_err(),
            KeyError::Length(31)
        );
        assert_eq!(
            VapidKeys::from_private(&URL_SAFE_NO_PAD.encode([0u8; 32])).unwrap_err(),
            KeyError::OutOfRange
        );
        assert_eq!(
            VapidKeys::from_private(&URL_SAFE_NO_PAD.encode([0xffu8; 32])).unwrap_err(),
            KeyError::OutOfRange
        );
    }

    #[test]
    fn debug_never_shows_the_private_key_or_the_auth_secret() {
        let keys = VapidKeys::generate();
        let shown = format!("{keys:?}");
        assert!(!shown.contains(keys.to_private().expose()), "{shown}");
        assert!(shown.contains(&keys.public_key()), "{shown}");

        let browser = Browser::new();
        let sub = browser.subscription("https://push.example.net/secret-path");
        let shown = format!("{sub:?}");
        assert!(!shown.contains("secret-path"), "{shown}");
        assert!(
            !shown.contains(&URL_SAFE_NO_PAD.encode(browser.auth)),
            "{shown}"
        );
        assert!(shown.contains("https://push.example.net"), "{shown}");
    }

    fn browser_json(endpoint: &str) -> Value {
        let browser = Browser::new();
        json!({
            "endpoint": endpoint,
            "expirationTime": null,
            "keys": {
                "p256dh": URL_SAFE_NO_PAD.encode(browser.secret.public_key().to_encoded_point(false).as_bytes()),
                "auth": URL_SAFE_NO_PAD.encode(browser.auth),
            }
        })
    }

    #[test]
    fn a_subscription_reads_and_writes_the_browsers_json() {
        let json = browser_json("https://updates.push.services.mozilla.com/wpush/v2/gAAA");
        let sub: PushSubscription = serde_json::from_value(json.clone()).expect("valid");
        assert_eq!(
            sub.endpoint().as_str(),
            "https://updates.push.services.mozilla.com/wpush/v2/gAAA"
        );
        let back = serde_json::to_value(&sub).expect("serialises");
        assert_eq!(back["endpoint"], json["endpoint"]);
        assert_eq!(back["keys"], json["keys"]);
        let again: PushSubscription = serde_json::from_value(back).expect("valid");
        assert_eq!(again, sub);
    }

    fn parse(json: Value, policy: EndpointPolicy) -> Result<PushSubscription, SubscriptionError> {
        let json: PushSubscriptionJson = serde_json::from_value(json).expect("shape");
        PushSubscription::parse(&json, policy)
    }

    #[test]
    fn endpoints_must_be_https_to_a_host_name() {
        use EndpointPolicy::*;
        use SubscriptionError::*;
        for (endpoint, policy, want) in [
            ("https://fcm.googleapis.com/fcm/send/x", Public, Ok(())),
            ("https://web.push.apple.com/QGx", Public, Ok(())),
            (
                "http://fcm.googleapis.com/fcm/send/x",
                Public,
                Err(EndpointNotAllowed("a scheme other than https")),
            ),
            (
                "http://push.example.net/x",
                AllowLoopback,
                Err(EndpointNotAllowed("a scheme other than https")),
            ),
            (
                "ftp://push.example.net/x",
                Public,
                Err(EndpointNotAllowed("a scheme other than https")),
            ),
            (
                "https://10.0.0.1/x",
                Public,
                Err(EndpointNotAllowed("an IP address")),
            ),
            (
                "https://[2001:db8::1]/x",
                AllowLoopback,
                Err(EndpointNotAllowed("an IP address")),
            ),
            (
                "https://user:pw@push.example.net/x",
                Public,
                Err(EndpointNotAllowed("credentials in the URL")),
            ),
            (
                "http://127.0.0.1:4000/push/1",
                Public,
                Err(EndpointNotAllowed("loopback")),
            ),
            (
                "https://localhost/push/1",
                Public,
                Err(EndpointNotAllowed("loopback")),
            ),
            ("http://127.0.0.1:4000/push/1", AllowLoopback, Ok(())),
            ("http://127.8.0.1:4000/push/1", AllowLoopback, Ok(())),
            ("http://localhost:4000/push/1", AllowLoopback, Ok(())),
            ("http://[::1]:4000/push/1", AllowLoopback, Ok(())),
            (
                "ws://localhost:4000/push/1",
                AllowLoopback,
                Err(EndpointNotAllowed("a scheme other than http or https")),
            ),
            (
                "mailto:x@example.org",
                AllowLoopback,
                Err(EndpointNotAllowed("no host")),
            ),
            ("push.example.net/x", Public, Err(EndpointNotUrl)),
            ("", Public, Err(EndpointNotUrl)),
        ] {
            let got = parse(browser_json(endpoint), policy).map(|_| ());
            assert_eq!(got, want, "{endpoint} under {policy:?}");
        }
        let long = format!("https://push.example.net/{}", "a".repeat(MAX_ENDPOINT_LEN));
        assert_eq!(
            parse(browser_json(&long), Public).unwrap_err(),
            EndpointTooLong
        );
    }

    #[test]
    fn serde_checks_endpoints_as_public() {
        let err = serde_json::from_value::<PushSubscription>(browser_json("http://127.0.0.1:1/x"))
            .expect_err("loopback refused");
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn keys_must_be_a_p256_point_and_a_16_byte_secret() {
        use SubscriptionError::*;
        let with = |p256dh: String, auth: String| {
            let mut json = browser_json("https://push.example.net/x");
            json["keys"] = json!({ "p256dh": p256dh, "auth": auth });
            parse(json, EndpointPolicy::Public).map(|_| ())
        };
        let browser = Browser::new();
        let point = browser.secret.public_key().to_encoded_point(false);
        let p256dh = URL_SAFE_NO_PAD.encode(point.as_bytes());
        let auth = URL_SAFE_NO_PAD.encode(browser.auth);

        assert_eq!(with(p256dh.clone(), auth.clone()), Ok(()));
        assert_eq!(with(format!("{p256dh}="), format!("{auth}==")), Ok(()));
        let compressed = browser.secret.public_key().to_encoded_point(true);
        assert_eq!(
            with(URL_SAFE_NO_PAD.encode(compressed.as_bytes()), auth.clone()),
            Err(P256dhLength(33))
        );
        let mut off_curve = point.as_bytes().to_vec();
        off_curve[64] ^= 1;
        assert_eq!(
            with(URL_SAFE_NO_PAD.encode(&off_curve), auth.clone()),
            Err(P256dhNotOnCurve)
        );
        let mut not_uncompressed = point.as_bytes().to_vec();
        not_uncompressed[0] = 0x05;
        assert_eq!(
            with(URL_SAFE_NO_PAD.encode(&not_uncompressed), auth.clone()),
            Err(P256dhLength(65))
        );
        assert_eq!(
            with("p256dh!".into(), auth.clone()),
            Err(P256dhNotBase64Url)
        );
        assert_eq!(
            with(p256dh.clone(), URL_SAFE_NO_PAD.encode([1u8; 15])),
            Err(AuthLength(15))
        );
        assert_eq!(
            with(p256dh.clone(), URL_SAFE_NO_PAD.encode([1u8; 17])),
            Err(AuthLength(17))
        );
        assert_eq!(with(p256dh, "a+b/".into()), Err(AuthNotBase64Url));
    }

    #[test]
    fn subjects_are_mailto_or_https() {
        for ok in [
            "mailto:ops@example.org",
            "https://onepress.example.org/contact",
            " mailto:a@b ",
        ] {
            assert!(VapidSubject::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ops@example.org",
            "mailto:",
            "mailto:@example.org",
            "mailto: ops@example.org",
            "http://onepress.example.org",
            "https://",
            "tel:+4912345",
        ] {
            assert_eq!(VapidSubject::parse(bad), Err(SubjectError), "{bad}");
        }
    }

    async fn answer(
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Delivered, PushError> {
        let mut response = http::Response::builder().status(status);
        for (k, v) in headers {
            response = response.header(*k, *v);
        }
        let response = response.body(body.to_string()).expect("response");
        outcome(reqwest::Response::from(response)).await
    }

    #[tokio::test]
    async fn answers_sort_into_delivered_gone_rejected_and_transient() {
        let ok = answer(201, &[("location", "https://push.example.net/m/1")], "")
            .await
            .expect("delivered");
        assert_eq!(ok.status, StatusCode::CREATED);
        assert_eq!(ok.location.as_deref(), Some("https://push.example.net/m/1"));

        for s in [404, 410] {
            assert!(matches!(answer(s, &[], "").await, Err(PushError::Gone(g)) if g.as_u16() == s));
        }
        for s in [301, 400, 401, 403, 413] {
            let err = answer(s, &[], "  bad token  ").await.expect_err("rejected");
            assert!(!err.is_transient());
            match err {
                PushError::Rejected { status, reason } => {
                    assert_eq!(status.as_u16(), s);
                    assert_eq!(reason, "bad token");
                }
                other => panic!("{s}: {other:?}"),
            }
        }
        let long = "x".repeat(5000);
        match answer(400, &[], &long).await {
            Err(PushError::Rejected { reason, .. }) => assert_eq!(reason.len(), REASON_LIMIT),
            other => panic!("{other:?}"),
        }
        for s in [408, 429, 500, 502, 503] {
            let err = answer(s, &[], "").await.expect_err("transient");
            assert!(err.is_transient(), "{s}");
            assert_eq!(err.retry_after(), None);
        }
        let err = answer(429, &[("retry-after", "30")], "")
            .await
            .expect_err("transient");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    }
}
