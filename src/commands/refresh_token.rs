//! `refresh-token`: renew the connection's token without reconnecting.
//!
//! Payload: `{ token }`. The new token is verified exactly like a connecting one (the same
//! [`Verifier`](crate::auth::Verifier): signature, algorithm, `exp`, `nbf`, issuer, audience,
//! revocation) and must name the same user (`sub`). Then the connection lives by its `exp`
//! (a new `token-expiring` comes before it), and its `username` and `role` name the user from
//! now on, for all of the user's connections (role broadcasts follow at once), and so do its
//! room grants: rooms it no longer grants are left at once (`left-room`, `reason:
//! "not_granted"`). Ack:
//! `{ ok, exp }`. A refusal (`token_refused`, `wrong_subject`) changes nothing: the
//! connection keeps its old token and expiry.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Ack, Caller, CommandError, Outcome};
use crate::auth::Identity;

/// A connection's current token, shared by its commands (which renew it) and its expiry
/// watch (which follows it); cheap to clone.
#[derive(Debug, Clone)]
pub struct Credentials(Arc<watch::Sender<Identity>>);

impl Credentials {
    /// The credentials of a connection admitted with `identity`.
    pub fn new(identity: Identity) -> Self {
        Self(Arc::new(watch::Sender::new(identity)))
    }

    /// Who the current token names.
    pub fn identity(&self) -> Identity {
        self.0.borrow().clone()
    }

    /// Follows renewals; `changed()` fails once every [`Credentials`] clone is dropped
    /// (the connection is gone).
    pub fn subscribe(&self) -> watch::Receiver<Identity> {
        self.0.subscribe()
    }

    fn renew(&self, identity: Identity) {
        self.0.send_replace(identity);
    }
}

pub(super) fn apply(caller: &Caller, token: &str) -> Outcome {
    let renewed = caller
        .verifier
        .verify(token)
        .map_err(CommandError::TokenRefused)?;
    if renewed.user_id != caller.identity().user_id {
        return Err(CommandError::WrongSubject);
    }
    caller.hub.renew_identity(caller.session, &renewed)?;
    let exp = renewed.exp;
    caller.credentials.renew(renewed);
    Ok(Ack::Refreshed { exp })
}
