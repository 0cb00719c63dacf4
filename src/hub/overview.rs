//! A bounded picture of live state for the operator dashboard (`/admin/`): who is online with
//! which connections, and the rooms with their members. It is taken under the hub lock once a
//! second per open dashboard, so it costs one walk over the maps (copying keys and times, not
//! building objects) and then builds objects only for the few it lists: the oldest users, the
//! largest rooms, the first members of each, and the policy of each room listed. The totals
//! say how much was left out.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::Transport;
use super::state::State;
use crate::access::policy::RoomPolicy;
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::UserObject;

/// How much an overview lists at most; the totals still count everything.
#[derive(Debug, Clone, Copy)]
pub struct OverviewLimits {
    /// Users listed (the ones connected longest).
    pub users: usize,
    /// Rooms listed (the ones with the most members).
    pub rooms: usize,
    /// Members listed per room (online ones first).
    pub members_per_room: usize,
}

/// Live state as the dashboard shows it.
#[derive(Debug, Clone, Default)]
pub struct LiveOverview {
    /// Online users, connected longest first, at most `limits.users`.
    pub users: Vec<LiveUser>,
    /// Users online in all.
    pub users_total: usize,
    /// Live connections in all.
    pub sessions_total: usize,
    /// Rooms with the most members first (ties by name), at most `limits.rooms`.
    pub rooms: Vec<LiveRoom>,
    /// Rooms with at least one member in all.
    pub rooms_total: usize,
}

/// An online user and their connections.
#[derive(Debug, Clone)]
pub struct LiveUser {
    /// Who, as clients see them.
    pub user: UserObject,
    /// Their connections, oldest first.
    pub sessions: Vec<LiveSession>,
}

/// One live connection.
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// The id its session row has.
    pub session_id: u64,
    /// Which door it came through.
    pub transport: Transport,
    /// Peer address.
    pub remote_addr: Option<SocketAddr>,
    /// When it opened.
    pub connected_at: SystemTime,
}

/// A room and its members (membership outlives connections, so some may be offline).
#[derive(Debug, Clone)]
pub struct LiveRoom {
    pub name: String,
    /// The room's policy (`ROOM_POLICIES`, the first row that matches it).
    pub policy: RoomPolicy,
    /// Members in all.
    pub members_total: usize,
    /// Members online now.
    pub online_total: usize,
    /// Online members first, then by id; at most `limits.members_per_room`.
    pub members: Vec<RoomMember>,
}

#[derive(Debug, Clone)]
pub struct RoomMember {
    pub user_id: String,
    /// Whether they have a live connection.
    pub online: bool,
    /// Whether the application added them (REST, the embedded API).
    pub by_server: bool,
}

impl State {
    /// The overview, bounded by `limits` (see the module doc for its cost).
    pub fn overview(&self, limits: OverviewLimits) -> LiveOverview {
        LiveOverview {
            users: self.oldest_users(limits.users),
            users_total: self.users.len(),
            sessions_total: self.sessions.len(),
            rooms: self.largest_rooms(limits.rooms, limits.members_per_room),
            rooms_total: self.rooms.values().filter(|m| !m.is_empty()).count(),
        }
    }

    fn oldest_users(&self, limit: usize) -> Vec<LiveUser> {
        let mut order: Vec<(SystemTime, &Arc<str>)> = self
            .users
            .keys()
            .filter_map(|id| Some((self.user_connected_at(id)?, id)))
            .collect();
        keep_smallest(&mut order, limit);
        order
            .into_iter()
            .filter_map(|(_, id)| {
                let user = self.user_object(id)?;
                let sessions = self
                    .sessions_of(id, None)
                    .filter_map(|sid| {
                        let s = self.sessions.get(&sid)?;
                        Some(LiveSession {
                            session_id: sid.0,
                            transport: s.transport,
                            remote_addr: s.remote_addr,
                            connected_at: s.connected_at,
                        })
                    })
                    .collect();
                Some(LiveUser { user, sessions })
            })
            .collect()
    }

    fn largest_rooms(&self, limit: usize, members_per_room: usize) -> Vec<LiveRoom> {
        // Names are unique, so the set in the tuple is never compared.
        let mut order: Vec<(Reverse<usize>, &RoomName, &Members)> = self
            .rooms
            .iter()
            .filter(|(_, members)| !members.is_empty())
            .map(|(room, members)| (Reverse(members.len()), room, members))
            .collect();
        keep_smallest(&mut order, limit);
        order
            .into_iter()
            .map(|(_, room, members)| {
                let online = |id: &Arc<str>| self.users.contains_key(id);
                let listed: Vec<RoomMember> = members
                    .iter()
                    .filter(|id| online(id))
                    .chain(members.iter().filter(|id| !online(id)))
                    .take(members_per_room)
                    .map(|id| RoomMember {
                        user_id: id.to_string(),
                        online: online(id),
                        by_server: self.is_server_member(room, id),
                    })
                    .collect();
                LiveRoom {
                    name: room.as_str().to_owned(),
                    policy: self.access.policies.of(room.as_str()).clone(),
                    members_total: members.len(),
                    online_total: members.iter().filter(|id| online(id)).count(),
                    members: listed,
                }
            })
            .collect()
    }
}

/// A room's members, as the hub keeps them.
type Members = BTreeSet<Arc<str>>;

/// Keeps the `n` smallest items, sorted: O(len) to select, O(n log n) to sort what is kept.
fn keep_smallest<T: Ord>(items: &mut Vec<T>, n: usize) {
    if items.len() > n {
        if n == 0 {
            items.clear();
            return;
        }
        items.select_nth_unstable(n - 1);
        items.truncate(n);
    }
    items.sort_unstable();
}

#[cfg(test)]
mod tests {
    use super::keep_smallest;

    #[test]
    fn keep_smallest_keeps_the_n_smallest_in_order() {
        let cases: &[(&[u32], usize, &[u32])] = &[
            (&[5, 1, 4, 2, 3], 3, &[1, 2, 3]),
            (&[2, 1], 5, &[1, 2]),
            (&[3, 1], 0, &[]),
            (&[], 2, &[]),
        ];
        for (items, n, kept) in cases {
            let mut items = items.to_vec();
            keep_smallest(&mut items, *n);
            assert_eq!(items, *kept, "n = {n}");
        }
    }
}
