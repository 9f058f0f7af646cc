//! What the two SQL engines share: the statements, the raw row types, the
//! conversions between rows and domain types, and [`impl_store!`], which
//! writes the whole [`Store`](super::Store) implementation once for a given
//! sqlx database.
//!
//! The statements are plain SQL that SQLite and PostgreSQL both accept
//! (`$n` parameters, `ON CONFLICT`, `RETURNING`, partial indexes). Rows are
//! read into structs of primitive columns (`String`, `i64`, `f64`, `bool`)
//! and only then turned into domain types, so a bad value becomes
//! [`StoreError::Corrupt`], never a panic. Nothing here decides anything.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::str::FromStr;

use chrono::DateTime;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use crate::domain::registry::{Credential, Device, Senior, VolunteerProfile, VolunteerRecord};
use crate::domain::{
    ActiveAlert, Alert, AlertId, Audience, EventId, IdError, Notification, Offer, OfferOutcome,
    Position, SeniorCard, SeniorId, Snapshot, TimelineEvent, Timestamp, Volunteer, VolunteerId,
};

// ----- statements ---------------------------------------------------------

/// The columns of an alert and of its senior's card.
macro_rules! select_alerts {
    () => {
        "SELECT a.id, a.device_id, a.senior_id, a.kind, a.state, a.lat, a.lon, \
         a.pressed_at, a.received_at, a.volunteer_id, a.accepted_at, a.on_scene_at, \
         a.resolved_at, a.cancelled_at, a.response_deadline, a.arrival_deadline, \
         a.response_breached, a.arrival_breached, a.escalated, a.arrival_at_risk, \
         a.event_id, a.outcome, \
         s.name AS senior_name, s.address AS senior_address, s.notes AS senior_notes \
         FROM alerts a JOIN seniors s ON s.id = a.senior_id"
    };
}

macro_rules! select_offers {
    () => {
        "SELECT o.alert_id, o.volunteer_id, o.offered_at, o.expires_at, o.distance_m, \
         o.eta_s, o.outcome FROM offers o"
    };
}

/// The states of an active alert, as SQL (matches the partial index).
macro_rules! active_states {
    () => {
        "('open', 'offered', 'accepted', 'on_scene')"
    };
}

/// Newest first, at most `$1`.
macro_rules! newest_first {
    () => {
        " ORDER BY a.pressed_at DESC, a.id DESC LIMIT $1"
    };
}

/// The order pending offers are listed in.
macro_rules! offer_order {
    () => {
        " ORDER BY o.alert_id, o.offered_at, o.volunteer_id"
    };
}

pub(super) const PING: &str = "SELECT 1";

pub(super) const INIT_META: &str =
    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
pub(super) const GET_META: &str = "SELECT value FROM meta WHERE key = $1";

pub(super) const UPSERT_SENIOR: &str = "INSERT INTO seniors \
     (id, name, address, home_lat, home_lon, grid, notes, contacts) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, address = excluded.address, \
     home_lat = excluded.home_lat, home_lon = excluded.home_lon, grid = excluded.grid, \
     notes = excluded.notes, contacts = excluded.contacts";
macro_rules! select_seniors {
    () => {
        "SELECT id, name, address, home_lat, home_lon, grid, notes, contacts FROM seniors"
    };
}
pub(super) const GET_SENIOR: &str = concat!(select_seniors!(), " WHERE id = $1");
pub(super) const LIST_SENIORS: &str = concat!(select_seniors!(), " ORDER BY id");

macro_rules! device_columns {
    () => {
        "device_id, senior_id, last_seen, battery, lat, lon"
    };
}
pub(super) const UPSERT_DEVICE: &str = concat!(
    "INSERT INTO devices (device_id, senior_id) VALUES ($1, $2) \
     ON CONFLICT (device_id) DO UPDATE SET senior_id = excluded.senior_id RETURNING ",
    device_columns!()
);
pub(super) const LIST_DEVICES: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices ORDER BY device_id"
);
pub(super) const DEVICE_OWNER: &str = "SELECT s.id, s.name, s.address, s.home_lat, s.home_lon, \
     s.grid, s.notes, s.contacts FROM devices d JOIN seniors s ON s.id = d.senior_id \
     WHERE d.device_id = $1";
pub(super) const PRESS_CONTEXT: &str = "SELECT s.id, s.name, s.address, s.home_lat, \
     s.home_lon, s.grid, s.notes, s.contacts, i.event_id AS seen_event, i.alert_id AS seen_alert \
     FROM devices d JOIN seniors s ON s.id = d.senior_id \
     LEFT JOIN ingested_events i ON i.device_id = d.device_id AND i.event_id = $2 \
     WHERE d.device_id = $1";
pub(super) const UPSERT_VOLUNTEER: &str = "INSERT INTO volunteers \
     (id, name, phone, grid, skills, ntfy_url) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, phone = excluded.phone, \
     grid = excluded.grid, skills = excluded.skills, ntfy_url = excluded.ntfy_url";
macro_rules! select_volunteers {
    () => {
        "SELECT id, name, phone, grid, skills, ntfy_url, on_duty, lat, lon, location_at, \
         busy_alert FROM volunteers"
    };
}
pub(super) const GET_VOLUNTEER: &str = concat!(select_volunteers!(), " WHERE id = $1");
pub(super) const LIST_VOLUNTEERS: &str = concat!(select_volunteers!(), " ORDER BY id");
pub(super) const SET_TOKEN: &str = "INSERT INTO volunteer_tokens (volunteer_id, token_hash) \
     VALUES ($1, $2) ON CONFLICT (volunteer_id) DO UPDATE SET token_hash = excluded.token_hash";
pub(super) const VOLUNTEER_BY_TOKEN: &str =
    "SELECT volunteer_id AS id FROM volunteer_tokens WHERE token_hash = $1";

/// Claims an id for a kind in the shared namespace (a no-op if already
/// claimed: the caller then reads the kind back with `PRINCIPAL`).
pub(super) const CLAIM_ID: &str =
    "INSERT INTO principals (id, kind) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";
macro_rules! select_principals {
    () => {
        "SELECT id, kind, secret_hash FROM principals"
    };
}
pub(super) const PRINCIPAL: &str = concat!(select_principals!(), " WHERE id = $1");
pub(super) const LIST_PRINCIPALS: &str = concat!(select_principals!(), " ORDER BY id");
pub(super) const SET_SECRET: &str =
    "UPDATE principals SET secret_hash = $3, changed_at = $4 WHERE id = $1 AND kind = $2";

// The engine's commit writes many rows of each kind at once: each
// statement below is a head (up to the column list), the rows
// (`QueryBuilder::push_values`) and a tail, in chunks of at most
// `MAX_BIND_PARAMS` parameters.

/// Bound parameters in one statement, under SQLite's default limit (32,766)
/// and PostgreSQL's (65,535).
pub(super) const MAX_BIND_PARAMS: usize = 30_000;

pub(super) const ALERT_COLUMNS: usize = 22;
pub(super) const INSERT_ALERTS: &str = "INSERT INTO alerts \
     (id, device_id, senior_id, kind, state, lat, lon, pressed_at, received_at, volunteer_id, \
     accepted_at, on_scene_at, resolved_at, cancelled_at, response_deadline, arrival_deadline, \
     response_breached, arrival_breached, escalated, arrival_at_risk, event_id, outcome) ";
pub(super) const UPSERT_ALERTS_TAIL: &str = " ON CONFLICT (id) DO UPDATE SET \
     device_id = excluded.device_id, \
     senior_id = excluded.senior_id, kind = excluded.kind, state = excluded.state, \
     lat = excluded.lat, lon = excluded.lon, pressed_at = excluded.pressed_at, \
     received_at = excluded.received_at, volunteer_id = excluded.volunteer_id, \
     accepted_at = excluded.accepted_at, on_scene_at = excluded.on_scene_at, \
     resolved_at = excluded.resolved_at, cancelled_at = excluded.cancelled_at, \
     response_deadline = excluded.response_deadline, \
     arrival_deadline = excluded.arrival_deadline, \
     response_breached = excluded.response_breached, \
     arrival_breached = excluded.arrival_breached, escalated = excluded.escalated, \
     arrival_at_risk = excluded.arrival_at_risk, event_id = excluded.event_id, \
     outcome = excluded.outcome";
