//! The token lifecycle on `/ws` (`docs/protocol.md` section 10): a live connection is bound to its
//! token's `exp`, warned before it, closed with 4001 after it, renewed in-band with
//! `refresh-token`; an operator's revoke closes a user's connections and refuses their older
//! tokens, also after a restart. Short-lived tokens with `JWT_LEEWAY_SECS=0`; the only sleep
//! is for the clock to pass an `exp`.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::Settings;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

use crate::helpers::*;

/// No leeway, and the warning `warning_secs` before `exp`.
fn short_clock(warning_secs: u64) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.jwt.leeway_secs = 0;
        s.jwt.expiry_warning = Duration::from_secs(warning_secs);
    }
}

/// A token for `sub` with `role` that expires at `exp` and was issued at `iat`.
fn token_for(sub: &str, role: &str, exp: u64, iat: Option<u64>) -> String {
    let mut claims = json!({"sub": sub, "username": sub, "role": role, "exp": exp});
    if let Some(iat) = iat {
        claims["iat"] = json!(iat);
    }
    sign(Algorithm::HS256, &claims)
}

/// Connects with `token` and reads `connected`.
async fn connect(app: &TestApp, token: &str) -> WsClient {
    let mut client = app.ws(token).await;
    client.expect("connected").await;
    client
}

/// The HTTP refusal of a `/ws` connection with `token`.
async fn refused(app: &TestApp, token: &str) -> (StatusCode, String) {
    let mut request = app.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    app.connect(request)
        .await
        .err()
        .expect("the connection is refused")
}

/// Sends `refresh-token` with `token` and returns its ack.
async fn refresh(client: &mut WsClient, token: &str, ack: u64) -> Value {
    client
        .emit_ack("refresh-token", json!({ "token": token }), ack)
        .await;
    client.wait_for_ack(ack).await
}

/// The recorded end of `user_id`'s latest session, once `observer` saw the user leave.
async fn recorded_reason(app: &TestApp, observer: &mut WsClient, user_id: &str) -> String {
    let left = observer.wait_for("user-disconnected").await;
    assert_eq!(left["user"]["userId"], user_id);
    reason_of(app, observer, user_id)
        .await
        .expect("a closed session row")
}

