//! The one writer task. Every write is a [`WriteOp`] on a channel; the task takes whatever has
//! queued up (up to [`MAX_BATCH`]) and commits it in one transaction (group commit), on a
//! connection of its own. Should a batch fail, its writes are retried one transaction each,
//! so one bad write cannot take the others down with it.
//!
//! What a batch costs:
//! - **Statements.** sqlx-sqlite runs every statement on its worker thread, a round trip of
//!   two thread wake-ups, so rows of a kind are gathered: multi-row INSERTs with bound values
//!   in power-of-two chunks (a few cached statement texts; a statement per row made the round
//!   trip the limit, ~45k rows/s against ~160k/s in `benches/write_path.rs`). One statement
//!   per table over a JSON array (`INSERT ... SELECT ... FROM json_each(?1)`) was tried and
//!   measured slower: SQLite parsing the JSON cost more than the round trips it saved
//!   (pipelined: ~40k against ~100k messages/s). Receipts, an UPDATE by key, do use
//!   `json_each`: one statement whatever their number.
//! - **Its own connection.** A pooled connection that another one wrote behind drops its page
//!   cache and reads the pages again; the writer's connection is the only one that writes,
//!   so its cache stays warm. Readers keep the pool.
//! - **Receipts folded into their message.** A private message and the receipt of its live
//!   delivery often meet in one batch; the delivery row is then inserted already
//!   delivered instead of inserted, indexed as pending and updated.
//!
//! **Every write is settled exactly once, by the attempt that decides it.** [`commit_all`]
//! only runs SQL: it reads the writes and, on success, returns what the commit taught
//! ([`Facts`]); it never touches a watcher. [`settle`] then consumes the writes with the
//! outcome of that attempt: the batch's when it committed, otherwise each write's own
//! one-by-one retry. Settling means: a message's sender hears `Some(true)` or `Some(false)`
//! and the watermark ([`Store::wait_committed`](super::Store::wait_committed)) moves past its
//! id either way, so readers never wait for a failed message; an id reservation raises the
//! reserved bound or, failed, lets the next publisher ask again; a flush is answered. A
//! watcher handed to an attempt that then fails would be dropped unanswered (the sender told
//! "not stored" while the retry stores its message), which is why nothing is taken before the
//! outcome is known. A committed transaction is counted (`/metrics`: its size, its commit time,
//! the messages it stored) just before it is settled, so no ack runs ahead of the figures.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Database, Pool, QueryBuilder, Sqlite, SqliteConnection, Transaction};
use tokio::sync::{mpsc, oneshot, watch};

use super::counters::{RESERVED_THROUGH, raise_counter};
use super::messages::MessageRecord;
use super::sequence::CommittedMessage;
use super::{Backend, Shared, postgres};
use super::{rooms, sessions, users};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 4096;
/// Most rows per multi-row INSERT: 12 binds a row stays far below SQLite's 32,766, and the
/// power-of-two chunk sizes keep the distinct statement texts within sqlx's statement cache.
const MAX_ROWS_PER_INSERT: usize = 256;

