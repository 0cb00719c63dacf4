//! Everything durable, and the only SQL in the crate. The rest of the crate speaks to the
//! store in intents: what happened ([`Store::session_opened`], [`Store::room_joined`],
//! [`Store::log_message`], ...) and what it wants to read ([`Store::replay_page`],
//! [`Store::list_messages`], ...), never in rows, statements or pools. Which tables an event
//! touches, and in which order they are written, is the store's business alone.
//!
//! Where things are (see "Store backends" in `docs/architecture.md`): shared work on this
//! ground floor, one folder per backend of the same shape below it.
//! - here: [`Store`], the whole API, and `Backend`, the one place that says which database
//!   runs it and dispatches each read to that backend's folder, and what opening decides
//!   whatever the database (`start_state`: where ids and queues stand);
//! - `model.rs`: the store's words (records, filters, pages, counter names, rows to records);
//! - `batch.rs`: the writes ([`WriteOp`](batch::WriteOp)) and what the writer gathers from a
//!   batch by kind; `writer.rs`: the one writer task, which commits writes in groups and
//!   settles each once;
//! - `sql.rs`: every statement both dialects accept, written once;
//! - `error.rs`: [`StoreError`]; `cluster.rs`: [`ClusterStore`], the door to what only a
//!   database shared by several nodes answers ([`Store::cluster`], `None` on SQLite);
//! - `ids.rs` (message ids from durable reservations), `session_ids.rs` (session ids),
//!   `sequence.rs` (ids at commit, in a cluster), `health.rs` (write health) and
//!   [`retention`] (the pruning passes);
//! - `sqlite/` and `postgres/`: the same files, each holding its dialect's SQL: `mod.rs`
//!   (opening: migrations, crash recovery), `writer.rs` (the `commit_all` of a gathered
//!   batch), `messages.rs`, `replay.rs`, `sessions.rs`, `rooms.rs`, `users.rs`,
//!   `counters.rs`, `retention.rs` (its deletes); and SQLite's [`backup`] (`switchboard
//!   backup`, a checked `VACUUM INTO` copy). Neither imports the other.
//!
//! Writes never wait for the disk: each intent is a channel send to the writer, so the hub
//! can call them under its lock. Reads go to the database directly and see what is
//! committed. A read that must also see the writes already sent says so by name: it goes
//! through [`Store::after_writes`] (`after_writes.rs`: one wait for the writer, then the
//! reads), or, for replay, stays below [`Store::read_horizon`].
//!
//! The store does not make its metrics: whoever opens it hands in the gateway's set
//! ([`Store::open`]), which the writer records its commits in.

mod after_writes;
mod batch;
mod cluster;
mod error;
mod health;
mod ids;
mod model;
mod outbox;
mod postgres;
pub mod retention;
mod sequence;
mod session_ids;
mod sql;
mod sqlite;
mod webhooks;
mod writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sqlx::{PgPool, SqlitePool};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::auth::Identity;
use crate::config::{DatabaseLocation, DatabaseSettings};
use crate::metrics::Metrics;
use crate::protocol::wire::timestamp;
pub use after_writes::AfterWrites;
use batch::WriteOp;
pub use cluster::ClusterStore;
pub use error::StoreError;
pub use health::WriteHealth;
use ids::IdAllocator;
pub use model::{
    JoinedHow, ListFilter, MessageRecord, OriginalAck, Reader, RecentSession, ReplayPage,
    SessionRow, StoredMembership, StoredMessage, Target, UserHistory,
};
pub use outbox::Outbox;
pub use sequence::{CommittedMessage, ID_PLACEHOLDER};
use session_ids::SessionIds;
pub use sqlite::backup;
pub use webhooks::{FailedEvent, OutboxEvent};

