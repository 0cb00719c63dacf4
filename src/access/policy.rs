//! Room policies: by room-name pattern, who may join a room, who may post in it and which of
//! its history a member replays. The operator writes them as a JSON file (`ROOM_POLICIES`,
//! read by [`super::file`]); the first policy whose pattern matches a room decides for it, and
//! a catch-all made of `ROOM_JOIN_DEFAULT` closes the table when the file does not end with
//! `*`. Patterns are the `rooms` claim's (`*` matches any run of characters, nothing else is
//! special): one syntax for operators and tokens.

use std::fmt;
use std::sync::Arc;

use crate::auth::grants::pattern_matches;
use crate::config::RoomJoinDefault;

/// Who may join the rooms of a policy (and stay in them: memberships are checked again when
/// a connection opens and when a token is renewed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRule {
    /// Any user (a token carrying a `rooms` claim is still held to it).
    Anyone,
    /// Tokens whose `rooms` claim grants the room.
    Token,
    /// Users with one of these roles (a token's `rooms` claim still binds).
    Roles(Vec<Arc<str>>),
    /// Only members the application added (REST, the embedded API); `join-room` is refused.
    Members,
    /// The application's join hook decides (`JOIN_HOOK_URL`).
    Hook,
}

/// Who may post in the rooms of a policy (always members only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostRule {
    /// Any member (whose token's grant of the room is not read-only).
    Members,
    /// Members with one of these roles: announcement rooms.
    Roles(Vec<Arc<str>>),
    /// No client: only the server (REST, the embedded API).
    Server,
}

/// Which stored messages of a room a member replays (`sync`, catch-up, the REST listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum History {
    /// Everything the room still holds.
    #[default]
    All,
    /// Only what was stored since the member joined.
    SinceJoin,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPolicy {
    /// `*` matches any run of characters.
    pub pattern: String,
    pub join: JoinRule,
    pub post: PostRule,
    pub history: History,
    /// Whether the row comes from `ROOM_JOIN_DEFAULT` rather than the file.
    pub implicit: bool,
}

impl RoomPolicy {
    /// The catch-all of `ROOM_JOIN_DEFAULT`.
    pub fn catch_all(join_default: RoomJoinDefault) -> Self {
        Self {
            pattern: "*".into(),
            join: match join_default {
                RoomJoinDefault::Anyone => JoinRule::Anyone,
                RoomJoinDefault::Token => JoinRule::Token,
            },
            post: PostRule::Members,
            history: History::All,
            implicit: true,
        }
    }
}

/// The policies of a gateway, first match wins; never empty, the last row matches every room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies(Vec<RoomPolicy>);

impl Default for Policies {
    fn default() -> Self {
        Self::new(Vec::new(), RoomJoinDefault::default())
    }
}

impl Policies {
    /// The table of `rows`, closed by `join_default`'s catch-all unless the last row already
    /// matches everything.
    pub fn new(mut rows: Vec<RoomPolicy>, join_default: RoomJoinDefault) -> Self {
        if rows.last().is_none_or(|last| last.pattern != "*") {
            rows.push(RoomPolicy::catch_all(join_default));
        }
        Self(rows)
    }

    /// The policy of `room`: the first row whose pattern matches it.
    pub fn of(&self, room: &str) -> &RoomPolicy {
        self.0
            .iter()
            .find(|p| pattern_matches(&p.pattern, room))
            .unwrap_or_else(|| {
                // `new` closes the table with `*`, which matches every name.
                self.0.last().expect("a table of policies is never empty")
            })
    }

    pub fn rows(&self) -> &[RoomPolicy] {
        &self.0
    }

    /// Whether any room's join rule asks the application (then `JOIN_HOOK_URL` is needed).
    pub fn uses_hook(&self) -> bool {
        self.0.iter().any(|p| p.join == JoinRule::Hook)
    }
}

impl fmt::Display for JoinRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anyone => f.write_str("anyone"),
            Self::Token => f.write_str("token"),
            Self::Roles(roles) => write!(f, "roles {}", roles.join(",")),
            Self::Members => f.write_str("members"),
            Self::Hook => f.write_str("hook"),
        }
    }
}

impl fmt::Display for PostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Members => f.write_str("members"),
            Self::Roles(roles) => write!(f, "roles {}", roles.join(",")),
            Self::Server => f.write_str("server"),
        }
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::All => "all",
            Self::SinceJoin => "since_join",
        })
    }
}

/// The effective table, one line per policy, as `switchboard check-config` prints it.
impl fmt::Display for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .0
            .iter()
            .map(|p| p.pattern.len())
            .max()
            .unwrap_or(1)
            .max(7);
        writeln!(
            f,
            "{:<width$}  {:<20}  {:<20}  history",
            "pattern", "join", "post"
        )?;
        for p in &self.0 {
            let origin = if p.implicit {
                "  (ROOM_JOIN_DEFAULT)"
            } else {
                ""
            };
            writeln!(
                f,
                "{:<width$}  {:<20}  {:<20}  {}{origin}",
                p.pattern,
                p.join.to_string(),
                p.post.to_string(),
                p.history
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pattern: &str, join: JoinRule) -> RoomPolicy {
        RoomPolicy {
            pattern: pattern.into(),
            join,
            post: PostRule::Members,
            history: History::All,
            implicit: false,
        }
    }

    #[test]
    fn the_first_matching_row_decides_and_the_default_closes_the_table() {
        let table = Policies::new(
            vec![
                row("ticket-*", JoinRule::Members),
                row("ticket-public", JoinRule::Anyone),
                row("team-*", JoinRule::Token),
            ],
            RoomJoinDefault::Token,
        );
        assert_eq!(table.of("ticket-public").join, JoinRule::Members);
        assert_eq!(table.of("team-1").join, JoinRule::Token);
        assert_eq!(table.of("general").join, JoinRule::Token);
        assert!(table.of("general").implicit);
        assert_eq!(table.rows().len(), 4);

        let closed = Policies::new(vec![row("*", JoinRule::Hook)], RoomJoinDefault::Anyone);
        assert_eq!(
            closed.rows().len(),
            1,
            "a file ending with * needs no default"
        );
        assert!(closed.uses_hook());
    }
}
