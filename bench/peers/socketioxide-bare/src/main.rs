//! socketioxide-bare: a reference peer for BENCHMARKS ONLY.
//!
//! switchboard's Socket.IO events and payloads (the same as bench/peers/node-socketio/server.js)
//! on a bare socketioxide server, in memory: what a Rust user would write in an afternoon with
//! the library switchboard stands on. Next to switchboard it shows what persistence and
//! switchboard's own routing cost above socketioxide. Deliberately left out, as in the Node
//! peer: persistence, offline queues, `sync`/recovery, idempotency keys, the REST API, rate
//! limits, the plain `/ws` endpoint. Not a product; do not deploy it.
//!
//!   PORT=0 JWT_SECRET=... socketioxide-bare  ->  stderr: "listening on http://127.0.0.1:<port>"
//!
//! Env: PORT (default 3100; 0 = any free port), JWT_SECRET (required; HS256 tokens only),
//! MAX_BUFFER_SIZE (packets queued per socket before emits to it fail; default 8192, the
//! `OUTBOUND_QUEUE_CAPACITY` bench/run.py gives switchboard; socketioxide's own default is 128).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::serve::ListenerExt;
use axum::{Json, Router, routing::get};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts, Value as Packet};
use socketioxide::socket::{Sid, Socket};
use tokio::sync::oneshot;

// ---- Auth (HS256 only) ------------------------------------------------------------------------

/// A refusal: the text of a `connect_error`, or of an `error` event and a failed ack.
#[derive(Debug)]
struct Refusal(String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

fn refuse<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(message.into()))
}

#[derive(Clone)]
struct Jwt(Arc<(DecodingKey, Validation)>);

#[derive(Deserialize)]
struct Claims {
    sub: String,
    username: Option<String>,
    preferred_username: Option<String>,
    name: Option<String>,
    role: Option<String>,
    roles: Option<Vec<String>>,
}

/// Who a socket is; stored in the socket's extensions by the connect middleware.
#[derive(Clone)]
struct Identity {
    user_id: String,
    username: String,
    role: String,
}

impl Jwt {
    fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256); // never taken from the token
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Jwt(Arc::new((
            DecodingKey::from_secret(secret.as_bytes()),
            validation,
        )))
    }

    fn verify(&self, token: &str) -> Result<Identity, Refusal> {
        let claims = match jsonwebtoken::decode::<Claims>(token, &self.0.0, &self.0.1) {
            Ok(data) => data.claims,
            Err(e) if *e.kind() == ErrorKind::ExpiredSignature => return refuse("token expired"),
            Err(_) => return refuse("invalid token"),
        };
        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        if claims.sub.is_empty() {
            return refuse("invalid token");
        }
        let username = non_empty(claims.username)
            .or(non_empty(claims.preferred_username))
            .or(non_empty(claims.name))
            .unwrap_or_else(|| claims.sub.clone());
        let role = non_empty(claims.role)
            .or(non_empty(claims.roles.and_then(|r| r.into_iter().next())))
            .unwrap_or_else(|| "USER".into());
        Ok(Identity {
            user_id: claims.sub,
            username,
            role,
        })
    }
}

#[derive(Deserialize)]
struct Auth {
    token: Option<String>,
}

