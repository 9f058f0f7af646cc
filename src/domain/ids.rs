//! Validated identifiers. Each id type can only be built through `parse`,
//! so a value of the type is always well-formed: the adapters parse at the
//! edge and the rest of the code never re-checks.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most 64 characters")]
    TooLong,
    #[error("may contain only letters, digits, '_' and '-'")]
    BadCharacter,
    /// No text column of PostgreSQL can hold U+0000.
    #[error("must not contain NUL characters")]
    Nul,
}

/// The rule the contract sets for device, senior, volunteer and gateway ids:
/// `[A-Za-z0-9_-]{1,64}`.
fn check_slug(s: &str) -> Result<(), IdError> {
    check_len(s)?;
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(IdError::BadCharacter)
    }
}

/// Whether `s` could be a device, senior, volunteer or gateway id.
pub fn is_slug(s: &str) -> bool {
    check_slug(s).is_ok()
}

/// Event ids are 1–64 characters of any kind (the band chooses them) but
/// NUL, which no store can keep.
fn check_len(s: &str) -> Result<(), IdError> {
    match s.chars().count() {
        0 => Err(IdError::Empty),
        1..=64 if s.contains('\0') => Err(IdError::Nul),
        1..=64 => Ok(()),
        _ => Err(IdError::TooLong),
    }
}

/// The JSON schema of the contract's slug ids, for the OpenAPI document.
pub const SLUG_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// The JSON schema of event and alert ids: anything but NUL.
pub const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";

/// The OpenAPI schema of an id: a string of 1–64 characters, matching
/// `pattern` when given.
fn id_schema(
    description: &str,
    pattern: Option<&str>,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .min_length(Some(1))
        .max_length(Some(64))
        .pattern(pattern)
        .into()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $check:path, $description:literal, $pattern:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates an id.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                $check(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                id_schema($description, $pattern)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// A wristband, as it names itself in its MQTT topics.
    DeviceId,
    check_slug,
    "A wristband's id.",
    Some(SLUG_PATTERN)
);
id_type!(
    /// A senior registered with the service.
    SeniorId,
    check_slug,
    "A senior's id.",
    Some(SLUG_PATTERN)
);
id_type!(
    /// A volunteer registered with the service.
    VolunteerId,
    check_slug,
    "A volunteer's id.",
    Some(SLUG_PATTERN)
);
id_type!(
    /// A gateway: a band vendor's platform relaying many bands over MQTT.
    GatewayId,
    check_slug,
    "A gateway's id.",
    Some(SLUG_PATTERN)
);
id_type!(
    /// A band's own id for one event, unique per device.
    EventId,
    check_len,
    "A band's id for one event, unique per device: 1-64 characters (any but NUL).",
    Some(NO_NUL_PATTERN)
);
id_type!(
    /// An alert, chosen by the service (a UUIDv7, so ids sort by creation).
    AlertId,
    check_len,
    "An alert's id, chosen by the service (opaque; 1-64 characters).",
    Some(NO_NUL_PATTERN)
);

impl AlertId {
    /// A fresh, time-ordered alert id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_ids_accept_the_contract_alphabet() {
        assert!(DeviceId::parse("band-17_A").is_ok());
        assert!(VolunteerId::parse("v".repeat(64)).is_ok());
    }

    #[test]
    fn empty_id_is_rejected() {
        assert_eq!(DeviceId::parse(""), Err(IdError::Empty));
    }

    #[test]
    fn id_over_64_chars_is_rejected() {
        assert_eq!(SeniorId::parse("s".repeat(65)), Err(IdError::TooLong));
    }

    #[test]
    fn id_with_slash_or_plus_is_rejected() {
        assert_eq!(DeviceId::parse("a/b"), Err(IdError::BadCharacter));
        assert_eq!(DeviceId::parse("a+"), Err(IdError::BadCharacter));
        assert_eq!(DeviceId::parse("a b"), Err(IdError::BadCharacter));
        assert_eq!(DeviceId::parse("é"), Err(IdError::BadCharacter));
    }

    #[test]
    fn event_ids_may_hold_any_character() {
        assert!(EventId::parse("a1b2-7 é/+").is_ok());
        assert_eq!(EventId::parse("é".repeat(65)), Err(IdError::TooLong));
        assert!(EventId::parse("é".repeat(64)).is_ok());
    }

    #[test]
    fn no_id_holds_a_nul() {
        assert_eq!(EventId::parse("a\0b"), Err(IdError::Nul));
        assert_eq!(AlertId::parse("\0"), Err(IdError::Nul));
        assert_eq!(DeviceId::parse("a\0"), Err(IdError::Nul));
    }

    #[test]
    fn ids_deserialize_through_parse() {
        let ok: Result<DeviceId, _> = serde_json::from_str("\"band-1\"");
        assert!(ok.is_ok());
        let bad: Result<DeviceId, _> = serde_json::from_str("\"band 1\"");
        assert!(bad.is_err());
    }

    #[test]
    fn generated_alert_ids_are_unique_and_ordered() {
        let a = AlertId::generate();
        let b = AlertId::generate();
        assert_ne!(a, b);
        assert!(a < b);
    }
}
