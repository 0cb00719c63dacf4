//! The join hook (`docs/protocol.md` section 14, "Join hook"): for a room whose policy says
//! `"join": "hook"`, `join-room` asks the application's endpoint, a real HTTP server in the
//! test (`helpers/receiver.rs`: axum on 127.0.0.1:0) that checks every request's Standard Webhooks signature the way
//! an application would and answers as the test tells it. On both transports: an allow joins,
//! a refusal is `forbidden` like any other, a slow, failing or absent hook is
//! `hook_unavailable` within the timeout; answers are cached per user and room for
//! `JOIN_HOOK_CACHE_SECS` (0: never).

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::Settings;
use tempfile::TempDir;

use crate::helpers::*;
use crate::metrics::sample;

/// The HMAC key the hook's requests are signed with; `JOIN_HOOK_SECRET` is `whsec_` + its
/// base64.
const KEY: &[u8] = b"join-hook-test-key-0123456789";
/// The gateway's `JOIN_HOOK_TIMEOUT_MS` in these tests.
const TIMEOUT: Duration = Duration::from_millis(200);
/// How long a slow hook takes: far past the timeout, within one client wait.
const SLOW: Duration = Duration::from_secs(3);
/// How soon a join must be answered when the hook does not answer: the timeout plus room for
/// a loaded machine, well under `SLOW`.
const BOUND: Duration = Duration::from_millis(1500);

/// What the hook answers.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 `{"allow": true}` (with an extra field, which must be ignored).
    Allow,
    /// 200 `{"allow": false}`.
    Refuse,
    /// HTTP 403.
    Forbidden,
    /// HTTP 500.
    Fail,
    /// Nothing for [`SLOW`], then an allow.
    Slow,
    /// An allow after `Duration` (shorter than the timeout).
    AllowAfter(Duration),
}

impl Answer {
    fn reply(self) -> Reply {
        let allow = Reply::json(json!({"allow": true, "reason": "extra fields are ignored"}));
        match self {
            Self::Allow => allow,
            Self::Refuse => Reply::json(json!({"allow": false})),
            Self::Forbidden => Reply::status(StatusCode::FORBIDDEN),
            Self::Fail => Reply::status(StatusCode::INTERNAL_SERVER_ERROR),
            Self::Slow => allow.after(SLOW),
            Self::AllowAfter(delay) => allow.after(delay),
        }
    }
}

/// The application's endpoint (the shared [`Receiver`]), checking every request's
/// signature and answering what `decide` says of its body.
struct Hook(Receiver);

impl Hook {
    async fn start(decide: impl Fn(&Value) -> Answer + Send + Sync + 'static) -> Self {
        Self(Receiver::answering(KEY, move |body| decide(body).reply()).await)
    }

    fn url(&self) -> String {
        self.0.url()
    }

    /// Every request body the hook received, in order.
    fn bodies(&self) -> Vec<Value> {
        self.0.bodies()
    }

    fn calls(&self) -> usize {
        self.bodies().len()
    }

    fn assert_all_signed(&self) {
        self.0.assert_all_signed();
    }
}

/// A gateway whose rooms `match-*` ask the hook at `url`, answers cached for `cache`.
struct Gateway {
    app: TestApp,
    _policies: TempDir,
}

async fn gateway(url: String, cache: Duration) -> Gateway {
    gateway_with(url, cache, |_| {}).await
}

async fn gateway_with(url: String, cache: Duration, tweak: impl FnOnce(&mut Settings)) -> Gateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policies.json");
    let policies = json!({"rooms": [{"match": "match-*", "join": "hook"}]});
    std::fs::write(&path, policies.to_string()).expect("write the policy file");
    let app = spawn_app_with(|s| {
        s.access.policies_file = Some(path);
        s.access.join_hook_url = Some(url);
        s.access.join_hook_secret = Some(format!("whsec_{}", STANDARD.encode(KEY)));
        s.access.join_hook_timeout = TIMEOUT;
        s.access.join_hook_cache = cache;
        tweak(s);
    })
    .await;
    Gateway {
        app,
        _policies: dir,
    }
}

