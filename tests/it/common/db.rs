//! Fresh databases for tests: a temporary SQLite file, or a new database on
//! the PostgreSQL server `ONEPRESS_TEST_DATABASE_URL` names (required when
//! `CI` is set). Each test gets its own and drops it at the end.

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// The variable naming a PostgreSQL server the tests may create databases on.
pub const PG_ENV: &str = "ONEPRESS_TEST_DATABASE_URL";
/// The prefix of every test database, so that leftovers are easy to spot.
const PG_PREFIX: &str = "onepress_t_";

/// A URL for a new SQLite file in a temporary directory (removed when the
/// directory is dropped). The file itself is created by the store.
pub async fn sqlite_url() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("onepress.db").display());
    (url, dir)
}

/// The URL of a new, empty database on the test server, or `None` when no
/// server is configured (outside CI). Drop it with [`drop_postgres`] or hold
/// a [`DropDatabase`] guard.
pub async fn postgres_url() -> Option<String> {
    let server = match std::env::var(PG_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
                panic!(
                    "CI must test PostgreSQL: set {PG_ENV} (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
                );
            }
            return None;
        }
    };
    let name = format!("{PG_PREFIX}{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {PG_ENV}: {e}"));
    admin
        .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let _ = admin.close().await;
    Some(with_database(&server, &name))
}

/// Drops a database [`postgres_url`] created, closing its connections.
/// Best effort: a failure is only printed.
pub async fn drop_postgres(url: &str) {
    let Some((name, server)) = database_of(url).and_then(|name| {
        let server = std::env::var(PG_ENV).ok()?;
        Some((name, server))
    }) else {
        return;
    };
    if !name.starts_with(PG_PREFIX) {
        eprintln!("not dropping {name}: not a test database");
        return;
    }
    let result = async {
        let mut admin = PgConnection::connect(&server).await?;
        admin
            .execute(AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .await?;
        admin.close().await
    }
    .await;
    if let Err(e) = result {
        eprintln!("could not drop test database {name}: {e}");
    }
}

/// Drops its test database when dropped, even when the test panicked.
pub struct DropDatabase(pub String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let url = std::mem::take(&mut self.0);
        // A runtime of its own, on a thread of its own: `drop` cannot await,
        // and may run inside (or after) the test's runtime.
        let done = std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(drop_postgres(&url)),
                Err(e) => eprintln!("could not drop test database {url}: {e}"),
            }
        })
        .join();
        if done.is_err() {
            eprintln!("dropping a test database panicked");
        }
    }
}

/// `url` with its database (the path) replaced by `name`, query kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_at = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority_at..]
        .find('/')
        .map_or(base.len(), |i| authority_at + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The database a URL names.
fn database_of(url: &str) -> Option<String> {
    let base = url.split('?').next()?;
    let authority_at = base.find("://")? + 3;
    let path = &base[authority_at..];
    let name = &path[path.find('/')? + 1..];
    (!name.is_empty()).then(|| name.to_string())
}
