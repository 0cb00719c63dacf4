//! Bad input over `/ws`: each gets an `error` that names the problem (and an ack with
//! `ok: false` when one was asked for), and the connection and everyone else carry on.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

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
