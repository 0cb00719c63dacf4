//! Bad input over `/ws`: each gets an `error` that names the problem (and an ack with
//! `ok: false` when one was asked for), and the connection and everyone else carry on.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::*;

#[tokio::test]
async fn every_malformed_frame_gets_an_error_that_names_the_problem() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;
    let too_long = "x".repeat(4001);
    let long_room = "r".repeat(65);

    let cases: Vec<(&str, Message, &str, &str)> = vec![
        (
            "malformed JSON",
            Message::text("{not json"),
            "invalid JSON",
            "bad_frame",
        ),
        (
            "not an object",
            Message::text("[\"send-message\"]"),
            "must be a JSON object",
            "bad_frame",
        ),
        (
            "no event",
            Message::text(r#"{"data":{}}"#),
            "missing \"event\"",
            "bad_frame",
        ),
        (
            "event not a string",
            Message::text(r#"{"event":42}"#),
            "\"event\" must be a string",
            "bad_frame",
        ),
        (
            "binary frame",
            Message::binary(vec![1u8, 2, 3]),
            "binary frames are not supported",
            "binary_frame",
        ),
        (
            "unknown event",
            Message::text(r#"{"event":"launch-rockets"}"#),
            "unknown event \"launch-rockets\"",
            "unknown_event",
        ),
        (
            "payload not an object",
            Message::text(r#"{"event":"send-message","data":"hi"}"#),
            "expects an object payload",
            "bad_payload",
        ),
        (
            "payload missing",
            Message::text(r#"{"event":"join-room"}"#),
            "needs a payload",
            "bad_payload",
        ),
        (
            "missing message",
            Message::text(r#"{"event":"send-message","data":{}}"#),
            "missing field \"message\"",
            "bad_payload",
        ),
        (
            "message not a string",
            Message::text(r#"{"event":"send-message","data":{"message":1}}"#),
            "\"message\" must be a string, not a number",
            "bad_payload",
        ),
        (
            "to not a string",
            Message::text(r#"{"event":"send-message","data":{"message":"a","to":[]}}"#),
            "\"to\" must be a string",
            "bad_payload",
        ),
        (
            "empty message",
            Message::text(r#"{"event":"send-message","data":{"message":"  "}}"#),
            "message must not be empty",
            "bad_payload",
        ),
        (
            "over-long message",
            Message::text(json!({"event":"send-message","data":{"message": too_long}}).to_string()),
            "message is too long: 4001 characters, at most 4000",
            "bad_payload",
        ),
        (
            "bad room name",
            Message::text(r#"{"event":"join-room","data":{"room":"no spaces"}}"#),
            "invalid room name",
            "bad_payload",
        ),
        (
            "over-long room name",
            Message::text(json!({"event":"join-room","data":{"room": long_room}}).to_string()),
            "invalid room name",
            "bad_payload",
        ),
        (
            "room not a string",
            Message::text(r#"{"event":"room-message","data":{"room":5,"message":"x"}}"#),
            "\"room\" must be a string",
            "bad_payload",
        ),
        (
            "refresh-token without a token",
            Message::text(r#"{"event":"refresh-token","data":{}}"#),
            "missing field \"token\"",
            "bad_payload",
        ),
        (
            "refresh-token token not a string",
            Message::text(r#"{"event":"refresh-token","data":{"token":7}}"#),
            "\"token\" must be a string",
            "bad_payload",
        ),
    ];
    for (case, frame, expected, code) in cases {
        alice.send(frame).await;
        let error = alice.expect("error").await;
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{case}: got {message:?}");
        assert_eq!(error["code"], code, "{case}");
    }

    // The connection is alive and nobody else heard a thing.
    alice.emit_ack("get-active-users", Value::Null, 1).await;
    alice.expect("active-users").await;
    assert_eq!(alice.expect_ack(1).await["ok"], true);
    bob.expect_silence().await;
    bob.emit("send-message", json!({"message": "still here"}))
        .await;
    assert_eq!(
        alice.expect("broadcast-message").await["message"],
        "still here"
    );
}

#[tokio::test]
async fn a_refused_request_that_asked_for_an_ack_gets_one() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let cases = [
        (json!({"event": "nope", "ack": 1}), "unknown event"),
        (
            json!({"event": "send-message", "data": {}, "ack": 2}),
            "missing field",
        ),
        (json!({"event": 5, "ack": 3}), "\"event\" must be a string"),
    ];
    for (frame, expected) in cases {
        let ack_id = frame["ack"].as_u64().expect("ack id");
        alice.send_json(frame).await;
        let error = alice.expect("error").await;
        let ack = alice.expect_ack(ack_id).await;
        assert_eq!(ack["ok"], false);
        assert_eq!(ack["error"], error["message"]);
        assert_eq!(ack["code"], error["code"]);
        assert!(
            ack["error"].as_str().is_some_and(|e| e.contains(expected)),
            "{ack}"
        );
    }
    alice
        .send_json(json!({"event": "get-active-users", "ack": "one"}))
        .await;
    let error = alice.expect("error").await;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"ack\" must be"))
    );
}

#[tokio::test]
async fn every_nasty_frame_gets_exactly_one_error_and_one_failed_ack() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let huge_object: serde_json::Map<String, Value> =
        (0..10_000).map(|i| (format!("k{i}"), json!(i))).collect();
    let socket_io_sized = "x".repeat(70_000);

    // (case, frame text without its ack, what the error names, code)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "since 2^63",
            r#"{"event":"sync","data":{"since":9223372036854775808}"#.into(),
            "since",
            "bad_payload",
        ),
        (
            "since 2^64",
            r#"{"event":"sync","data":{"since":18446744073709551616}"#.into(),
            "since",
            "bad_payload",
        ),
        (
            "since 1e300",
            r#"{"event":"sync","data":{"since":1e300}"#.into(),
            "since",
            "bad_payload",
        ),
        (
            "since -1",
            r#"{"event":"sync","data":{"since":-1}"#.into(),
            "since",
            "bad_payload",
        ),
        (
            "since 1.5",
            r#"{"event":"sync","data":{"since":1.5}"#.into(),
            "since",
            "bad_payload",
        ),
        (
            "since \"5\"",
            r#"{"event":"sync","data":{"since":"5"}"#.into(),
            "since",
            "bad_payload",
        ),
        (
            "since null",
            r#"{"event":"sync","data":{"since":null}"#.into(),
            "since",
            "bad_payload",
        ),
        (
            "number beyond f64",
            r#"{"event":"sync","data":{"since":1e400}"#.into(),
            "invalid JSON",
            "bad_frame",
        ),
        (
            "data null",
            r#"{"event":"join-room","data":null"#.into(),
            "needs a payload",
            "bad_payload",
        ),
        (
            "event null",
            r#"{"event":null"#.into(),
            "\"event\" must be a string",
            "bad_frame",
        ),
        (
            "duplicate keys, the last wins",
            r#"{"event":"send-message","data":{"message":"a","message":5}"#.into(),
            "must be a string",
            "bad_payload",
        ),
        (
            "nesting past serde_json's 128 levels",
            format!(r#"{{"event":"send-message","data":{deep}"#),
            "recursion limit",
            "bad_frame",
        ),
        (
            "a huge object as a room",
            format!(
                r#"{{"event":"join-room","data":{{"room":{}}}"#,
                Value::Object(huge_object)
            ),
            "\"room\" must be a string, not an object",
            "bad_payload",
        ),
        (
            "70,000 characters (within socket.io's 1 MB)",
            format!(r#"{{"event":"send-message","data":{{"message":"{socket_io_sized}"}}"#),
            "message is too long: 70000 characters, at most 4000",
            "bad_payload",
        ),
    ];
    for (ack, (case, frame, expected, code)) in (1_u64..).zip(&cases) {
        alice
            .send(Message::text(format!(r#"{frame},"ack":{ack}}}"#)))
            .await;
        let error = alice.expect("error").await;
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{case}: {message}");
        assert_eq!(error["code"], *code, "{case}");
        let reply = alice.expect_ack(ack).await;
        assert_eq!(reply["ok"], false, "{case}");
        assert_eq!(reply["code"], *code, "{case}");
    }
    alice.expect_silence().await;

    // Still connected and served.
    alice.emit_ack("get-active-users", Value::Null, 99).await;
    assert_eq!(alice.expect("active-users").await["count"], 1);
    assert_eq!(alice.expect_ack(99).await["ok"], true);
}

#[tokio::test]
async fn an_oversized_claim_is_refused_with_its_name_on_every_door() {
    let app = spawn_app().await;
    let token = sign(
        jsonwebtoken::Algorithm::HS256,
        &json!({"sub": "u", "username": "n".repeat(100_000), "exp": in_an_hour()}),
    );
    let expected = "invalid token: claim \"username\" is longer than 256 characters";

    let mut request = app.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let Err((status, body)) = app.connect(request).await else {
        panic!("/ws accepted a 100 KB username");
    };
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["error"], expected, "/ws");

    let response = reqwest::Client::new()
        .get(app.url("/websocket/active-users"))
        .bearer_auth(&token)
        .timeout(WAIT)
        .send()
        .await
        .expect("REST answers");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["error"], expected, "REST");
}
