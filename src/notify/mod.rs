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

pub mod links;
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

use crate::domain::registry::PushEndpoint;
use crate::domain::{Audience, Notification, TimelineEvent, TimelineKind, Timestamp, VolunteerId};
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
    pub push: Option<PushChannel>,
    /// ntfy, for volunteers who gave a topic URL.
    pub ntfy: Option<NtfyChannel>,
    /// How often the operators hear again of an alert that still has
    /// nobody (see [`plan::needs_operators`]).
    pub remind_every: Duration,
}

/// ntfy: where the buttons of a notification point.
#[derive(Clone)]
pub struct NtfyChannel {
    /// The service's address as phones reach it; None: text only.
    pub public_url: Option<String>,
    pub links: links::LinkKey,
}

/// Web Push: the service's VAPID keys and who it says it is.
#[derive(Clone)]
pub struct PushChannel {
    pub keys: webpush::VapidKeys,
    pub subject: webpush::VapidSubject,
    pub policy: webpush::EndpointPolicy,
}

/// The volunteers who have a channel of their own (a browser subscribed to
/// Web Push, an ntfy topic): the engine plans an offer's notification only
/// for them (and for everyone when the webhook is set), so that a province
/// of volunteers with the app open writes no outbox row per offer.
///
/// A cache of the store, loaded at start; whoever changes a volunteer's
/// channels in the store calls [`Reachable::refresh`] after. Read by the
/// engine once per batch; written rarely, so the lock is never contended.
#[derive(Clone, Default)]
pub struct Reachable(Arc<std::sync::RwLock<HashSet<VolunteerId>>>);

impl Reachable {
    pub async fn load(store: &dyn Store) -> Result<Self, crate::store::StoreError> {
        let ids = store.volunteers_with_channels().await?;
        Ok(Self(Arc::new(std::sync::RwLock::new(
            ids.into_iter().collect(),
        ))))
    }

    /// Reads again from the store whether `volunteer` has a channel. A
    /// failure leaves them counted in (a notification too many is
    /// harmless; one too few is not).
    pub async fn refresh(&self, store: &dyn Store, volunteer: &VolunteerId) {
        let has = match store.has_channel(volunteer).await {
            Ok(has) => has,
            Err(e) => {
                warn!(error = %e, "cannot tell whether a volunteer has a channel; assuming so");
                true
            }
        };
        let mut set = self.0.write().unwrap_or_else(|e| e.into_inner());
        if has {
            set.insert(volunteer.clone());
        } else {
            set.remove(volunteer);
        }
    }

    /// Calls `f` with a way to ask about volunteers, under one read lock.
    pub fn with<R>(&self, f: impl FnOnce(&dyn Fn(&VolunteerId) -> bool) -> R) -> R {
        let set = self.0.read().unwrap_or_else(|e| e.into_inner());
        f(&|v| set.contains(v))
    }
}