/// A URL where nothing listens: a port bound and released.
async fn closed_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}/join")
}

fn token(sub: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "username": sub, "role": "USER", "exp": in_an_hour()});
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    sign(jsonwebtoken::Algorithm::HS256, &claims)
}

async fn connect(app: &TestApp, sub: &str) -> WsClient {
    let mut client = app.ws(&token(sub, json!({}))).await;
    client.expect("connected").await;
    client
}

/// `join-room` on `/ws`: the ack of a success, or the refusal's `(error, ack)`. Presence
/// of other users on the way is skipped.
async fn join(client: &mut WsClient, room: &str, ack: u64) -> Result<Value, (Value, Value)> {
    client
        .emit_ack("join-room", json!({ "room": room }), ack)
        .await;
    loop {
        let (event, data) = client.next_event().await;
        match event.as_str() {
            "joined-room" => return Ok(client.expect_ack(ack).await),
            "error" => return Err((data, client.expect_ack(ack).await)),
            "user-connected" | "user-disconnected" | "user-joined-room" => {}
            other => panic!("join-room answered {other} {data}"),
        }
    }
}

/// Asserts a refused `/ws` join with `code` in the event and the ack; the message.
async fn refused(client: &mut WsClient, room: &str, ack: u64, code: &str) -> String {
    let (error, reply) = join(client, room, ack).await.expect_err("refused");
    assert_eq!(error["code"], code, "{error}");
    assert_eq!(
        (&reply["ok"], &reply["code"], &reply["error"]),
        (&json!(false), &json!(code), &error["message"])
    );
    error["message"].as_str().expect("a message").to_owned()
}

/// Asserts a refused Socket.IO join with `code` in the event and the ack; the message.
async fn sio_refused(sio: &mut SioClient, room: &str, ack: u64, code: &str) -> String {
    sio.emit_ack("join-room", json!({ "room": room }), ack)
        .await;
    let error = sio.wait_for("error").await;
    assert_eq!(error["code"], code, "{error}");
    let reply = sio.wait_for_ack(ack).await;
    assert_eq!(
        (&reply["ok"], &reply["code"]),
        (&json!(false), &json!(code))
    );
    error["message"].as_str().expect("a message").to_owned()
}

async fn leave(client: &mut WsClient, room: &str, ack: u64) {
    client
        .emit_ack("leave-room", json!({ "room": room }), ack)
        .await;
    let reply = client.wait_for_ack(ack).await;
    assert_eq!(reply["ok"], true, "{reply}");
}

