//! [`Revocations`]: per user, the first `iat` still accepted. An operator's revoke
//! (`POST /websocket/users/{id}/revoke`) sets it to the second after the call, so every
//! token of that user issued up to then is refused wherever a token is verified: on connect
//! (both transports), on `refresh-token` and on REST calls. The store keeps it; the
//! [`Verifier`](super::Verifier) holds this copy, loaded at start.
//!
//! `iat` has one-second resolution, so a token issued in the very second of the revoke is
//! refused too (it cannot be told apart from one issued just before). A token without `iat`
//! cannot show when it was issued: once its user has been revoked, it is refused.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{AuthError, Identity};

/// The users whose older tokens are refused; cheap to clone (one shared map).
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    /// User id → the first `iat` accepted. A std lock: held for a map lookup or insert only,
    /// never across an `.await`.
    not_before: Arc<RwLock<HashMap<Arc<str>, u64>>>,
}

impl Revocations {
    /// Refuses `user_id`'s tokens issued before `not_before` (seconds since the epoch). A
    /// later revoke only moves the bound forward; whether this one did (a cluster node
    /// reloading revocations learns which it had missed).
    pub fn revoke(&self, user_id: &str, not_before: u64) -> bool {
        let mut map = self
            .not_before
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bound = map.entry(Arc::from(user_id)).or_insert(0);
        let moved = not_before > *bound;
        *bound = (*bound).max(not_before);
        moved
    }

    /// Whether `identity`'s token was issued before its user's revocation.
    pub fn refuses(&self, identity: &Identity) -> bool {
        let map = self
            .not_before
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match map.get(&identity.user_id) {
            None => false,
            Some(&not_before) => identity.iat.is_none_or(|iat| iat < not_before),
        }
    }

    /// `Err(Revoked)` when [`Revocations::refuses`].
    pub fn check(&self, identity: &Identity) -> Result<(), AuthError> {
        if self.refuses(identity) {
            Err(AuthError::Revoked)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_of(user: &str, iat: Option<u64>) -> Identity {
        Identity {
            user_id: user.into(),
            username: user.into(),
            role: "USER".into(),
            exp: u64::MAX,
            iat,
            grants: None,
        }
    }

    #[test]
    fn tokens_issued_before_the_bound_or_without_iat_are_refused_for_that_user_only() {
        let revocations = Revocations::default();
        revocations.revoke("alice", 100);
        let cases = [
            ("alice", Some(99), true, "issued before the revoke"),
            ("alice", None, true, "no iat: cannot show it is newer"),
            ("alice", Some(100), false, "issued at the bound"),
            ("alice", Some(150), false, "issued after"),
            ("bob", Some(1), false, "another user"),
            ("bob", None, false, "another user, no iat"),
        ];
        for (user, iat, refused, why) in cases {
            assert_eq!(revocations.refuses(&token_of(user, iat)), refused, "{why}");
        }
    }

    #[test]
    fn a_later_revoke_never_moves_the_bound_back() {
        let revocations = Revocations::default();
        assert!(revocations.revoke("alice", 200), "moved");
        assert!(!revocations.revoke("alice", 100), "not moved");
        assert!(!revocations.revoke("alice", 200), "already there");
        assert!(revocations.refuses(&token_of("alice", Some(150))));
    }
}
