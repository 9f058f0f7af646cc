//! The PostgreSQL store: a pool on one server, migrated from
//! `migrations/postgres` at start (sqlx takes an advisory lock, so several
//! instances may start at once).
//!
//! Owns only the connection; the queries are the shared ones of
//! [`super::sql`], expanded here for PostgreSQL.

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{StoreError, sql};
use crate::domain::DeviceId;
use crate::domain::registry::Heartbeat;

/// Connections in the pool.
const POOL_SIZE: u32 = 10;
/// How long a query waits for a connection before it fails (sqlx would
/// wait 30 s, retrying a server that refuses): while the database is down,
/// a write answers 503 within this, and the engine moves on to its
/// recovery, where further writes are refused at once.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A [`Store`](super::Store) in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to and migrates the database `url` names, e.g.
    /// `postgres://onepress@db/onepress`.
    #[tracing::instrument(skip(url), err)]
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // Plans are made for the tables as they are at each statement, not
        // once per connection: PostgreSQL caches the plan of each
        // foreign-key check, and one made while `alerts` was empty scans
        // the whole table on every check ever after (measured: a single
        // backend at 87 % CPU in sequential scans, commits of 10 presses
        // taking 12 ms and 512 taking 220 ms; BENCHMARKS.md, 2c).
        let options: PgConnectOptions = url.parse()?;
        let options = options.options([("plan_cache_mode", "force_custom_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

/// A whole batch of heartbeats in one statement: the batch goes over as
/// arrays, is updated in one pass (never moving a band back in time), and
/// the bands that are not registered come back.
const HEARTBEATS: &str = "WITH v AS ( \
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::float8[], $5::float8[]) \
       AS v(device_id, at, battery, lat, lon)), \
     updated AS ( \
     UPDATE devices d SET last_seen = v.at, battery = COALESCE(v.battery, d.battery), \
       lat = COALESCE(v.lat, d.lat), lon = COALESCE(v.lon, d.lon) \
     FROM v WHERE d.device_id = v.device_id AND (d.last_seen IS NULL OR d.last_seen <= v.at) \
     RETURNING d.device_id) \
     SELECT v.device_id FROM v \
     WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = v.device_id)";

impl PostgresStore {
    /// One round trip for the whole batch (a batch holds each band once).
    /// Returns the bands that are not registered.
    async fn write_heartbeats(&self, beats: &[Heartbeat]) -> Result<Vec<DeviceId>, StoreError> {
        let ids: Vec<&str> = beats.iter().map(|b| b.device_id.as_str()).collect();
        let at: Vec<i64> = beats.iter().map(|b| sql::ms(&b.at)).collect();
        let battery: Vec<Option<i64>> = beats.iter().map(|b| b.battery.map(i64::from)).collect();
        let lat: Vec<Option<f64>> = beats.iter().map(|b| b.position.map(|p| p.lat())).collect();
        let lon: Vec<Option<f64>> = beats.iter().map(|b| b.position.map(|p| p.lon())).collect();
        let rows: Vec<(String,)> = sqlx::query_as(HEARTBEATS)
            .bind(ids)
            .bind(at)
            .bind(battery)
            .bind(lat)
            .bind(lon)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(id,)| {
                DeviceId::parse(id).map_err(|e| StoreError::Corrupt(format!("device id: {e}")))
            })
            .collect()
    }
}

// The snapshot reads its four queries from one view of the database.
sql::impl_store!(
    PostgresStore,
    sqlx::Postgres,
    Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
);
