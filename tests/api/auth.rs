//! Authentication on `/ws`: every refusal is HTTP 401 with a JSON body that says why, before
//! any upgrade; the algorithm is the configured one whatever the token's header says.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use switchboard::config::JwtKeySource;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

use crate::helpers::*;

fn claims() -> Value {
    json!({"sub": "alice", "username": "Alice", "role": "USER", "exp": in_an_hour()})
}

async fn refusal(app: &TestApp, authorization: Option<&str>, query: &str) -> (StatusCode, Value) {
    let mut request = format!("{}{query}", app.ws_url())
        .into_client_request()
        .expect("request");
    if let Some(value) = authorization {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(value).expect("header"),
        );
    }
    let (status, body) = app
        .connect(request)
        .await
        .err()
        .expect("the connection is refused");
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON body: {body}"));
    (status, body)
}

async fn refusal_of(app: &TestApp, token: &str) -> String {
    let (status, body) = refusal(app, Some(&format!("Bearer {token}")), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    body["error"].as_str().expect("error string").to_string()
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_a_reason() {
    let app = spawn_app().await;
    let mut expired = claims();
    expired["exp"] = json!(now_secs() - 3600);
    let mut not_yet = claims();
    not_yet["nbf"] = json!(now_secs() + 3600);
    let mut no_sub = claims();
    no_sub.as_object_mut().expect("object").remove("sub");
    let mut no_exp = claims();
    no_exp.as_object_mut().expect("object").remove("exp");
    let mut string_exp = claims();
    string_exp["exp"] = json!(in_an_hour().to_string());
    let good = sign(Algorithm::HS256, &claims());
    let tampered = format!("{}x", &good[..good.len() - 1]);

    let cases = [
        ("garbage", "not-a-jwt".to_string(), "invalid token"),
        ("bad signature", tampered, "invalid token"),
        ("expired", sign(Algorithm::HS256, &expired), "token expired"),
        (
            "not yet valid",
            sign(Algorithm::HS256, &not_yet),
            "token not yet valid",
        ),
        ("alg none", unsigned_token(&claims()), "invalid token"),
        (
            "HS512 instead of HS256",
            sign(Algorithm::HS512, &claims()),
            "algorithm not allowed",
        ),
        (
            "RS256 instead of HS256",
            sign(Algorithm::RS256, &claims()),
            "algorithm not allowed",
        ),
        ("missing sub", sign(Algorithm::HS256, &no_sub), "sub"),
        ("missing exp", sign(Algorithm::HS256, &no_exp), "exp"),
        (
            "exp as a string",
            sign(Algorithm::HS256, &string_exp),
            "invalid token",
        ),
    ];
    for (case, token, expected) in cases {
        let error = refusal_of(&app, &token).await;
        assert!(error.contains(expected), "{case}: {error}");
    }
}

#[tokio::test]
async fn a_missing_or_malformed_authorization_is_refused() {
    let app = spawn_app().await;
    let (status, body) = refusal(&app, None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing token");

    let (status, body) = refusal(&app, Some("Basic YWxpY2U6cHc="), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("Bearer")),
        "{body}"
    );

    let (status, body) = refusal(&app, None, "?token=").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing token");
}

#[tokio::test]
async fn the_token_may_come_in_the_query() {
    let app = spawn_app().await;
    let url = format!("{}?token={}", app.ws_url(), app.token("alice", "USER"));
    let mut client = app
        .connect(url.into_client_request().expect("request"))
        .await
        .expect("accepted");
    let connected = client.expect("connected").await;
    assert_eq!(connected["user"]["userId"], "alice");
}

#[tokio::test]
async fn the_header_wins_over_the_query() {
    let app = spawn_app().await;
    let mut request = format!("{}?token=garbage", app.ws_url())
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", app.token("bob", "USER"))).expect("header"),
    );
    let mut client = app.connect(request).await.expect("accepted");
    assert_eq!(client.expect("connected").await["user"]["userId"], "bob");
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = spawn_app_with(|s| {
        s.jwt.issuer = Some("https://auth.example".into());
        s.jwt.audience = Some("switchboard".into());
    })
    .await;
    let mut good = claims();
    good["iss"] = json!("https://auth.example");
    good["aud"] = json!("switchboard");
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");

    app.ws(&sign(Algorithm::HS256, &good))
        .await
        .expect("connected")
        .await;
    assert!(
        refusal_of(&app, &sign(Algorithm::HS256, &wrong_iss))
            .await
            .contains("issuer")
    );
    assert!(
        refusal_of(&app, &sign(Algorithm::HS256, &wrong_aud))
            .await
            .contains("audience")
    );
    assert!(
        refusal_of(&app, &sign(Algorithm::HS256, &claims()))
            .await
            .contains("invalid token")
    );
}

#[tokio::test]
async fn an_rs256_server_refuses_hmac_tokens_signed_with_its_public_key() {
    let public_key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rsa_public.pem");
    let app = spawn_app_with(|s| {
        s.jwt.algorithm = Algorithm::RS256;
        s.jwt.key = JwtKeySource::PublicKeyFile(public_key.into());
    })
    .await;
    let mut client = app.ws(&sign(Algorithm::RS256, &claims())).await;
    assert_eq!(client.expect("connected").await["user"]["userId"], "alice");

    let pem = std::fs::read(public_key).expect("fixture");
    let confused = sign_hmac_with(&pem, &claims());
    assert!(
        refusal_of(&app, &confused)
            .await
            .contains("algorithm not allowed")
    );
}

#[tokio::test]
async fn username_and_role_fall_back_through_the_documented_claims() {
    let app = spawn_app().await;
    let token = sign(
        Algorithm::HS256,
        &json!({"sub": "u9", "preferred_username": "Nine", "roles": ["EDITOR"], "exp": in_an_hour()}),
    );
    let connected = app.ws(&token).await.expect("connected").await;
    assert_eq!(connected["user"]["username"], "Nine");
    assert_eq!(connected["user"]["role"], "EDITOR");
}

#[tokio::test]
async fn a_cors_list_refuses_upgrades_from_other_origins() {
    let app = spawn_app_with(|s| {
        s.cors_origins = switchboard::config::CorsOrigins::List(vec!["https://app.example".into()]);
    })
    .await;
    let token = app.token("alice", "USER");
    let request_from = |origin: &str| {
        let mut request = format!("{}?token={token}", app.ws_url())
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).expect("header"));
        request
    };
    let (status, body) = app
        .connect(request_from("https://evil.example"))
        .await
        .err()
        .expect("refused");
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("origin not allowed"), "{body}");
    let mut client = app
        .connect(request_from("https://app.example"))
        .await
        .expect("an allowed origin connects");
    client.expect("connected").await;
}
