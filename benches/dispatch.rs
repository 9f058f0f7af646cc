//! Benchmarks of the hot path, at province scale:
//! - `nearest/1M`: the nearest available volunteer among 1,000,000 spread
//!   over Zhejiang (about 100,000 km²), within 5 km;
//! - `press_to_offer/100k`: the dispatcher handling a press (alert opened,
//!   nearest candidate offered, effects written down) with 100,000
//!   volunteers on duty, then the band's cancel that frees the volunteer
//!   again (so every iteration sees the same state).
//!
//! Run: `cargo bench --bench dispatch`.

use chrono::{DateTime, Utc};
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use onepress::domain::nearby::NearbyIndex;
use onepress::domain::{
    AlertId, Command, DeviceId, Dispatcher, Effects, EventId, Position, Press, PressKind, Rules,
    SeniorCard, SeniorId, Snapshot, Volunteer, VolunteerId,
};

/// A box around Zhejiang.
fn random_position(rng: &mut StdRng) -> Position {
    Position::new(rng.random_range(27.0..31.2), rng.random_range(118.0..122.9))
        .expect("inside the box")
}

fn nearest(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let index = NearbyIndex::bulk((0..1_000_000u32).map(|i| (i, random_position(&mut rng))));
    let queries: Vec<Position> = (0..1024).map(|_| random_position(&mut rng)).collect();
    let mut i = 0;
    c.bench_function("nearest/1M", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(index.nearest(queries[i], 5_000.0, 1, |_| true))
        })
    });
}

fn press_to_offer(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(11);
    let now: DateTime<Utc> = "2026-11-25T03:00:00Z".parse().expect("a time");
    let volunteers = (0..100_000)
        .map(|i| {
            let mut v = Volunteer::new(
                VolunteerId::parse(format!("v{i}")).expect("an id"),
                format!("Volunteer {i}"),
            );
            v.on_duty = true;
            v.position = Some(random_position(&mut rng));
            v.location_at = Some(now);
            v
        })
        .collect();
    let mut d = Dispatcher::restore(
        Rules::default(),
        Snapshot {
            volunteers,
            alerts: Vec::new(),
        },
    );
    let mut fx = Effects::default();
    let _ = d.handle(now, Command::Tick, &mut fx);
    let senior = SeniorCard {
        id: SeniorId::parse("s-1").expect("an id"),
        name: "Jiang Lan".into(),
        address: None,
        notes: None,
    };
    let device = DeviceId::parse("band-1").expect("an id");
    let mut n: u64 = 0;
    c.bench_function("press_to_offer/100k", |b| {
        b.iter(|| {
            n += 1;
            let mut fx = Effects::default();
            let press = |kind, event: String| {
                Command::Press(Press {
                    device_id: device.clone(),
                    event_id: EventId::parse(event).expect("an id"),
                    kind,
                    device_ts: None,
                    position: Some(Position::new(30.27, 120.15).expect("Hangzhou")),
                    senior: senior.clone(),
                    home: None,
                    new_alert_id: AlertId::parse(format!("a{n}")).expect("an id"),
                })
            };
            let opened = d.handle(now, press(PressKind::Sos, format!("p{n}")), &mut fx);
            let _ = d.handle(now, press(PressKind::Cancel, format!("c{n}")), &mut fx);
            black_box((opened, fx))
        })
    });
}

criterion_group!(benches, nearest, press_to_offer);
criterion_main!(benches);
