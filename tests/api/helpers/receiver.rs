//! A real HTTP endpoint for what the gateway sends out (the join hook's questions, the
//! webhooks' events), as an application would run it: axum on 127.0.0.1:0 behind an accept
//! loop of its own, so that a test can make it stop listening (open connections and all)
//! and listen again on the same port. It records every request (path, headers, body),
//! checks its Standard Webhooks signature itself (HMAC-SHA256 over `id.timestamp.body`, the
//! base64 of it after `v1,`, a recent timestamp), and answers as the test says: a reply
//! chosen from the body, the next N requests failing with 500, the next N slowly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tower_service::Service;

use super::now_secs;

/// What the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// A JSON body (none: empty).
    pub body: Option<Value>,
    /// How long it waits before answering.
    pub delay: Duration,
}

impl Reply {
    /// 200 with an empty body: what a webhook endpoint answers.
    pub fn ok() -> Self {
        Self::status(StatusCode::OK)
    }

    /// 200 with `body`.
    pub fn json(body: Value) -> Self {
        Self {
            body: Some(body),
            ..Self::ok()
        }
    }

    /// `status` with an empty body.
    pub fn status(status: StatusCode) -> Self {
        Self {
            status,
            body: None,
            delay: Duration::ZERO,
        }
    }

    /// The same reply, given after `delay`.
    pub fn after(self, delay: Duration) -> Self {
        Self { delay, ..self }
    }
}

/// One request as it arrived, and what became of it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request's path.
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, byte for byte.
    pub body: Bytes,
    /// Whether its Standard Webhooks signature verifies under the receiver's key.
    pub signed: bool,
    /// The status it was (or is being) answered with.
    pub status: StatusCode,
    /// Whether the answer was given: false while a slow answer is pending, and for ever when
    /// the sender went away first (hyper drops the handler with the connection).
    pub answered: bool,
}

impl Received {
    /// The header `name` ("" when absent or not text).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The webhook events it carries: the list of a batch (`{"events": [...]}`), or the one
    /// event that is the body.
    pub fn events(&self) -> Vec<Value> {
        match self.json() {
            Value::Object(mut body) if body.contains_key("events") => match body.remove("events") {
                Some(Value::Array(events)) => events,
                other => panic!("a batch's events are a list: {other:?}"),
            },
            Value::Null => Vec::new(),
            one => vec![one],
        }
    }

    /// The ids of [`Received::events`], in order.
    pub fn event_ids(&self) -> Vec<i64> {
        self.events()
            .iter()
            .map(|e| e["id"].as_i64().expect("an event id"))
            .collect()
    }

    /// Whether the receiver took it: answered 2xx.
    pub fn accepted(&self) -> bool {
        self.answered && self.status.is_success()
    }
}

type Decide = dyn Fn(&Value) -> Reply + Send + Sync;

/// What the server's handler shares with the test.
struct Shared {
    key: Vec<u8>,
    decide: Box<Decide>,
    log: Mutex<Vec<Received>>,
    /// How many of the next requests fail with 500 (`usize::MAX`: all of them).
    fail_next: AtomicUsize,
    /// How many of the next requests that do not fail are answered late, and how late.
    slow_next: Mutex<(usize, Duration)>,
}

/// A running receiver; stops listening when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.lock().expect("server").take() {
            server.abort();
        }
    }
}

impl Receiver {
    /// A webhook endpoint whose requests are signed with `key`: it answers 200 to each.
    pub async fn start(key: &[u8]) -> Self {
        Self::answering(key, |_| Reply::ok()).await
    }

