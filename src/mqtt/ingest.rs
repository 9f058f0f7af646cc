//! The ingest: every message from the broker becomes a command, a
//! heartbeat, or a counted rejection, and is acknowledged to the broker in
//! arrival order, an alert only after what it caused is committed.
//!
//! Messages are worked on concurrently (so that the engine can commit many
//! in one transaction), but acknowledged strictly in the order they came: a
//! broker that sees m1 acked before m0 may lose m0 (rumqttd did). A press
//! that cannot be committed (store down) is retried until it can: it is
//! never acknowledged unstored. Bad input is logged, counted in
//! `onepress_ingest_rejected_total{reason}` and acknowledged, so a poison
//! message is never redelivered forever. Every message taken in is counted
//! once in `onepress_ingest_messages_total{topic, outcome}` (see
//! [`count_message`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rumqttc::{AsyncClient, Publish, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::payload::{self, AlertEvent, Inbound, Reject};
use crate::domain::registry::Heartbeat;
use crate::domain::{
    AlertId, BandNotice, Command, DeviceId, Outgoing, Press, PressKind, PressOutcome, Reply,
};
use crate::engine::{self, CallError, Engine};
use crate::store::Store;

/// The outcomes of `onepress_ingest_messages_total`.
const ACCEPTED: &str = "accepted";
const DUPLICATE: &str = "duplicate";
pub const REJECTED: &str = "rejected";

/// Messages worked on at once.
const MAX_IN_FLIGHT: usize = 1024;
/// Heartbeats are written in batches this often…
const HEARTBEAT_FLUSH: Duration = Duration::from_millis(250);
/// …or as soon as this many devices are waiting.
const HEARTBEAT_BATCH: usize = 5000;
/// Devices waiting to be written at most (a batch is written at once);
/// past this the heartbeat channel fills and heartbeats are `overloaded`.
const HEARTBEAT_PENDING: usize = 200_000;

/// What the ingest needs.
#[derive(Clone)]
pub struct Ingest {
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    pub outgoing: mpsc::UnboundedSender<Outgoing>,
    pub heartbeats: mpsc::Sender<Heartbeat>,
    pub shutdown: CancellationToken,
}

/// Counts a message once it is dealt with: `topic` is `alert` or `status`
/// (`other` for anything else), `outcome` is `accepted` (taken into
/// account; a heartbeat once queued for the batch writer), `duplicate` (a
/// redelivered alert event) or `rejected` (see `reject`; a heartbeat of an
/// unknown band found only when the batch is written is counted as
/// accepted here and in `onepress_ingest_rejected_total` there).
pub fn count_message(topic: &str, outcome: &'static str) {
    let kind = if topic.ends_with("/alert") {
        "alert"
    } else if topic.ends_with("/status") {
        "status"
    } else {
        "other"
    };
    metrics::counter!("onepress_ingest_messages_total", "topic" => kind, "outcome" => outcome)
        .increment(1);
}

/// Alert events a device may send in one second; the excess is rejected
/// as `rate_limited` (contract §1).
pub const ALERT_EVENTS_PER_SECOND: u32 = 10;

/// Per device, how many alert events it sent in its current one-second
/// window. Owned by the ingest loop (no lock). Bounded: windows older than
/// a second are dropped whenever the map doubles past what it held after
/// the last sweep, so it holds about the devices heard from in the last
/// second, whatever a flood sends.
pub struct RateLimit {
    per_second: u32,
    windows: HashMap<String, (std::time::Instant, u32)>,
    sweep_at: usize,
}

impl RateLimit {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            windows: HashMap::new(),
            sweep_at: 1024,
        }
    }

    /// Whether one more event from `key` is within its allowance at `now`.
    pub fn admit(&mut self, key: &str, now: std::time::Instant) -> bool {
        const WINDOW: Duration = Duration::from_secs(1);
        if self.windows.len() >= self.sweep_at {
            self.windows
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
            self.sweep_at = (self.windows.len() * 2).max(1024);
        }
        match self.windows.get_mut(key) {
            Some((start, n)) if now.saturating_duration_since(*start) < WINDOW => {
                if *n >= self.per_second {
                    return false;
                }
                *n += 1;
                true
            }
            Some(window) => {
                *window = (now, 1);
                true
            }
            None => {
                self.windows.insert(key.to_string(), (now, 1));
                true
            }
        }
    }

    /// Devices currently tracked.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// Rejections logged one by one per second; past that they are only
