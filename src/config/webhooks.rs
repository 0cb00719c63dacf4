//! Webhook settings (`docs/protocol.md` section 15): where the gateway's events go and how
//! hard it tries. One endpoint needs only `WEBHOOK_URL` and `WEBHOOK_SECRET`; several, each
//! with its own secret and filter, are written in `WEBHOOKS_FILE` (a JSON file: a list of
//! endpoints outgrows variables). Both are read and checked here, once, at start and by
//! `switchboard check-config`, so that the store (which writes the outbox) and the sender
//! (which empties it) are handed endpoints that are already known good.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::ConfigError;
use super::env::at_least;

/// The name of the endpoint `WEBHOOK_URL` configures.
pub const DEFAULT_ENDPOINT: &str = "default";

/// One kind of webhook event (contract names, fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    /// A user's first connection, cluster-wide.
    UserOnline,
    /// A user's last connection closed, cluster-wide.
    UserOffline,
    /// A connection opened.
    SessionOpened,
    /// A connection closed (`reason`: the `sessions.disconnect_reason`).
    SessionClosed,
    /// A user became a member of a room.
    RoomJoined,
    /// A membership ended (`reason`: `left`, `removed`, `not_granted`).
    RoomLeft,
    /// A message was committed.
    MessageStored,
    /// A message queued for an offline user was delivered later.
    MessageDelivered,
}

impl WebhookEvent {
    /// Every event type, in the order the docs list them.
    pub const ALL: [Self; 8] = [
        Self::UserOnline,
        Self::UserOffline,
        Self::SessionOpened,
        Self::SessionClosed,
        Self::RoomJoined,
        Self::RoomLeft,
        Self::MessageStored,
        Self::MessageDelivered,
    ];

    /// The `type` field of the event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserOnline => "user.online",
            Self::UserOffline => "user.offline",
            Self::SessionOpened => "session.opened",
            Self::SessionClosed => "session.closed",
            Self::RoomJoined => "room.joined",
            Self::RoomLeft => "room.left",
            Self::MessageStored => "message.stored",
            Self::MessageDelivered => "message.delivered",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// What an endpoint gets when it names no events: everything but `message.stored`,
    /// which can be as many events as the gateway has messages and is asked for by name.
    pub fn default_set() -> Vec<Self> {
        Self::ALL
            .into_iter()
            .filter(|e| *e != Self::MessageStored)
            .collect()
    }
}

/// Which events one endpoint gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The event types it gets.
    pub events: Vec<WebhookEvent>,
    /// For `message.stored`: only messages sent as these event names (empty: any).
    pub message_events: Vec<String>,
    /// Only events that name a room matching one of these patterns (`*` = any run of
    /// characters); events that name no room are not filtered by it. Empty: any room.
    pub rooms: Vec<String>,
}

/// The HMAC key of a Standard Webhooks secret. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Parses `whsec_` + base64 (the Standard Webhooks format).
    pub fn parse(secret: &str) -> Result<Self, String> {
        let encoded = secret.trim().strip_prefix("whsec_").ok_or(
            "must be \"whsec_\" followed by base64 (Standard Webhooks): the prefix is missing",
        )?;
        let key = STANDARD.decode(encoded).map_err(|_| {
            "must be \"whsec_\" followed by base64 (Standard Webhooks): what follows the prefix \
             is not base64"
        })?;
        if key.is_empty() {
            return Err(
                "must be \"whsec_\" followed by base64 (Standard Webhooks): the key is empty"
                    .into(),
            );
        }
        Ok(Self(key))
    }

    /// The key bytes, for signing.
    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// One place events are sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Its stable name: the outbox keys its events by it, so a changed URL keeps the backlog.
    pub name: String,
    /// Where events are POSTed (http or https).
    pub url: String,
    /// What requests are signed with.
    pub secret: WebhookSecret,
    /// Which events it gets.
    pub subscription: Subscription,
}

impl WebhookEndpoint {
    /// The URL as operators may see it (`check-config`, the REST API): see [`shown_url`].
    pub fn shown_url(&self) -> String {
        shown_url(&self.url)
    }
}

