//! Logging: one `tracing` subscriber for the process, filtered by
//! `RUST_LOG` (default `info`). Tests install it once with a sink of their
//! choosing. Also the catalogue of the metrics and their histogram buckets
//! (the recorder itself is installed by `app::metrics_handle`).

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt};

/// A subscriber writing human-readable lines to `sink`.
pub fn get_subscriber<Sink>(default_filter: &str, sink: Sink) -> impl Subscriber + Send + Sync
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::registry().with(filter).with(
        tracing_subscriber::fmt::layer()
            .with_writer(sink)
            .with_target(true),
    )
}

/// Installs the subscriber for the whole process (once).
pub fn init_subscriber(subscriber: impl Subscriber + Send + Sync) {
    // A second install (tests) is harmless: the first one stays.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Upper bounds (seconds) of the latency histograms' buckets: 1 ms to
/// 10 min, dense where the targets are (3 min response, 10 min arrival).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 45.0,
    60.0, 90.0, 120.0, 150.0, 180.0, 240.0, 300.0, 420.0, 600.0,
];

/// Upper bounds of `onepress_engine_batch_size` (commands per batch, at
/// most 512).
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The catalogue of the service's metrics: gives each its help text (the
/// `# HELP` lines of `/metrics`). Called once the recorder is installed.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "onepress_ingest_messages_total",
        "MQTT messages taken in, by topic (alert|status) and outcome (accepted|duplicate|rejected)"
    );
    describe_counter!(
        "onepress_ingest_rejected_total",
        "MQTT messages rejected, by reason"
    );
    describe_counter!("onepress_alerts_total", "Alerts opened, by kind (sos|fall)");
    describe_counter!(
        "onepress_broker_refused_total",
        "What the embedded broker refused by the access rule, by action (connect|subscribe|publish)"
    );
    describe_counter!(
        "onepress_broker_dropped_total",
        "Messages the embedded broker dropped (a full session queue, an expired message)"
    );
    describe_gauge!(
        "onepress_alerts_active",
        "Active alerts, by state (open|offered|accepted|on_scene)"
    );
    describe_counter!(
        "onepress_offers_total",
        "Offers, by outcome (sent|accepted|declined|expired|withdrawn)"
    );
    describe_counter!(
        "onepress_breaches_total",
        "Targets missed, by target (response|arrival)"
    );
    describe_histogram!(
        "onepress_press_to_offer_seconds",
        Unit::Seconds,
        "From the press to the alert's first offer"
    );
    describe_histogram!(
        "onepress_press_to_accept_seconds",
        Unit::Seconds,
        "From the press to the first accept or assignment"
    );
    describe_histogram!(
        "onepress_store_commit_seconds",
        Unit::Seconds,
        "Time to commit one engine batch"
    );
    describe_histogram!(
        "onepress_engine_batch_size",
        Unit::Count,
        "Commands handled in one engine batch"
    );
    describe_gauge!(
        "onepress_mqtt_connected",
        "1 while connected and subscribed at the broker"
    );
    describe_gauge!(
        "onepress_store_up",
        "1 if the store answered a ping at the last scrape"
    );
}
