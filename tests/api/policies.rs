//! Room policies end to end (`docs/protocol.md` section 14, README "Access control"): a
//! `ROOM_POLICIES` file written in the test's temp dir, the real server, and each rule tried
//! through both doors (`/ws` and Socket.IO) by the client it constrains: private rooms, joins
//! by role, announcement rooms, server-only rooms, `BROADCAST_ROLES`, a membership dropped at
//! reconnect, refusals that say nothing about the room, the refusal counters, and a bad file
//! refused at start while `switchboard check-config` prints the good one.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use switchboard::internals::RoomName;
use switchboard::{Gateway, Settings, Target};
use tempfile::TempDir;

use crate::helpers::*;
use crate::metrics::sample;

const JOIN_REFUSED: &str = "not allowed to join this room";
const POST_REFUSED: &str = "not allowed to post in this room";
const BROADCAST_REFUSED: &str = "not allowed to send to everyone";

/// The two doors every rule is tried through.
#[derive(Debug, Clone, Copy)]
enum Door {
    Ws,
    Sio,
}

const DOORS: [Door; 2] = [Door::Ws, Door::Sio];

/// A gateway whose `ROOM_POLICIES` file holds `rows`, with `tweak` applied to its settings.
struct PolicyApp {
    app: TestApp,
    _dir: TempDir,
}

impl std::ops::Deref for PolicyApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// Writes `{"rooms": rows}` into `dir` and returns its path.
fn policy_file(dir: &Path, rows: Value) -> PathBuf {
    let path = dir.join("policies.json");
    std::fs::write(&path, json!({ "rooms": rows }).to_string()).expect("policy file written");
    path
}

async fn spawn_with_policies(rows: Value, tweak: impl FnOnce(&mut Settings)) -> PolicyApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = policy_file(dir.path(), rows);
    let app = spawn_app_with(|s| {
        s.access.policies_file = Some(file);
        tweak(s);
    })
    .await;
    PolicyApp { app, _dir: dir }
}

/// A token for `sub` with `role` and, when given, a `rooms` claim.
fn token(sub: &str, role: &str, rooms: Option<Value>) -> String {
    let mut claims = json!({"sub": sub, "username": sub, "role": role, "exp": in_an_hour()});
    if let Some(rooms) = rooms {
        claims["rooms"] = rooms;
    }
    sign(jsonwebtoken::Algorithm::HS256, &claims)
}

enum Conn {
    Ws(WsClient),
    Sio(SioClient),
}

/// One client on either door, read in arrival order: events read past while waiting for an
/// ack are held for the next [`Client::wait_for`] instead of being lost.
struct Client {
    door: Door,
    conn: Conn,
    held: VecDeque<(String, Value)>,
}

enum Incoming {
    Event(String, Value),
    Ack(u64, Value),
}

impl Client {
    /// Connects through `door` with `token` and returns the client and its `connected` data.
    async fn connect(app: &TestApp, door: Door, token: &str) -> (Self, Value) {
        let conn = match door {
            Door::Ws => Conn::Ws(app.ws(token).await),
            Door::Sio => Conn::Sio(SioClient::connect(app.addr, token).await),
        };
        let mut client = Self {
            door,
            conn,
            held: VecDeque::new(),
        };
        let connected = client.wait_for("connected").await;
        (client, connected)
    }

    async fn next(&mut self) -> Incoming {
        match &mut self.conn {
            Conn::Ws(ws) => match ws.next_event().await {
                (name, data) if name == "ack" => {
                    Incoming::Ack(data["ack"].as_u64().expect("an ack id"), data)
                }
                (name, data) => Incoming::Event(name, data),
            },
            Conn::Sio(sio) => match sio.next_incoming().await {
                SioIncoming::Event(name, data) => Incoming::Event(name, data),
                SioIncoming::Ack(id, data) => Incoming::Ack(id, data),
            },
        }
    }