/// How often the current run's `last_alive_at` is refreshed.
const ALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// How long a publisher waits for message ids before answering "not stored": a reservation
/// commits in milliseconds, so this long means the database refuses it.
const ID_HEADROOM_GIVE_UP: Duration = Duration::from_secs(3);
/// How long a publisher first waits for a reservation before looking again (and asking
/// again, should it have failed); doubles up to [`ID_HEADROOM_RETRY_MAX`].
const ID_HEADROOM_RETRY: Duration = Duration::from_millis(25);
/// The longest wait between two looks.
const ID_HEADROOM_RETRY_MAX: Duration = Duration::from_millis(400);
/// How long [`Store::write_health`] waits for its probe write: a commit takes milliseconds,
/// and a load balancer's health check should not wait on a stuck disk for long.
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// The durable store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    location: DatabaseLocation,
    writes: mpsc::UnboundedSender<WriteOp>,
    session_ids: SessionIds,
    shared: Arc<Shared>,
    // Taken once by `close`; a std Mutex because it is never held across an await.
    writer_task: Mutex<Option<JoinHandle<()>>>,
}

/// The database the store runs on. Every read matches on it, so a new backend is a new
/// variant (and a folder shaped like `sqlite/`) whose missing arms the compiler lists; writes
/// reach it through the writer task, and [`Store::cluster`] decides whether it can be shared.
/// Why an enum and not a trait: see "Store backends" in `docs/architecture.md`.
#[derive(Clone)]
enum Backend {
    /// One SQLite file, written by this process alone.
    Sqlite(SqlitePool),
    /// A PostgreSQL database; in cluster mode shared by several nodes.
    Postgres(PgPool),
}

impl Backend {
    async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Self::Sqlite(pool) => pool.is_closed(),
            Self::Postgres(pool) => pool.is_closed(),
        }
    }
}

/// A migrated, recovered database, ready for the writer: what each backend's `open` returns.
struct Opened {
    backend: Backend,
    /// This run's row in `server_runs`, kept alive by the writer.
    run_id: i64,
    /// Where new session ids come from.
    session_ids: SessionIds,
    start: StartState,
}

/// Where ids and queues stand once a backend has read them: every id up to `last_used` may
/// have been seen (nothing is handed out at or below it), ids up to `reserved_through` are
/// reserved durably; `pruned` is the highest id retention deleted, `pending` the offline
/// queue lengths.
struct StartState {
    last_used: u64,
    reserved_through: u64,
    id_block: u64,
    pruned: u64,
    pending: HashMap<String, u64>,
}

/// The state the writer and the store share, from where a backend found ids and queues;
/// `metrics` is the gateway's set, made at start-up and handed in.
fn start_state(state: StartState, metrics: Arc<Metrics>, outbox: Outbox) -> Shared {
    Shared {
        outbox,
        outbox_written: watch::Sender::new(0),
        ids: IdAllocator::new(state.last_used, state.reserved_through, state.id_block),
        committed: watch::Sender::new(state.last_used),
        pending: Mutex::new(state.pending),
        pruned_through: AtomicU64::new(state.pruned),
        health: Default::default(),
        metrics,
        sequence: Default::default(),
    }
}

/// Refuses a database that holds tables (`tables`, sorted) but no migration history:
/// another program's, which migrating would fill with our tables (or fail on a table of the
/// same name).
fn refuse_foreign(tables: &[String], database: &DatabaseLocation) -> Result<(), StoreError> {
    if tables.is_empty() || tables.iter().any(|t| t == "_sqlx_migrations") {
        return Ok(());
    }
    let mut named: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
    if tables.len() > named.len() {
        named.push("...");
    }
    Err(StoreError::Foreign {
        database: database.to_string(),
        tables: named.join(", "),
    })
}

