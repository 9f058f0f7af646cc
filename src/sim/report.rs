//! What a simulation found: counts, latencies and target rates, as a plain
//! struct that serialises to JSON (for benchmarks and tests) and prints as a
//! short text summary (for people). Pure: built from samples, no I/O.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::sla::percentile;

/// Latencies of one kind, in milliseconds (nearest-rank percentiles: each
/// one of the observed values). `None` when nothing was observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    pub fn of(samples: impl IntoIterator<Item = Duration>) -> Self {
        let mut ms: Vec<f64> = samples
            .into_iter()
            .map(|d| (d.as_secs_f64() * 1e6).round() / 1e3)
            .collect();
        ms.sort_by(f64::total_cmp);
        Self {
            count: ms.len(),
            p50_ms: percentile(&ms, 50),
            p90_ms: percentile(&ms, 90),
            p99_ms: percentile(&ms, 99),
            max_ms: ms.last().copied(),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<f64>| match v {
            None => "-".to_string(),
            Some(ms) if ms >= 10_000.0 => format!("{:.1} s", ms / 1000.0),
            Some(ms) if ms >= 1000.0 => format!("{:.2} s", ms / 1000.0),
            Some(ms) => format!("{ms:.1} ms"),
        };
        write!(
            f,
            "p50 {}  p90 {}  p99 {}  max {}  (n={})",
            show(self.p50_ms),
            show(self.p90_ms),
            show(self.p99_ms),
            show(self.max_ms),
            self.count
        )
    }
}

/// A share of a whole, with its parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub met: usize,
    pub of: usize,
    /// `met / of`, 0 when `of` is 0.
    pub rate: f64,
}

impl Rate {
    pub fn new(met: usize, of: usize) -> Self {
        let rate = if of == 0 { 0.0 } else { met as f64 / of as f64 };
        Self { met, of, rate }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} % ({}/{})", self.rate * 100.0, self.met, self.of)
    }
}

/// The presses the bands sent and what became of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Presses {
    /// Distinct press events published (sos and fall).
    pub sent: usize,
    /// Of them, falls.
    pub falls: usize,
    /// Publishes again of an event not seen `received` within the resend time.
    pub resent: usize,
    /// Events a band saw `received` for.
    pub received: usize,
    /// Events received whose alert was then found in the store.
    pub stored: usize,
    /// Events that opened an alert.
    pub opened: usize,
    /// Events that joined an alert already active for their band
    /// (`pressed_again`: the senior pressed again before help came).
    pub joined: usize,
    /// Events never `received`, or whose alert is not in the store.
    pub lost: usize,
    /// Events told two different alerts, plus extra stored alerts opened by
    /// one event: the service must never do either.
    pub duplicated: usize,
}

/// The run's alerts, as the store had them at the end (before clean-up).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alerts {
    pub opened: usize,
    /// Offered to at least one simulated volunteer.
    pub offered: usize,
    pub accepted: usize,
    pub on_scene: usize,
    pub resolved: usize,
    /// Still active when the run ended (cancelled by the clean-up unless
    /// `keep` was set).
    pub unfinished: usize,
    /// Accepted by the response deadline, over the alerts opened.
    pub response: Rate,
    /// On scene by the arrival deadline, over the alerts opened.
    pub arrival: Rate,
}

/// What the simulated volunteers' phones saw and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Offers {
    /// Distinct offers received (repeats of one offer counted once).
    pub received: usize,
    pub accepted: usize,
    pub declined: usize,
    pub ignored: usize,
    /// Accepts answered 409: the offer had expired or was taken.
    pub conflicts: usize,
    /// Offers withdrawn before the volunteer answered (taken, expired, …).
    pub withdrawn: usize,
    /// An offer for a second alert while an earlier offer was still
    /// pending: the service must never do that.
    pub double: usize,
    /// An offer to a volunteer busy with an accepted alert: never either.
    pub while_busy: usize,
}

/// The whole summary of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub prefix: String,
    pub seed: u64,
    pub bands: usize,
    pub volunteers: usize,
    /// `gateway` or `bands`.
    pub via: String,
    /// `phones` (one login each) or `admin` (one watcher).
    pub phones: String,
    /// Seconds spent registering and logging in.
    pub setup_s: f64,
    /// Seconds from the first press to the last one sent.
    pub pressing_s: f64,
    /// Seconds from the first press until the run was settled or gave up.
    pub run_s: f64,
    pub heartbeats: usize,
    pub presses: Presses,
    pub press_to_offer: Latency,
    pub press_to_accept: Latency,
    pub alerts: Alerts,
    pub offers: Offers,
    /// HTTP calls that failed (transport error or an unexpected status).
    pub http_errors: usize,
    /// MQTT connections lost or refused after their first login.
    pub mqtt_reconnects: usize,
}

