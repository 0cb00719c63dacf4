//! The join hook: for a room whose policy says `"join": "hook"`, the gateway asks the
//! application's backend (`JOIN_HOOK_URL`) whether a user may join, and the backend answers.
//! This is where that one HTTP exchange lives: the request, its signature, reading the answer,
//! the cache of answers ([`super::hook_cache`]) and the sharing of one request among
//! concurrent joins of the same user and room. The caller (`commands/join_room.rs`) asks
//! outside the hub lock and comes back to the hub with the answer.
//!
//! **Request.** `POST JOIN_HOOK_URL`, `content-type: application/json`, body
//! `{ "userId", "username", "role", "room", "claims": { "exp", "iat", "rooms" } }`: the
//! user's newest token as switchboard keeps it (`iat` and `rooms` are `null` when the token
//! has none; `rooms` is written back from the parsed claim, in the token's order and with the
//! short form for read-write entries). Other claims of the token are not kept, so they are not
//! forwarded: an application that needs more looks the user up by `userId`.
//!
//! **Signature** (Standard Webhooks, the format of the application's other webhooks):
//! `webhook-id` (unique per request), `webhook-timestamp` (unix seconds) and
//! `webhook-signature: v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where the
//! key is the base64 after `whsec_` in `JOIN_HOOK_SECRET`. A malformed secret stops the
//! gateway at start (and `check-config`), naming `JOIN_HOOK_SECRET`.
//!
//! **Answer.** A 2xx status with a JSON body `{ "allow": true | false }` (other fields are
//! ignored); HTTP 403 also refuses. Anything else (another status, a redirect, a body that is
//! not that object, a connection error, no answer within `JOIN_HOOK_TIMEOUT_MS`) is an error,
//! and the join is refused as `hook_unavailable`: fail closed. Errors are logged with their
//! cause here; the client hears only that the check is unavailable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use super::AccessError;
use super::hook_cache::{HookCache, Key};
use crate::auth::Identity;
use crate::config::{AccessSettings, WebhookSecret};
use crate::metrics::{HookResult, Metrics};
use crate::protocol::standard_webhooks;
use crate::telemetry::error_chain;

/// Most answers kept at once: at ~100 bytes each, about 10 MB at worst.
const CACHE_CAPACITY: usize = 100_000;
/// How much longer than `JOIN_HOOK_TIMEOUT_MS` a join waits for a request it shares (the
/// request's own timeout ends it first; this bounds the wait whatever happens to it).
const WAIT_MARGIN: Duration = Duration::from_millis(250);

/// Why the hook gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HookError {
    #[error("the join hook answered HTTP {0}")]
    Status(u16),
    #[error("the join hook's answer is not {{\"allow\": true|false}}: {0}")]
    Body(String),
    #[error("the join hook could not be reached: {0}")]
    Unreachable(String),
    #[error("the join hook did not answer within {0:?}")]
    Timeout(Duration),
}

/// What one request (or the cache) said.
type Answer = Result<bool, HookError>;

/// The application's join hook; one per gateway, shared (`Arc`).
pub struct JoinHook {
    client: reqwest::Client,
    url: String,
    key: Vec<u8>,
    timeout: Duration,
    cache: Mutex<HookCache>,
    /// Requests under way, by key: a join of the same user and room waits for the same answer.
    /// A request's task removes its entry when it ends, whoever still waits.
    flights: Mutex<HashMap<Key, watch::Receiver<Option<Answer>>>>,
    /// A random prefix and a counter make each `webhook-id` unique, across restarts too.
    id_prefix: String,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AskBody<'a> {
    user_id: &'a str,
    username: &'a str,
    role: &'a str,
    room: &'a str,
    claims: ClaimsBody,
}

#[derive(Serialize)]
struct ClaimsBody {
    exp: u64,
    iat: Option<u64>,
    rooms: Option<Value>,
}

#[derive(Deserialize)]
struct AnswerBody {
    allow: bool,
}

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64).
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, AccessError> {
    WebhookSecret::parse(secret)
        .map(|key| key.key().to_vec())
        .map_err(|why| AccessError::Hook(format!("JOIN_HOOK_SECRET {why}")))
}

