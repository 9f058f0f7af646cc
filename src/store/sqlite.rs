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

/// Heartbeats are written as `WITH v(…) AS (VALUES (…), …) UPDATE …`,
/// as many rows to a statement as the parameter limit allows, never moving
/// a band back in time; the updated bands come back. (Bound values, not one
/// JSON document: SQLite re-parsed the document's text for every field of
/// every row, most of the writer's time.)
const HEARTBEATS_HEAD: &str = "WITH v(device_id, at, battery, lat, lon) AS (";
const HEARTBEATS_TAIL: &str = ") UPDATE devices SET last_seen = v.at, \
     battery = COALESCE(v.battery, devices.battery), \
     lat = COALESCE(v.lat, devices.lat), lon = COALESCE(v.lon, devices.lon) \
     FROM v WHERE devices.device_id = v.device_id \
       AND (devices.last_seen IS NULL OR devices.last_seen <= v.at) \
     RETURNING devices.device_id";
const HEARTBEAT_COLUMNS: usize = 5;

impl SqliteStore {
    /// The whole batch in one transaction. Returns the bands that are not
    /// registered.
    async fn write_heartbeats(&self, beats: &[Heartbeat]) -> Result<Vec<DeviceId>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut updated = std::collections::HashSet::with_capacity(beats.len());
        for chunk in beats.chunks(sql::MAX_BIND_PARAMS / HEARTBEAT_COLUMNS) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(HEARTBEATS_HEAD);
            query.push_values(chunk, |mut row, b| {
                row.push_bind(b.device_id.as_str())
                    .push_bind(sql::ms(&b.at))
                    .push_bind(b.battery.map(i64::from))
                    .push_bind(b.position.map(|p| p.lat()))
                    .push_bind(b.position.map(|p| p.lon()));
            });
            query.push(HEARTBEATS_TAIL);
            let rows: Vec<(String,)> = query.build_query_as().fetch_all(&mut *tx).await?;
            updated.extend(rows.into_iter().map(|(id,)| id));
        }
        // Not updated: unknown, or already seen at a later time.
        let missed: Vec<&str> = beats
            .iter()
            .map(|b| b.device_id.as_str())
            .filter(|id| !updated.contains(*id))
            .collect();
        let mut known = std::collections::HashSet::new();
        for chunk in missed.chunks(sql::MAX_BIND_PARAMS) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT device_id FROM devices WHERE device_id IN (",
            );
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            query.push(")");
            let rows: Vec<(String,)> = query.build_query_as().fetch_all(&mut *tx).await?;
            known.extend(rows.into_iter().map(|(id,)| id));
        }
        tx.commit().await?;
        missed
            .into_iter()
            .filter(|id| !known.contains(*id))
            .map(|id| {
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