/// One durable write. Built only by the [`Store`](super::Store) methods that name an intent
/// (`session_opened`, `log_message`, ...): callers say what happened, this says which rows
/// change.
#[derive(Debug)]
pub(super) enum WriteOp {
    /// A user connected: insert it, or refresh its name, role and `last_seen_at`.
    SeenUser {
        /// User id.
        user_id: String,
        /// Display name.
        username: String,
        /// Role.
        role: String,
        /// When.
        at: String,
    },
    /// A connection opened.
    OpenSession {
        /// Session id (allocated by the store).
        session_id: u64,
        /// User id.
        user_id: String,
        /// `ws` or `socketio`.
        transport: &'static str,
        /// Peer address.
        remote_addr: Option<String>,
        /// `User-Agent` header.
        user_agent: Option<String>,
        /// When.
        at: String,
    },
    /// A connection closed.
    CloseSession {
        /// Session id.
        session_id: u64,
        /// When.
        at: String,
        /// Why (see the `sessions.disconnect_reason` column).
        reason: &'static str,
    },
    /// A message to log; `committed` hears whether it became durable.
    Message {
        /// The row.
        record: Box<MessageRecord>,
        /// Told `Some(true)` once committed, `Some(false)` if it could not be stored.
        committed: Option<watch::Sender<Option<bool>>>,
        /// For a message sequenced at commit: where its id is written before `committed`
        /// is told.
        assigned: Option<Arc<AtomicU64>>,
    },
    /// Connections of `user_id` took these messages.
    MarkDelivered {
        /// The recipient.
        user_id: String,
        /// Message ids.
        ids: Vec<u64>,
        /// When.
        at: String,
    },
    /// A user joined a room.
    JoinRoom {
        /// Room.
        room: String,
        /// User id.
        user_id: String,
        /// When.
        at: String,
    },
    /// A user left a room.
    LeaveRoom {
        /// Room.
        room: String,
        /// User id.
        user_id: String,
    },
    /// An operator revoked a user's tokens; `committed` hears whether it became durable.
    RevokeTokens {
        /// User id.
        user_id: String,
        /// The first `iat` still accepted.
        not_before: u64,
        /// When.
        at: String,
        /// Told `Some(true)` once committed, `Some(false)` if it could not be stored.
        committed: watch::Sender<Option<bool>>,
    },
    /// Reserve message ids: up to `through` (SQLite, one writer), or the next `block` ids
    /// of the shared counter, whatever other nodes took (PostgreSQL).
    ReserveIds {
        /// New reservation bound.
        through: u64,
        /// Ids per reservation.
        block: u64,
    },
    /// The server is alive at this time.
    Alive {
        /// When.
        at: String,
    },
    /// The server stops: record it and end the writer after this batch.
    Stop {
        /// When.
        at: String,
    },
    /// Answered once everything sent before it is committed.
    Flush(oneshot::Sender<()>),
    /// Tests only: a statement for the writer's own connection (a `PRAGMA` that only holds
    /// per connection), run in the batch that takes it; `done` is answered when settled.
    #[cfg(test)]
    OnWriterConnection {
        sql: String,
        done: oneshot::Sender<()>,
    },
}

/// What a committed transaction taught that its settlement needs.
#[derive(Default)]
pub(super) struct Facts {
    /// Per user, how many deliveries the receipts marked (the offline queue lengths follow).
    pub(super) delivered: HashMap<String, u64>,
    /// The ids `(first, through)` a reservation took from a shared counter (PostgreSQL);
    /// `None` when the batch's reservation is the bound it asked for (SQLite).
    pub(super) reserved: Option<(u64, u64)>,
    /// Sequenced at commit (`sequence.rs`): the id and the payload with it spliced in of
    /// each of the batch's messages, in batch order.
    pub(super) assigned: Vec<(u64, String)>,
}

/// How the attempt that decides a set of writes ended.
enum Outcome {
    Committed(Facts),
    Failed,
}

pub(super) async fn run(
    backend: Backend,
    mut rx: mpsc::UnboundedReceiver<WriteOp>,
    run_id: i64,
    shared: Arc<Shared>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut conn = match backend {
        Backend::Sqlite(pool) => Writer::Sqlite(Own { pool, own: None }),
        Backend::Postgres(pool) => Writer::Postgres(Own { pool, own: None }),
    };
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            break;
        }
        let stop = batch.iter().any(|op| matches!(op, WriteOp::Stop { .. }));
        write_batch(&mut conn, &mut batch, run_id, &shared).await;
        if stop {
            // Writes that raced the stop are not attempted: the pool closes next.
            rx.close();
            let late = std::iter::from_fn(|| rx.try_recv().ok());
            settle(&shared, late, Outcome::Failed);
            break;
        }
    }
    // The connection goes back to the pool, which closes it with the others.
    drop(conn);
}

/// The writer's connection, per backend.
enum Writer {
    Sqlite(Own<Sqlite>),
    Postgres(Own<sqlx::Postgres>),
}

/// A connection taken from the pool once and kept (so SQLite's page cache stays warm and
/// PostgreSQL's prepared statements stay prepared), taken again should it break.
struct Own<DB: Database> {
    pool: Pool<DB>,
    own: Option<PoolConnection<DB>>,
}

impl<DB: Database> Own<DB> {
    async fn connection(&mut self) -> Result<&mut DB::Connection, sqlx::Error> {
        if self.own.is_none() {
            self.own = Some(self.pool.acquire().await?);
        }
        match &mut self.own {
            Some(own) => Ok(&mut **own),
            None => Err(sqlx::Error::PoolClosed),
        }
    }

    /// Gives up a connection that failed below SQL (an I/O or protocol error): the next
    /// attempt takes a fresh one.
    fn after(&mut self, result: &Result<Facts, sqlx::Error>) {
        if matches!(
            result,
            Err(sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed)
        ) && let Some(own) = self.own.take()
        {
            drop(own.detach());
        }
    }
}

