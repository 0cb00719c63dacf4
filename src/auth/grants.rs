//! The `rooms` claim: the rooms a token grants, each as a pattern where `*` matches any run of
//! characters (none included) and every other character stands for itself, optionally
//! read-only (`{ "room": pattern, "publish": false }`). The matcher is written here rather than
//! taken from a glob crate because globs also give `?`, `[...]` and `**` meanings that room
//! names (which may contain none of them today, but an application's patterns could) must not
//! silently acquire.

use serde_json::Value;

use super::AuthError;

/// Longest pattern accepted (room names are at most 64 characters; a pattern may spell a
/// literal prefix plus stars).
const MAX_PATTERN_CHARS: usize = 128;
/// Most entries in one claim: every join and post walks them.
const MAX_ENTRIES: usize = 256;

/// One entry of the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomGrant {
    pub pattern: String,
    /// Whether the holder may post in the rooms it matches (`false`: read-only).
    pub publish: bool,
}

/// The rooms a token grants, in the claim's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomGrants(Vec<RoomGrant>);

impl RoomGrants {
    /// Reads the claim's value; anything but a list of patterns and `{room, publish?}` objects
    /// refuses the token, naming the claim and the entry.
    pub fn from_claim(value: &Value) -> Result<Self, AuthError> {
        let bad = |why: String| AuthError::BadClaim(format!("claim \"rooms\" {why}"));
        let Value::Array(entries) = value else {
            return Err(bad("must be a list of room patterns".into()));
        };
        if entries.len() > MAX_ENTRIES {
            return Err(bad(format!("has more than {MAX_ENTRIES} entries")));
        }
        let grants = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let (pattern, publish) = match entry {
                    Value::String(pattern) => (pattern, true),
                    Value::Object(fields) => {
                        if let Some(other) = fields.keys().find(|k| *k != "room" && *k != "publish")
                        {
                            return Err(bad(format!("entry {i} has an unknown field {other:?}")));
                        }
                        let Some(Value::String(pattern)) = fields.get("room") else {
                            return Err(bad(format!("entry {i} needs a string \"room\"")));
                        };
                        let publish = match fields.get("publish") {
                            None => true,
                            Some(Value::Bool(publish)) => *publish,
                            Some(_) => {
                                return Err(bad(format!(
                                    "entry {i}: \"publish\" must be a boolean"
                                )));
                            }
                        };
                        (pattern, publish)
                    }
                    _ => {
                        return Err(bad(format!(
                            "entry {i} must be a pattern or {{\"room\", \"publish\"}}"
                        )));
                    }
                };
                let chars = pattern.chars().count();
                if pattern.trim().is_empty() || chars > MAX_PATTERN_CHARS {
                    return Err(bad(format!(
                        "entry {i} must be a pattern of 1 to {MAX_PATTERN_CHARS} characters"
                    )));
                }
                Ok(RoomGrant {
                    pattern: pattern.clone(),
                    publish,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self(grants))
    }

    /// Whether the claim grants `room`, and then whether it may be posted in: any matching
    /// entry that allows posting allows it (entries add up, none takes away).
    pub fn grant(&self, room: &str) -> Option<Access> {
        let mut matched = self
            .0
            .iter()
            .filter(|g| pattern_matches(&g.pattern, room))
            .peekable();
        matched.peek()?;
        Some(if matched.any(|g| g.publish) {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        })
    }

    /// The claim as a token writes it: a pattern for a read-write entry, `{room, publish:
    /// false}` for a read-only one (the join hook forwards it; `from_claim` reads it back).
    pub fn to_claim(&self) -> Value {
        self.0
            .iter()
            .map(|g| {
                if g.publish {
                    Value::String(g.pattern.clone())
                } else {
                    serde_json::json!({ "room": g.pattern, "publish": false })
                }
            })
            .collect()
    }
}

/// What a grant allows in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Whether `pattern` matches all of `text`: `*` matches any run of characters, including
/// none; everything else only itself. Greedy with one backtrack point (the last star), so
/// linear in practice and at worst pattern × text. Runs on every room message of a member
/// whose token lists rooms, so it compares bytes and allocates nothing: `*` is ASCII, never
/// part of another character's UTF-8 bytes, so a whole-string match by bytes is the match by
/// characters.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    // The last star seen, and the text position it currently stands up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last star swallow one more character and retry after it.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_star_matches_any_run_of_characters_and_nothing_else_is_special() {
        #[rustfmt::skip]
        let cases = [
            ("news", "news", true),
            ("news", "news2", false),
            ("news", "new", false),
            ("team-42:*", "team-42:alpha", true),
            ("team-42:*", "team-42:", true),
            ("team-42:*", "team-43:x", false),
            ("*", "anything", true),
            ("*:general", "team-1:general", true),
            ("*:general", "team-1:generally", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("a**", "a", true),
            ("room?", "room1", false),
            ("room?", "room?", true),
            ("[ab]", "a", false),
        ];
        for (pattern, room, expected) in cases {
            assert_eq!(
                pattern_matches(pattern, room),
                expected,
                "{pattern:?} against {room:?}"
            );
        }
    }

    #[test]
    fn the_claim_grants_rooms_read_write_unless_every_match_is_read_only() {
        let grants = RoomGrants::from_claim(&json!([
            "team-42:*",
            {"room": "news", "publish": false},
            {"room": "news*", "publish": false},
            {"room": "team-42:announcements", "publish": false},
            {"room": "open"}
        ]))
        .expect("valid claim");
        assert_eq!(grants.grant("team-42:alpha"), Some(Access::ReadWrite));
        assert_eq!(grants.grant("news"), Some(Access::ReadOnly));
        assert_eq!(
            grants.grant("team-42:announcements"),
            Some(Access::ReadWrite),
            "entries add up: the wider read-write entry wins"
        );
        assert_eq!(grants.grant("open"), Some(Access::ReadWrite));
        assert_eq!(grants.grant("team-43:x"), None);
        assert_eq!(
            RoomGrants::from_claim(&json!([]))
                .expect("valid")
                .grant("x"),
            None
        );
    }

    #[test]
    fn the_claim_is_written_back_as_the_token_spelled_it() {
        let claim = json!(["team-42:*", {"room": "news", "publish": false}]);
        let grants = RoomGrants::from_claim(&claim).expect("valid claim");
        assert_eq!(grants.to_claim(), claim);
        let spelled_long = json!([{"room": "open", "publish": true}]);
        let grants = RoomGrants::from_claim(&spelled_long).expect("valid claim");
        assert_eq!(
            grants.to_claim(),
            json!(["open"]),
            "the short form of the same grant"
        );
    }

    #[test]
    fn a_malformed_claim_is_refused_naming_the_claim() {
        let long = "x".repeat(MAX_PATTERN_CHARS + 1);
        let many: Vec<&str> = vec!["a"; MAX_ENTRIES + 1];
        let cases = [
            json!("team-42:*"),
            json!({"room": "a"}),
            json!([1]),
            json!([""]),
            json!(["  "]),
            json!([long]),
            json!([{"publish": false}]),
            json!([{"room": 3}]),
            json!([{"room": "a", "publish": "no"}]),
            json!([{"room": "a", "write": true}]),
            json!(many),
        ];
        for value in cases {
            let err = RoomGrants::from_claim(&value).expect_err("refused");
            assert_eq!(err.code(), "bad_claim");
            assert!(
                err.to_string().contains("claim \"rooms\""),
                "{err} for {value}"
            );
        }
    }
}
