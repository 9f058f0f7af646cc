//! The store, on both engines: each test below runs once on a fresh SQLite
//! file and once on a fresh PostgreSQL database (skipped with a note when
//! no server is configured, never skipped in CI).

use std::collections::HashSet;
use std::ops::Deref;
use std::sync::Arc;

use chrono::TimeDelta;
use onepress::domain::registry::{Contact, Heartbeat, PrincipalKind, Senior, VolunteerProfile};
use onepress::domain::{
    Alert, AlertId, AlertKind, AlertState, DeviceId, Effects, EventId, IngestedEvent, Offer,
    OfferOutcome, OfferRecord, Position, SeniorCard, SeniorId, TimelineEvent, TimelineKind,
    Timestamp, Volunteer, VolunteerId,
};
use onepress::store::{AlertFilter, Store, StoreError};
use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::common::db;

/// Runs each named `async fn(&Db)` as `<name>::sqlite` and
/// `<name>::postgres`.
macro_rules! on_both_engines {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(&super::Db::sqlite().await).await;
            }

            #[tokio::test]
            #[cfg_attr(
                onepress_no_test_postgres,
                ignore = "set ONEPRESS_TEST_DATABASE_URL to test PostgreSQL"
            )]
            async fn postgres() {
                match super::Db::postgres().await {
                    Some(db) => super::$name(&db).await,
                    None => eprintln!("skipped: set {} to test PostgreSQL", crate::common::db::PG_ENV),
                }
            }
        }
    )+};
}

/// A fresh store on one engine, its URL, and what keeps its database alive
/// (dropped last). Derefs to the store.
struct Db {
    store: Arc<dyn Store>,
    url: String,
    _keep: Box<dyn Send + Sync>,
}

impl Db {
    async fn sqlite() -> Self {
        let (url, dir) = db::sqlite_url().await;
        Self::open(url, Box::new(dir)).await
    }

    async fn postgres() -> Option<Self> {
        let url = db::postgres_url().await?;
        let keep = db::DropDatabase(url.clone());
        Some(Self::open(url, Box::new(keep)).await)
    }

    async fn open(url: String, keep: Box<dyn Send + Sync>) -> Self {
        let store = onepress::store::connect(&url).await.expect("a store");
        Self {
            store,
            url,
            _keep: keep,
        }
    }

    /// Runs `sql` on the database behind the store's back.
    async fn raw(&self, sql: &'static str) {
        let done = if self.url.starts_with("sqlite:") {
            let mut conn = SqliteConnection::connect(&self.url).await.expect("connect");
            sqlx::raw_sql(sql).execute(&mut conn).await.map(drop)
        } else {
            let mut conn = PgConnection::connect(&self.url).await.expect("connect");
            sqlx::raw_sql(sql).execute(&mut conn).await.map(drop)
        };
        done.expect("raw SQL");
    }
}

impl Deref for Db {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        self.store.as_ref()
    }
}

on_both_engines!(
    registry_round_trip,
    commit_and_snapshot_round_trip,
    busy_volunteer_claim_conflicts_and_rolls_back,
    one_batch_frees_and_claims_the_same_volunteer,
    unknown_volunteer_claim_conflicts,
    device_of_unknown_senior_is_not_found,
    tokens_are_set_found_and_replaced,
    alerts_are_listed_newest_first,
    heartbeats_update_known_devices,
    heartbeats_of_more_bands_than_one_statement_takes,
    was_offered_counts_offers_and_assignment,
    pending_offers_of_a_volunteer,
    ingested_events_are_found,
    alerts_pressed_in_a_half_open_window,
    corrupt_rows_are_errors,
    two_instances_cannot_claim_one_volunteer,
    ids_share_one_namespace,
    secrets_are_kept_as_hashes_and_replaced,
    a_batch_larger_than_one_statement_lands_whole,
);

// ----- fixtures -------------------------------------------------------------

/// A moment `secs` seconds after a fixed start, to the millisecond.
fn t(secs: i64) -> Timestamp {
    let start: Timestamp = "2026-11-25T03:00:00.123Z".parse().expect("a time");
    start + TimeDelta::seconds(secs)
}

fn sid(s: &str) -> SeniorId {
    SeniorId::parse(s).expect("a senior id")
}
fn did(s: &str) -> DeviceId {
    DeviceId::parse(s).expect("a device id")
}
fn vid(s: &str) -> VolunteerId {
    VolunteerId::parse(s).expect("a volunteer id")
}
fn aid(s: &str) -> AlertId {
    AlertId::parse(s).expect("an alert id")
}
fn eid(s: &str) -> EventId {
    EventId::parse(s).expect("an event id")
}
fn pos(lat: f64, lon: f64) -> Position {
    Position::new(lat, lon).expect("a position")
}

fn senior(id: &str) -> Senior {
    Senior {
        id: sid(id),
        name: format!("Senior {id}"),
        address: Some(format!("{id} Main Street")),
        home: Some(pos(52.5, 13.4)),
        grid: Some("g1".into()),
        notes: Some("deaf in one ear".into()),
        contacts: vec![Contact {
            name: "Daughter".into(),
            phone: "+49 30 1234".into(),
        }],
    }
}

