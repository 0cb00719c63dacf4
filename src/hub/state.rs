//! The maps behind the hub's lock, and every decision taken under it: who is online, who a
//! message goes to, whether a connection is a user's first or last (presence), and whether a
//! live event goes out now or waits behind a connection's catch-up. Nothing here locks,
//! awaits or touches the store, so each decision is unit-tested on its own (below); the hub
//! takes the lock, asks, and hands the records to the store.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::OnlineUser;
use super::presence::Window;
use super::published::RecentKeys;
use super::remote::{NodeUser, RemotePresence, millis};
use super::{CloseReason, Event, Forbidden, HubError, Outbound, SessionId, Transport};
use crate::access::{JoinVerdict, RoomAccess};
use crate::auth::Identity;
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::{self, UserObject};
use crate::store::Target;

/// One live connection.
pub(super) struct SessionEntry {
    pub user_id: Arc<str>,
    pub outbound: Outbound,
    pub connected_at: SystemTime,
    /// How it came in, for the operator dashboard's list of sessions.
    pub transport: Transport,
    pub remote_addr: Option<SocketAddr>,
    /// While the connection catches up on stored messages, live events wait here so that
    /// they arrive after what they follow. `None` once caught up.
    pub held: Option<Vec<Arc<Event>>>,
    /// Most events held before the connection counts as a slow consumer.
    pub hold_limit: usize,
}

impl SessionEntry {
    /// Queues an event for this connection (or holds it during catch-up).
    pub fn send(&mut self, event: Arc<Event>) -> bool {
        if let Some(held) = self.held.as_mut() {
            if held.len() >= self.hold_limit {
                self.outbound.close(CloseReason::SlowConsumer);
                return false;
            }
            held.push(event);
            return true;
        }
        self.outbound.send(event)
    }

    /// Ends the catch-up: what was held goes out, in order, and later events go straight.
    pub fn end_replay(&mut self) {
        for event in self.held.take().unwrap_or_default() {
            if !self.outbound.send(event) {
                break;
            }
        }
    }
}

/// When and how a connection opened.
#[derive(Debug, Clone, Copy)]
pub(super) struct Opened {
    pub at: SystemTime,
    pub transport: Transport,
    pub remote_addr: Option<SocketAddr>,
}

/// A connection added: whether it is the user's first (everyone else hears
/// `user-connected`), and the user as they are now.
#[derive(Debug)]
pub(super) struct Arrival {
    pub first: bool,
    pub user: UserObject,
}

/// A connection removed: whether it was the user's last (everyone else hears
/// `user-disconnected`), and the user as they were, `sessions: 0` when it was the last.
#[derive(Debug)]
pub(super) struct Departure {
    pub last: bool,
    pub user: Option<UserObject>,
}

/// One online user.
pub(super) struct UserEntry {
    pub identity: Identity,
    /// Live sessions, oldest first.
    pub sessions: Vec<SessionId>,
}

/// Who a message comes from, as the recipient rule needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sender {
    /// A connection of this node, sending now: left out, and held to [`State::may_send`].
    Connection(SessionId),
    /// A committed message's sending connection, on this node or another (session ids are
    /// unique across the cluster): left out, not checked again (it was, when routed).
    Committed(SessionId),
    /// The server (REST, the embedded API), or a committed message it sent: nobody is left
    /// out, nothing is checked.
    Server,
}

impl Sender {
    /// A live send from `session`, or from the server.
    pub fn live(session: Option<SessionId>) -> Self {
        session.map_or(Self::Server, Self::Connection)
    }

    /// A committed message from `session`, or from the server.
    pub fn committed(session: Option<SessionId>) -> Self {
        session.map_or(Self::Server, Self::Committed)
    }

    /// The connection left out of delivery.
    fn session(self) -> Option<SessionId> {
        match self {
            Self::Connection(session) | Self::Committed(session) => Some(session),
            Self::Server => None,
        }
    }
}