impl JoinHook {
    /// The hook of `settings`, `None` when `JOIN_HOOK_URL` is unset.
    pub fn from_settings(
        settings: &AccessSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Self>>, AccessError> {
        let Some(url) = &settings.join_hook_url else {
            return Ok(None);
        };
        let secret = settings.join_hook_secret.as_deref().ok_or_else(|| {
            AccessError::Hook("JOIN_HOOK_URL is set without JOIN_HOOK_SECRET".into())
        })?;
        let key = parse_secret(secret)?;
        let client = reqwest::Client::builder()
            .timeout(settings.join_hook_timeout)
            // A signed request goes where it was configured to, and nowhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AccessError::Hook(format!("JOIN_HOOK_URL: {e}")))?;
        let mut prefix = [0_u8; 8];
        getrandom::fill(&mut prefix)
            .map_err(|e| AccessError::Hook(format!("no random bytes for webhook ids: {e}")))?;
        Ok(Some(Arc::new(Self {
            client,
            url: url.clone(),
            key,
            timeout: settings.join_hook_timeout,
            cache: Mutex::new(HookCache::new(settings.join_hook_cache, CACHE_CAPACITY)),
            flights: Mutex::new(HashMap::new()),
            id_prefix: prefix.iter().map(|b| format!("{b:02x}")).collect(),
            next_id: AtomicU64::new(1),
            metrics,
        })))
    }

    /// Whether `identity` may join `room`: the cached answer, the answer of a request already
    /// under way for them, or a new request's. Returns within the hook's timeout (plus a
    /// small margin).
    pub async fn ask(self: &Arc<Self>, identity: &Identity, room: &str) -> Answer {
        let key: Key = (identity.user_id.clone(), room.to_owned());
        if let Some(allowed) = lock(&self.cache).get(&key, Instant::now()) {
            self.metrics.join_hook(HookResult::Cached);
            return Ok(allowed);
        }
        let mut answer = {
            let mut flights = lock(&self.flights);
            match flights.get(&key) {
                Some(flight) => {
                    self.metrics.join_hook(HookResult::Cached);
                    flight.clone()
                }
                None => {
                    let flight = self.start(key.clone(), identity, room);
                    flights.insert(key, flight.clone());
                    flight
                }
            }
        };
        let wait = answer.wait_for(Option::is_some);
        match tokio::time::timeout(self.timeout + WAIT_MARGIN, wait).await {
            Ok(Ok(done)) => done
                .clone()
                .unwrap_or(Err(HookError::Timeout(self.timeout))),
            // The request's task ended without a word (it cannot, but an answer is owed).
            Ok(Err(_)) | Err(_) => Err(HookError::Timeout(self.timeout)),
        }
    }

    /// Starts the request for `key` in a task of its own, so that it ends (and leaves
    /// `flights`) even when every join waiting for it has gone.
    fn start(
        self: &Arc<Self>,
        key: Key,
        identity: &Identity,
        room: &str,
    ) -> watch::Receiver<Option<Answer>> {
        let (tx, rx) = watch::channel(None);
        let body = AskBody {
            user_id: &identity.user_id,
            username: &identity.username,
            role: &identity.role,
            room,
            claims: ClaimsBody {
                exp: identity.exp,
                iat: identity.iat,
                rooms: identity.grants.as_ref().map(|g| g.to_claim()),
            },
        };
        // Serialising our own struct of strings and numbers cannot fail.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let hook = self.clone();
        tokio::spawn(async move {
            let answer = hook.request(body).await;
            hook.metrics.join_hook(match &answer {
                Ok(true) => HookResult::Allow,
                Ok(false) => HookResult::Refuse,
                Err(_) => HookResult::Error,
            });
            if let Err(e) = &answer {
                tracing::warn!(error = %e, user_id = %key.0, room = %key.1, "join hook failed");
            }
            // Cached before the flight ends: a join arriving now finds one or the other.
            if let Ok(allowed) = answer {
                lock(&hook.cache).insert(key.clone(), allowed, Instant::now());
            }
            lock(&hook.flights).remove(&key);
            let _ = tx.send(Some(answer));
        });
        rx
    }

    /// One signed POST and its reading.
    async fn request(&self, body: Vec<u8>) -> Answer {
        let id = format!(
            "msg_{}{:x}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json");
        for (name, value) in standard_webhooks::headers(&self.key, &id, &body) {
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            return Ok(false);
        }
        if !status.is_success() {
            return Err(HookError::Status(status.as_u16()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        serde_json::from_slice::<AnswerBody>(&bytes)
            .map(|a| a.allow)
            .map_err(|e| HookError::Body(e.to_string()))
    }

    fn transport_error(&self, e: reqwest::Error) -> HookError {
        if e.is_timeout() {
            HookError::Timeout(self.timeout)
        } else {
            HookError::Unreachable(error_chain(&e))
        }
    }
}

/// The maps are left consistent at every step, so a panic elsewhere does not spoil them.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_whsec_and_base64_and_a_bad_one_names_the_variable() {
        assert_eq!(
            parse_secret("whsec_c2VjcmV0").expect("valid"),
            b"secret".to_vec()
        );
        for bad in ["c2VjcmV0", "whsec_not base64!", "whsec_", ""] {
            let err = parse_secret(bad).expect_err("refused").to_string();
            assert!(err.contains("JOIN_HOOK_SECRET"), "{bad:?}: {err}");
        }
    }
}
