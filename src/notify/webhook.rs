//! The signed webhook channel: a notification POSTed as JSON to one URL
//! (an SMS or voice gateway, a chat bridge), signed with HMAC-SHA256 so
//! the receiver can tell it came from this service and was not replayed.
//!
//! Headers: `X-Onepress-Delivery` (the notification's id, the same on every
//! retry), `X-Onepress-Event`, `X-Onepress-Timestamp` (Unix seconds) and
//! `X-Onepress-Signature: sha256=<hex>` over `<timestamp>.<body>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// Where and with which key.
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Secret,
}

/// Why a delivery did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth another try later: a network error, a timeout, 5xx, 408, 429.
    #[error("{0}")]
    Transient(String),
    /// Would fail again: the receiver refused it (another 4xx).
    #[error("{0}")]
    Permanent(String),
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    /// POSTs `body` (JSON) for the notification `id` about `event`.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        id: &str,
        event: &str,
        body: &serde_json::Value,
        timestamp: i64,
    ) -> Result<(), SendError> {
        let bytes = serde_json::to_vec(body).map_err(|e| SendError::Permanent(e.to_string()))?;
        let signature = sign(self.secret.expose(), timestamp, &bytes);
        let response = client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Onepress-Delivery", id)
            .header("X-Onepress-Event", event)
            .header("X-Onepress-Timestamp", timestamp.to_string())
            .header("X-Onepress-Signature", signature)
            .body(bytes)
            .send()
            .await
            .map_err(|e| SendError::Transient(e.to_string()))?;
        outcome(response.status())
    }
}

/// How an HTTP channel's answer counts: 2xx delivered; 408, 429 and 5xx
/// worth another try; any other answer refused for good.
pub fn outcome(status: reqwest::StatusCode) -> Result<(), SendError> {
    if status.is_success() {
        Ok(())
    } else if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
        Err(SendError::Transient(format!("answered {status}")))
    } else {
        Err(SendError::Permanent(format!("answered {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac key
        let got = sign("key", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            got,
            "sha256=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
        // Any change to the key, the time or the body changes it.
        assert_ne!(got, sign("key2", 1_700_000_000, br#"{"a":1}"#));
        assert_ne!(got, sign("key", 1_700_000_001, br#"{"a":1}"#));
        assert_ne!(got, sign("key", 1_700_000_000, br#"{"a":2}"#));
    }
}
