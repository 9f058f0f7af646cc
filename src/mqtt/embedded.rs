//! The embedded MQTT broker (rmqtt), for a machine with nothing else
//! installed. It runs on the service's own tokio runtime and enforces the
//! access rule in-process: every CONNECT is checked by
//! [`AccessControl::login`] (a will aimed where the login may not publish
//! refuses the connection: rmqtt does not check wills on its own), every
//! SUBSCRIBE and PUBLISH by [`access::allowed`]. A refused SUBSCRIBE gets a
//! SUBACK failure; a refused PUBLISH is dropped (MQTT 3.1.1 has no way to
//! say no: the PUBACK still goes out, the message reaches nobody).
//!
//! Sizing: a session's queue holds up to [`MAX_QUEUE`] messages (rmqtt's
//! default, 1,000, would drop presses queued for the service while it
//! restarts or during a surge), messages never expire in it, and a
//! persistent session is kept for a week. Retained messages are kept in
//! memory: they are gone when the process stops, which is why the service
//! publishes the latest notice of each active alert again after a start.
//! Every message the broker drops is counted in
//! `onepress_broker_dropped_total{reason}`.
//!
//! It never decides who may do what (that is [`crate::access`]) and never
//! touches the store.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::server::MqttServer;
use rmqtt::types::{
    AuthResult, ClientId, Id, LastWill, PublishAclResult, Retain, SubscribeAclResult, TopicFilter,
    TopicName,
};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::access::{self, AccessControl, Action, Denied, Principal};

/// The largest packet the embedded broker accepts (anything over the
/// contract's 4 KiB still reaches the service, which counts the rejection).
pub const MAX_PACKET: u32 = 256 * 1024;
/// Messages a session may hold while its client is away or behind.
pub const MAX_QUEUE: usize = 1_000_000;
/// Unacknowledged QoS 1 messages in flight to one client. The service
/// works on up to 1,024 presses at once; this keeps it fed.
pub const MAX_INFLIGHT: u16 = 1024;
/// How long a persistent session outlives its connection.
const SESSION_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("the embedded MQTT broker cannot listen on {addr}: {why}")]
    Bind { addr: SocketAddr, why: String },
}

/// A running embedded broker.
#[derive(Clone)]
pub struct Embedded {
    scx: ServerContext,
    local_addr: SocketAddr,
    server: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// Starts the broker on `addr` (port 0 picks a free one: see
/// [`Embedded::local_addr`]), checking logins and topics with `access`.
pub async fn start(
    addr: SocketAddr,
    access: Arc<AccessControl>,
) -> Result<Embedded, EmbeddedError> {
    let bind_err = |e: &dyn std::fmt::Display| EmbeddedError::Bind {
        addr,
        why: e.to_string(),
    };
    let scx = ServerContext::new()
        // Its load sampler would refuse handshakes when the machine is busy.
        .busy_check_enable(false)
        .build()
        .await;
    let hooks = scx.extends.hook_mgr().register();
    let handler = Hooks {
        access,
        principals: Arc::new(DashMap::new()),
    };
    for typ in [
        Type::ClientAuthenticate,
        Type::ClientSubscribeCheckAcl,
        Type::MessagePublishCheckAcl,
        Type::MessageDropped,
    ] {
        hooks.add(typ, Box::new(handler.clone())).await;
    }
    hooks.start().await;
    *scx.extends.retain_mut().await = Box::new(MemoryRetain(DefaultRetainStorage::new()));

    let listener = Builder::new()
        .name("onepress-embedded")
        .laddr(addr)
        // Small messages, sent at once (no Nagle delay on a notice).
        .nodelay(true)
        // A restart right after a crash must not wait out TIME_WAIT.
        .reuseaddr(Some(true))
        // Every client goes through the authenticate hook, with or without
        // a user name.
        .allow_anonymous(false)
        .max_mqueue_len(MAX_QUEUE)
        .max_inflight(NonZeroU16::new(MAX_INFLIGHT).unwrap_or(NonZeroU16::MIN))
        .max_packet_size(MAX_PACKET)
        // Zero: queued and retained messages never expire.
        .message_expiry_interval(Duration::ZERO)
        .session_expiry_interval(SESSION_EXPIRY)
        .bind()
        .map_err(|e| bind_err(&e))?
        .tcp()
        .map_err(|e| bind_err(&e))?;
    let local_addr = listener.local_addr().map_err(|e| bind_err(&e))?;
    let server = MqttServer::new(scx.clone())
        .listener_by_id(listener, 1)
        .build();
    // Not `server.start()`: it exits the process on an error.
    let task = tokio::spawn(async move {
        if let Err(e) = server.run().await {
            error!(error = %e, "embedded MQTT broker stopped");
        }
    });
    info!(%local_addr, "embedded MQTT broker listening");
    Ok(Embedded {
        scx,
        local_addr,
        server: Arc::new(Mutex::new(Some(task))),
    })
}

impl Embedded {
    /// Where the broker listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Disconnects the client using `client_id`, if any, and drops its
    /// session. True if there was one.
    pub async fn kick(&self, client_id: &str) -> bool {
        let id = Id::from(self.scx.node.id(), ClientId::from(client_id.to_owned()));
        let mut entry = self.scx.extends.shared().await.entry(id);
        if entry.session().is_none() {
            return false;
        }
        match entry.kick(true, true, true).await {
            Ok(_) => true,
            Err(e) => {
                warn!(%client_id, error = %e, "cannot disconnect a client");
                false
            }
        }
    }