pub(super) const OFFER_COLUMNS: usize = 8;
pub(super) const INSERT_OFFERS: &str = "INSERT INTO offers \
     (alert_id, volunteer_id, offered_at, expires_at, distance_m, eta_s, outcome, closed_at) ";
pub(super) const UPSERT_OFFERS_TAIL: &str = " ON CONFLICT (alert_id, volunteer_id) DO UPDATE SET \
     offered_at = excluded.offered_at, \
     expires_at = excluded.expires_at, distance_m = excluded.distance_m, \
     eta_s = excluded.eta_s, outcome = excluded.outcome, closed_at = excluded.closed_at";
pub(super) const TIMELINE_COLUMNS: usize = 13;
pub(super) const INSERT_TIMELINE: &str = "INSERT INTO timeline \
     (alert_id, at, kind, volunteer_id, distance_m, eta_s, actor, reason, outcome, note, \
     event_id, channel, recipient) ";
pub(super) const NOTIFICATION_COLUMNS: usize = 8;
pub(super) const INSERT_NOTIFICATIONS: &str = "INSERT INTO notifications \
     (id, alert_id, audience, event, body, due_at, attempts, created_at) ";
pub(super) const INSERT_NOTIFICATIONS_TAIL: &str = " ON CONFLICT (id) DO NOTHING";
pub(super) const DUE_NOTIFICATIONS: &str = "SELECT id, alert_id, audience, event, body, \
     due_at, attempts, created_at FROM notifications WHERE due_at <= $1 \
     ORDER BY due_at, id LIMIT $2";
pub(super) const NEXT_NOTIFICATION_DUE: &str = "SELECT MIN(due_at) AS due_at FROM notifications";
pub(super) const VOLUNTEER_EXISTS: &str = "SELECT id FROM volunteers WHERE id = $1";
pub(super) const UPSERT_PUSH: &str = "INSERT INTO push_subscriptions \
     (endpoint, volunteer_id, p256dh, auth, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (endpoint) DO UPDATE SET volunteer_id = excluded.volunteer_id, \
     p256dh = excluded.p256dh, auth = excluded.auth, created_at = excluded.created_at";
/// All but the newest `$2` of a volunteer's subscriptions.
pub(super) const TRIM_PUSH: &str = "DELETE FROM push_subscriptions WHERE volunteer_id = $1 \
     AND endpoint NOT IN (SELECT endpoint FROM push_subscriptions WHERE volunteer_id = $1 \
     ORDER BY created_at DESC, endpoint LIMIT $2)";
pub(super) const REMOVE_PUSH: &str =
    "DELETE FROM push_subscriptions WHERE volunteer_id = $1 AND endpoint = $2";
pub(super) const DROP_PUSH: &str = "DELETE FROM push_subscriptions WHERE endpoint = $1";
pub(super) const WITH_CHANNELS: &str = "SELECT volunteer_id AS id FROM push_subscriptions \
     UNION SELECT id FROM volunteers WHERE ntfy_url IS NOT NULL";
pub(super) const HAS_CHANNEL: &str = "SELECT volunteer_id AS id FROM push_subscriptions \
     WHERE volunteer_id = $1 UNION SELECT id FROM volunteers WHERE id = $1 AND ntfy_url IS NOT NULL";
pub(super) const PUSH_OF: &str = "SELECT endpoint, p256dh, auth FROM push_subscriptions \
     WHERE volunteer_id = $1 ORDER BY created_at DESC, endpoint";
pub(super) const DELETE_NOTIFICATION: &str = "DELETE FROM notifications WHERE id = $1";
pub(super) const RESCHEDULE_NOTIFICATION: &str =
    "UPDATE notifications SET due_at = $2, attempts = $3 WHERE id = $1";
/// The atomic claim: a volunteer busy with another alert is not taken,
/// unless it is the alert the batch itself freed them from (`$7`). The
/// casts keep the parameters typed on PostgreSQL and are valid SQLite.
/// Claims (or releases) volunteers: each row is updated only if the
/// volunteer is free, already on this alert, being released, or busy with
/// the alert the batch saw (`before`); fewer rows updated than given is a
/// conflict. The rows come as `VALUES` (columns `column1`… in both
/// engines), named by the inner select.
pub(super) const CLAIM_COLUMNS: usize = 7;
pub(super) const CLAIM_VOLUNTEERS: &str = "UPDATE volunteers SET on_duty = n.on_duty, \
     lat = n.lat, lon = n.lon, location_at = n.location_at, busy_alert = n.busy \
     FROM (SELECT column1 AS id, column2 AS on_duty, column3 AS lat, column4 AS lon, \
     column5 AS busy, column6 AS location_at, column7 AS before FROM (";
pub(super) const CLAIM_VOLUNTEERS_TAIL: &str = ") AS t) AS n WHERE volunteers.id = n.id \
     AND (volunteers.busy_alert IS NULL OR volunteers.busy_alert = n.busy OR n.busy IS NULL \
     OR volunteers.busy_alert = n.before) RETURNING volunteers.id";
pub(super) const INGESTED_COLUMNS: usize = 4;
pub(super) const INSERT_INGESTED: &str = "INSERT INTO ingested_events \
     (device_id, event_id, alert_id, at) ";
pub(super) const INSERT_INGESTED_TAIL: &str = " ON CONFLICT (device_id, event_id) DO NOTHING";
pub(super) const FIND_INGESTED: &str =
    "SELECT alert_id AS id FROM ingested_events WHERE device_id = $1 AND event_id = $2";

pub(super) const TIMELINE: &str = "SELECT at, kind, volunteer_id, distance_m, eta_s, actor, \
     reason, outcome, note, event_id, channel, recipient FROM timeline WHERE alert_id = $1 \
     ORDER BY seq";

/// Declares `$alerts`, the alerts `WHERE $cond $order` (their columns and
/// their senior's card), and `$offers`, the pending offers of the same
/// alerts: one statement each, whatever the number of alerts.
macro_rules! alerts_and_offers {
    ($alerts:ident, $offers:ident, where [$($cond:expr),+], $order:expr) => {
        pub(super) const $alerts: &str = concat!(select_alerts!(), " WHERE ", $($cond,)+ $order);
        pub(super) const $offers: &str = concat!(
            select_offers!(),
            " WHERE o.outcome IS NULL AND o.alert_id IN (SELECT a.id FROM alerts a WHERE ",
            $($cond,)+
            $order,
            ")",
            offer_order!()
        );
    };
}

alerts_and_offers!(GET_ALERT, GET_ALERT_OFFERS, where ["a.id = $1"], "");
alerts_and_offers!(
    LIST_ACTIVE,
    LIST_ACTIVE_OFFERS,
    where ["a.state IN ", active_states!()],
    newest_first!()
);
alerts_and_offers!(LIST_ALL, LIST_ALL_OFFERS, where ["1 = 1"], newest_first!());
alerts_and_offers!(
    PENDING_ALERTS,
    PENDING_ALERTS_OFFERS,
    where [
        "a.id IN (SELECT h.alert_id FROM offers h WHERE h.volunteer_id = $1 AND h.outcome IS NULL)"
    ],
    " ORDER BY a.pressed_at, a.id"
);
alerts_and_offers!(
    PRESSED_BETWEEN,
    PRESSED_BETWEEN_OFFERS,
    where ["a.pressed_at >= $1 AND a.pressed_at < $2"],
    " ORDER BY a.pressed_at, a.id"
);

pub(super) const WAS_OFFERED: &str = "SELECT \
     (SELECT COUNT(*) FROM offers WHERE alert_id = $1 AND volunteer_id = $2) \
     + (SELECT COUNT(*) FROM alerts WHERE id = $1 AND volunteer_id = $2)";