/// State the writer and the rest of the store share.
struct Shared {
    ids: IdAllocator,
    /// Every message id up to this one is settled (committed, or failed and reported).
    committed: watch::Sender<u64>,
    /// Undelivered messages per user (the offline queue's length). A std Mutex: held only
    /// for a map lookup, never across an await.
    pending: Mutex<HashMap<String, u64>>,
    /// The highest message id retention deleted.
    pruned_through: AtomicU64,
    /// Whether the writer's most recent attempt committed.
    health: health::HealthCell,
    /// The gateway's metrics, handed in by whoever opened the store: the writer records its
    /// batches here (the hub and the doors hold the same set and record the rest).
    metrics: Arc<Metrics>,
    /// Ids assigned at commit, in a cluster (`sequence.rs`).
    sequence: sequence::Sequence,
    /// Which webhook events the writer records, for which endpoints.
    outbox: Outbox,
    /// Moves on whenever a commit wrote outbox rows: the webhook sender waits on it.
    outbox_written: watch::Sender<u64>,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note_queued(&self, user_id: &str) {
        *self.pending().entry(user_id.to_owned()).or_insert(0) += 1;
    }

    fn note_delivered(&self, user_id: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut pending = self.pending();
        if let Some(count) = pending.get_mut(user_id) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                pending.remove(user_id);
            }
        }
    }
}

/// The offline queues at one moment, as [`Store::offline_queues`] reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfflineQueues {
    /// `(user_id, undelivered messages)`, the longest queues first, at most the limit asked.
    pub largest: Vec<(String, u64)>,
    /// Users with at least one undelivered message.
    pub users: usize,
    /// Undelivered messages in all.
    pub messages: u64,
}

/// A connection that opened, as [`Store::session_opened`] records it.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    /// From [`Store::allocate_session_id`].
    pub session_id: u64,
    /// Who connected: the user's name and role are refreshed from it (a role can change).
    pub identity: &'a Identity,
    /// `ws` or `socketio` (the `sessions.transport` column).
    pub transport: &'static str,
    /// Peer address.
    pub remote_addr: Option<SocketAddr>,
    /// `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// When.
    pub at: &'a str,
}

/// What the hub rebuilds its live state from at start.
#[derive(Debug, Clone, Default)]
pub struct LiveState {
    /// Every stored room membership, ordered by room, then user.
    pub memberships: Vec<StoredMembership>,
    /// Every user ever seen: a private message to one of them is queued while they are
    /// offline, one to anybody else is refused.
    pub known_users: Vec<String>,
}

/// Whether a logged message became durable. [`Store::log_message`] hands one out per message;
/// the sender's ack waits on [`Commit::durable`]. Clones watch the same message.
#[derive(Debug, Clone)]
pub struct Commit(watch::Receiver<Option<bool>>, Option<Arc<AtomicU64>>);

impl Commit {
    /// The commit of a message stored by an earlier run (a resend found in the database).
    pub fn already_durable() -> Self {
        Self(watch::channel(Some(true)).1, None)
    }

    /// Whether `other` watches the same message (a clone of this one).
    pub fn is_same(&self, other: &Commit) -> bool {
        self.0.same_channel(&other.0)
    }

    /// The id its commit assigned, for a message sequenced at commit (`None` before the
    /// commit, and for a message that had its id when it was routed).
    pub fn assigned_id(&self) -> Option<u64> {
        let cell = self.1.as_ref()?;
        Some(cell.load(Ordering::Acquire)).filter(|&id| id != 0)
    }

    /// Waits until the writer settled the message: true once it is committed, false if it
    /// could not be stored (or the store closed before it was tried).
    pub async fn durable(&mut self) -> bool {
        match self.0.wait_for(|v| v.is_some()).await {
            Ok(v) => *v == Some(true),
            Err(_) => false,
        }
    }
}

impl Store {
    // ---- Opening and closing ----

    /// Opens (creating if needed) the database file, migrates it, closes sessions left open
    /// by a crash with reason `server_restart`, reserves message ids, and starts the writer
    /// and the retention task. The writer records its commits in `metrics`, the gateway's
    /// set (start-up makes one and hands the same to the hub and the doors).
    pub async fn open(
        settings: &DatabaseSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        Self::open_with(settings, ids::BLOCK, metrics, Outbox::default()).await
    }

    /// [`Store::open`], writing the webhook events `outbox` asks for (with every fact they
    /// report, crash recovery's included).
    pub async fn open_with_outbox(
        settings: &DatabaseSettings,
        outbox: Outbox,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        Self::open_with(settings, ids::BLOCK, metrics, outbox).await
    }