/// counted, and the next line says how many were not logged.
const REJECT_LOG_PER_SECOND: u64 = 20;

/// Counts and logs a rejected message. Logging is rate-limited (a flood of
/// bad messages must not become a flood of log lines); counting is not.
pub fn reject(topic: &str, r: &Reject) {
    metrics::counter!("onepress_ingest_rejected_total", "reason" => r.reason()).increment(1);
    log_reject(topic, r);
}

/// The counters of the status path, looked up once (a lookup by name and
/// labels for every heartbeat cost more than the rest of its intake).
struct StatusMetrics {
    accepted: metrics::Counter,
    rejected: metrics::Counter,
    overloaded: metrics::Counter,
}

impl StatusMetrics {
    fn new() -> Self {
        let messages = |outcome: &'static str| metrics::counter!("onepress_ingest_messages_total", "topic" => "status", "outcome" => outcome);
        Self {
            accepted: messages(ACCEPTED),
            rejected: messages(REJECTED),
            overloaded: metrics::counter!("onepress_ingest_rejected_total", "reason" => "overloaded"),
        }
    }
}

/// Logs a rejection, at most [`REJECT_LOG_PER_SECOND`] a second.
fn log_reject(topic: &str, r: &Reject) {
    if let Some(suppressed) = REJECT_LOG.admit(std::time::Instant::now()) {
        warn!(%topic, reason = r.reason(), detail = %r, suppressed, "message rejected");
    }
}

static REJECT_LOG: LogLimiter = LogLimiter::new(REJECT_LOG_PER_SECOND);

/// At most `per_second` admitted a second; says how many were turned away
/// since the last one admitted. Lock-free: two atomics.
pub struct LogLimiter {
    per_second: u64,
    /// The second (since the first call) and how many were seen in it,
    /// packed: second << 32 | count.
    window: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
    start: std::sync::OnceLock<std::time::Instant>,
}

impl LogLimiter {
    pub const fn new(per_second: u64) -> Self {
        Self {
            per_second,
            window: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
            start: std::sync::OnceLock::new(),
        }
    }

