//! The SQLite store: one file, opened in WAL mode with `synchronous=FULL`
//! (a commit is on disk before anyone is told) and foreign keys on, and
//! migrated from `migrations/sqlite` at start.
//!
//! Owns only the connection (pool options, pragmas, migrations); the
//! queries are the shared ones of [`super::sql`], expanded here for SQLite.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{StoreError, sql};
use crate::domain::DeviceId;
use crate::domain::registry::Heartbeat;

/// Connections in the pool of a file database.
const POOL_SIZE: u32 = 4;
/// How long a write waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Store`](super::Store) in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) and migrates the database `url`
    /// names, e.g. `sqlite://onepress.db`.
    #[tracing::instrument(err)]
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: in WAL mode, NORMAL can lose the last commits on a power
            // loss or an OS crash, after a band was told `received` and
            // stopped resending.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // Each connection to `:memory:` would be a database of its own: keep
        // one, forever.
        let pool = if url.contains(":memory:") || url.contains("mode=memory") {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(POOL_SIZE)
        }
        .connect_with(options)
        .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

sql::impl_store!(SqliteStore, sqlx::Sqlite, None::<&'static str>);

/// A whole batch of heartbeats in one statement: the batch goes in as one
/// JSON array (the sqlite driver pays a thread hop per statement, so one
/// statement per band costs ~20 µs each), is updated in one pass, never
/// moving a band back in time.
const HEARTBEATS: &str = "WITH v AS ( \
     SELECT json_extract(value, '$.id') AS device_id, json_extract(value, '$.at') AS at, \
       json_extract(value, '$.battery') AS battery, json_extract(value, '$.lat') AS lat, \
       json_extract(value, '$.lon') AS lon FROM json_each($1)) \
     UPDATE devices SET last_seen = v.at, battery = COALESCE(v.battery, devices.battery), \
       lat = COALESCE(v.lat, devices.lat), lon = COALESCE(v.lon, devices.lon) \
     FROM v WHERE devices.device_id = v.device_id \
       AND (devices.last_seen IS NULL OR devices.last_seen <= v.at)";

/// The bands of a batch that are not registered.
const UNKNOWN_BANDS: &str = "SELECT json_extract(value, '$.id') FROM json_each($1) \
     WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = json_extract(value, '$.id'))";

impl SqliteStore {
    /// Two statements for the whole batch, in one transaction. Returns the
    /// bands that are not registered.
    async fn write_heartbeats(&self, beats: &[Heartbeat]) -> Result<Vec<DeviceId>, StoreError> {
        let batch = serde_json::Value::Array(
            beats
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "id": b.device_id.as_str(),
                        "at": sql::ms(&b.at),
                        "battery": b.battery,
                        "lat": b.position.map(|p| p.lat()),
                        "lon": b.position.map(|p| p.lon()),
                    })
                })
                .collect(),
        )
        .to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(HEARTBEATS)
            .bind(&batch)
            .execute(&mut *tx)
            .await?;
        let rows: Vec<(String,)> = sqlx::query_as(UNKNOWN_BANDS)
            .bind(&batch)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|(id,)| {
                DeviceId::parse(id).map_err(|e| StoreError::Corrupt(format!("device id: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_connection_commits_durably() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        // Each pooled connection gets the pragmas: ask several at once.
        let mut held = Vec::new();
        for _ in 0..POOL_SIZE {
            held.push(store.pool.acquire().await.unwrap());
        }
        for conn in &mut held {
            let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(sync, 2, "synchronous=FULL");
            let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
        }
    }
}
