//! Client events: the only place that knows their names. [`ClientEvent::parse`] turns an
//! event name and its payload into a typed event whose values are already valid; an unknown
//! name becomes [`ClientEvent::Unknown`], answered with `error` while the connection stays.

use serde_json::Value;

use super::ProtocolError;
use super::payloads::{ClientMsgId, Fields, MessageText, RoomName, TargetUserId};

/// Limits the parser needs.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Longest message text, in characters.
    pub max_message_chars: usize,
}

/// A client event with a valid payload.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `get-active-users`
    GetActiveUsers,
    /// `get-users-stats`
    GetUsersStats,
    /// `send-message { message, to? }`
    SendMessage {
        /// The text.
        message: MessageText,
        /// A user id for a private message; `None` for a public one.
        to: Option<TargetUserId>,
        /// Idempotency key.
        client_msg_id: Option<ClientMsgId>,
    },
    /// `join-room { room }`
    JoinRoom(RoomName),
    /// `leave-room { room }`
    LeaveRoom(RoomName),
    /// `room-message { room, message }`
    RoomMessage {
        /// The room.
        room: RoomName,
        /// The text.
        message: MessageText,
        /// Idempotency key.
        client_msg_id: Option<ClientMsgId>,
    },
    /// `refresh-token { token }`
    RefreshToken {
        /// The new JWT, verified by the command like a connecting one.
        token: String,
    },
    /// `sync { since }`
    Sync {
        /// Replay messages with a larger id.
        since: u64,
    },
    /// Any other name.
    Unknown(String),
}

impl ClientEvent {
    /// The wire name of every known event, for error messages and docs.
    pub const NAMES: &'static [&'static str] = &[
        "get-active-users",
        "get-users-stats",
        "send-message",
        "join-room",
        "leave-room",
        "room-message",
        "sync",
        "refresh-token",
    ];

    /// Parses an event by name.
    pub fn parse(
        name: &str,
        data: Option<&Value>,
        limits: ParseLimits,
    ) -> Result<Self, ProtocolError> {
        let message =
            |f: &Fields<'_>| MessageText::parse(f.string("message")?, limits.max_message_chars);
        let key = |f: &Fields<'_>| {
            f.optional_string("clientMsgId")?
                .map(ClientMsgId::parse)
                .transpose()
        };
        Ok(match name {
            "get-active-users" => Self::GetActiveUsers,
            "get-users-stats" => Self::GetUsersStats,
            "send-message" => {
                let f = Fields::of(
                    name,
                    data,
                    "{\"message\": string, \"to\"?: string, \"clientMsgId\"?: string}",
                )?;
                Self::SendMessage {
                    message: message(&f)?,
                    to: f
                        .optional_string("to")?
                        .map(TargetUserId::parse)
                        .transpose()?,
                    client_msg_id: key(&f)?,
                }
            }
            "join-room" | "leave-room" => {
                let f = Fields::of(name, data, "{\"room\": string}")?;
                let room = RoomName::parse(f.string("room")?)?;
                if name == "join-room" {
                    Self::JoinRoom(room)
                } else {
                    Self::LeaveRoom(room)
                }
            }
            "room-message" => {
                let f = Fields::of(
                    name,
                    data,
                    "{\"room\": string, \"message\": string, \"clientMsgId\"?: string}",
                )?;
                Self::RoomMessage {
                    room: RoomName::parse(f.string("room")?)?,
                    message: message(&f)?,
                    client_msg_id: key(&f)?,
                }
            }
            "sync" => {
                let f = Fields::of(name, data, "{\"since\": <last message id seen, 0 for all>}")?;
                Self::Sync {
                    since: f.id("since")?,
                }
            }
            "refresh-token" => {
                let f = Fields::of(name, data, "{\"token\": string}")?;
                Self::RefreshToken {
                    token: f.string("token")?.to_owned(),
                }
            }
            other => Self::Unknown(other.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: ParseLimits = ParseLimits {
        max_message_chars: 20,
    };

    #[test]
    fn every_known_event_parses() {
        for name in ClientEvent::NAMES {
            let data = json!({"message": "hi", "room": "r", "since": 0, "token": "t"});
            let event = ClientEvent::parse(name, Some(&data), LIMITS).expect(name);
            assert!(!matches!(event, ClientEvent::Unknown(_)), "{name}");
        }
    }

    #[test]
    fn wrong_payloads_name_the_field() {
        let cases = [
            ("send-message", None, "needs a payload"),
            ("send-message", Some(json!("hi")), "expects an object"),
            ("send-message", Some(json!({})), "missing field \"message\""),
            (
                "send-message",
                Some(json!({"message": 5})),
                "\"message\" must be a string",
            ),
            (
                "send-message",
                Some(json!({"message": "hi", "to": 5})),
                "\"to\" must be a string",
            ),
            (
                "send-message",
                Some(json!({"message": ""})),
                "must not be empty",
            ),
            (
                "send-message",
                Some(json!({"message": "x".repeat(21)})),
                "too long",
            ),
            (
                "join-room",
                Some(json!({"room": "a b"})),
                "invalid room name",
            ),
            (
                "room-message",
                Some(json!({"room": "a"})),
                "missing field \"message\"",
            ),
            ("refresh-token", Some(json!({})), "missing field \"token\""),
            (
                "refresh-token",
                Some(json!({"token": 5})),
                "\"token\" must be a string",
            ),
        ];
        for (name, data, expected) in cases {
            let err = ClientEvent::parse(name, data.as_ref(), LIMITS).expect_err(name);
            assert!(err.to_string().contains(expected), "{name} {data:?}: {err}");
        }
    }

    #[test]
    fn unknown_names_are_kept_for_the_error_reply() {
        assert_eq!(
            ClientEvent::parse("nope", None, LIMITS),
            Ok(ClientEvent::Unknown("nope".into()))
        );
    }
}
