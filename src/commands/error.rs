//! [`CommandError`]: why a client event was refused, as the client reads it. Every refusal
//! has a human sentence (`message`, naming the field and the rule) and a stable snake_case
//! `code` for programs; both go out in the `error` event and in the `{ok: false}` ack. The
//! connection stays open. The codes are part of the public contract: the README lists them,
//! and a test keeps that list equal to the codes here.

use crate::auth::AuthError;
use crate::hub::{Forbidden, HubError, PublishError};
use crate::metrics::AccessRefusal;
use crate::protocol::events::ClientEvent;
use crate::protocol::{ProtocolError, ProtocolErrorKind};

/// Why a client event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The frame or payload was malformed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The hub refused (not a member, user offline, ...).
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("unknown event {0:?}; known events: {known}", known = ClientEvent::NAMES.join(", "))]
    UnknownEvent(String),
    /// Refused by the per-connection rate limit of this many events per second.
    #[error("rate limit exceeded: at most {0} events per second")]
    RateLimited(u32),
    #[error("binary frames are not supported; send JSON text frames")]
    BinaryFrame,
    /// The message could not be committed to the database.
    #[error("the message could not be stored; it was not acknowledged, send it again")]
    NotStored,
    /// A database read failed.
    #[error("the message log could not be read; try again")]
    StoreUnavailable,
    /// A new connection's catch-up could not read the message log.
    #[error("missed messages could not be replayed; they stay queued: reconnect or call sync")]
    CatchUpFailed,
    /// `refresh-token` with a token that does not verify (bad, expired, revoked, ...).
    #[error("refresh-token refused: {0}; the connection keeps its current token")]
    TokenRefused(AuthError),
    /// `refresh-token` with a valid token for another user.
    #[error(
        "refresh-token refused: the token is for another user (sub); the connection keeps its current token"
    )]
    WrongSubject,
    /// The join hook gave no answer (error, timeout): the join is refused, fail closed.
    #[error("the room's access check is unavailable; try again later")]
    HookUnavailable,
}

impl From<PublishError> for CommandError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Refused(e) => Self::Hub(e),
            PublishError::NotStored => Self::NotStored,
            PublishError::StoreUnavailable => Self::StoreUnavailable,
        }
    }
}

impl CommandError {
    /// The stable code of this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Protocol(e) => match e.kind {
                ProtocolErrorKind::Frame => "bad_frame",
                ProtocolErrorKind::Payload => "bad_payload",
            },
            Self::BinaryFrame => "binary_frame",
            Self::UnknownEvent(_) => "unknown_event",
            Self::RateLimited(_) => "rate_limited",
            Self::Hub(HubError::NotMember(_)) => "not_member",
            Self::Hub(HubError::TooManyRooms(_)) => "too_many_rooms",
            Self::Hub(HubError::Forbidden(_)) => "forbidden",
            Self::Hub(HubError::UnknownUser(_)) => "unknown_user",
            Self::Hub(HubError::QueueFull { .. }) => "queue_full",
            Self::Hub(HubError::SessionGone) => "session_closed",
            Self::NotStored => "not_stored",
            Self::StoreUnavailable => "store_unavailable",
            Self::CatchUpFailed => "catch_up_failed",
            Self::TokenRefused(_) => "token_refused",
            Self::WrongSubject => "wrong_subject",
            Self::HookUnavailable => "hook_unavailable",
        }
    }

    /// The access rule behind this refusal, when the access rules refused (counted in
    /// `switchboard_access_refusals_total`); `None` for every other refusal.
    pub fn access_refusal(&self) -> Option<AccessRefusal> {
        match self {
            Self::Hub(HubError::Forbidden(rule)) => Some(match rule {
                Forbidden::Join => AccessRefusal::Join,
                Forbidden::Post => AccessRefusal::Post,
                Forbidden::Broadcast => AccessRefusal::Broadcast,
            }),
            Self::HookUnavailable => Some(AccessRefusal::HookUnavailable),
            Self::Protocol(_)
            | Self::Hub(_)
            | Self::UnknownEvent(_)
            | Self::RateLimited(_)
            | Self::BinaryFrame
            | Self::NotStored
            | Self::StoreUnavailable
            | Self::CatchUpFailed
            | Self::TokenRefused(_)
            | Self::WrongSubject => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code, in the README's order.
    const CODES: &[&str] = &[
        "bad_frame",
        "bad_payload",
        "binary_frame",
        "unknown_event",
        "rate_limited",
        "not_member",
        "too_many_rooms",
        "forbidden",
        "unknown_user",
        "queue_full",
        "session_closed",
        "not_stored",
        "store_unavailable",
        "catch_up_failed",
        "token_refused",
        "wrong_subject",
        "hook_unavailable",
    ];

    #[test]
    fn every_refusal_has_one_of_the_documented_codes() {
        let every_kind = [
            CommandError::Protocol(ProtocolError::frame("x")),
            CommandError::Protocol(ProtocolError::new("x")),
            CommandError::BinaryFrame,
            CommandError::UnknownEvent("x".into()),
            CommandError::RateLimited(1),
            CommandError::Hub(HubError::NotMember("r".into())),
            CommandError::Hub(HubError::TooManyRooms(1)),
            CommandError::Hub(HubError::Forbidden(Forbidden::Join)),
            CommandError::Hub(HubError::UnknownUser("u".into())),
            CommandError::Hub(HubError::QueueFull {
                user_id: "u".into(),
                limit: 1,
            }),
            CommandError::Hub(HubError::SessionGone),
            CommandError::NotStored,
            CommandError::StoreUnavailable,
            CommandError::CatchUpFailed,
            CommandError::TokenRefused(AuthError::Expired),
            CommandError::WrongSubject,
            CommandError::HookUnavailable,
        ];
        let codes: Vec<&str> = every_kind.iter().map(CommandError::code).collect();
        assert_eq!(codes, CODES, "one distinct code per kind of refusal");
    }

    #[test]
    fn the_readme_lists_exactly_these_codes() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### Error codes")
            .nth(1)
            .expect("the README has an \"Error codes\" section");
        let listed: Vec<&str> = section
            .lines()
            .take_while(|line| !line.starts_with('#'))
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        assert_eq!(listed, CODES);
    }
}
