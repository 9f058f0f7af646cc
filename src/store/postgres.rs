//! The PostgreSQL store: a pool on one server, migrated from
//! `migrations/postgres` at start (sqlx takes an advisory lock, so several
//! instances may start at once).
//!
//! Owns only the connection; the queries are the shared ones of
//! [`super::sql`], expanded here for PostgreSQL.

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::{StoreError, sql};

/// Connections in the pool.
const POOL_SIZE: u32 = 10;

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
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

// The snapshot reads its four queries from one view of the database.
sql::impl_store!(
    PostgresStore,
    sqlx::Postgres,
    Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
);
