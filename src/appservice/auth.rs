//! Checking the homeserver's `hs_token` on every request it makes to us.

use subtle::ConstantTimeEq;

use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No token at all: 401.
    Missing,
    /// A token that is not ours, or a header and a query token that
    /// disagree: 403.
    Wrong,
}

/// Accepts `Authorization: Bearer <token>` (current spec) and the legacy
/// `access_token` query parameter; if both are given both must match.
pub fn check(authorization: Option<&[u8]>, query_token: Option<&str>, expected: &Secret) -> Result<(), AuthError> {
    let header_token = match authorization {
        None => None,
        Some(value) => match value.strip_prefix(b"Bearer ") {
            Some(token) => Some(token),
            None => return Err(AuthError::Wrong),
        },
    };
    let candidates: Vec<&[u8]> = header_token.into_iter().chain(query_token.map(str::as_bytes)).collect();
    if candidates.is_empty() {
        return Err(AuthError::Missing);
    }
    let expected = expected.expose().as_bytes();
    // Every candidate is compared in full, in constant time, so the timing
    // reveals neither which part nor how much of a token was right.
    let all_match = candidates.iter().fold(true, |ok, c| ok & bool::from(c.ct_eq(expected)));
    if all_match { Ok(()) } else { Err(AuthError::Wrong) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("s3cret")
    }

    #[test]
    fn header_and_query_tokens() {
        assert_eq!(check(Some(b"Bearer s3cret"), None, &secret()), Ok(()));
        assert_eq!(check(None, Some("s3cret"), &secret()), Ok(()));
        assert_eq!(check(Some(b"Bearer s3cret"), Some("s3cret"), &secret()), Ok(()));
    }

    #[test]
    fn missing_and_wrong_tokens() {
        assert_eq!(check(None, None, &secret()), Err(AuthError::Missing));
        assert_eq!(check(Some(b"Bearer nope"), None, &secret()), Err(AuthError::Wrong));
        assert_eq!(check(Some(b"Bearer s3cre"), None, &secret()), Err(AuthError::Wrong));
        assert_eq!(check(Some(b"Bearer s3crett"), None, &secret()), Err(AuthError::Wrong));
        assert_eq!(check(Some(b"Bearer "), None, &secret()), Err(AuthError::Wrong));
        assert_eq!(check(Some(b"Basic s3cret"), None, &secret()), Err(AuthError::Wrong));
        assert_eq!(check(None, Some("nope"), &secret()), Err(AuthError::Wrong));
        // Header right, query wrong: refuse rather than pick one.
        assert_eq!(check(Some(b"Bearer s3cret"), Some("nope"), &secret()), Err(AuthError::Wrong));
    }
}
