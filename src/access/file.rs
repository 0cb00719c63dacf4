//! The policy file (`ROOM_POLICIES`): JSON, read once at start and by `switchboard
//! check-config`. JSON because the gateway already speaks it and an application can generate
//! it; every field is checked, and an error names the row and what is wrong with it.
//!
//! ```json
//! { "rooms": [
//!     { "match": "ticket-*", "join": "members", "history": "since_join" },
//!     { "match": "announcements", "join": "anyone", "post": { "roles": ["ADMIN", "EDITOR"] } },
//!     { "match": "team-*", "join": "token" },
//!     { "match": "match-*", "join": "hook" },
//!     { "match": "*", "join": "anyone" }
//! ] }
//! ```

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::policy::{History, JoinRule, Policies, PostRule, RoomPolicy};
use crate::config::RoomJoinDefault;

/// Longest pattern (room names are at most 64 characters).
const MAX_PATTERN_CHARS: usize = 128;
/// Most rows: every join walks them until one matches.
const MAX_ROWS: usize = 1000;

/// Why the policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("cannot read the room policy file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("room policy file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    rooms: Vec<Row>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    #[serde(rename = "match")]
    pattern: String,
    #[serde(default)]
    join: Option<Rule>,
    #[serde(default)]
    post: Option<Rule>,
    #[serde(default)]
    history: Option<String>,
}

/// A rule as written: a word, or `{ "roles": [...] }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Rule {
    Word(String),
    Roles(RolesRule),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesRule {
    roles: Vec<String>,
}

/// Reads and checks the file at `path`; the table is closed by `join_default`'s catch-all.
pub fn load(path: &Path, join_default: RoomJoinDefault) -> Result<Policies, PolicyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, join_default).map_err(|reason| PolicyFileError::Invalid {
        path: path.display().to_string(),
        reason,
    })
}

/// Checks the text of a policy file.
pub fn parse(text: &str, join_default: RoomJoinDefault) -> Result<Policies, String> {
    let body: FileBody = serde_json::from_str(text).map_err(|e| {
        format!("{e} (expected {{\"rooms\": [{{\"match\": pattern, \"join\", \"post\", \"history\"}}, ...]}})")
    })?;
    if body.rooms.len() > MAX_ROWS {
        return Err(format!("more than {MAX_ROWS} policies"));
    }
    let rows = body
        .rooms
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            let pattern = row.pattern.clone();
            row_policy(row).map_err(|why| format!("policy {} ({pattern:?}): {why}", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(i) = rows.iter().position(|r| r.pattern == "*")
        && i + 1 < rows.len()
    {
        return Err(format!(
            "policy {} matches every room (\"*\"), so the {} after it would never apply",
            i + 1,
            rows.len() - i - 1
        ));
    }
    Ok(Policies::new(rows, join_default))
}

fn row_policy(row: Row) -> Result<RoomPolicy, String> {
    let chars = row.pattern.chars().count();
    if row.pattern.trim().is_empty() || chars > MAX_PATTERN_CHARS {
        return Err(format!(
            "\"match\" must be a pattern of 1 to {MAX_PATTERN_CHARS} characters"
        ));
    }
    let join = match row.join {
        None => JoinRule::Anyone,
        Some(Rule::Word(word)) => match word.as_str() {
            "anyone" => JoinRule::Anyone,
            "token" => JoinRule::Token,
            "members" => JoinRule::Members,
            "hook" => JoinRule::Hook,
            other => {
                return Err(format!(
                    "\"join\" is {other:?}; expected \"anyone\", \"token\", \"members\", \"hook\" or {{\"roles\": [...]}}"
                ));
            }
        },
        Some(Rule::Roles(rule)) => JoinRule::Roles(roles(rule, "join")?),
    };
    let post = match row.post {
        None => PostRule::Members,
        Some(Rule::Word(word)) => match word.as_str() {
            "members" => PostRule::Members,
            "server" => PostRule::Server,
            other => {
                return Err(format!(
                    "\"post\" is {other:?}; expected \"members\", \"server\" or {{\"roles\": [...]}}"
                ));
            }
        },
        Some(Rule::Roles(rule)) => PostRule::Roles(roles(rule, "post")?),
    };
    let history = match row.history.as_deref() {
        None | Some("all") => History::All,
        Some("since_join") => History::SinceJoin,
        Some(other) => {
            return Err(format!(
                "\"history\" is {other:?}; expected \"all\" or \"since_join\""
            ));
        }
    };
    Ok(RoomPolicy {
        pattern: row.pattern,
        join,
        post,
        history,
        implicit: false,
    })
}

fn roles(rule: RolesRule, field: &str) -> Result<Vec<Arc<str>>, String> {
    if rule.roles.is_empty() || rule.roles.iter().any(|r| r.trim().is_empty()) {
        return Err(format!(
            "\"{field}\": {{\"roles\": [...]}} needs at least one non-empty role"
        ));
    }
    Ok(rule.roles.iter().map(|r| Arc::from(r.as_str())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_reads_as_written() {
        let table = parse(
            r#"{ "rooms": [
                { "match": "ticket-*", "join": "members", "history": "since_join" },
                { "match": "announcements", "post": { "roles": ["ADMIN", "EDITOR"] } },
                { "match": "team-*", "join": "token" },
                { "match": "staff-*", "join": { "roles": ["STAFF"] }, "post": "server" },
                { "match": "match-*", "join": "hook" }
            ] }"#,
            RoomJoinDefault::Anyone,
        )
        .expect("valid file");
        let rows = table.rows();
        assert_eq!(rows.len(), 6, "closed by the default");
        assert_eq!(rows[0].join, JoinRule::Members);
        assert_eq!(rows[0].history, History::SinceJoin);
        assert_eq!(rows[1].join, JoinRule::Anyone);
        assert_eq!(
            rows[1].post,
            PostRule::Roles(vec!["ADMIN".into(), "EDITOR".into()])
        );
        assert_eq!(rows[3].post, PostRule::Server);
        assert_eq!(rows[4].join, JoinRule::Hook);
        assert!(rows[5].implicit);
        let printed = table.to_string();
        assert!(printed.contains("ticket-*") && printed.contains("(ROOM_JOIN_DEFAULT)"));
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_row_and_the_field() {
        let cases = [
            (
                r#"{"rooms": [{"match": "a", "join": "everyone"}]}"#,
                "\"join\"",
            ),
            (
                r#"{"rooms": [{"match": "a", "post": "anyone"}]}"#,
                "\"post\"",
            ),
            (
                r#"{"rooms": [{"match": "a", "history": "recent"}]}"#,
                "\"history\"",
            ),
            (
                r#"{"rooms": [{"match": "", "join": "anyone"}]}"#,
                "\"match\"",
            ),
            (
                r#"{"rooms": [{"match": "a", "join": {"roles": []}}]}"#,
                "roles",
            ),
            (r#"{"rooms": [{"match": "a", "jion": "anyone"}]}"#, "jion"),
            (
                r#"{"rooms": [{"match": "*"}, {"match": "a"}]}"#,
                "never apply",
            ),
            (r#"[]"#, "expected"),
        ];
        for (text, needle) in cases {
            let err = parse(text, RoomJoinDefault::Anyone).expect_err(text);
            assert!(err.contains(needle), "{err:?} should name {needle}");
        }
    }
}
