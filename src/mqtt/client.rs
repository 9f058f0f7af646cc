//! The service's MQTT connection: one task owns the rumqttc event loop and
//! only polls it (publishing from inside the loop deadlocks), forwarding
//! every incoming PUBLISH to the ingest. The session is persistent
//! (`clean_session(false)` under the fixed client id) and acknowledgements
//! are manual: the ingest acks a message only once what it caused is
//! committed. On any error the loop logs, backs off and polls again, which
//! reconnects; it subscribes again on every CONNACK.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::payload::Reject;
use super::{ALERT_FILTER, STATUS_FILTER};

/// The largest packet the service takes from a broker. Anything between the
/// contract's 4 KiB and this is counted as `too_large`; a broker should
/// refuse anything larger (the shipped mosquitto.conf does).
pub const MAX_INCOMING_PACKET: usize = 1024 * 1024;

/// QoS 1 messages waiting for the ingest are bounded by the protocol: a
/// broker has at most 65,535 unacknowledged ones out to a client, and the
/// ingest acknowledges only once a message is dealt with.
const QOS1_BOUND: usize = 65_535;
/// QoS 0 messages (heartbeats) have no such bound: past this many messages
/// waiting, a new QoS 0 one is dropped and counted (`overloaded`), so that a
/// flood never grows memory without limit. A band's next heartbeat will do.
pub const QOS0_ROOM: usize = 10_000;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// A live connection: the client to ack and publish with, the stream of
/// incoming messages, and whether the broker is reachable and our
/// subscriptions are in place right now.
pub struct Connection {
    pub client: AsyncClient,
    pub inbound: mpsc::Receiver<Publish>,
    pub connected: watch::Receiver<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the connection task. It connects in the background.
pub fn connect(target: &Target, shutdown: CancellationToken) -> Connection {
    let mut options = MqttOptions::new(&target.client_id, &target.host, target.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MAX_INCOMING_PACKET, 64 * 1024)
        .set_inflight(200);
    if let Some(user) = &target.username {
        options.set_credentials(user, target.password.clone().unwrap_or_default());
    }
    let (client, mut eventloop) = AsyncClient::new(options, 4096);
    // Small packets (acks, offers, notices) go out at once: with Nagle's
    // algorithm a write waits for the broker's delayed ACK of the previous
    // one, up to 40 ms on Linux (measured: press-to-offer p50 45 ms at 100
    // presses a second, against 10 ms without it).
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let (tx, inbound) = mpsc::channel(QOS1_BOUND + QOS0_ROOM);
    let (connected_tx, connected) = watch::channel(false);
    let task = tokio::spawn(poll(eventloop, client.clone(), tx, connected_tx, shutdown));
    Connection {
        client,
        inbound,
        connected,
        task,
    }
}

async fn poll(
    mut eventloop: EventLoop,
    client: AsyncClient,
    tx: mpsc::Sender<Publish>,
    connected: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                info!(
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                backoff = Duration::from_millis(100);
                // Never await a request from inside the loop: it is the loop
                // that drains the request channel.
                let c = client.clone();
                tokio::spawn(async move {
                    let filters = [ALERT_FILTER, STATUS_FILTER].map(|f| rumqttc::SubscribeFilter {
                        path: f.to_string(),
                        qos: QoS::AtLeastOnce,
                    });
                    if let Err(e) = c.subscribe_many(filters).await {
                        warn!(error = %e, "cannot subscribe");
                    }
                });
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                // Ready only once presses can actually reach us.
                connected.send_replace(true);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.qos == QoS::AtMostOnce && tx.capacity() <= QOS1_BOUND {
                    let waiting = tx.max_capacity() - tx.capacity();
                    super::ingest::reject(&p.topic, &Reject::Overloaded(waiting));
                    super::ingest::count_message(&p.topic, super::ingest::REJECTED);
                    continue;
                }
                match tx.try_send(p) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                    Err(mpsc::error::TrySendError::Full(p)) => {
                        // Past the protocol's bound: a broker out of spec.
                        // Wait rather than lose a QoS 1 message.
                        warn!("more unacknowledged messages than MQTT allows; waiting");
                        if tx.send(p).await.is_err() {
                            break;
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                connected.send_replace(false);
                warn!(error = %e, retry_in = ?backoff, "MQTT connection error");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                // At most a second apart: while the service is away from a
                // broker that came back, presses reach no subscriber.
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    connected.send_replace(false);
    // A clean DISCONNECT, so the broker keeps the session and does not
    // publish a will; then poll until it is out (bounded).
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(ev) = eventloop.poll().await {
                if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }
    info!("MQTT connection closed");
}