#[derive(Default)]
pub(super) struct State {
    pub sessions: HashMap<SessionId, SessionEntry>,
    pub users: HashMap<Arc<str>, UserEntry>,
    /// Room → member users, online or not (membership is stored and outlives connections).
    pub rooms: HashMap<RoomName, BTreeSet<Arc<str>>>,
    /// User → rooms, online or not.
    pub memberships: HashMap<Arc<str>, BTreeSet<RoomName>>,
    /// User → the rooms of `memberships` the application added it to (REST, the embedded
    /// API): they hold whatever the room's join rule and the user's token say.
    pub server_members: HashMap<Arc<str>, BTreeSet<RoomName>>,
    /// Every user ever seen (private messages to others are refused).
    pub known_users: HashSet<Arc<str>>,
    pub recent_keys: RecentKeys,
    /// `PRESENCE_EVENTS=diff`: the changes of the open window.
    pub presence_window: Window,
    /// Live connections per transport, kept as they come and go so that a scrape of
    /// `/metrics` reads two numbers instead of walking the sessions under the lock.
    pub open: OpenConnections,
    /// The other nodes' users, in a cluster (`remote.rs`, fed by `cluster.rs`).
    pub remote: RemotePresence,
    /// Who may be in which room, post in it and broadcast (`crate::access`).
    pub access: RoomAccess,
}

/// Live connections per transport.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpenConnections {
    pub ws: usize,
    pub socketio: usize,
}

impl OpenConnections {
    fn of(&mut self, transport: Transport) -> &mut usize {
        match transport {
            Transport::WebSocket => &mut self.ws,
            Transport::SocketIo => &mut self.socketio,
        }
    }
}

impl State {
    /// Registers a live connection; its live events are held until [`State::end_replay`].
    pub fn add_session(
        &mut self,
        id: SessionId,
        identity: &Identity,
        outbound: Outbound,
        opened: Opened,
        hold_limit: usize,
    ) -> Arrival {
        let at = opened.at;
        let user_id = identity.user_id.clone();
        let user = self
            .users
            .entry(user_id.clone())
            .or_insert_with(|| UserEntry {
                identity: identity.clone(),
                sessions: Vec::new(),
            });
        // The newest token names the user: a name or a role can change.
        user.identity = identity.clone();
        user.sessions.push(id);
        let first = user.sessions.len() == 1;
        self.known_users.insert(user_id.clone());
        self.sessions.insert(
            id,
            SessionEntry {
                user_id: user_id.clone(),
                outbound,
                connected_at: at,
                transport: opened.transport,
                remote_addr: opened.remote_addr,
                held: Some(Vec::new()),
                hold_limit,
            },
        );
        *self.open.of(opened.transport) += 1;
        let user = self
            .user_object(&user_id)
            .unwrap_or_else(|| user_object_of(identity, at));
        Arrival { first, user }
    }

    /// A connection of an online user renewed its token: the newest token names the user
    /// (its name and role, hence its role routing) from now on. Refuses a token of another
    /// user than the session's.
    pub fn renew_identity(&mut self, id: SessionId, identity: &Identity) -> Result<(), HubError> {
        let user_id = self.user_id_of(id)?;
        if user_id != identity.user_id {
            return Err(HubError::SessionGone);
        }
        let user = self.users.get_mut(&user_id).ok_or(HubError::SessionGone)?;
        user.identity = identity.clone();
        Ok(())
    }

    /// Forgets a live connection. Room memberships stay: they belong to the user.
    pub fn remove_session(&mut self, id: SessionId) -> Option<Departure> {
        let user_id = self.sessions.get(&id)?.user_id.clone();
        // Taken while the session still counts, so that it names the user as they were.
        let mut user = self.user_object(&user_id);
        if let Some(gone) = self.sessions.remove(&id) {
            let open = self.open.of(gone.transport);
            *open = open.saturating_sub(1);
        }
        let last = match self.users.get_mut(&user_id) {
            Some(entry) => {
                entry.sessions.retain(|s| *s != id);
                entry.sessions.is_empty()
            }
            None => false,
        };
        if last {
            self.users.remove(&user_id);
            if let Some(user) = user.as_mut() {
                user.sessions = 0;
            }
        }
        Some(Departure { last, user })
    }

