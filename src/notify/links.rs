//! Signed action links: a URL that accepts or declines one offer for one
//! volunteer, without their token, until the offer expires. ntfy's action
//! buttons call it from the phone's notification (they can carry no secret
//! of the volunteer's). The signature is HMAC-SHA256, under a key generated
//! on the service's first start and kept in the store, over the alert, the
//! volunteer, the action and the expiry; the link is good for nothing else.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{AlertId, VolunteerId};

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    Accept,
    Decline,
}

impl LinkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAction::Accept => "accept",
            LinkAction::Decline => "decline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accept" => Some(LinkAction::Accept),
            "decline" => Some(LinkAction::Decline),
            _ => None,
        }
    }
}

/// The key links are signed with.
#[derive(Clone)]
pub struct LinkKey(String);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(…)")
    }
}

impl LinkKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// A fresh random key (hex), for the first start.
    pub fn generate() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    fn mac(&self, alert: &str, volunteer: &str, action: LinkAction, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for part in [alert, volunteer, action.as_str(), &expires.to_string()] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    /// The signature of a link (hex).
    pub fn sign(
        &self,
        alert: &AlertId,
        volunteer: &VolunteerId,
        action: LinkAction,
        expires: i64,
    ) -> String {
        hex::encode(
            self.mac(alert.as_str(), volunteer.as_str(), action, expires)
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `signature` is this key's for these, in constant time.
    pub fn verify(
        &self,
        alert: &str,
        volunteer: &str,
        action: LinkAction,
        expires: i64,
        signature: &str,
    ) -> bool {
        let Ok(bytes) = hex::decode(signature) else {
            return false;
        };
        self.mac(alert, volunteer, action, expires)
            .verify_slice(&bytes)
            .is_ok()
    }

    /// The link, under the service's public address `base`.
    pub fn url(
        &self,
        base: &str,
        alert: &AlertId,
        volunteer: &VolunteerId,
        action: LinkAction,
        expires: i64,
    ) -> String {
        format!(
            "{}/v1/offers/{alert}/{}?volunteer={volunteer}&expires={expires}&sig={}",
            base.trim_end_matches('/'),
            action.as_str(),
            self.sign(alert, volunteer, action, expires)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_good_for_its_alert_volunteer_action_and_expiry_only() {
        let key = LinkKey::new("k");
        let (a, v) = (
            AlertId::parse("a-1").unwrap(),
            VolunteerId::parse("v-1").unwrap(),
        );
        let sig = key.sign(&a, &v, LinkAction::Accept, 100);
        assert!(key.verify("a-1", "v-1", LinkAction::Accept, 100, &sig));
        assert!(!key.verify("a-2", "v-1", LinkAction::Accept, 100, &sig));
        assert!(!key.verify("a-1", "v-2", LinkAction::Accept, 100, &sig));
        assert!(!key.verify("a-1", "v-1", LinkAction::Decline, 100, &sig));
        assert!(!key.verify("a-1", "v-1", LinkAction::Accept, 101, &sig));
        assert!(!LinkKey::new("other").verify("a-1", "v-1", LinkAction::Accept, 100, &sig));
        assert!(!key.verify("a-1", "v-1", LinkAction::Accept, 100, "zz"));
        // The separator keeps parts from sliding into each other.
        let b = AlertId::parse("a-1v").unwrap();
        let w = VolunteerId::parse("-1").unwrap();
        assert_ne!(sig, key.sign(&b, &w, LinkAction::Accept, 100));
        assert_eq!(
            key.url("https://x.example/", &a, &v, LinkAction::Decline, 7),
            format!(
                "https://x.example/v1/offers/a-1/decline?volunteer=v-1&expires=7&sig={}",
                key.sign(&a, &v, LinkAction::Decline, 7)
            )
        );
    }
}
