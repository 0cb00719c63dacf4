//! The maps behind the hub's lock, and every decision taken under it: who is online, who a
//! message goes to, whether a connection is a user's first or last (presence), and whether a
//! live event goes out now or waits behind a connection's catch-up. Nothing here locks,
//! awaits or touches the store, so each decision is unit-tested on its own (below); the hub
//! takes the lock, asks, and hands the records to the store.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::OnlineUser;
use super::presence::Window;
use super::publish::{Published, Target};
use super::{CloseReason, Event, HubError, Outbound, SessionId, Transport};
use crate::auth::Identity;
use crate::protocol::payloads::RoomName;
use crate::protocol::wire::{self, UserObject};

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

/// Idempotency keys seen in this run, oldest evicted first; older keys are found in the
/// database (their messages are long committed).
#[derive(Default)]
pub(super) struct RecentKeys {
    map: HashMap<(Arc<str>, String), Published>,
    order: VecDeque<(Arc<str>, String)>,
}

/// Keys remembered in memory.
const RECENT_KEYS: usize = 100_000;

impl RecentKeys {
    pub fn get(&self, sender: &Arc<str>, key: &str) -> Option<&Published> {
        self.map.get(&(sender.clone(), key.to_owned()))
    }

    pub fn insert(&mut self, sender: Arc<str>, key: String, published: Published) {
        if self.order.len() >= RECENT_KEYS
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        self.order.push_back((sender.clone(), key.clone()));
        self.map.insert((sender, key), published);
    }

    /// Forgets `key` if it still names the message `failed`: that message was not stored, so
    /// a resend must be published anew rather than answered as its duplicate. Matched by its
    /// commit, not its id (sequenced messages all have id 0 until they commit). (Its place in
    /// `order` stays; evicting it later at worst sends a lookup to the database.)
    pub fn forget(&mut self, sender: &Arc<str>, key: &str, failed: &Published) {
        let entry = (sender.clone(), key.to_owned());
        if self
            .map
            .get(&entry)
            .is_some_and(|p| p.is_same_message(failed))
        {
            self.map.remove(&entry);
        }
    }
}

#[derive(Default)]
pub(super) struct State {
    pub sessions: HashMap<SessionId, SessionEntry>,
    /// Online users.
    pub users: HashMap<Arc<str>, UserEntry>,
    /// Room → member users, online or not (membership is stored and outlives connections).
    pub rooms: HashMap<RoomName, BTreeSet<Arc<str>>>,
    /// User → rooms, online or not.
    pub memberships: HashMap<Arc<str>, BTreeSet<RoomName>>,
    /// Every user ever seen (private messages to others are refused).
    pub known_users: HashSet<Arc<str>>,
    pub recent_keys: RecentKeys,
    /// `PRESENCE_EVENTS=diff`: the changes of the open window.
    pub presence_window: Window,
    /// Live connections per transport, kept as they come and go so that a scrape of
    /// `/metrics` reads two numbers instead of walking the sessions under the lock.
    pub open: OpenConnections,
    /// The other nodes' users, in a cluster (`cluster.rs`).
    pub remote: super::cluster::RemotePresence,
}

/// Live connections per transport.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpenConnections {
    /// `/ws`.
    pub ws: usize,
    /// Socket.IO.
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

    /// The live sessions a message to `target` goes to, the sender's own connection left out.
    /// A room message from a connection whose user is not a member is refused.
    pub fn recipients(
        &self,
        target: &Target,
        sender: Option<SessionId>,
    ) -> Result<Vec<SessionId>, HubError> {
        let but_sender = |id: &SessionId| Some(*id) != sender;
        Ok(match target {
            Target::All => self.sessions.keys().copied().filter(but_sender).collect(),
            Target::Room(room) => {
                if let Some(session) = sender {
                    let user_id = self.user_id_of(session)?;
                    if !self.is_member(room, &user_id) {
                        return Err(HubError::NotMember(room.to_string()));
                    }
                }
                self.room_sessions(room, sender)
            }
            // Every connection of the user, the sending one included: a private message to
            // yourself reaches all your connections.
            Target::User(user_id) => self.sessions_of(user_id, None).collect(),
            Target::Role(role) => self.role_sessions(role, sender),
        })
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
        if let Some(rooms) = self.memberships.get_mut(user_id) {
            rooms.remove(room);
            if rooms.is_empty() {
                self.memberships.remove(user_id);
            }
        }
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

    #[test]
    fn a_room_message_reaches_every_connection_of_every_member_but_the_sending_one() {
        let (mut state, _queues) = state_with(&[
            (1, "alice", "USER"),
            (2, "alice", "USER"),
            (3, "bob", "USER"),
            (4, "carol", "USER"),
        ]);
        state.add_member(&room("ops"), &Arc::from("alice"));
        state.add_member(&room("ops"), &Arc::from("bob"));
        state.add_member(&room("ops"), &Arc::from("dave")); // offline member: no session

        let to_room = Target::Room(room("ops"));
        assert_eq!(
            ids(state
                .recipients(&to_room, Some(SessionId(1)))
                .expect("routed")),
            [2, 3]
        );
        assert_eq!(
            state
                .recipients(&to_room, Some(SessionId(4)))
                .expect_err("refused"),
            HubError::NotMember("ops".into()),
            "carol is not a member"
        );
        assert_eq!(
            ids(state.recipients(&to_room, None).expect("routed")),
            [1, 2, 3],
            "from REST"
        );
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
            ids(state.recipients(&to_admins, None).expect("routed")),
            [1, 2, 3]
        );
        assert_eq!(
            state.renew_identity(SessionId(3), &identity("alice", "USER")),
            Err(HubError::SessionGone),
            "another user's token never renames a session"
        );
    }

    #[test]
    fn other_targets_choose_their_recipients() {
        let (state, _queues) = state_with(&[
            (1, "alice", "USER"),
            (2, "alice", "USER"),
            (3, "bob", "ADMIN"),
        ]);
        let from_alice = Some(SessionId(1));
        assert_eq!(
            ids(state.recipients(&Target::All, from_alice).expect("routed")),
            [2, 3]
        );
        let to_alice = Target::User("alice".into());
        assert_eq!(
            ids(state.recipients(&to_alice, from_alice).expect("routed")),
            [1, 2],
            "to yourself"
        );
        let to_admins = Target::Role("ADMIN".into());
        assert_eq!(
            ids(state.recipients(&to_admins, None).expect("routed")),
            [3]
        );
        let to_nobody = Target::User("zed".into());
        assert!(
            state
                .recipients(&to_nobody, None)
                .expect("routed")
                .is_empty()
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