    /// Releases the live events held for a connection while it caught up.
    pub fn end_replay(&mut self, id: SessionId) {
        if let Some(session) = self.sessions.get_mut(&id) {
            session.end_replay();
        }
    }

    /// THE recipient rule: the live sessions of this node a message to `target` goes to,
    /// whether it is routed now (`Hub::route`) or delivered once committed in a cluster
    /// (`Hub::deliver_committed`). There is no other.
    ///
    /// - A message to a user reaches every connection of that user, the sending one
    ///   included: a private message to yourself reaches all your connections.
    /// - Everyone, a room, a role: every connection of theirs but the sending one.
    /// - A live send from a connection must first be allowed ([`State::may_send`]); a
    ///   committed one was allowed when it was routed, and the server's sends (REST, the
    ///   embedded API) are not held to it.
    pub fn recipients(&self, target: &Target, sender: Sender) -> Result<Vec<SessionId>, HubError> {
        if let Sender::Connection(session) = sender {
            self.may_send(target, session)?;
        }
        let except = sender.session();
        Ok(match target {
            Target::All => self
                .sessions
                .keys()
                .copied()
                .filter(|id| Some(*id) != except)
                .collect(),
            Target::User(user_id) => self.sessions_of(user_id, None).collect(),
            Target::Room(room) => self.room_sessions(room, except),
            Target::Role(role) => self.role_sessions(role, except),
        })
    }

    /// The access step of [`State::recipients`]: whether `session` may send to `target`.
    /// A room takes messages from its members whom its policy lets post (`crate::access`: the
    /// post rule, a read-only grant); everyone, from the roles `BROADCAST_ROLES` allows. The
    /// one place every live send passes.
    pub fn may_send(&self, target: &Target, session: SessionId) -> Result<(), HubError> {
        match target {
            Target::Room(room) => {
                let user_id = self.user_id_of(session)?;
                if !self.is_member(room, &user_id) {
                    return Err(HubError::NotMember(room.to_string()));
                }
                let user = self.users.get(&user_id).ok_or(HubError::SessionGone)?;
                if !self.access.may_post(&user.identity, room.as_str()) {
                    return Err(HubError::Forbidden(Forbidden::Post));
                }
                Ok(())
            }
            // Looked up only when limited: a broadcast is the hot path of the seed's rule.
            Target::All if !self.access.broadcast_roles.is_empty() => {
                let user_id = self.user_id_of(session)?;
                let user = self.users.get(&user_id).ok_or(HubError::SessionGone)?;
                if !self.access.may_broadcast(&user.identity) {
                    return Err(HubError::Forbidden(Forbidden::Broadcast));
                }
                Ok(())
            }
            Target::All | Target::User(_) | Target::Role(_) => Ok(()),
        }
    }

    /// The access step of `join-room`, beside [`State::may_send`]: whether the user of
    /// `session` may join `room`, or whether the application's hook is to be asked. The
    /// refusal is the same whether the room exists or not.
    pub fn may_join(&self, room: &RoomName, session: SessionId) -> Result<JoinVerdict, HubError> {
        let user_id = self.user_id_of(session)?;
        let user = self.users.get(&user_id).ok_or(HubError::SessionGone)?;
        let server_member = self.is_server_member(room, &user_id);
        match self
            .access
            .join(&user.identity, room.as_str(), server_member)
        {
            JoinVerdict::Refused => Err(HubError::Forbidden(Forbidden::Join)),
            verdict => Ok(verdict),
        }
    }

    /// The stored memberships of an online user that the access rules no longer allow for
    /// its newest token.
    pub fn ungranted_rooms(&self, user_id: &str) -> Vec<RoomName> {
        let Some(user) = self.users.get(user_id) else {
            return Vec::new();
        };
        self.memberships
            .get(user_id)
            .into_iter()
            .flatten()
            .filter(|room| {
                let server_member = self.is_server_member(room, user_id);
                !self
                    .access
                    .may_stay(&user.identity, room.as_str(), server_member)
            })
            .cloned()
            .collect()
    }

