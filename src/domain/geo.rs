//! Positions on the earth and the distances between them.
//!
//! Distances are great-circle distances on a sphere of the mean earth radius
//! (the haversine formula, as `geo` computes it). For the spatial index a
//! position is also mapped to earth-centred cartesian metres: the straight
//! chord between two such points grows strictly with the great-circle
//! distance, so nearest-by-chord is nearest-by-great-circle, exactly and
//! anywhere on the globe, with no local projection to go wrong at a
//! province's edge.

use geo::{Distance, Haversine, Point};
use serde::{Deserialize, Serialize};

/// The mean earth radius `geo`'s haversine uses, in metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Why a coordinate pair is not a position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PositionError {
    #[error("lat must be a number in [-90, 90]")]
    Latitude,
    #[error("lon must be a number in [-180, 180]")]
    Longitude,
}

/// A WGS 84 position in decimal degrees, always within range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "RawPosition")]
pub struct Position {
    #[schema(minimum = -90.0, maximum = 90.0)]
    lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0)]
    lon: f64,
}

#[derive(Deserialize)]
struct RawPosition {
    lat: f64,
    lon: f64,
}

impl TryFrom<RawPosition> for Position {
    type Error = PositionError;
    fn try_from(raw: RawPosition) -> Result<Self, PositionError> {
        Position::new(raw.lat, raw.lon)
    }
}

impl Position {
    pub fn new(lat: f64, lon: f64) -> Result<Self, PositionError> {
        if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
            return Err(PositionError::Latitude);
        }
        if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
            return Err(PositionError::Longitude);
        }
        Ok(Self { lat, lon })
    }

    pub fn lat(&self) -> f64 {
        self.lat
    }

    pub fn lon(&self) -> f64 {
        self.lon
    }

    /// Great-circle distance in metres.
    pub fn distance_m(&self, other: &Position) -> f64 {
        Haversine.distance(
            Point::new(self.lon, self.lat),
            Point::new(other.lon, other.lat),
        )
    }

    /// Earth-centred cartesian coordinates in metres.
    pub fn to_ecef(self) -> [f64; 3] {
        let (lat, lon) = (self.lat.to_radians(), self.lon.to_radians());
        [
            EARTH_RADIUS_M * lat.cos() * lon.cos(),
            EARTH_RADIUS_M * lat.cos() * lon.sin(),
            EARTH_RADIUS_M * lat.sin(),
        ]
    }
}

/// The chord length (straight through the earth) that spans a great-circle
/// distance; used to turn a radius in metres into an index query.
pub fn chord_for_distance(distance_m: f64) -> f64 {
    let half_angle = (distance_m / (2.0 * EARTH_RADIUS_M)).min(std::f64::consts::FRAC_PI_2);
    2.0 * EARTH_RADIUS_M * half_angle.sin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_latitude_is_rejected() {
        assert_eq!(Position::new(90.1, 0.0), Err(PositionError::Latitude));
        assert_eq!(Position::new(-91.0, 0.0), Err(PositionError::Latitude));
        assert_eq!(Position::new(f64::NAN, 0.0), Err(PositionError::Latitude));
    }

    #[test]
    fn out_of_range_longitude_is_rejected() {
        assert_eq!(Position::new(0.0, 180.5), Err(PositionError::Longitude));
        assert_eq!(
            Position::new(0.0, f64::INFINITY),
            Err(PositionError::Longitude)
        );
    }

    #[test]
    fn the_edges_of_the_ranges_are_positions() {
        assert!(Position::new(90.0, 180.0).is_ok());
        assert!(Position::new(-90.0, -180.0).is_ok());
    }

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let a = Position::new(30.0, 120.0).unwrap();
        let b = Position::new(31.0, 120.0).unwrap();
        let d = a.distance_m(&b);
        assert!((d - 111_195.0).abs() < 50.0, "{d}");
    }

    #[test]
    fn chord_and_great_circle_agree() {
        let a = Position::new(30.51, 120.68).unwrap();
        let b = Position::new(30.52, 120.70).unwrap();
        let [x1, y1, z1] = a.to_ecef();
        let [x2, y2, z2] = b.to_ecef();
        let chord = ((x1 - x2).powi(2) + (y1 - y2).powi(2) + (z1 - z2).powi(2)).sqrt();
        let d = a.distance_m(&b);
        assert!(
            (chord_for_distance(d) - chord).abs() < 0.01,
            "{chord} vs {d}"
        );
    }

    #[test]
    fn positions_deserialize_only_in_range() {
        let ok: Result<Position, _> = serde_json::from_str(r#"{"lat": 30.5, "lon": 120.6}"#);
        assert!(ok.is_ok());
        let bad: Result<Position, _> = serde_json::from_str(r#"{"lat": 130.5, "lon": 120.6}"#);
        assert!(bad.is_err());
    }
}