impl Writer {
    async fn commit_all(&mut self, batch: &[WriteOp], run_id: i64) -> Result<Facts, sqlx::Error> {
        match self {
            Self::Sqlite(own) => {
                let result = match own.connection().await {
                    Ok(conn) => commit_all(conn, batch, run_id).await,
                    Err(e) => Err(e),
                };
                own.after(&result);
                result
            }
            Self::Postgres(own) => {
                let result = match own.connection().await {
                    Ok(conn) => postgres::writer::commit_all(conn, batch, run_id).await,
                    Err(e) => Err(e),
                };
                own.after(&result);
                result
            }
        }
    }
}

/// Commits `batch` in one transaction, or else each write in its own, and settles every
/// write with the outcome of the attempt that decided it. Leaves `batch` empty.
async fn write_batch(conn: &mut Writer, batch: &mut Vec<WriteOp>, run_id: i64, shared: &Shared) {
    // The health is noted before the writes are settled: a sender told "not stored" finds
    // `/readyz` already saying so.
    let started = Instant::now();
    match conn.commit_all(batch, run_id).await {
        Ok(facts) => {
            record_commit(shared, batch, started);
            shared.health.committed();
            settle(shared, batch.drain(..), Outcome::Committed(facts));
        }
        Err(e) => {
            tracing::error!(error = %e, writes = batch.len(),
                "a batch of writes failed; retrying them one by one");
            let mut any_failed = false;
            for op in batch.drain(..) {
                let single = [op];
                let started = Instant::now();
                let outcome = match conn.commit_all(&single, run_id).await {
                    Ok(facts) => {
                        record_commit(shared, &single, started);
                        Outcome::Committed(facts)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, write = ?single[0],
                            "a write could not be committed");
                        shared.health.failed(&e);
                        any_failed = true;
                        Outcome::Failed
                    }
                };
                settle(shared, single, outcome);
            }
            if !any_failed {
                shared.health.committed();
            }
        }
    }
}

/// Counts a committed transaction (its size, how long it took, the messages it stored by
/// event name) before its writes are settled, so that the figures have moved by the time a
/// sender hears its message is stored.
fn record_commit(shared: &Shared, committed: &[WriteOp], started: Instant) {
    shared
        .metrics
        .store_commit(committed.len(), started.elapsed());
    // A batch carries few distinct event names: a list beats a map.
    let mut stored: Vec<(&str, u64)> = Vec::new();
    for op in committed {
        if let WriteOp::Message { record, .. } = op {
            match stored.iter_mut().find(|(event, _)| *event == record.event) {
                Some((_, n)) => *n += 1,
                None => stored.push((&record.event, 1)),
            }
        }
    }
    for (event, n) in stored {
        shared.metrics.messages_stored(event.to_owned(), n);
    }
}

/// Publishes what one attempt decided for `ops`, consuming them so that none is settled
/// twice. Flushes are answered last, once everything before them is visible.
fn settle(shared: &Shared, ops: impl IntoIterator<Item = WriteOp>, outcome: Outcome) {
    let mut facts = match outcome {
        Outcome::Committed(facts) => Some(facts),
        Outcome::Failed => None,
    };
    let ok = facts.is_some();
    let mut highest = None;
    let mut flushes = Vec::new();
    let mut assigned = facts
        .as_mut()
        .map(|f| std::mem::take(&mut f.assigned))
        .unwrap_or_default()
        .into_iter();
    let mut sequenced = Vec::new();
    for op in ops {
        match op {
            WriteOp::Message {
                mut record,
                committed,
                assigned: cell,
            } => {
                if ok && let Some((id, payload)) = assigned.next() {
                    record.id = id;
                    record.payload = payload;
                    if let Some(cell) = &cell {
                        cell.store(id, Ordering::Release);
                    }
                    sequenced.push(CommittedMessage {
                        id,
                        event: record.event.clone(),
                        target_kind: record.target_kind,
                        target: record.target.clone(),
                        payload: std::mem::take(&mut record.payload),
                        sender_session: record.sender_session,
                    });
                }
                if let Some(watcher) = committed {
                    watcher.send_replace(Some(ok));
                }
                if !ok && let Some(user_id) = record.counted_recipient() {
                    // Counted when it was sent; its queue row was never written.
                    shared.note_delivered(user_id, 1);
                }
                highest = highest.max(Some(record.id));
            }
            WriteOp::ReserveIds { through, .. } if ok => {
                match facts.as_ref().and_then(|f| f.reserved) {
                    Some((first, through)) => shared.ids.reserved_block(first, through),
                    None => shared.ids.reserved(through),
                }
            }
            WriteOp::ReserveIds { .. } => shared.ids.reservation_failed(),
            WriteOp::Flush(done) => flushes.push(done),
            WriteOp::RevokeTokens { committed, .. } => {
                committed.send_replace(Some(ok));
            }
            #[cfg(test)]
            WriteOp::OnWriterConnection { done, .. } => flushes.push(done),
            WriteOp::SeenUser { .. }
            | WriteOp::OpenSession { .. }
            | WriteOp::CloseSession { .. }
            | WriteOp::MarkDelivered { .. }
            | WriteOp::JoinRoom { .. }
            | WriteOp::LeaveRoom { .. }
            | WriteOp::Alive { .. }
            | WriteOp::Stop { .. } => {}
        }
    }
    if let Some(facts) = facts {
        for (user_id, n) in facts.delivered {
            shared.note_delivered(&user_id, n);
        }
    }
    shared.sequence.committed(sequenced);
    // Failed or not, these ids are settled: nobody should wait for them any longer.
    if let Some(id) = highest {
        shared.committed.send_modify(|c| *c = (*c).max(id));
    }
    for done in flushes {
        let _ = done.send(());
    }
}

