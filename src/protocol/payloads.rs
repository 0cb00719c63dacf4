//! Validated payload values. Handlers receive only these, already checked, so no command has
//! to re-validate a room name or a message ("parse, don't validate").
//!
//! Rules (documented in the README):
//! - a **message** is a string of 1 to `MAX_MESSAGE_CHARS` characters that is not only
//!   whitespace;
//! - a **room name** is 1 to 64 characters, each a letter, digit, `-`, `_`, `.` or `:`;
//! - a **user id** (the `to` of a private message) is 1 to 256 characters.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::ProtocolError;

/// Longest room name, in characters.
pub const MAX_ROOM_NAME_CHARS: usize = 64;
/// Largest message id a client may name (`sync`'s `since`): ids are SQLite integers (i64).
pub const MAX_MESSAGE_ID: u64 = i64::MAX as u64;
/// Longest user id accepted as a target, in characters (the same bound as token claims).
pub const MAX_USER_ID_CHARS: usize = 256;

/// The fields of an object payload, with readers that say which field is wrong and why.
pub struct Fields<'a> {
    event: &'a str,
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Requires the payload of `event` to be an object; `shape` shows the expected form.
    pub fn of(event: &'a str, data: Option<&'a Value>, shape: &str) -> Result<Self, ProtocolError> {
        match data {
            Some(Value::Object(obj)) => Ok(Self { event, obj }),
            Some(_) => Err(ProtocolError::new(format!(
                "{event} expects an object payload like {shape}"
            ))),
            None => Err(ProtocolError::new(format!(
                "{event} needs a payload like {shape}"
            ))),
        }
    }

    /// A required string field.
    pub fn string(&self, name: &str) -> Result<&'a str, ProtocolError> {
        self.optional_string(name)?
            .ok_or_else(|| ProtocolError::new(format!("{}: missing field \"{name}\"", self.event)))
    }

    /// A required message id: a whole number from 0 to [`MAX_MESSAGE_ID`] (ids are SQLite
    /// integers), given as a JSON number; anything else is refused with its value.
    pub fn id(&self, name: &str) -> Result<u64, ProtocolError> {
        match self.obj.get(name) {
            None | Some(Value::Null) => Err(ProtocolError::new(format!(
                "{}: missing field \"{name}\"",
                self.event
            ))),
            Some(Value::Number(n))
                if let Some(id) = n.as_u64()
                    && id <= MAX_MESSAGE_ID =>
            {
                Ok(id)
            }
            Some(other) => Err(ProtocolError::new(format!(
                "{}: field \"{name}\" must be a non-negative integer (a message id, at most \
                 {MAX_MESSAGE_ID}), not {}",
                self.event,
                describe(other)
            ))),
        }
    }

    /// An optional string field (`null` counts as absent).
    pub fn optional_string(&self, name: &str) -> Result<Option<&'a str>, ProtocolError> {
        match self.obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ProtocolError::new(format!(
                "{}: field \"{name}\" must be a string, not {}",
                self.event,
                json_type(other)
            ))),
        }
    }
}

