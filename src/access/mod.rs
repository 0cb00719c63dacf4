//! Who may go where: the rules the hub asks before a user joins a room, posts in it or
//! broadcasts to everyone, and which history a member replays. They are made of the room
//! policies ([`policy`], written in the `ROOM_POLICIES` file, [`file`]), the token's `rooms`
//! claim, memberships the application added (server-side members), `ADMIN_ROLES` and
//! `BROADCAST_ROLES`. Decisions here are pure: the hub asks under its lock, for every live
//! room message too. A policy that asks the application (`"join": "hook"`) answers
//! [`JoinVerdict::AskHook`]; the caller asks the hook ([`hook`]) outside the lock and comes
//! back.
//!
//! The token consulted is the user's newest (the one the hub's user entry holds): a
//! membership belongs to the user, not to a connection, so the token most recently presented
//! decides for all of them.

pub mod file;
pub mod hook;
mod hook_cache;
pub mod policy;

use std::sync::Arc;

use crate::auth::{Access, Identity};
use crate::config::Settings;
use crate::store::JoinedHow;

pub use file::PolicyFileError;
pub use hook::JoinHook;
pub use policy::{History, JoinRule, Policies, PostRule};

/// Why the access settings were refused at start (and by `switchboard check-config`).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    PolicyFile(#[from] PolicyFileError),
    #[error("{0}")]
    Hook(String),
}

/// The policy table of `settings`: the `ROOM_POLICIES` file closed by `ROOM_JOIN_DEFAULT`, or
/// that default alone. A table that asks the join hook needs `JOIN_HOOK_URL` and
/// `JOIN_HOOK_SECRET` (a Standard Webhooks secret).
pub fn load_policies(settings: &Settings) -> Result<Policies, AccessError> {
    let access = &settings.access;
    let policies = match &access.policies_file {
        Some(path) => file::load(path, access.join_default)?,
        None => Policies::new(Vec::new(), access.join_default),
    };
    if policies.uses_hook() && access.join_hook_url.is_none() {
        return Err(AccessError::Hook(
            "ROOM_POLICIES has a policy with \"join\": \"hook\" but JOIN_HOOK_URL is not set"
                .into(),
        ));
    }
    if access.join_hook_url.is_some() && access.join_hook_secret.is_none() {
        return Err(AccessError::Hook(
            "JOIN_HOOK_URL is set without JOIN_HOOK_SECRET: the hook's requests are signed".into(),
        ));
    }
    if let Some(secret) = &access.join_hook_secret {
        hook::parse_secret(secret)?;
    }
    Ok(policies)
}

/// What the rules say of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinVerdict {
    Allowed,
    Refused,
    /// The room's policy asks the application's join hook.
    AskHook,
}

/// The access rules of this node.
#[derive(Debug, Clone, Default)]
pub struct RoomAccess {
    /// The room policies, first match wins.
    pub policies: Arc<Policies>,
    /// Roles that go anywhere and may always broadcast.
    pub admin_roles: Vec<Arc<str>>,
    /// Roles whose clients may broadcast to everyone; empty: anyone.
    pub broadcast_roles: Vec<Arc<str>>,
}

impl RoomAccess {
    /// The rules of `settings` over `policies` (read from `ROOM_POLICIES` by the caller, or
    /// `ROOM_JOIN_DEFAULT` alone).
    pub fn new(settings: &Settings, policies: Policies) -> Self {
        let roles = |list: &[String]| list.iter().map(|r| Arc::from(r.as_str())).collect();
        Self {
            policies: Arc::new(policies),
            admin_roles: roles(&settings.admin_roles),
            broadcast_roles: roles(&settings.access.broadcast_roles),
        }
    }

    /// The rules of `settings` with no policy file: every room follows `ROOM_JOIN_DEFAULT`.
    pub fn from_settings(settings: &Settings) -> Self {
        Self::new(
            settings,
            Policies::new(Vec::new(), settings.access.join_default),
        )
    }

    fn is_admin(&self, identity: &Identity) -> bool {
        self.admin_roles.contains(&identity.role)
    }

    /// Whether `identity` may join `room`. `server_member`: the application made the user a
    /// member (REST, the embedded API), which lets it in whatever the rule says.
    pub fn join(&self, identity: &Identity, room: &str, server_member: bool) -> JoinVerdict {
        if server_member || self.is_admin(identity) {
            return JoinVerdict::Allowed;
        }
        let granted = identity.grants.as_ref().map(|g| g.grant(room).is_some());
        // A token that lists rooms is held to them under every rule.
        if granted == Some(false) {
            return JoinVerdict::Refused;
        }
        let allowed = match &self.policies.of(room).join {
            JoinRule::Anyone => true,
            JoinRule::Token => granted == Some(true),
            JoinRule::Roles(roles) => roles.contains(&identity.role),
            JoinRule::Members => false,
            JoinRule::Hook => return JoinVerdict::AskHook,
        };
        if allowed {
            JoinVerdict::Allowed
        } else {
            JoinVerdict::Refused
        }
    }

    /// Whether a stored membership of `identity` in `room` still holds (checked when a
    /// connection opens and when its token is renewed). A room whose policy asks the hook
    /// keeps the members the hook let in: it is asked at join, not at every reconnect.
    pub fn may_stay(&self, identity: &Identity, room: &str, server_member: bool) -> bool {
        self.join(identity, room, server_member) != JoinVerdict::Refused
    }

