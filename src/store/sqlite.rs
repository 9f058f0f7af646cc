//! The SQLite store: one file, opened in WAL mode with foreign keys on, and
//! migrated from `migrations/sqlite` at start.
//!
//! Owns only the connection (pool options, pragmas, migrations); the
//! queries are the shared ones of [`super::sql`], expanded here for SQLite.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{StoreError, sql};

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
            .synchronous(SqliteSynchronous::Normal)
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