pub(super) const SNAPSHOT_VOLUNTEERS: &str = LIST_VOLUNTEERS;
pub(super) const SNAPSHOT_ALERTS: &str = concat!(
    select_alerts!(),
    " WHERE a.state IN ",
    active_states!(),
    " ORDER BY a.pressed_at, a.id"
);
/// Every offer (any outcome) of every active alert.
pub(super) const SNAPSHOT_OFFERS: &str = concat!(
    select_offers!(),
    " JOIN alerts a ON a.id = o.alert_id WHERE a.state IN ",
    active_states!(),
    offer_order!()
);
pub(super) const SNAPSHOT_EVENTS: &str = concat!(
    "SELECT e.alert_id, e.event_id FROM ingested_events e \
     JOIN alerts a ON a.id = e.alert_id WHERE a.state IN ",
    active_states!()
);

// ----- conversions --------------------------------------------------------

/// The last of each key's items (the latest word on that row), in the
/// order each key first appears: what writing them one by one, in order,
/// would leave.
pub(super) fn last_of_each<'a, T: Clone, K: Eq + std::hash::Hash>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Vec<T> {
    let mut slot: HashMap<K, usize> = HashMap::with_capacity(items.len());
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        match slot.entry(key(item)) {
            std::collections::hash_map::Entry::Occupied(e) => out[*e.get()] = item.clone(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(item.clone());
            }
        }
    }
    out
}

/// Splits `rows` into chunks whose sizes are powers of two (largest
/// first), each under the bound-parameter limit. A multi-row statement's
/// text depends on its row count: with sizes from a small set, each table
/// has at most a dozen shapes, prepared once per connection and kept in
/// sqlx's statement cache, instead of a new statement to parse and plan
/// for every batch size. (It did not, alone, make PostgreSQL keep up with
/// 500 presses a second: see BENCHMARKS.md, 2c.)
pub(super) fn statement_chunks<T>(rows: &[T], columns: usize) -> impl Iterator<Item = &[T]> {
    let most = (MAX_BIND_PARAMS / columns.max(1)).max(1);
    let most = 1usize << most.ilog2();
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = most.min(1usize << rest.len().ilog2());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

pub(super) fn corrupt(what: impl Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Epoch milliseconds, as stored.
pub(super) fn ms(ts: &Timestamp) -> i64 {
    ts.timestamp_millis()
}

pub(super) fn ts(ms: i64) -> Result<Timestamp, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(format!("time {ms} ms")))
}

fn ts_opt(ms: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    ms.map(ts).transpose()
}

fn id<T: TryFrom<String, Error = IdError>>(what: &str, s: String) -> Result<T, StoreError> {
    T::try_from(s.clone()).map_err(|e| corrupt(format!("{what} {s:?}: {e}")))
}

fn id_opt<T: TryFrom<String, Error = IdError>>(
    what: &str,
    s: Option<String>,
) -> Result<Option<T>, StoreError> {
    s.map(|s| id(what, s)).transpose()
}

fn name<T: FromStr>(s: &str) -> Result<T, StoreError>
where
    T::Err: Display,
{
    s.parse().map_err(corrupt)
}

fn small<T: TryFrom<i64>>(what: &str, n: i64) -> Result<T, StoreError> {
    T::try_from(n).map_err(|_| corrupt(format!("{what} {n} out of range")))
}

fn small_opt<T: TryFrom<i64>>(what: &str, n: Option<i64>) -> Result<Option<T>, StoreError> {
    n.map(|n| small(what, n)).transpose()
}

fn position(lat: Option<f64>, lon: Option<f64>) -> Result<Option<Position>, StoreError> {
    match (lat, lon) {
        (Some(lat), Some(lon)) => Position::new(lat, lon).map(Some).map_err(corrupt),
        (None, None) => Ok(None),
        _ => Err(corrupt("a position with only one coordinate")),
    }
}

/// A list as JSON text.
pub(super) fn to_json<T: Serialize>(list: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(corrupt)
}

fn from_json<T: DeserializeOwned>(s: &str) -> Result<Vec<T>, StoreError> {
    serde_json::from_str(s).map_err(corrupt)
}

/// Maps a foreign key violation to `NotFound(what)`, for writes whose only
/// reference is `what`.
pub(super) fn fk_to_not_found(e: sqlx::Error, what: &'static str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound(what),
        _ => StoreError::Database(e),
    }
}

// ----- rows ---------------------------------------------------------------

/// A raw row that reads back as a domain value.
pub(super) trait IntoDomain {
    type Out;
    fn into_domain(self) -> Result<Self::Out, StoreError>;
}

/// The domain value of an optional row.
pub(super) fn one<R: IntoDomain>(row: Option<R>) -> Result<Option<R::Out>, StoreError> {
    row.map(R::into_domain).transpose()
}

/// The domain values of rows, in order.
pub(super) fn all<R: IntoDomain>(rows: Vec<R>) -> Result<Vec<R::Out>, StoreError> {
    rows.into_iter().map(R::into_domain).collect()
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct SeniorRow {
    id: String,
    name: String,
    address: Option<String>,
    home_lat: Option<f64>,
    home_lon: Option<f64>,
    grid: Option<String>,
    notes: Option<String>,
    contacts: String,
}

/// A band's senior, and what became of one of its events.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct PressRow {
    #[sqlx(flatten)]
    senior: SeniorRow,
    seen_event: Option<String>,
    seen_alert: Option<String>,
}

impl IntoDomain for PressRow {
    type Out = crate::store::PressContext;
    fn into_domain(self) -> Result<Self::Out, StoreError> {
        let seen = match self.seen_event {
            Some(_) => Some(id_opt("alert id", self.seen_alert)?),
            None => None,
        };
        let senior = self.senior.into_domain()?;
        let card = SeniorCard {
            id: senior.id,
            name: senior.name,
            address: senior.address,
            notes: senior.notes,
        };
        Ok(crate::store::PressContext {
            owner: Some((card, senior.home)),
            seen,
        })
    }
}