    /// [`Store::open`], reserving message ids `id_block` at a time (tests use small blocks
    /// to run through reservations in a few messages).
    pub(crate) async fn open_with(
        settings: &DatabaseSettings,
        id_block: u64,
        metrics: Arc<Metrics>,
        outbox: Outbox,
    ) -> Result<Self, StoreError> {
        let opened = match &settings.location {
            DatabaseLocation::Sqlite { path, is_default } => {
                sqlite::open(settings, path, *is_default, id_block, &outbox).await?
            }
            DatabaseLocation::Postgres(url) => {
                postgres::open(settings, url, id_block, &outbox).await?
            }
        };
        let shared = Arc::new(start_state(opened.start, metrics, outbox));
        let (writes, rx) = mpsc::unbounded_channel();
        let writer_task = tokio::spawn(writer::run(
            opened.backend.clone(),
            rx,
            opened.run_id,
            shared.clone(),
        ));
        let store = Self {
            inner: Arc::new(Inner {
                backend: opened.backend,
                location: settings.location.clone(),
                writes,
                session_ids: opened.session_ids,
                shared,
                writer_task: Mutex::new(Some(writer_task)),
            }),
        };
        store.spawn_alive_ticker();
        retention::spawn(store.clone(), settings.retention.clone());
        Ok(store)
    }

