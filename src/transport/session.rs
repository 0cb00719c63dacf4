//! The session core: one lifecycle for both transports, so that a `/ws` client and a
//! Socket.IO client are admitted, served and let go by the same code. A transport keeps only
//! its framing (how a request carries the token, how an event and its ack are encoded, how a
//! connection is closed on the wire) and calls these four steps:
//!
//! 1. [`admit`]: before anything is upgraded or connected: refuses while stopping, an
//!    `Origin` outside `CORS_ORIGINS`, a malformed `lastMessageId`, and a bad token; then
//!    waits for a handshake turn ([`HandshakeGate`](crate::app::HandshakeGate)), or refuses
//!    as `busy` with a hint to come back.
//! 2. [`Session::open`]: registers the connection with the hub (`connected`, presence, the
//!    session row) and starts its token clock ([`expiry`]: `token-expiring`, then the close
//!    with `token_expired`; `refresh-token` renews it); [`Session::catch_up`] then replays
//!    what the client is owed, and gives the turn back.
//! 3. [`Session::handle`]: one client event: rate limit, then the command's ordered part;
//!    its ack (after `error` on refusal) goes through the transport's own channel once its
//!    outcome is known, in frame order ([`pipeline`](super::pipeline)). The transport's
//!    reader reads on while [`Session::has_room`], and sends the acks as
//!    [`Session::send_next_ack`] yields them.
//! 4. [`Session::close`]: records why the connection ended and tells the hub.
//!
//! The same steps keep the connection's figures (`/metrics`): a refusal by its code, the
//! open with its handshake time, each event's outcome once its ack is known, the close by
//! its reason. And each connection has one tracing span ([`connection_span`]) that all of
//! its tasks log in.
//!
//! [`Receipts`] record which stored messages a connection's transport took, batched the same
//! way on both: each writer notes ids as it hands frames over and writes them as one store
//! call per batch.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;
use tracing::{Instrument, Span};

use super::expiry;
use super::pipeline::{AckFn, Pipeline};
use super::rate_limit::{RateLimiter, Verdict};
use crate::app::{AppState, Turn};
use crate::auth::{AuthError, Identity};
use crate::commands::{self, Caller, CommandError, Credentials, Outcome, Pending};
use crate::hub::{CloseReason, Closer, Outbound, PresenceCursor, SessionMeta, Transport};
use crate::protocol::ClientEvent;
use crate::store::Store;

/// Why a connection was not admitted. The text is what the client reads (the `/ws` refusal's
/// `error`, Socket.IO's `connect_error` message).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("server is shutting down")]
    ShuttingDown,
    /// The store could not hand out a session id (PostgreSQL unreachable), or the node is
    /// cut off from its cluster.
    #[error("server is unavailable, try again later")]
    Unavailable,
    #[error("origin not allowed")]
    OriginNotAllowed,
    #[error("lastMessageId must be a non-negative integer (a message id)")]
    BadResumeId,
    /// No handshake turn within `HANDSHAKE_WAIT_MS`, or `HANDSHAKE_QUEUE` connections were
    /// already waiting for one.
    #[error("server busy; retry after {} ms", .retry_after.as_millis())]
    Busy { retry_after: Duration },
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl Refusal {
    /// The HTTP status, for transports that refuse before an upgrade.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ShuttingDown | Self::Unavailable | Self::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::BadResumeId => StatusCode::BAD_REQUEST,
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
        }
    }

    /// The stable code of the refusal (the `reason` of `switchboard_auth_refusals_total`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::ShuttingDown => "shutting_down",
            Self::Unavailable => "unavailable",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::BadResumeId => "bad_resume_id",
            Self::Busy { .. } => "busy",
            Self::Auth(e) => e.code(),
        }
    }

    /// When the client is told to come back (`busy` only).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Busy { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// `busy`, with a hint drawn uniformly from [`BUSY_RETRY_FLOOR`] to that plus
    /// [`BUSY_RETRY_SPREAD`], so that the clients refused together do not come back together.
    fn busy() -> Self {
        let spread_ms = BUSY_RETRY_SPREAD.as_millis() as u64;
        let mut bytes = [0_u8; 8];
        // No randomness: the middle of the range, still a hint.
        let draw =
            getrandom::fill(&mut bytes).map_or(spread_ms / 2, |()| u64::from_le_bytes(bytes));
        Self::Busy {
            retry_after: BUSY_RETRY_FLOOR + Duration::from_millis(draw % (spread_ms + 1)),
        }
    }
}

