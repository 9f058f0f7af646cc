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

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::domain::alert::to_millis;
use crate::domain::{
    Alert, Command, DispatchError, Dispatcher, Effects, Outgoing, Reply, Rules, Timestamp,
};
use crate::store::{Store, StoreError};

/// How many queued commands one transaction may carry.
const MAX_BATCH: usize = 512;
/// Queue length before callers wait.
const QUEUE: usize = 8192;

/// Why a call to the engine did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The rules refused it; nothing changed.
    #[error(transparent)]
    Refused(#[from] DispatchError),
    /// The store could not commit; nothing changed, try again.
    #[error("the store could not commit: {0}")]
    Unavailable(String),
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
    /// Sends a command and waits until its effects are committed.
    pub async fn call(&self, command: Command) -> Result<Reply, CallError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { command, reply })
            .await
            .map_err(|_| CallError::Stopped)?;
        rx.await.map_err(|_| CallError::Stopped)?
    }
}

/// Where committed effects go.
#[derive(Clone)]
pub struct Sinks {
    /// Messages for bands and phones.
    pub outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Every changed alert, for live views.
    pub alerts: broadcast::Sender<Alert>,
}

/// The current time, as the dispatcher sees it (whole milliseconds).
pub fn now() -> Timestamp {
    to_millis(Utc::now())
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
    };
    let handle = tokio::spawn(task.run(shutdown));
    Ok((Engine { tx }, handle))
}

struct EngineTask {
    rules: Rules,
    dispatcher: Dispatcher,
    store: Arc<dyn Store>,
    sinks: Sinks,
    rx: mpsc::Receiver<Request>,
}

impl EngineTask {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
        loop {
            let sleep = sleep_until(self.dispatcher.next_deadline());
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                n = self.rx.recv_many(&mut batch, MAX_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let requests = std::mem::take(&mut batch);
                    self.process(requests).await;
                }
                _ = sleep => self.process(Vec::new()).await,
            }
        }
        // Refuse what is still queued, so no caller waits forever.
        self.rx.close();
        while let Ok(req) = self.rx.try_recv() {
            let _ = req.reply.send(Err(CallError::Stopped));
        }
        info!("engine stopped");
    }

    /// Handles a batch (and whatever timers are due) and commits it.
    async fn process(&mut self, requests: Vec<Request>) {
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
        if fx.has_writes() {
            if let Err(e) = self.store.commit(&fx).await {
                error!(error = %e, "commit failed: the batch is undone and the dispatcher rebuilt from the store");
                for (reply, _) in replies {
                    let _ = reply.send(Err(CallError::Unavailable(e.to_string())));
                }
                self.rebuild().await;
                return;
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

    /// Crash-only recovery: the store is the truth.
    async fn rebuild(&mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.store.load_snapshot().await {
                Ok(snapshot) => {
                    self.dispatcher = Dispatcher::restore(self.rules.clone(), snapshot);
                    info!("dispatcher rebuilt from the store");
                    return;
                }
                Err(e) => {
                    error!(error = %e, "cannot reload the dispatcher; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Sleeps until a wall-clock deadline (forever when there is none).
async fn sleep_until(deadline: Option<Timestamp>) {
    match deadline {
        None => std::future::pending().await,
        Some(at) => {
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
        }
    }
}