    /// `Some(lines not logged before this one)` if this one may be logged.
    pub fn admit(&self, now: std::time::Instant) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let start = *self.start.get_or_init(|| now);
        let second = now.saturating_duration_since(start).as_secs() & 0xffff_ffff;
        let admitted = self
            .window
            .fetch_update(Relaxed, Relaxed, |w| {
                let (s, n) = (w >> 32, w & 0xffff_ffff);
                if s != second {
                    Some(second << 32 | 1)
                } else if n < self.per_second {
                    Some(w + 1)
                } else {
                    None
                }
            })
            .is_ok();
        if admitted {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

impl Ingest {
    /// Runs until the inbound stream ends or shutdown; then finishes what
    /// is in flight (unacknowledged messages are redelivered by the broker).
    pub async fn run(self, client: AsyncClient, mut inbound: mpsc::Receiver<Publish>) {
        let mut in_flight: FuturesOrdered<
            std::pin::Pin<Box<dyn std::future::Future<Output = Done> + Send>>,
        > = FuturesOrdered::new();
        // Per band, the completion of its latest alert message: the next one
        // waits for it, so one band's events reach the engine in order (a
        // cancel never overtakes the press it cancels).
        let mut chains: HashMap<String, (u64, oneshot::Receiver<()>)> = HashMap::new();
        let mut seq: u64 = 0;
        let mut limit = RateLimit::new(ALERT_EVENTS_PER_SECOND);
        let mut open = true;
        let status_metrics = StatusMetrics::new();
        loop {
            tokio::select! {
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    let Done { ack: to_ack, chain } = done;
                    if let Some((key, s)) = chain {
                        if chains.get(&key).is_some_and(|(latest, _)| *latest == s) {
                            chains.remove(&key);
                        }
                    }
                    ack(&client, to_ack).await;
                }
                message = inbound.recv(), if open && in_flight.len() < MAX_IN_FLIGHT => match message {
                    Some(p) => {
                        if p.topic.ends_with("/status") {
                            // A heartbeat is dealt with at once (it waits for
                            // nothing); a QoS 1 one is acknowledged in its turn.
                            self.status(&p, &status_metrics);
                            if p.qos != QoS::AtMostOnce {
                                in_flight.push_back(Box::pin(std::future::ready(Done {
                                    ack: Some(p),
                                    chain: None,
                                })));
                            }
                            continue;
                        }
                        seq += 1;
                        let is_alert = p.topic.ends_with("/alert");
                        if is_alert && !limit.admit(&p.topic, std::time::Instant::now()) {
                            // Answered at once, acknowledged in its turn;
                            // it never waits behind the band's other events.
                            reject(&p.topic, &Reject::RateLimited(ALERT_EVENTS_PER_SECOND));
                            count_message(&p.topic, REJECTED);
                            in_flight.push_back(Box::pin(std::future::ready(Done {
                                ack: (p.qos != QoS::AtMostOnce).then_some(p),
                                chain: None,
                            })));
                            continue;
                        }
                        let (previous, turn) = if is_alert {
                            let (tx, rx) = oneshot::channel();
                            let previous = chains.insert(p.topic.clone(), (seq, rx)).map(|(_, rx)| rx);
                            (previous, Some(Turn { key: p.topic.clone(), seq, done: tx }))
                        } else {
                            (None, None)
                        };
                        in_flight.push_back(Box::pin(self.clone().handle(p, previous, turn)));
                    }
                    None => open = false,
                },
                _ = self.shutdown.cancelled(), if open => open = false,
                else => break,
            }
            if !open && in_flight.is_empty() {
                break;
            }
        }
        info!("ingest stopped");
    }

    /// Works on one message, after the band's previous one; says whether
    /// to acknowledge it.
    async fn handle(
        self,
        p: Publish,
        previous: Option<oneshot::Receiver<()>>,
        turn: Option<Turn>,
    ) -> Done {
        if let Some(previous) = previous {
            // An error only means the previous one gave up (stopping).
            let _ = previous.await;
        }
        let done = match payload::parse(&p.topic, &p.payload) {
            Err(r) => {
                reject(&p.topic, &r);
                count_message(&p.topic, REJECTED);
                true
            }
            Ok(Inbound::Status(..)) => {
                // Never here: `run` deals with status topics itself.
                self.status(&p, &StatusMetrics::new());
                true
            }
            Ok(Inbound::Alert(device, event)) => {
                let span = info_span!("press", device = %device, event = %event.event_id, alert_id = tracing::field::Empty);
                match self.press(&p.topic, device, event).instrument(span).await {
                    Some(outcome) => {
                        count_message(&p.topic, outcome);
                        true
                    }
                    None => false,
                }
            }
        };
        let chain = turn.map(|t| {
            let _ = t.done.send(());
            (t.key, t.seq)
        });
        Done {
            ack: (done && p.qos != QoS::AtMostOnce).then_some(p),
            chain,
        }
    }

    /// Takes a heartbeat (any message on a `…/status` topic): queued for
    /// the batch writer, or rejected and counted (`overloaded` when the
    /// writer's queue is full). Never waits.
    fn status(&self, p: &Publish, m: &StatusMetrics) {
        match payload::parse(&p.topic, &p.payload) {
            Err(r) => {
                reject(&p.topic, &r);
                m.rejected.increment(1);
            }
            Ok(Inbound::Status(device, beat)) => {
                let now = engine::now();
                let hb = Heartbeat {
                    device_id: device,
                    at: beat.ts.filter(|t| *t <= now).unwrap_or(now),
                    battery: beat.battery,
                    position: beat.position,
                };
                if self.heartbeats.try_send(hb).is_err() {
                    let r = Reject::Overloaded(self.heartbeats.max_capacity());
                    m.overloaded.increment(1);
                    log_reject(&p.topic, &r);
                    m.rejected.increment(1);
                } else {
                    m.accepted.increment(1);
                }
            }
            Ok(Inbound::Alert(..)) => {
                // A `…/status` topic never parses as an alert.
                reject(&p.topic, &Reject::UnknownTopic(p.topic.clone()));
                m.rejected.increment(1);
            }
        }
    }

    /// Takes a press into account and says how (`accepted`, `duplicate`,
    /// `rejected`); None if stopping before it could be.
    async fn press(
        &self,
        topic: &str,
        device: DeviceId,
        event: AlertEvent,
    ) -> Option<&'static str> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.try_press(topic, &device, &event).await {
                Ok(outcome) => return Some(outcome),
                Err(CallError::Stopped) => return None,
                // Would fail the same way every time: refused and counted,
                // so that the acknowledgements queued behind it go out.
                Err(e @ (CallError::Failed(_) | CallError::Refused(_))) => {
                    reject(topic, &Reject::Refused(e.to_string()));
                    return Some(REJECTED);
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?backoff, "press not stored yet; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn try_press(
        &self,
        topic: &str,
        device: &DeviceId,
        event: &AlertEvent,
    ) -> Result<&'static str, CallError> {
        let unavailable = |e: crate::store::StoreError| {
            if e.is_transient() {
                CallError::Unavailable(e.to_string())
            } else {
                CallError::Failed(e.to_string())
            }
        };
        let known = self
            .store
            .press_context(device, &event.event_id)
            .await
            .map_err(unavailable)?;
        if let Some(seen) = known.seen {
            debug!("redelivered event");
            let notice = BandNotice::received(seen, event.event_id.clone());
            let _ = self.outgoing.send(Outgoing::Band(device.clone(), notice));
            return Ok(DUPLICATE);
        }
        let Some((senior, home)) = known.owner else {
            reject(topic, &Reject::UnknownDevice(device.clone()));
            return Ok(REJECTED);
        };
        let press = Press {
            device_id: device.clone(),
            event_id: event.event_id.clone(),
            kind: event.kind,
            device_ts: event.ts,
            position: event.position,
            senior,
            home,
            new_alert_id: AlertId::generate(),
        };
        match self.engine.call(Command::Press(press)).await? {
            Reply::Press { outcome, alert_id } => {
                if let Some(id) = &alert_id {
                    tracing::Span::current().record("alert_id", tracing::field::display(id));
                }
                match outcome {
                    PressOutcome::NothingToCancel => {
                        reject(topic, &Reject::NothingToCancel);
                        return Ok(REJECTED);
                    }
                    PressOutcome::Redelivered => {
                        debug!("event already in the alert");
                        return Ok(DUPLICATE);
                    }
                    PressOutcome::Opened => {
                        let kind = if event.kind == PressKind::Fall {
                            "fall"
                        } else {
                            "sos"
                        };
                        metrics::counter!("onepress_alerts_total", "kind" => kind).increment(1);
                        info!(?outcome, "alert opened");
                    }
                    _ => info!(?outcome, "press taken into account"),
                }
                Ok(ACCEPTED)
            }
            other => {
                warn!(?other, "unexpected reply to a press");
                Ok(ACCEPTED)
            }
        }
    }
}

