//! The pure parts of e-mail: verification codes derived with a key (the
//! engine has no randomness, and the code must not be guessable),
//! constant-time comparison, and deterministic Message-IDs.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use gatekeeper_common::Secret;

/// A code is good for an hour.
pub const CODE_LIFETIME_MS: u64 = 3_600_000;
/// At most one code mailed per owner every 10 minutes, and 5 a day:
/// `set email` must not turn the operator's mail relay into a flood.
pub const CODE_INTERVAL_MS: u64 = 600_000;
pub const CODES_PER_DAY: usize = 5;
pub const DAY_MS: u64 = 86_400_000;

/// Six digits from HMAC(key, owner, address, the asking event): the same
/// every time that event is decided again, unknowable without the key.
pub fn verification_code(secret: &Secret, owner: &ruma::UserId, address: &str, seed: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    for part in [owner.as_str(), address, seed] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    let bytes = mac.finalize().into_bytes();
    let n = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % 1_000_000;
    format!("{n:06}")
}

pub fn codes_match(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// `<gk.…@server>`, the same for the same mail, so a resend after a crash
/// can be recognised as one.
pub fn message_id(seed: &str, purpose: &str, server_name: &str) -> String {
    let digest = Sha256::digest(format!("{seed}\0{purpose}").as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("<gk.{purpose}.{hex}@{server_name}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_deterministic_keyed_and_six_digits() {
        let owner = ruma::user_id!("@alice:example.org");
        let a = verification_code(&Secret::new("k1"), owner, "a@example.org", "$e1");
        assert_eq!(a.len(), 6);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(a, verification_code(&Secret::new("k1"), owner, "a@example.org", "$e1"));
        assert_ne!(a, verification_code(&Secret::new("k2"), owner, "a@example.org", "$e1"));
        assert_ne!(a, verification_code(&Secret::new("k1"), owner, "a@example.org", "$e2"));
        assert!(codes_match(&a, &a.clone()));
        assert!(!codes_match(&a, "000000x"));
    }

    #[test]
    fn message_ids_are_stable_and_well_formed() {
        let id = message_id("$e", "digest", "example.org");
        assert_eq!(id, message_id("$e", "digest", "example.org"));
        assert!(id.starts_with("<gk.digest.") && id.ends_with("@example.org>"));
        assert!(!id.contains(['\r', '\n', ' ']));
    }
}
