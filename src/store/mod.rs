//! The store: the source of truth at every restart.
//!
//! Callers see only the [`Store`] trait and domain types; `sqlite` and
//! `postgres` implement it with sqlx and their own embedded migrations
//! (`migrations/sqlite`, `migrations/postgres`). Times are stored as epoch
//! milliseconds (BIGINT) in both engines. Nothing outside this module names
//! sqlx. This module never decides anything: the dispatcher does.

use async_trait::async_trait;

use crate::domain::registry::{
    Credential, Device, Heartbeat, PrincipalKind, PushEndpoint, Senior, VolunteerProfile,
    VolunteerRecord,
};
use crate::domain::{
    Alert, AlertId, DeviceId, Effects, Notification, Offer, Position, SeniorCard, SeniorId,
    Snapshot, TimelineEvent, VolunteerId,
};

mod postgres;
mod sql;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A referenced row does not exist (`what` names it: "senior", "volunteer").
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A conditional write found the row changed under it, e.g. a volunteer
    /// claimed for two alerts. The transaction was rolled back.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A row holds what the code cannot read back.
    /// The id is registered already as another kind (devices, volunteers
    /// and gateways share one namespace).
    #[error("the id {id} is already taken by a {}", kind.as_str())]
    IdTaken { id: String, kind: PrincipalKind },
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url {0:?}: use sqlite://… or postgres://…")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// Whether the same request may succeed later: the database is down,
    /// busy or out of resources, or a transaction lost a race. False for
    /// what would recur on every retry (a row that cannot be read, a
    /// statement the database refuses for its content): retrying those
    /// forever would stall whatever waits behind them.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Conflict(_) => true,
            StoreError::Database(e) => sqlx_is_transient(e),
            StoreError::NotFound(_)
            | StoreError::IdTaken { .. }
            | StoreError::Corrupt(_)
            | StoreError::Migrate(_)
            | StoreError::UnsupportedUrl(_) => false,
        }
    }
}

fn sqlx_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| code_is_transient(&c)),
        _ => false,
    }
}

/// SQLite's result codes are numbers (the primary code in the low byte);
/// PostgreSQL's SQLSTATEs are five characters, their class the first two.
fn code_is_transient(code: &str) -> bool {
    if code.len() == 5 {
        // Connection exception, transaction rollback (serialization,
        // deadlock), insufficient resources, operator intervention (shut
        // down, cannot connect now), system error.
        return matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58"));
    }
    // SQLite's extended codes have at most four digits. BUSY, LOCKED,
    // NOMEM, IOERR, FULL, CANTOPEN, PROTOCOL.
    code.parse::<i32>()
        .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 7 | 10 | 13 | 14 | 15))
}

/// Which alerts a listing wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFilter {
    Active,
    All,
}

/// What the store knows of a press before it is handled.
#[derive(Debug, Clone, PartialEq)]
pub struct PressContext {
    /// The senior wearing the band and their home; None: not registered.
    pub owner: Option<(SeniorCard, Option<Position>)>,
    /// `Some(alert)` if the event was already taken into account (a
    /// registered band's only).
    pub seen: Option<Option<AlertId>>,
}

/// A pending offer held by a volunteer, with its alert.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingOffer {
    pub alert: Alert,
    pub offer: Offer,
    pub senior: SeniorCard,
}

