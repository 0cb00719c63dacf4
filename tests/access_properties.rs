//! Property test of room access: for random room policy tables, random users (a role, with or
//! without a `rooms` claim, some entries read-only) and random sequences of joins, leaves,
//! room messages, broadcasts, token renewals, new connections with another token and server
//! sends to a room, what every connection receives from the real hub (over a real SQLite
//! store in a temporary directory) is exactly what a small model of the rules says, and
//! every refusal is the model's.
//!
//! The model (`Model` below) is written from the documents (`docs/protocol.md`, the contract's
//! section 15, the `ROOM_POLICIES` format), not from `src/access`: the first policy whose
//! pattern matches a room decides; a `rooms` claim binds under every rule; admins go anywhere
//! and post anywhere but in `server` rooms; `members` rooms admit nobody through `join-room`;
//! a read-only grant cannot post; a renewed token ends the memberships it no longer allows.
//! It shares nothing with the implementation but the error type the hub answers with.
//!
//! The join hook is left out (it needs an HTTP endpoint), and so are server-side members
//! (not reachable yet): both are covered by their own tests.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{Value, json};
use switchboard::config::{PresenceSettings, RoomJoinDefault};
use switchboard::internals::{
    Claims, HookAnswer, Hub, Identity, Metrics, Outbound, OutboundQueue, Publish, RoomAccess,
    RoomName, SessionId, SessionMeta, Store, Transport, load_policies,
};
use switchboard::{Forbidden, HubError, PublishError, Settings, Target};

/// The room names every case plays with: small, so that patterns overlap often.
const ROOMS: &[&str] = &["a1", "a2", "ab", "b1", "b2"];
/// Patterns of policies and claims over [`ROOMS`] (`*` matches any run of characters).
const PATTERNS: &[&str] = &["a*", "b*", "*1", "*2", "a1", "b2", "ab", "a*b", "*"];
const ROLES: &[&str] = &["USER", "STAFF", "ADMIN"];
/// `ADMIN_ROLES` of every case.
const ADMIN: &str = "ADMIN";
/// Plenty: `MAX_ROOMS_PER_USER` is not what this test is about.
const MAX_ROOMS: usize = 100;
/// Room in every connection's queue for what one operation sends (drained after each).
const QUEUE: usize = 256;
const SECRET: &str = "access-property-secret-0123456789";
const TIMESTAMP: &str = "2026-12-01T00:00:00.000Z";

// ---------------------------------------------------------------------------------------
// What a case is made of.

