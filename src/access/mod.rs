//! Broker access: who may connect to the MQTT broker and what each may do.
//!
//! [`rule`] is the one rule (pure); [`secret`] makes and checks secrets;
//! [`mosquitto`] renders the rule and the registry into Mosquitto's
//! password and ACL files. [`AccessControl`] puts them together with the
//! store: it checks a login (a band's secret, a volunteer's token, a
//! gateway's secret, the admin login of the settings, the service's own
//! login) and tells whoever listens when a credential changes, so that a
//! live connection made with the old one is cut at once. It is used by the
//! embedded broker's hooks, the HTTP broker hooks and the Mosquitto file
//! writer; it never touches a connection itself.

pub mod mosquitto;
pub mod rule;
pub mod secret;

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

pub use rule::{Action, Principal, allowed, client_id_allowed};

use crate::config::Secret;
use crate::domain::registry::{Credential, PrincipalKind};
use crate::domain::{DeviceId, GatewayId, VolunteerId};
use crate::store::{Store, StoreError};

/// A login the settings define (the admin, the service itself).
#[derive(Debug, Clone)]
pub struct SettingsLogin {
    pub username: String,
    pub password: Secret,
}

/// Why a connection is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Unknown user, wrong or missing password (CONNACK "bad user name or
    /// password").
    #[error("bad user name or password")]
    BadCredentials,
    /// Good credentials, but not for this (CONNACK "not authorized"): a
    /// client id that is not the login's own, a will aimed elsewhere.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// The registry cannot be read now (CONNACK "server unavailable").
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for Denied {
    fn from(e: StoreError) -> Self {
        Denied::Unavailable(e.to_string())
    }
}

/// The service's logins and the registry's, checked against the rule.
pub struct AccessControl {
    store: Arc<dyn Store>,
    admin: Option<SettingsLogin>,
    service: Option<SettingsLogin>,
    service_client_ids: Vec<String>,
    listeners: Mutex<Vec<mpsc::UnboundedSender<String>>>,
}

impl AccessControl {
    /// `service` is the service's own login at the broker (None when the
    /// broker lets it in another way); `service_client_ids` the client ids
    /// only the service may use.
    pub fn new(
        store: Arc<dyn Store>,
        admin: Option<SettingsLogin>,
        service: Option<SettingsLogin>,
        service_client_ids: Vec<String>,
    ) -> Self {
        Self {
            store,
            admin,
            service,
            service_client_ids,
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// The client ids only the service may use.
    pub fn service_client_ids(&self) -> &[String] {
        &self.service_client_ids
    }

    /// The logins of the settings, for a broker's files.
    pub fn settings_logins(&self) -> impl Iterator<Item = (&SettingsLogin, Principal)> {
        let service = self.service.iter().map(|l| (l, Principal::Service));
        let admin = self.admin.iter().map(|l| (l, Principal::Admin));
        service.chain(admin)
    }

    /// Is `id` kept for the service or the admin (so that no band, phone or
    /// gateway may be registered under it)?
    pub fn is_reserved(&self, id: &str) -> bool {
        self.service_client_ids.iter().any(|s| s == id)
            || self.settings_logins().any(|(l, _)| l.username == id)
    }

    /// A stream of the ids whose credentials changed (a secret or token
    /// replaced), for as long as the receiver lives.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock_listeners().push(tx);
        rx
    }

    /// Tells every listener that `id`'s credentials changed.
    pub fn credentials_changed(&self, id: &str) {
        self.lock_listeners()
            .retain(|tx| tx.send(id.to_string()).is_ok());
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<String>>> {
        // A panic while holding this lock leaves a plain Vec behind: usable.
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a CONNECT: the login, then the client id. Returns who it is.
    pub async fn login(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<Principal, Denied> {
        let (Some(username), Some(password)) = (username, password) else {
            return Err(Denied::BadCredentials);
        };
        let password = std::str::from_utf8(password).map_err(|_| Denied::BadCredentials)?;
        let principal = self.check_password(username, password).await?;
        if !client_id_allowed(&principal, client_id, &self.service_client_ids) {
            return Err(Denied::NotAuthorized(format!(
                "{principal} may not use the client id {client_id:?}"
            )));
        }
        if principal == Principal::Admin && self.registered(client_id).await?.is_some() {
            return Err(Denied::NotAuthorized(format!(
                "the client id {client_id:?} belongs to a registered device, volunteer or gateway"
            )));
        }
        Ok(principal)
    }

    async fn check_password(&self, username: &str, password: &str) -> Result<Principal, Denied> {
        let matches = |l: &SettingsLogin| {
            secret::constant_time_eq(l.password.expose().as_bytes(), password.as_bytes())
        };
        for (login, principal) in self.settings_logins() {
            if login.username == username {
                return if matches(login) {
                    Ok(principal)
                } else {
                    Err(Denied::BadCredentials)
                };
            }
        }
        let credential = self
            .registered(username)
            .await?
            .ok_or(Denied::BadCredentials)?;
        let hash = credential
            .secret_hash
            .as_deref()
            .ok_or(Denied::BadCredentials)?;
        if !secret::verify(password, hash) {
            return Err(Denied::BadCredentials);
        }
        principal_of(credential.kind, &credential.id).ok_or(Denied::BadCredentials)
    }

    /// The login of a registered id. A name that no id can have (any
    /// client may send one) is nobody's, and the store is not asked: it
    /// might refuse the question (PostgreSQL, a NUL) and turn a plain
    /// refusal into "unavailable".
    async fn registered(&self, id: &str) -> Result<Option<Credential>, StoreError> {
        if !crate::domain::ids::is_slug(id) {
            return Ok(None);
        }
        self.store.credential(id).await
    }

    /// Who a broker that already authenticated `username` is asking about
    /// (the ACL hook), or None if nobody by that name may connect.
    pub async fn principal(&self, username: &str) -> Result<Option<Principal>, Denied> {
        if let Some((_, p)) = self.settings_logins().find(|(l, _)| l.username == username) {
            return Ok(Some(p));
        }
        Ok(self
            .registered(username)
            .await?
            .filter(|c| c.secret_hash.is_some())
            .and_then(|c| principal_of(c.kind, &c.id)))
    }
}

/// The principal a registered id logs in as.
pub fn principal_of(kind: PrincipalKind, id: &str) -> Option<Principal> {
    match kind {
        PrincipalKind::Device => DeviceId::parse(id).ok().map(Principal::Band),
        PrincipalKind::Volunteer => VolunteerId::parse(id).ok().map(Principal::Phone),
        PrincipalKind::Gateway => GatewayId::parse(id).ok().map(Principal::Gateway),
    }
}
