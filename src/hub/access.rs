//! Who may be in a room and post in it, from the token's `rooms` claim, `ROOM_JOIN_DEFAULT`
//! and `ADMIN_ROLES`. The hub asks here at `join-room`, when a connection opens or renews its
//! token (stored memberships the token no longer grants are dropped), and in the access step
//! of the recipient rule (`State::may_send`) for every live room message. The token consulted
//! is the user's newest (the one the user's entry holds): a membership belongs to the user,
//! not to a connection, so the token most recently presented decides for all of them.

use std::sync::Arc;

use crate::auth::{Access, Identity};
use crate::config::{RoomJoinDefault, Settings};
use crate::protocol::payloads::RoomName;

/// The access rules of this node.
#[derive(Debug, Clone, Default)]
pub struct RoomAccess {
    /// The rule for a token without a `rooms` claim.
    pub join_default: RoomJoinDefault,
    /// Roles that go anywhere.
    pub admin_roles: Vec<Arc<str>>,
}

impl RoomAccess {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            join_default: settings.room_join_default,
            admin_roles: settings
                .admin_roles
                .iter()
                .map(|r| Arc::from(r.as_str()))
                .collect(),
        }
    }

    /// What the holder of `identity` may do in `room`: `None` when it may not be in it.
    /// Server-side members (added by the application) are to be let in here too, once they
    /// exist.
    fn access(&self, identity: &Identity, room: &RoomName) -> Option<Access> {
        if self.admin_roles.contains(&identity.role) {
            return Some(Access::ReadWrite);
        }
        match (&identity.grants, self.join_default) {
            // A token that lists rooms grants only those, whatever the default.
            (Some(grants), _) => grants.grant(room.as_str()),
            (None, RoomJoinDefault::Anyone) => Some(Access::ReadWrite),
            (None, RoomJoinDefault::Token) => None,
        }
    }

    /// Whether `identity` may join (or stay in) `room`.
    pub fn may_join(&self, identity: &Identity, room: &RoomName) -> bool {
        self.access(identity, room).is_some()
    }

    /// Whether `identity` may post in `room` (a read-only grant may not).
    pub fn may_post(&self, identity: &Identity, room: &RoomName) -> bool {
        self.access(identity, room) == Some(Access::ReadWrite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::grants::RoomGrants;

    fn token(role: &str, rooms: Option<serde_json::Value>) -> Identity {
        Identity {
            user_id: "u".into(),
            username: "u".into(),
            role: role.into(),
            exp: u64::MAX,
            iat: None,
            grants: rooms.map(|r| Arc::new(RoomGrants::from_claim(&r).expect("valid claim"))),
        }
    }

    #[test]
    fn the_claim_binds_in_both_modes_admins_go_anywhere_and_token_mode_needs_a_grant() {
        let room = |name| RoomName::parse(name).expect("valid room name");
        let team = Some(serde_json::json!(["team-42:*", {"room": "news", "publish": false}]));
        let (anyone, token_only) = (RoomJoinDefault::Anyone, RoomJoinDefault::Token);
        #[rustfmt::skip]
        let cases = [
            (anyone, token("USER", None), "general", true, true, "the seed's rule"),
            (token_only, token("USER", None), "general", false, false, "no claim, no room"),
            (anyone, token("USER", team.clone()), "general", false, false, "a claim binds"),
            (token_only, token("USER", team.clone()), "team-42:alpha", true, true, "granted"),
            (token_only, token("USER", team.clone()), "team-43:x", false, false, "not granted"),
            (token_only, token("USER", team.clone()), "news", true, false, "read-only"),
            (token_only, token("ADMIN", None), "anything", true, true, "an admin"),
            (anyone, token("ADMIN", team.clone()), "general", true, true, "an admin's claim"),
        ];
        for (join_default, identity, name, join, post, why) in cases {
            let access = RoomAccess {
                join_default,
                admin_roles: vec!["ADMIN".into()],
            };
            assert_eq!(access.may_join(&identity, &room(name)), join, "join: {why}");
            assert_eq!(access.may_post(&identity, &room(name)), post, "post: {why}");
        }
    }
}