    /// An endpoint whose requests are signed with `key`, answering each validly signed
    /// JSON request with what `decide` makes of its body.
    pub async fn answering(
        key: &[u8],
        decide: impl Fn(&Value) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            key: key.to_vec(),
            decide: Box::new(decide),
            log: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(0),
            slow_next: Mutex::new((0, Duration::ZERO)),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let receiver = Self {
            addr,
            shared,
            server: Mutex::new(None),
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&self, listener: TcpListener) {
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(self.shared.clone());
        let task = tokio::spawn(accept_loop(listener, router));
        *self.server.lock().expect("server") = Some(task);
    }

    /// The URL to configure (any path is served the same way; it is recorded).
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The Standard Webhooks secret of its key (`whsec_` + base64), for the gateway.
    pub fn secret(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.shared.key))
    }

    /// The next `n` requests are answered 500 (`usize::MAX`: every one, until told
    /// otherwise; 0: none).
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests that do not fail are answered only after `delay` (a delay
    /// longer than the sender's timeout holds the request open until the sender gives up).
    pub fn slow_next(&self, n: usize, delay: Duration) {
        *self.shared.slow_next.lock().expect("slow") = (n, delay);
    }

    /// Stops listening: the port is closed and every open connection dropped (a request
    /// being answered slowly included), as when the application is down.
    pub async fn stop_listening(&self) {
        let server = self.server.lock().expect("server").take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens again on the same port after [`Receiver::stop_listening`].
    pub async fn listen_again(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind the receiver's port again");
        self.serve(listener);
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.log.lock().expect("log").clone()
    }

    /// The JSON bodies of the validly signed requests, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.signed)
            .map(Received::json)
            .filter(|v| !v.is_null())
            .collect()
    }

    /// Asserts that every request carried a valid Standard Webhooks signature.
    pub fn assert_all_signed(&self) {
        let unsigned: Vec<Received> = self.requests().into_iter().filter(|r| !r.signed).collect();
        assert!(
            unsigned.is_empty(),
            "every request carries a valid Standard Webhooks signature: {unsigned:#?}"
        );
    }
}

/// Accepts connections until aborted; aborting drops the listener and every connection.
async fn accept_loop(listener: TcpListener, router: axum::Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let router = router.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    router.clone().call(request)
                });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = signed(&shared.key, &headers, &body);
    let json = serde_json::from_slice::<Value>(&body).ok();
    let reply = match &json {
        _ if !signed => Reply::status(StatusCode::UNAUTHORIZED),
        None => Reply::status(StatusCode::BAD_REQUEST),
        Some(_) if take_one(&shared.fail_next) => Reply::status(StatusCode::INTERNAL_SERVER_ERROR),
        Some(value) => {
            let reply = (shared.decide)(value);
            let mut slow = shared.slow_next.lock().expect("slow");
            if slow.0 > 0 {
                slow.0 -= 1;
                reply.after(slow.1)
            } else {
                reply
            }
        }
    };
    let at = {
        let mut log = shared.log.lock().expect("log");
        log.push(Received {
            path: uri.path().to_owned(),
            headers,
            body,
            signed,
            status: reply.status,
            answered: false,
        });
        log.len() - 1
    };
    // Dropped here, with the connection, when the sender gives up first.
    tokio::time::sleep(reply.delay).await;
    shared.log.lock().expect("log")[at].answered = true;
    match reply.body {
        Some(body) => (reply.status, axum::Json(body)).into_response(),
        None => reply.status.into_response(),
    }
}

/// Takes one from `count` unless it is 0; `usize::MAX` never runs out.
fn take_one(count: &AtomicUsize) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
            0 => None,
            usize::MAX => Some(n),
            n => Some(n - 1),
        })
        .is_ok()
}

/// Standard Webhooks verification, as an application does it: `v1,` + base64 of
/// HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"), a recent timestamp.
fn signed(key: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signature)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return false;
    };
    let Ok(sent_at) = timestamp.parse::<u64>() else {
        return false;
    };
    if now_secs().abs_diff(sent_at) > 300 || id.is_empty() {
        return false;
    }
    let Some(Ok(given)) = signature.strip_prefix("v1,").map(|s| STANDARD.decode(s)) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}