/// The shortest hint a `busy` refusal gives: the time a turn or two takes to come free.
const BUSY_RETRY_FLOOR: Duration = Duration::from_secs(1);
/// How far above [`BUSY_RETRY_FLOOR`] a `busy` hint may be drawn.
const BUSY_RETRY_SPREAD: Duration = Duration::from_secs(2);

/// The longest a connection holds its handshake turn once its catch-up has started. A client
/// that reads its replay slowly (or not at all) would otherwise hold a turn for as long as it
/// likes and keep everyone behind it waiting; past this its catch-up goes on without the
/// turn. A constant, not a setting: 5 s is long for a replay that reads at the server's pace
/// (2,000 messages at most) and short next to `HANDSHAKE_WAIT_MS`'s default, so one stalled
/// client delays the queue, never starves it.
const CATCH_UP_TURN_MAX: Duration = Duration::from_secs(5);

/// What a connection request carries, wherever its transport found it.
pub(crate) struct Request<'a> {
    pub headers: &'a HeaderMap,
    /// The token of the Socket.IO auth object.
    pub auth_token: Option<&'a str>,
    /// `?token=`.
    pub query_token: Option<&'a str>,
    /// `lastMessageId` from the Socket.IO auth object (a number or a numeric string).
    pub auth_resume: Option<&'a Value>,
    /// `?lastMessageId=`.
    pub query_resume: Option<&'a str>,
    /// When the request that opens the connection arrived (the handshake is timed from it).
    pub started: Instant,
}

/// Most time a resuming connection waits for this node to have delivered up to its
/// `lastMessageId` (`Store::wait_delivered`).
const RESUME_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The query parameters `/ws` (and Socket.IO's handshake) understand.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConnectQuery {
    /// The token, when not sent in the `Authorization` header.
    pub token: Option<String>,
    /// The last message id the client saw: everything it may see after it is replayed.
    #[serde(rename = "lastMessageId")]
    pub last_message_id: Option<String>,
}

/// An admitted connection: who it is, its session id, where its recovery starts, and its
/// handshake turn. Not `Clone`: the turn is given back when this is dropped (an upgrade that
/// failed, a Socket.IO connection that never reached its handler), or by
/// [`Session::catch_up`] once the connection is open.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub identity: Identity,
    pub session_id: u64,
    pub resume_from: Option<u64>,
    /// See [`Request::started`].
    pub started: Instant,
    turn: Turn,
}

/// Decides whether a connection may open, cheapest checks first; then waits for a handshake
/// turn and gives the connection its session id (which, on PostgreSQL, may take a new block
/// from the database). A refusal is counted by its code.
///
/// The token is checked before the turn is taken: it needs nothing shared (a signature check,
/// a map lookup for revocations), so a turn guards only the work that crowds the store and
/// the hub, and a client whose token is refused hears why at once instead of after queueing
/// (and then being told `busy`, to come back only to be refused).
pub(crate) async fn admit(app: &AppState, request: &Request<'_>) -> Result<Admitted, Refusal> {
    let admitted = admit_counted(app, request).await;
    admitted.inspect_err(|refusal| app.metrics.auth_refused(refusal.code()))
}

async fn admit_counted(app: &AppState, request: &Request<'_>) -> Result<Admitted, Refusal> {
    let (identity, resume_from) = check(app, request)?;
    let turn = tokio::select! {
        turn = app.handshakes.turn() => turn.map_err(|_| Refusal::busy())?,
        () = app.stopping.cancelled() => return Err(Refusal::ShuttingDown),
    };
    // A turn that came just as the stop began is no reason to open.
    if app.stopping.is_cancelled() {
        return Err(Refusal::ShuttingDown);
    }
    let session_id = match app.store.next_session_id().await {
        Ok(session_id) => session_id,
        Err(e) => {
            tracing::error!(error = %e, "connection refused: no session id");
            return Err(Refusal::Unavailable);
        }
    };
    if let Some(since) = resume_from {
        // In a cluster this node may not have delivered up to the id the client saw on
        // another one yet: its catch-up would then start below it, and live delivery would
        // repeat what the client has. A short, bounded wait.
        app.store.wait_delivered(since, RESUME_WAIT).await;
    }
    Ok(Admitted {
        identity,
        session_id,
        resume_from,
        started: request.started,
        turn,
    })
}

