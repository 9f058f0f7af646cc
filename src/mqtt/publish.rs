//! Publishes committed messages: notices to bands and offers to phones,
//! QoS 1 and retained (a band or phone that connects later gets the latest
//! at once). Fed by the engine after each commit, never before.

use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{notify_topic, offers_topic};
use crate::domain::Outgoing;

/// The topic and JSON payload of a message.
pub fn encode(message: &Outgoing) -> (String, Vec<u8>) {
    let (topic, body) = match message {
        Outgoing::Band(device, notice) => (notify_topic(device), serde_json::to_vec(notice)),
        Outgoing::Phone(volunteer, m) => (offers_topic(volunteer), serde_json::to_vec(m)),
    };
    // Serializing these plain structs cannot fail; an empty body would be
    // visible to the receiver rather than a silent drop.
    (topic, body.unwrap_or_default())
}

/// Publishes everything that arrives on `rx` until it closes.
pub async fn run(client: AsyncClient, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(message) = rx.recv().await {
        let (topic, payload) = encode(&message);
        debug!(%topic, "publish");
        if let Err(e) = client
            .publish(&topic, QoS::AtLeastOnce, true, payload)
            .await
        {
            warn!(%topic, error = %e, "publish failed: the MQTT client is gone");
        }
    }
}
