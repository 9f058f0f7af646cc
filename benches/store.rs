//! Benchmarks of the store's heavy paths:
//! - `heartbeats/5000`: one batch of 5,000 heartbeats (the ingest's largest)
//!   over 20,000 registered bands, on SQLite (a temp file) and, when
//!   `ONEPRESS_BENCH_DATABASE_URL` names a PostgreSQL server
//!   (e.g. `postgres://postgres@127.0.0.1:5432/postgres`), on a fresh
//!   database there (dropped at the end).
//!
//! Run: `ONEPRESS_BENCH_DATABASE_URL=… cargo bench --bench store`.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tokio::runtime::Runtime;

use onepress::domain::registry::{Heartbeat, Senior};
use onepress::domain::{DeviceId, Position, SeniorId};
use onepress::store::{self, Store};

const BANDS: usize = 20_000;
const BATCH: usize = 5_000;

async fn seeded(url: &str) -> Arc<dyn Store> {
    let store = store::connect(url).await.expect("the store opens");
    let senior = SeniorId::parse("s-bench").expect("an id");
    store
        .upsert_senior(&Senior {
            id: senior.clone(),
            name: "Bench".into(),
            address: None,
            home: None,
            grid: None,
            notes: None,
            contacts: Vec::new(),
        })
        .await
        .expect("a senior");
    for i in 0..BANDS {
        let device = DeviceId::parse(format!("band-{i}")).expect("an id");
        store.upsert_device(&device, &senior).await.expect("a band");
    }
    store
}

fn batch(round: i64) -> Vec<Heartbeat> {
    let at = Utc::now() + TimeDelta::milliseconds(round);
    (0..BATCH)
        .map(|i| Heartbeat {
            device_id: DeviceId::parse(format!("band-{}", (i * 4 + round as usize) % BANDS))
                .expect("an id"),
            at,
            battery: Some((i % 100) as u8),
            position: Position::new(30.0 + (i as f64) * 1e-5, 120.0).ok(),
        })
        .collect()
}

fn heartbeats_on(c: &mut Criterion, rt: &Runtime, name: &str, store: Arc<dyn Store>) {
    let mut round = 0;
    c.bench_function(&format!("heartbeats/{BATCH}/{name}"), |b| {
        b.iter_batched(
            || {
                round += 1;
                batch(round)
            },
            |beats| {
                rt.block_on(store.record_heartbeats(&beats))
                    .expect("written")
            },
            criterion::BatchSize::LargeInput,
        )
    });
}

fn heartbeats(c: &mut Criterion) {
    let rt = Runtime::new().expect("a runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = rt.block_on(seeded(&url));
    heartbeats_on(c, &rt, "sqlite", sqlite);

    let Ok(server) = std::env::var("ONEPRESS_BENCH_DATABASE_URL") else {
        eprintln!("PostgreSQL skipped: set ONEPRESS_BENCH_DATABASE_URL");
        return;
    };
    let name = format!("onepress_bench_{}", uuid::Uuid::now_v7().simple());
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    rt.block_on(async {
        let mut admin = PgConnection::connect(&server).await.expect("the server");
        admin
            .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await
            .expect("a database");
    });
    let pg = rt.block_on(seeded(&format!("{base}/{name}")));
    heartbeats_on(c, &rt, "postgres", pg);
    rt.block_on(async {
        let mut admin = PgConnection::connect(&server).await.expect("the server");
        let _ = admin
            .execute(AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .await;
    });
}

criterion_group!(benches, heartbeats);
criterion_main!(benches);
