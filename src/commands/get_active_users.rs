//! `get-active-users`: who is online.
//!
//! Payload: none. Replies `active-users { users, count }` to the caller, one entry per user
//! (not per connection), oldest connection first. The ack carries the same `users` and
//! `count`, for clients that prefer the callback.

use super::{Ack, Caller, Outcome};
use crate::hub::Event;
use crate::protocol::wire::ActiveUsers;

pub(super) fn apply(caller: &Caller) -> Outcome {
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
    caller.reply(Event::new("active-users", &payload));
    Ok(Ack::ActiveUsers(payload))
}