/// Runs the SQL of `batch` in one transaction. Reads the writes only: their watchers are
/// for [`settle`], once the outcome is known.
async fn commit_all(
    conn: &mut SqliteConnection,
    batch: &[WriteOp],
    run_id: i64,
) -> Result<Facts, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // Writes of a kind are gathered into a few statements (see the module doc).
    // Gathering reorders them, in phases that keep every dependency: users before their
    // sessions, messages before the receipts that mark them, and everything else in the
    // order it was sent.
    upsert_users(&mut tx, &seen_users(batch)).await?;
    open_sessions(&mut tx, &opened_sessions(batch)).await?;
    let mut receipts = Receipts::of(batch);
    let records = records(batch);
    insert_messages(&mut tx, &records).await?;
    let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
    insert_deliveries(&mut tx, &delivery_rows(&records, &ids, &mut receipts)).await?;
    mark_delivered(&mut tx, &mut receipts).await?;
    for op in batch {
        apply(&mut tx, op, run_id).await?;
    }
    tx.commit().await?;
    Ok(Facts {
        delivered: receipts.counts,
        reserved: None,
        assigned: Vec::new(),
    })
}

// ---- What a batch writes, gathered by kind: shared by both backends' `commit_all` ----

/// A user seen in a batch, once however many times it connected: first and last time,
/// name and role from the last connection (what the upserts one after the other would
/// leave; PostgreSQL refuses one upsert that touches a row twice).
pub(super) struct SeenUser<'a> {
    pub(super) user_id: &'a str,
    pub(super) username: &'a str,
    pub(super) role: &'a str,
    pub(super) first_at: &'a str,
    pub(super) last_at: &'a str,
}

/// The users a batch saw, in the order first seen.
pub(super) fn seen_users(batch: &[WriteOp]) -> Vec<SeenUser<'_>> {
    let mut rows: Vec<SeenUser<'_>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for op in batch {
        if let WriteOp::SeenUser {
            user_id,
            username,
            role,
            at,
        } = op
        {
            match index.get(user_id.as_str()) {
                Some(&i) => {
                    let row = &mut rows[i];
                    row.username = username;
                    row.role = role;
                    row.last_at = at;
                }
                None => {
                    index.insert(user_id, rows.len());
                    rows.push(SeenUser {
                        user_id,
                        username,
                        role,
                        first_at: at,
                        last_at: at,
                    });
                }
            }
        }
    }
    rows
}

/// A session a batch opened.
pub(super) struct OpenedSession<'a> {
    pub(super) session_id: i64,
    pub(super) user_id: &'a str,
    pub(super) transport: &'static str,
    pub(super) remote_addr: Option<&'a str>,
    pub(super) user_agent: Option<&'a str>,
    pub(super) at: &'a str,
}

