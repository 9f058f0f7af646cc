//! The simulator's MQTT side: one connection per login (a band, a gateway,
//! a phone, or the admin watching every phone), each with a task that only
//! polls its event loop and forwards what arrives, stamped with the instant
//! it arrived, to one inbox. A connection refused or lost is retried with a
//! back-off (a login just issued reaches Mosquitto a moment later), and
//! every CONNACK subscribes again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Who logs in.
#[derive(Debug, Clone)]
pub struct Login {
    pub client_id: String,
    pub username: String,
    pub password: String,
}

/// A message received, with the instant its connection read it.
#[derive(Debug)]
pub struct Incoming {
    pub topic: String,
    pub payload: Vec<u8>,
    pub at: Instant,
}

/// Where a connection stands.
#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Not subscribed yet; the broker's last refusal or error, if any.
    Connecting(Option<String>),
    Subscribed,
}

/// Why a connection could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{who} was not logged in and subscribed within {secs} s (last: {last})")]
    NotSubscribed {
        who: String,
        secs: u64,
        last: String,
    },
    #[error("publishing as {who}: {source}")]
    Publish {
        who: String,
        #[source]
        source: rumqttc::ClientError,
    },
}

/// One MQTT connection of the simulator.
pub struct Link {
    who: String,
    client: AsyncClient,
    state: watch::Receiver<State>,
}

/// The settings every link shares.
#[derive(Clone)]
pub struct Links {
    pub host: String,
    pub port: u16,
    pub inbox: mpsc::UnboundedSender<Incoming>,
    /// Connections lost or refused after their first login.
    pub reconnects: Arc<AtomicUsize>,
    pub stop: CancellationToken,
}

impl Links {
    /// Opens a connection that subscribes to `filters` on every CONNACK.
    /// `capacity` bounds the requests waiting to be sent.
    pub fn open(&self, login: Login, filters: Vec<String>, capacity: usize) -> Link {
        let mut opts = MqttOptions::new(&login.client_id, &self.host, self.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_credentials(&login.username, &login.password)
            .set_max_packet_size(1 << 20, 64 * 1024)
            .set_inflight(1000);
        let (client, mut eventloop) = AsyncClient::new(opts, capacity);
        let (state_tx, state) = watch::channel(State::Connecting(None));
        let (links, subscriber) = (self.clone(), client.clone());
        tokio::spawn(async move {
            let mut logged_in = false;
            let mut backoff = Duration::from_millis(100);
            loop {
                let ev = tokio::select! {
                    _ = links.stop.cancelled() => break,
                    ev = eventloop.poll() => ev,
                };
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        logged_in = true;
                        backoff = Duration::from_millis(100);
                        // Never wait on the request queue inside the poll loop.
                        let (c, f) = (subscriber.clone(), filters.clone());
                        tokio::spawn(async move {
                            for topic in f {
                                let _ = c.subscribe(topic, QoS::AtLeastOnce).await;
                            }
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        let granted = ack
                            .return_codes
                            .iter()
                            .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)));
                        let _ = state_tx.send(if granted {
                            State::Subscribed
                        } else {
                            State::Connecting(Some("subscription refused".into()))
                        });
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = links.inbox.send(Incoming {
                            topic: p.topic,
                            payload: p.payload.to_vec(),
                            at: Instant::now(),
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if logged_in {
                            links.reconnects.fetch_add(1, Ordering::Relaxed);
                            logged_in = false;
                        }
                        let _ = state_tx.send(State::Connecting(Some(e.to_string())));
                        tokio::select! {
                            _ = links.stop.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
            let _ = subscriber.try_disconnect();
            // Let the DISCONNECT go out.
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Ok(ev) = eventloop.poll().await {
                    if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        });
        Link {
            who: login.client_id,
            client,
            state,
        }
    }
}

impl Link {
    /// Waits until the connection is logged in and subscribed.
    pub async fn subscribed(&self, within: Duration) -> Result<(), LinkError> {
        let mut state = self.state.clone();
        let done = tokio::time::timeout(within, state.wait_for(|s| *s == State::Subscribed)).await;
        match done {
            Ok(Ok(_)) => Ok(()),
            _ => Err(LinkError::NotSubscribed {
                who: self.who.clone(),
                secs: within.as_secs(),
                last: match &*self.state.borrow() {
                    State::Connecting(Some(why)) => why.clone(),
                    State::Connecting(None) => "no answer".into(),
                    State::Subscribed => "subscribed".into(),
                },
            }),
        }
    }

    pub async fn publish(&self, topic: String, qos: QoS, payload: String) -> Result<(), LinkError> {
        self.client
            .publish(topic, qos, false, payload)
            .await
            .map_err(|source| LinkError::Publish {
                who: self.who.clone(),
                source,
            })
    }
}