fn card(id: &str) -> SeniorCard {
    let s = senior(id);
    SeniorCard {
        id: s.id,
        name: s.name,
        address: s.address,
        notes: s.notes,
    }
}

fn profile(id: &str) -> VolunteerProfile {
    VolunteerProfile {
        id: vid(id),
        name: format!("Volunteer {id}"),
        phone: Some("+49 170 0000".into()),
        grid: None,
        skills: vec!["first aid".into(), "stairs".into()],
        ntfy_url: Some(format!("https://ntfy.example.org/onepress-{id}")),
    }
}

/// Seniors s1, s2 wearing bands d1, d2, and volunteers v1 to v4.
async fn seed(store: &Db) {
    for (s, d) in [("s1", "d1"), ("s2", "d2")] {
        store.upsert_senior(&senior(s)).await.expect("senior");
        store.upsert_device(&did(d), &sid(s)).await.expect("device");
    }
    for v in ["v1", "v2", "v3", "v4"] {
        store
            .upsert_volunteer(&profile(v))
            .await
            .expect("volunteer");
    }
}

fn alert(id: &str, band: u8, state: AlertState, pressed: Timestamp) -> Alert {
    Alert {
        id: aid(id),
        device_id: did(&format!("d{band}")),
        senior_id: sid(&format!("s{band}")),
        kind: AlertKind::Sos,
        state,
        lat: Some(52.51),
        lon: Some(13.41),
        pressed_at: pressed,
        received_at: pressed + TimeDelta::milliseconds(250),
        volunteer_id: None,
        accepted_at: None,
        on_scene_at: None,
        resolved_at: None,
        cancelled_at: None,
        response_deadline: pressed + TimeDelta::minutes(3),
        arrival_deadline: pressed + TimeDelta::minutes(10),
        response_breached: false,
        arrival_breached: false,
        escalated: false,
        arrival_at_risk: false,
        event_id: eid(&format!("ev-{id}")),
        outcome: None,
        offers: Vec::new(),
    }
}

fn offer(alert: &str, v: &str, at: Timestamp, outcome: Option<OfferOutcome>) -> OfferRecord {
    OfferRecord {
        alert_id: aid(alert),
        volunteer_id: vid(v),
        offered_at: at,
        expires_at: at + TimeDelta::seconds(45),
        distance_m: 420,
        eta_s: 300,
        outcome,
        closed_at: outcome.map(|_| at + TimeDelta::seconds(10)),
    }
}

/// The pending `Offer` an `OfferRecord` shows as.
fn pending(o: &OfferRecord) -> Offer {
    Offer {
        volunteer_id: o.volunteer_id.clone(),
        offered_at: o.offered_at,
        expires_at: o.expires_at,
        distance_m: o.distance_m,
        eta_s: o.eta_s,
    }
}

fn volunteer(id: &str, busy: Option<&str>) -> Volunteer {
    Volunteer {
        id: vid(id),
        name: format!("Volunteer {id}"),
        on_duty: true,
        position: Some(pos(52.52, 13.42)),
        location_at: Some(t(-30)),
        busy_alert: busy.map(aid),
        pending_offer: None,
    }
}

fn ingested(band: u8, event: &str, alert: Option<&str>, at: Timestamp) -> IngestedEvent {
    IngestedEvent {
        device_id: did(&format!("d{band}")),
        event_id: eid(event),
        alert_id: alert.map(aid),
        at,
    }
}

/// Commits alerts as they stand, with nothing else.
async fn put_alerts(store: &Db, alerts: &[Alert]) {
    let fx = Effects {
        alerts: alerts.to_vec(),
        ..Effects::default()
    };
    store.commit(&fx).await.expect("commit alerts");
}

async fn put_offers(store: &Db, offers: &[OfferRecord]) {
    let fx = Effects {
        offers: offers.to_vec(),
        ..Effects::default()
    };
    store.commit(&fx).await.expect("commit offers");
}

// ----- tests ----------------------------------------------------------------

