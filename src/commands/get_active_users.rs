//! `get-active-users`: who is online.
//!
//! Payload: none. Replies `active-users { users, count }` to the caller, one entry per user
//! (not per connection), oldest connection first. The ack carries the same `users` and
//! `count`, for clients that prefer the callback.

use super::{AckFields, Caller, CommandError, fields};
use crate::hub::Event;
use crate::protocol::wire::ActiveUsers;

pub(super) fn apply(caller: &Caller) -> Result<AckFields, CommandError> {
    let users: Vec<_> = caller
        .hub
        .online_users()
        .into_iter()
        .map(|u| u.user)
        .collect();
    let payload = ActiveUsers {
        count: users.len(),
        users,
    };
    let event = Event::new("active-users", &payload);
    caller.reply(event.clone());
    Ok(fields([
        (
            "users",
            serde_json::to_value(&payload.users).unwrap_or_default(),
        ),
        ("count", payload.count.into()),
    ]))
}
