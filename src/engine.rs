//! The engine: the one task that owns a [`Dispatcher`] and turns its
//! decisions into facts.
//!
//! Commands arrive on a channel (from the MQTT ingest and from HTTP), are
//! handled in batches, and the effects of a whole batch are written in one
//! transaction (group commit). Only after the commit are the callers
//! answered, the messages published and the alert changes broadcast. If the
//! commit fails, nothing is answered as done, nothing is published, and the
//! dispatcher is rebuilt from the store: the same path as a restart.
//! Timers are the dispatcher's; the engine sleeps until the next one and
//! sends `Tick`. This module never parses input and never speaks MQTT or
//! HTTP itself.
//!
//! What a batch did is counted (offers by outcome, breaches, the press-to-
//! offer and press-to-accept histograms, active alerts by state) and logged
//! (one line per changed alert, with its id and state) only once it is
//! committed: a rolled-back batch counts nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::domain::alert::to_millis;
use crate::domain::{
    Alert, AlertId, AlertState, Command, DispatchError, Dispatcher, Effects, MilestoneKind,
    Outgoing, Reply, Rules, TimelineKind, Timestamp,
};
use crate::store::{Store, StoreError};

/// How many queued commands one transaction may carry.
const MAX_BATCH: usize = 512;
/// Queue length before callers wait.
const QUEUE: usize = 8192;
/// How long a caller waits for its command to be committed before it is
/// told `Unavailable` (the store is down or slow): an HTTP write answers
/// 503 instead of hanging. The command may still be committed later; a
/// retry finds it done (presses are deduplicated by their event id).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A commit that takes longer is given up (the database hangs rather than
/// refuses): the batch is answered `Unavailable` and the dispatcher rebuilt
/// from what the store holds, which tells whether it landed after all.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// After a batch failed for good (not an outage), commands are committed
/// one at a time for this long, so that the one that cannot be stored is
/// refused alone and the rest go through.
const ISOLATE_FOR: Duration = Duration::from_secs(10);

/// Why a call to the engine did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The rules refused it; nothing changed.
    #[error(transparent)]
    Refused(#[from] DispatchError),
    /// The store could not commit; nothing changed, try again.
    #[error("the store could not commit: {0}")]
    Unavailable(String),
    /// The store refused this command's effects for good (an error that
    /// would recur on every retry); nothing changed. Retrying is useless.
    #[error("the store refused it: {0}")]
    Failed(String),
    /// The engine is stopping.
    #[error("the service is stopping")]
    Stopped,
}

struct Request {
    command: Command,
    reply: oneshot::Sender<Result<Reply, CallError>>,
}

/// A cheap, cloneable way to ask the engine to do something.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Request>,
}

impl Engine {
    /// Sends a command and waits until its effects are committed, at most
    /// [`CALL_TIMEOUT`].
    pub async fn call(&self, command: Command) -> Result<Reply, CallError> {
        let (reply, rx) = oneshot::channel();
        let exchange = async {
            self.tx
                .send(Request { command, reply })
                .await
                .map_err(|_| CallError::Stopped)?;
            rx.await.map_err(|_| CallError::Stopped)?
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(CallError::Unavailable(format!(
                    "not committed within {CALL_TIMEOUT:?}"
                )))
            })
    }
}

/// Where committed effects go.
#[derive(Clone)]
pub struct Sinks {
    /// Messages for bands and phones.
    pub outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Every changed alert, for live views.
    pub alerts: broadcast::Sender<Alert>,
    /// Whom notifications can reach (nothing is planned for the rest).
    pub reach: crate::notify::Reach,
    /// The volunteers with a channel of their own.
    pub reachable: crate::notify::Reachable,
    /// Woken after a commit that wrote notifications.
    pub notifier: Arc<tokio::sync::Notify>,
}

/// The current time, as the dispatcher sees it (whole milliseconds): the
/// wall clock read once, at the first call, carried on by the monotonic
/// clock. A wall clock stepped back (or forward) while the service runs
/// moves no deadline; a restart reads the wall clock again.
pub fn now() -> Timestamp {
    static ANCHOR: std::sync::OnceLock<(Timestamp, Instant)> = std::sync::OnceLock::new();
    let (wall, mono) = *ANCHOR.get_or_init(|| (Utc::now(), Instant::now()));
    let elapsed = chrono::TimeDelta::from_std(mono.elapsed()).unwrap_or(chrono::TimeDelta::MAX);
    to_millis(
        wall.checked_add_signed(elapsed)
            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC),
    )
}

