//! The one writer task. Every write is a [`WriteOp`] on a channel; the task takes whatever has
//! queued up (up to [`MAX_BATCH`]) and commits it in one transaction (group commit), on a
//! connection of its own. Should a batch fail, its writes are retried one transaction each,
//! so one bad write cannot take the others down with it.
//!
//! Shared by every backend: the loop, the connection it keeps, the one-by-one retry, and
//! settle-once. What a batch turns into is the backend's `commit_all` (`sqlite/writer.rs`,
//! `postgres/writer.rs`), from the rows `batch.rs` gathers; each of those files says what a
//! batch costs there. The writer keeps **its own connection**: on SQLite a pooled connection
//! that another one wrote behind drops its page cache, on PostgreSQL its prepared statements
//! stay prepared; readers keep the pool.
//!
//! **Every write is settled exactly once, by the attempt that decides it.** A backend's `commit_all`
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

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool, Sqlite};
use tokio::sync::mpsc;

use super::batch::{Facts, WriteOp};
use super::outbox::Outbox;
use super::sequence::CommittedMessage;
use super::{Backend, Shared, postgres, sqlite};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 4096;

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
    async fn commit_all(
        &mut self,
        batch: &[WriteOp],
        run_id: i64,
        outbox: &Outbox,
    ) -> Result<Facts, sqlx::Error> {
        match self {
            Self::Sqlite(own) => {
                let result = match own.connection().await {
                    Ok(conn) => sqlite::writer::commit_all(conn, batch, run_id, outbox).await,
                    Err(e) => Err(e),
                };
                own.after(&result);
                result
            }
            Self::Postgres(own) => {
                let result = match own.connection().await {
                    Ok(conn) => postgres::writer::commit_all(conn, batch, run_id, outbox).await,
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
    match conn.commit_all(batch, run_id, &shared.outbox).await {
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
                let outcome = match conn.commit_all(&single, run_id, &shared.outbox).await {
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
            | WriteOp::Webhooks(_)
            | WriteOp::Alive { .. }
            | WriteOp::Stop { .. } => {}
        }
    }
    if let Some(facts) = facts {
        for (user_id, n) in facts.delivered {
            shared.note_delivered(&user_id, n);
        }
        if facts.webhook_events > 0 {
            shared
                .metrics
                .webhook_events_written(facts.webhook_events as u64);
            shared.outbox_written.send_modify(|n| *n += 1);
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

#[cfg(test)]
mod tests;