/// `url` with a password in it shown as `***`, like the database's.
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Webhooks: the endpoints and how they are sent to.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct WebhookSettings {
    /// An endpoint the gateway POSTs its events to (named `default`; every event type but
    /// message.stored). Needs WEBHOOK_SECRET.
    #[arg(long, env = "WEBHOOK_URL")]
    pub url: Option<String>,
    /// The secret WEBHOOK_URL's requests are signed with (Standard Webhooks: `whsec_` +
    /// base64).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// A JSON file of endpoints, each with its name, URL, secret and filter (README
    /// "Webhooks"); used beside WEBHOOK_URL if both are set. `switchboard check-config` checks
    /// it.
    #[arg(long, env = "WEBHOOKS_FILE")]
    pub file: Option<PathBuf>,
    /// How long one request may take before it counts as failed, in milliseconds.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub timeout: Duration,
    /// How long an event is retried (counted from when it happened) before it is marked
    /// failed and the endpoint's later events go on; failed events are listed and can be sent
    /// again. In seconds.
    #[arg(long, env = "WEBHOOK_GIVE_UP_SECS", default_value = "86400", value_parser = secs)]
    pub give_up: Duration,
    /// Most events in one request (1: one event per request, never batched).
    #[arg(long, env = "WEBHOOK_BATCH_MAX", default_value = "100", value_parser = at_least(1_usize))]
    pub batch_max: usize,
    /// Most bytes of event data in one request (one larger event still goes, alone).
    #[arg(long, env = "WEBHOOK_BATCH_BYTES", default_value = "262144", value_parser = at_least(1_usize))]
    pub batch_bytes: usize,
    /// Days sent and failed events stay in the outbox (0: forever).
    #[arg(long, env = "WEBHOOK_RETENTION_DAYS", default_value = "7", value_parser = at_least(0_u64))]
    pub retention_days: u64,
    /// The endpoints, from WEBHOOK_URL and WEBHOOKS_FILE (filled in by [`Self::resolve`]).
    #[arg(skip)]
    pub endpoints: Vec<WebhookEndpoint>,
}

impl WebhookSettings {
    /// Reads `WEBHOOK_URL` and `WEBHOOKS_FILE` into [`Self::endpoints`], every field checked.
    pub(super) fn resolve(mut self) -> Result<Self, ConfigError> {
        let mut endpoints = Vec::new();
        match (&self.url, &self.secret) {
            (Some(url), Some(secret)) => endpoints.push(WebhookEndpoint {
                name: DEFAULT_ENDPOINT.into(),
                url: check_url(url).map_err(|reason| refused("WEBHOOK_URL", url, reason))?,
                secret: WebhookSecret::parse(secret)
                    .map_err(|reason| refused("WEBHOOK_SECRET", "[redacted]", reason))?,
                subscription: Subscription {
                    events: WebhookEvent::default_set(),
                    message_events: Vec::new(),
                    rooms: Vec::new(),
                },
            }),
            (Some(url), None) => {
                return Err(refused(
                    "WEBHOOK_URL",
                    url,
                    "needs WEBHOOK_SECRET: every request is signed".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(refused(
                    "WEBHOOK_SECRET",
                    "[redacted]",
                    "is set without WEBHOOK_URL".into(),
                ));
            }
            (None, None) => {}
        }
        if let Some(file) = &self.file {
            endpoints.extend(
                read_file(file).map_err(|reason| {
                    refused("WEBHOOKS_FILE", &file.display().to_string(), reason)
                })?,
            );
        }
        let mut names = HashSet::new();
        if let Some(twice) = endpoints.iter().find(|e| !names.insert(e.name.as_str())) {
            return Err(refused(
                "WEBHOOKS_FILE",
                &self
                    .file
                    .as_deref()
                    .map(|f| f.display().to_string())
                    .unwrap_or_default(),
                format!("the endpoint name {:?} is used twice", twice.name),
            ));
        }
        self.endpoints = endpoints;
        Ok(self)
    }

    /// How long sent and failed events are kept; `None`: forever.
    pub fn retention(&self) -> Option<Duration> {
        (self.retention_days > 0).then(|| Duration::from_secs(self.retention_days * 86_400))
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        super::Settings::defaults().webhooks
    }
}

fn refused(name: &str, value: &str, reason: String) -> ConfigError {
    ConfigError {
        name: name.into(),
        value: value.into(),
        reason,
    }
}

fn check_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(url.to_owned())
}

/// `WEBHOOKS_FILE` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    endpoints: Vec<FileEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileEndpoint {
    name: String,
    url: String,
    secret: String,
    events: Option<Vec<String>>,
    #[serde(default)]
    message_events: Vec<String>,
    #[serde(default)]
    rooms: Vec<String>,
}

