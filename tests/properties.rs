//! Property tests over everything a client controls before a command runs: the `/ws` frame
//! parser, the event payload parser, and the JWT-carrying inputs (where the token is found,
//! the token itself, the claims in it). For any input: no panic, an `Ok` or an error whose
//! message is not empty, within a bounded time; and a frame that carries an ack id gets it
//! back on refusal, so its reply can be acknowledged.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use jsonwebtoken::{EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use switchboard::Settings;
use switchboard::internals::{
    Claims, ClientEvent, ClientFrame, Identity, ParseLimits, Verifier, find_token,
};

/// The most any single parse may take (debug build, slow CI machine included).
const BOUND: Duration = Duration::from_secs(2);
const LIMITS: ParseLimits = ParseLimits {
    max_message_chars: 4000,
};
const SECRET: &str = "property-test-secret-0123456789";

/// Runs `f` and fails the property when it takes longer than [`BOUND`].
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let started = Instant::now();
    let out = f();
    prop_assert!(
        started.elapsed() < BOUND,
        "{what} took {:?}",
        started.elapsed()
    );
    Ok(out)
}

/// Any JSON value, numbers at the edges of every range included.
fn json_value() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(9_223_372_036_854_775_808_u64)),
        Just(json!(1e300)),
        Just(json!(-1)),
        Just(json!(1.5)),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Field names the parsers look for, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "message",
            "room",
            "to",
            "since",
            "clientMsgId",
            "ack",
            "event",
            "data"
        ])
        .prop_map(String::from),
        "[a-zA-Z]{0,8}",
    ]
}

/// Event names: every known one, and others.
fn event_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(ClientEvent::NAMES.to_vec()).prop_map(String::from),
        ".{0,20}",
    ]
}