    /// Whether the application made `user_id` a member of `room`.
    pub fn is_server_member(&self, room: &RoomName, user_id: &str) -> bool {
        self.server_members
            .get(user_id)
            .is_some_and(|rooms| rooms.contains(room))
    }

    /// Sessions of the users with `role`, but `except`.
    pub fn role_sessions(&self, role: &str, except: Option<SessionId>) -> Vec<SessionId> {
        self.users
            .values()
            .filter(|u| &*u.identity.role == role)
            .flat_map(|u| u.sessions.iter().copied())
            .filter(|id| Some(*id) != except)
            .collect()
    }

    pub fn user_id_of(&self, id: SessionId) -> Result<Arc<str>, HubError> {
        self.sessions
            .get(&id)
            .map(|s| s.user_id.clone())
            .ok_or(HubError::SessionGone)
    }

    pub fn user_connected_at(&self, user_id: &str) -> Option<SystemTime> {
        let user = self.users.get(user_id)?;
        let oldest = user.sessions.first()?;
        Some(self.sessions.get(oldest)?.connected_at)
    }

    pub fn user_object(&self, user_id: &str) -> Option<UserObject> {
        let user = self.users.get(user_id)?;
        Some(UserObject {
            user_id: user.identity.user_id.to_string(),
            username: user.identity.username.to_string(),
            role: user.identity.role.to_string(),
            connected_at: wire::timestamp(self.user_connected_at(user_id)?),
            sessions: user.sessions.len(),
        })
    }

    /// Every online user (in a cluster, on any node, each once), oldest connection first.
    pub fn online_users(&self) -> Vec<OnlineUser> {
        let remote_only = self
            .remote
            .user_ids()
            .filter(|id| !self.users.contains_key(&***id));
        let mut users: Vec<OnlineUser> = self
            .users
            .keys()
            .chain(remote_only)
            .filter_map(|id| {
                Some(OnlineUser {
                    user: self.cluster_user_object(id)?,
                    connected_at: self.cluster_connected_at(id)?,
                })
            })
            .collect();
        users.sort_by(|a, b| {
            (a.connected_at, &a.user.user_id).cmp(&(b.connected_at, &b.user.user_id))
        });
        users
    }

    pub fn rooms_of(&self, user_id: &str) -> Vec<String> {
        self.memberships
            .get(user_id)
            .map(|rooms| rooms.iter().map(|r| r.as_str().to_owned()).collect())
            .unwrap_or_default()
    }

    pub fn is_member(&self, room: &RoomName, user_id: &str) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|members| members.contains(user_id))
    }

    pub fn add_member(&mut self, room: &RoomName, user_id: &Arc<str>) {
        self.rooms
            .entry(room.clone())
            .or_default()
            .insert(user_id.clone());
        self.memberships
            .entry(user_id.clone())
            .or_default()
            .insert(room.clone());
    }

    pub fn remove_member(&mut self, room: &RoomName, user_id: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(user_id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
        for by_user in [&mut self.memberships, &mut self.server_members] {
            if let Some(rooms) = by_user.get_mut(user_id) {
                rooms.remove(room);
                if rooms.is_empty() {
                    by_user.remove(user_id);
                }
            }
        }
    }

    /// Marks a membership as the application's (it holds whatever the rules say).
    pub fn add_server_member(&mut self, room: &RoomName, user_id: &Arc<str>) {
        self.add_member(room, user_id);
        self.server_members
            .entry(user_id.clone())
            .or_default()
            .insert(room.clone());
    }

    /// Sessions of a user, but `except`.
    pub fn sessions_of<'a>(
        &'a self,
        user_id: &str,
        except: Option<SessionId>,
    ) -> impl Iterator<Item = SessionId> + 'a {
        self.users
            .get(user_id)
            .into_iter()
            .flat_map(|u| u.sessions.iter().copied())
            .filter(move |id| Some(*id) != except)
    }

    /// Sends to the given sessions; returns how many took the event.
    pub fn send_to(
        &mut self,
        sessions: impl IntoIterator<Item = SessionId>,
        event: &Arc<Event>,
    ) -> usize {
        sessions
            .into_iter()
            .filter(|id| {
                self.sessions
                    .get_mut(id)
                    .is_some_and(|s| s.send(event.clone()))
            })
            .count()
    }

    /// Online sessions of a room's members, but `except`.
    pub fn room_sessions(&self, room: &RoomName, except: Option<SessionId>) -> Vec<SessionId> {
        self.rooms
            .get(room)
            .into_iter()
            .flatten()
            .flat_map(|user_id| self.sessions_of(user_id, except))
            .collect()
    }

    pub fn send_to_room(
        &mut self,
        room: &RoomName,
        event: &Arc<Event>,
        except: Option<SessionId>,
    ) -> usize {
        self.send_to(self.room_sessions(room, except), event)
    }
}