/// A message's place in its band's order.
struct Turn {
    key: String,
    seq: u64,
    done: oneshot::Sender<()>,
}

/// What became of a message.
struct Done {
    /// The message, if it is to be acknowledged now.
    ack: Option<Publish>,
    /// Its place in its band's order, to forget once it is the latest.
    chain: Option<(String, u64)>,
}

async fn ack(client: &AsyncClient, done: Option<Publish>) {
    if let Some(p) = done {
        if let Err(e) = client.ack(&p).await {
            warn!(error = %e, "cannot acknowledge: the MQTT client is gone");
        }
    }
}

/// Writes heartbeats in batches: the latest word of each band, one
/// transaction at a time, every few hundred milliseconds or as soon as
/// enough bands are waiting.
///
/// Intake never waits for the store: while one batch is being written,
/// the next one gathers (a band heard from again is merged, not queued
/// twice), so under load batches grow and the store writes fewer, larger
/// ones. Bounded: past [`HEARTBEAT_PENDING`] bands waiting, it stops taking
/// from `rx` until the write in flight is done; the channel then fills and
/// the ingest counts new heartbeats as `overloaded`.
pub async fn heartbeats(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Heartbeat>,
    shutdown: CancellationToken,
) {
    let mut pending: HashMap<DeviceId, Heartbeat> = HashMap::new();
    let mut tick = tokio::time::interval(HEARTBEAT_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut writing: Option<tokio::task::JoinHandle<()>> = None;
    let mut due = false;
    let mut open = true;
    loop {
        tokio::select! {
            hb = rx.recv(), if open && pending.len() < HEARTBEAT_PENDING => match hb {
                Some(hb) => {
                    merge(&mut pending, hb);
                    // Take what else is already waiting without going
                    // round the select for each.
                    while pending.len() < HEARTBEAT_PENDING {
                        match rx.try_recv() {
                            Ok(hb) => merge(&mut pending, hb),
                            Err(_) => break,
                        }
                    }
                }
                None => open = false,
            },
            _ = tick.tick() => due = true,
            _ = shutdown.cancelled(), if open => open = false,
            done = async {
                match writing.as_mut() {
                    Some(w) => w.await,
                    None => std::future::pending().await,
                }
            }, if writing.is_some() => {
                writing = None;
                if let Err(e) = done {
                    warn!(error = %e, "the heartbeat writer failed");
                }
            }
        }
        let ready = due || pending.len() >= HEARTBEAT_BATCH || !open;
        if writing.is_none() && ready && !pending.is_empty() {
            due = false;
            let batch: Vec<Heartbeat> = pending.drain().map(|(_, hb)| hb).collect();
            writing = Some(tokio::spawn(write_heartbeats(store.clone(), batch)));
        }
        if !open && pending.is_empty() {
            if let Some(last) = writing.take() {
                let _ = last.await;
            }
            break;
        }
    }
}

async fn write_heartbeats(store: Arc<dyn Store>, batch: Vec<Heartbeat>) {
    match store.record_heartbeats(&batch).await {
        Ok(unknown) => {
            for device in unknown {
                let topic = format!("wristbands/{device}/status");
                reject(&topic, &Reject::UnknownDevice(device));
            }
        }
        Err(e) => {
            warn!(error = %e, count = batch.len(), "heartbeats not recorded (the next ones will be)")
        }
    }
}

fn merge(pending: &mut HashMap<DeviceId, Heartbeat>, hb: Heartbeat) {
    match pending.get_mut(&hb.device_id) {
        Some(old) => {
            old.at = old.at.max(hb.at);
            old.battery = hb.battery.or(old.battery);
            old.position = hb.position.or(old.position);
        }
        None => {
            pending.insert(hb.device_id.clone(), hb);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_device_gets_ten_alert_events_a_second_and_others_are_not_touched() {
        let mut limit = RateLimit::new(10);
        let t = Instant::now();
        let flood = (0..1000)
            .filter(|_| limit.admit("wristbands/a/alert", t))
            .count();
        assert_eq!(flood, 10);
        assert!(limit.admit("wristbands/b/alert", t));
        // Still within the first second: nothing more for a.
        assert!(!limit.admit("wristbands/a/alert", t + Duration::from_millis(999)));
        // A new second: a new allowance.
        let next = t + Duration::from_millis(1000);
        let again = (0..20)
            .filter(|_| limit.admit("wristbands/a/alert", next))
            .count();
        assert_eq!(again, 10);
    }

    #[test]
    fn the_rate_limit_forgets_quiet_devices() {
        let mut limit = RateLimit::new(10);
        let t = Instant::now();
        for i in 0..100_000 {
            // Each device once, a millisecond apart: at most about a
            // second's worth (1,000) is worth keeping.
            let now = t + Duration::from_millis(i);
            assert!(limit.admit(&format!("wristbands/d{i}/alert"), now));
            assert!(
                limit.len() <= 2 * 1024 + 1,
                "{} tracked at {i}",
                limit.len()
            );
        }
        assert!(!limit.is_empty());
    }

    #[test]
    fn the_log_limiter_admits_a_few_a_second_and_counts_the_rest() {
        let limiter = LogLimiter::new(3);
        let t = Instant::now();
        let admitted: Vec<_> = (0..10).map(|_| limiter.admit(t)).collect();
        assert_eq!(admitted.iter().filter(|a| a.is_some()).count(), 3);
        assert_eq!(admitted[0], Some(0));
        // The next second: admitted again, saying how many were not logged.
        let later = t + Duration::from_millis(1001);
        assert_eq!(limiter.admit(later), Some(7));
        assert_eq!(limiter.admit(later), Some(0));
    }
}
