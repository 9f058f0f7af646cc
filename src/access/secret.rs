//! Secrets: bands' and gateways' MQTT passwords, volunteers' tokens.
//!
//! A secret is 256 random bits (64 hex characters), shown once and kept
//! only as a salted SHA-512 hash in Mosquitto's `$6$` form
//! (`$6$<base64 salt>$<base64 SHA-512(secret ‖ salt)>`), so that the same
//! stored value checks a login here and can be written, as it is, to a
//! Mosquitto password file. One cheap hash is right for random secrets:
//! nobody can guess 256 bits, and a slow password hash would make every
//! broker reload (which re-checks every connected client) slow.
//! Comparisons take constant time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha512};

/// The salt's length, as Mosquitto's own tools write it.
const SALT_LEN: usize = 12;

/// A fresh secret: 32 bytes from the thread's CSPRNG, hex-encoded.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The `$6$` hash of a secret, with a fresh salt.
pub fn hash(secret: &str) -> String {
    let salt: [u8; SALT_LEN] = rand::random();
    hash_with_salt(secret, &salt)
}

fn hash_with_salt(secret: &str, salt: &[u8]) -> String {
    let digest = Sha512::new()
        .chain_update(secret.as_bytes())
        .chain_update(salt)
        .finalize();
    format!("$6${}${}", STANDARD.encode(salt), STANDARD.encode(digest))
}

/// Does `secret` match the stored `$6$` hash? False for anything malformed.
pub fn verify(secret: &str, stored: &str) -> bool {
    let Some(rest) = stored.strip_prefix("$6$") else {
        return false;
    };
    let Some((salt, _)) = rest.split_once('$') else {
        return false;
    };
    let Ok(salt) = STANDARD.decode(salt) else {
        return false;
    };
    constant_time_eq(hash_with_salt(secret, &salt).as_bytes(), stored.as_bytes())
}

/// Equality of two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_256_bits_of_hex_and_distinct() {
        let a = new_secret();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_secret());
    }

    #[test]
    fn a_hash_verifies_its_secret_only() {
        let s = new_secret();
        let h = hash(&s);
        assert!(h.starts_with("$6$"));
        assert!(!h.contains(&s));
        assert!(verify(&s, &h));
        assert!(!verify(&new_secret(), &h));
        assert!(!verify("", &h));
    }

    #[test]
    fn the_same_secret_hashes_differently_each_time() {
        let s = new_secret();
        assert_ne!(hash(&s), hash(&s));
    }

    #[test]
    fn hashes_written_by_mosquitto_passwd_verify() {
        // `mosquitto_passwd -H sha512 -b pw band-1 secret`, Mosquitto 2.0.11.
        let h = "$6$5V3S5RfL3XNw/IAG$RPpQ7SKXcYPbg7ilCbactTwFnytf6b3jQIgVLHB8xMERef1iJJ0i/XauaIMEu0ypyza98u5ffDFzz0RR7gLGvA==";
        assert!(verify("secret", h));
        assert!(!verify("secreT", h));
    }

    #[test]
    fn malformed_hashes_never_verify() {
        for bad in ["", "$6$", "$6$!!$x", "$7$abc$def", "plain"] {
            assert!(!verify("x", bad), "{bad}");
        }
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