/// Users across the cluster: this node's sessions and the other nodes' users read together,
/// wherever the protocol counts users.
impl State {
    /// The user object across the cluster: sessions summed, the oldest connection's time,
    /// name and role from this node's newest token (else another node's).
    pub fn cluster_user_object(&self, user_id: &str) -> Option<UserObject> {
        let local = self.user_object(user_id);
        let local_at = self.user_connected_at(user_id);
        let mut remote = self.remote.entries(user_id).peekable();
        if remote.peek().is_none() {
            return local;
        }
        let (mut user, mut at) = match (local, local_at) {
            (Some(user), Some(at)) => (user, at),
            _ => {
                let first = remote.next()?;
                (
                    UserObject {
                        user_id: first.user_id.clone(),
                        username: first.username.clone(),
                        role: first.role.clone(),
                        connected_at: String::new(),
                        sessions: first.sessions,
                    },
                    first.connected_at(),
                )
            }
        };
        for other in remote {
            user.sessions = user.sessions.saturating_add(other.sessions);
            at = at.min(other.connected_at());
        }
        user.connected_at = wire::timestamp(at);
        Some(user)
    }

    /// When the user's oldest connection anywhere opened.
    pub fn cluster_connected_at(&self, user_id: &str) -> Option<SystemTime> {
        let remote = self.remote.entries(user_id).map(NodeUser::connected_at);
        self.user_connected_at(user_id)
            .into_iter()
            .chain(remote)
            .min()
    }

    /// Distinct users online anywhere.
    pub fn online_count(&self) -> usize {
        let remote_only = self
            .remote
            .user_ids()
            .filter(|id| !self.users.contains_key(&***id))
            .count();
        self.users.len() + remote_only
    }

    /// Whether the user has a connection on any node.
    pub fn is_online_anywhere(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id) || self.remote.is_online(user_id)
    }

    /// This node's entry of a user, for the other nodes (0 sessions once it has none here).
    pub fn node_user(&self, user_id: &str, gone: Option<&UserObject>) -> Option<NodeUser> {
        if let Some(user) = self.user_object(user_id) {
            let at = self.user_connected_at(user_id)?;
            return Some(NodeUser {
                user_id: user.user_id,
                username: user.username,
                role: user.role,
                connected_at_ms: millis(at),
                sessions: user.sessions,
            });
        }
        gone.map(|user| NodeUser {
            user_id: user.user_id.clone(),
            username: user.username.clone(),
            role: user.role.clone(),
            connected_at_ms: 0,
            sessions: 0,
        })
    }
}