async fn registry_round_trip(store: &Db) {
    store.ping().await.expect("ping");
    seed(store).await;
    assert_eq!(
        store.get_senior(&sid("s1")).await.unwrap(),
        Some(senior("s1"))
    );
    assert_eq!(store.get_senior(&sid("nobody")).await.unwrap(), None);
    let mut changed = senior("s2");
    changed.home = None;
    changed.contacts.clear();
    store.upsert_senior(&changed).await.unwrap();
    assert_eq!(
        store.list_seniors().await.unwrap(),
        vec![senior("s1"), changed]
    );

    let (owner, home) = store
        .device_owner(&did("d1"))
        .await
        .unwrap()
        .expect("an owner");
    assert_eq!(owner, card("s1"));
    assert_eq!(home, Some(pos(52.5, 13.4)));
    assert_eq!(store.device_owner(&did("d9")).await.unwrap(), None);

    // A profile update leaves the dispatch state alone.
    let fx = Effects {
        volunteers: vec![volunteer("v1", None)],
        ..Effects::default()
    };
    store.commit(&fx).await.unwrap();
    let mut renamed = profile("v1");
    renamed.name = "Vee One".into();
    renamed.skills = vec![];
    store.upsert_volunteer(&renamed).await.unwrap();
    let v1 = store.get_volunteer(&vid("v1")).await.unwrap().expect("v1");
    assert_eq!(v1.profile, renamed);
    assert!(v1.on_duty);
    assert!(!v1.busy);
    assert_eq!((v1.lat, v1.lon), (Some(52.52), Some(13.42)));
    assert_eq!(v1.location_at, Some(t(-30)));
    let all = store.list_volunteers().await.unwrap();
    let ids: Vec<&str> = all.iter().map(|v| v.profile.id.as_str()).collect();
    assert_eq!(ids, ["v1", "v2", "v3", "v4"]);
    assert_eq!(all[1].profile, profile("v2"));
    assert!(!all[1].on_duty);
    assert_eq!(store.get_volunteer(&vid("v9")).await.unwrap(), None);
}