    /// Sends `event` asking for ack `ack`; `Ok(ack)` on success, or `Err(error event)` after
    /// checking that the failed ack carries the same message and code.
    async fn ask(&mut self, event: &str, data: Value, ack: u64) -> Result<Value, Value> {
        match &mut self.conn {
            Conn::Ws(ws) => ws.emit_ack(event, data, ack).await,
            Conn::Sio(sio) => sio.emit_ack(event, data, ack).await,
        }
        let mut error: Option<Value> = None;
        loop {
            match self.next().await {
                Incoming::Ack(id, reply) if id == ack => {
                    let door = self.door;
                    let Some(error) = error else {
                        assert_eq!(reply["ok"], true, "{door:?} {event}: {reply}");
                        return Ok(reply);
                    };
                    assert_eq!(reply["ok"], false, "{door:?} {event}: {reply}");
                    assert_eq!(reply["code"], error["code"], "{door:?} {event}");
                    assert_eq!(reply["error"], error["message"], "{door:?} {event}");
                    return Err(error);
                }
                Incoming::Event(name, data) if name == "error" && error.is_none() => {
                    error = Some(data);
                }
                Incoming::Event(name, data) => self.held.push_back((name, data)),
                Incoming::Ack(..) => {}
            }
        }
    }

    /// Asserts that `event` is refused `forbidden` with `message`.
    async fn refused(&mut self, event: &str, data: Value, ack: u64, message: &str) {
        let door = self.door;
        let error = self
            .ask(event, data.clone(), ack)
            .await
            .expect_err(&format!("{door:?}: {event} {data} is refused"));
        assert_eq!(error["code"], "forbidden", "{door:?} {event} {data}");
        assert_eq!(error["message"], message, "{door:?} {event} {data}");
    }

    async fn join(&mut self, room: &str, ack: u64) -> Result<Value, Value> {
        self.ask("join-room", json!({ "room": room }), ack).await
    }

    /// Skips events (held ones first) until `name` arrives; returns its data.
    async fn wait_for(&mut self, name: &str) -> Value {
        let mut events = self.events_until(name).await;
        events.pop().map(|(_, data)| data).unwrap_or_default()
    }

    /// The events (held ones first) up to and including the first `name`.
    async fn events_until(&mut self, name: &str) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            let (event, data) = match self.held.pop_front() {
                Some(held) => held,
                None => match self.next().await {
                    Incoming::Event(event, data) => (event, data),
                    Incoming::Ack(..) => continue,
                },
            };
            let last = event == name;
            seen.push((event, data));
            if last {
                return seen;
            }
        }
    }
}

/// A `/ws` client (the other people in a scenario) that joined `rooms`.
async fn member(app: &TestApp, sub: &str, role: &str, rooms: &[&str]) -> Client {
    let claim = (!rooms.is_empty()).then(|| json!(rooms));
    let (mut client, _) = Client::connect(app, Door::Ws, &token(sub, role, claim)).await;
    for (ack, room) in (1..).zip(rooms) {
        client.join(room, ack).await.expect("the member joins");
    }
    client
}

#[tokio::test]
async fn a_user_token_is_refused_a_private_room_where_others_talk_and_its_sync_shows_none_of_it() {
    for door in DOORS {
        let app = spawn_with_policies(json!([{"match": "general", "join": "token"}]), |_| {}).await;
        let mut alice = member(&app, "alice", "USER", &["general"]).await;
        let mut bob = member(&app, "bob", "USER", &["general"]).await;
        for (ack, text) in [(10, "the launch date is Friday"), (11, "keep it quiet")] {
            let said = json!({"room": "general", "message": text});
            alice.ask("room-message", said, ack).await.expect("sent");
            assert_eq!(bob.wait_for("room-message").await["message"], text);
        }

        let (mut mallory, _) = Client::connect(&app, door, &token("mallory", "USER", None)).await;
        mallory
            .refused("join-room", json!({"room": "general"}), 1, JOIN_REFUSED)
            .await;
        let synced = mallory
            .ask("sync", json!({"since": 0}), 2)
            .await
            .expect("sync answers");
        assert_eq!(
            synced["count"], 0,
            "{door:?}: nothing of the room: {synced}"
        );
        let replayed = mallory.events_until("sync-complete").await;
        assert!(
            replayed.iter().all(|(event, _)| event != "room-message"),
            "{door:?}: {replayed:?}"
        );
    }
}

#[tokio::test]
async fn a_roles_join_rule_lets_in_the_listed_roles_only() {
    let rows = json!([{"match": "staff-*", "join": {"roles": ["STAFF"]}}]);
    for door in DOORS {
        let app = spawn_with_policies(rows.clone(), |_| {}).await;
        let (mut user, _) = Client::connect(&app, door, &token("ursula", "USER", None)).await;
        user.refused(
            "join-room",
            json!({"room": "staff-lounge"}),
            1,
            JOIN_REFUSED,
        )
        .await;
        let (mut staff, _) = Client::connect(&app, door, &token("stan", "STAFF", None)).await;
        let joined = staff.join("staff-lounge", 1).await.expect("staff joins");
        assert_eq!(joined["joined"], true, "{door:?}");
        user.join("lobby", 2)
            .await
            .expect("the catch-all still lets anyone in elsewhere");
    }
}