/// Connect middleware: the token from the handshake's `auth.token`, else `Authorization:
/// Bearer`, else `?token=`. An error here is the client's `connect_error`.
async fn authenticate(
    s: SocketRef,
    TryData(auth): TryData<Auth>,
    State(jwt): State<Jwt>,
) -> Result<(), Refusal> {
    let parts = s.req_parts();
    let token = auth
        .ok()
        .and_then(|a| a.token)
        .filter(|t| !t.is_empty())
        .or_else(|| {
            let value = parts.headers.get("authorization")?.to_str().ok()?.trim();
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
        .or_else(|| {
            parts.uri.query()?.split('&').find_map(|kv| {
                kv.strip_prefix("token=")
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
            })
        });
    let Some(token) = token else {
        return refuse("missing token");
    };
    s.extensions.insert(jwt.verify(&token)?);
    Ok(())
}

// ---- In-memory state --------------------------------------------------------------------------

#[derive(Default)]
struct Hub {
    presence: Mutex<Presence>,
    last_message_id: AtomicU64, // only grows
}

#[derive(Default)]
struct Presence {
    online: HashMap<String, Online>,
    history: HashMap<String, History>,
    sockets: usize,
}

struct Online {
    username: String,
    role: String,
    sockets: Vec<(Sid, SystemTime)>, // in connection order
}

struct History {
    first_seen: SystemTime,
    sessions_count: u64,
    closed: Duration,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct User {
    user_id: String,
    username: String,
    role: String,
    connected_at: String,
    sessions: usize,
}

type Shared = Arc<Hub>;

fn iso(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn now() -> String {
    iso(SystemTime::now())
}

fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// So a room name can never be a user's room or a socket id.
fn room_key(room: &str) -> String {
    format!("room:{room}")
}

impl Presence {
    fn user(&self, user_id: &str) -> Option<User> {
        let entry = self.online.get(user_id)?;
        Some(User {
            user_id: user_id.to_owned(),
            username: entry.username.clone(),
            role: entry.role.clone(),
            connected_at: iso(entry.sockets.first()?.1),
            sessions: entry.sockets.len(),
        })
    }

    fn users(&self) -> Vec<User> {
        let mut users: Vec<User> = self.online.keys().filter_map(|id| self.user(id)).collect();
        users.sort_by(|a, b| a.connected_at.cmp(&b.connected_at));
        users
    }

    fn stats(&self) -> Value {
        let t = SystemTime::now();
        let since = |at: SystemTime| t.duration_since(at).unwrap_or_default();
        let mut by_role: HashMap<String, usize> = HashMap::new();
        let times: Vec<Value> = self
            .users()
            .into_iter()
            .map(|u| {
                *by_role.entry(u.role.clone()).or_default() += 1;
                let entry = &self.online[&u.user_id];
                let h = &self.history[&u.user_id];
                let live: Duration = entry.sockets.iter().map(|(_, at)| since(*at)).sum();
                json!({
                    "userId": u.user_id,
                    "username": u.username,
                    "connectedAt": u.connected_at,
                    "connectedSeconds": since(entry.sockets[0].1).as_secs(),
                    "totalConnectedSeconds": (h.closed + live).as_secs_f64().round() as u64,
                    "sessionsCount": h.sessions_count,
                    "firstSeen": iso(h.first_seen),
                })
            })
            .collect();
        json!({ "totalUsers": times.len(), "usersByRole": by_role, "connectionTimes": times })
    }
}

impl Hub {
    fn me(&self, user_id: &str) -> Option<User> {
        self.presence.lock().unwrap().user(user_id)
    }

    fn next_id(&self) -> u64 {
        self.last_message_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

// ---- One socket's events in order --------------------------------------------------------------

/// socketioxide runs every event handler in a task of its own, so on a multi-threaded runtime
/// two events of one socket can be handled, and their emits and acks sent, out of order (the
/// load generator keeps two in flight). Extractors run before the spawn, in arrival order: this
/// one takes its place in the socket's line there, and the handler waits for the event before it
/// to be done (`InOrder::wait`); it is done when its `InOrder` is dropped.
struct InOrder {
    before: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
}

/// The end of a socket's line: the last event's "done" signal.
#[derive(Clone, Default)]
struct Line(Arc<Mutex<Option<oneshot::Receiver<()>>>>);

impl<A: Adapter> FromMessageParts<A> for InOrder {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<Socket<A>>,
        _: &mut Packet,
        _: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let (done, next) = oneshot::channel();
        let before = s
            .extensions
            .get::<Line>()
            .and_then(|line| line.0.lock().unwrap().replace(next));
        Ok(InOrder {
            before,
            _done: done,
        })
    }
}

impl InOrder {
    async fn wait(&mut self) {
        if let Some(before) = self.before.take() {
            before.await.ok(); // Err: dropped, which is done too
        }
    }
}

// ---- Handlers ---------------------------------------------------------------------------------

async fn on_connect(s: SocketRef, Extension(me): Extension<Identity>, State(hub): State<Shared>) {
    let at = SystemTime::now();
    let (user, first, active) = {
        let mut p = hub.presence.lock().unwrap();
        p.sockets += 1;
        let entry = p
            .online
            .entry(me.user_id.clone())
            .or_insert_with(|| Online {
                username: me.username.clone(),
                role: me.role.clone(),
                sockets: Vec::new(),
            });
        let first = entry.sockets.is_empty();
        entry.sockets.push((s.id, at));
        let h = p.history.entry(me.user_id.clone()).or_insert(History {
            first_seen: at,
            sessions_count: 0,
            closed: Duration::ZERO,
        });
        h.sessions_count += 1;
        (p.user(&me.user_id), first, p.online.len())
    };
    s.extensions.insert(Line::default());
    s.on("get-active-users", get_active_users);
    s.on("get-users-stats", get_users_stats);
    s.on("send-message", send_message);
    s.on("join-room", join_room);
    s.on("leave-room", leave_room);
    s.on("room-message", room_message);
    s.on_disconnect(on_disconnect);
    // Every socket of a user is in its room: private messages go there.
    s.join(user_room(&me.user_id));
    let welcome = format!("Welcome, {}", me.username);
    let timestamp = now();
    let connected =
        json!({ "message": welcome, "user": user, "timestamp": timestamp, "rooms": [] });
    s.emit("connected", &connected).ok();
    if first {
        let data = json!({ "user": user, "timestamp": now(), "activeUsersCount": active });
        s.broadcast().emit("user-connected", &data).await.ok();
    }
}

/// Acks `{ ok: true, ...result }`; a refusal becomes an `error { message }` event and
/// `{ ok: false, error }`. The ack goes only if the client asked for one.
fn answer(s: &SocketRef, ack: AckSender, result: Result<Value, Refusal>) {
    let reply = match result {
        Ok(mut v) => {
            if let Value::Object(m) = &mut v {
                m.insert("ok".into(), true.into());
            }
            v
        }
        Err(Refusal(message)) => {
            s.emit("error", &json!({ "message": message })).ok();
            json!({ "ok": false, "error": message })
        }
    };
    ack.send(&reply).ok();
}

/// A payload that is not the expected object (what a DTO validator would say).
fn shape<T>(event: &str, shape: &str, data: Result<T, impl fmt::Display>) -> Result<T, Refusal> {
    data.or_else(|e| {
        refuse(format!(
            "{event} expects an object payload like {shape}: {e}"
        ))
    })
}

fn text(field: &str, v: String) -> Result<String, Refusal> {
    if v.trim().is_empty() {
        return refuse(format!("{field} must not be empty"));
    }
    Ok(v)
}

async fn get_active_users(
    mut turn: InOrder,
    s: SocketRef,
    State(hub): State<Shared>,
    ack: AckSender,
) {
    turn.wait().await;
    let users = hub.presence.lock().unwrap().users();
    let data = json!({ "users": users, "count": users.len() });
    s.emit("active-users", &data).ok();
    answer(&s, ack, Ok(data));
}

async fn get_users_stats(
    mut turn: InOrder,
    s: SocketRef,
    State(hub): State<Shared>,
    ack: AckSender,
) {
    turn.wait().await;
    let stats = hub.presence.lock().unwrap().stats();
    s.emit("users-stats", &stats).ok();
    answer(&s, ack, Ok(stats));
}

#[derive(Deserialize)]
struct SendMessage {
    message: String,
    to: Option<String>,
}

async fn send_message(
    mut turn: InOrder,
    s: SocketRef,
    io: SocketIo,
    State(hub): State<Shared>,
    Extension(me): Extension<Identity>,
    TryData(data): TryData<SendMessage>,
    ack: AckSender,
) {
    turn.wait().await;
    let result = async {
        let data = shape("send-message", "{ message, to? }", data)?;
        let message = text("message", data.message)?;
        let Some(to) = data.to else {
            let id = hub.next_id();
            let (from, sockets) = {
                let p = hub.presence.lock().unwrap();
                (p.user(&me.user_id), p.sockets)
            };
            let payload = json!({ "id": id, "from": from, "message": message, "timestamp": now() });
            s.broadcast().emit("broadcast-message", &payload).await.ok();
            return Ok(
                json!({ "id": id, "delivered": sockets.saturating_sub(1), "queued": false }),
            );
        };
        let (from, delivered) = {
            let p = hub.presence.lock().unwrap();
            match p.online.get(&to) {
                Some(target) => (p.user(&me.user_id), target.sockets.len()),
                None => return refuse(format!("user {} is not online", json!(to))),
            }
        };
        let id = hub.next_id();
        let payload = json!({ "id": id, "from": from, "message": message, "timestamp": now() });
        io.to(user_room(&to))
            .emit("private-message", &payload)
            .await
            .ok();
        Ok(json!({ "id": id, "delivered": delivered, "queued": false }))
    }
    .await;
    answer(&s, ack, result);
}

#[derive(Deserialize)]
struct RoomRef {
    room: String,
}

fn is_member(s: &SocketRef, key: &str) -> bool {
    s.rooms().iter().any(|r| r == key)
}

async fn join_room(
    mut turn: InOrder,
    s: SocketRef,
    State(hub): State<Shared>,
    Extension(me): Extension<Identity>,
    TryData(data): TryData<RoomRef>,
    ack: AckSender,
) {
    turn.wait().await;
    let result = async {
        let room = text("room", shape("join-room", "{ room }", data)?.room)?;
        let key = room_key(&room);
        let joined = !is_member(&s, &key);
        if joined {
            s.join(key.clone());
            let data = json!({ "user": hub.me(&me.user_id), "room": room, "timestamp": now() });
            s.to(key).emit("user-joined-room", &data).await.ok();
        }
        let joined_msg = format!("Joined room {room}");
        s.emit(
            "joined-room",
            &json!({ "room": room, "message": joined_msg }),
        )
        .ok();
        Ok(json!({ "room": room, "joined": joined }))
    }
    .await;
    answer(&s, ack, result);
}

async fn leave_room(
    mut turn: InOrder,
    s: SocketRef,
    State(hub): State<Shared>,
    Extension(me): Extension<Identity>,
    TryData(data): TryData<RoomRef>,
    ack: AckSender,
) {
    turn.wait().await;
    let result = async {
        let room = text("room", shape("leave-room", "{ room }", data)?.room)?;
        let key = room_key(&room);
        if !is_member(&s, &key) {
            return refuse(format!("you are not a member of room {}", json!(room)));
        }
        s.leave(key.clone());
        let data = json!({ "user": hub.me(&me.user_id), "room": room, "timestamp": now() });
        s.to(key).emit("user-left-room", &data).await.ok();
        let left_msg = format!("Left room {room}");
        s.emit("left-room", &json!({ "room": room, "message": left_msg }))
            .ok();
        Ok(json!({ "room": room }))
    }
    .await;
    answer(&s, ack, result);
}

#[derive(Deserialize)]
struct RoomMessage {
    room: String,
    message: String,
}

async fn room_message(
    mut turn: InOrder,
    s: SocketRef,
    State(hub): State<Shared>,
    Extension(me): Extension<Identity>,
    TryData(data): TryData<RoomMessage>,
    ack: AckSender,
) {
    turn.wait().await;
    let result = async {
        let data = shape("room-message", "{ room, message }", data)?;
        let room = text("room", data.room)?;
        let message = text("message", data.message)?;
        let key = room_key(&room);
        if !is_member(&s, &key) {
            let quoted = json!(room);
            return refuse(format!(
                "you are not a member of room {quoted}; join it first"
            ));
        }
        let id = hub.next_id();
        let from = hub.me(&me.user_id);
        let payload =
            json!({ "id": id, "from": from, "message": message, "room": room, "timestamp": now() });
        let delivered = s.to(key.clone()).sockets().len();
        s.to(key).emit("room-message", &payload).await.ok();
        Ok(json!({ "id": id, "delivered": delivered, "queued": false, "room": room }))
    }
    .await;
    answer(&s, ack, result);
}

async fn on_disconnect(
    s: SocketRef,
    Extension(me): Extension<Identity>,
    State(hub): State<Shared>,
) {
    let gone = {
        let mut p = hub.presence.lock().unwrap();
        let Some(mut user) = p.user(&me.user_id) else {
            return;
        };
        let entry = p.online.get_mut(&me.user_id).expect("user() found it");
        let Some(i) = entry.sockets.iter().position(|(id, _)| *id == s.id) else {
            return;
        };
        let (_, at) = entry.sockets.remove(i);
        let last = entry.sockets.is_empty();
        p.sockets -= 1;
        if let Some(h) = p.history.get_mut(&me.user_id) {
            h.closed += at.elapsed().unwrap_or_default();
        }
        last.then(|| {
            p.online.remove(&me.user_id);
            user.sessions = 0;
            (user, p.online.len())
        })
    };
    if let Some((user, active)) = gone {
        let data = json!({ "user": user, "timestamp": now(), "activeUsersCount": active });
        s.broadcast().emit("user-disconnected", &data).await.ok();
    }
}

// ---- Server -----------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let Some(secret) = std::env::var("JWT_SECRET").ok().filter(|s| !s.is_empty()) else {
        eprintln!("JWT_SECRET is required");
        std::process::exit(2);
    };
    let env_num = |name: &str, default: usize| -> usize {
        std::env::var(name).ok().map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
    };
    let port = u16::try_from(env_num("PORT", 3100)).expect("PORT must be a port number");

    let (layer, io) = SocketIo::builder()
        .with_state(Jwt::new(&secret))
        .with_state(Shared::default())
        .max_payload(1_000_000) // as the Node peer's maxHttpBufferSize
        .max_buffer_size(env_num("MAX_BUFFER_SIZE", 8192))
        .build_layer();
    io.ns("/", on_connect.with(authenticate));

    let app = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    eprintln!("listening on http://{addr}");

    // No Nagle delays on small frames, as Node's http server and switchboard.
    let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap_or_default());
    let server = axum::serve(listener, app);
    tokio::select! {
        r = server => r.expect("server"),
        _ = shutdown() => io.close().await, // in memory: nothing to flush
    }
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