/// Who is connecting and from which message id it resumes, or why it may not.
fn check(app: &AppState, request: &Request<'_>) -> Result<(Identity, Option<u64>), Refusal> {
    if app.stopping.is_cancelled() {
        return Err(Refusal::ShuttingDown);
    }
    if app.hub.is_cut_off() {
        return Err(Refusal::Unavailable);
    }
    // An `Origin` that is not text names no allowed origin: refused under a list, as the
    // Socket.IO guard (`handshake.rs`) refuses it, rather than passing as if absent.
    let origin = request
        .headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or_default());
    if !app.settings.cors_origins.allows(origin) {
        return Err(Refusal::OriginNotAllowed);
    }
    let resume_from = resume_from(request.auth_resume, request.query_resume)?;
    let identity =
        app.verifier
            .authenticate(request.auth_token, request.headers, request.query_token)?;
    Ok((identity, resume_from))
}

/// `lastMessageId`, from the auth object first, then the query.
fn resume_from(auth: Option<&Value>, query: Option<&str>) -> Result<Option<u64>, Refusal> {
    match auth {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => return n.as_u64().map(Some).ok_or(Refusal::BadResumeId),
        Some(Value::String(s)) => return s.parse().map(Some).map_err(|_| Refusal::BadResumeId),
        Some(_) => return Err(Refusal::BadResumeId),
    }
    query
        .map(|q| q.parse().map_err(|_| Refusal::BadResumeId))
        .transpose()
}

/// One open connection, as both transports serve it.
pub(crate) struct Session {
    app: AppState,
    caller: Caller,
    transport: Transport,
    /// Everything the connection's tasks log is entered in it ([`Session::span`]).
    span: Span,
    limiter: RateLimiter,
    resume_from: Option<u64>,
    /// Stored messages up to this id are replayed; later ones arrive live.
    replay_until: u64,
    /// Until the transport's writer takes it.
    presence: Option<PresenceCursor>,
    /// Acks not sent yet, in frame order.
    acks: Pipeline,
    /// See [`Session::acks_send_errors`].
    ack_sends_errors: bool,
    /// The handshake turn, until [`Session::catch_up`] gives it back (or the session is
    /// dropped).
    turn: Option<Turn>,
}

impl Session {
    /// Registers the connection with the hub: the client gets `connected`, the others
    /// `user-connected` on the user's first connection, and the session row is written.
    /// Runs in the connection's `span` ([`connection_span`]), which it completes with the
    /// session id, so that what it starts (the token clock) logs there too.
    pub fn open(
        app: &AppState,
        admitted: Admitted,
        meta: SessionMeta,
        outbound: Outbound,
        span: Span,
    ) -> Self {
        span.in_scope(|| Self::open_in_span(app, admitted, meta, outbound, span.clone()))
    }

    fn open_in_span(
        app: &AppState,
        admitted: Admitted,
        meta: SessionMeta,
        outbound: Outbound,
        span: Span,
    ) -> Self {
        let limits = &app.settings.limits;
        let transport = meta.transport;
        let registered = app.hub.connect(
            admitted.session_id,
            admitted.identity.clone(),
            meta,
            outbound.clone(),
            limits.outbound_queue_capacity,
        );
        span.record("session_id", registered.session.0);
        app.metrics
            .connection_opened(transport.as_str(), admitted.started.elapsed());
        tracing::debug!("connection opened");
        // A revoke that ran between `admit` and the registration above missed this
        // connection in its sweep; it is closed here instead.
        if app.verifier.revocations().refuses(&admitted.identity) {
            outbound.close(CloseReason::Revoked);
        }
        let credentials = Credentials::new(admitted.identity);
        app.connections.spawn(
            expiry::watch(
                credentials.subscribe(),
                outbound.clone(),
                expiry::Timing {
                    warning: app.settings.jwt.expiry_warning,
                    leeway: Duration::from_secs(app.settings.jwt.leeway_secs),
                },
            )
            .in_current_span(),
        );
        Self {
            transport,
            span,
            caller: Caller {
                hub: app.hub.clone(),
                store: app.store.clone(),
                metrics: app.metrics.clone(),
                session: registered.session,
                credentials,
                verifier: app.verifier.clone(),
                outbound,
                limits: app.command_limits(),
                join_hook: app.join_hook.clone(),
            },
            limiter: RateLimiter::new(
                limits.rate_limit_per_sec,
                limits.rate_limit_burst,
                limits.rate_limit_max_strikes,
            ),
            resume_from: admitted.resume_from,
            replay_until: registered.replay_until,
            presence: Some(registered.presence),
            acks: Pipeline::for_queue(limits.outbound_queue_capacity),
            ack_sends_errors: false,
            turn: Some(admitted.turn),
            app: app.clone(),
        }
    }