#[tokio::test]
async fn an_announcement_room_takes_posts_from_its_post_roles_only() {
    let rows = json!([{"match": "announcements", "post": {"roles": ["STAFF"]}}]);
    for door in DOORS {
        let app = spawn_with_policies(rows.clone(), |_| {}).await;
        let mut listener = member(&app, "lena", "USER", &["announcements"]).await;
        let (mut user, _) = Client::connect(&app, door, &token("ursula", "USER", None)).await;
        user.join("announcements", 1).await.expect("anyone joins");
        let (mut staff, _) = Client::connect(&app, door, &token("stan", "STAFF", None)).await;
        staff.join("announcements", 1).await.expect("anyone joins");

        let post = |text: &str| json!({"room": "announcements", "message": text});
        user.refused("room-message", post("me too"), 2, POST_REFUSED)
            .await;
        let sent = staff
            .ask("room-message", post("office closed Monday"), 2)
            .await
            .expect("staff posts");
        assert!(sent["id"].is_u64(), "{door:?}: {sent}");
        // The first room message anyone hears is the staff's: the refused one went nowhere.
        for client in [&mut listener, &mut user] {
            let heard = client.wait_for("room-message").await;
            assert_eq!(heard["message"], "office closed Monday", "{door:?}");
            assert_eq!(heard["from"]["userId"], "stan", "{door:?}");
        }
    }
}

#[tokio::test]
async fn a_server_only_room_refuses_every_client_admins_included_and_delivers_the_servers_messages()
{
    let rows = json!([{"match": "alerts", "post": "server"}]);
    for door in DOORS {
        let dir = tempfile::tempdir().expect("temp dir");
        let place = Place::Sqlite(dir.path().join("switchboard.db"));
        let mut settings = test_settings(&place);
        settings.access.policies_file = Some(policy_file(dir.path(), rows.clone()));
        let gateway = Gateway::build(settings).await.expect("gateway starts");
        let handle = gateway.handle();
        let app = spawn_built(&place, gateway);

        let (mut user, _) = Client::connect(&app, door, &token("ursula", "USER", None)).await;
        user.join("alerts", 1).await.expect("anyone joins");
        let (mut admin, _) = Client::connect(&app, door, &token("root", "ADMIN", None)).await;
        admin.join("alerts", 1).await.expect("an admin joins");
        let post = json!({"room": "alerts", "message": "from a client"});
        user.refused("room-message", post.clone(), 2, POST_REFUSED)
            .await;
        admin.refused("room-message", post, 2, POST_REFUSED).await;

        // The embedded API's door.
        let room = RoomName::parse("alerts").expect("a room name");
        let alert = json!({"room": "alerts", "message": "disk 91% full"});
        let published = handle
            .publish(Target::Room(room), "room-message", &alert)
            .await
            .expect("the server posts");
        assert_eq!(published.delivered, 2, "{door:?}: both members");
        for client in [&mut user, &mut admin] {
            let heard = client.wait_for("room-message").await;
            assert_eq!(heard["message"], "disk 91% full", "{door:?}");
            assert_eq!(heard["from"]["userId"], "system", "{door:?}");
        }

        // The REST door: a back end's event to the room reaches its members too.
        let response = app
            .rest(reqwest::Method::POST, "/websocket/publish", "ops", "ADMIN")
            .json(&json!({"event": "alert", "data": {"level": "high"}, "room": "alerts"}))
            .send()
            .await
            .expect("the endpoint answers");
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{door:?}");
        for client in [&mut user, &mut admin] {
            assert_eq!(client.wait_for("alert").await["level"], "high", "{door:?}");
        }
    }
}

#[tokio::test]
async fn broadcast_roles_limit_sends_to_everyone_but_not_private_messages() {
    for door in DOORS {
        let app = spawn_with_policies(json!([]), |s| {
            s.access.broadcast_roles = vec!["STAFF".into()];
        })
        .await;
        let mut listener = member(&app, "lena", "USER", &[]).await;
        let (mut user, _) = Client::connect(&app, door, &token("ursula", "USER", None)).await;
        let (mut staff, _) = Client::connect(&app, door, &token("stan", "STAFF", None)).await;

        user.refused(
            "send-message",
            json!({"message": "hello all"}),
            1,
            BROADCAST_REFUSED,
        )
        .await;
        let private = json!({"message": "a word", "to": "stan"});
        user.ask("send-message", private, 2)
            .await
            .expect("a private message still goes");
        assert_eq!(staff.wait_for("private-message").await["message"], "a word");
        staff
            .ask("send-message", json!({"message": "all hands at 3"}), 1)
            .await
            .expect("staff broadcasts");
        for client in [&mut listener, &mut user] {
            let heard = client.wait_for("broadcast-message").await;
            assert_eq!(
                heard["message"], "all hands at 3",
                "{door:?}: the first one"
            );
        }
    }
}

