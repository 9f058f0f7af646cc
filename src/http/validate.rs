//! The checks request DTOs share on their way to domain types: lengths of
//! free text and coordinates. Strings are kept as given (not trimmed), but a
//! name must hold something besides whitespace. Each failure is an
//! [`Invalid`], a 422.
//!
//! The OpenAPI document states the same rules, so that a client (or
//! schemathesis) can tell a good body from a bad one without asking:
//! `maxLength` in characters (Unicode scalar values, as JSON Schema and
//! `chars()` count them), and [`TEXT_PATTERN`] or [`NAME_PATTERN`] on
//! every text. utoipa takes only literal patterns, so the attributes repeat
//! them; the tests of `super::openapi` hold every body's strings to these
//! constants and these constants to the checks below.

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

/// The characters a blank name is made of: Unicode's White_Space, the
/// set `char::is_whitespace` (and so `str::trim`) uses, as the inside of a
/// character class, with `\uXXXX` escapes that ECMAScript, Python and Rust
/// regular expressions all read the same. (`\s` is not the same set in
/// any two of them: Python's holds U+001C–U+001F and U+0085, ECMAScript's
/// U+FEFF and not U+0085, and schemathesis generates with Python's.)
macro_rules! whitespace_class {
    () => {
        "\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
    };
}

/// The JSON Schema `pattern` of every free text a body takes: no NUL
/// (PostgreSQL cannot store it).
pub const TEXT_PATTERN: &str = crate::domain::ids::NO_NUL_PATTERN;

/// An http or https URL as the service takes one from a body (a
/// volunteer's ntfy topic): a host name (labels of letters, digits and
/// hyphens, the last starting with a letter: no addresses, no user), an
/// optional port (up to 65535, at most 5 digits, no leading zero in 5), an
/// optional path of printable ASCII.
/// [`http_url`] checks exactly this.
pub const URL_PATTERN: &str = "^https?://([A-Za-z0-9-]+\\.)*[A-Za-z][A-Za-z0-9-]*(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[!-~]*)?$";

/// Whether `s` matches [`URL_PATTERN`].
pub fn http_url(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let label_ok =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let labels: Vec<&str> = host.split('.').collect();
    let last_ok = labels
        .last()
        .is_some_and(|l| l.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()));
    let port_ok = port.is_none_or(|p| {
        let digits = p.bytes().all(|b| b.is_ascii_digit());
        match p.len() {
            1..=4 => digits,
            5 => digits && !p.starts_with('0') && p.parse::<u32>().is_ok_and(|n| n <= 65_535),
            _ => false,
        }
    });
    let path_ok = path.bytes().all(|b| (b'!'..=b'~').contains(&b));
    labels.iter().all(|l| label_ok(l)) && last_ok && port_ok && path_ok
}

/// The `pattern` of a name, and of every text that must not be blank: no
/// NUL, and at least one character that is not whitespace.
pub const NAME_PATTERN: &str = concat!(
    "^[^\\u0000]*[^\\u0000",
    whitespace_class!(),
    "][^\\u0000]*$"
);

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

    /// A pattern as a JSON Schema validator reads it: anywhere in the
    /// string (ours are anchored).
    fn pattern(p: &str) -> regex::Regex {
        regex::Regex::new(p).expect("a valid pattern")
    }

    #[test]
    fn the_whitespace_class_is_exactly_what_trim_removes() {
        let class = pattern(concat!("^[", whitespace_class!(), "]$"));
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(
                class.is_match(c.encode_utf8(&mut [0; 4])),
                c.is_whitespace(),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn the_patterns_read_the_same_in_ecmascript_python_and_rust() {
        // Only \uXXXX escapes, ranges and negated classes: no \s, \w, \d
        // or flags, whose meaning differs between engines.
        for p in [NAME_PATTERN, TEXT_PATTERN] {
            let unescaped = p.replace("\\u", "");
            assert!(!unescaped.contains('\\'), "{p}");
            assert!(p.starts_with('^') && p.ends_with('$'), "{p}");
        }
    }

    /// Text that is mostly ordinary and often blank or holding a NUL.
    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[ \t\n\x0b\x0c\r\u{85}\u{a0}\u{1680}\u{2000}-\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}\u{feff}\x1c-\x1f\x00a]{0,6}",
            "\\PC{0,8}",
            any::<String>(),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// The document's patterns accept exactly what the checks accept.
        #[test]
        fn the_patterns_agree_with_the_checks(s in text()) {
            proptest::prop_assert_eq!(
                pattern(NAME_PATTERN).is_match(&s),
                required("name", s.clone(), usize::MAX).is_ok(),
                "{:?}", s
            );
            proptest::prop_assert_eq!(
                pattern(TEXT_PATTERN).is_match(&s),
                optional("notes", Some(s.clone()), usize::MAX).is_ok(),
                "{:?}", s
            );
        }
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

    #[test]
    fn the_url_rule_and_its_pattern_agree() {
        let pattern = regex::Regex::new(URL_PATTERN).unwrap();
        for s in [
            "https://ntfy.example.org/wang-fang-7f3a",
            "http://localhost:8080/t",
            "http://a",
            "https://x-1.y/a/b?c=d#e",
            "https://ntfy.sh",
            "",
            "ntfy.example.org/t",
            "ftp://ntfy.example.org/t",
            "https://user:pw@ntfy.example.org/t",
            "https://127.0.0.1/t",
            "https://a.1/t",
            "https://a..b/t",
            "https://host:12345/t",
            "http://localhost:43567/t",
            "https://host:65535/t",
            "https://host:65536/t",
            "https://host:99999/t",
            "https://host:01234/t",
            "https://host:123456/t",
            "https://host:/t",
            "https://host/a b",
            "https://host/a\u{0}",
            "https://ho_st/t",
            "https://hé.st/t",
        ] {
            assert_eq!(http_url(s), pattern.is_match(s), "{s:?}");
            if http_url(s) {
                assert!(
                    reqwest::Url::parse(s).is_ok(),
                    "{s:?} matches but does not parse"
                );
            }
        }
    }
}