    /// Replays the offline queue (and, when asked, everything since `lastMessageId`), then
    /// lets the live events held meanwhile through. Ends early if the connection closes.
    /// Gives the handshake turn back when it ends, or [`CATCH_UP_TURN_MAX`] after it started
    /// if it is still going (a client reading slowly), whichever comes first.
    pub async fn catch_up(&mut self) {
        let turn = self.turn.take();
        let replay = commands::replay_on_connect(&self.caller, self.resume_from, self.replay_until)
            .instrument(self.span.clone());
        let closed = self.caller.outbound.closer().closed();
        tokio::pin!(replay, closed);
        if let Some(turn) = turn {
            tokio::select! {
                () = &mut closed => return,
                () = &mut replay => return,
                () = tokio::time::sleep(CATCH_UP_TURN_MAX) => drop(turn),
            }
        }
        tokio::select! {
            () = closed => {}
            () = replay => {}
        }
    }

    /// Handles one client event: the rate limit, then the command's ordered part (or the
    /// transport's refusal of the frame, `event`'s error). `ack` gets the result, to answer
    /// through the transport's own ack channel, once it is known and every earlier frame's
    /// ack has gone ([`Session::send_next_ack`]); a refusal sends `error { message, code }`
    /// just before it. Breaks when the connection must close (refused too often), after
    /// sending every ack still owed.
    pub async fn handle(
        &mut self,
        event: Result<(&str, Option<&Value>), CommandError>,
        ack: impl FnOnce(&Outcome) + Send + 'static,
    ) -> ControlFlow<()> {
        let name = event_label(&event);
        let metrics = self.app.metrics.clone();
        let ack = move |outcome: &Outcome| {
            let code = outcome.as_ref().map_or_else(CommandError::code, |_| "ok");
            metrics.client_event(name, code);
            if let Some(rule) = outcome
                .as_ref()
                .err()
                .and_then(CommandError::access_refusal)
            {
                metrics.access_refused(rule);
            }
            ack(outcome);
        };
        let verdict = self.limiter.check(Instant::now());
        let pending = match (verdict, event) {
            (Verdict::Admit, Ok((name, data))) => {
                commands::execute(&self.caller, name, data)
                    .instrument(self.span.clone())
                    .await
            }
            (Verdict::Admit, Err(e)) => Pending::ready(Err(e)),
            (Verdict::Refuse | Verdict::Disconnect, _) => Pending::ready(Err(
                CommandError::RateLimited(self.app.settings.limits.rate_limit_per_sec),
            )),
        };
        self.acks.push(pending, Box::new(ack));
        if verdict == Verdict::Disconnect {
            self.send_all_acks().await;
            self.caller.outbound.close(CloseReason::RateLimited);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// Whether the transport may read another event: fewer than
    /// [`MAX_IN_FLIGHT`](super::pipeline::MAX_IN_FLIGHT) acks are waiting.
    pub fn has_room(&self) -> bool {
        self.acks.has_room()
    }

    /// Sends the oldest waiting ack once its outcome is known. Never resolves while no ack
    /// waits, so a reader can `select!` on it beside its next frame.
    pub async fn send_next_ack(&mut self) {
        let (outcome, ack) = self.acks.next().await;
        self.send_ack(&outcome, ack);
    }

    /// Sends every waiting ack, each once its outcome is known: when the reader stops, so
    /// that each message's commit is still seen through (a failed one frees its
    /// idempotency key) and acks owed before a close go out first.
    pub async fn send_all_acks(&mut self) {
        while !self.acks.is_empty() {
            self.send_next_ack().await;
        }
    }

    fn send_ack(&self, outcome: &Outcome, ack: AckFn) {
        if let Err(e) = outcome
            && !self.ack_sends_errors
        {
            self.caller.outbound.send(commands::error_event(e));
        }
        ack(outcome);
    }

    /// For a transport whose acks bypass the outbound queue (Socket.IO's ack callback): its
    /// ack function sends a refusal's `error` event itself, on the same path, so the two
    /// stay in order.
    pub fn acks_send_errors(&mut self) {
        self.ack_sends_errors = true;
    }

    /// Runs `f` in the connection's span: for what a transport logs outside the session's
    /// own methods. The span is entered where something may log, never around the
    /// connection's whole task: a task woken once per delivery would enter and leave it each
    /// time (about 300 instructions with `EnvFilter`, ~6% of a delivery's cost).
    pub fn in_span<T>(&self, f: impl FnOnce() -> T) -> T {
        self.span.in_scope(f)
    }

    /// Tells the hub the connection is gone, with the reason it was closed for (a client
    /// close when nobody gave one).
    pub fn close(self) -> CloseReason {
        let reason = self.closer().reason().unwrap_or(CloseReason::ClientClosed);
        self.span.in_scope(|| {
            tracing::debug!(reason = reason.as_str(), "connection closed");
        });
        self.app.hub.disconnect(self.caller.session, reason);
        self.app
            .metrics
            .connection_closed(self.transport.as_str(), reason.as_str());
        reason
    }

    /// The connection's presence cursor, for its writer (once).
    pub fn take_presence(&mut self) -> Option<PresenceCursor> {
        self.presence.take()
    }

    pub fn closer(&self) -> &Closer {
        self.caller.outbound.closer()
    }
}

/// The span of one connection, entered by everything that serves it (its reader and writer,
/// the Socket.IO handlers, its token clock): `session_id` (the `sessions` row, the
/// `connected` event), `user_id`, `transport` and `remote_addr`. The transport makes it and
/// hands it to [`Session::open`], which records the `session_id` once the hub gave one. At
/// the ERROR level, like the most severe event: a span below the log filter would be
/// disabled, and the lines that do pass (a failed read, a store error) would lose it.
pub(crate) fn connection_span(identity: &Identity, meta: &SessionMeta) -> Span {
    let span = tracing::error_span!(
        "session",
        session_id = tracing::field::Empty,
        user_id = %identity.user_id,
        transport = meta.transport.as_str(),
        remote_addr = tracing::field::Empty,
    );
    if let Some(addr) = meta.remote_addr {
        span.record("remote_addr", tracing::field::display(addr));
    }
    span
}

/// The `event` label of a client event: its name when the protocol knows it (a fixed set,
/// so that clients cannot mint label values), `unknown` for any other name, `unreadable`
/// for a frame that carried no event at all.
fn event_label(event: &Result<(&str, Option<&Value>), CommandError>) -> &'static str {
    match event {
        Ok((name, _)) => ClientEvent::NAMES
            .iter()
            .find(|known| *known == name)
            .copied()
            .unwrap_or("unknown"),
        Err(_) => "unreadable",
    }
}

/// Resolves when a writer has presence to take (never, without a cursor): the writers'
/// presence branch.
pub(crate) async fn presence_changed(presence: &mut Option<PresenceCursor>) {
    match presence {
        Some(cursor) => cursor.changed().await,
        None => std::future::pending().await,
    }
}

/// Whether a close reason means there is no client left to tell why.
pub(crate) fn client_is_gone(reason: CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::ClientClosed | CloseReason::TransportError
    )
}