/// Loads the dispatcher from the store and starts the engine task.
pub async fn start(
    rules: Rules,
    store: Arc<dyn Store>,
    sinks: Sinks,
    shutdown: CancellationToken,
) -> Result<(Engine, tokio::task::JoinHandle<()>), StoreError> {
    let snapshot = store.load_snapshot().await?;
    info!(
        alerts = snapshot.alerts.len(),
        volunteers = snapshot.volunteers.len(),
        "dispatcher restored from the store"
    );
    let dispatcher = Dispatcher::restore(rules.clone(), snapshot);
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = EngineTask {
        rules,
        dispatcher,
        store,
        sinks,
        rx,
        isolate_until: None,
    };
    // What was published before the stop may never have left (or the
    // broker forgot it): publish again what each band and phone should hold.
    task.republish();
    let handle = tokio::spawn(task.run(shutdown));
    Ok((Engine { tx }, handle))
}

struct EngineTask {
    rules: Rules,
    dispatcher: Dispatcher,
    store: Arc<dyn Store>,
    sinks: Sinks,
    rx: mpsc::Receiver<Request>,
    /// Set after a batch failed for good: until then, one command a batch.
    isolate_until: Option<Instant>,
}

impl EngineTask {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
        gauge_active(&self.dispatcher);
        loop {
            let sleep = sleep_until(self.dispatcher.next_deadline());
            let limit = self.batch_limit();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                n = self.rx.recv_many(&mut batch, limit) => {
                    if n == 0 {
                        break;
                    }
                    let requests = std::mem::take(&mut batch);
                    self.process(requests, &shutdown).await;
                }
                _ = sleep => self.process(Vec::new(), &shutdown).await,
            }
        }
        // Refuse what is still queued, so no caller waits forever.
        self.rx.close();
        while let Ok(req) = self.rx.try_recv() {
            let _ = req.reply.send(Err(CallError::Stopped));
        }
        info!("engine stopped");
    }

    fn batch_limit(&mut self) -> usize {
        match self.isolate_until {
            Some(until) if Instant::now() < until => 1,
            Some(_) => {
                self.isolate_until = None;
                MAX_BATCH
            }
            None => MAX_BATCH,
        }
    }

    /// Hands the latest message of every active alert and pending offer to
    /// the publisher (retained, so a band or phone connecting later has it).
    fn republish(&self) {
        let messages = self.dispatcher.latest_messages();
        if !messages.is_empty() {
            info!(
                messages = messages.len(),
                "publishing again the latest notice of each active alert and pending offer"
            );
        }
        for message in messages {
            if self.sinks.outgoing.send(message).is_err() {
                warn!("publisher gone: a message was not sent");
            }
        }
    }

    /// Handles a batch (and whatever timers are due) and commits it.
    async fn process(&mut self, requests: Vec<Request>, shutdown: &CancellationToken) {
        let now = now();
        let mut fx = Effects::default();
        let mut replies = Vec::with_capacity(requests.len());
        // Timers first: an offer that expired before this accept came in
        // has expired.
        let _ = self.dispatcher.handle(now, Command::Tick, &mut fx);
        for req in requests {
            let result = self.dispatcher.handle(now, req.command, &mut fx);
            replies.push((req.reply, result));
        }
        if !replies.is_empty() {
            metrics::histogram!("onepress_engine_batch_size").record(replies.len() as f64);
        }
        if fx.has_writes() {
            let reach = self.sinks.reach;
            fx.notifications = self
                .sinks
                .reachable
                .with(|reachable| crate::notify::plan(&fx, now, reach, reachable));
            let started = Instant::now();
            let committed = match tokio::time::timeout(COMMIT_TIMEOUT, self.store.commit(&fx)).await
            {
                Ok(result) => result.map_err(|e| (e.is_transient(), e.to_string())),
                Err(_) => Err((true, format!("no answer within {COMMIT_TIMEOUT:?}"))),
            };
            metrics::histogram!("onepress_store_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            if let Err((transient, e)) = committed {
                error!(error = %e, transient, commands = replies.len(), "commit failed: the batch is undone and the dispatcher rebuilt from the store");
                metrics::counter!("onepress_store_commit_failures_total", "kind" => if transient { "transient" } else { "permanent" }).increment(1);
                let alone = replies.len() == 1;
                if !transient && !alone {
                    // Which command is at fault is unknown: from now on,
                    // one at a time, so that only that one is refused.
                    self.isolate_until = Some(Instant::now() + ISOLATE_FOR);
                }
                for (reply, _) in replies {
                    let answer = if !transient && alone {
                        CallError::Failed(e.clone())
                    } else {
                        CallError::Unavailable(e.clone())
                    };
                    let _ = reply.send(Err(answer));
                }
                self.rebuild(shutdown).await;
                return;
            }
            count_committed(&fx);
            log_committed(&fx);
            if !fx.notifications.is_empty() {
                self.sinks.notifier.notify_one();
            }
            if !fx.alerts.is_empty() {
                gauge_active(&self.dispatcher);
            }
        }
        for alert in &fx.alerts {
            // Nobody listening is fine.
            let _ = self.sinks.alerts.send(alert.clone());
        }
        for message in fx.outgoing {
            if self.sinks.outgoing.send(message).is_err() {
                warn!("publisher gone: a message was not sent");
            }
        }
        for (reply, result) in replies {
            let _ = reply.send(result.map_err(CallError::from));
        }
    }

    /// Crash-only recovery: the store is the truth. Until it answers
    /// again, every command is refused at once (`Unavailable`: an HTTP
    /// write answers 503 without waiting, a press stays unacknowledged and
    /// is retried). Gives up on shutdown.
    async fn rebuild(&mut self, shutdown: &CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(loaded) = refusing(&mut self.rx, shutdown, self.store.load_snapshot()).await
            else {
                return;
            };
            match loaded {
                Ok(snapshot) => {
                    self.dispatcher = Dispatcher::restore(self.rules.clone(), snapshot);
                    gauge_active(&self.dispatcher);
                    info!("dispatcher rebuilt from the store");
                    // The failed batch may have landed after all (its
                    // answer was lost): what it published is not known.
                    self.republish();
                    return;
                }
                Err(e) => {
                    error!(error = %e, retry_in = ?backoff, "cannot reload the dispatcher; retrying");
                    let pause = tokio::time::sleep(backoff);
                    if refusing(&mut self.rx, shutdown, pause).await.is_none() {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Waits for `work`, answering every command that arrives meanwhile
/// `Unavailable` (the store is unreachable); None on shutdown.
async fn refusing<F: std::future::Future>(
    rx: &mut mpsc::Receiver<Request>,
    shutdown: &CancellationToken,
    work: F,
) -> Option<F::Output> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            done = &mut work => return Some(done),
            Some(req) = rx.recv() => {
                let _ = req.reply.send(Err(CallError::Unavailable(
                    "the store is unreachable; the service is reconnecting".into(),
                )));
            }
        }
    }
}

/// Counts what a committed batch did. Offers: `sent` for a new one, else
/// how it ended.
fn count_committed(fx: &Effects) {
    for offer in &fx.offers {
        let outcome = offer.outcome.map_or("sent", |o| o.as_str());
        metrics::counter!("onepress_offers_total", "outcome" => outcome).increment(1);
    }
    for (_, event) in &fx.timeline {
        let target = match event.kind {
            TimelineKind::ResponseBreached => "response",
            TimelineKind::ArrivalBreached => "arrival",
            _ => continue,
        };
        metrics::counter!("onepress_breaches_total", "target" => target).increment(1);
    }
    for m in &fx.milestones {
        let seconds = m.since_press.num_milliseconds().max(0) as f64 / 1000.0;
        match m.kind {
            MilestoneKind::FirstOffer => {
                metrics::histogram!("onepress_press_to_offer_seconds").record(seconds)
            }
            MilestoneKind::FirstAccept => {
                metrics::histogram!("onepress_press_to_accept_seconds").record(seconds)
            }
        }
    }
}

/// One line per alert a committed batch changed: its id, its state and
/// the timeline events the batch added, so an alert can be followed
/// through the logs from press to resolution.
fn log_committed(fx: &Effects) {
    let mut events: HashMap<&AlertId, Vec<&'static str>> = HashMap::new();
    for (id, event) in &fx.timeline {
        events.entry(id).or_default().push(event.kind.as_str());
    }
    for alert in &fx.alerts {
        let added = events
            .get(&alert.id)
            .map(|e| e.join(","))
            .unwrap_or_default();
        info!(alert_id = %alert.id, state = %alert.state, events = %added, "alert changed");
    }
}

/// Sets `onepress_alerts_active{state}` from the dispatcher, which holds
/// exactly the active alerts.
fn gauge_active(dispatcher: &Dispatcher) {
    let states = [
        AlertState::Open,
        AlertState::Offered,
        AlertState::Accepted,
        AlertState::OnScene,
    ];
    let mut counts = [0u32; 4];
    for alert in dispatcher.active_alerts() {
        if let Some(i) = states.iter().position(|s| *s == alert.state) {
            counts[i] += 1;
        }
    }
    for (state, n) in states.iter().zip(counts) {
        metrics::gauge!("onepress_alerts_active", "state" => state.as_str()).set(f64::from(n));
    }
}

/// Sleeps until a wall-clock deadline (forever when there is none).
async fn sleep_until(deadline: Option<Timestamp>) {
    match deadline {
        None => std::future::pending().await,
        Some(at) => {
            let wait = (at - now()).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
        }
    }
}