#[derive(Debug, Clone, PartialEq)]
enum JoinRule {
    Anyone,
    Token,
    Roles(Vec<&'static str>),
    Members,
}

#[derive(Debug, Clone, PartialEq)]
enum PostRule {
    Members,
    Roles(Vec<&'static str>),
    Server,
}

/// One row of `ROOM_POLICIES`.
#[derive(Debug, Clone)]
struct Row {
    pattern: &'static str,
    join: JoinRule,
    post: PostRule,
}

/// What a token says about access: its role and its `rooms` claim, each entry a pattern
/// and whether it may post (`false`: `{"room": pattern, "publish": false}`).
#[derive(Debug, Clone)]
struct Token {
    role: &'static str,
    rooms: Option<Vec<(&'static str, bool)>>,
}

/// The gateway's settings and its users, each with its first token and its connections.
#[derive(Debug, Clone)]
struct World {
    rows: Vec<Row>,
    /// `ROOM_JOIN_DEFAULT=token` (else `anyone`).
    token_default: bool,
    broadcast_roles: Vec<&'static str>,
    users: Vec<(Token, usize)>,
}

/// One thing a client or the server does. `user` and `conn` are taken modulo the number
/// of users and of that user's connections, so that every generated value means something
/// and shrinking keeps it meaningful.
#[derive(Debug, Clone)]
enum Op {
    Join {
        user: usize,
        conn: usize,
        room: &'static str,
    },
    Leave {
        user: usize,
        conn: usize,
        room: &'static str,
    },
    /// `room-message` from a connection.
    Post {
        user: usize,
        conn: usize,
        room: &'static str,
    },
    /// `send-message` to everyone.
    Broadcast { user: usize, conn: usize },
    /// `refresh-token` with another role or claim.
    Renew {
        user: usize,
        conn: usize,
        token: Token,
    },
    /// The server's message to a room (REST, the embedded API).
    ServerPost { room: &'static str },
    /// A new connection of `user` with another token, which becomes the user's newest.
    Connect { user: usize, token: Token },
}

impl Op {
    /// The same operation with `user` and `conn` brought within the connections open now
    /// (`conns`: how many each user has).
    fn within(&self, conns: &[usize]) -> Self {
        let user = |u: usize| u % conns.len();
        let conn = |u: usize, c: usize| c % conns[user(u)];
        match self.clone() {
            Self::Join {
                user: u,
                conn: c,
                room,
            } => Self::Join {
                user: user(u),
                conn: conn(u, c),
                room,
            },
            Self::Leave {
                user: u,
                conn: c,
                room,
            } => Self::Leave {
                user: user(u),
                conn: conn(u, c),
                room,
            },
            Self::Post {
                user: u,
                conn: c,
                room,
            } => Self::Post {
                user: user(u),
                conn: conn(u, c),
                room,
            },
            Self::Broadcast { user: u, conn: c } => Self::Broadcast {
                user: user(u),
                conn: conn(u, c),
            },
            Self::Renew {
                user: u,
                conn: c,
                token,
            } => Self::Renew {
                user: user(u),
                conn: conn(u, c),
                token,
            },
            Self::Connect { user: u, token } => Self::Connect {
                user: user(u),
                token,
            },
            other @ Self::ServerPost { .. } => other,
        }
    }
}

fn roles() -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(ROLES.to_vec(), 1..=2)
}

fn join_rule() -> impl Strategy<Value = JoinRule> {
    prop_oneof![
        Just(JoinRule::Anyone),
        Just(JoinRule::Token),
        roles().prop_map(JoinRule::Roles),
        Just(JoinRule::Members),
    ]
}

fn post_rule() -> impl Strategy<Value = PostRule> {
    prop_oneof![
        2 => Just(PostRule::Members),
        1 => roles().prop_map(PostRule::Roles),
        1 => Just(PostRule::Server),
    ]
}

fn pattern() -> impl Strategy<Value = &'static str> {
    prop::sample::select(PATTERNS)
}

fn room() -> impl Strategy<Value = &'static str> {
    prop::sample::select(ROOMS)
}

/// A table of up to four rows; a `*` row ends it (the file refuses rows after one).
fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(
        (pattern(), join_rule(), post_rule()).prop_map(|(pattern, join, post)| Row {
            pattern,
            join,
            post,
        }),
        0..=4,
    )
    .prop_map(|mut rows| {
        if let Some(i) = rows.iter().position(|r| r.pattern == "*") {
            rows.truncate(i + 1);
        }
        rows
    })
}

fn token() -> impl Strategy<Value = Token> {
    let entry = (pattern(), prop::bool::weighted(0.7));
    (
        prop::sample::select(ROLES),
        prop::option::weighted(0.6, prop::collection::vec(entry, 0..=3)),
    )
        .prop_map(|(role, rooms)| Token { role, rooms })
}

fn world() -> impl Strategy<Value = World> {
    (
        rows(),
        any::<bool>(),
        prop::sample::subsequence(vec!["STAFF"], 0..=1),
        prop::collection::vec((token(), 1_usize..=2), 2..=4),
    )
        .prop_map(|(rows, token_default, broadcast_roles, users)| World {
            rows,
            token_default,
            broadcast_roles,
            users,
        })
}

fn op() -> impl Strategy<Value = Op> {
    let who = (0_usize..4, 0_usize..2);
    prop_oneof![
        4 => (who.clone(), room()).prop_map(|((user, conn), room)| Op::Join { user, conn, room }),
        1 => (who.clone(), room()).prop_map(|((user, conn), room)| Op::Leave { user, conn, room }),
        4 => (who.clone(), room()).prop_map(|((user, conn), room)| Op::Post { user, conn, room }),
        1 => who.clone().prop_map(|(user, conn)| Op::Broadcast { user, conn }),
        2 => (who, token()).prop_map(|((user, conn), token)| Op::Renew { user, conn, token }),
        1 => room().prop_map(|room| Op::ServerPost { room }),
        1 => (0_usize..4, token()).prop_map(|(user, token)| Op::Connect { user, token }),
    ]
}

// ---------------------------------------------------------------------------------------
// The model: the rules as the documents state them.

/// Whether `pattern` matches all of `room`: `*` stands for any run of characters.
fn matches(pattern: &str, room: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == room,
        Some((head, tail)) => {
            room.strip_prefix(head).is_some_and(|rest| {
                // ASCII names only, so every index is a character boundary.
                (0..=rest.len()).any(|skip| matches(tail, &rest[skip..]))
            })
        }
    }
}