async fn commit_and_snapshot_round_trip(store: &Db) {
    seed(store).await;
    let mut a1 = alert("a1", 1, AlertState::Offered, t(0));
    a1.escalated = true;
    a1.outcome = Some("not yet".into());
    let mut closed = alert("a0", 2, AlertState::Resolved, t(-600));
    closed.resolved_at = Some(t(-300));
    closed.outcome = Some("fine".into());
    let offers = vec![
        offer("a1", "v2", t(1), Some(OfferOutcome::Declined)),
        offer("a1", "v3", t(2), Some(OfferOutcome::Expired)),
        offer("a1", "v4", t(3), Some(OfferOutcome::Withdrawn)),
        // Pending, listed in the order they were made.
        offer("a1", "v1", t(5), None),
        offer("a0", "v1", t(-590), Some(OfferOutcome::Accepted)),
    ];
    let mut late = offer("a1", "v4", t(4), None);
    late.distance_m = 1200;
    late.eta_s = 900;
    let mut offers_then = offers.clone();
    // The same offer row written twice in one batch: the last one wins.
    offers_then.push(late.clone());
    let pressed = TimelineEvent {
        event_id: Some(eid("ev-a1")),
        by: Some("senior".into()),
        ..TimelineEvent::new(t(0), TimelineKind::Pressed)
    };
    let offered = TimelineEvent {
        distance_m: Some(420),
        eta_s: Some(300),
        ..TimelineEvent::new(t(1), TimelineKind::Offered).volunteer(&vid("v2"))
    };
    let declined = TimelineEvent {
        note: Some("busy".into()),
        outcome: Some("n/a".into()),
        ..TimelineEvent::new(t(2), TimelineKind::Declined)
            .volunteer(&vid("v2"))
            .reason("at work")
    };
    let fx = Effects {
        alerts: vec![a1.clone(), closed.clone()],
        timeline: vec![
            (aid("a1"), pressed.clone()),
            (aid("a1"), offered.clone()),
            (
                aid("a0"),
                TimelineEvent::new(t(-600), TimelineKind::Pressed),
            ),
            (aid("a1"), declined.clone()),
        ],
        offers: offers_then,
        volunteers: vec![volunteer("v1", None)],
        ingested: vec![
            ingested(1, "ev-a1", Some("a1"), t(0)),
            ingested(1, "ev-again", Some("a1"), t(4)),
            ingested(2, "ev-a0", Some("a0"), t(-600)),
        ],
        outgoing: vec![],
        milestones: vec![],
        busy_before: Default::default(),
        notifications: vec![],
        slots: Default::default(),
    };
    store.commit(&fx).await.expect("commit");

    let mut expected = a1.clone();
    expected.offers = vec![pending(&late), pending(&offers[3])];
    assert_eq!(
        store.get_alert(&aid("a1")).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(store.get_alert(&aid("a0")).await.unwrap(), Some(closed));
    assert_eq!(store.get_alert(&aid("nope")).await.unwrap(), None);
    assert_eq!(
        store.timeline(&aid("a1")).await.unwrap(),
        vec![pressed, offered, declined]
    );

    let snap = store.load_snapshot().await.expect("snapshot");
    let mut volunteers = snap.volunteers.clone();
    volunteers.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(volunteers.len(), 4);
    assert_eq!(volunteers[0], volunteer("v1", None));
    assert_eq!(
        volunteers[1],
        Volunteer::new(vid("v2"), "Volunteer v2".into())
    );
    assert_eq!(snap.alerts.len(), 1, "only the active alert");
    let active = &snap.alerts[0];
    assert_eq!(active.alert, expected);
    assert_eq!(active.senior, card("s1"));
    assert_eq!(
        active.events,
        HashSet::from([eid("ev-a1"), eid("ev-again")])
    );
    assert_eq!(active.excluded, HashSet::from([vid("v2"), vid("v3")]));
    assert_eq!(
        active.offered,
        HashSet::from([vid("v1"), vid("v2"), vid("v3"), vid("v4")])
    );
}

async fn busy_volunteer_claim_conflicts_and_rolls_back(store: &Db) {
    seed(store).await;
    let a1 = alert("a1", 1, AlertState::Accepted, t(0));
    let fx = Effects {
        alerts: vec![a1.clone()],
        volunteers: vec![volunteer("v1", Some("a1"))],
        ..Effects::default()
    };
    store.commit(&fx).await.expect("claim v1 for a1");
    // Claiming again for the same alert is no conflict.
    store.commit(&fx).await.expect("claim v1 for a1 again");

    // Another alert wants v1: the whole batch is refused.
    let a2 = alert("a2", 2, AlertState::Accepted, t(10));
    let mut a1_changed = a1.clone();
    a1_changed.escalated = true;
    let other = Effects {
        alerts: vec![a1_changed, a2],
        timeline: vec![(aid("a2"), TimelineEvent::new(t(10), TimelineKind::Pressed))],
        offers: vec![offer("a2", "v1", t(11), None)],
        volunteers: vec![volunteer("v2", Some("a1")), volunteer("v1", Some("a2"))],
        ingested: vec![ingested(2, "ev-a2", Some("a2"), t(10))],
        outgoing: vec![],
        milestones: vec![],
        busy_before: Default::default(),
        notifications: vec![],
        slots: Default::default(),
    };
    match store.commit(&other).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("v1"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get_alert(&aid("a2")).await.unwrap(), None);
    assert_eq!(store.get_alert(&aid("a1")).await.unwrap(), Some(a1));
    assert!(store.timeline(&aid("a2")).await.unwrap().is_empty());
    assert_eq!(
        store
            .find_ingested(&did("d2"), &eid("ev-a2"))
            .await
            .unwrap(),
        None
    );
    assert!(!store.was_offered(&aid("a2"), &vid("v1")).await.unwrap());
    let v1 = store.get_volunteer(&vid("v1")).await.unwrap().expect("v1");
    assert_eq!(v1.busy_alert, Some(aid("a1")));
    let v2 = store.get_volunteer(&vid("v2")).await.unwrap().expect("v2");
    assert_eq!(v2.busy_alert, None, "v2's claim was rolled back too");
    assert!(!v2.on_duty);

    // Released, v1 can be claimed for a2.
    let release = Effects {
        volunteers: vec![volunteer("v1", None)],
        ..Effects::default()
    };
    store.commit(&release).await.expect("release v1");
    let mut retry = other.clone();
    retry.volunteers = vec![volunteer("v1", Some("a2"))];
    store.commit(&retry).await.expect("claim v1 for a2");
    let v1 = store.get_volunteer(&vid("v1")).await.unwrap().expect("v1");
    assert!(v1.busy);
    assert_eq!(v1.busy_alert, Some(aid("a2")));
}

/// Resolve A, then assign the same volunteer to B, in one batch: the store
/// still holds them busy with A, and the claim for B must take that row.
async fn one_batch_frees_and_claims_the_same_volunteer(store: &Db) {
    seed(store).await;
    let a1 = alert("a1", 1, AlertState::Accepted, t(0));
    let claim = Effects {
        alerts: vec![a1.clone()],
        volunteers: vec![volunteer("v1", Some("a1"))],
        ..Effects::default()
    };
    store.commit(&claim).await.expect("claim v1 for a1");

    let mut resolved = a1.clone();
    resolved.state = AlertState::Resolved;
    resolved.resolved_at = Some(t(60));
    let a2 = alert("a2", 2, AlertState::Accepted, t(30));
    let batch = Effects {
        alerts: vec![resolved, a2],
        volunteers: vec![volunteer("v1", Some("a2"))],
        busy_before: [(vid("v1"), Some(aid("a1")))].into(),
        ..Effects::default()
    };
    store
        .commit(&batch)
        .await
        .expect("free v1 from a1 and claim them for a2 in one batch");
    let v1 = store.get_volunteer(&vid("v1")).await.unwrap().expect("v1");
    assert_eq!(v1.busy_alert, Some(aid("a2")));

    // What the batch did not free stays protected: a third alert cannot
    // take v1 from a2 by saying it freed them from a1.
    let a3 = alert("a3", 1, AlertState::Accepted, t(90));
    let stale = Effects {
        alerts: vec![a3],
        volunteers: vec![volunteer("v1", Some("a3"))],
        busy_before: [(vid("v1"), Some(aid("a1")))].into(),
        ..Effects::default()
    };
    match store.commit(&stale).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("v1"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let v1 = store.get_volunteer(&vid("v1")).await.unwrap().expect("v1");
    assert_eq!(v1.busy_alert, Some(aid("a2")));
}

async fn unknown_volunteer_claim_conflicts(store: &Db) {
    seed(store).await;
    let fx = Effects {
        alerts: vec![alert("a1", 1, AlertState::Open, t(0))],
        volunteers: vec![volunteer("ghost", None)],
        ..Effects::default()
    };
    assert!(matches!(
        store.commit(&fx).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_alert(&aid("a1")).await.unwrap(), None);
}

async fn device_of_unknown_senior_is_not_found(store: &Db) {
    seed(store).await;
    assert!(matches!(
        store.upsert_device(&did("d9"), &sid("nobody")).await,
        Err(StoreError::NotFound("senior"))
    ));
    assert_eq!(store.list_devices().await.unwrap().len(), 2);
    // A band moves to another senior.
    let moved = store.upsert_device(&did("d1"), &sid("s2")).await.unwrap();
    assert_eq!(moved.device_id, did("d1"));
    assert_eq!(moved.senior_id, sid("s2"));
    assert_eq!(moved.last_seen, None);
    let (owner, _) = store
        .device_owner(&did("d1"))
        .await
        .unwrap()
        .expect("owner");
    assert_eq!(owner.id, sid("s2"));
}

async fn tokens_are_set_found_and_replaced(store: &Db) {
    seed(store).await;
    assert!(matches!(
        store
            .set_volunteer_token(&vid("ghost"), "h0", "$6$x$y")
            .await,
        Err(StoreError::NotFound("volunteer"))
    ));
    assert_eq!(store.volunteer_by_token("h0").await.unwrap(), None);
    store
        .set_volunteer_token(&vid("v1"), "h1", "$6$x$h1")
        .await
        .unwrap();
    store
        .set_volunteer_token(&vid("v2"), "h2", "$6$x$h2")
        .await
        .unwrap();
    assert_eq!(
        store.volunteer_by_token("h1").await.unwrap(),
        Some(vid("v1"))
    );
    store
        .set_volunteer_token(&vid("v1"), "h1b", "$6$x$h1b")
        .await
        .unwrap();
    assert_eq!(store.volunteer_by_token("h1").await.unwrap(), None);
    assert_eq!(
        store.volunteer_by_token("h1b").await.unwrap(),
        Some(vid("v1"))
    );
    assert_eq!(
        store.volunteer_by_token("h2").await.unwrap(),
        Some(vid("v2"))
    );
}

async fn ids_share_one_namespace(store: &Db) {
    seed(store).await;
    // A volunteer's id cannot become a band's, nor a band's a volunteer's.
    assert!(matches!(
        store.upsert_device(&did("v1"), &sid("s1")).await,
        Err(StoreError::IdTaken {
            kind: PrincipalKind::Volunteer,
            ..
        })
    ));
    assert!(matches!(
        store.upsert_volunteer(&profile("d1")).await,
        Err(StoreError::IdTaken {
            kind: PrincipalKind::Device,
            ..
        })
    ));
    // A gateway is created by its secret; its id is then taken too.
    store
        .set_secret(PrincipalKind::Gateway, "gw-1", "$6$a$b", t(1))
        .await
        .unwrap();
    assert!(matches!(
        store.upsert_device(&did("gw-1"), &sid("s1")).await,
        Err(StoreError::IdTaken {
            kind: PrincipalKind::Gateway,
            ..
        })
    ));
    assert!(matches!(
        store
            .set_secret(PrincipalKind::Gateway, "d1", "$6$a$b", t(1))
            .await,
        Err(StoreError::IdTaken {
            kind: PrincipalKind::Device,
            ..
        })
    ));
    // Nothing was half written.
    assert!(store.get_volunteer(&vid("d1")).await.unwrap().is_none());
    assert_eq!(store.list_devices().await.unwrap().len(), 2);
    // Registering the same kind again is fine.
    store.upsert_device(&did("d1"), &sid("s2")).await.unwrap();
    store.upsert_volunteer(&profile("v1")).await.unwrap();
}

async fn secrets_are_kept_as_hashes_and_replaced(store: &Db) {
    seed(store).await;
    assert!(matches!(
        store
            .set_secret(PrincipalKind::Device, "ghost", "$6$a$b", t(1))
            .await,
        Err(StoreError::NotFound("device"))
    ));
    let fresh = store.credential("d1").await.unwrap().expect("a principal");
    assert_eq!(fresh.kind, PrincipalKind::Device);
    assert_eq!(
        fresh.secret_hash, None,
        "no login before a secret is issued"
    );
    store
        .set_secret(PrincipalKind::Device, "d1", "$6$a$one", t(1))
        .await
        .unwrap();
    store
        .set_secret(PrincipalKind::Device, "d1", "$6$a$two", t(2))
        .await
        .unwrap();
    let c = store.credential("d1").await.unwrap().unwrap();
    assert_eq!(c.secret_hash.as_deref(), Some("$6$a$two"));
    // A volunteer's token is also the phone's MQTT login.
    store
        .set_volunteer_token(&vid("v2"), "sha", "$6$v$two")
        .await
        .unwrap();
    let v = store.credential("v2").await.unwrap().unwrap();
    assert_eq!(v.kind, PrincipalKind::Volunteer);
    assert_eq!(v.secret_hash.as_deref(), Some("$6$v$two"));
    let all = store.list_credentials().await.unwrap();
    let ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["d1", "d2", "v1", "v2", "v3", "v4"]);
    assert_eq!(store.credential("nobody").await.unwrap(), None);
}

async fn alerts_are_listed_newest_first(store: &Db) {
    seed(store).await;
    let mut resolved = alert("a3", 2, AlertState::Resolved, t(30));
    resolved.resolved_at = Some(t(40));
    let alerts = [
        alert("a1", 1, AlertState::Open, t(0)),
        alert("a2", 1, AlertState::OnScene, t(20)),
        resolved,
        // Pressed at the same moment as a2: the greater id comes first.
        alert("a2b", 2, AlertState::Cancelled, t(20)),
    ];
    put_alerts(store, &alerts).await;
    let o1 = offer("a1", "v1", t(1), None);
    let o2 = offer("a1", "v2", t(2), None);
    put_offers(
        store,
        &[
            o2.clone(),
            o1.clone(),
            offer("a1", "v3", t(3), Some(OfferOutcome::Declined)),
        ],
    )
    .await;

    let ids = |list: &[Alert]| list.iter().map(|a| a.id.to_string()).collect::<Vec<_>>();
    let active = store.list_alerts(AlertFilter::Active, 100).await.unwrap();
    assert_eq!(ids(&active), ["a2", "a1"]);
    assert_eq!(active[1].offers, vec![pending(&o1), pending(&o2)]);
    let all = store.list_alerts(AlertFilter::All, 100).await.unwrap();
    assert_eq!(ids(&all), ["a3", "a2b", "a2", "a1"]);
    assert_eq!(all[3].offers.len(), 2);
    let two = store.list_alerts(AlertFilter::All, 2).await.unwrap();
    assert_eq!(ids(&two), ["a3", "a2b"]);
    let one = store.list_alerts(AlertFilter::Active, 1).await.unwrap();
    assert_eq!(ids(&one), ["a2"]);
    assert!(
        store
            .list_alerts(AlertFilter::All, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn heartbeats_update_known_devices(store: &Db) {
    seed(store).await;
    let beat = |band: &str, at, battery, position| Heartbeat {
        device_id: did(band),
        at,
        battery,
        position,
    };
    let unknown = store
        .record_heartbeats(&[
            beat("d1", t(0), Some(80), Some(pos(52.1, 13.1))),
            beat("unknown", t(0), Some(5), None),
            beat("d2", t(1), None, None),
        ])
        .await
        .expect("heartbeats");
    assert_eq!(
        unknown,
        vec![did("unknown")],
        "unregistered bands come back"
    );
    // Battery and position are kept when a beat does not carry them; an
    // older beat arriving late changes nothing.
    let unknown = store
        .record_heartbeats(&[
            beat("d1", t(10), None, None),
            beat("d2", t(0), Some(10), Some(pos(1.0, 1.0))),
        ])
        .await
        .expect("heartbeats");
    assert!(
        unknown.is_empty(),
        "a late beat of a known band is not unknown"
    );
    store.record_heartbeats(&[]).await.expect("no heartbeats");
    let devices = store.list_devices().await.unwrap();
    assert_eq!(devices.len(), 2, "unknown bands are not registered");
    let d1 = &devices[0];
    assert_eq!(d1.device_id, did("d1"));
    assert_eq!(d1.last_seen, Some(t(10)));
    assert_eq!(d1.battery, Some(80));
    assert_eq!((d1.lat, d1.lon), (Some(52.1), Some(13.1)));
    let d2 = &devices[1];
    assert_eq!(d2.last_seen, Some(t(1)));
    assert_eq!((d2.battery, d2.lat, d2.lon), (None, None, None));
}

/// A batch past one statement's parameters (SQLite: 6,000 bands a
/// statement) is written whole, unknown bands found on either side.
async fn heartbeats_of_more_bands_than_one_statement_takes(store: &Db) {
    const BANDS: usize = 6_500;
    store.upsert_senior(&senior("s1")).await.expect("senior");
    for i in 0..BANDS {
        store
            .upsert_device(&did(&format!("d{i}")), &sid("s1"))
            .await
            .expect("device");
    }
    let beat = |band: String, at| Heartbeat {
        device_id: did(&band),
        at,
        battery: Some(50),
        position: None,
    };
    // Band d7 was heard from later already: not moved back, not unknown.
    store
        .record_heartbeats(&[beat("d7".into(), t(20))])
        .await
        .expect("heartbeats");
    let mut batch: Vec<Heartbeat> = (0..BANDS).map(|i| beat(format!("d{i}"), t(10))).collect();
    for (at, name) in [(10, "x-first"), (5_999, "x-edge"), (6_400, "x-second")] {
        batch.insert(at, beat(name.into(), t(10)));
    }
    let mut unknown = store.record_heartbeats(&batch).await.expect("heartbeats");
    unknown.sort();
    assert_eq!(
        unknown,
        vec![did("x-edge"), did("x-first"), did("x-second")]
    );
    let devices = store.list_devices().await.expect("devices");
    assert_eq!(devices.len(), BANDS);
    for d in &devices {
        let want = if d.device_id == did("d7") {
            t(20)
        } else {
            t(10)
        };
        assert_eq!(d.last_seen, Some(want), "{}", d.device_id);
        assert_eq!(d.battery, Some(50));
    }
}

async fn was_offered_counts_offers_and_assignment(store: &Db) {
    seed(store).await;
    let mut a1 = alert("a1", 1, AlertState::Accepted, t(0));
    a1.volunteer_id = Some(vid("v3"));
    a1.accepted_at = Some(t(5));
    put_alerts(store, &[a1]).await;
    put_offers(
        store,
        &[
            offer("a1", "v1", t(1), Some(OfferOutcome::Expired)),
            offer("a1", "v2", t(2), None),
        ],
    )
    .await;
    let asked = async |v: &str| store.was_offered(&aid("a1"), &vid(v)).await.unwrap();
    assert!(asked("v1").await, "an expired offer was still made");
    assert!(asked("v2").await);
    assert!(asked("v3").await, "assigned by hand");
    assert!(!asked("v4").await);
    assert!(!store.was_offered(&aid("nope"), &vid("v1")).await.unwrap());
}

async fn pending_offers_of_a_volunteer(store: &Db) {
    seed(store).await;
    put_alerts(
        store,
        &[
            alert("a1", 1, AlertState::Offered, t(0)),
            alert("a2", 2, AlertState::Offered, t(5)),
        ],
    )
    .await;
    let o1 = offer("a1", "v1", t(1), None);
    let o1_other = offer("a1", "v2", t(2), None);
    let o2 = offer("a2", "v1", t(6), None);
    put_offers(store, &[o1.clone(), o1_other.clone(), o2.clone()]).await;

    let held = store.pending_offers(&vid("v1")).await.unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].alert.id, aid("a1"));
    assert_eq!(held[0].offer, pending(&o1));
    assert_eq!(held[0].senior, card("s1"));
    assert_eq!(held[0].alert.offers, vec![pending(&o1), pending(&o1_other)]);
    assert_eq!(held[1].alert.id, aid("a2"));
    assert_eq!(held[1].offer, pending(&o2));
    assert_eq!(held[1].senior, card("s2"));

    put_offers(
        store,
        &[offer("a1", "v1", t(1), Some(OfferOutcome::Declined))],
    )
    .await;
    let held = store.pending_offers(&vid("v1")).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].alert.id, aid("a2"));
    assert!(store.pending_offers(&vid("v4")).await.unwrap().is_empty());
}

async fn ingested_events_are_found(store: &Db) {
    seed(store).await;
    let fx = Effects {
        alerts: vec![alert("a1", 1, AlertState::Open, t(0))],
        ingested: vec![
            ingested(1, "e1", Some("a1"), t(0)),
            ingested(2, "e-cancel", None, t(1)),
        ],
        ..Effects::default()
    };
    store.commit(&fx).await.unwrap();
    // Remembering an event again changes nothing and is no error.
    let again = Effects {
        ingested: vec![ingested(1, "e1", None, t(9))],
        ..Effects::default()
    };
    store
        .commit(&again)
        .await
        .expect("a repeated event is ignored");
    assert_eq!(
        store.find_ingested(&did("d1"), &eid("e1")).await.unwrap(),
        Some(Some(aid("a1")))
    );
    assert_eq!(
        store
            .find_ingested(&did("d2"), &eid("e-cancel"))
            .await
            .unwrap(),
        Some(None)
    );
    assert_eq!(
        store.find_ingested(&did("d2"), &eid("e1")).await.unwrap(),
        None
    );
    // The same, with the band's owner, in the one read a press makes.
    let known = store.press_context(&did("d1"), &eid("e1")).await.unwrap();
    assert_eq!(known.seen, Some(Some(aid("a1"))));
    let (card, _) = known.owner.expect("d1 is registered");
    assert_eq!(card.id, sid("s1"));
    let cancel = store
        .press_context(&did("d2"), &eid("e-cancel"))
        .await
        .unwrap();
    assert_eq!(cancel.seen, Some(None));
    assert_eq!(cancel.owner.map(|(c, _)| c.id), Some(sid("s2")));
    let fresh = store.press_context(&did("d2"), &eid("e1")).await.unwrap();
    assert_eq!(fresh.seen, None);
    assert!(fresh.owner.is_some());
    let stranger = store
        .press_context(&did("nobody"), &eid("e1"))
        .await
        .unwrap();
    assert_eq!((stranger.owner, stranger.seen), (None, None));
}

/// The commit writes each kind of row in as few statements as the engines'
/// parameter limits allow: 3,000 alerts (66,000 parameters) take several,
/// and all of them land, with their timelines and events, in order.
async fn a_batch_larger_than_one_statement_lands_whole(store: &Db) {
    seed(store).await;
    const N: i64 = 3000;
    let mut fx = Effects::default();
    for i in 0..N {
        let id = format!("big-{i:05}");
        let band = 1 + (i % 2) as u8;
        fx.alerts.push(alert(&id, band, AlertState::Open, t(i)));
        for kind in [TimelineKind::Pressed, TimelineKind::Escalated] {
            fx.timeline.push((aid(&id), TimelineEvent::new(t(i), kind)));
        }
        fx.ingested
            .push(ingested(band, &format!("ev-{id}"), Some(&id), t(i)));
    }
    store.commit(&fx).await.expect("a big batch commits");
    let listed = store
        .list_alerts(AlertFilter::All, 10_000)
        .await
        .expect("list");
    assert_eq!(listed.len(), N as usize);
    for i in [0, 1363, 1364, N - 1] {
        let id = aid(&format!("big-{i:05}"));
        let kinds: Vec<_> = store
            .timeline(&id)
            .await
            .expect("timeline")
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [TimelineKind::Pressed, TimelineKind::Escalated],
            "{id}"
        );
        let band = did(&format!("d{}", 1 + i % 2));
        assert_eq!(
            store
                .find_ingested(&band, &eid(&format!("ev-{id}")))
                .await
                .expect("find"),
            Some(Some(id))
        );
    }
}

