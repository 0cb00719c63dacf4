//! Turns verified JWT claims into an [`Identity`]: `sub` is the user id; the username falls
//! back from `username` to `preferred_username`, `name`, then `sub`; the role from `role` to
//! the first of `roles`, then `USER`; `rooms`, when present, lists the rooms the token grants
//! ([`RoomGrants`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::AuthError;
use super::grants::RoomGrants;

/// Role given to a token that names none.
pub const DEFAULT_ROLE: &str = "USER";

/// Who a caller is, as established by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Stable user id (`sub`).
    pub user_id: Arc<str>,
    /// Display name.
    pub username: Arc<str>,
    /// The role used for role routing and admin checks.
    pub role: Arc<str>,
    /// When the token expires (`exp`, seconds since the epoch): a live connection ends then
    /// (plus `JWT_LEEWAY_SECS`) unless it refreshes its token.
    pub exp: u64,
    /// When the token was issued (`iat`), if it says: a revocation refuses tokens issued
    /// before it, and a token without `iat` once its user has been revoked.
    pub iat: Option<u64>,
    /// The `rooms` claim: `None` when the token has none (then `ROOM_JOIN_DEFAULT` alone
    /// decides), else the only rooms it may join.
    pub grants: Option<Arc<RoomGrants>>,
}

/// The claims switchboard reads; everything else in the token is ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Preferred display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// OpenID Connect display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// Full name, the last fallback before `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Several roles; the first is used when `role` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Expiry (seconds since the epoch), checked by the verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Issuer, checked where configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, checked where configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Rooms granted: patterns, or `{ "room": pattern, "publish": false }` entries. Read as
    /// any JSON so that a malformed claim is refused with a sentence naming it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<serde_json::Value>,
}

/// Longest user id, username or role accepted from a token: they end up in every frame.
const MAX_CLAIM_CHARS: usize = 256;

impl TryFrom<Claims> for Identity {
    type Error = AuthError;

    fn try_from(c: Claims) -> Result<Self, AuthError> {
        let sub = c
            .sub
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| AuthError::BadClaim("missing claim \"sub\"".into()))?;
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
        let username = non_empty(&c.username)
            .or_else(|| non_empty(&c.preferred_username))
            .or_else(|| non_empty(&c.name))
            .unwrap_or_else(|| sub.clone());
        let role = non_empty(&c.role)
            .or_else(|| {
                c.roles
                    .and_then(|r| r.into_iter().find(|r| !r.trim().is_empty()))
            })
            .unwrap_or_else(|| DEFAULT_ROLE.to_string());
        for (claim, value) in [("sub", &sub), ("username", &username), ("role", &role)] {
            if value.chars().count() > MAX_CLAIM_CHARS {
                return Err(AuthError::BadClaim(format!(
                    "claim {claim:?} is longer than {MAX_CLAIM_CHARS} characters"
                )));
            }
        }
        Ok(Identity {
            user_id: sub.into(),
            username: username.into(),
            role: role.into(),
            exp: c
                .exp
                .ok_or_else(|| AuthError::BadClaim("missing claim \"exp\"".into()))?,
            iat: c.iat,
            grants: match &c.rooms {
                // `"rooms": null` says nothing, like an absent claim.
                None | Some(serde_json::Value::Null) => None,
                Some(rooms) => Some(Arc::new(RoomGrants::from_claim(rooms)?)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_and_role_fall_back_in_the_documented_order() {
        let id = Identity::try_from(Claims {
            sub: Some("u1".into()),
            name: Some("Full".into()),
            preferred_username: Some("pref".into()),
            roles: Some(vec!["EDITOR".into(), "X".into()]),
            exp: Some(1),
            ..Claims::default()
        })
        .expect("valid");
        assert_eq!(&*id.username, "pref");
        assert_eq!(&*id.role, "EDITOR");

        let bare = Identity::try_from(Claims {
            sub: Some("u2".into()),
            exp: Some(1),
            ..Claims::default()
        })
        .expect("valid");
        assert_eq!(&*bare.username, "u2");
        assert_eq!(&*bare.role, DEFAULT_ROLE);
    }

    #[test]
    fn a_token_without_sub_is_refused() {
        assert!(Identity::try_from(Claims::default()).is_err());
    }
}