async fn hook_requests(app: &TestApp, result: &str) -> f64 {
    let text = reqwest::get(app.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("a text body");
    sample(
        &text,
        "switchboard_join_hook_requests_total",
        &[("result", result)],
    )
}

#[tokio::test]
async fn an_allowed_join_enters_the_room_and_the_hook_is_asked_about_the_user_signed() {
    let hook = Hook::start(|_| Answer::Allow).await;
    let gw = gateway(hook.url(), Duration::from_secs(30)).await;
    let claims = json!({
        "exp": in_an_hour(), "iat": now_secs(),
        "rooms": ["match-*", {"room": "news", "publish": false}],
    });
    let mut ann = gw.app.ws(&token("ann", claims.clone())).await;
    ann.expect("connected").await;

    let ack = join(&mut ann, "match-7", 1)
        .await
        .expect("the hook lets ann in");
    assert_eq!((&ack["ok"], &ack["joined"]), (&json!(true), &json!(true)));

    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(
        bodies[0],
        json!({
            "userId": "ann", "username": "ann", "role": "USER", "room": "match-7",
            "claims": {"exp": claims["exp"], "iat": claims["iat"], "rooms": claims["rooms"]},
        })
    );
    hook.assert_all_signed();

    // Socket.IO: the same door; the /ws member hears the newcomer.
    let mut sio = SioClient::connect(gw.app.addr, &token("bob", json!({}))).await;
    sio.emit_ack("join-room", json!({"room": "match-7"}), 2)
        .await;
    let reply = sio.wait_for_ack(2).await;
    assert_eq!(
        (&reply["ok"], &reply["joined"]),
        (&json!(true), &json!(true))
    );
    let joined = ann.wait_for("user-joined-room").await;
    assert_eq!(joined["user"]["userId"], "bob");
    let bob = &hook.bodies()[1];
    assert_eq!(bob["claims"]["iat"], Value::Null, "a token without iat");
    assert_eq!(bob["claims"]["rooms"], Value::Null, "a token without rooms");
    hook.assert_all_signed();

    // Rooms no policy sends to the hook do not ask it.
    join(&mut ann, "news", 3)
        .await
        .expect("ann's token grants news");
    assert_eq!(hook.calls(), 2);
}

#[tokio::test]
async fn a_refusal_by_the_hook_is_forbidden_in_the_words_of_any_refusal() {
    let hook = Hook::start(|body| match body["userId"].as_str() {
        Some("carol") => Answer::Forbidden,
        _ => Answer::Refuse,
    })
    .await;
    let gw = gateway(hook.url(), Duration::from_secs(30)).await;

    let mut bob = connect(&gw.app, "bob").await;
    let message = refused(&mut bob, "match-1", 1, "forbidden").await;
    assert_eq!(message, "not allowed to join this room");

    // HTTP 403 refuses too, here on Socket.IO.
    let mut carol = SioClient::connect(gw.app.addr, &token("carol", json!({}))).await;
    let sio_message = sio_refused(&mut carol, "match-1", 1, "forbidden").await;
    assert_eq!(sio_message, message);
    assert_eq!(hook.calls(), 2);
    hook.assert_all_signed();
}

#[tokio::test]
async fn a_hook_slower_than_its_timeout_is_hook_unavailable_without_the_client_waiting_for_it() {
    let hook = Hook::start(|_| Answer::Slow).await;
    let gw = gateway(hook.url(), Duration::from_secs(30)).await;

    let mut bob = connect(&gw.app, "bob").await;
    let started = Instant::now();
    let message = refused(&mut bob, "match-1", 1, "hook_unavailable").await;
    assert!(
        started.elapsed() < BOUND,
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(
        message,
        "the room's access check is unavailable; try again later"
    );

    let mut carol = SioClient::connect(gw.app.addr, &token("carol", json!({}))).await;
    let started = Instant::now();
    sio_refused(&mut carol, "match-1", 1, "hook_unavailable").await;
    assert!(
        started.elapsed() < BOUND,
        "answered after {:?}",
        started.elapsed()
    );

    // The connection goes on: the next event is answered.
    join(&mut bob, "general", 2).await.expect("joins general");
    eventually(WAIT, "both failures counted", async || {
        hook_requests(&gw.app, "error").await == 2.0
    })
    .await;
}

#[tokio::test]
async fn a_hook_that_fails_or_is_down_is_hook_unavailable_and_errors_are_not_cached() {
    let failing = Hook::start(|_| Answer::Fail).await;
    let gw = gateway(failing.url(), Duration::from_secs(30)).await;
    let mut bob = connect(&gw.app, "bob").await;
    refused(&mut bob, "match-1", 1, "hook_unavailable").await;
    refused(&mut bob, "match-1", 2, "hook_unavailable").await;
    assert_eq!(failing.calls(), 2, "an error is asked again");

    let down = gateway(closed_url().await, Duration::from_secs(30)).await;
    let mut bob = connect(&down.app, "bob").await;
    let started = Instant::now();
    refused(&mut bob, "match-1", 1, "hook_unavailable").await;
    assert!(
        started.elapsed() < BOUND,
        "answered after {:?}",
        started.elapsed()
    );
    let mut carol = SioClient::connect(down.app.addr, &token("carol", json!({}))).await;
    sio_refused(&mut carol, "match-1", 1, "hook_unavailable").await;
}

#[tokio::test]
async fn an_answer_is_reused_for_the_same_user_and_room_within_the_cache_time() {
    let hook = Hook::start(|body| match body["userId"].as_str() {
        Some("carol") => Answer::Refuse,
        _ => Answer::Allow,
    })
    .await;
    let gw = gateway(hook.url(), Duration::from_secs(30)).await;
    let mut bob = connect(&gw.app, "bob").await;

    join(&mut bob, "match-1", 1).await.expect("allowed");
    leave(&mut bob, "match-1", 2).await;
    join(&mut bob, "match-1", 3)
        .await
        .expect("allowed, from the cache");
    assert_eq!(hook.calls(), 1, "the second join did not ask");

    join(&mut bob, "match-2", 4)
        .await
        .expect("another room asks");
    let mut carol = connect(&gw.app, "carol").await;
    refused(&mut carol, "match-1", 1, "forbidden").await;
    refused(&mut carol, "match-1", 2, "forbidden").await;
    assert_eq!(
        hook.calls(),
        3,
        "per user and room; a refusal is cached too"
    );

    for (result, count) in [
        ("allow", 2.0),
        ("refuse", 1.0),
        ("cached", 2.0),
        ("error", 0.0),
    ] {
        assert_eq!(hook_requests(&gw.app, result).await, count, "{result}");
    }
}

#[tokio::test]
async fn with_no_cache_every_join_asks_the_hook_but_a_member_joining_again_does_not() {
    let hook = Hook::start(|_| Answer::Allow).await;
    let gw = gateway(hook.url(), Duration::ZERO).await;
    let mut bob = connect(&gw.app, "bob").await;

    join(&mut bob, "match-1", 1).await.expect("allowed");
    let again = join(&mut bob, "match-1", 2).await.expect("already in");
    assert_eq!(again["joined"], false);
    assert_eq!(hook.calls(), 1, "a member is not asked about");

    leave(&mut bob, "match-1", 3).await;
    join(&mut bob, "match-1", 4).await.expect("allowed");
    assert_eq!(hook.calls(), 2, "JOIN_HOOK_CACHE_SECS=0 asks every time");
}

#[tokio::test]
async fn concurrent_joins_of_one_user_and_room_share_one_request() {
    let hook = Hook::start(|_| Answer::AllowAfter(Duration::from_millis(100))).await;
    let gw = gateway_with(hook.url(), Duration::ZERO, |s| {
        s.access.join_hook_timeout = Duration::from_secs(2);
    })
    .await;
    let mut first = connect(&gw.app, "bob").await;
    let mut second = connect(&gw.app, "bob").await;

    // Both sent before either is answered; each may also hear the other join.
    first
        .emit_ack("join-room", json!({"room": "match-1"}), 1)
        .await;
    second
        .emit_ack("join-room", json!({"room": "match-1"}), 1)
        .await;
    let (a, b) = tokio::join!(first.wait_for_ack(1), second.wait_for_ack(1));
    assert_eq!(
        (&a["ok"], &b["ok"]),
        (&json!(true), &json!(true)),
        "{a} {b}"
    );
    assert_eq!(hook.calls(), 1, "one request for both");
    let new = [&a["joined"], &b["joined"]];
    assert!(
        new.contains(&&json!(true)),
        "one of them made bob a member: {new:?}"
    );
}

#[tokio::test]
async fn a_malformed_hook_secret_stops_the_gateway_naming_the_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(&Place::Sqlite(dir.path().join("switchboard.db")));
    settings.access.join_hook_url = Some("http://127.0.0.1:9/join".into());
    settings.access.join_hook_secret = Some("not-a-standard-webhooks-secret".into());
    let Err(err) = switchboard::Gateway::build(settings).await else {
        panic!("a malformed secret is refused");
    };
    assert!(err.to_string().contains("JOIN_HOOK_SECRET"), "{err}");
}