async fn alerts_pressed_in_a_half_open_window(store: &Db) {
    seed(store).await;
    put_alerts(
        store,
        &[
            alert("a0", 1, AlertState::Resolved, t(-1)),
            alert("a1", 1, AlertState::Resolved, t(0)),
            alert("a2", 2, AlertState::Offered, t(59)),
            alert("a3", 2, AlertState::Open, t(60)),
        ],
    )
    .await;
    let o = offer("a2", "v1", t(59), None);
    put_offers(store, std::slice::from_ref(&o)).await;
    let got = store.alerts_pressed_between(t(0), t(60)).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2"]);
    assert_eq!(got[1].offers, vec![pending(&o)]);
    assert!(
        store
            .alerts_pressed_between(t(60), t(60))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn corrupt_rows_are_errors(store: &Db) {
    seed(store).await;
    put_alerts(store, &[alert("a1", 1, AlertState::Open, t(0))]).await;
    store
        .raw("UPDATE alerts SET pressed_at = 9223372036854775807 WHERE id = 'a1'")
        .await;
    store
        .raw("UPDATE devices SET battery = 300 WHERE device_id = 'd1'")
        .await;
    store
        .raw("UPDATE volunteers SET skills = 'not json' WHERE id = 'v1'")
        .await;
    store
        .raw("INSERT INTO seniors (id, name, contacts) VALUES ('no spaces please', 'X', '[]')")
        .await;
    let corrupt = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Corrupt(_)));
    assert!(corrupt(store.get_alert(&aid("a1")).await.map(drop)));
    assert!(corrupt(store.load_snapshot().await.map(drop)));
    assert!(corrupt(store.list_devices().await.map(drop)));
    assert!(corrupt(store.get_volunteer(&vid("v1")).await.map(drop)));
    assert!(corrupt(store.list_seniors().await.map(drop)));
    // What is sound still reads.
    assert!(store.get_volunteer(&vid("v2")).await.unwrap().is_some());
    assert!(store.get_senior(&sid("s1")).await.unwrap().is_some());
}