impl IntoDomain for SeniorRow {
    type Out = Senior;
    fn into_domain(self) -> Result<Senior, StoreError> {
        Ok(Senior {
            id: id("senior id", self.id)?,
            home: position(self.home_lat, self.home_lon)?,
            contacts: from_json(&self.contacts)?,
            name: self.name,
            address: self.address,
            grid: self.grid,
            notes: self.notes,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct DeviceRow {
    device_id: String,
    senior_id: String,
    last_seen: Option<i64>,
    battery: Option<i64>,
    lat: Option<f64>,
    lon: Option<f64>,
}

impl IntoDomain for DeviceRow {
    type Out = Device;
    fn into_domain(self) -> Result<Device, StoreError> {
        Ok(Device {
            device_id: id("device id", self.device_id)?,
            senior_id: id("senior id", self.senior_id)?,
            last_seen: ts_opt(self.last_seen)?,
            battery: small_opt("battery", self.battery)?,
            lat: self.lat,
            lon: self.lon,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct VolunteerRow {
    id: String,
    name: String,
    phone: Option<String>,
    grid: Option<String>,
    skills: String,
    ntfy_url: Option<String>,
    on_duty: bool,
    lat: Option<f64>,
    lon: Option<f64>,
    location_at: Option<i64>,
    busy_alert: Option<String>,
}

impl IntoDomain for VolunteerRow {
    type Out = VolunteerRecord;
    fn into_domain(self) -> Result<VolunteerRecord, StoreError> {
        let busy_alert: Option<AlertId> = id_opt("alert id", self.busy_alert)?;
        Ok(VolunteerRecord {
            profile: VolunteerProfile {
                id: id("volunteer id", self.id)?,
                name: self.name,
                phone: self.phone,
                grid: self.grid,
                skills: from_json(&self.skills)?,
                ntfy_url: self.ntfy_url,
            },
            on_duty: self.on_duty,
            busy: busy_alert.is_some(),
            busy_alert,
            lat: self.lat,
            lon: self.lon,
            location_at: ts_opt(self.location_at)?,
        })
    }
}

impl VolunteerRow {
    /// As the dispatcher sees the volunteer (no pending offer yet).
    fn into_volunteer(self) -> Result<Volunteer, StoreError> {
        Ok(Volunteer {
            id: id("volunteer id", self.id)?,
            name: self.name,
            on_duty: self.on_duty,
            position: position(self.lat, self.lon)?,
            location_at: ts_opt(self.location_at)?,
            busy_alert: id_opt("alert id", self.busy_alert)?,
            pending_offer: None,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct AlertRow {
    id: String,
    device_id: String,
    senior_id: String,
    kind: String,
    state: String,
    lat: Option<f64>,
    lon: Option<f64>,
    pressed_at: i64,
    received_at: i64,
    volunteer_id: Option<String>,
    accepted_at: Option<i64>,
    on_scene_at: Option<i64>,
    resolved_at: Option<i64>,
    cancelled_at: Option<i64>,
    response_deadline: i64,
    arrival_deadline: i64,
    response_breached: bool,
    arrival_breached: bool,
    escalated: bool,
    arrival_at_risk: bool,
    event_id: String,
    outcome: Option<String>,
    senior_name: String,
    senior_address: Option<String>,
    senior_notes: Option<String>,
}

impl AlertRow {
    /// The alert (with no offers yet) and its senior's card.
    fn into_alert(self) -> Result<(Alert, SeniorCard), StoreError> {
        let senior_id: SeniorId = id("senior id", self.senior_id)?;
        let senior = SeniorCard {
            id: senior_id.clone(),
            name: self.senior_name,
            address: self.senior_address,
            notes: self.senior_notes,
        };
        let alert = Alert {
            id: id("alert id", self.id)?,
            device_id: id("device id", self.device_id)?,
            senior_id,
            kind: name(&self.kind)?,
            state: name(&self.state)?,
            lat: self.lat,
            lon: self.lon,
            pressed_at: ts(self.pressed_at)?,
            received_at: ts(self.received_at)?,
            volunteer_id: id_opt("volunteer id", self.volunteer_id)?,
            accepted_at: ts_opt(self.accepted_at)?,
            on_scene_at: ts_opt(self.on_scene_at)?,
            resolved_at: ts_opt(self.resolved_at)?,
            cancelled_at: ts_opt(self.cancelled_at)?,
            response_deadline: ts(self.response_deadline)?,
            arrival_deadline: ts(self.arrival_deadline)?,
            response_breached: self.response_breached,
            arrival_breached: self.arrival_breached,
            escalated: self.escalated,
            arrival_at_risk: self.arrival_at_risk,
            event_id: id("event id", self.event_id)?,
            outcome: self.outcome,
            offers: Vec::new(),
        };
        Ok((alert, senior))
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct OfferRow {
    alert_id: String,
    volunteer_id: String,
    offered_at: i64,
    expires_at: i64,
    distance_m: i64,
    eta_s: i64,
    outcome: Option<String>,
}

impl OfferRow {
    fn outcome(&self) -> Result<Option<OfferOutcome>, StoreError> {
        self.outcome.as_deref().map(name).transpose()
    }

    fn into_offer(self) -> Result<Offer, StoreError> {
        Ok(Offer {
            volunteer_id: id("volunteer id", self.volunteer_id)?,
            offered_at: ts(self.offered_at)?,
            expires_at: ts(self.expires_at)?,
            distance_m: small("distance_m", self.distance_m)?,
            eta_s: small("eta_s", self.eta_s)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct TimelineRow {
    at: i64,
    kind: String,
    volunteer_id: Option<String>,
    distance_m: Option<i64>,
    eta_s: Option<i64>,
    actor: Option<String>,
    reason: Option<String>,
    outcome: Option<String>,
    note: Option<String>,
    event_id: Option<String>,
    channel: Option<String>,
    recipient: Option<String>,
}

impl IntoDomain for TimelineRow {
    type Out = TimelineEvent;
    fn into_domain(self) -> Result<TimelineEvent, StoreError> {
        Ok(TimelineEvent {
            at: ts(self.at)?,
            kind: name(&self.kind)?,
            volunteer_id: id_opt("volunteer id", self.volunteer_id)?,
            distance_m: small_opt("distance_m", self.distance_m)?,
            eta_s: small_opt("eta_s", self.eta_s)?,
            by: self.actor,
            reason: self.reason,
            outcome: self.outcome,
            note: self.note,
            event_id: id_opt("event id", self.event_id)?,
            channel: self.channel,
            recipient: self.recipient,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct PushRow {
    pub(super) endpoint: String,
    pub(super) p256dh: String,
    pub(super) auth: String,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct NotificationRow {
    id: String,
    alert_id: String,
    audience: String,
    event: String,
    body: String,
    due_at: i64,
    attempts: i64,
    created_at: i64,
}

impl IntoDomain for NotificationRow {
    type Out = Notification;
    fn into_domain(self) -> Result<Notification, StoreError> {
        Ok(Notification {
            alert_id: AlertId::parse(self.alert_id)
                .map_err(|e| StoreError::Corrupt(format!("notification alert id: {e}")))?,
            audience: Audience::parse(&self.audience).ok_or_else(|| {
                StoreError::Corrupt(format!("notification audience {:?}", self.audience))
            })?,
            id: self.id,
            event: self.event,
            body: self.body,
            due_at: ts(self.due_at)?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            created_at: ts(self.created_at)?,
        })
    }
}

/// When the next notification is due.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct DueRow {
    pub(super) due_at: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct EventRow {
    alert_id: String,
    event_id: String,
}

/// The one column of a lookup by id.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct IdRow {
    pub(super) id: Option<String>,
}

impl IdRow {
    pub(super) fn parse<T: TryFrom<String, Error = IdError>>(
        self,
        what: &str,
    ) -> Result<Option<T>, StoreError> {
        id_opt(what, self.id)
    }
}

/// A row of `principals`.
#[derive(sqlx::FromRow)]
pub(super) struct PrincipalRow {
    id: String,
    kind: String,
    secret_hash: Option<String>,
}

impl IntoDomain for PrincipalRow {
    type Out = Credential;
    fn into_domain(self) -> Result<Credential, StoreError> {
        Ok(Credential {
            kind: name(&self.kind)?,
            id: self.id,
            secret_hash: self.secret_hash,
        })
    }
}

// ----- assembling ---------------------------------------------------------

/// Groups pending offer rows (ordered by alert, then `offered_at`) by alert.
fn pending_by_alert(offers: Vec<OfferRow>) -> Result<HashMap<String, Vec<Offer>>, StoreError> {
    let mut by_alert: HashMap<String, Vec<Offer>> = HashMap::new();
    for row in offers {
        if row.outcome.is_none() {
            let key = row.alert_id.clone();
            by_alert.entry(key).or_default().push(row.into_offer()?);
        }
    }
    Ok(by_alert)
}

/// Alerts with their pending offers and their senior's card, in the order
/// of `alerts`.
pub(super) fn with_offers(
    alerts: Vec<AlertRow>,
    offers: Vec<OfferRow>,
) -> Result<Vec<(Alert, SeniorCard)>, StoreError> {
    let mut pending = pending_by_alert(offers)?;
    alerts
        .into_iter()
        .map(|row| {
            let (mut alert, senior) = row.into_alert()?;
            alert.offers = pending.remove(alert.id.as_str()).unwrap_or_default();
            Ok((alert, senior))
        })
        .collect()
}

/// The dispatcher's state from the rows of [`SNAPSHOT_VOLUNTEERS`],
/// [`SNAPSHOT_ALERTS`], [`SNAPSHOT_OFFERS`] and [`SNAPSHOT_EVENTS`].
pub(super) fn snapshot(
    volunteers: Vec<VolunteerRow>,
    alerts: Vec<AlertRow>,
    offers: Vec<OfferRow>,
    events: Vec<EventRow>,
) -> Result<Snapshot, StoreError> {
    let mut offered: HashMap<String, HashSet<VolunteerId>> = HashMap::new();
    let mut excluded: HashMap<String, HashSet<VolunteerId>> = HashMap::new();
    for row in &offers {
        let volunteer: VolunteerId = id("volunteer id", row.volunteer_id.clone())?;
        if matches!(
            row.outcome()?,
            Some(OfferOutcome::Declined | OfferOutcome::Expired)
        ) {
            excluded
                .entry(row.alert_id.clone())
                .or_default()
                .insert(volunteer.clone());
        }
        offered
            .entry(row.alert_id.clone())
            .or_default()
            .insert(volunteer);
    }
    let mut seen: HashMap<String, HashSet<EventId>> = HashMap::new();
    for row in events {
        let event = id("event id", row.event_id)?;
        seen.entry(row.alert_id).or_default().insert(event);
    }
    let alerts = with_offers(alerts, offers)?
        .into_iter()
        .map(|(alert, senior)| {
            let key = alert.id.as_str();
            ActiveAlert {
                events: seen.remove(key).unwrap_or_default(),
                excluded: excluded.remove(key).unwrap_or_default(),
                offered: offered.remove(key).unwrap_or_default(),
                alert,
                senior,
            }
        })
        .collect();
    let volunteers = volunteers
        .into_iter()
        .map(VolunteerRow::into_volunteer)
        .collect::<Result<_, _>>()?;
    Ok(Snapshot { volunteers, alerts })
}

/// A volunteer's pending offers, each with its alert.
pub(super) fn pending_offers(
    volunteer: &VolunteerId,
    alerts: Vec<AlertRow>,
    offers: Vec<OfferRow>,
) -> Result<Vec<super::PendingOffer>, StoreError> {
    let mut out = Vec::new();
    for (alert, senior) in with_offers(alerts, offers)? {
        if let Some(offer) = alert.pending_offer(volunteer).cloned() {
            out.push(super::PendingOffer {
                alert,
                offer,
                senior,
            });
        }
    }
    Ok(out)
}

// ----- the implementation -------------------------------------------------

/// Writes `impl Store for $store`, whose field `pool` is a
/// `sqlx::Pool<$db>`. `$read_begin` (an `Option<&'static str>`) is run first
/// in `load_snapshot`'s transaction, so that its reads share one view of
/// the database (PostgreSQL needs REPEATABLE READ for that; a SQLite
/// transaction already reads from one snapshot).
macro_rules! impl_store {
    ($store:ty, $db:ty, $read_begin:expr) => {
        // A block of its own, so the names below are imported once, here.
        const _: () = {
            use $crate::domain::registry::{
                Credential, Device, Heartbeat, PrincipalKind, PushEndpoint, Senior,
                VolunteerProfile, VolunteerRecord,
            };
            use $crate::domain::{
                Alert, AlertId, DeviceId, Effects, EventId, Notification, Position, SeniorCard,
                SeniorId, Snapshot, TimelineEvent, Timestamp, VolunteerId,
            };
            use $crate::store::sql::{self, IntoDomain as _};
            use $crate::store::{AlertFilter, PendingOffer, StoreError};

            impl $store {
                /// The row `sql` selects by the one parameter `id`, read back.
                async fn by_id<R>(
                    &self,
                    sql: &'static str,
                    id: &str,
                ) -> Result<Option<R::Out>, StoreError>
                where
                    R: sql::IntoDomain
                        + for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row>
                        + Send
                        + Unpin,
                {
                    let row = sqlx::query_as::<_, R>(sql)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    sql::one(row)
                }

                /// Runs `head VALUES (…), (…) tail` for `rows` inside `tx`, as
                /// few statements as the parameter limit allows; returns the
                /// rows affected.
                async fn write_rows<'a, T: 'a>(
                    tx: &mut sqlx::Transaction<'static, $db>,
                    (head, tail, columns): (&'static str, &'static str, usize),
                    rows: &'a [T],
                    mut bind: impl FnMut(&mut sqlx::query_builder::Separated<'_, $db, &'static str>, &'a T),
                ) -> Result<u64, StoreError> {
                    let mut affected = 0;
                    for chunk in sql::statement_chunks(rows, columns) {
                        let mut query = sqlx::QueryBuilder::<$db>::new(head);
                        query.push_values(chunk, |mut row, item| bind(&mut row, item));
                        query.push(tail);
                        affected += query.build().execute(&mut **tx).await?.rows_affected();
                    }
                    Ok(affected)
                }

                /// Appends events to alerts' timelines, in order, inside `tx`.
                async fn insert_timeline(
                    tx: &mut sqlx::Transaction<'static, $db>,
                    events: &[(&AlertId, &TimelineEvent)],
                ) -> Result<(), StoreError> {
                    let shape = (sql::INSERT_TIMELINE, "", sql::TIMELINE_COLUMNS);
                    Self::write_rows(tx, shape, events, |row, (alert, e)| {
                        row.push_bind(alert.as_str())
                            .push_bind(sql::ms(&e.at))
                            .push_bind(e.kind.as_str())
                            .push_bind(e.volunteer_id.as_ref().map(|v| v.as_str()))
                            .push_bind(e.distance_m.map(i64::from))
                            .push_bind(e.eta_s.map(i64::from))
                            .push_bind(e.by.as_deref())
                            .push_bind(e.reason.as_deref())
                            .push_bind(e.outcome.as_deref())
                            .push_bind(e.note.as_deref())
                            .push_bind(e.event_id.as_ref().map(|v| v.as_str()))
                            .push_bind(e.channel.as_deref())
                            .push_bind(e.recipient.as_deref());
                    })
                    .await?;
                    Ok(())
                }

                /// Adds notifications to the outbox, inside `tx`.
                async fn insert_notifications(
                    tx: &mut sqlx::Transaction<'static, $db>,
                    notifications: &[Notification],
                ) -> Result<(), StoreError> {
                    let shape = (
                        sql::INSERT_NOTIFICATIONS,
                        sql::INSERT_NOTIFICATIONS_TAIL,
                        sql::NOTIFICATION_COLUMNS,
                    );
                    Self::write_rows(tx, shape, notifications, |row, n| {
                        row.push_bind(n.id.as_str())
                            .push_bind(n.alert_id.as_str())
                            .push_bind(n.audience.label())
                            .push_bind(n.event.as_str())
                            .push_bind(n.body.as_str())
                            .push_bind(sql::ms(&n.due_at))
                            .push_bind(i64::from(n.attempts))
                            .push_bind(sql::ms(&n.created_at));
                    })
                    .await?;
                    Ok(())
                }

                /// Claims `id` for `kind` in the shared namespace, inside `tx`;
                /// `IdTaken` if another kind holds it.
                async fn claim_id(
                    tx: &mut sqlx::Transaction<'static, $db>,
                    id: &str,
                    kind: PrincipalKind,
                ) -> Result<(), StoreError> {
                    sqlx::query(sql::CLAIM_ID)
                        .bind(id)
                        .bind(kind.as_str())
                        .execute(&mut **tx)
                        .await?;
                    let held = sqlx::query_as::<_, sql::PrincipalRow>(sql::PRINCIPAL)
                        .bind(id)
                        .fetch_one(&mut **tx)
                        .await?
                        .into_domain()?;
                    if held.kind != kind {
                        return Err(StoreError::IdTaken {
                            id: id.to_string(),
                            kind: held.kind,
                        });
                    }
                    Ok(())
                }

                /// The rows `sql` selects (with one parameter, if given), read back.
                async fn every<R>(
                    &self,
                    sql: &'static str,
                    param: Option<&str>,
                ) -> Result<Vec<R::Out>, StoreError>
                where
                    R: sql::IntoDomain
                        + for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row>
                        + Send
                        + Unpin,
                {
                    let mut query = sqlx::query_as::<_, R>(sql);
                    if let Some(param) = param {
                        query = query.bind(param);
                    }
                    sql::all(query.fetch_all(&self.pool).await?)
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::Store for $store {
                #[tracing::instrument(skip(self), err)]
                async fn ping(&self) -> Result<(), StoreError> {
                    sqlx::query(sql::PING).execute(&self.pool).await?;
                    Ok(())
                }

                #[tracing::instrument(skip(self, value), err)]
                async fn init_meta(&self, key: &str, value: &str) -> Result<String, StoreError> {
                    sqlx::query(sql::INIT_META)
                        .bind(key)
                        .bind(value)
                        .execute(&self.pool)
                        .await?;
                    let (stored,): (String,) = sqlx::query_as(sql::GET_META)
                        .bind(key)
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(stored)
                }

                #[tracing::instrument(skip(self, senior), fields(senior = %senior.id), err)]
                async fn upsert_senior(&self, senior: &Senior) -> Result<(), StoreError> {
                    sqlx::query(sql::UPSERT_SENIOR)
                        .bind(senior.id.as_str())
                        .bind(&senior.name)
                        .bind(senior.address.as_deref())
                        .bind(senior.home.map(|p| p.lat()))
                        .bind(senior.home.map(|p| p.lon()))
                        .bind(senior.grid.as_deref())
                        .bind(senior.notes.as_deref())
                        .bind(sql::to_json(&senior.contacts)?)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                #[tracing::instrument(skip(self), err)]
                async fn get_senior(&self, id: &SeniorId) -> Result<Option<Senior>, StoreError> {
                    self.by_id::<sql::SeniorRow>(sql::GET_SENIOR, id.as_str()).await
                }

                #[tracing::instrument(skip(self), err)]
                async fn list_seniors(&self) -> Result<Vec<Senior>, StoreError> {
                    self.every::<sql::SeniorRow>(sql::LIST_SENIORS, None).await
                }

                #[tracing::instrument(skip(self), err)]
                async fn upsert_device(
                    &self,
                    device: &DeviceId,
                    senior: &SeniorId,
                ) -> Result<Device, StoreError> {
                    let mut tx = self.pool.begin().await?;
                    Self::claim_id(&mut tx, device.as_str(), PrincipalKind::Device).await?;
                    let row = sqlx::query_as::<_, sql::DeviceRow>(sql::UPSERT_DEVICE)
                        .bind(device.as_str())
                        .bind(senior.as_str())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| sql::fk_to_not_found(e, "senior"))?;
                    tx.commit().await?;
                    row.into_domain()
                }

                #[tracing::instrument(skip(self), err)]
                async fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
                    self.every::<sql::DeviceRow>(sql::LIST_DEVICES, None).await
                }

                #[tracing::instrument(skip(self), err)]
                async fn press_context(
                    &self,
                    device: &DeviceId,
                    event: &EventId,
                ) -> Result<$crate::store::PressContext, StoreError> {
                    let row = sqlx::query_as::<_, sql::PressRow>(sql::PRESS_CONTEXT)
                        .bind(device.as_str())
                        .bind(event.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(sql::one(row)?.unwrap_or($crate::store::PressContext {
                        owner: None,
                        seen: None,
                    }))
                }

                async fn device_owner(
                    &self,
                    device: &DeviceId,
                ) -> Result<Option<(SeniorCard, Option<Position>)>, StoreError> {
                    let Some(row) = sqlx::query_as::<_, sql::SeniorRow>(sql::DEVICE_OWNER)
                        .bind(device.as_str())
                        .fetch_optional(&self.pool)
                        .await?
                    else {
                        return Ok(None);
                    };
                    let senior = row.into_domain()?;
                    let card = SeniorCard {
                        id: senior.id,
                        name: senior.name,
                        address: senior.address,
                        notes: senior.notes,
                    };
                    Ok(Some((card, senior.home)))
                }

                #[tracing::instrument(skip(self, beats), fields(beats = beats.len()), err)]
                async fn record_heartbeats(
                    &self,
                    beats: &[Heartbeat],
                ) -> Result<Vec<DeviceId>, StoreError> {
                    if beats.is_empty() {
                        return Ok(Vec::new());
                    }
                    // Each engine writes a batch its own fastest way.
                    self.write_heartbeats(beats).await
                }

                #[tracing::instrument(skip(self, profile), fields(volunteer = %profile.id), err)]
                async fn upsert_volunteer(
                    &self,
                    profile: &VolunteerProfile,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    Self::claim_id(&mut tx, profile.id.as_str(), PrincipalKind::Volunteer).await?;
                    sqlx::query(sql::UPSERT_VOLUNTEER)
                        .bind(profile.id.as_str())
                        .bind(&profile.name)
                        .bind(profile.phone.as_deref())
                        .bind(profile.grid.as_deref())
                        .bind(sql::to_json(&profile.skills)?)
                        .bind(profile.ntfy_url.as_deref())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip(self), err)]
                async fn get_volunteer(
                    &self,
                    id: &VolunteerId,
                ) -> Result<Option<VolunteerRecord>, StoreError> {
                    self.by_id::<sql::VolunteerRow>(sql::GET_VOLUNTEER, id.as_str()).await
                }

                #[tracing::instrument(skip(self), err)]
                async fn list_volunteers(&self) -> Result<Vec<VolunteerRecord>, StoreError> {
                    self.every::<sql::VolunteerRow>(sql::LIST_VOLUNTEERS, None).await
                }

                #[tracing::instrument(skip(self, hash), err)]
                async fn set_volunteer_token(
                    &self,
                    id: &VolunteerId,
                    hash: &str,
                    mqtt_hash: &str,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query(sql::SET_TOKEN)
                        .bind(id.as_str())
                        .bind(hash)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| sql::fk_to_not_found(e, "volunteer"))?;
                    sqlx::query(sql::SET_SECRET)
                        .bind(id.as_str())
                        .bind(PrincipalKind::Volunteer.as_str())
                        .bind(mqtt_hash)
                        .bind(sql::ms(&chrono::Utc::now()))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip(self, hash), err)]
                async fn set_secret(
                    &self,
                    kind: PrincipalKind,
                    id: &str,
                    hash: &str,
                    at: Timestamp,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    if kind != PrincipalKind::Device {
                        Self::claim_id(&mut tx, id, kind).await?;
                    }
                    // The write first: a transaction that reads and then
                    // writes cannot take SQLite's write lock once another
                    // writer has committed (BUSY at once, whatever the
                    // busy timeout), so concurrent secrets would be 503s.
                    let updated = sqlx::query(sql::SET_SECRET)
                        .bind(id)
                        .bind(kind.as_str())
                        .bind(hash)
                        .bind(sql::ms(&at))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if updated == 0 {
                        // Not a registered band: tell unknown from another kind.
                        let held = sqlx::query_as::<_, sql::PrincipalRow>(sql::PRINCIPAL)
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await?;
                        tx.rollback().await?;
                        return Err(match held.map(|row| row.into_domain()).transpose()? {
                            Some(c) if c.kind != kind => StoreError::IdTaken {
                                id: id.to_string(),
                                kind: c.kind,
                            },
                            _ => StoreError::NotFound("device"),
                        });
                    }
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip(self), err)]
                async fn credential(&self, id: &str) -> Result<Option<Credential>, StoreError> {
                    self.by_id::<sql::PrincipalRow>(sql::PRINCIPAL, id).await
                }

                #[tracing::instrument(skip(self), err)]
                async fn list_credentials(&self) -> Result<Vec<Credential>, StoreError> {
                    self.every::<sql::PrincipalRow>(sql::LIST_PRINCIPALS, None).await
                }

                #[tracing::instrument(skip(self), err)]
                async fn due_notifications(
                    &self,
                    now: Timestamp,
                    limit: u32,
                ) -> Result<Vec<Notification>, StoreError> {
                    let rows = sqlx::query_as::<_, sql::NotificationRow>(sql::DUE_NOTIFICATIONS)
                        .bind(sql::ms(&now))
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.into_iter().map(sql::IntoDomain::into_domain).collect()
                }

                #[tracing::instrument(skip(self, endpoint), err)]
                async fn add_push_endpoint(
                    &self,
                    volunteer: &VolunteerId,
                    endpoint: &PushEndpoint,
                    at: Timestamp,
                    keep: u32,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query(sql::UPSERT_PUSH)
                        .bind(endpoint.endpoint.as_str())
                        .bind(volunteer.as_str())
                        .bind(endpoint.p256dh.as_str())
                        .bind(endpoint.auth.as_str())
                        .bind(sql::ms(&at))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| match e {
                            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                                StoreError::NotFound("volunteer")
                            }
                            other => StoreError::from(other),
                        })?;
                    // PostgreSQL checks the reference; SQLite only when
                    // foreign keys are on: ask.
                    let known = sqlx::query_as::<_, sql::IdRow>(sql::VOLUNTEER_EXISTS)
                        .bind(volunteer.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if known.is_none() {
                        tx.rollback().await?;
                        return Err(StoreError::NotFound("volunteer"));
                    }
                    sqlx::query(sql::TRIM_PUSH)
                        .bind(volunteer.as_str())
                        .bind(i64::from(keep))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip(self, endpoint), err)]
                async fn remove_push_endpoint(
                    &self,
                    volunteer: &VolunteerId,
                    endpoint: &str,
                ) -> Result<bool, StoreError> {
                    let gone = sqlx::query(sql::REMOVE_PUSH)
                        .bind(volunteer.as_str())
                        .bind(endpoint)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    Ok(gone > 0)
                }

                #[tracing::instrument(skip(self, endpoint), err)]
                async fn drop_push_endpoint(&self, endpoint: &str) -> Result<(), StoreError> {
                    sqlx::query(sql::DROP_PUSH)
                        .bind(endpoint)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                #[tracing::instrument(skip(self), err)]
                async fn volunteers_with_channels(&self) -> Result<Vec<VolunteerId>, StoreError> {
                    let rows = sqlx::query_as::<_, sql::IdRow>(sql::WITH_CHANNELS)
                        .fetch_all(&self.pool)
                        .await?;
                    rows.into_iter()
                        .filter_map(|r| r.parse("volunteer id").transpose())
                        .collect()
                }

                async fn has_channel(&self, volunteer: &VolunteerId) -> Result<bool, StoreError> {
                    let row = sqlx::query_as::<_, sql::IdRow>(sql::HAS_CHANNEL)
                        .bind(volunteer.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row.is_some())
                }

                async fn push_endpoints(
                    &self,
                    volunteer: &VolunteerId,
                ) -> Result<Vec<PushEndpoint>, StoreError> {
                    let rows = sqlx::query_as::<_, sql::PushRow>(sql::PUSH_OF)
                        .bind(volunteer.as_str())
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows
                        .into_iter()
                        .map(|r| PushEndpoint {
                            endpoint: r.endpoint,
                            p256dh: r.p256dh,
                            auth: r.auth,
                        })
                        .collect())
                }

                #[tracing::instrument(skip(self, notification), fields(id = %notification.id), err)]
                async fn add_notification(
                    &self,
                    notification: &Notification,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    Self::insert_notifications(&mut tx, std::slice::from_ref(notification)).await?;
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip(self, notification), fields(id = %notification.id), err)]
                async fn notification_dropped(
                    &self,
                    notification: &Notification,
                ) -> Result<(), StoreError> {
                    sqlx::query(sql::DELETE_NOTIFICATION)
                        .bind(notification.id.as_str())
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                #[tracing::instrument(skip(self), err)]
                async fn next_notification_due(&self) -> Result<Option<Timestamp>, StoreError> {
                    let row = sqlx::query_as::<_, sql::DueRow>(sql::NEXT_NOTIFICATION_DUE)
                        .fetch_one(&self.pool)
                        .await?;
                    row.due_at.map(sql::ts).transpose()
                }

                #[tracing::instrument(skip(self, notification, events), fields(id = %notification.id), err)]
                async fn notification_tried(
                    &self,
                    notification: &Notification,
                    events: &[TimelineEvent],
                    retry: Option<(Timestamp, u32)>,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    let events: Vec<_> = events.iter().map(|e| (&notification.alert_id, e)).collect();
                    Self::insert_timeline(&mut tx, &events).await?;
                    match retry {
                        Some((at, attempts)) => {
                            sqlx::query(sql::RESCHEDULE_NOTIFICATION)
                                .bind(notification.id.as_str())
                                .bind(sql::ms(&at))
                                .bind(i64::from(attempts))
                                .execute(&mut *tx)
                                .await?;
                        }
                        None => {
                            sqlx::query(sql::DELETE_NOTIFICATION)
                                .bind(notification.id.as_str())
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip(self, hash), err)]
                async fn volunteer_by_token(
                    &self,
                    hash: &str,
                ) -> Result<Option<VolunteerId>, StoreError> {
                    let row = sqlx::query_as::<_, sql::IdRow>(sql::VOLUNTEER_BY_TOKEN)
                        .bind(hash)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(row
                        .map(|row| row.parse("volunteer id"))
                        .transpose()?
                        .flatten())
                }

                #[tracing::instrument(skip(self), err)]
                async fn load_snapshot(&self) -> Result<Snapshot, StoreError> {
                    let mut tx = self.pool.begin().await?;
                    if let Some(statement) = $read_begin {
                        sqlx::query(statement).execute(&mut *tx).await?;
                    }
                    let volunteers =
                        sqlx::query_as::<_, sql::VolunteerRow>(sql::SNAPSHOT_VOLUNTEERS)
                            .fetch_all(&mut *tx)
                            .await?;
                    let alerts = sqlx::query_as::<_, sql::AlertRow>(sql::SNAPSHOT_ALERTS)
                        .fetch_all(&mut *tx)
                        .await?;
                    let offers = sqlx::query_as::<_, sql::OfferRow>(sql::SNAPSHOT_OFFERS)
                        .fetch_all(&mut *tx)
                        .await?;
                    let events = sqlx::query_as::<_, sql::EventRow>(sql::SNAPSHOT_EVENTS)
                        .fetch_all(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    sql::snapshot(volunteers, alerts, offers, events)
                }

                #[tracing::instrument(
                                                        skip(self, fx),
                                                        fields(
                                                            alerts = fx.alerts.len(),
                                                            offers = fx.offers.len(),
                                                            timeline = fx.timeline.len(),
                                                            volunteers = fx.volunteers.len(),
                                                        ),
                                                        err
                                                    )]
                async fn commit(&self, fx: &Effects) -> Result<(), StoreError> {
                    if !fx.has_writes() {
                        return Ok(());
                    }
                    let mut tx = self.pool.begin().await?;
                    let alerts = (sql::INSERT_ALERTS, sql::UPSERT_ALERTS_TAIL, sql::ALERT_COLUMNS);
                    Self::write_rows(&mut tx, alerts, &fx.alerts, |row, a| {
                        row.push_bind(a.id.as_str())
                            .push_bind(a.device_id.as_str())
                            .push_bind(a.senior_id.as_str())
                            .push_bind(a.kind.as_str())
                            .push_bind(a.state.as_str())
                            .push_bind(a.lat)
                            .push_bind(a.lon)
                            .push_bind(sql::ms(&a.pressed_at))
                            .push_bind(sql::ms(&a.received_at))
                            .push_bind(a.volunteer_id.as_ref().map(|v| v.as_str()))
                            .push_bind(a.accepted_at.as_ref().map(sql::ms))
                            .push_bind(a.on_scene_at.as_ref().map(sql::ms))
                            .push_bind(a.resolved_at.as_ref().map(sql::ms))
                            .push_bind(a.cancelled_at.as_ref().map(sql::ms))
                            .push_bind(sql::ms(&a.response_deadline))
                            .push_bind(sql::ms(&a.arrival_deadline))
                            .push_bind(a.response_breached)
                            .push_bind(a.arrival_breached)
                            .push_bind(a.escalated)
                            .push_bind(a.arrival_at_risk)
                            .push_bind(a.event_id.as_str())
                            .push_bind(a.outcome.as_deref());
                    })
                    .await?;
                    // One statement may not upsert a row twice: the last
                    // word on each offer, in first-touch order.
                    let offers = sql::last_of_each(&fx.offers, |o| (&o.alert_id, &o.volunteer_id));
                    let shape = (sql::INSERT_OFFERS, sql::UPSERT_OFFERS_TAIL, sql::OFFER_COLUMNS);
                    Self::write_rows(&mut tx, shape, &offers, |row, o| {
                        row.push_bind(o.alert_id.as_str())
                            .push_bind(o.volunteer_id.as_str())
                            .push_bind(sql::ms(&o.offered_at))
                            .push_bind(sql::ms(&o.expires_at))
                            .push_bind(i64::from(o.distance_m))
                            .push_bind(i64::from(o.eta_s))
                            .push_bind(o.outcome.map(|x| x.as_str()))
                            .push_bind(o.closed_at.as_ref().map(sql::ms));
                    })
                    .await?;
                    let timeline: Vec<_> = fx.timeline.iter().map(|(a, e)| (a, e)).collect();
                    Self::insert_timeline(&mut tx, &timeline).await?;
                    Self::insert_notifications(&mut tx, &fx.notifications).await?;
                    // In id order, so that two instances claiming the same
                    // volunteers lock them in the same order (no deadlock).
                    let mut volunteers = sql::last_of_each(&fx.volunteers, |v| &v.id);
                    volunteers.sort_by(|a, b| a.id.cmp(&b.id));
                    let mut claimed = std::collections::HashSet::<String>::with_capacity(volunteers.len());
                    for chunk in sql::statement_chunks(&volunteers, sql::CLAIM_COLUMNS) {
                        let mut query = sqlx::QueryBuilder::<$db>::new(sql::CLAIM_VOLUNTEERS);
                        query.push_values(chunk, |mut row, v| {
                            row.push_bind(v.id.as_str())
                                .push_bind(v.on_duty)
                                .push_bind(v.position.map(|p| p.lat()))
                                .push_bind(v.position.map(|p| p.lon()))
                                .push_bind(v.busy_alert.as_ref().map(|a| a.as_str()))
                                .push_bind(v.location_at.as_ref().map(sql::ms))
                                .push_bind(
                                    fx.busy_before
                                        .get(&v.id)
                                        .and_then(|b| b.as_ref())
                                        .map(|a| a.as_str()),
                                );
                        });
                        query.push(sql::CLAIM_VOLUNTEERS_TAIL);
                        let rows = query.build_query_as::<sql::IdRow>().fetch_all(&mut *tx).await?;
                        claimed.extend(rows.into_iter().filter_map(|r| r.id));
                    }
                    let refused: Vec<&str> = volunteers
                        .iter()
                        .map(|v| v.id.as_str())
                        .filter(|id| !claimed.contains(*id))
                        .collect();
                    if !refused.is_empty() {
                        tx.rollback().await?;
                        return Err(StoreError::Conflict(format!(
                            "volunteer {} is unknown or busy with another alert",
                            refused.join(", ")
                        )));
                    }
                    let shape = (sql::INSERT_INGESTED, sql::INSERT_INGESTED_TAIL, sql::INGESTED_COLUMNS);
                    Self::write_rows(&mut tx, shape, &fx.ingested, |row, i| {
                        row.push_bind(i.device_id.as_str())
                            .push_bind(i.event_id.as_str())
                            .push_bind(i.alert_id.as_ref().map(|a| a.as_str()))
                            .push_bind(sql::ms(&i.at));
                    })
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip(self), err)]
                async fn find_ingested(
                    &self,
                    device: &DeviceId,
                    event: &EventId,
                ) -> Result<Option<Option<AlertId>>, StoreError> {
                    let row = sqlx::query_as::<_, sql::IdRow>(sql::FIND_INGESTED)
                        .bind(device.as_str())
                        .bind(event.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                    row.map(|row| row.parse("alert id")).transpose()
                }

                #[tracing::instrument(skip(self), err)]
                async fn get_alert(&self, id: &AlertId) -> Result<Option<Alert>, StoreError> {
                    let alerts = sqlx::query_as::<_, sql::AlertRow>(sql::GET_ALERT)
                        .bind(id.as_str())
                        .fetch_all(&self.pool)
                        .await?;
                    if alerts.is_empty() {
                        return Ok(None);
                    }
                    let offers = sqlx::query_as::<_, sql::OfferRow>(sql::GET_ALERT_OFFERS)
                        .bind(id.as_str())
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(sql::with_offers(alerts, offers)?
                        .into_iter()
                        .next()
                        .map(|(a, _)| a))
                }

                #[tracing::instrument(skip(self), err)]
                async fn timeline(&self, id: &AlertId) -> Result<Vec<TimelineEvent>, StoreError> {
                    self.every::<sql::TimelineRow>(sql::TIMELINE, Some(id.as_str())).await
                }

                #[tracing::instrument(skip(self), err)]
                async fn list_alerts(
                    &self,
                    filter: AlertFilter,
                    limit: u32,
                ) -> Result<Vec<Alert>, StoreError> {
                    let (alerts_sql, offers_sql) = match filter {
                        AlertFilter::Active => (sql::LIST_ACTIVE, sql::LIST_ACTIVE_OFFERS),
                        AlertFilter::All => (sql::LIST_ALL, sql::LIST_ALL_OFFERS),
                    };
                    let limit = i64::from(limit);
                    let alerts = sqlx::query_as::<_, sql::AlertRow>(alerts_sql)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?;
                    let offers = sqlx::query_as::<_, sql::OfferRow>(offers_sql)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(sql::with_offers(alerts, offers)?
                        .into_iter()
                        .map(|(a, _)| a)
                        .collect())
                }

                #[tracing::instrument(skip(self), err)]
                async fn was_offered(
                    &self,
                    alert: &AlertId,
                    volunteer: &VolunteerId,
                ) -> Result<bool, StoreError> {
                    let (n,): (i64,) = sqlx::query_as(sql::WAS_OFFERED)
                        .bind(alert.as_str())
                        .bind(volunteer.as_str())
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(n > 0)
                }

                #[tracing::instrument(skip(self), err)]
                async fn pending_offers(
                    &self,
                    volunteer: &VolunteerId,
                ) -> Result<Vec<PendingOffer>, StoreError> {
                    let alerts = sqlx::query_as::<_, sql::AlertRow>(sql::PENDING_ALERTS)
                        .bind(volunteer.as_str())
                        .fetch_all(&self.pool)
                        .await?;
                    let offers = sqlx::query_as::<_, sql::OfferRow>(sql::PENDING_ALERTS_OFFERS)
                        .bind(volunteer.as_str())
                        .fetch_all(&self.pool)
                        .await?;
                    sql::pending_offers(volunteer, alerts, offers)
                }

                #[tracing::instrument(skip(self), err)]
                async fn alerts_pressed_between(
                    &self,
                    from: Timestamp,
                    to: Timestamp,
                ) -> Result<Vec<Alert>, StoreError> {
                    let alerts = sqlx::query_as::<_, sql::AlertRow>(sql::PRESSED_BETWEEN)
                        .bind(sql::ms(&from))
                        .bind(sql::ms(&to))
                        .fetch_all(&self.pool)
                        .await?;
                    let offers = sqlx::query_as::<_, sql::OfferRow>(sql::PRESSED_BETWEEN_OFFERS)
                        .bind(sql::ms(&from))
                        .bind(sql::ms(&to))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(sql::with_offers(alerts, offers)?
                        .into_iter()
                        .map(|(a, _)| a)
                        .collect())
                }
            }
        };
    };
}

pub(super) use impl_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_carry_powers_of_two_rows_under_the_limit() {
        let rows: Vec<u32> = (0..1000).collect();
        let sizes: Vec<usize> = statement_chunks(&rows, 8).map(<[u32]>::len).collect();
        assert_eq!(sizes, [512, 256, 128, 64, 32, 8]);
        let again: Vec<u32> = statement_chunks(&rows, 8).flatten().copied().collect();
        assert_eq!(again, rows, "every row once, in order");
        // 22 columns: at most 1,363 rows fit under 30,000 parameters.
        let many: Vec<u32> = (0..3000).collect();
        let sizes: Vec<usize> = statement_chunks(&many, 22).map(<[u32]>::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 3000);
        assert!(
            sizes
                .iter()
                .all(|n| n.is_power_of_two() && n * 22 <= MAX_BIND_PARAMS)
        );
        assert_eq!(statement_chunks(&[] as &[u32], 8).count(), 0);
    }

    #[test]
    fn the_last_word_on_each_row_is_kept_in_first_touch_order() {
        let items = [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2)];
        assert_eq!(
            last_of_each(&items, |i| i.0),
            [("a", 2), ("b", 2), ("c", 1)]
        );
    }
}