/// The sessions a batch opened, in order.
pub(super) fn opened_sessions(batch: &[WriteOp]) -> Vec<OpenedSession<'_>> {
    batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::OpenSession {
                session_id,
                user_id,
                transport,
                remote_addr,
                user_agent,
                at,
            } => Some(OpenedSession {
                session_id: *session_id as i64,
                user_id,
                transport,
                remote_addr: remote_addr.as_deref(),
                user_agent: user_agent.as_deref(),
                at,
            }),
            _ => None,
        })
        .collect()
}

/// The messages a batch logs, in id order.
pub(super) fn records(batch: &[WriteOp]) -> Vec<&MessageRecord> {
    batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::Message { record, .. } => Some(&**record),
            _ => None,
        })
        .collect()
}

/// A delivery row: recipient, message id, queued at, delivered at (when its receipt is in
/// the same batch).
pub(super) type DeliveryRow<'a> = (&'a str, u64, &'a str, Option<&'a str>);

/// The delivery rows of the batch's addressed messages (`ids`: each record's id, assigned or
/// its own); a row whose receipt is in the batch takes it (and goes in already delivered).
pub(super) fn delivery_rows<'a>(
    records: &[&'a MessageRecord],
    ids: &[u64],
    receipts: &mut Receipts<'a>,
) -> Vec<DeliveryRow<'a>> {
    records
        .iter()
        .zip(ids)
        .filter_map(|(r, &id)| {
            let user_id = r.recipient.as_deref()?;
            Some((
                user_id,
                id,
                r.created_at.as_str(),
                receipts.take(user_id, id),
            ))
        })
        .collect()
}

/// Chunk sizes for `n` rows: full chunks, then the powers of two that make up the rest.
fn chunk_sizes(n: usize) -> impl Iterator<Item = usize> {
    let full = std::iter::repeat_n(MAX_ROWS_PER_INSERT, n / MAX_ROWS_PER_INSERT);
    let rest = n % MAX_ROWS_PER_INSERT;
    let tail = (0..usize::BITS)
        .rev()
        .map(|bit| 1usize << bit)
        .filter(move |size| rest & size != 0);
    full.chain(tail)
}

