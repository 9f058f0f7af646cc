//! The alert path under a sustained rate (issue 10, benchmark 2c): for each
//! rate (default 100, 500 and 2,000 presses a second) and each backend, a
//! fresh service (the real binary) on a fresh store, presses for
//! `ALERT_SECONDS` (default 60) over real MQTT, and for each press the time
//! from its publish to its first offer on a volunteer's topic and to its
//! `received` on the band's; every press must be stored and offered, and
//! no volunteer offered two alerts at once. Each band calls its alert off
//! once the offer is seen (a `cancel` event), which frees the volunteer:
//! a pool of bands (5 seconds' worth) and twice as many volunteers serve
//! the whole run.
//!
//! Beside it, in the same run: a bare broker round trip at the same rate
//! (publish → subscribe, QoS 1, on the same broker) and a bare
//! insert-and-commit loop on the same store: the floors under the figure.
//!
//! Run: `cargo bench --bench alert_path`
//! (`ALERT_RATES=100,500`, `ALERT_SECONDS=10`, `BENCH_BACKENDS=sqlite`).

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use support::{Backend, Service, env_usize, show};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rates: Vec<usize> = std::env::var("ALERT_RATES")
        .unwrap_or_else(|_| "100,500,2000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let seconds = env_usize("ALERT_SECONDS", 60).max(1);
    let mut failures = Vec::new();
    for backend in Backend::from_env()? {
        for &rate in &rates {
            let bands = rate * 5;
            let volunteers = bands * 2;
            let dir = tempfile::tempdir()?;
            let (url, pg) = support::fresh_store(backend, dir.path()).await?;
            support::seed(&url, bands, volunteers).await?;
            let service = Service::start(backend, &url, dir.path(), &[]).await?;
            println!(
                "\n== {} · {rate} presses/s for {seconds} s · {bands} bands, {volunteers} volunteers",
                backend.name()
            );
            let mut rtt = support::broker_round_trip(&service, rate, 10).await?;
            println!("bare broker round trip   {}", show(&mut rtt));
            let mut commits = support::commit_loop(&url, 5).await?;
            println!("bare insert+commit       {}", show(&mut commits));
            let count = rate * seconds;
            let mut out = support::presses::run(
                &service,
                bands,
                count,
                rate as f64,
                std::env::var("ALERT_CANCEL").map_or(true, |v| v != "0"),
                Duration::from_secs(30),
            )
            .await?;
            println!("press → offer            {}", show(&mut out.to_offer));
            println!("press → received         {}", show(&mut out.to_received));
            if let Ok(path) = std::env::var("BENCH_METRICS_TO") {
                std::fs::write(&path, service.metrics().await?)?;
            }
            let stored = service
                .count("SELECT COUNT(*) FROM alerts WHERE event_id LIKE '%-p%'")
                .await?;
            let (rss, hwm) = service.memory_kib();
            println!(
                "presses {} (published in {:.1?}) · received {} · offered {} · stored {} · \
                 lost {} · double offers {} · later offers {} · waited for a free band {} · \
                 service RSS {} MiB (peak {} MiB)",
                out.presses,
                out.publish_span,
                out.received,
                out.offered,
                stored,
                out.presses - out.received.min(out.offered),
                out.double_offers,
                out.later_offers,
                out.waited_for_band,
                rss / 1024,
                hwm / 1024
            );
            if out.received != count || out.offered != count || stored != count as i64 {
                failures.push(format!(
                    "{} at {rate}/s: {} presses, {} received, {} offered, {stored} stored",
                    backend.name(),
                    count,
                    out.received,
                    out.offered
                ));
            }
            if out.double_offers > 0 {
                failures.push(format!(
                    "{} at {rate}/s: {} double offers",
                    backend.name(),
                    out.double_offers
                ));
            }
            drop(service);
            if let Some(pg) = pg {
                pg.drop_it().await;
            }
        }
    }
    if !failures.is_empty() {
        anyhow::bail!("wrong behaviour under load: {}", failures.join("; "));
    }
    Ok(())
}