/// The user object straight from the token, for a user with no live connection.
pub(super) fn user_object_of(identity: &Identity, connected_at: SystemTime) -> UserObject {
    UserObject {
        user_id: identity.user_id.to_string(),
        username: identity.username.to_string(),
        role: identity.role.to_string(),
        connected_at: wire::timestamp(connected_at),
        sessions: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::OutboundQueue;

    fn identity(user: &str, role: &str) -> Identity {
        Identity {
            user_id: user.into(),
            username: user.into(),
            role: role.into(),
            exp: u64::MAX,
            iat: None,
            grants: None,
        }
    }

    fn opened() -> Opened {
        Opened {
            at: SystemTime::now(),
            transport: Transport::WebSocket,
            remote_addr: None,
        }
    }

    /// A state with one connection per `(session, user, role)`, caught up (nothing held).
    fn state_with(sessions: &[(u64, &str, &str)]) -> (State, HashMap<u64, OutboundQueue>) {
        let mut state = State::default();
        let mut queues = HashMap::new();
        for &(id, user, role) in sessions {
            let (outbound, queue) = Outbound::channel(8);
            state.add_session(SessionId(id), &identity(user, role), outbound, opened(), 4);
            state.end_replay(SessionId(id));
            queues.insert(id, queue);
        }
        (state, queues)
    }

    /// The session numbers a message goes to, sorted, or its refusal.
    type Recipients = Result<Vec<u64>, HubError>;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).expect("valid room name")
    }

    fn ids(sessions: Vec<SessionId>) -> Vec<u64> {
        let mut ids: Vec<u64> = sessions.into_iter().map(|s| s.0).collect();
        ids.sort_unstable();
        ids
    }

    fn names(queue: &mut OutboundQueue) -> Vec<String> {
        std::iter::from_fn(|| queue.rx.try_recv().ok())
            .map(|e| e.name().to_owned())
            .collect()
    }

    /// The recipient rule, every target against every kind of sender. Alice has connections
    /// 1 and 2, bob (an ADMIN) 3, carol 4; alice, bob and the offline dave are in "ops";
    /// session 9 is on another node (or gone).
    #[test]
    fn the_recipient_rule_leaves_out_the_sender_but_of_a_private_message_and_checks_live_sends_only()
     {
        let (mut state, _queues) = state_with(&[
            (1, "alice", "USER"),
            (2, "alice", "USER"),
            (3, "bob", "ADMIN"),
            (4, "carol", "USER"),
        ]);
        for member in ["alice", "bob", "dave"] {
            state.add_member(&room("ops"), &Arc::from(member));
        }
        let all = Target::All;
        let alice = Target::User("alice".into());
        let zed = Target::User("zed".into());
        let ops = Target::Room(room("ops"));
        let admins = Target::Role("ADMIN".into());
        let live = |id| Sender::Connection(SessionId(id));
        let committed = |id| Sender::Committed(SessionId(id));
        let not_member = Err(HubError::NotMember("ops".into()));
        #[rustfmt::skip]
        let cases: &[(&Target, Sender, Recipients, &str)] = &[
            (&all, live(1), Ok(vec![2, 3, 4]), "a broadcast leaves out the sending connection"),
            (&all, committed(1), Ok(vec![2, 3, 4]), "so does its committed delivery"),
            (&all, committed(9), Ok(vec![1, 2, 3, 4]), "sent on another node: everyone here"),
            (&all, live(9), Ok(vec![1, 2, 3, 4]), "a gone sender is not refused a broadcast"),
            (&all, Sender::Server, Ok(vec![1, 2, 3, 4]), "the server leaves out nobody"),
            (&alice, live(1), Ok(vec![1, 2]), "to yourself: every connection, the sending one too"),
            (&alice, committed(1), Ok(vec![1, 2]), "the same once committed"),
            (&alice, live(3), Ok(vec![1, 2]), "to another user: all their connections"),
            (&alice, Sender::Server, Ok(vec![1, 2]), "a notification to a user"),
            (&zed, Sender::Server, Ok(vec![]), "a user with no connection here"),
            (&ops, live(1), Ok(vec![2, 3]), "a member's room message: the other members"),
            (&ops, committed(1), Ok(vec![2, 3]), "the same once committed"),
            (&ops, live(4), not_member.clone(), "carol is no member: refused"),
            (&ops, live(9), Err(HubError::SessionGone), "a gone connection is refused"),
            (&ops, committed(4), Ok(vec![1, 2, 3]), "committed: allowed when sent, not checked again"),
            (&ops, committed(9), Ok(vec![1, 2, 3]), "sent on another node"),
            (&ops, Sender::Server, Ok(vec![1, 2, 3]), "the server needs no membership"),
            (&admins, live(1), Ok(vec![3]), "a role: its users' connections"),
            (&admins, live(3), Ok(vec![]), "the sending connection left out of its own role"),
            (&admins, committed(3), Ok(vec![]), "the same once committed"),
            (&admins, Sender::Server, Ok(vec![3]), "a role notification"),
        ];
        for (target, sender, expected, why) in cases {
            let got = state.recipients(target, *sender).map(ids);
            assert_eq!(&got, expected, "{why}: {target:?} from {sender:?}");
        }
    }

    #[test]
    fn a_live_room_message_is_refused_once_its_sender_left_the_room_but_its_committed_copy_is_not()
    {
        let (mut state, _queues) = state_with(&[(1, "alice", "USER"), (2, "bob", "USER")]);
        for member in ["alice", "bob"] {
            state.add_member(&room("ops"), &Arc::from(member));
        }
        let ops = Target::Room(room("ops"));
        state.remove_member(&room("ops"), "alice");

        assert_eq!(
            state.recipients(&ops, Sender::live(Some(SessionId(1)))),
            Err(HubError::NotMember("ops".into()))
        );
        assert_eq!(
            state
                .recipients(&ops, Sender::committed(Some(SessionId(1))))
                .map(ids),
            Ok(vec![2]),
            "routed while alice was a member: delivered to the room as it is now"
        );
        assert_eq!(
            state.recipients(&ops, Sender::live(None)).map(ids),
            state.recipients(&ops, Sender::committed(None)).map(ids),
            "from the server, live and committed are one"
        );
    }

    #[test]
    fn a_read_only_member_is_refused_in_the_access_step_and_its_committed_copies_are_not() {
        let (mut state, _queues) = state_with(&[(1, "alice", "USER"), (2, "bob", "USER")]);
        let claim = serde_json::json!([{"room": "news", "publish": false}]);
        let grants = crate::auth::grants::RoomGrants::from_claim(&claim).expect("valid");
        let read_only = Identity {
            grants: Some(Arc::new(grants)),
            ..identity("alice", "USER")
        };
        state
            .renew_identity(SessionId(1), &read_only)
            .expect("same user");
        for member in ["alice", "bob"] {
            state.add_member(&room("news"), &Arc::from(member));
        }
        let news = Target::Room(room("news"));
        assert_eq!(
            state.recipients(&news, Sender::live(Some(SessionId(1)))),
            Err(HubError::Forbidden(Forbidden::Post))
        );
        assert_eq!(
            state.may_join(&room("news"), SessionId(1)),
            Ok(JoinVerdict::Allowed)
        );
        assert_eq!(
            state.may_join(&room("sports"), SessionId(1)),
            Err(HubError::Forbidden(Forbidden::Join))
        );
        assert_eq!(
            state
                .recipients(&news, Sender::live(Some(SessionId(2))))
                .map(ids),
            Ok(vec![1]),
            "bob, with no claim, posts under the default"
        );
        assert_eq!(state.ungranted_rooms("alice"), Vec::<RoomName>::new());
        state.add_member(&room("sports"), &Arc::from("alice"));
        assert_eq!(state.ungranted_rooms("alice"), [room("sports")]);
    }

    #[test]
    fn a_renewed_identity_moves_every_connection_of_the_user_to_its_new_role() {
        let (mut state, _queues) = state_with(&[
            (1, "alice", "USER"),
            (2, "alice", "USER"),
            (3, "bob", "ADMIN"),
        ]);
        state
            .renew_identity(SessionId(1), &identity("alice", "ADMIN"))
            .expect("same user");
        let to_admins = Target::Role("ADMIN".into());
        assert_eq!(
            ids(state
                .recipients(&to_admins, Sender::Server)
                .expect("routed")),
            [1, 2, 3]
        );
        assert_eq!(
            state.renew_identity(SessionId(3), &identity("alice", "USER")),
            Err(HubError::SessionGone),
            "another user's token never renames a session"
        );
    }

    #[test]
    fn presence_is_announced_on_a_users_first_connection_and_last_disconnection_only() {
        let mut state = State::default();
        let alice = identity("alice", "USER");
        let (first, _q1) = Outbound::channel(8);
        let (second, _q2) = Outbound::channel(8);
        assert!(
            state
                .add_session(SessionId(1), &alice, first, opened(), 4)
                .first
        );
        let again = state.add_session(SessionId(2), &alice, second, opened(), 4);
        assert!(!again.first);
        assert_eq!(again.user.sessions, 2);

        let one_left = state.remove_session(SessionId(1)).expect("known session");
        assert!(!one_left.last);
        let gone = state.remove_session(SessionId(2)).expect("known session");
        assert!(gone.last);
        assert_eq!(
            gone.user.map(|u| u.sessions),
            Some(0),
            "named as they were, no sessions"
        );
        assert!(state.users.is_empty());
        assert!(
            state.remove_session(SessionId(2)).is_none(),
            "removing twice is a no-op"
        );
    }

    #[test]
    fn live_events_wait_behind_the_catch_up_and_follow_it_in_order() {
        let mut state = State::default();
        let (outbound, mut queue) = Outbound::channel(8);
        state.add_session(
            SessionId(1),
            &identity("alice", "USER"),
            outbound,
            opened(),
            4,
        );

        let live = Event::new("broadcast-message", &"live");
        assert_eq!(state.send_to([SessionId(1)], &live), 1, "taken (held)");
        assert!(
            names(&mut queue).is_empty(),
            "nothing goes out during catch-up"
        );

        // The replay itself goes straight to the queue, ahead of the held event.
        state.sessions[&SessionId(1)]
            .outbound
            .send(Event::new("replayed", &1));
        state.end_replay(SessionId(1));
        assert_eq!(names(&mut queue), ["replayed", "broadcast-message"]);

        state.send_to([SessionId(1)], &Event::new("after", &2));
        assert_eq!(names(&mut queue), ["after"], "caught up: straight out");
    }

    #[test]
    fn a_connection_that_holds_too_much_during_catch_up_is_a_slow_consumer() {
        let mut state = State::default();
        let (outbound, queue) = Outbound::channel(8);
        state.add_session(
            SessionId(1),
            &identity("alice", "USER"),
            outbound,
            opened(),
            2,
        );
        let event = Event::new("broadcast-message", &"x");
        assert_eq!(state.send_to([SessionId(1), SessionId(1)], &event), 2);
        assert_eq!(
            state.send_to([SessionId(1)], &event),
            0,
            "the third is refused"
        );
        assert_eq!(queue.closer.reason(), Some(CloseReason::SlowConsumer));
    }

    #[test]
    fn open_connections_are_counted_per_transport_as_they_come_and_go() {
        let mut state = State::default();
        let alice = identity("alice", "USER");
        let (ws, _q1) = Outbound::channel(8);
        let (sio, _q2) = Outbound::channel(8);
        let socketio = Opened {
            transport: Transport::SocketIo,
            ..opened()
        };
        state.add_session(SessionId(1), &alice, ws, opened(), 4);
        state.add_session(SessionId(2), &alice, sio, socketio, 4);
        assert_eq!(state.open, OpenConnections { ws: 1, socketio: 1 });

        state.remove_session(SessionId(2));
        state.remove_session(SessionId(2));
        assert_eq!(
            state.open,
            OpenConnections { ws: 1, socketio: 0 },
            "a second removal of one session counts once"
        );
        state.remove_session(SessionId(1));
        assert_eq!(state.open, OpenConnections::default());
    }
}