/// Inserts or refreshes the users of a batch, a multi-row upsert per chunk.
async fn upsert_users(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[SeenUser<'_>],
) -> Result<(), sqlx::Error> {
    let mut rest = rows;
    for size in chunk_sizes(rows.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut upsert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO users (user_id, username, role, first_seen_at, last_seen_at) ",
        );
        upsert.push_values(chunk, |mut row, user| {
            row.push_bind(user.user_id)
                .push_bind(user.username)
                .push_bind(user.role)
                .push_bind(user.first_at)
                .push_bind(user.last_at);
        });
        upsert.push(
            " ON CONFLICT (user_id) DO UPDATE SET username = excluded.username,
              role = excluded.role, last_seen_at = excluded.last_seen_at",
        );
        upsert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Inserts the sessions opened in a batch, a multi-row INSERT per chunk.
async fn open_sessions(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[OpenedSession<'_>],
) -> Result<(), sqlx::Error> {
    let mut rest = rows;
    for size in chunk_sizes(rows.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO sessions
             (session_id, user_id, transport, remote_addr, user_agent, connected_at) ",
        );
        insert.push_values(chunk, |mut row, s| {
            row.push_bind(s.session_id)
                .push_bind(s.user_id)
                .push_bind(s.transport)
                .push_bind(s.remote_addr)
                .push_bind(s.user_agent)
                .push_bind(s.at);
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// The receipts of a batch, and per user how many deliveries they marked so far (the
/// offline queue lengths follow the counts once the batch commits).
pub(super) struct Receipts<'a> {
    /// `(user, message id)` → when, the first receipt of each pair.
    pub(super) pending: HashMap<(&'a str, u64), &'a str>,
    pub(super) counts: HashMap<String, u64>,
}

impl<'a> Receipts<'a> {
    pub(super) fn of(batch: &'a [WriteOp]) -> Self {
        let mut pending = HashMap::new();
        for op in batch {
            if let WriteOp::MarkDelivered { user_id, ids, at } = op {
                for id in ids {
                    pending
                        .entry((user_id.as_str(), *id))
                        .or_insert(at.as_str());
                }
            }
        }
        Self {
            pending,
            counts: HashMap::new(),
        }
    }

    /// Takes the receipt of `user_id` for message `id`, if the batch has one: when it was
    /// delivered. Counted as a delivery, committed with the batch.
    fn take(&mut self, user_id: &'a str, id: u64) -> Option<&'a str> {
        let at = self.pending.remove(&(user_id, id))?;
        *self.counts.entry(user_id.to_owned()).or_default() += 1;
        Some(at)
    }
}

/// Marks the deliveries of the receipts left over (for messages of earlier batches) in one
/// statement, counting the rows it changed.
async fn mark_delivered(
    tx: &mut Transaction<'_, Sqlite>,
    receipts: &mut Receipts<'_>,
) -> Result<(), sqlx::Error> {
    if receipts.pending.is_empty() {
        return Ok(());
    }
    let rows: Vec<(&str, u64, &str)> = receipts
        .pending
        .iter()
        .map(|(&(user_id, id), &at)| (user_id, id, at))
        .collect();
    let users: Vec<String> = sqlx::query_scalar(
        "UPDATE deliveries SET delivered_at = marked.at
         FROM (SELECT value ->> 0 AS user_id, value ->> 1 AS message_id, value ->> 2 AS at
               FROM json_each(?1)) AS marked
         WHERE deliveries.delivered_at IS NULL
           AND deliveries.user_id = marked.user_id
           AND deliveries.message_id = marked.message_id
         RETURNING deliveries.user_id",
    )
    .bind(serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
    .fetch_all(&mut **tx)
    .await?;
    for user in users {
        *receipts.counts.entry(user).or_default() += 1;
    }
    Ok(())
}

/// Inserts the messages of a batch, a multi-row INSERT per chunk.
async fn insert_messages(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[&MessageRecord],
) -> Result<(), sqlx::Error> {
    let mut rest = records;
    for size in chunk_sizes(records.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (message_id, event, target_kind, target, sender_id, body,
                 type, payload, client_msg_id, live_recipients, created_at, sender_session) ",
        );
        insert.push_values(chunk, |mut row, r| {
            row.push_bind(r.id as i64)
                .push_bind(&r.event)
                .push_bind(r.target_kind.as_str())
                .push_bind(&r.target)
                .push_bind(&r.sender_id)
                .push_bind(&r.body)
                .push_bind(&r.kind)
                .push_bind(&r.payload)
                .push_bind(&r.client_msg_id)
                .push_bind(r.live_recipients as i64)
                .push_bind(&r.created_at)
                .push_bind(r.sender_session.map(|s| s as i64));
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Inserts the delivery rows of the batch's addressed messages (after the messages: the
/// foreign key wants that order), a multi-row INSERT per chunk.
async fn insert_deliveries(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[DeliveryRow<'_>],
) -> Result<(), sqlx::Error> {
    let mut rest = rows;
    for size in chunk_sizes(rows.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO deliveries (user_id, message_id, queued_at, delivered_at) ",
        );
        insert.push_values(chunk, |mut row, (user_id, id, queued_at, delivered_at)| {
            row.push_bind(*user_id)
                .push_bind(*id as i64)
                .push_bind(*queued_at)
                .push_bind(*delivered_at);
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Runs one write that is not gathered into the multi-row statements of [`commit_all`].
async fn apply(
    tx: &mut Transaction<'_, Sqlite>,
    op: &WriteOp,
    run_id: i64,
) -> Result<(), sqlx::Error> {
    match op {
        // Gathered by `commit_all` before the others run.
        WriteOp::SeenUser { .. }
        | WriteOp::OpenSession { .. }
        | WriteOp::Message { .. }
        | WriteOp::MarkDelivered { .. } => {}
        WriteOp::CloseSession {
            session_id,
            at,
            reason,
        } => sessions::close(tx, *session_id, at, reason).await?,
        WriteOp::JoinRoom { room, user_id, at } => rooms::join(tx, room, user_id, at).await?,
        WriteOp::LeaveRoom { room, user_id } => rooms::leave(tx, room, user_id).await?,
        WriteOp::RevokeTokens {
            user_id,
            not_before,
            at,
            ..
        } => users::revoke_tokens(tx, user_id, *not_before, at).await?,
        WriteOp::ReserveIds { through, .. } => {
            raise_counter(&mut **tx, RESERVED_THROUGH, *through).await?;
        }
        WriteOp::Alive { at } => sessions::run_alive(tx, run_id, at).await?,
        WriteOp::Stop { at } => sessions::run_stopped(tx, run_id, at).await?,
        WriteOp::Flush(_) => {}
        #[cfg(test)]
        WriteOp::OnWriterConnection { sql, .. } => {
            sqlx::query(sql).execute(&mut **tx).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