    /// Whether member `identity` may post in `room`: the policy's post rule, and a token's
    /// read-only grant of the room forbids it.
    pub fn may_post(&self, identity: &Identity, room: &str) -> bool {
        let policy = self.policies.of(room);
        if policy.post == PostRule::Server {
            return false;
        }
        if self.is_admin(identity) {
            return true;
        }
        let read_only = identity
            .grants
            .as_ref()
            .is_some_and(|g| g.grant(room) == Some(Access::ReadOnly));
        !read_only
            && match &policy.post {
                PostRule::Members => true,
                PostRule::Roles(roles) => roles.contains(&identity.role),
                PostRule::Server => false,
            }
    }

    /// Whether `identity` may send to everyone (`send-message` without `to`).
    pub fn may_broadcast(&self, identity: &Identity) -> bool {
        self.broadcast_roles.is_empty()
            || self.broadcast_roles.contains(&identity.role)
            || self.is_admin(identity)
    }

    /// Which of `room`'s history a member replays.
    pub fn history(&self, room: &str) -> History {
        self.policies.of(room).history
    }

    /// How a membership that starts `at` is stored: whether the application made it, and,
    /// in a room whose policy says `since_join`, the time its history starts.
    pub fn joined_how(&self, room: &str, at: &str, by_server: bool) -> JoinedHow {
        JoinedHow {
            by_server,
            history_from: (self.history(room) == History::SinceJoin).then(|| at.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::grants::RoomGrants;
    use crate::config::RoomJoinDefault;
    use policy::RoomPolicy;

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

    fn rules(join_default: RoomJoinDefault, rows: Vec<RoomPolicy>) -> RoomAccess {
        RoomAccess {
            policies: Arc::new(Policies::new(rows, join_default)),
            admin_roles: vec!["ADMIN".into()],
            broadcast_roles: Vec::new(),
        }
    }

    #[test]
    fn the_claim_binds_in_both_modes_admins_go_anywhere_and_token_mode_needs_a_grant() {
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
        for (join_default, identity, room, join, post, why) in cases {
            let access = rules(join_default, Vec::new());
            let verdict = access.join(&identity, room, false);
            assert_eq!(verdict == JoinVerdict::Allowed, join, "join: {why}");
            // Posting is asked of members only; the rule itself is what is tested here.
            if join {
                assert_eq!(access.may_post(&identity, room), post, "post: {why}");
            }
        }
    }

    #[test]
    fn each_policy_rule_decides_for_its_rooms() {
        let row = |pattern: &str, join, post, history| RoomPolicy {
            pattern: pattern.into(),
            join,
            post,
            history,
            implicit: false,
        };
        let staff: Vec<Arc<str>> = vec!["STAFF".into()];
        let access = rules(
            RoomJoinDefault::Anyone,
            vec![
                row(
                    "ticket-*",
                    JoinRule::Members,
                    PostRule::Members,
                    History::SinceJoin,
                ),
                row(
                    "news",
                    JoinRule::Anyone,
                    PostRule::Roles(staff.clone()),
                    History::All,
                ),
                row(
                    "staff-*",
                    JoinRule::Roles(staff),
                    PostRule::Members,
                    History::All,
                ),
                row("alerts", JoinRule::Anyone, PostRule::Server, History::All),
                row("match-*", JoinRule::Hook, PostRule::Members, History::All),
            ],
        );
        let (user, staff, admin) = (
            token("USER", None),
            token("STAFF", None),
            token("ADMIN", None),
        );
        assert_eq!(access.join(&user, "ticket-1", false), JoinVerdict::Refused);
        assert_eq!(
            access.join(&user, "ticket-1", true),
            JoinVerdict::Allowed,
            "added"
        );
        assert_eq!(access.history("ticket-1"), History::SinceJoin);
        assert_eq!(access.join(&user, "news", false), JoinVerdict::Allowed);
        assert!(!access.may_post(&user, "news"), "announcements: staff only");
        assert!(access.may_post(&staff, "news"));
        assert_eq!(
            access.join(&user, "staff-room", false),
            JoinVerdict::Refused
        );
        assert_eq!(
            access.join(&staff, "staff-room", false),
            JoinVerdict::Allowed
        );
        assert!(
            !access.may_post(&admin, "alerts"),
            "server-only: no client at all"
        );
        assert_eq!(access.join(&user, "match-7", false), JoinVerdict::AskHook);
        assert!(
            access.may_stay(&user, "match-7", false),
            "the hook let it in at join"
        );
        assert_eq!(access.join(&user, "general", false), JoinVerdict::Allowed);
        let claimed = token("USER", Some(serde_json::json!(["team-*"])));
        assert_eq!(
            access.join(&claimed, "match-7", false),
            JoinVerdict::Refused,
            "a claim that does not grant the room binds before the hook is asked"
        );
    }

    #[test]
    fn broadcasts_are_limited_to_the_listed_roles_and_admins() {
        let mut access = rules(RoomJoinDefault::Anyone, Vec::new());
        assert!(
            access.may_broadcast(&token("USER", None)),
            "the seed's rule"
        );
        access.broadcast_roles = vec!["STAFF".into()];
        assert!(!access.may_broadcast(&token("USER", None)));
        assert!(access.may_broadcast(&token("STAFF", None)));
        assert!(access.may_broadcast(&token("ADMIN", None)));
    }
}