impl Report {
    /// True when nothing went wrong that the service must never do: every
    /// press stored, none duplicated, no double offers.
    pub fn is_sound(&self) -> bool {
        self.presses.lost == 0
            && self.presses.duplicated == 0
            && self.presses.stored == self.presses.sent
            && self.offers.double == 0
            && self.offers.while_busy == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.presses;
        let a = &self.alerts;
        let o = &self.offers;
        writeln!(
            f,
            "run {} (seed {}): {} bands via {}, {} volunteers via {}",
            self.prefix, self.seed, self.bands, self.via, self.volunteers, self.phones
        )?;
        writeln!(
            f,
            "time        setup {:.1} s, pressing {:.1} s, until settled {:.1} s; {} heartbeats",
            self.setup_s, self.pressing_s, self.run_s, self.heartbeats
        )?;
        writeln!(
            f,
            "presses     sent {} ({} falls, {} resent), received {}, stored {}, opened {}, joined {}",
            p.sent, p.falls, p.resent, p.received, p.stored, p.opened, p.joined
        )?;
        writeln!(
            f,
            "            lost {}, duplicated {}",
            p.lost, p.duplicated
        )?;
        writeln!(f, "press→offer  {}", self.press_to_offer)?;
        writeln!(f, "press→accept {}", self.press_to_accept)?;
        writeln!(
            f,
            "alerts      opened {}, offered {}, accepted {}, on scene {}, resolved {}, unfinished {}",
            a.opened, a.offered, a.accepted, a.on_scene, a.resolved, a.unfinished
        )?;
        writeln!(
            f,
            "targets     response {}   arrival {}",
            a.response, a.arrival
        )?;
        writeln!(
            f,
            "offers      received {}, accepted {}, declined {}, ignored {}, withdrawn {}, 409 {}",
            o.received, o.accepted, o.declined, o.ignored, o.withdrawn, o.conflicts
        )?;
        writeln!(
            f,
            "            double offers {}, offers while busy {}",
            o.double, o.while_busy
        )?;
        write!(
            f,
            "errors      http {}, mqtt reconnects {}; {}",
            self.http_errors,
            self.mqtt_reconnects,
            if self.is_sound() {
                "sound: nothing lost, duplicated or offered twice"
            } else {
                "NOT SOUND: see lost, duplicated, double offers"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_nearest_rank_in_milliseconds() {
        let l = Latency::of((1..=100).map(Duration::from_millis));
        assert_eq!(l.count, 100);
        assert_eq!(l.p50_ms, Some(50.0));
        assert_eq!(l.p90_ms, Some(90.0));
        assert_eq!(l.p99_ms, Some(99.0));
        assert_eq!(l.max_ms, Some(100.0));
        let none = Latency::of([]);
        assert_eq!(none.count, 0);
        assert_eq!(none.p50_ms, None);
        assert!(none.to_string().contains("p50 -"));
    }

    #[test]
    fn latencies_keep_microseconds() {
        let l = Latency::of([Duration::from_micros(1500)]);
        assert_eq!(l.p50_ms, Some(1.5));
    }

    #[test]
    fn rates_of_nothing_are_zero() {
        assert_eq!(Rate::new(0, 0).rate, 0.0);
        assert_eq!(Rate::new(3, 4).rate, 0.75);
        assert_eq!(Rate::new(3, 4).to_string(), "75.0 % (3/4)");
    }

    #[test]
    fn a_report_is_sound_only_without_loss_duplicates_or_double_offers() {
        let mut r = Report::default();
        r.presses.sent = 2;
        r.presses.stored = 2;
        assert!(r.is_sound());
        r.offers.double = 1;
        assert!(!r.is_sound());
        r.offers.double = 0;
        r.presses.stored = 1;
        r.presses.lost = 1;
        assert!(!r.is_sound());
        assert!(r.to_string().contains("NOT SOUND"));
    }

    #[test]
    fn a_report_round_trips_through_json() {
        let mut r = Report {
            press_to_offer: Latency::of([Duration::from_millis(12)]),
            ..Report::default()
        };
        r.alerts.response = Rate::new(1, 1);
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}