#[tokio::test]
async fn a_membership_whose_role_no_longer_qualifies_ends_at_reconnect() {
    let rows = json!([{"match": "staff-*", "join": {"roles": ["STAFF"]}}]);
    for door in DOORS {
        let app = spawn_with_policies(rows.clone(), |_| {}).await;
        let mut watcher = member(&app, "root", "ADMIN", &["staff-lounge"]).await;
        let (mut sam, _) = Client::connect(&app, door, &token("sam", "STAFF", None)).await;
        sam.join("staff-lounge", 1).await.expect("staff joins");
        sam.join("lobby", 2).await.expect("anyone joins");
        assert_eq!(
            watcher.wait_for("user-joined-room").await["user"]["userId"],
            "sam"
        );
        drop(sam);
        watcher.wait_for("user-disconnected").await;

        let (mut sam, connected) = Client::connect(&app, door, &token("sam", "USER", None)).await;
        assert_eq!(connected["rooms"], json!(["lobby"]), "{door:?}");
        let left = sam.wait_for("left-room").await;
        assert_eq!(left["room"], "staff-lounge", "{door:?}");
        assert_eq!(left["reason"], "not_granted", "{door:?}");
        let seen = watcher.wait_for("user-left-room").await;
        assert_eq!(seen["user"]["userId"], "sam", "{door:?}");
        sam.refused(
            "join-room",
            json!({"room": "staff-lounge"}),
            1,
            JOIN_REFUSED,
        )
        .await;
    }
}

#[tokio::test]
async fn a_refusal_says_the_same_for_a_room_with_members_and_a_name_never_used() {
    let rows = json!([{"match": "team-*", "join": "token"}]);
    for door in DOORS {
        let app = spawn_with_policies(rows.clone(), |_| {}).await;
        let mut red = member(&app, "rita", "USER", &["team-red"]).await;
        red.ask(
            "room-message",
            json!({"room": "team-red", "message": "hi"}),
            9,
        )
        .await
        .expect("sent");
        let (mut user, _) = Client::connect(&app, door, &token("ursula", "USER", None)).await;
        let existing = user
            .join("team-red", 1)
            .await
            .expect_err("refused: a room with a member and a message");
        let never = user
            .join("team-never-used", 2)
            .await
            .expect_err("refused: a name nobody used");
        assert_eq!(existing, never, "{door:?}: the same message and code");
        assert_eq!(existing["code"], "forbidden", "{door:?}");
    }
}

#[tokio::test]
async fn refusals_are_counted_by_rule_on_the_metrics_endpoint() {
    let rows = json!([
        {"match": "staff-*", "join": {"roles": ["STAFF"]}},
        {"match": "announcements", "post": "server"},
    ]);
    let app = spawn_with_policies(rows, |s| {
        s.access.broadcast_roles = vec!["STAFF".into()];
    })
    .await;
    let scrape = async || {
        let response = reqwest::Client::new()
            .get(app.url("/metrics"))
            .timeout(WAIT)
            .send()
            .await
            .expect("GET /metrics");
        response.text().await.expect("a text body")
    };
    let refusals = |text: &str, reason: &str| {
        sample(
            text,
            "switchboard_access_refusals_total",
            &[("reason", reason)],
        )
    };
    let before = scrape().await;
    for reason in ["join", "post", "broadcast", "hook_unavailable"] {
        assert!(
            before.contains(&format!(
                "switchboard_access_refusals_total{{reason=\"{reason}\"}} 0\n"
            )),
            "{reason} shows at 0 before the first refusal"
        );
    }

    for door in DOORS {
        let (mut user, _) = Client::connect(&app, door, &token("ursula", "USER", None)).await;
        user.refused("join-room", json!({"room": "staff-x"}), 1, JOIN_REFUSED)
            .await;
        user.join("announcements", 2).await.expect("anyone joins");
        let post = json!({"room": "announcements", "message": "x"});
        user.refused("room-message", post, 3, POST_REFUSED).await;
        user.refused(
            "send-message",
            json!({"message": "x"}),
            4,
            BROADCAST_REFUSED,
        )
        .await;
        user.join("lobby", 5).await.expect("not a refusal");
    }

    let after = scrape().await;
    for (reason, count) in [
        ("join", 2.0),
        ("post", 2.0),
        ("broadcast", 2.0),
        ("hook_unavailable", 0.0),
    ] {
        assert_eq!(refusals(&after, reason), count, "{reason}");
    }
    let forbidden = sample(
        &after,
        "switchboard_client_events_total",
        &[("event", "join-room"), ("outcome", "forbidden")],
    );
    assert_eq!(forbidden, 2.0, "the event counter agrees");
}