/// The deliveries of stored messages a connection's transport took, written to the store in
/// batches: the writer notes ids as it hands frames over, and [`Receipts::flush`] writes
/// whatever was noted as one store call, once per batch the transport took.
pub(crate) struct Receipts {
    store: Store,
    user_id: Arc<str>,
    noted: Vec<u64>,
}

impl Receipts {
    pub fn new(store: Store, user_id: Arc<str>) -> Self {
        Self {
            store,
            user_id,
            noted: Vec::new(),
        }
    }

    /// Notes that message `id` was handed to the transport.
    pub fn note(&mut self, id: u64) {
        self.noted.push(id);
    }

    /// Writes every delivery noted so far.
    pub fn flush(&mut self) {
        if !self.noted.is_empty() {
            self.store
                .delivered(&self.user_id, std::mem::take(&mut self.noted));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_says_when_to_come_back_in_its_text_drawn_from_one_to_three_seconds() {
        for _ in 0..200 {
            let busy = Refusal::busy();
            let after = busy.retry_after().expect("a hint");
            assert!(
                (BUSY_RETRY_FLOOR..=BUSY_RETRY_FLOOR + BUSY_RETRY_SPREAD).contains(&after),
                "{after:?}"
            );
            assert_eq!(
                busy.to_string(),
                format!("server busy; retry after {} ms", after.as_millis())
            );
            assert_eq!(busy.code(), "busy");
            assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(Refusal::ShuttingDown.retry_after(), None);
    }
}