/// A connection: its user's index and its own among the user's.
type Conn = (usize, usize);

/// What one operation must do: its answer, and what each connection receives, in order.
struct Expected {
    answer: Result<(), HubError>,
    received: Received,
}

struct Model<'w> {
    world: &'w World,
    /// Each user's newest token.
    tokens: Vec<Token>,
    /// How many connections each user has (numbered from 0, none closes).
    conns: Vec<usize>,
    /// Room → member users. Rooms in name order, as memberships are kept.
    members: BTreeMap<&'static str, BTreeSet<usize>>,
}

impl<'w> Model<'w> {
    fn new(world: &'w World) -> Self {
        Self {
            world,
            tokens: world.users.iter().map(|(t, _)| t.clone()).collect(),
            conns: world.users.iter().map(|(_, n)| *n).collect(),
            members: BTreeMap::new(),
        }
    }

    /// The join and post rules of `room`: the first matching row, else the default's.
    fn policy(&self, room: &str) -> (JoinRule, PostRule) {
        match self.world.rows.iter().find(|r| matches(r.pattern, room)) {
            Some(row) => (row.join.clone(), row.post.clone()),
            None if self.world.token_default => (JoinRule::Token, PostRule::Members),
            None => (JoinRule::Anyone, PostRule::Members),
        }
    }

    /// What a token's claim says of `room`: `None` without a claim; `Some(None)` when the
    /// claim does not list it; `Some(Some(may_post))` when it does (entries add up).
    fn grant(token: &Token, room: &str) -> Option<Option<bool>> {
        let entries = token.rooms.as_ref()?;
        let matching: Vec<bool> = entries
            .iter()
            .filter(|(p, _)| matches(p, room))
            .map(|(_, publish)| *publish)
            .collect();
        Some((!matching.is_empty()).then(|| matching.contains(&true)))
    }

    fn may_be_in(&self, token: &Token, room: &str) -> bool {
        if token.role == ADMIN {
            return true;
        }
        let grant = Self::grant(token, room);
        if grant == Some(None) {
            return false;
        }
        match self.policy(room).0 {
            JoinRule::Anyone => true,
            JoinRule::Token => matches!(grant, Some(Some(_))),
            JoinRule::Roles(roles) => roles.contains(&token.role),
            JoinRule::Members => false,
        }
    }

    fn is_member(&self, user: usize, room: &str) -> bool {
        self.members.get(room).is_some_and(|m| m.contains(&user))
    }

