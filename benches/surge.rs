//! A surge (issue 10, benchmark 2d): `SURGE_PRESSES` bands (default
//! 10,000) press within one second with twice as many volunteers on duty
//! (default 20,000), on each backend, against the real binary on a fresh
//! store over real MQTT. Prints the time from the first press until every
//! press was stored (its `received` on the band's topic) and until every
//! alert was offered, the per-press latencies, and checks: every press
//! stored once and offered (or, with no candidate left, escalated), no
//! volunteer offered two alerts at once.
//!
//! Run: `cargo bench --bench surge` (`SURGE_PRESSES`, `SURGE_VOLUNTEERS`,
//! `BENCH_BACKENDS=sqlite|postgres`).

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::{Backend, Service, env_usize, show};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let presses = env_usize("SURGE_PRESSES", 10_000).max(1);
    let volunteers = env_usize("SURGE_VOLUNTEERS", presses * 2);
    let mut failures = Vec::new();
    for backend in Backend::from_env()? {
        let dir = tempfile::tempdir()?;
        let (url, pg) = support::fresh_store(backend, dir.path()).await?;
        support::seed(&url, presses, volunteers).await?;
        let service = Service::start(backend, &url, dir.path(), &[]).await?;
        println!(
            "\n== {} · {presses} bands press within one second · {volunteers} volunteers on duty",
            backend.name()
        );
        let mut out = support::presses::run(
            &service,
            presses,
            presses,
            presses as f64,
            false,
            Duration::from_secs(60),
        )
        .await?;
        if let Ok(path) = std::env::var("BENCH_METRICS_TO") {
            std::fs::write(
                format!("{path}.{}", backend.name()),
                service.metrics().await?,
            )?;
        }
        let stored = service
            .count("SELECT COUNT(*) FROM alerts WHERE event_id LIKE '%-p%'")
            .await?;
        let distinct = service
            .count("SELECT COUNT(DISTINCT device_id) FROM alerts WHERE event_id LIKE '%-p%'")
            .await?;
        let escalated = service
            .count("SELECT COUNT(*) FROM alerts WHERE escalated AND volunteer_id IS NULL")
            .await?;
        let (rss, hwm) = service.memory_kib();
        let secs = |d: Option<Duration>| d.map_or("never".into(), |d| format!("{d:.2?}"));
        println!("published in             {:.2?}", out.publish_span);
        println!("all stored after         {}", secs(out.all_received_after));
        println!("all offered after        {}", secs(out.all_offered_after));
        println!("press → offer            {}", show(&mut out.to_offer));
        println!("press → received         {}", show(&mut out.to_received));
        println!(
            "presses {} · received {} · offered {} · stored {stored} (bands {distinct}) · \
             escalated unoffered {escalated} · double offers {} · later offers {} · \
             service RSS {} MiB (peak {} MiB)",
            out.presses,
            out.received,
            out.offered,
            out.double_offers,
            out.later_offers,
            rss / 1024,
            hwm / 1024
        );
        if out.received != presses
            || out.offered + escalated as usize != presses
            || stored != presses as i64
            || distinct != presses as i64
        {
            failures.push(format!(
                "{}: {presses} presses, {} received, {} offered, {escalated} escalated, \
                 {stored} stored",
                backend.name(),
                out.received,
                out.offered
            ));
        }
        if out.double_offers > 0 {
            failures.push(format!(
                "{}: {} double offers",
                backend.name(),
                out.double_offers
            ));
        }
        drop(service);
        if let Some(pg) = pg {
            pg.drop_it().await;
        }
    }
    if !failures.is_empty() {
        anyhow::bail!("wrong behaviour in the surge: {}", failures.join("; "));
    }
    Ok(())
}
