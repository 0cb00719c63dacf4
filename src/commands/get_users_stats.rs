//! `get-users-stats`: statistics over the users online now, with their stored history.
//!
//! Payload: none. Replies `users-stats { totalUsers, usersByRole, connectionTimes }` to the
//! caller; the ack carries the same fields. History fields (`totalConnectedSeconds`,
//! `sessionsCount`, `firstSeen`) come from the session rows, live sessions included, so they
//! are read after the writes already sent (`Store::after_writes`): a session that just opened
//! is counted.

use std::time::SystemTime;

use super::{Ack, Caller, Outcome};
use crate::hub::{Event, Hub};
use crate::protocol::wire::{self, ConnectionTime, UsersStats};
use crate::store::Store;

pub(super) async fn apply(caller: &Caller) -> Outcome {
    let stats = users_stats(&caller.hub, &caller.store).await;
    caller.reply(Event::new("users-stats", &stats));
    Ok(Ack::UsersStats(stats))
}

/// The statistics object of `users-stats` (`docs/protocol.md` section 6), shared with the
/// REST API: who is online from the hub, their history from the store.
#[tracing::instrument(name = "Compute user statistics", skip(hub, store))]
pub async fn users_stats(hub: &Hub, store: &Store) -> UsersStats {
    let online = hub.online_users();
    let now = SystemTime::now();
    let now_text = wire::timestamp(now);
    let ids: Vec<String> = online.iter().map(|u| u.user.user_id.clone()).collect();
    let history = match store
        .after_writes()
        .await
        .user_history(&ids, &now_text)
        .await
    {
        Ok(h) => h,
        Err(e) => {
            // Live figures are still right; only the history fields fall back.
            tracing::error!(error = %e, "could not read session history for statistics");
            Default::default()
        }
    };
    let mut users_by_role = std::collections::BTreeMap::new();
    let connection_times = online
        .into_iter()
        .map(|u| {
            *users_by_role.entry(u.user.role.clone()).or_insert(0) += 1;
            let h = history.get(&u.user.user_id).cloned().unwrap_or_default();
            let connected_seconds = now
                .duration_since(u.connected_at)
                .unwrap_or_default()
                .as_secs();
            ConnectionTime {
                connected_seconds,
                total_connected_seconds: h.total_connected_seconds.max(connected_seconds),
                sessions_count: h.sessions_count.max(u.user.sessions as u64),
                first_seen: if h.first_seen.is_empty() {
                    u.user.connected_at.clone()
                } else {
                    h.first_seen
                },
                user_id: u.user.user_id,
                username: u.user.username,
                connected_at: u.user.connected_at,
            }
        })
        .collect::<Vec<_>>();
    UsersStats {
        total_users: connection_times.len(),
        users_by_role,
        connection_times,
    }
}