    /// Every connection of the gateway.
    fn conns(&self) -> impl Iterator<Item = Conn> + '_ {
        self.conns
            .iter()
            .enumerate()
            .flat_map(|(user, n)| (0..*n).map(move |c| (user, c)))
    }

    /// The connections of `room`'s members.
    fn room_conns(&self, room: &str) -> Vec<Conn> {
        self.conns()
            .filter(|(user, _)| self.is_member(*user, room))
            .collect()
    }

    fn apply(&mut self, index: usize, op: &Op) -> Expected {
        let mut received: Received = self.conns().map(|c| (c, Vec::new())).collect();
        let answer = match *op {
            Op::Join { user, conn, room } => {
                if !self.may_be_in(&self.tokens[user], room) {
                    Err(HubError::Forbidden(Forbidden::Join))
                } else {
                    if !self.is_member(user, room) {
                        self.members.entry(room).or_default().insert(user);
                        let to = self.room_conns(room);
                        tell(
                            &mut received,
                            &to,
                            Some((user, conn)),
                            presence("user-joined-room", room, user),
                        );
                    }
                    Ok(())
                }
            }
            Op::Leave { user, conn, room } => {
                if self.is_member(user, room) {
                    let to = self.room_conns(room);
                    tell(
                        &mut received,
                        &to,
                        Some((user, conn)),
                        presence("user-left-room", room, user),
                    );
                    self.members.entry(room).or_default().remove(&user);
                    Ok(())
                } else {
                    Err(HubError::NotMember(room.into()))
                }
            }
            Op::Post { user, conn, room } => {
                let refused = self.post_refusal(user, room);
                if refused.is_none() {
                    tell(
                        &mut received,
                        &self.room_conns(room),
                        Some((user, conn)),
                        mark(index),
                    );
                }
                refused.map_or(Ok(()), Err)
            }
            Op::Broadcast { user, conn } => {
                let role = self.tokens[user].role;
                let allowed = self.world.broadcast_roles.is_empty()
                    || self.world.broadcast_roles.contains(&role)
                    || role == ADMIN;
                if allowed {
                    let everyone: Vec<Conn> = self.conns().collect();
                    tell(&mut received, &everyone, Some((user, conn)), mark(index));
                    Ok(())
                } else {
                    Err(HubError::Forbidden(Forbidden::Broadcast))
                }
            }
            Op::Renew {
                user, ref token, ..
            } => {
                self.renew(user, token, None, &mut received);
                Ok(())
            }
            Op::Connect { user, ref token } => {
                let new = (user, self.conns[user]);
                self.conns[user] += 1;
                let dropped = self.renew(user, token, Some(new), &mut received);
                let rooms: Vec<&str> = self
                    .members
                    .iter()
                    .filter(|(_, members)| members.contains(&user))
                    .map(|(room, _)| *room)
                    .collect();
                let welcome = std::iter::once(format!("connected rooms={}", rooms.join(",")));
                let told = dropped.iter().map(|room| not_granted(room));
                received.insert(new, welcome.chain(told).collect());
                Ok(())
            }
            Op::ServerPost { room } => {
                tell(&mut received, &self.room_conns(room), None, mark(index));
                Ok(())
            }
        };
        Expected { answer, received }
    }

    /// `user` presents `token`, its newest from now on: the memberships it does not allow
    /// end, in room order; the room's other connections hear `user-left-room`, the user's
    /// own (but `new`, told after its welcome) `left-room`. Returns the rooms left.
    fn renew(
        &mut self,
        user: usize,
        token: &Token,
        new: Option<Conn>,
        received: &mut Received,
    ) -> Vec<&'static str> {
        self.tokens[user] = token.clone();
        let own: Vec<Conn> = self.conns().filter(|(u, _)| *u == user).collect();
        let rooms: Vec<&'static str> = self
            .members
            .iter()
            .filter(|(room, members)| members.contains(&user) && !self.may_be_in(token, room))
            .map(|(room, _)| *room)
            .collect();
        for room in &rooms {
            self.members.entry(room).or_default().remove(&user);
            let presence = presence("user-left-room", room, user);
            tell(received, &self.room_conns(room), None, presence);
            tell(received, &own, new, not_granted(room));
        }
        rooms
    }

    /// Why `user` may not post in `room`, if it may not: members only; then the post rule
    /// (`server` shuts out everyone, admins too), admins, a read-only grant.
    fn post_refusal(&self, user: usize, room: &str) -> Option<HubError> {
        if !self.is_member(user, room) {
            return Some(HubError::NotMember(room.into()));
        }
        let token = &self.tokens[user];
        let forbidden = Some(HubError::Forbidden(Forbidden::Post));
        let post = self.policy(room).1;
        if post == PostRule::Server {
            return forbidden;
        }
        if token.role == ADMIN {
            return None;
        }
        if Self::grant(token, room) == Some(Some(false)) {
            return forbidden;
        }
        match post {
            PostRule::Roles(roles) if !roles.contains(&token.role) => forbidden,
            _ => None,
        }
    }
}

/// What each connection received, in order.
type Received = BTreeMap<Conn, Vec<String>>;

/// `what` reaches every connection of `conns` but `except`.
fn tell(received: &mut Received, conns: &[Conn], except: Option<Conn>, what: String) {
    for c in conns.iter().filter(|c| Some(**c) != except) {
        received.entry(*c).or_default().push(what.clone());
    }
}

fn not_granted(room: &str) -> String {
    format!("left-room {room} not_granted")
}

fn user_id(user: usize) -> String {
    format!("u{user}")
}

/// A room presence event as the test writes it down.
fn presence(event: &str, room: &str, user: usize) -> String {
    format!("{event} {room} {}", user_id(user))
}

/// A message as the test writes it down: the operation that sent it.
fn mark(index: usize) -> String {
    format!("message #{index}")
}

// ---------------------------------------------------------------------------------------
// The real hub, driven the way the commands drive it.