fn read_file(path: &Path) -> Result<Vec<WebhookEndpoint>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {e}"))?;
    let file: File = serde_json::from_str(&text).map_err(|e| {
        format!(
            "is not a webhook file ({{ \"endpoints\": [ {{ \"name\", \"url\", \"secret\", \
             \"events\", \"messageEvents\", \"rooms\" }} ] }}): {e}"
        )
    })?;
    file.endpoints
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let at = |field: &str, why: String| format!("endpoint {} ({field}): {why}", i + 1);
            let name = e.name.trim();
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(at(
                    "name",
                    "1 to 64 letters, digits, '-', '_' or '.'".into(),
                ));
            }
            let events = match e.events {
                None => WebhookEvent::default_set(),
                Some(names) => names
                    .iter()
                    .map(|n| {
                        WebhookEvent::parse(n.trim()).ok_or_else(|| {
                            let known: Vec<&str> =
                                WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
                            at(
                                "events",
                                format!("unknown event type {n:?}; known: {}", known.join(", ")),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            if e.rooms.iter().any(|r| r.trim().is_empty()) {
                return Err(at("rooms", "an empty room pattern".into()));
            }
            Ok(WebhookEndpoint {
                name: name.to_owned(),
                url: check_url(&e.url).map_err(|why| at("url", why))?,
                secret: WebhookSecret::parse(&e.secret).map_err(|why| at("secret", why))?,
                subscription: Subscription {
                    events,
                    message_events: e.message_events,
                    rooms: e.rooms,
                },
            })
        })
        .collect()
}

fn millis(s: &str) -> Result<Duration, String> {
    at_least(10_u64)(s).map(Duration::from_millis)
}

fn secs(s: &str) -> Result<Duration, String> {
    at_least(1_u64)(s).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<WebhookSettings, ConfigError> {
        super::super::Settings::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
        .map(|s| s.webhooks)
    }

    #[test]
    fn no_endpoint_by_default_and_one_from_the_two_variables() {
        assert!(load(&[]).expect("defaults").endpoints.is_empty());
        let s = load(&[
            ("WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            ("WEBHOOK_SECRET", "whsec_c2VjcmV0"),
        ])
        .expect("one endpoint");
        assert_eq!(s.endpoints.len(), 1);
        assert_eq!(s.endpoints[0].name, DEFAULT_ENDPOINT);
        assert_eq!(s.endpoints[0].secret.key(), b"secret");
        assert!(
            !s.endpoints[0]
                .subscription
                .events
                .contains(&WebhookEvent::MessageStored)
        );
        let err = load(&[("WEBHOOK_URL", "http://x/")]).expect_err("no secret");
        assert!(err.to_string().contains("WEBHOOK_SECRET"), "{err}");
        let err = load(&[
            ("WEBHOOK_URL", "ftp://x/"),
            ("WEBHOOK_SECRET", "whsec_eA=="),
        ])
        .expect_err("scheme");
        assert!(err.to_string().contains("http"), "{err}");
        let err = load(&[("WEBHOOK_URL", "http://x/"), ("WEBHOOK_SECRET", "nope")])
            .expect_err("secret format");
        assert!(err.to_string().contains("whsec_"), "{err}");
        assert!(
            !err.to_string().contains("nope"),
            "a secret is never shown: {err}"
        );
    }

    #[test]
    fn the_file_names_each_problem_with_its_endpoint_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hooks.json");
        let check = |text: &str| {
            std::fs::write(&path, text).expect("write");
            load(&[("WEBHOOKS_FILE", path.to_str().expect("utf-8"))])
        };
        let ok = check(
            r#"{ "endpoints": [ { "name": "search", "url": "https://example.com/h",
                 "secret": "whsec_c2VjcmV0", "events": ["message.stored"],
                 "messageEvents": ["room-message"], "rooms": ["ticket-*"] } ] }"#,
        )
        .expect("valid file");
        assert_eq!(
            ok.endpoints[0].subscription.events,
            vec![WebhookEvent::MessageStored]
        );
        let err = check(
            r#"{ "endpoints": [ { "name": "a", "url": "http://x/", "secret": "whsec_eA==",
                 "events": ["user.gone"] } ] }"#,
        )
        .expect_err("unknown type");
        assert!(err.to_string().contains("endpoint 1 (events)"), "{err}");
        let err = check(
            r#"{ "endpoints": [ { "name": "a", "url": "http://x/", "secret": "whsec_eA==" },
                                { "name": "a", "url": "http://y/", "secret": "whsec_eA==" } ] }"#,
        )
        .expect_err("same name twice");
        assert!(err.to_string().contains("used twice"), "{err}");
        let err = check(r#"{ "endpoints": [ { "name": "a", "url": "http://x/" } ] }"#)
            .expect_err("no secret");
        assert!(err.to_string().contains("secret"), "{err}");
    }
}