impl Channels {
    /// Which audiences can be reached at all.
    pub fn reach(&self) -> Reach {
        let webhook = self.webhook.is_some();
        Reach {
            // Every volunteer, through the webhook; else only those in
            // [`Reachable`], through push or ntfy.
            volunteers: webhook,
            operators: webhook,
            contacts: webhook,
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
    push_slots: Arc<Semaphore>,
    ntfy_slots: Arc<Semaphore>,
    reachable: Reachable,
}

/// How one channel's try went.
enum Tried {
    Delivered,
    /// Worth another try later.
    Retry(String),
    /// Would fail again.
    Failed(String),
    /// The push service says the subscription is gone: it was removed.
    Gone(String),
}

impl Tried {
    fn outcome(&self) -> &'static str {
        match self {
            Tried::Delivered => "delivered",
            Tried::Retry(_) => "retrying",
            Tried::Failed(_) => "failed",
            Tried::Gone(_) => "gone",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Tried::Delivered => None,
            Tried::Retry(r) | Tried::Failed(r) | Tried::Gone(r) => Some(r),
        }
    }
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        channels: Channels,
        wake: Arc<Notify>,
        reachable: Reachable,
    ) -> Self {
        // No redirects: a followed 301/302 turns a POST into a GET.
        let client = webpush::client(REQUEST_TIMEOUT).unwrap_or_else(|_| reqwest::Client::new());
        Self {
            store,
            channels,
            client,
            wake,
            webhook_slots: Arc::new(Semaphore::new(PER_CHANNEL)),
            push_slots: Arc::new(Semaphore::new(PER_CHANNEL)),
            ntfy_slots: Arc::new(Semaphore::new(PER_CHANNEL)),
            reachable,
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

    /// Tries every channel the notification's audience has: a volunteer's
    /// push subscriptions first, and the webhook if none of them took it;
    /// the webhook alone for the operators and a senior's contacts.
    async fn deliver(&self, mut n: Notification) {
        if n.event == REMINDER {
            // Only while the alert still has nobody: then with what it is now.
            match self.store.get_alert(&n.alert_id).await {
                Ok(Some(a)) if plan::needs_operators(&a) => {
                    let mut body = plan::alert_body(&a);
                    body["text"] = Value::String(plan::text(REMINDER, &a, None));
                    n.body = body.to_string();
                }
                Ok(_) => {
                    if let Err(e) = self.store.notification_dropped(&n).await {
                        warn!(error = %e, "cannot drop a reminder no longer needed");
                    }
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the alert of a reminder; later");
                    return;
                }
            }
        }
        // A volunteer's browsers and their ntfy topic at once: a slow or
        // dead one holds up no other (each request has its own timeout).
        let push = async {
            let (Audience::Volunteer(v), Some(push)) = (&n.audience, &self.channels.push) else {
                return Vec::new();
            };
            match self.store.push_endpoints(v).await {
                Ok(subscriptions) => {
                    let each = subscriptions.iter().map(|s| self.push_one(push, &n, s));
                    let tries = futures::future::join_all(each).await;
                    if tries.iter().any(|t| matches!(t, Tried::Gone(_))) {
                        self.reachable.refresh(self.store.as_ref(), v).await;
                    }
                    tries.into_iter().map(|t| ("web_push", t)).collect()
                }
                Err(e) => vec![("web_push", Tried::Retry(e.to_string()))],
            }
        };
        let ntfy = async {
            let (Audience::Volunteer(v), Some(ntfy)) = (&n.audience, &self.channels.ntfy) else {
                return None;
            };
            match self.store.get_volunteer(v).await {
                Ok(Some(r)) => match &r.profile.ntfy_url {
                    Some(url) => Some(("ntfy", self.ntfy_one(ntfy, &n, v, url).await)),
                    None => None,
                },
                Ok(None) => None,
                Err(e) => Some(("ntfy", Tried::Retry(e.to_string()))),
            }
        };
        let (mut tries, ntfy): (Vec<(&'static str, Tried)>, _) = tokio::join!(push, ntfy);
        tries.extend(ntfy);
        let pushed = tries.iter().any(|(_, t)| matches!(t, Tried::Delivered));
        if !pushed {
            if let Some(webhook) = &self.channels.webhook {
                let tried = match self.recipients(&n).await {
                    Err(e) => Some(Tried::Retry(e)),
                    Ok(None) => None,
                    Ok(Some(recipients)) => Some(self.post(webhook, &n, recipients).await),
                };
                if let Some(tried) = tried {
                    tries.push(("webhook", tried));
                }
            }
        }
        self.record(&n, tries).await;
    }

    async fn push_one(&self, push: &PushChannel, n: &Notification, s: &PushEndpoint) -> Tried {
        let json = webpush::PushSubscriptionJson {
            endpoint: s.endpoint.clone(),
            keys: webpush::PushSubscriptionKeys {
                p256dh: s.p256dh.clone(),
                auth: s.auth.clone(),
            },
        };
        let subscription = match webpush::PushSubscription::parse(&json, push.policy) {
            Ok(sub) => sub,
            Err(e) => {
                // Kept under another policy, or damaged: of no use now.
                let _ = self.store.drop_push_endpoint(&s.endpoint).await;
                return Tried::Gone(format!("unusable subscription: {e}"));
            }
        };
        let body: Value = serde_json::from_str(&n.body).unwrap_or(Value::Null);
        // Kept by the push service until the offer expires, no longer.
        let ttl = body["expires_at"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .and_then(|t| (t - engine::now()).to_std().ok())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(3600));
        let payload = body.to_string();
        let Ok(_slot) = self.push_slots.acquire().await else {
            return Tried::Retry("stopping".into());
        };
        match webpush::send(
            &self.client,
            &push.keys,
            &push.subject,
            &subscription,
            payload.as_bytes(),
            ttl,
            webpush::Urgency::High,
        )
        .await
        {
            Ok(_) => Tried::Delivered,
            Err(webpush::PushError::Gone(status)) => {
                if let Err(e) = self.store.drop_push_endpoint(&s.endpoint).await {
                    warn!(error = %e, "cannot remove a gone push subscription");
                }
                Tried::Gone(format!("the push service answered {status}"))
            }
            Err(e) if e.is_transient() => Tried::Retry(e.to_string()),
            Err(e) => Tried::Failed(e.to_string()),
        }
    }

    /// Publishes an offer to a volunteer's ntfy topic (ntfy's JSON API: a
    /// POST of `{topic, title, message, priority, tags, click, actions}` to
    /// the server's root), with Accept and Decline buttons that call signed
    /// links when the service's public address is known.
    async fn ntfy_one(
        &self,
        ntfy: &NtfyChannel,
        n: &Notification,
        volunteer: &crate::domain::VolunteerId,
        topic_url: &str,
    ) -> Tried {
        let Ok(url) = reqwest::Url::parse(topic_url) else {
            return Tried::Failed("the ntfy URL does not parse".into());
        };
        let Some(topic) = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
        else {
            return Tried::Failed("the ntfy URL names no topic".into());
        };
        let mut root = url.clone();
        if let Ok(mut segments) = root.path_segments_mut() {
            segments.pop();
        }
        root.set_query(None);
        let body: Value = serde_json::from_str(&n.body).unwrap_or(Value::Null);
        let senior = body["senior"]["name"].as_str().unwrap_or("a senior");
        let mut message = json!({
            "topic": topic,
            "title": format!("Help needed: {senior}"),
            "message": body["text"],
            "priority": 5,
            "tags": ["rotating_light"],
        });
        let expires = body["expires_at"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.timestamp());
        if let (Some(base), Some(expires)) = (&ntfy.public_url, expires) {
            let base = base.trim_end_matches('/');
            let link = |action| {
                ntfy.links
                    .url(base, &n.alert_id, volunteer, action, expires)
            };
            message["click"] = json!(format!("{base}/volunteer#alert={}", n.alert_id));
            message["actions"] = json!([
                {"action": "http", "label": "Accept", "url": link(links::LinkAction::Accept), "method": "POST", "clear": true},
                {"action": "http", "label": "Decline", "url": link(links::LinkAction::Decline), "method": "POST", "clear": true},
            ]);
        }
        let Ok(_slot) = self.ntfy_slots.acquire().await else {
            return Tried::Retry("stopping".into());
        };
        match self.client.post(root).json(&message).send().await {
            Ok(r) => match webhook::outcome(r.status()) {
                Ok(()) => Tried::Delivered,
                Err(SendError::Transient(e)) => Tried::Retry(format!("ntfy {e}")),
                Err(SendError::Permanent(e)) => Tried::Failed(format!("ntfy {e}")),
            },
            Err(e) => Tried::Retry(e.without_url().to_string()),
        }
    }

    async fn post(&self, webhook: &Webhook, n: &Notification, recipients: Value) -> Tried {
        let Ok(_slot) = self.webhook_slots.acquire().await else {
            return Tried::Retry("stopping".into());
        };
        // Each repetition of a reminder is a message of its own.
        let id = if n.event == REMINDER {
            format!("{}-{}", n.id, n.due_at.timestamp_millis())
        } else {
            n.id.clone()
        };
        let body = json!({
            "id": id,
            "event": n.event,
            "alert_id": n.alert_id,
            "audience": n.audience.label(),
            "recipients": recipients,
            "created_at": crate::domain::alert::format_ts(&n.created_at),
            "attempt": n.attempts + 1,
            "data": serde_json::from_str::<Value>(&n.body).unwrap_or(Value::Null),
        });
        let at = engine::now().timestamp();
        match webhook.send(&self.client, &id, &n.event, &body, at).await {
            Ok(()) => Tried::Delivered,
            Err(SendError::Transient(e)) => Tried::Retry(e),
            Err(SendError::Permanent(e)) => Tried::Failed(e),
        }
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

    /// Records every try in the timeline and in the metrics, then deletes
    /// the notification, or reschedules it when nothing reached anyone and
    /// a try may work later.
    async fn record(&self, n: &Notification, tries: Vec<(&'static str, Tried)>) {
        if tries.is_empty() {
            metrics::counter!("onepress_notifications_total", "channel" => "none", "outcome" => "no_recipient").increment(1);
            debug!(id = %n.id, audience = %n.audience.label(), "nobody to notify");
            if let Err(e) = self.store.notification_dropped(n).await {
                warn!(error = %e, "cannot drop a notification nobody can receive");
            }
            return;
        }
        let attempts = n.attempts + 1;
        let delivered = tries.iter().any(|(_, t)| matches!(t, Tried::Delivered));
        let retryable = tries.iter().any(|(_, t)| matches!(t, Tried::Retry(_)));
        let retry = if n.event == REMINDER {
            // A reminder comes back until the alert no longer needs one.
            Some((
                crate::domain::dispatcher::after(engine::now(), self.channels.remind_every),
                0,
            ))
        } else {
            (!delivered && retryable && attempts < MAX_ATTEMPTS)
                .then(|| (next_try(attempts), attempts))
        };
        if n.audience == Audience::Operators && n.event != REMINDER {
            self.schedule_reminder(n).await;
        }
        let now = engine::now();
        let events: Vec<TimelineEvent> = tries
            .iter()
            .map(|(channel, tried)| {
                // A retryable try is `failed` when no retry follows.
                let outcome = match tried {
                    Tried::Retry(_) if retry.is_none() => "failed",
                    t => t.outcome(),
                };
                metrics::counter!("onepress_notifications_total", "channel" => *channel, "outcome" => outcome)
                    .increment(1);
                if outcome != "delivered" {
                    warn!(id = %n.id, alert_id = %n.alert_id, channel, outcome, reason = tried.reason().unwrap_or(""), attempts, "notification not delivered");
                }
                let mut event = TimelineEvent::new(now, TimelineKind::Notified);
                event.channel = Some(channel.to_string());
                event.recipient = Some(n.audience.label());
                event.outcome = Some(outcome.to_string());
                event.reason = tried.reason().map(|r| r.chars().take(200).collect());
                event.note = Some(n.event.clone());
                event
            })
            .collect();
        if let Err(e) = self.store.notification_tried(n, &events, retry).await {
            // Still in the outbox: it will be tried again.
            warn!(error = %e, id = %n.id, "cannot record a notification's delivery");
        }
    }
}

/// The event of a repeated word to the operators.
const REMINDER: &str = "reminder";

impl Notifier {
    /// After the operators heard of an escalation or a breach: one reminder
    /// per alert (its id says which), due after the repeat interval.
    async fn schedule_reminder(&self, n: &Notification) {
        let due = crate::domain::dispatcher::after(engine::now(), self.channels.remind_every);
        let reminder = Notification {
            id: format!("remind-{}", n.alert_id),
            alert_id: n.alert_id.clone(),
            audience: Audience::Operators,
            event: REMINDER.into(),
            body: n.body.clone(),
            due_at: due,
            attempts: 0,
            created_at: engine::now(),
        };
        if let Err(e) = self.store.add_notification(&reminder).await {
            warn!(error = %e, alert_id = %n.alert_id, "cannot schedule a reminder to the operators");
        }
    }
}

/// When to try again after `attempts` tries: 1 s, 2 s, 4 s, … at most
/// five minutes.
fn next_try(attempts: u32) -> Timestamp {
    let delay = Duration::from_secs(1u64 << attempts.min(16)).min(MAX_BACKOFF);
    crate::domain::dispatcher::after(engine::now(), delay)
}