    /// Disconnects every client whose credentials change (so that a
    /// replaced secret or token stops working at once), until shutdown.
    pub async fn revoke_changed(
        self,
        mut changed: mpsc::UnboundedReceiver<String>,
        shutdown: CancellationToken,
    ) {
        loop {
            let id = tokio::select! {
                _ = shutdown.cancelled() => return,
                id = changed.recv() => match id {
                    Some(id) => id,
                    None => return,
                },
            };
            // Logins are per id and the client id must be the id.
            if self.kick(&id).await {
                info!(client_id = %id, "credentials replaced: connection closed");
            }
        }
    }

    /// Stops accepting connections and closes every session.
    pub async fn stop(self) {
        if let Some(task) = self.server.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
        let ids: Vec<Id> = self
            .scx
            .extends
            .shared()
            .await
            .iter()
            .map(|e| e.id())
            .collect();
        for id in ids {
            let mut entry = self.scx.extends.shared().await.entry(id);
            let _ =
                tokio::time::timeout(Duration::from_secs(1), entry.kick(true, true, true)).await;
        }
        info!("embedded MQTT broker stopped");
    }
}

/// The broker's hooks: the access rule, in-process.
#[derive(Clone)]
struct Hooks {
    access: Arc<AccessControl>,
    /// Who logged in under each user name. An id's kind never changes, so
    /// an entry never goes stale; a replaced secret is handled by a kick.
    principals: Arc<DashMap<String, Principal>>,
}

impl Hooks {
    fn principal(&self, username: Option<&str>) -> Option<Principal> {
        self.principals.get(username?).map(|p| p.clone())
    }

    async fn authenticate(&self, ci: &rmqtt::types::ConnectInfo) -> AuthResult {
        let client_id = ci.id().client_id.as_ref();
        let username = ci.username().map(|u| u.as_ref());
        let password = ci.password().map(|p| p.as_ref());
        match self.access.login(client_id, username, password).await {
            Ok(principal) => {
                let will = ci.last_will().map(|w| match w {
                    LastWill::V3(w) => w.topic.to_string(),
                    LastWill::V5(w) => w.topic.to_string(),
                });
                if let Some(topic) = will {
                    if !access::allowed(&principal, Action::Publish, &topic) {
                        info!(%client_id, %topic, "connection refused: a will outside the login's rights");
                        return AuthResult::NotAuthorized;
                    }
                }
                debug!(%client_id, %principal, "MQTT login");
                if let Some(username) = username {
                    self.principals
                        .insert(username.to_string(), principal.clone());
                }
                AuthResult::Allow(principal.is_superuser(), None)
            }
            Err(Denied::BadCredentials) => {
                info!(%client_id, "connection refused: bad user name or password");
                AuthResult::BadUsernameOrPassword
            }
            Err(Denied::NotAuthorized(why)) => {
                info!(%client_id, %why, "connection refused: not authorized");
                AuthResult::NotAuthorized
            }
            Err(Denied::Unavailable(why)) => {
                warn!(%client_id, %why, "connection refused: the registry is unavailable");
                AuthResult::NotAuthorized
            }
        }
    }
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(ci) => {
                let result = self.authenticate(ci).await;
                if !matches!(result, AuthResult::Allow(..)) {
                    refused("connect");
                }
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) => {
                let ok = self
                    .principal(s.id.username.as_deref())
                    .is_some_and(|p| access::allowed(&p, Action::Subscribe, &sub.topic_filter));
                let result = if ok {
                    SubscribeAclResult::new_success(sub.opts.qos(), None)
                } else {
                    refused("subscribe");
                    info!(client_id = %s.id.client_id, filter = %sub.topic_filter, "subscription refused");
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (ok, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(s, p) => {
                let ok = self
                    .principal(s.id.username.as_deref())
                    .is_some_and(|pr| access::allowed(&pr, Action::Publish, &p.topic));
                let result = if ok {
                    PublishAclResult::allow()
                } else {
                    refused("publish");
                    debug!(client_id = %s.id.client_id, topic = %p.topic, "publish refused");
                    PublishAclResult::rejected(false, None)
                };
                (ok, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::MessageDropped(to, _, p, reason) => {
                metrics::counter!("onepress_broker_dropped_total").increment(1);
                warn!(to = ?to.as_ref().map(|t| t.client_id.to_string()), topic = %p.topic, reason = ?reason, "the embedded broker dropped a message");
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

/// Counts what the access rule refused (`connect|subscribe|publish`).
fn refused(action: &'static str) {
    metrics::counter!("onepress_broker_refused_total", "action" => action).increment(1);
}

/// Retained messages in memory. rmqtt's own default store answers nothing
/// (retained messages are a plugin's job there); its in-memory trie does
/// the work once switched on.
struct MemoryRetain(DefaultRetainStorage);

#[async_trait]
impl RetainStorage for MemoryRetain {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry: Option<Duration>,
    ) -> rmqtt::Result<()> {
        // Zero means "never" here (the listener's expiry is zero).
        self.0
            .set_with_timeout(topic, retain, expiry.filter(|d| !d.is_zero()))
            .await
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.0.get_message(filter).await
    }

    async fn count(&self) -> isize {
        RetainStorage::count(&self.0).await
    }

    async fn max(&self) -> isize {
        RetainStorage::max(&self.0).await
    }
}