/// What a connection received, written down as the model writes it.
fn describe(name: &str, data: &Value) -> String {
    let text = |field: &str| data[field].as_str().unwrap_or("?").to_owned();
    match name {
        "user-joined-room" | "user-left-room" => format!(
            "{name} {} {}",
            text("room"),
            data["user"]["userId"].as_str().unwrap_or("?")
        ),
        "left-room" => format!("left-room {} {}", text("room"), text("reason")),
        "connected" => {
            let rooms = data["rooms"].as_array().into_iter().flatten();
            let rooms: Vec<&str> = rooms.map(|r| r.as_str().unwrap_or("?")).collect();
            format!("connected rooms={}", rooms.join(","))
        }
        "room-message" | "broadcast-message" => format!("message #{}", data["mark"]),
        other => format!("{other} {data}"),
    }
}

fn drain(queue: &mut OutboundQueue) -> Vec<String> {
    std::iter::from_fn(|| queue.rx.try_recv().ok())
        .map(|event| {
            let data: Value = serde_json::from_str(event.data_json()).unwrap_or(Value::Null);
            describe(event.name(), &data)
        })
        .collect()
}

fn identity(user: usize, token: &Token) -> Result<Identity, TestCaseError> {
    let rooms = token.rooms.as_ref().map(|entries| {
        entries
            .iter()
            .map(|(pattern, publish)| match publish {
                true => json!(pattern),
                false => json!({"room": pattern, "publish": false}),
            })
            .collect::<Value>()
    });
    let claims = Claims {
        sub: Some(user_id(user)),
        role: Some(token.role.into()),
        exp: Some(u64::MAX / 2),
        rooms,
        ..Claims::default()
    };
    Identity::try_from(claims).map_err(|e| TestCaseError::fail(format!("claims: {e}")))
}

/// The `ROOM_POLICIES` file of `rows`.
fn policy_file(rows: &[Row]) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            let join = match &row.join {
                JoinRule::Anyone => json!("anyone"),
                JoinRule::Token => json!("token"),
                JoinRule::Roles(roles) => json!({ "roles": roles }),
                JoinRule::Members => json!("members"),
            };
            let post = match &row.post {
                PostRule::Members => json!("members"),
                PostRule::Roles(roles) => json!({ "roles": roles }),
                PostRule::Server => json!("server"),
            };
            json!({ "match": row.pattern, "join": join, "post": post })
        })
        .collect();
    json!({ "rooms": rows })
}

/// One gateway's hub over its own store, and its connections.
struct Gateway {
    hub: Hub,
    store: Store,
    sessions: BTreeMap<Conn, (SessionId, OutboundQueue)>,
    _dir: tempfile::TempDir,
}

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

impl Gateway {
    async fn start(world: &World) -> Result<Self, TestCaseError> {
        let dir = tempfile::tempdir().map_err(fail)?;
        let policies = dir.path().join("policies.json");
        std::fs::write(&policies, policy_file(&world.rows).to_string()).map_err(fail)?;
        let mut settings = Settings::for_database(dir.path().join("access.db"), SECRET);
        settings.admin_roles = vec![ADMIN.into()];
        settings.access.policies_file = Some(policies);
        settings.access.join_default = match world.token_default {
            true => RoomJoinDefault::Token,
            false => RoomJoinDefault::Anyone,
        };
        settings.access.broadcast_roles = world
            .broadcast_roles
            .iter()
            .map(|r| r.to_string())
            .collect();
        let store = Store::open(&settings.database, Metrics::shared())
            .await
            .map_err(fail)?;
        let hub = Hub::load(
            store.clone(),
            Metrics::shared(),
            PresenceSettings::default(),
        )
        .await
        .map_err(fail)?;
        hub.set_room_access(RoomAccess::new(
            &settings,
            load_policies(&settings).map_err(fail)?,
        ));
        let mut gateway = Self {
            hub,
            store,
            sessions: BTreeMap::new(),
            _dir: dir,
        };
        for (user, (token, conns)) in world.users.iter().enumerate() {
            for _ in 0..*conns {
                let conn = gateway.connect(user, token).await?;
                let welcome = drain(
                    &mut gateway
                        .sessions
                        .get_mut(&conn)
                        .ok_or_else(|| fail("opened"))?
                        .1,
                );
                prop_assert_eq!(welcome, ["connected rooms="], "a fresh gateway's welcome");
            }
        }
        Ok(gateway)
    }

