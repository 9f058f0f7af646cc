//! The checks request DTOs share on their way to domain types: lengths of
//! free text and coordinates. Strings are kept as given (not trimmed), but a
//! name must hold something besides whitespace. Each failure is an
//! [`Invalid`], a 422.

use serde::Deserialize;

use super::error::Invalid;
use crate::domain::Position;

/// Names (of seniors, volunteers, contacts), grids, skills, outcomes.
pub const MAX_NAME_CHARS: usize = 200;
/// Addresses, notes, reasons.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Phone numbers.
pub const MAX_PHONE_CHARS: usize = 64;
/// Entries of a list (contacts, skills).
pub const MAX_LIST_LEN: usize = 50;

/// A required short text: not blank, at most `max` characters.
pub fn required(field: &str, value: String, max: usize) -> Result<String, Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid::field(field, "must not be empty"));
    }
    at_most(field, value, max)
}

/// An optional text of at most `max` characters.
pub fn optional(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, Invalid> {
    value.map(|v| at_most(field, v, max)).transpose()
}

fn at_most(field: &str, value: String, max: usize) -> Result<String, Invalid> {
    // PostgreSQL cannot store U+0000 in text: refuse it here, for both
    // stores, rather than answer a 503.
    if value.contains('\0') {
        return Err(Invalid::field(field, "must not contain NUL characters"));
    }
    if value.chars().count() > max {
        return Err(Invalid::field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(value)
}

/// A text of at most `max` characters, kept as it is (the broker hooks
/// pass on whatever a client sent, NUL included).
pub fn length(field: &str, value: &str, max: usize) -> Result<(), Invalid> {
    if value.chars().count() > max {
        return Err(Invalid::field(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// [`length`] of an optional text.
pub fn length_of(field: &str, value: Option<&str>, max: usize) -> Result<(), Invalid> {
    value.map_or(Ok(()), |v| length(field, v, max))
}

/// A list of at most [`MAX_LIST_LEN`] entries.
pub fn list<T>(field: &str, value: Option<Vec<T>>) -> Result<Vec<T>, Invalid> {
    let value = value.unwrap_or_default();
    if value.len() > MAX_LIST_LEN {
        return Err(Invalid::field(
            field,
            format!("must have at most {MAX_LIST_LEN} entries"),
        ));
    }
    Ok(value)
}

/// `{lat, lon}` as a client sends it: any numbers, checked by `Position`
/// (out of range: 422).
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
pub struct LatLon {
    #[schema(minimum = -90.0, maximum = 90.0)]
    pub lat: f64,
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lon: f64,
}

impl TryFrom<LatLon> for Position {
    type Error = Invalid;
    fn try_from(p: LatLon) -> Result<Self, Invalid> {
        Ok(Position::new(p.lat, p.lon)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_names_are_refused() {
        assert!(required("name", "".into(), 10).is_err());
        assert!(required("name", "  \t".into(), 10).is_err());
        assert_eq!(required("name", " Li ".into(), 10), Ok(" Li ".into()));
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(required("name", "王".repeat(10), 10).is_ok());
        assert!(required("name", "王".repeat(11), 10).is_err());
        assert!(optional("notes", Some("x".repeat(11)), 10).is_err());
        assert_eq!(optional("notes", None, 10), Ok(None));
    }

    #[test]
    fn nul_characters_are_refused() {
        assert!(required("name", "Li\0".into(), 10).is_err());
        assert!(optional("notes", Some("\0".into()), 10).is_err());
    }

    #[test]
    fn lists_are_bounded() {
        assert_eq!(list::<u8>("skills", None), Ok(vec![]));
        assert!(list("skills", Some(vec![0u8; MAX_LIST_LEN + 1])).is_err());
    }

    #[test]
    fn coordinates_out_of_range_are_invalid() {
        assert!(
            Position::try_from(LatLon {
                lat: 30.0,
                lon: 120.0
            })
            .is_ok()
        );
        let e = Position::try_from(LatLon {
            lat: 91.0,
            lon: 0.0,
        })
        .unwrap_err();
        assert!(e.0.contains("lat"), "{e}");
        assert!(
            Position::try_from(LatLon {
                lat: 0.0,
                lon: -181.0
            })
            .is_err()
        );
    }
}
