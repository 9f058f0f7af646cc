//! The embedded MQTT broker (rumqttd), for a machine with nothing else
//! installed. `Broker::start` blocks, so it runs on its own thread.
//!
//! Sizing, measured: rumqttd keeps each subscription filter's messages in an
//! in-memory log of `max_segment_size × max_segment_count`, and a subscriber
//! further behind than that silently loses messages. So alerts get an ample
//! log, heartbeats a small one, and every other filter (a band's notify
//! topic, a phone's offers topic) a small default. Its sessions live in RAM
//! only: after a broker restart the bands' 10-second resend (the contract's
//! `received` rule) is what keeps presses from being lost.

use std::collections::HashMap;
use std::net::SocketAddr;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, SegmentConfig, ServerSettings};
use tracing::{error, info};

/// The largest packet the embedded broker accepts (anything over the
/// contract's 4 KiB still reaches the service, which counts the rejection).
pub const MAX_PACKET: usize = 256 * 1024;

const MIB: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("the embedded MQTT broker cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the embedded MQTT broker thread: {0}")]
    Thread(std::io::Error),
}

fn segment(size: usize, count: usize) -> SegmentConfig {
    SegmentConfig {
        max_segment_size: size,
        max_segment_count: count,
    }
}

/// The broker's configuration for one MQTT 3.1.1 listener at `addr`.
pub fn config(addr: SocketAddr) -> Config {
    let mut custom = HashMap::new();
    custom.insert("wristbands/+/alert".to_string(), segment(64 * MIB, 8));
    custom.insert(
        "$share/onepress/wristbands/+/alert".to_string(),
        segment(64 * MIB, 8),
    );
    custom.insert("wristbands/+/status".to_string(), segment(4 * MIB, 2));
    let server = ServerSettings {
        name: "onepress-embedded".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: MAX_PACKET,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            max_segment_size: MIB,
            max_segment_count: 2,
            custom_segment: Some(custom),
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        // Metrics stay off: `alerts` or `meters` alone panics.
        ..Default::default()
    }
}

/// Starts the broker on its own thread, after checking that `addr` is free
/// (rumqttd would only log a failure to bind).
pub fn start(addr: SocketAddr) -> Result<(), EmbeddedError> {
    drop(std::net::TcpListener::bind(addr).map_err(|source| EmbeddedError::Bind { addr, source })?);
    let config = config(addr);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(EmbeddedError::Thread)?;
    info!(%addr, "embedded MQTT broker listening");
    Ok(())
}
