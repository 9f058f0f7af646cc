//! The SLA figures of contract section 3: how many alerts got a volunteer
//! by their response deadline and on scene by their arrival deadline, and
//! how long that took. Pure arithmetic over alerts the caller has chosen
//! (the store picks them by `pressed_at`); no clock, no I/O.

use serde::Serialize;

use super::alert::{Alert, AlertState, Timestamp};

/// The figures over a set of alerts (cancelled ones are left out).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SlaFigures {
    /// Alerts counted: those given, less the cancelled ones.
    pub alerts: u64,
    /// Accepted (or assigned) by their response deadline.
    pub response_within_target: u64,
    /// `response_within_target / alerts`, 0 when there are no alerts.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub response_rate: f64,
    /// On scene by their arrival deadline.
    pub arrival_within_target: u64,
    /// `arrival_within_target / alerts`, 0 when there are no alerts.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub arrival_rate: f64,
    /// Median press-to-accept seconds over the accepted ones (null if none).
    pub response_p50_s: Option<f64>,
    /// 90th percentile press-to-accept seconds (null if none).
    pub response_p90_s: Option<f64>,
    /// Median press-to-arrival seconds over the ones on scene (null if none).
    pub arrival_p50_s: Option<f64>,
    /// 90th percentile press-to-arrival seconds (null if none).
    pub arrival_p90_s: Option<f64>,
}

impl SlaFigures {
    /// The figures over `alerts`. Response time is `pressed_at` →
    /// `accepted_at` (the first accept or assignment), arrival time
    /// `pressed_at` → `on_scene_at`, in seconds to the millisecond; a band
    /// clock slightly ahead could make one negative, which counts as 0.
    pub fn of<'a>(alerts: impl IntoIterator<Item = &'a Alert>) -> Self {
        let mut count = 0u64;
        let mut response_ok = 0u64;
        let mut arrival_ok = 0u64;
        let mut response_s = Vec::new();
        let mut arrival_s = Vec::new();
        for a in alerts {
            if a.state == AlertState::Cancelled {
                continue;
            }
            count += 1;
            if let Some(at) = a.accepted_at {
                response_ok += u64::from(at <= a.response_deadline);
                response_s.push(seconds_between(a.pressed_at, at));
            }
            if let Some(at) = a.on_scene_at {
                arrival_ok += u64::from(at <= a.arrival_deadline);
                arrival_s.push(seconds_between(a.pressed_at, at));
            }
        }
        response_s.sort_by(f64::total_cmp);
        arrival_s.sort_by(f64::total_cmp);
        let rate = |n: u64| {
            if count == 0 {
                0.0
            } else {
                n as f64 / count as f64
            }
        };
        SlaFigures {
            alerts: count,
            response_within_target: response_ok,
            response_rate: rate(response_ok),
            arrival_within_target: arrival_ok,
            arrival_rate: rate(arrival_ok),
            response_p50_s: percentile(&response_s, 50),
            response_p90_s: percentile(&response_s, 90),
            arrival_p50_s: percentile(&arrival_s, 50),
            arrival_p90_s: percentile(&arrival_s, 90),
        }
    }
}

/// Seconds from `from` to `to`, to the millisecond, never negative.
fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