async fn two_instances_cannot_claim_one_volunteer(store: &Db) {
    seed(store).await;
    let other = onepress::store::connect(&store.url)
        .await
        .expect("a second instance");
    for round in 0..5 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let claim = |id: &str, band: u8| Effects {
            alerts: vec![alert(id, band, AlertState::Accepted, t(round))],
            volunteers: vec![volunteer("v1", Some(id))],
            ..Effects::default()
        };
        let (fx_a, fx_b) = (claim(&a, 1), claim(&b, 2));
        let (ra, rb) = tokio::join!(store.commit(&fx_a), other.commit(&fx_b));
        let won = match (ra, rb) {
            (Ok(()), Err(StoreError::Conflict(_))) => &a,
            (Err(StoreError::Conflict(_)), Ok(())) => &b,
            other => panic!("exactly one claim must win, got {other:?}"),
        };
        let v1 = store.get_volunteer(&vid("v1")).await.unwrap().expect("v1");
        assert_eq!(
            v1.busy_alert.as_ref().map(|a| a.as_str()),
            Some(won.as_str())
        );
        let lost = if won == &a { &b } else { &a };
        assert_eq!(other.get_alert(&aid(lost)).await.unwrap(), None);
        store
            .commit(&Effects {
                volunteers: vec![volunteer("v1", None)],
                ..Effects::default()
            })
            .await
            .expect("release");
    }
}