/// Sleeps until the clock has passed `exp` (a whole second since the epoch).
async fn until_past(exp: u64) {
    while now_secs() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /websocket/users/{user_id}/revoke` as an admin.
async fn revoke(app: &TestApp, user_id: &str) -> Value {
    let path = format!("/websocket/users/{user_id}/revoke");
    let response = app
        .rest(Method::POST, &path, "root", "ADMIN")
        .send()
        .await
        .expect("revoke answers");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON body")
}

#[tokio::test]
async fn a_token_that_expires_is_warned_then_closed_with_4001_and_recorded_as_token_expired() {
    let app = spawn_app_with(short_clock(2)).await;
    let (mut observer, _) = app.user("observer", "USER").await;
    let exp = now_secs() + 3;
    let token = token_for("alice", "USER", exp, None);
    let mut alice = connect(&app, &token).await;

    let warning = alice.expect("token-expiring").await;
    assert!(
        warning["exp"].as_u64().is_some_and(|e| e + 1 >= exp),
        "{warning}"
    );
    assert!(
        warning["secondsLeft"].as_u64().is_some_and(|s| s <= 2),
        "{warning}"
    );

    let close = alice.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4001);
    assert_eq!(close.reason.as_str(), "token expired");
    assert!(
        now_secs() >= warning["exp"].as_u64().expect("exp"),
        "not before exp"
    );
    assert_eq!(
        recorded_reason(&app, &mut observer, "alice").await,
        "token_expired"
    );
}

#[tokio::test]
async fn a_refresh_before_exp_keeps_the_connection_past_the_old_exp_and_warns_again_before_the_new_one()
 {
    let app = spawn_app_with(short_clock(2)).await;
    let old_exp = now_secs() + 2;
    let mut alice = connect(&app, &token_for("alice", "USER", old_exp, None)).await;
    assert_eq!(alice.expect("token-expiring").await["exp"], old_exp);

    let new_exp = now_secs() + 6;
    let ack = refresh(&mut alice, &token_for("alice", "USER", new_exp, None), 1).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["exp"], new_exp);

    until_past(old_exp).await;
    alice.emit_ack("get-active-users", Value::Null, 2).await;
    assert_eq!(
        alice.wait_for_ack(2).await["ok"],
        true,
        "alive past the old exp"
    );
    let warning = alice.wait_for("token-expiring").await;
    assert_eq!(warning["exp"], new_exp, "a new warning, for the new exp");
    let close = alice.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4001, "then the new exp ends it");
}

#[tokio::test]
async fn a_refresh_with_another_sub_or_a_bad_token_is_refused_and_the_old_expiry_stays() {
    let app = spawn_app_with(short_clock(60)).await;
    let mut alice = connect(&app, &token_for("alice", "USER", now_secs() + 3, None)).await;
    alice.expect("token-expiring").await;

    let cases = [
        (
            token_for("bob", "USER", in_an_hour(), None),
            "wrong_subject",
            "another user",
        ),
        ("not-a-jwt".to_string(), "token_refused", "not a token"),
        (
            sign_hmac_with(
                b"another-secret-0123456789",
                &json!({"sub": "alice", "exp": in_an_hour()}),
            ),
            "token_refused",
            "bad signature",
        ),
        (
            sign(
                Algorithm::HS256,
                &json!({"sub": "alice", "exp": now_secs() - 60}),
            ),
            "token_refused",
            "expired",
        ),
    ];
    for (ack, (token, code, why)) in (1..).zip(cases) {
        alice
            .emit_ack("refresh-token", json!({ "token": token }), ack)
            .await;
        let error = alice.wait_for("error").await;
        assert_eq!(error["code"], code, "{why}: {error}");
        let reply = alice.expect_ack(ack).await;
        assert_eq!(reply["ok"], false, "{why}");
        assert_eq!(reply["code"], code, "{why}");
    }

    let close = alice.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4001, "the old expiry still holds");
}

#[tokio::test]
async fn a_role_change_by_refresh_moves_the_users_role_broadcasts_at_once() {
    let app = spawn_app().await;
    let (mut alice, _) = app.user("alice", "USER").await;
    let (mut bob, _) = app.user("bob", "USER").await;
    alice.expect("user-connected").await;

    let ack = refresh(
        &mut alice,
        &token_for("alice", "ADMIN", in_an_hour(), None),
        1,
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");

    let to_role = |role: &'static str| {
        let request = app
            .rest(Method::POST, "/websocket/send-to-role", "root", "ADMIN")
            .json(&json!({"role": role, "message": format!("to {role}")}));
        async move {
            let response = request.send().await.expect("sent");
            response.json::<Value>().await.expect("JSON")
        }
    };
    let sent = to_role("ADMIN").await;
    assert_eq!(sent["recipients"], 1, "{sent}");
    assert_eq!(
        alice.wait_for("role-notification").await["message"],
        "to ADMIN"
    );

    let sent = to_role("USER").await;
    assert_eq!(sent["recipients"], 1, "only bob is a USER now: {sent}");
    assert_eq!(
        bob.wait_for("role-notification").await["message"],
        "to USER"
    );
    alice.expect_silence().await;

    alice.emit_ack("get-active-users", Value::Null, 2).await;
    let users = alice.wait_for_ack(2).await;
    let me = users["users"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["userId"] == "alice"))
        .cloned()
        .expect("alice is online");
    assert_eq!(me["role"], "ADMIN", "the user object follows the new token");
}

#[tokio::test]
async fn a_revoke_closes_the_users_connections_refuses_older_tokens_and_accepts_newer_ones() {
    let app = spawn_app().await;
    let (mut observer, _) = app.user("observer", "USER").await;
    let old = token_for("alice", "USER", in_an_hour(), Some(now_secs()));
    let mut alice = connect(&app, &old).await;
    let mut alice_without_iat = connect(&app, &app.token("alice", "USER")).await;

    let revoked = revoke(&app, "alice").await;
    assert_eq!(revoked["disconnected"], 2, "{revoked}");
    let not_before = revoked["notBefore"].as_u64().expect("notBefore");
    for client in [&mut alice, &mut alice_without_iat] {
        let close = client.expect_close().await.expect("a close frame");
        assert_eq!(u16::from(close.code), 4003);
    }
    assert_eq!(
        recorded_reason(&app, &mut observer, "alice").await,
        "revoked"
    );

    for (token, why) in [
        (old.clone(), "issued before the revoke"),
        (app.token("alice", "USER"), "no iat"),
    ] {
        let (status, body) = refused(&app, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}");
        assert!(body.contains("token revoked"), "{why}: {body}");
    }
    let rest = reqwest::Client::new()
        .get(app.url("/websocket/active-users"))
        .bearer_auth(&old)
        .timeout(WAIT)
        .send()
        .await
        .expect("answers");
    assert_eq!(
        rest.status(),
        StatusCode::UNAUTHORIZED,
        "REST refuses it too"
    );

    let newer = token_for("alice", "USER", in_an_hour(), Some(not_before));
    let mut again = connect(&app, &newer).await;
    let ack = refresh(&mut again, &old, 1).await;
    assert_eq!(
        ack["code"], "token_refused",
        "nor can it come back by refresh"
    );
    let bob = connect(
        &app,
        &token_for("bob", "USER", in_an_hour(), Some(not_before - 10)),
    )
    .await;
    bob.close().await;
}

on_both_backends!(a_revocation_survives_a_restart);

async fn a_revocation_survives_a_restart(backend: Backend) {
    let Some(mut app) = spawn_on(backend, |_| {}).await else {
        return;
    };
    let dir = app.take_dir();
    let old = token_for("alice", "USER", in_an_hour(), Some(now_secs()));
    let not_before = revoke(&app, "alice").await["notBefore"]
        .as_u64()
        .expect("notBefore");
    let place = app.place();
    app.stop().await;

    let restarted = spawn_app_at(&place, |_| {}).await;
    let (status, body) = refused(&restarted, &old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("token revoked"), "{body}");
    connect(
        &restarted,
        &token_for("alice", "USER", in_an_hour(), Some(not_before)),
    )
    .await
    .close()
    .await;
    let stored: (String, i64) = restarted
        .sql()
        .await
        .row("SELECT user_id, not_before FROM token_revocations", &[])
        .await;
    assert_eq!(stored, ("alice".to_string(), not_before as i64));
    drop(dir);
}