/// The persistence the service needs, identical on both engines.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores `value` under `key` unless a value is there already; returns
    /// the value stored (the new one or the old one).
    async fn init_meta(&self, key: &str, value: &str) -> Result<String, StoreError>;

    // ----- registry -----
    async fn upsert_senior(&self, senior: &Senior) -> Result<(), StoreError>;
    async fn get_senior(&self, id: &SeniorId) -> Result<Option<Senior>, StoreError>;
    async fn list_seniors(&self) -> Result<Vec<Senior>, StoreError>;
    /// Registers a band to a senior; `NotFound("senior")` if the senior is
    /// unknown, `IdTaken` if the id is a volunteer's or a gateway's.
    async fn upsert_device(
        &self,
        device: &DeviceId,
        senior: &SeniorId,
    ) -> Result<Device, StoreError>;
    async fn list_devices(&self) -> Result<Vec<Device>, StoreError>;
    /// The senior wearing a band and their home, for a press.
    async fn device_owner(
        &self,
        device: &DeviceId,
    ) -> Result<Option<(SeniorCard, Option<Position>)>, StoreError>;
    /// Writes many heartbeats in one transaction (at most one per band: the
    /// ingest merges them first; a beat older than the band's `last_seen`
    /// changes nothing); returns the bands that are not registered.
    async fn record_heartbeats(&self, beats: &[Heartbeat]) -> Result<Vec<DeviceId>, StoreError>;
    /// Creates or updates a volunteer's profile, leaving dispatch state
    /// alone; `IdTaken` if the id is a device's or a gateway's.
    async fn upsert_volunteer(&self, profile: &VolunteerProfile) -> Result<(), StoreError>;
    async fn get_volunteer(&self, id: &VolunteerId) -> Result<Option<VolunteerRecord>, StoreError>;
    async fn list_volunteers(&self) -> Result<Vec<VolunteerRecord>, StoreError>;
    /// Replaces the volunteer's token: `hash` (SHA-256, for HTTP) and
    /// `mqtt_hash` (`$6$`, the phone's broker login), in one transaction;
    /// `NotFound("volunteer")` if unknown.
    async fn set_volunteer_token(
        &self,
        id: &VolunteerId,
        hash: &str,
        mqtt_hash: &str,
    ) -> Result<(), StoreError>;
    async fn volunteer_by_token(&self, hash: &str) -> Result<Option<VolunteerId>, StoreError>;

    // ----- broker logins -----
    /// Replaces the MQTT secret (its `$6$` hash) of a band (which must be
    /// registered: `NotFound("device")`) or of a gateway (created if new);
    /// `IdTaken` if the id is of another kind.
    async fn set_secret(
        &self,
        kind: PrincipalKind,
        id: &str,
        hash: &str,
        at: crate::domain::Timestamp,
    ) -> Result<(), StoreError>;
    /// The login of a registered id, if any.
    async fn credential(&self, id: &str) -> Result<Option<Credential>, StoreError>;
    /// Every registered id's login, by id.
    async fn list_credentials(&self) -> Result<Vec<Credential>, StoreError>;

    // ----- dispatch -----
    /// Everything the dispatcher is rebuilt from: every volunteer, every
    /// active alert with its pending offers, events, exclusions and senior.
    async fn load_snapshot(&self) -> Result<Snapshot, StoreError>;
    /// Writes all of `fx` in one transaction, or nothing. A volunteer is
    /// claimed with a conditional update: `Conflict` if already busy with
    /// another alert.
    async fn commit(&self, fx: &Effects) -> Result<(), StoreError>;
    /// What a press needs, in one read: who wears the band, and whether
    /// this event of it was already taken into account.
    async fn press_context(
        &self,
        device: &DeviceId,
        event: &crate::domain::EventId,
    ) -> Result<PressContext, StoreError>;
    /// `Some(alert)` if this band event was already taken into account.
    async fn find_ingested(
        &self,
        device: &DeviceId,
        event: &crate::domain::EventId,
    ) -> Result<Option<Option<AlertId>>, StoreError>;

    // ----- Web Push subscriptions -----
    /// Keeps a subscription for the volunteer (an endpoint known already,
    /// even another volunteer's, is taken over: the browser moved), keeping
    /// only the newest `keep` of theirs; `NotFound("volunteer")` if unknown.
    async fn add_push_endpoint(
        &self,
        volunteer: &VolunteerId,
        endpoint: &PushEndpoint,
        at: crate::domain::Timestamp,
        keep: u32,
    ) -> Result<(), StoreError>;
    /// Removes one of the volunteer's subscriptions; false if they had none
    /// with this endpoint.
    async fn remove_push_endpoint(
        &self,
        volunteer: &VolunteerId,
        endpoint: &str,
    ) -> Result<bool, StoreError>;
    /// Removes a subscription whoever holds it (its push service said it
    /// is gone).
    async fn drop_push_endpoint(&self, endpoint: &str) -> Result<(), StoreError>;
    /// The volunteers who have a channel of their own: a push subscription
    /// or an ntfy topic.
    async fn volunteers_with_channels(&self) -> Result<Vec<VolunteerId>, StoreError>;
    /// Whether this volunteer has a channel of their own.
    async fn has_channel(&self, volunteer: &VolunteerId) -> Result<bool, StoreError>;
    /// The volunteer's subscriptions, newest first.
    async fn push_endpoints(
        &self,
        volunteer: &VolunteerId,
    ) -> Result<Vec<PushEndpoint>, StoreError>;

    // ----- notifications (the outbox) -----
    /// At most `limit` notifications due at `now`, soonest first.
    async fn due_notifications(
        &self,
        now: crate::domain::Timestamp,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError>;
    /// When the next notification is due, if any is.
    async fn next_notification_due(&self) -> Result<Option<crate::domain::Timestamp>, StoreError>;
    /// Records how a delivery went (`events`, `notified` timeline entries
    /// of the notification's alert, one per channel and recipient tried)
    /// and, in the same transaction, deletes the notification or, with
    /// `retry` = (when, attempts so far), reschedules it.
    async fn notification_tried(
        &self,
        notification: &Notification,
        events: &[TimelineEvent],
        retry: Option<(crate::domain::Timestamp, u32)>,
    ) -> Result<(), StoreError>;

    /// Adds a notification outside an engine batch (a reminder); one with
    /// the same id already waiting is left as it is.
    async fn add_notification(&self, notification: &Notification) -> Result<(), StoreError>;
    /// Deletes a notification nobody can receive.
    async fn notification_dropped(&self, notification: &Notification) -> Result<(), StoreError>;

    // ----- reads -----
    /// An alert with its pending offers.
    async fn get_alert(&self, id: &AlertId) -> Result<Option<Alert>, StoreError>;
    async fn timeline(&self, id: &AlertId) -> Result<Vec<TimelineEvent>, StoreError>;
    /// Newest (by `pressed_at`, then id) first.
    async fn list_alerts(&self, filter: AlertFilter, limit: u32) -> Result<Vec<Alert>, StoreError>;
    /// Was this alert ever offered to (or assigned) this volunteer?
    async fn was_offered(
        &self,
        alert: &AlertId,
        volunteer: &VolunteerId,
    ) -> Result<bool, StoreError>;
    /// The volunteer's pending offers.
    async fn pending_offers(
        &self,
        volunteer: &VolunteerId,
    ) -> Result<Vec<PendingOffer>, StoreError>;
    /// Alerts pressed in `[from, to)`, for the SLA report.
    async fn alerts_pressed_between(
        &self,
        from: crate::domain::Timestamp,
        to: crate::domain::Timestamp,
    ) -> Result<Vec<Alert>, StoreError>;
}

/// Opens the store a database URL names, creating a SQLite file if missing,
/// and runs its migrations.
pub async fn connect(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(std::sync::Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_races_are_transient_bad_rows_are_not() {
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(StoreError::Conflict("busy".into()).is_transient());
        assert!(!StoreError::Corrupt("lat is NaN".into()).is_transient());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_transient());
        assert!(!StoreError::Database(sqlx::Error::ColumnNotFound("x".into())).is_transient());
        // SQLite: BUSY, BUSY_SNAPSHOT (517), IOERR_FSYNC (1034); not
        // CONSTRAINT (19) or MISMATCH (20).
        for code in ["5", "517", "1034", "13"] {
            assert!(code_is_transient(code), "{code}");
        }
        for code in ["19", "2067", "20", "1"] {
            assert!(!code_is_transient(code), "{code}");
        }
        // PostgreSQL: admin shutdown, cannot connect now, serialization
        // failure, deadlock, connection failure; not unique violation,
        // invalid text, undefined column.
        for code in ["57P01", "57P03", "40001", "40P01", "08006", "53300"] {
            assert!(code_is_transient(code), "{code}");
        }
        for code in ["23505", "22021", "42703"] {
            assert!(!code_is_transient(code), "{code}");
        }
    }
}