/// The `p`th percentile (1 ≤ p ≤ 100) of `sorted` (ascending) by the
/// nearest-rank method: the value at rank ⌈p/100 · n⌉ (1-based), i.e. the
/// smallest value that at least p % of the values do not exceed. Always
/// one of the values, never interpolated. `None` when there are none.
pub fn percentile(sorted: &[f64], p: u32) -> Option<f64> {
    debug_assert!((1..=100).contains(&p), "percentile {p}");
    debug_assert!(sorted.is_sorted_by(|a, b| a <= b), "unsorted");
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // Integer ceiling: no floating-point rounding of the rank.
    let rank = (p as usize * n).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::domain::alert::AlertKind;
    use crate::domain::ids::{AlertId, DeviceId, EventId, SeniorId};

    #[test]
    fn nearest_rank_takes_the_value_at_the_ceiling_rank() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 50), Some(5.0));
        assert_eq!(percentile(&ten, 90), Some(9.0));
        assert_eq!(percentile(&ten, 91), Some(10.0));
        assert_eq!(percentile(&ten, 100), Some(10.0));
        assert_eq!(percentile(&ten, 1), Some(1.0));
        // Rank ⌈0.5 · 3⌉ = 2, ⌈0.9 · 3⌉ = 3.
        assert_eq!(percentile(&[1.0, 2.0, 30.0], 50), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 30.0], 90), Some(30.0));
        // Rank ⌈0.5 · 2⌉ = 1: the lower one, not the mean.
        assert_eq!(percentile(&[1.0, 3.0], 50), Some(1.0));
    }

    #[test]
    fn one_value_is_every_percentile_and_none_is_none() {
        assert_eq!(percentile(&[4.5], 50), Some(4.5));
        assert_eq!(percentile(&[4.5], 90), Some(4.5));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn the_rank_is_exact_where_floating_point_would_drift() {
        // 0.9 · 10 is 9.000000000000002 in some float paths; the rank is 9.
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 90), Some(90.0));
        assert_eq!(percentile(&hundred, 50), Some(50.0));
    }

    fn t0() -> Timestamp {
        "2026-11-25T03:00:00Z".parse().unwrap()
    }

    /// An alert pressed at t0 with a 180 s response and 600 s arrival
    /// target, accepted and on scene after the given seconds.
    fn alert(state: AlertState, accepted_after: Option<i64>, on_scene_after: Option<i64>) -> Alert {
        let at = |s: i64| t0() + TimeDelta::seconds(s);
        Alert {
            id: AlertId::parse("a1").unwrap(),
            device_id: DeviceId::parse("band-1").unwrap(),
            senior_id: SeniorId::parse("s-1").unwrap(),
            kind: AlertKind::Sos,
            state,
            lat: None,
            lon: None,
            pressed_at: t0(),
            received_at: t0(),
            volunteer_id: None,
            accepted_at: accepted_after.map(at),
            on_scene_at: on_scene_after.map(at),
            resolved_at: None,
            cancelled_at: None,
            response_deadline: at(180),
            arrival_deadline: at(600),
            response_breached: false,
            arrival_breached: false,
            escalated: false,
            arrival_at_risk: false,
            event_id: EventId::parse("e-1").unwrap(),
            outcome: None,
            offers: Vec::new(),
        }
    }

    #[test]
    fn no_alerts_give_zero_rates_and_null_percentiles() {
        let f = SlaFigures::of(&[]);
        assert_eq!(f.alerts, 0);
        assert_eq!(f.response_rate, 0.0);
        assert_eq!(f.arrival_rate, 0.0);
        assert_eq!(f.response_p50_s, None);
        assert_eq!(f.arrival_p90_s, None);
        let json = serde_json::to_value(&f).unwrap();
        assert!(json["response_p50_s"].is_null());
    }

    #[test]
    fn figures_count_targets_met_and_leave_cancelled_alerts_out() {
        let alerts = [
            // In time for both.
            alert(AlertState::Resolved, Some(60), Some(300)),
            // Accepted exactly at the deadline (counts), arrived late.
            alert(AlertState::OnScene, Some(180), Some(601)),
            // Accepted late, not there yet.
            alert(AlertState::Accepted, Some(200), None),
            // Still waiting.
            alert(AlertState::Open, None, None),
            // Cancelled: left out entirely.
            alert(AlertState::Cancelled, Some(1), Some(2)),
        ];
        let f = SlaFigures::of(&alerts);
        assert_eq!(f.alerts, 4);
        assert_eq!(f.response_within_target, 2);
        assert_eq!(f.response_rate, 0.5);
        assert_eq!(f.arrival_within_target, 1);
        assert_eq!(f.arrival_rate, 0.25);
        // Response times 60, 180, 200: ranks 2 and 3.
        assert_eq!(f.response_p50_s, Some(180.0));
        assert_eq!(f.response_p90_s, Some(200.0));
        // Arrival times 300, 601: ranks 1 and 2.
        assert_eq!(f.arrival_p50_s, Some(300.0));
        assert_eq!(f.arrival_p90_s, Some(601.0));
    }

    #[test]
    fn times_keep_milliseconds_and_never_go_negative() {
        let mut a = alert(AlertState::Accepted, None, None);
        a.accepted_at = Some(t0() + TimeDelta::milliseconds(1500));
        let mut early = alert(AlertState::Accepted, None, None);
        early.accepted_at = Some(t0() - TimeDelta::seconds(2));
        let f = SlaFigures::of(&[a, early]);
        assert_eq!(f.response_p50_s, Some(0.0));
        assert_eq!(f.response_p90_s, Some(1.5));
    }
}