/// A value's type, and the number itself when it is one (so `-1` and `1.5` read clearly).
fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("{n}"),
        other => json_type(other).to_owned(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The text of a message: non-blank and within the configured length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    /// Checks a message against the rule above.
    pub fn parse(s: &str, max_chars: usize) -> Result<Self, ProtocolError> {
        if s.trim().is_empty() {
            return Err(ProtocolError::new("message must not be empty"));
        }
        let chars = s.chars().count();
        if chars > max_chars {
            return Err(ProtocolError::new(format!(
                "message is too long: {chars} characters, at most {max_chars}"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A room name that follows the rule above; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

impl RoomName {
    /// Checks a room name against the rule above.
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        let chars = s.chars().count();
        let valid_chars = s
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if chars == 0 || chars > MAX_ROOM_NAME_CHARS || !valid_chars {
            return Err(ProtocolError::new(format!(
                "invalid room name {s:?}: use 1 to {MAX_ROOM_NAME_CHARS} letters, digits, \
                 '-', '_', '.' or ':'"
            )));
        }
        Ok(Self(s.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest notification type, in characters.
pub const MAX_NOTIFICATION_TYPE_CHARS: usize = 32;

/// A notification type (`info`, `warning`, ...): 1 to 32 letters, digits, `-` or `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationType(String);

impl NotificationType {
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        let chars = s.chars().count();
        if chars == 0
            || chars > MAX_NOTIFICATION_TYPE_CHARS
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ProtocolError::new(format!(
                "invalid type {s:?}: use 1 to {MAX_NOTIFICATION_TYPE_CHARS} letters, digits, '-' or '_'"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for NotificationType {
    fn default() -> Self {
        Self("info".into())
    }
}

/// Longest idempotency key, in characters.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 128;

/// A client-chosen idempotency key (`clientMsgId`): 1 to 128 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        let chars = s.chars().count();
        if chars == 0 || chars > MAX_CLIENT_MSG_ID_CHARS {
            return Err(ProtocolError::new(format!(
                "\"clientMsgId\" must be 1 to {MAX_CLIENT_MSG_ID_CHARS} characters"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user id named by the application (the REST path, the embedded API): non-empty and not
/// absurdly long, as a token's `sub` may be anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Checks a user id against the rule above.
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        Self::parse_named(s, "user id")
    }

    /// The same rule, the refusal naming the field the id came in (`"to"`, `userId`).
    pub fn parse_named(s: &str, name: &str) -> Result<Self, ProtocolError> {
        if s.is_empty() {
            return Err(ProtocolError::new(format!("{name} must not be empty")));
        }
        if s.chars().count() > MAX_USER_ID_CHARS {
            return Err(ProtocolError::new(format!(
                "{name} is longer than {MAX_USER_ID_CHARS} characters"
            )));
        }
        Ok(Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The user id a private message is addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUserId(Arc<str>);

impl TargetUserId {
    /// Checks a target user id: the rule of [`UserId`], named `"to"`.
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        UserId::parse_named(s, "\"to\"").map(|id| Self(id.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Longest event name a back end may publish, in characters.
pub const MAX_EVENT_NAME_CHARS: usize = 64;

/// Names a back end may not publish under (`POST /websocket/publish`): the protocol's own
/// server events, whose payloads clients trust to mean what section 6 says (a published
/// `room-message` would be a chat message nobody sent), and the names Socket.IO reserves.
const RESERVED_EVENT_NAMES: &[&str] = &[
    "connected",
    "user-connected",
    "user-disconnected",
    "presence-diff",
    "presence-summary",
    "active-users",
    "users-stats",
    "broadcast-message",
    "private-message",
    "room-message",
    "joined-room",
    "left-room",
    "user-joined-room",
    "user-left-room",
    "sync-complete",
    "token-expiring",
    "error",
    "ack",
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The name of an event a back end publishes: 1 to 64 ASCII letters, digits, `-`, `_`, `.`
/// or `:`, and none of the protocol's own server events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventName(String);

impl EventName {
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        let chars = s.chars().count();
        let valid_chars = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if chars == 0 || chars > MAX_EVENT_NAME_CHARS || !valid_chars {
            return Err(ProtocolError::new(format!(
                "invalid event name {s:?}: use 1 to {MAX_EVENT_NAME_CHARS} ASCII letters, \
                 digits, '-', '_', '.' or ':'"
            )));
        }
        if RESERVED_EVENT_NAMES.contains(&s) {
            return Err(ProtocolError::new(format!(
                "event name {s:?} is one of the protocol's own events; choose another name"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_event_names_are_plain_and_not_the_protocols_own() {
        for ok in ["order-shipped", "invoice.paid", "game:move", "notification"] {
            assert!(EventName::parse(ok).is_ok(), "{ok}");
        }
        let long = "e".repeat(MAX_EVENT_NAME_CHARS + 1);
        for bad in [
            "",
            "with space",
            "café",
            "room-message",
            "connect",
            long.as_str(),
        ] {
            assert!(EventName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn room_names_follow_the_documented_rule() {
        for ok in ["general", "a", "team-1_x.y:z", "café"] {
            assert!(RoomName::parse(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(MAX_ROOM_NAME_CHARS + 1);
        for bad in ["", "with space", "semi;colon", "slash/", long.as_str()] {
            assert!(RoomName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_must_be_non_blank_and_short_enough() {
        assert!(MessageText::parse("hi", 10).is_ok());
        assert!(MessageText::parse("   ", 10).is_err());
        assert!(
            MessageText::parse("ééééé", 5).is_ok(),
            "counted in characters"
        );
        assert!(MessageText::parse("123456", 5).is_err());
    }
}
