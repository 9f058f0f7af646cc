//! The simulated world, drawn from a seeded RNG: where seniors and
//! volunteers live (uniformly over a disc), how long a volunteer takes to
//! answer an offer (log-normal around a median) and what they answer. Pure:
//! no I/O, no clock, so the live simulator and a virtual-clock one can share
//! it and tests can pin it.

use rand::Rng;

use crate::domain::Position;
use crate::domain::geo::EARTH_RADIUS_M;

/// Why a part of a plan cannot be simulated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct PlanError {
    pub what: &'static str,
    pub why: String,
}

impl PlanError {
    pub fn new(what: &'static str, why: impl Into<String>) -> Self {
        Self {
            what,
            why: why.into(),
        }
    }
}

/// A disc on the earth: everyone simulated lives inside it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    pub center: Position,
    pub radius_m: f64,
}

impl Area {
    pub fn new(center: Position, radius_m: f64) -> Result<Self, PlanError> {
        if !(radius_m.is_finite() && radius_m > 0.0 && radius_m <= 1_000_000.0) {
            return Err(PlanError::new(
                "radius",
                "must be more than 0 and at most 1000 km",
            ));
        }
        Ok(Self { center, radius_m })
    }

    /// A point drawn uniformly over the disc (a local flat approximation,
    /// fine up to a province's size), kept within valid coordinates.
    pub fn sample(&self, rng: &mut impl Rng) -> Position {
        let r = self.radius_m * rng.random::<f64>().sqrt();
        let theta = rng.random::<f64>() * std::f64::consts::TAU;
        let (north, east) = (r * theta.cos(), r * theta.sin());
        let lat = self.center.lat() + (north / EARTH_RADIUS_M).to_degrees();
        let cos_lat = self.center.lat().to_radians().cos().max(1e-6);
        let lon = self.center.lon() + (east / (EARTH_RADIUS_M * cos_lat)).to_degrees();
        let lon = (lon + 540.0).rem_euclid(360.0) - 180.0;
        Position::new(lat.clamp(-90.0, 90.0), lon).unwrap_or(self.center)
    }
}

/// How spread the answer delays are around their median: the log-normal's
/// sigma. At 0.6, one answer in ten takes more than 2.2 times the median.
pub const DELAY_SIGMA: f64 = 0.6;

/// A log-normal duration in seconds with the given median.
pub fn log_normal_s(median_s: f64, sigma: f64, rng: &mut impl Rng) -> f64 {
    if median_s <= 0.0 {
        return 0.0;
    }
    median_s * (sigma * standard_normal(rng)).exp()
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// An exponential draw with the given mean (gaps between presses at a rate).
pub fn exponential_s(mean_s: f64, rng: &mut impl Rng) -> f64 {
    -mean_s * (1.0 - rng.random::<f64>()).ln()
}

/// What a volunteer does with an offer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// Accepts after this many seconds.
    Accept(f64),
    /// Declines after this many seconds.
    Decline(f64),
    /// Lets it expire.
    Ignore,
}

/// How volunteers answer offers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    /// Median seconds from an offer to its answer.
    pub answer_median_s: f64,
    /// Probability of declining.
    pub decline: f64,
    /// Probability of ignoring (the offer expires).
    pub ignore: f64,
}

impl Behaviour {
    pub fn new(answer_median_s: f64, decline: f64, ignore: f64) -> Result<Self, PlanError> {
        if !(answer_median_s.is_finite() && answer_median_s >= 0.0) {
            return Err(PlanError::new("accept delay", "must be 0 or more"));
        }
        for (what, p) in [("decline", decline), ("ignore", ignore)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(PlanError::new(what, "must be a probability in [0, 1]"));
            }
        }
        if decline + ignore > 1.0 {
            return Err(PlanError::new(
                "decline + ignore",
                "must not exceed 1 (the rest accept)",
            ));
        }
        Ok(Self {
            answer_median_s,
            decline,
            ignore,
        })
    }

    pub fn answer(&self, rng: &mut impl Rng) -> Answer {
        let u = rng.random::<f64>();
        if u < self.ignore {
            return Answer::Ignore;
        }
        let delay = log_normal_s(self.answer_median_s, DELAY_SIGMA, rng);
        if u < self.ignore + self.decline {
            Answer::Decline(delay)
        } else {
            Answer::Accept(delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn area() -> Area {
        Area::new(Position::new(30.51, 120.68).unwrap(), 2000.0).unwrap()
    }

    #[test]
    fn samples_stay_inside_the_disc() {
        let a = area();
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..10_000 {
            let p = a.sample(&mut rng);
            assert!(p.distance_m(&a.center) <= a.radius_m * 1.001, "{p:?}");
        }
    }

    #[test]
    fn samples_near_the_antimeridian_wrap() {
        let a = Area::new(Position::new(0.0, 179.999).unwrap(), 5000.0).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let p = a.sample(&mut rng);
            assert!(p.distance_m(&a.center) <= 5001.0, "{p:?}");
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_world() {
        let a = area();
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..10).map(|_| a.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn a_radius_must_be_positive_and_bounded() {
        let c = Position::new(0.0, 0.0).unwrap();
        assert!(Area::new(c, 0.0).is_err());
        assert!(Area::new(c, f64::NAN).is_err());
        assert!(Area::new(c, 2_000_000.0).is_err());
    }

    #[test]
    fn log_normal_delays_have_their_median() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut v: Vec<f64> = (0..20_001)
            .map(|_| log_normal_s(10.0, DELAY_SIGMA, &mut rng))
            .collect();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        assert!((9.5..10.5).contains(&median), "{median}");
        assert!(v.iter().all(|d| *d > 0.0));
        assert_eq!(log_normal_s(0.0, DELAY_SIGMA, &mut rng), 0.0);
    }

    #[test]
    fn exponential_gaps_have_their_mean() {
        let mut rng = StdRng::seed_from_u64(5);
        let n = 20_000;
        let mean = (0..n).map(|_| exponential_s(0.5, &mut rng)).sum::<f64>() / n as f64;
        assert!((0.48..0.52).contains(&mean), "{mean}");
    }

    #[test]
    fn answers_follow_their_probabilities() {
        let b = Behaviour::new(1.0, 0.2, 0.1).unwrap();
        let mut rng = StdRng::seed_from_u64(9);
        let (mut acc, mut dec, mut ign) = (0, 0, 0);
        for _ in 0..10_000 {
            match b.answer(&mut rng) {
                Answer::Accept(_) => acc += 1,
                Answer::Decline(_) => dec += 1,
                Answer::Ignore => ign += 1,
            }
        }
        assert!((1800..2200).contains(&dec), "{dec}");
        assert!((850..1150).contains(&ign), "{ign}");
        assert_eq!(acc + dec + ign, 10_000);
    }

    #[test]
    fn behaviours_reject_impossible_probabilities() {
        assert!(Behaviour::new(1.0, 1.1, 0.0).is_err());
        assert!(Behaviour::new(1.0, 0.0, -0.1).is_err());
        assert!(Behaviour::new(1.0, 0.6, 0.6).is_err());
        assert!(Behaviour::new(-1.0, 0.0, 0.0).is_err());
        assert!(Behaviour::new(f64::NAN, 0.0, 0.0).is_err());
        assert_eq!(
            Behaviour::new(1.0, 0.0, 1.0)
                .unwrap()
                .answer(&mut StdRng::seed_from_u64(1)),
            Answer::Ignore
        );
    }
}
