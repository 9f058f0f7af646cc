//! Benchmark 2a: the nearest available volunteer, as the dispatcher finds
//! one for an alert, among 1k, 10k, 100k and 1M volunteers spread over
//! Zhejiang (a box of about 100,000 km²), half of them busy or off duty,
//! against a linear scan that computes the same answer over the same
//! volunteers.
//!
//! What is timed is [`Dispatcher::nearest_available`], the search the
//! dispatcher runs for each alert it tops up with offers: on duty, neither
//! busy nor holding an offer, location fresh (one available volunteer in
//! ten has a location too old to be used), within the maximum offer
//! distance (5 km), none of those who declined the alert (a third of the
//! queries come after one decline, a third after two), nearest first, up
//! to the fan-out (`NEAREST_FANOUT`, default 1, the default rule). Before
//! any timing, every query's answer is checked against the scan's.
//!
//! Run: `cargo bench --bench nearest` (a table of medians and ratios at
//! the end, read from criterion's `estimates.json`); `NEAREST_SIZES=1M`
//! runs one size only.

use std::collections::HashSet;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use criterion::{BenchmarkId, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use onepress::domain::dispatcher::after;
use onepress::domain::{AlertId, Dispatcher, Position, Rules, Snapshot, Volunteer, VolunteerId};

const GROUP: &str = "nearest_available";
const SIZES: [(usize, &str); 4] = [
    (1_000, "1k"),
    (10_000, "10k"),
    (100_000, "100k"),
    (1_000_000, "1M"),
];
/// Queries per size, each checked against the scan before timing.
const QUERIES: usize = 256;

/// A box around Zhejiang.
fn random_position(rng: &mut StdRng) -> Position {
    Position::new(rng.random_range(27.0..31.2), rng.random_range(118.0..122.9))
        .expect("inside the box")
}

/// `n` volunteers: a quarter off duty, a quarter busy, the other half
/// available, one in ten of those with a location too old to be used.
fn volunteers(n: usize, now: DateTime<Utc>, rules: &Rules, rng: &mut StdRng) -> Vec<Volunteer> {
    let busy_with = AlertId::parse("a-elsewhere").expect("an id");
    let stale = now - rules.volunteer_location_max_age - Duration::from_secs(60);
    (0..n)
        .map(|i| {
            let mut v = Volunteer::new(
                VolunteerId::parse(format!("v{i}")).expect("an id"),
                format!("Volunteer {i}"),
            );
            v.on_duty = i % 4 != 0;
            if i % 4 == 1 {
                v.busy_alert = Some(busy_with.clone());
            }
            v.position = Some(random_position(rng));
            v.location_at = Some(if i % 40 == 2 { stale } else { now });
            v
        })
        .collect()
}

/// The same answer as the dispatcher's, by looking at every volunteer.
fn scan(
    volunteers: &[Volunteer],
    rules: &Rules,
    now: DateTime<Utc>,
    from: Position,
    limit: usize,
    excluded: &HashSet<VolunteerId>,
) -> Vec<VolunteerId> {
    let mut best: Vec<(f64, &VolunteerId)> = Vec::with_capacity(limit + 1);
    if limit == 0 {
        return Vec::new();
    }
    for v in volunteers {
        if !v.on_duty || v.busy_alert.is_some() || v.pending_offer.is_some() {
            continue;
        }
        let (Some(p), Some(at)) = (v.position, v.location_at) else {
            continue;
        };
        if after(at, rules.volunteer_location_max_age) < now {
            continue;
        }
        let d = from.distance_m(&p);
        if d > rules.max_offer_distance {
            continue;
        }
        let worse_than_last = |last: &(f64, &VolunteerId)| (d, &v.id) >= (last.0, last.1);
        if best.len() == limit && best.last().is_some_and(worse_than_last) {
            continue;
        }
        if excluded.contains(&v.id) {
            continue;
        }
        let at = best.partition_point(|(bd, bid)| (*bd, *bid) < (d, &v.id));
        best.insert(at, (d, &v.id));
        best.truncate(limit);
    }
    best.into_iter().map(|(_, id)| id.clone()).collect()
}

struct Query {
    from: Position,
    excluded: HashSet<VolunteerId>,
}

/// Random alerts; query `i` comes after `i % 3` declines (the nearest
/// candidates declined it).
fn queries(
    volunteers: &[Volunteer],
    rules: &Rules,
    now: DateTime<Utc>,
    rng: &mut StdRng,
) -> Vec<Query> {
    (0..QUERIES)
        .map(|i| {
            let from = random_position(rng);
            let declined = scan(volunteers, rules, now, from, i % 3, &HashSet::new());
            Query {
                from,
                excluded: declined.into_iter().collect(),
            }
        })
        .collect()
}

fn fanout() -> usize {
    std::env::var("NEAREST_FANOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(Rules::default().offer_fanout)
        .max(1)
}

/// The sizes to run: all, or those `NEAREST_SIZES` names (`1M` or
/// `10k,1M`: to profile one).
fn sizes() -> Vec<(usize, &'static str)> {
    let wanted = std::env::var("NEAREST_SIZES").unwrap_or_default();
    SIZES
        .into_iter()
        .filter(|(_, label)| wanted.is_empty() || wanted.split(',').any(|w| w.trim() == *label))
        .collect()
}

fn bench(c: &mut Criterion) {
    let now: DateTime<Utc> = "2026-11-25T03:00:00Z".parse().expect("a time");
    let rules = Rules::default();
    let k = fanout();
    let mut group = c.benchmark_group(GROUP);
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (n, label) in sizes() {
        let mut rng = StdRng::seed_from_u64(n as u64);
        let all = volunteers(n, now, &rules, &mut rng);
        let qs = queries(&all, &rules, now, &mut rng);
        let d = Dispatcher::restore(
            rules.clone(),
            Snapshot {
                volunteers: all.clone(),
                alerts: Vec::new(),
            },
        );
        let mut found = 0;
        for (i, q) in qs.iter().enumerate() {
            let fast = d.nearest_available(now, q.from, k, &q.excluded);
            let slow = scan(&all, &rules, now, q.from, k, &q.excluded);
            assert_eq!(fast, slow, "query {i} at {label}: index and scan disagree");
            found += usize::from(!fast.is_empty());
        }
        eprintln!(
            "{label}: {n} volunteers, fan-out {k}; {found} of {} queries find someone within {} m; index and scan agree",
            qs.len(),
            rules.max_offer_distance
        );
        let mut i = 0;
        group.bench_function(BenchmarkId::new("index", label), |b| {
            b.iter(|| {
                i = (i + 1) % qs.len();
                let q = &qs[i];
                black_box(d.nearest_available(now, q.from, k, &q.excluded))
            })
        });
        if n >= 100_000 {
            group.sample_size(20);
        }
        group.bench_function(BenchmarkId::new("scan", label), |b| {
            b.iter(|| {
                i = (i + 1) % qs.len();
                let q = &qs[i];
                black_box(scan(&all, &rules, now, q.from, k, &q.excluded))
            })
        });
        group.sample_size(100);
    }
    group.finish();
}

/// Where criterion keeps its results (as criterion decides it).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // This executable is target/<profile>/deps/nearest-<hash>.
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// The median (ns) of one benchmark, if this run measured it.
fn median_ns(function: &str, label: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(GROUP)
        .join(function)
        .join(label)
        .join("new/estimates.json");
    let fresh = std::fs::metadata(&path).ok()?.modified().ok()? >= since;
    if !fresh {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn print_table(since: SystemTime) {
    let show = |ns: Option<f64>| match ns {
        Some(ns) if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        Some(ns) if ns >= 1e3 => format!("{:.2} µs", ns / 1e3),
        Some(ns) => format!("{ns:.0} ns"),
        None => "-".into(),
    };
    println!(
        "\nnearest available volunteer, median per query (fan-out {}):",
        fanout()
    );
    println!(
        "{:>6}  {:>10}  {:>10}  {:>8}",
        "size", "index", "scan", "ratio"
    );
    for (_, label) in sizes() {
        let index = median_ns("index", label, since);
        let scan = median_ns("scan", label, since);
        let ratio = match (index, scan) {
            (Some(i), Some(s)) if i > 0.0 => format!("{:.0}x", s / i),
            _ => "-".into(),
        };
        println!(
            "{label:>6}  {:>10}  {:>10}  {ratio:>8}",
            show(index),
            show(scan)
        );
    }
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    print_table(started);
}