    fn spawn_alive_ticker(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ALIVE_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let at = timestamp(SystemTime::now());
                if inner.writes.send(WriteOp::Alive { at }).is_err() {
                    break;
                }
            }
        });
    }

    /// Where the data lives (a SQLite file or a PostgreSQL database).
    pub fn location(&self) -> &DatabaseLocation {
        &self.inner.location
    }

    /// Whether the database answers a trivial query.
    pub async fn is_reachable(&self) -> bool {
        match &self.inner.backend {
            Backend::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.is_ok(),
            Backend::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.is_ok(),
        }
    }

    /// Whether writes reach the disk. While the writer's last attempt failed, a probe write
    /// (the run's `last_alive_at`) is tried first, waiting at most `PROBE_WAIT`, so that
    /// recovery shows as soon as the disk takes writes again, without waiting for traffic.
    pub async fn write_health(&self) -> WriteHealth {
        if self.last_write_health().is_ok() || self.is_closed() {
            return self.last_write_health();
        }
        self.write(WriteOp::Alive {
            at: timestamp(SystemTime::now()),
        });
        let _ = tokio::time::timeout(PROBE_WAIT, self.flush()).await;
        self.last_write_health()
    }

    /// How the writer's most recent attempt went, without trying a write.
    pub fn last_write_health(&self) -> WriteHealth {
        self.inner.shared.health.get()
    }

    /// Records the end of this run, waits for the writer to commit everything sent so far
    /// and closes the database. Called once, at shutdown, after every session was closed.
    pub async fn close(&self) {
        self.write(WriteOp::Stop {
            at: timestamp(SystemTime::now()),
        });
        let task = self
            .inner
            .writer_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "store writer task failed");
        }
        self.inner.backend.close().await;
    }

    /// Whether [`Store::close`] has closed the database (background tasks stop on it).
    fn is_closed(&self) -> bool {
        self.inner.backend.is_closed()
    }

    /// What the hub rebuilds its live state from: room memberships and known users.
    pub async fn load_live_state(&self) -> Result<LiveState, StoreError> {
        let (memberships, known_users) = match &self.inner.backend {
            Backend::Sqlite(pool) => (
                sqlite::rooms::memberships(pool).await,
                sqlite::users::known_users(pool).await,
            ),
            Backend::Postgres(pool) => (
                postgres::rooms::memberships(pool).await,
                postgres::users::known_users(pool).await,
            ),
        };
        Ok(LiveState {
            memberships: memberships.map_err(self.failed("could not load room memberships"))?,
            known_users: known_users.map_err(self.failed("could not load known users"))?,
        })
    }

    /// Every stored token revocation, `(user_id, not_before)`, for the verifier at start.
    pub async fn token_revocations(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = match &self.inner.backend {
            Backend::Sqlite(pool) => sqlite::users::token_revocations(pool).await,
            Backend::Postgres(pool) => postgres::users::token_revocations(pool).await,
        };
        let rows = rows.map_err(self.failed("could not load token revocations"))?;
        Ok(rows
            .into_iter()
            .map(|(user_id, not_before)| (user_id, u64::try_from(not_before).unwrap_or(0)))
            .collect())
    }

    // ---- What happened: writes, queued for the writer ----
    //
    // None of these waits for the disk, so the hub calls them under its lock; their order is
    // the order they are committed in. A write sent after `close` is dropped with a log line.

    /// A connection opened: records the user (inserted, or its name, role and
    /// `last_seen_at` refreshed) and the session row.
    pub fn session_opened(&self, session: NewSession<'_>) {
        let NewSession {
            session_id,
            identity,
            transport,
            remote_addr,
            user_agent,
            at,
        } = session;
        self.write(WriteOp::SeenUser {
            user_id: identity.user_id.to_string(),
            username: identity.username.to_string(),
            role: identity.role.to_string(),
            at: at.to_owned(),
        });
        self.write(WriteOp::OpenSession {
            session_id,
            user_id: identity.user_id.to_string(),
            transport,
            remote_addr: remote_addr.map(|a| a.to_string()),
            user_agent: user_agent.map(String::from),
            at: at.to_owned(),
        });
    }

    /// A connection closed at `at`, for `reason` (the `sessions.disconnect_reason` column).
    pub fn session_closed(&self, session_id: u64, reason: &'static str, at: &str) {
        self.write(WriteOp::CloseSession {
            session_id,
            at: at.to_owned(),
            reason,
        });
    }

    /// A live connection of the user renewed its token: its name and role are refreshed
    /// from the new one (a role can change).
    pub fn user_renewed(&self, identity: &Identity, at: &str) {
        self.write(WriteOp::SeenUser {
            user_id: identity.user_id.to_string(),
            username: identity.username.to_string(),
            role: identity.role.to_string(),
            at: at.to_owned(),
        });
    }

    /// An operator revoked `user_id`'s tokens at `at`: those issued before `not_before`
    /// (seconds since the epoch) are refused from now on, also after a restart. The returned
    /// [`Commit`] says whether that became durable.
    pub fn tokens_revoked(&self, user_id: &str, not_before: u64, at: &str) -> Commit {
        let (committed, commit) = watch::channel(None);
        self.write(WriteOp::RevokeTokens {
            user_id: user_id.to_owned(),
            not_before,
            at: at.to_owned(),
            committed,
        });
        Commit(commit, None)
    }

    /// `user_id` became a member of `room` at `at`, `how` says by whom and with how much
    /// of the room's history. Already a member, it keeps its first `joined_at` and
    /// `history_from`; `by_server` becomes true if either join says so.
    pub fn room_joined(&self, room: &str, user_id: &str, at: &str, how: JoinedHow) {
        self.write(WriteOp::JoinRoom {
            room: room.to_owned(),
            user_id: user_id.to_owned(),
            at: at.to_owned(),
            how,
        });
    }

    /// `user_id` is no longer a member of `room` since `at`, for `reason` (`left`,
    /// `removed`, `not_granted`: what the `room.left` webhook says).
    pub fn room_left(&self, room: &str, user_id: &str, reason: &'static str, at: &str) {
        self.write(WriteOp::LeaveRoom {
            room: room.to_owned(),
            user_id: user_id.to_owned(),
            reason,
            at: at.to_owned(),
        });
    }

    /// Logs a published message (with its id from [`Store::allocate_message_id`]); a message
    /// to a user also gets a row in that user's offline queue, and counts in
    /// [`Store::queued_for`] from now on, so that the next publish sees the queue bound
    /// before the commit. The returned [`Commit`] says whether it became durable.
    pub fn log_message(&self, record: MessageRecord) -> Commit {
        let (committed, commit) = watch::channel(None);
        if let Some(user_id) = record.counted_recipient() {
            // Uncounted again by the writer if the message cannot be stored.
            self.inner.shared.note_queued(user_id);
        }
        let assigned = (record.id == 0).then(|| Arc::new(AtomicU64::new(0)));
        self.write(WriteOp::Message {
            record: Box::new(record),
            committed: Some(committed),
            assigned: assigned.clone(),
        });
        Commit(commit, assigned)
    }

    /// Connections of `user_id` took these stored messages: their offline-queue rows are
    /// marked delivered (and leave [`Store::queued_for`] once committed).
    pub fn delivered(&self, user_id: &str, ids: Vec<u64>) {
        self.write(WriteOp::MarkDelivered {
            user_id: user_id.to_owned(),
            ids,
            at: timestamp(SystemTime::now()),
        });
    }

    /// Hands a write to the writer task. Never blocks: live routing must not wait for the
    /// disk. A write sent after [`Store::close`] is dropped with a log line.
    fn write(&self, op: WriteOp) {
        if self.inner.writes.send(op).is_err() {
            tracing::warn!("store is closed; a write was dropped");
        }
    }

    /// Waits until every write sent before this call is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.writes.send(WriteOp::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    // ---- Ids and counts, answered from memory (safe under the hub lock) ----

    /// A new session id, unique across restarts and, on PostgreSQL, across the nodes
    /// sharing the database (`session_ids.rs`). Fails only when PostgreSQL cannot hand out
    /// a new block.
    pub async fn next_session_id(&self) -> Result<u64, StoreError> {
        let take_block = async {
            match &self.inner.backend {
                Backend::Postgres(pool) => postgres::sessions::take_session_ids(pool).await,
                // Never awaited: SQLite's ids continue in memory.
                Backend::Sqlite(_) => Err(sqlx::Error::PoolClosed),
            }
        };
        self.inner
            .session_ids
            .next(take_block)
            .await
            .map_err(self.failed("could not take a block of session ids"))
    }

    /// Waits, if ever needed, until enough message ids are reserved that allocating under
    /// the hub lock cannot run past the reservation. Call before publishing. A reservation
    /// that fails is asked again after a short backoff; after a few seconds (`ID_HEADROOM_GIVE_UP`)
    /// this returns [`StoreError::IdsUnavailable`], so the publisher answers instead of hanging.
    pub async fn ensure_id_headroom(&self) -> Result<(), StoreError> {
        if self.is_sequenced() {
            // Ids come from the commit.
            return Ok(());
        }
        let ids = &self.inner.shared.ids;
        let started = tokio::time::Instant::now();
        let mut retry = ID_HEADROOM_RETRY;
        while let Some(request) = ids.needs_headroom() {
            // `None` while a request is in flight; a failed one was settled and is asked anew.
            if let Some(through) = request {
                self.write(WriteOp::ReserveIds {
                    through,
                    block: ids.block(),
                });
            }
            let left = ID_HEADROOM_GIVE_UP.saturating_sub(started.elapsed());
            if left.is_zero() {
                tracing::error!(waited = ?ID_HEADROOM_GIVE_UP,
                    "no message ids could be reserved; answering the publisher with an error");
                return Err(StoreError::IdsUnavailable {
                    waited: ID_HEADROOM_GIVE_UP,
                });
            }
            // Woken by a committed reservation; otherwise look again when the slice ends.
            let _ = tokio::time::timeout(retry.min(left), ids.wait_for_headroom()).await;
            retry = (retry * 2).min(ID_HEADROOM_RETRY_MAX);
        }
        Ok(())
    }

    /// The next message id. Synchronous, for use under the hub lock.
    pub fn allocate_message_id(&self) -> u64 {
        let ids = &self.inner.shared.ids;
        let (id, request) = ids.allocate();
        if let Some(through) = request {
            self.write(WriteOp::ReserveIds {
                through,
                block: ids.block(),
            });
        }
        id
    }

    /// The last message id handed out; sequenced, the last one delivered to this node's
    /// connections (every id below it is committed and delivered too).
    pub fn last_message_id(&self) -> u64 {
        let shared = &self.inner.shared;
        if shared.sequence.is_on() {
            return shared.sequence.horizon();
        }
        shared.ids.last_allocated()
    }

    // ---- Sequencing at commit (a cluster; `sequence.rs`) ----

    /// Whether ids are assigned at commit.
    pub fn is_sequenced(&self) -> bool {
        self.inner.shared.sequence.is_on()
    }

    /// Waits, at most `max`, until this node has delivered every message up to `id` (in a
    /// cluster, where another node may be ahead); at once otherwise, or when `id` is past
    /// anything committed (a client's bogus cursor costs it `max`).
    pub async fn wait_delivered(&self, id: u64, max: Duration) {
        if !self.is_sequenced() || self.last_message_id() >= id {
            return;
        }
        let _ = tokio::time::timeout(max, self.wait_committed(id)).await;
    }

    /// Every id up to `id` is committed and delivered to this node's connections. Called by
    /// the hub as it delivers, under its lock.
    pub fn advance_horizon(&self, id: u64) {
        let shared = &self.inner.shared;
        shared.sequence.advance(id);
        shared.committed.send_modify(|c| *c = (*c).max(id));
    }

    /// The `limit` longest offline queues (largest first, ties by user id) with the totals,
    /// from the in-memory counts: no SQL. One walk over the counts under their small lock.
    pub fn offline_queues(&self, limit: usize) -> OfflineQueues {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        // One pass under the lock (it is taken under the hub lock when a message is queued):
        // sums, and the `limit` longest kept in a min-heap, without copying every user id.
        let pending = self.inner.shared.pending();
        let mut messages = 0;
        let mut top: BinaryHeap<Reverse<(u64, Reverse<&str>)>> = BinaryHeap::new();
        for (user, &n) in pending.iter() {
            messages += n;
            if limit == 0 {
                continue;
            }
            top.push(Reverse((n, Reverse(user.as_str()))));
            if top.len() > limit {
                top.pop();
            }
        }
        let users = pending.len();
        let mut largest: Vec<(String, u64)> = top
            .into_iter()
            .map(|Reverse((n, Reverse(user)))| (user.to_string(), n))
            .collect();
        drop(pending);
        largest.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        OfflineQueues {
            largest,
            users,
            messages,
        }
    }

    /// Undelivered messages queued for `user_id`, counting those logged but not yet
    /// committed.
    pub fn queued_for(&self, user_id: &str) -> u64 {
        self.inner
            .shared
            .pending()
            .get(user_id)
            .copied()
            .unwrap_or(0)
    }

    /// The highest message id deleted by retention (0 if none).
    pub fn pruned_through(&self) -> u64 {
        self.inner.shared.pruned_through.load(Ordering::Acquire)
    }

    fn note_pruned(&self, id: u64) {
        self.inner
            .shared
            .pruned_through
            .fetch_max(id, Ordering::AcqRel);
    }

    // ---- Reads ----
    //
    // Each sees what is committed; through `after_writes()`, also every write sent before.

    /// The read horizon: waits until every message published so far is settled and returns
    /// the highest id handed out. A read of messages up to it misses nothing that was
    /// published before the call. (One writer commits ids in order, so this is the last id;
    /// a backend whose writers commit out of order answers lower; see `docs/architecture.md`.)
    pub async fn read_horizon(&self) -> u64 {
        if self.is_sequenced() {
            // Delivered, hence committed.
            return self.last_message_id();
        }
        let until = self.last_message_id();
        self.wait_committed(until).await;
        until
    }

    /// Waits until every message up to `id` is settled (committed, or failed and reported).
    async fn wait_committed(&self, id: u64) {
        let mut rx = self.inner.shared.committed.subscribe();
        let _ = rx.wait_for(|c| *c >= id).await;
    }

    /// One page of replay for its reader, oldest first, ids in `(cursor, until]`: every
    /// message it may see with an id above `since` (when given), plus, when `undelivered`
    /// is set, everything still in its offline queue (see [`ReplayPage`]).
    pub async fn replay_page(
        &self,
        page: ReplayPage<'_>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let page = match &self.inner.backend {
            Backend::Sqlite(pool) => sqlite::replay::replay_page(pool, page).await,
            Backend::Postgres(pool) => postgres::replay::replay_page(pool, page).await,
        };
        page.map_err(self.failed("could not read a page of stored messages"))
    }

    /// Stored messages matching `filter`, oldest first. With a `viewer`, only what that
    /// user may see (the same rule as [`Store::replay_page`]); without one (an admin),
    /// everything.
    pub async fn list_messages(
        &self,
        filter: &ListFilter,
        viewer: Option<Reader<'_>>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = match &self.inner.backend {
            Backend::Sqlite(pool) => sqlite::messages::list(pool, filter, viewer).await,
            Backend::Postgres(pool) => postgres::messages::list(pool, filter, viewer).await,
        };
        rows.map_err(self.failed("could not list stored messages"))
    }

    /// `user_id`'s offline queue, oldest first, each message with when it was queued.
    pub async fn undelivered(
        &self,
        user_id: &str,
        limit: u32,
    ) -> Result<Vec<(StoredMessage, String)>, StoreError> {
        let rows = match &self.inner.backend {
            Backend::Sqlite(pool) => sqlite::messages::undelivered(pool, user_id, limit).await,
            Backend::Postgres(pool) => postgres::messages::undelivered(pool, user_id, limit).await,
        };
        rows.map_err(self.failed("could not read an offline queue"))
    }

    /// The stored message `sender_id` already sent with the idempotency key `key`, if any,
    /// as it was acknowledged.
    pub async fn original_of(
        &self,
        sender_id: &str,
        key: &str,
    ) -> Result<Option<OriginalAck>, StoreError> {
        let found = match &self.inner.backend {
            Backend::Sqlite(pool) => {
                sqlite::messages::find_by_client_msg_id(pool, sender_id, key).await
            }
            Backend::Postgres(pool) => {
                postgres::messages::find_by_client_msg_id(pool, sender_id, key).await
            }
        };
        found.map_err(self.failed("could not look up an idempotency key"))
    }

    /// The stored session history of each of `user_ids`, live sessions measured up to `now`
    /// (a wire timestamp). Users without a stored session are left out.
    pub async fn user_history(
        &self,
        user_ids: &[String],
        now: &str,
    ) -> Result<HashMap<String, UserHistory>, StoreError> {
        let history = match &self.inner.backend {
            Backend::Sqlite(pool) => sqlite::sessions::history(pool, user_ids, now).await,
            Backend::Postgres(pool) => postgres::sessions::history(pool, user_ids, now).await,
        };
        history.map_err(self.failed("could not read session history"))
    }

    /// `user_id`'s sessions, newest first.
    pub async fn sessions_of(
        &self,
        user_id: &str,
        limit: u32,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let rows = match &self.inner.backend {
            Backend::Sqlite(pool) => sqlite::sessions::sessions_of(pool, user_id, limit).await,
            Backend::Postgres(pool) => postgres::sessions::sessions_of(pool, user_id, limit).await,
        };
        rows.map_err(self.failed("could not read a user's sessions"))
    }

    /// The `limit` newest sessions of anyone, newest first, live ones included.
    pub async fn recent_sessions(&self, limit: u32) -> Result<Vec<RecentSession>, StoreError> {
        let rows = match &self.inner.backend {
            Backend::Sqlite(pool) => sqlite::sessions::recent(pool, limit).await,
            Backend::Postgres(pool) => postgres::sessions::recent(pool, limit).await,
        };
        rows.map_err(self.failed("could not read the recent sessions"))
    }

    /// Wraps a database error with what was being done.
    fn failed(&self, context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Sql {
            context,
            database: self.inner.location.to_string(),
            source,
        }
    }
}