#[tokio::test]
async fn a_bad_policy_file_refuses_startup_naming_the_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows = json!([
        {"match": "ticket-*", "join": "members"},
        {"match": "news", "post": "everyone"},
    ]);
    let place = Place::Sqlite(dir.path().join("switchboard.db"));
    let mut settings = test_settings(&place);
    settings.access.policies_file = Some(policy_file(dir.path(), rows));
    let Err(error) = Gateway::build(settings).await else {
        panic!("a gateway started on a bad policy file");
    };
    let said = error.to_string();
    assert!(said.contains("policies.json"), "names the file: {said}");
    assert!(
        said.contains("policy 2 (\"news\")"),
        "names the row: {said}"
    );
    assert!(
        said.contains("\"post\" is \"everyone\""),
        "names the field: {said}"
    );
}

#[tokio::test]
async fn check_config_prints_the_effective_table_closed_by_the_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = policy_file(
        dir.path(),
        json!([
            {"match": "ticket-*", "join": "members", "history": "since_join"},
            {"match": "announcements", "post": {"roles": ["STAFF"]}},
            {"match": "team-*", "join": "token"},
        ]),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check-config")
        .env_clear()
        .env("JWT_SECRET", SECRET)
        .env("DATABASE_URL", dir.path().join("c.db"))
        .env("ROOM_POLICIES", &file)
        .env("ROOM_JOIN_DEFAULT", "token")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let table: Vec<Vec<&str>> = stdout
        .split("room policies (first match wins):")
        .nth(1)
        .expect("the table follows the settings")
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .filter(|cells: &Vec<&str>| !cells.is_empty())
        .collect();
    let expected: Vec<Vec<&str>> = vec![
        vec!["pattern", "join", "post", "history"],
        vec!["ticket-*", "members", "members", "since_join"],
        vec!["announcements", "anyone", "roles STAFF", "all"],
        vec!["team-*", "token", "members", "all"],
        vec!["*", "token", "members", "all", "(ROOM_JOIN_DEFAULT)"],
    ];
    assert_eq!(table, expected, "{stdout}");

    let bad = policy_file(dir.path(), json!([{"match": "a", "join": "everyone"}]));
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("check-config")
        .env_clear()
        .env("JWT_SECRET", SECRET)
        .env("DATABASE_URL", dir.path().join("c.db"))
        .env("ROOM_POLICIES", &bad)
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("policy 1 (\"a\")"), "{stderr}");
}

/// The JSON blocks of `doc` between the heading `from` and the next heading.
fn json_blocks<'a>(doc: &'a str, from: &str) -> Vec<&'a str> {
    let start = doc.find(from).unwrap_or_else(|| panic!("no {from:?}"));
    let body = &doc[start + from.len()..];
    let end = body.find("\n#").unwrap_or(body.len());
    body[..end]
        .split("```json\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect()
}

#[tokio::test]
async fn every_policy_file_the_documents_show_starts_a_gateway() {
    let readme = include_str!("../../README.md");
    let protocol = include_str!("../../docs/protocol.md");
    let mut files = json_blocks(readme, "### Access control");
    files.extend(json_blocks(protocol, "## 14. Access control"));
    assert_eq!(files.len(), 6, "five in the README, one in the protocol");
    for text in files {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("policies.json");
        std::fs::write(&path, text).expect("written");
        let place = Place::Sqlite(dir.path().join("switchboard.db"));
        let mut settings = test_settings(&place);
        settings.access.policies_file = Some(path);
        if text.contains("\"hook\"") {
            settings.access.join_hook_url = Some("http://127.0.0.1:9/join".into());
            settings.access.join_hook_secret =
                Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        }
        if let Err(e) = Gateway::build(settings).await {
            panic!("{text}\nis refused: {e}");
        }
    }
}