/// `n` nested arrays around `inner`.
fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Checks one frame the way the `/ws` reader uses it: parse, then the event's payload.
fn check_frame(text: &str) -> Result<(), TestCaseError> {
    match timed("ClientFrame::parse", || ClientFrame::parse(text))? {
        Ok(frame) => {
            let parsed = timed("ClientEvent::parse", || {
                ClientEvent::parse(&frame.event, frame.data.as_ref(), LIMITS)
            })?;
            if let Err(e) = parsed {
                prop_assert!(!e.to_string().is_empty());
            }
        }
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            timed("ClientFrame::ack_of_invalid", || {
                ClientFrame::ack_of_invalid(text)
            })?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_frame_parses_or_is_refused_with_a_reason(text in ".{0,200}") {
        check_frame(&text)?;
    }

    #[test]
    fn any_json_frame_parses_or_is_refused_and_keeps_its_ack(
        event in prop::option::of(event_name()),
        data in prop::option::of(json_value()),
        ack in any::<u64>(),
        extra in prop::collection::vec((field_name(), json_value()), 0..4),
    ) {
        let mut frame = Map::new();
        for (name, value) in extra {
            frame.insert(name, value);
        }
        if let Some(event) = event {
            frame.insert("event".into(), Value::String(event));
        }
        if let Some(data) = data {
            frame.insert("data".into(), data);
        }
        frame.insert("ack".into(), json!(ack));
        let text = Value::Object(frame).to_string();
        check_frame(&text)?;
        let ack_seen = match ClientFrame::parse(&text) {
            Ok(frame) => frame.ack,
            Err(_) => ClientFrame::ack_of_invalid(&text),
        };
        prop_assert_eq!(ack_seen, Some(ack), "{}", text);
    }

    #[test]
    fn a_frame_too_deep_or_with_numbers_out_of_range_still_finds_its_ack(
        depth in 100_usize..5000,
        ack in any::<u64>(),
        number in prop::sample::select(vec!["1e400", "-1e400", "1", "18446744073709551616"]),
    ) {
        let text = format!(
            r#"{{"event":"send-message","ack":{ack},"data":{}}}"#,
            nested(depth, number)
        );
        check_frame(&text)?;
        let ack_seen = match ClientFrame::parse(&text) {
            Ok(frame) => frame.ack,
            Err(_) => ClientFrame::ack_of_invalid(&text),
        };
        prop_assert_eq!(ack_seen, Some(ack));
    }

    #[test]
    fn any_payload_of_a_known_event_is_accepted_or_refused_as_a_payload(
        name in prop::sample::select(ClientEvent::NAMES.to_vec()),
        data in prop::option::of(json_value()),
        long_message in 0_usize..10_000,
    ) {
        let mut data = data;
        if let Some(Value::Object(obj)) = &mut data && long_message > 3990 {
            obj.insert("message".into(), Value::String("é".repeat(long_message)));
        }
        let parsed = timed("ClientEvent::parse", || ClientEvent::parse(name, data.as_ref(), LIMITS))?;
        if let Err(e) = parsed {
            prop_assert!(!e.to_string().is_empty());
            prop_assert_eq!(e.kind, switchboard::internals::ProtocolErrorKind::Payload);
        }
    }

    #[test]
    fn any_since_is_a_message_id_or_refused(since in json_value()) {
        let data = json!({ "since": since });
        match ClientEvent::parse("sync", Some(&data), LIMITS) {
            Ok(ClientEvent::Sync { since: id }) => {
                prop_assert!(i64::try_from(id).is_ok());
                prop_assert_eq!(since.as_u64(), Some(id));
            }
            Ok(other) => prop_assert!(false, "parsed as {:?}", other),
            Err(e) => prop_assert!(e.to_string().contains("since"), "{}", e),
        }
    }

    #[test]
    fn any_claims_give_a_bounded_identity_or_a_reason(
        sub in prop::option::of(".{0,300}"),
        username in prop::option::of(".{0,300}"),
        name in prop::option::of(".{0,300}"),
        role in prop::option::of(".{0,300}"),
        roles in prop::option::of(prop::collection::vec(".{0,300}", 0..4)),
    ) {
        let claims = Claims { sub, username, name, role, roles, ..Claims::default() };
        match timed("Identity::try_from", || Identity::try_from(claims))? {
            Ok(id) => {
                for value in [&id.user_id, &id.username, &id.role] {
                    prop_assert!(!value.trim().is_empty());
                    prop_assert!(value.chars().count() <= 256);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn any_presented_token_is_found_or_refused_with_a_reason(
        auth in prop::option::of(".{0,60}"),
        header in prop::option::of("[ -~]{0,60}"),
        query in prop::option::of(".{0,60}"),
    ) {
        let mut headers = HeaderMap::new();
        if let Some(h) = header.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(AUTHORIZATION, h);
        }
        match timed("find_token", || find_token(auth.as_deref(), &headers, query.as_deref()))? {
            Ok(token) => prop_assert!(!token.is_empty()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn any_token_text_is_verified_or_refused_with_a_reason(token in "[A-Za-z0-9_.=-]{0,300}") {
        let verifier = verifier();
        let refused = timed("Verifier::verify", || verifier.verify(&token))?;
        prop_assert!(refused.is_err());
        prop_assert!(!refused.err().map(|e| e.to_string()).unwrap_or_default().is_empty());
    }

    #[test]
    fn any_signed_claims_give_an_identity_or_a_reason(claims in json_value(), username_len in 0_usize..2000) {
        let mut claims = match claims {
            Value::Object(obj) => obj,
            other => Map::from_iter([("x".to_string(), other)]),
        };
        claims.insert("exp".into(), json!(u64::MAX / 2));
        if username_len > 0 {
            claims.insert("sub".into(), json!("u"));
            claims.insert("username".into(), json!("n".repeat(username_len)));
        }
        let token = jsonwebtoken::encode(
            &Header::default(),
            &Value::Object(claims),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let verifier = verifier();
        match timed("Verifier::verify", || verifier.verify(&token))? {
            Ok(id) => prop_assert!(id.username.chars().count() <= 256),
            Err(e) => {
                let message = e.to_string();
                prop_assert!(!message.is_empty());
                if username_len > 256 {
                    prop_assert!(message.contains("username"), "{}", message);
                }
            }
        }
    }
}

fn verifier() -> Verifier {
    let settings = Settings::for_database("unused.db", SECRET);
    Verifier::from_settings(&settings.jwt).expect("an HS256 verifier")
}
