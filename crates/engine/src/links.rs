//! One-click links in e-mails: a signed, expiring capability to take one
//! decision for one owner. Signing and checking are pure (HMAC-SHA256 with
//! the deployment's key); single use is enforced by the store when the link
//! is acted on.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use gatekeeper_common::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkAction {
    Allow,
    Allow30,
    Deny,
    Block,
    BlockServer,
    Unsubscribe,
    /// Takes back the decision another link made (`nonce` is
    /// `undo.<that link's nonce>`), for a day after it acted.
    Undo,
}

/// The nonce of the undo link offered after the link with `nonce` acted.
pub fn undo_nonce(nonce: &str) -> String {
    format!("undo.{nonce}")
}

impl LinkAction {
    /// What the link's button says.
    pub fn label(self) -> &'static str {
        crate::texts::link_label(self)
    }
}

/// What a link says, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub owner: String,
    pub action: LinkAction,
    /// A user ID or `*:server`; empty for unsubscribe.
    pub subject: String,
    pub expires_ms: u64,
    /// Unique per link, for single use.
    pub nonce: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not valid")]
    Invalid,
    #[error("this link has expired")]
    Expired,
}

fn mac(secret: &Secret, payload: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    m.update(b"gatekeeper-link-v1\0");
    m.update(payload);
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 4096 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// `payload.signature`, both hex: safe in a URL path without escaping.
pub fn sign(secret: &Secret, link: &Link) -> String {
    let payload = serde_json::to_vec(link).expect("links serialize");
    format!("{}.{}", hex(&payload), hex(&mac(secret, &payload)))
}

pub fn verify(secret: &Secret, token: &str, now_ms: u64) -> Result<Link, LinkError> {
    let (payload, signature) = token.split_once('.').ok_or(LinkError::Invalid)?;
    let (payload, signature) = (unhex(payload).ok_or(LinkError::Invalid)?, unhex(signature).ok_or(LinkError::Invalid)?);
    if !bool::from(mac(secret, &payload).ct_eq(&signature)) {
        return Err(LinkError::Invalid);
    }
    let link: Link = serde_json::from_slice(&payload).map_err(|_| LinkError::Invalid)?;
    if link.expires_ms <= now_ms {
        return Err(LinkError::Expired);
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            owner: "@alice:example.org".into(),
            action: LinkAction::Allow,
            subject: "@bob:x.org".into(),
            expires_ms: 1000,
            nonce: "n1".into(),
        }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let key = Secret::new("k".repeat(40));
        let token = sign(&key, &link());
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.'));
        assert_eq!(verify(&key, &token, 999), Ok(link()));
        assert_eq!(verify(&key, &token, 1000), Err(LinkError::Expired));
    }

    #[test]
    fn tampered_or_foreign_links_are_refused() {
        let key = Secret::new("k".repeat(40));
        let token = sign(&key, &link());
        assert_eq!(verify(&Secret::new("other".repeat(8)), &token, 0), Err(LinkError::Invalid));
        // Someone edits the payload to block instead, keeping the signature.
        let evil = Link { action: LinkAction::Block, ..link() };
        let forged = format!("{}.{}", hex(&serde_json::to_vec(&evil).unwrap()), token.split_once('.').unwrap().1);
        assert_eq!(verify(&key, &forged, 0), Err(LinkError::Invalid));
        for bad in ["", ".", "zz.zz", "abc", &token[1..], &format!("{token}00")] {
            assert_eq!(verify(&key, bad, 0), Err(LinkError::Invalid), "{bad}");
        }
    }
}