    /// Opens a new connection of `user` with `token`, caught up at once (what it hears
    /// waits in its queue).
    async fn connect(&mut self, user: usize, token: &Token) -> Result<Conn, TestCaseError> {
        let conn = self.sessions.range((user, 0)..(user + 1, 0)).count();
        let (outbound, queue) = Outbound::channel(QUEUE);
        let id = self.store.next_session_id().await.map_err(fail)?;
        let meta = SessionMeta {
            transport: Transport::WebSocket,
            remote_addr: None,
            user_agent: None,
        };
        let registered = self
            .hub
            .connect(id, identity(user, token)?, meta, outbound, QUEUE);
        self.hub.end_replay(registered.session);
        self.sessions
            .insert((user, conn), (registered.session, queue));
        Ok((user, conn))
    }

    fn session(&self, user: usize, conn: usize) -> SessionId {
        self.sessions[&(user, conn)].0
    }

    /// Does `op` through the hub's public calls, as the commands do: its answer, and for a
    /// message how many connections it reached.
    async fn apply(&mut self, index: usize, op: &Op) -> Result<Answer, TestCaseError> {
        let payload = |id: u64| json!({ "id": id, "mark": index });
        let chat = |user, conn| Publish::chat(self.session(user, conn), user_id(user).into(), 1000);
        let to_room = |room| Target::Room(room_name(room));
        Ok(match *op {
            Op::Join { user, conn, room } => self
                .hub
                .join_room(
                    self.session(user, conn),
                    &room_name(room),
                    MAX_ROOMS,
                    HookAnswer::NotAsked,
                )
                .map(|_| None),
            Op::Leave { user, conn, room } => self
                .hub
                .leave_room(self.session(user, conn), &room_name(room))
                .map(|()| None),
            Op::Post { user, conn, room } => {
                let message = chat(user, conn).message(
                    "room-message",
                    to_room(room),
                    "hi",
                    TIMESTAMP,
                    &payload,
                );
                self.publish(message).await?
            }
            Op::Broadcast { user, conn } => {
                let everyone = chat(user, conn).message(
                    "broadcast-message",
                    Target::All,
                    "hi",
                    TIMESTAMP,
                    &payload,
                );
                self.publish(everyone).await?
            }
            Op::Renew {
                user,
                conn,
                ref token,
            } => self
                .hub
                .renew_identity(self.session(user, conn), &identity(user, token)?)
                .map(|()| None),
            Op::Connect { user, ref token } => {
                self.connect(user, token).await?;
                Ok(None)
            }
            Op::ServerPost { room } => {
                let message = Publish::system(1000).message(
                    "room-message",
                    to_room(room),
                    "hi",
                    TIMESTAMP,
                    &payload,
                );
                self.publish(message).await?
            }
        })
    }

    async fn publish(&self, message: Publish<'_, Value>) -> Result<Answer, TestCaseError> {
        match self.hub.publish(message).await {
            Ok(published) => Ok(Ok(Some(published.delivered))),
            Err(PublishError::Refused(refused)) => Ok(Err(refused)),
            Err(other) => Err(fail(format!("not a refusal of the rules: {other}"))),
        }
    }
}

/// What the hub answered: a refusal, or for a message how many connections it reached.
type Answer = Result<Option<usize>, HubError>;

fn room_name(room: &str) -> RoomName {
    RoomName::parse(room).expect("the test's room names are valid")
}

async fn run(world: World, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut gateway = Gateway::start(&world).await?;
    let mut model = Model::new(&world);
    for (index, op) in ops.iter().enumerate() {
        let op = &op.within(&model.conns);
        let got = gateway.apply(index, op).await?;
        let expected = model.apply(index, op);
        prop_assert_eq!(
            got.clone().map(|_| ()),
            expected.answer.clone(),
            "answer to op #{} {:?}",
            index,
            op
        );
        for (conn, (_, queue)) in &mut gateway.sessions {
            let received = drain(queue);
            let want = expected.received.get(conn).cloned().unwrap_or_default();
            prop_assert_eq!(
                &received,
                &want,
                "what connection {:?} received after op #{} {:?}",
                conn,
                index,
                op
            );
            prop_assert!(!queue.closer.is_closed(), "connection {conn:?} was closed");
        }
        if let Ok(Some(delivered)) = got {
            let reached = expected.received.values().filter(|r| !r.is_empty()).count();
            prop_assert_eq!(
                delivered,
                reached,
                "delivered count of op #{} {:?}",
                index,
                op
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_connection_receives_exactly_what_the_access_rules_allow(
        world in world(),
        ops in prop::collection::vec(op(), 1..=30),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(fail)?;
        runtime.block_on(run(world, ops))?;
    }
}
