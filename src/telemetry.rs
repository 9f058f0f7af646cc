//! Logging: one `tracing` subscriber for the process, filtered by
//! `RUST_LOG` (default `info`). Tests install it once with a sink of their
//! choosing. Also the catalogue of the metrics and their histogram buckets
//! (the recorder itself is installed by `app::metrics_handle`).

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people; coloured only when `ansi` is true (a terminal).
    #[default]
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

/// A subscriber writing to `sink` in `format`; colour codes only with
/// `ansi` (pass whether the sink is a terminal: a file or a pipe gets plain
/// text).
pub fn get_subscriber<Sink>(
    default_filter: &str,
    format: LogFormat,
    ansi: bool,
    sink: Sink,
) -> Box<dyn Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_writer(sink)
                    .with_ansi(ansi)
                    .with_target(true),
            ),
        ),
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(sink)
                    .with_ansi(false)
                    .with_target(true),
            ),
        ),
    }
}

/// Installs the subscriber for the whole process (once).
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) {
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
        "onepress_notifications_total",
        "Notifications tried, by channel and outcome (delivered|retrying|failed|no_recipient)"
    );
    describe_counter!(
        "onepress_store_commit_failures_total",
        "Engine commits that failed, by kind (transient|permanent)"
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink that keeps what is written.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, ansi: bool) -> String {
        let sink = Capture::default();
        let out = sink.clone();
        let subscriber = get_subscriber("info", format, ansi, move || sink.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("press", alert_id = "a-1");
            let _e = span.enter();
            tracing::warn!(device = "band-1", "message rejected");
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn plain_text_has_no_colour_codes() {
        let text = capture(LogFormat::Text, false);
        assert!(text.contains("message rejected"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(capture(LogFormat::Text, true).contains('\u{1b}'));
    }

    #[test]
    fn json_is_one_object_a_line() {
        let text = capture(LogFormat::Json, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["fields"]["message"], "message rejected");
        assert_eq!(v["fields"]["device"], "band-1");
        assert_eq!(v["span"]["alert_id"], "a-1");
    }
}
