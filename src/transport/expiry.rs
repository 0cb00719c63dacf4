//! A live connection is bound to its token's `exp` (`docs/protocol.md` section 10). One watch per
//! connection, started by [`Session::open`](super::session::Session::open) for both
//! transports: `TOKEN_EXPIRY_WARNING_SECS` before `exp` (at once when less is left) it sends
//! `token-expiring { exp, secondsLeft }`; at `exp` + `JWT_LEEWAY_SECS` it closes the
//! connection with reason `token_expired` (each transport tells its client in its own words:
//! close code 4001 on `/ws`, `error` then a disconnect on Socket.IO). A `refresh-token` renews
//! the [`Credentials`] it follows, which starts the count again from the new `exp`.
//!
//! The deadlines are wall-clock times (`exp` is), so each wait is measured against the system
//! clock when it starts; a renewal or the connection's close ends it early.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::auth::Identity;
use crate::hub::{CloseReason, Event, Outbound};
use crate::protocol::wire::TokenExpiring;

/// When to warn and when to close, relative to `exp`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// `TOKEN_EXPIRY_WARNING_SECS`.
    pub warning: Duration,
    /// `JWT_LEEWAY_SECS`.
    pub leeway: Duration,
}

/// What ended one wait.
enum Woke {
    /// The deadline passed.
    Due,
    /// The token was renewed: start again from its `exp`.
    Renewed,
    /// The connection closed (or is gone): nothing left to watch.
    Over,
}

/// Warns before the token of `credentials` expires and closes `outbound` when it has,
/// following renewals, until the connection closes.
pub(crate) async fn watch(
    mut credentials: watch::Receiver<Identity>,
    outbound: Outbound,
    timing: Timing,
) {
    loop {
        let exp = credentials.borrow_and_update().exp;
        let Some(expires_at) = UNIX_EPOCH.checked_add(Duration::from_secs(exp)) else {
            // Beyond what the clock can represent: it never expires (unless renewed).
            match wait(&mut credentials, &outbound, None).await {
                Woke::Renewed => continue,
                Woke::Due | Woke::Over => return,
            }
        };
        let warn_at = expires_at.checked_sub(timing.warning).unwrap_or(UNIX_EPOCH);
        match wait(&mut credentials, &outbound, Some(warn_at)).await {
            Woke::Due => {}
            Woke::Renewed => continue,
            Woke::Over => return,
        }
        let seconds_left = expires_at
            .duration_since(SystemTime::now())
            .map_or(0, |left| left.as_secs_f64().round() as u64);
        outbound.send(Event::new(
            "token-expiring",
            &TokenExpiring { exp, seconds_left },
        ));
        let close_at = expires_at.checked_add(timing.leeway);
        match wait(&mut credentials, &outbound, close_at).await {
            Woke::Due => {
                tracing::info!(
                    exp,
                    "token expired without a refresh: closing the connection"
                );
                outbound.close(CloseReason::TokenExpired);
                return;
            }
            Woke::Renewed => continue,
            Woke::Over => return,
        }
    }
}

/// Waits until `deadline` (never, for `None`), a renewal, or the connection's close.
async fn wait(
    credentials: &mut watch::Receiver<Identity>,
    outbound: &Outbound,
    deadline: Option<SystemTime>,
) -> Woke {
    let due = async {
        match deadline {
            Some(at) => {
                let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                tokio::time::sleep(left).await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = outbound.closer().closed() => Woke::Over,
        changed = credentials.changed() => match changed {
            Ok(()) => Woke::Renewed,
            Err(_) => Woke::Over,
        },
        () = due => Woke::Due,
    }
}
