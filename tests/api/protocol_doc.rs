//! `docs/protocol.md` and the README pinned to the code, claim by claim where a claim is a
//! list the code also holds: the client events, the token refusals, the close reasons and the
//! settings the protocol names. A variant added to the code without a line in the documents
//! fails here (the `match`es below stop compiling when an enum grows).

use std::collections::BTreeSet;

use switchboard::internals::{AuthError, ClientEvent, CloseReason};

const PROTOCOL: &str = include_str!("../../docs/protocol.md");
const README: &str = include_str!("../../README.md");
const SCHEMA: &str = include_str!("../../docs/schema.md");
const ENV_EXAMPLE: &str = include_str!("../../.env.example");

/// The text under `heading`, up to the next heading of any level.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let body = &doc[start + heading.len()..];
    let end = body.find("\n#").unwrap_or(body.len());
    &body[..end]
}

/// The backticked words of the first cell of each table row in `text`.
fn first_cells(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|rest| rest.split(" |").next())
        .filter(|cell| cell.starts_with('`'))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_owned))
        .collect()
}

#[test]
fn the_client_events_table_lists_exactly_the_events_the_parser_knows() {
    let listed = first_cells(section(PROTOCOL, "## 4. Client events"));
    let known: BTreeSet<String> = ClientEvent::NAMES.iter().map(|n| n.to_string()).collect();
    assert_eq!(listed, known);
}

/// Every kind of token refusal; the `match` makes a new kind a compile error here.
fn every_auth_error() -> Vec<AuthError> {
    let every = vec![
        AuthError::Missing,
        AuthError::MalformedHeader,
        AuthError::Malformed,
        AuthError::BadSignature,
        AuthError::WrongAlgorithm,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongIssuer,
        AuthError::WrongAudience,
        AuthError::Revoked,
        AuthError::BadClaim("missing claim \"sub\"".into()),
    ];
    for e in &every {
        match e {
            AuthError::Missing
            | AuthError::MalformedHeader
            | AuthError::Malformed
            | AuthError::BadSignature
            | AuthError::WrongAlgorithm
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::WrongIssuer
            | AuthError::WrongAudience
            | AuthError::Revoked
            | AuthError::BadClaim(_) => {}
        }
    }
    every
}

#[test]
fn every_token_refusal_text_is_in_the_authentication_section() {
    let refusals = section(PROTOCOL, "## 2. Authentication");
    for error in every_auth_error() {
        let text = error.to_string();
        assert!(
            refusals.contains(&format!("`{text}`")),
            "docs/protocol.md section 2 does not list the refusal {text:?}"
        );
    }
}

/// Every close reason's stored value; the `match` makes a new reason a compile error here.
fn every_close_reason() -> BTreeSet<String> {
    use CloseReason::*;
    let every = [
        ClientClosed,
        IdleTimeout,
        SlowConsumer,
        RateLimited,
        FrameTooLarge,
        ServerShutdown,
        TransportError,
        Kicked,
        TokenExpired,
        Revoked,
        NodeLost,
    ];
    for reason in every {
        match reason {
            ClientClosed | IdleTimeout | SlowConsumer | RateLimited | FrameTooLarge
            | ServerShutdown | TransportError | Kicked | TokenExpired | Revoked | NodeLost => {}
        }
    }
    let mut values: BTreeSet<String> = every.iter().map(|r| r.as_str().to_owned()).collect();
    // Not a close: crash recovery writes it into the rows a dead run left open.
    values.insert("server_restart".into());
    values
}

#[test]
fn the_readme_close_reasons_table_lists_every_reason() {
    let listed = first_cells(section(README, "### Close reasons"));
    assert_eq!(listed, every_close_reason());
}

#[test]
fn the_schema_lists_every_disconnect_reason() {
    let values = section(SCHEMA, "`disconnect_reason` values");
    assert_eq!(first_cells(values), every_close_reason());
}

#[test]
fn every_setting_the_protocol_names_exists() {
    let declared: BTreeSet<&str> = ENV_EXAMPLE
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    let named: BTreeSet<&str> = PROTOCOL
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| {
            word.starts_with(|c: char| c.is_ascii_uppercase())
                && word.contains('_')
                && word.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
        .collect();
    assert!(!named.is_empty());
    let unknown: Vec<_> = named.difference(&declared).collect();
    assert!(
        unknown.is_empty(),
        "docs/protocol.md names settings .env.example does not have: {unknown:?}"
    );
}
