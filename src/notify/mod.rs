//! Notifications beyond MQTT: the outbox and its delivery.
//!
//! The engine plans notifications from what a batch did ([`plan`]) and
//! writes them with the batch, in one transaction. After the commit it
//! wakes the [`Notifier`], which reads what is due from the store, works
//! out whom to reach and how, delivers, and records each try in the alert's
//! timeline (`notified`: channel, recipient, outcome) and in
//! `onepress_notifications_total{channel, outcome}`. A failure worth
//! retrying is rescheduled with a growing delay; what is still due when the
//! service stops is delivered after it starts again. Delivery never runs in
//! the engine: a dead channel delays no dispatch and no commit, and each
//! channel has its own bound on requests in flight.

pub mod plan;
pub mod webhook;
pub mod webpush;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::domain::{Audience, Notification, TimelineEvent, TimelineKind, Timestamp};
use crate::engine;
use crate::store::Store;
use webhook::{SendError, Webhook};

pub use plan::{Reach, plan};

/// Notifications read from the store at a time.
const BATCH: u32 = 64;
/// Requests in flight on one channel.
const PER_CHANNEL: usize = 16;
/// A channel's request that takes longer has failed (and is retried).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries before a notification is given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the notifier delivers with.
#[derive(Clone)]
pub struct Channels {
    pub webhook: Option<Webhook>,
}

impl Channels {
    /// Which audiences can be reached at all.
    pub fn reach(&self) -> Reach {
        let any = self.webhook.is_some();
        Reach {
            volunteers: any,
            operators: any,
            contacts: any,
        }
    }
}

/// Delivers the outbox.
pub struct Notifier {
    store: Arc<dyn Store>,
    channels: Channels,
    client: reqwest::Client,
    wake: Arc<Notify>,
    webhook_slots: Arc<Semaphore>,
}

/// How one try went.
enum Tried {
    Delivered,
    Retry(String),
    Failed(String),
    /// Nobody to tell (a senior with no contacts): dropped, counted.
    Nobody,
}

impl Notifier {
    pub fn new(store: Arc<dyn Store>, channels: Channels, wake: Arc<Notify>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            store,
            channels,
            client,
            wake,
            webhook_slots: Arc::new(Semaphore::new(PER_CHANNEL)),
        }
    }

    /// Delivers until shutdown: at start whatever is due, then whenever the
    /// engine commits notifications or a retry falls due.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut in_flight: HashSet<String> = HashSet::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
        loop {
            while let Ok(id) = done_rx.try_recv() {
                in_flight.remove(&id);
            }
            let now = engine::now();
            match this.store.due_notifications(now, BATCH).await {
                Ok(due) => {
                    for n in due {
                        if in_flight.insert(n.id.clone()) {
                            let this = this.clone();
                            let done = done_tx.clone();
                            tokio::spawn(async move {
                                let id = n.id.clone();
                                this.deliver(n).await;
                                let _ = done.send(id);
                            });
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot read the notifications due"),
            }
            let next = this.store.next_notification_due().await.ok().flatten();
            let wait = next
                .map(|at| (at - engine::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(5))
                .clamp(Duration::from_millis(50), Duration::from_secs(5));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = this.wake.notified() => {}
                Some(id) = done_rx.recv() => { in_flight.remove(&id); }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        info!("notifier stopped");
    }

    async fn deliver(&self, n: Notification) {
        let Some(webhook) = &self.channels.webhook else {
            return;
        };
        let channel = "webhook";
        let tried = match self.recipients(&n).await {
            Err(e) => Tried::Retry(e),
            Ok(None) => Tried::Nobody,
            Ok(Some(recipients)) => {
                let Ok(_slot) = self.webhook_slots.acquire().await else {
                    return;
                };
                let body = json!({
                    "id": n.id,
                    "event": n.event,
                    "alert_id": n.alert_id,
                    "audience": n.audience.label(),
                    "recipients": recipients,
                    "created_at": crate::domain::alert::format_ts(&n.created_at),
                    "attempt": n.attempts + 1,
                    "data": serde_json::from_str::<Value>(&n.body).unwrap_or(Value::Null),
                });
                let at = engine::now().timestamp();
                match webhook.send(&self.client, &n.id, &n.event, &body, at).await {
                    Ok(()) => Tried::Delivered,
                    Err(SendError::Transient(e)) => Tried::Retry(e),
                    Err(SendError::Permanent(e)) => Tried::Failed(e),
                }
            }
        };
        self.record(&n, channel, tried).await;
    }

    /// Whom the notification reaches, with what a gateway needs to reach
    /// them; None when there is nobody.
    async fn recipients(&self, n: &Notification) -> Result<Option<Value>, String> {
        match &n.audience {
            Audience::Operators => Ok(Some(json!([{"type": "operators"}]))),
            Audience::Volunteer(v) => {
                let record = self
                    .store
                    .get_volunteer(v)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(record.map(|r| {
                    json!([{
                        "type": "volunteer",
                        "id": r.profile.id,
                        "name": r.profile.name,
                        "phone": r.profile.phone,
                    }])
                }))
            }
            Audience::Contacts(senior) => {
                let senior = self
                    .store
                    .get_senior(senior)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(senior.filter(|s| !s.contacts.is_empty()).map(|s| {
                    let contacts: Vec<Value> = s
                        .contacts
                        .iter()
                        .map(|c| json!({"type": "contact", "name": c.name, "phone": c.phone, "senior_name": s.name}))
                        .collect();
                    Value::Array(contacts)
                }))
            }
        }
    }

    async fn record(&self, n: &Notification, channel: &'static str, tried: Tried) {
        let attempts = n.attempts + 1;
        let (outcome, reason, retry) = match tried {
            Tried::Nobody => {
                metrics::counter!("onepress_notifications_total", "channel" => channel, "outcome" => "no_recipient").increment(1);
                debug!(id = %n.id, audience = %n.audience.label(), "nobody to notify");
                if let Err(e) = self.store.notification_dropped(n).await {
                    warn!(error = %e, "cannot drop a notification nobody can receive");
                }
                return;
            }
            Tried::Delivered => ("delivered", None, None),
            Tried::Retry(why) if attempts < MAX_ATTEMPTS => {
                ("retrying", Some(why), Some((next_try(attempts), attempts)))
            }
            Tried::Retry(why) | Tried::Failed(why) => ("failed", Some(why), None),
        };
        metrics::counter!("onepress_notifications_total", "channel" => channel, "outcome" => outcome)
            .increment(1);
        if outcome != "delivered" {
            warn!(id = %n.id, alert_id = %n.alert_id, channel, outcome, reason = reason.as_deref().unwrap_or(""), attempts, "notification not delivered");
        }
        let mut event = TimelineEvent::new(engine::now(), TimelineKind::Notified);
        event.channel = Some(channel.to_string());
        event.recipient = Some(n.audience.label());
        event.outcome = Some(outcome.to_string());
        event.reason = reason.map(|r| r.chars().take(200).collect());
        event.note = Some(n.event.clone());
        if let Err(e) = self.store.notification_tried(n, &event, retry).await {
            // Still in the outbox: it will be tried again.
            warn!(error = %e, id = %n.id, "cannot record a notification's delivery");
        }
    }
}

/// When to try again after `attempts` tries: 1 s, 2 s, 4 s, … at most
/// five minutes.
fn next_try(attempts: u32) -> Timestamp {
    let delay = Duration::from_secs(1u64 << attempts.min(16)).min(MAX_BACKOFF);
    crate::domain::dispatcher::after(engine::now(), delay)
}
