//! Logging: one `tracing` subscriber for the process, filtered by
//! `RUST_LOG` (default `info`). Tests install it once with a sink of their
//! choosing.

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
