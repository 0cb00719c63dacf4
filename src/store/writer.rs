//! The one writer task. Every write is a [`WriteOp`] on a channel; the task takes whatever has
//! queued up (up to [`MAX_BATCH`]) and commits it in one transaction (group commit). Within
//! the batch, consecutive messages are inserted with multi-row INSERTs: sqlx-sqlite runs every
//! statement on its worker thread, so a statement per row makes that round trip (not SQLite)
//! the limit (measured by `benches/write_path.rs`: ~45k rows/s with one row per statement,
//! ~160k/s with up to 256). Should a batch fail, its writes are retried one transaction each,
//! so one bad write cannot take the others down with it.
//!
//! After each commit the writer publishes what became durable: message acks wait on it.

use std::sync::Arc;

use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};
use tokio::sync::{mpsc, oneshot, watch};

use super::Shared;
use super::messages::{MessageRecord, RESERVED_THROUGH, raise_counter};

/// Most writes committed in one transaction.
pub const MAX_BATCH: usize = 4096;
/// Most rows per multi-row INSERT: 11 binds a row stays far below SQLite's 32,766, and the
/// power-of-two chunk sizes keep the distinct statement texts within sqlx's statement cache.
const MAX_ROWS_PER_INSERT: usize = 256;

/// One durable write.
#[derive(Debug)]
pub enum WriteOp {
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
    /// Reserve message ids up to `through`.
    ReserveIds {
        /// New reservation bound.
        through: u64,
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
}

/// What a committed write changes outside the database.
enum Effect {
    None,
    Committed(Option<watch::Sender<Option<bool>>>, u64),
    Delivered(String, u64),
    Reserved(u64),
}

pub(super) async fn run(
    pool: SqlitePool,
    mut rx: mpsc::UnboundedReceiver<WriteOp>,
    run_id: i64,
    shared: Arc<Shared>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            break;
        }
        let stop = batch.iter().any(|op| matches!(op, WriteOp::Stop { .. }));
        let mut effects = Vec::with_capacity(batch.len());
        match commit_all(&pool, &mut batch, run_id, &mut effects).await {
            Ok(()) => finish(&shared, effects, true),
            Err(e) => {
                tracing::error!(error = %e, writes = batch.len(),
                    "a batch of writes failed; retrying them one by one");
                let ops = std::mem::take(&mut batch);
                for op in ops {
                    let mut single = vec![op];
                    let mut effects = Vec::new();
                    let ok = match commit_all(&pool, &mut single, run_id, &mut effects).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!(error = %e, write = ?single.first(),
                                "a write could not be committed");
                            false
                        }
                    };
                    finish(&shared, effects, ok);
                    answer_flushes(&mut single);
                }
            }
        }
        answer_flushes(&mut batch);
        if stop {
            break;
        }
    }
}

fn answer_flushes(batch: &mut Vec<WriteOp>) {
    for op in batch.drain(..) {
        if let WriteOp::Flush(done) = op {
            let _ = done.send(());
        }
    }
}

/// Publishes what a transaction made durable (or failed to).
fn finish(shared: &Shared, effects: Vec<Effect>, ok: bool) {
    let mut highest = None;
    for effect in effects {
        match effect {
            Effect::None => {}
            Effect::Committed(watcher, id) => {
                if let Some(w) = watcher {
                    w.send_replace(Some(ok));
                }
                highest = Some(id);
            }
            Effect::Delivered(user_id, n) if ok => shared.note_delivered(&user_id, n),
            Effect::Reserved(through) if ok => shared.ids.reserved(through),
            Effect::Reserved(_) => shared.ids.reserved(0),
            Effect::Delivered(..) => {}
        }
    }
    // Failed or not, these ids are settled: nobody should wait for them any longer.
    if let Some(id) = highest {
        shared.committed.send_modify(|c| *c = (*c).max(id));
    }
}

async fn commit_all(
    pool: &SqlitePool,
    batch: &mut [WriteOp],
    run_id: i64,
    effects: &mut Vec<Effect>,
) -> Result<(), sqlx::Error> {
    let result = async {
        let mut tx = pool.begin().await?;
        let mut i = 0;
        while i < batch.len() {
            if !matches!(batch[i], WriteOp::Message { .. }) {
                effects.push(apply(&mut tx, &mut batch[i], run_id).await?);
                i += 1;
                continue;
            }
            // A run of messages: one multi-row INSERT per chunk, in order.
            let start = i;
            while i < batch.len() && matches!(batch[i], WriteOp::Message { .. }) {
                i += 1;
            }
            let records: Vec<&MessageRecord> = batch[start..i]
                .iter()
                .filter_map(|op| match op {
                    WriteOp::Message { record, .. } => Some(&**record),
                    _ => None,
                })
                .collect();
            insert_messages(&mut tx, &records).await?;
            for op in &mut batch[start..i] {
                if let WriteOp::Message { record, committed } = op {
                    effects.push(Effect::Committed(committed.take(), record.id));
                }
            }
        }
        tx.commit().await
    }
    .await;
    if result.is_err() {
        // Watchers of this batch hear about it from the one-by-one retry.
        effects.clear();
    }
    result
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

/// Inserts messages, then their delivery rows (the foreign key wants that order).
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
                 type, payload, client_msg_id, live_recipients, created_at) ",
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
                .push_bind(&r.created_at);
        });
        insert.build().execute(&mut **tx).await?;
    }
    let addressed: Vec<(&str, &MessageRecord)> = records
        .iter()
        .filter_map(|r| r.recipient.as_deref().map(|u| (u, *r)))
        .collect();
    let mut rest = &addressed[..];
    for size in chunk_sizes(addressed.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut insert =
            QueryBuilder::<Sqlite>::new("INSERT INTO deliveries (user_id, message_id, queued_at) ");
        insert.push_values(chunk, |mut row, (user_id, r)| {
            row.push_bind(*user_id)
                .push_bind(r.id as i64)
                .push_bind(&r.created_at);
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

async fn apply(
    tx: &mut Transaction<'_, Sqlite>,
    op: &mut WriteOp,
    run_id: i64,
) -> Result<Effect, sqlx::Error> {
    match op {
        WriteOp::SeenUser {
            user_id,
            username,
            role,
            at,
        } => {
            sqlx::query(
                "INSERT INTO users (user_id, username, role, first_seen_at, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (user_id) DO UPDATE
                 SET username = excluded.username, role = excluded.role,
                     last_seen_at = excluded.last_seen_at",
            )
            .bind(&*user_id)
            .bind(&*username)
            .bind(&*role)
            .bind(&*at)
            .execute(&mut **tx)
            .await?;
        }
        WriteOp::OpenSession {
            session_id,
            user_id,
            transport,
            remote_addr,
            user_agent,
            at,
        } => {
            sqlx::query(
                "INSERT INTO sessions
                 (session_id, user_id, transport, remote_addr, user_agent, connected_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(*session_id as i64)
            .bind(&*user_id)
            .bind(*transport)
            .bind(&*remote_addr)
            .bind(&*user_agent)
            .bind(&*at)
            .execute(&mut **tx)
            .await?;
        }
        WriteOp::CloseSession {
            session_id,
            at,
            reason,
        } => {
            sqlx::query(
                "UPDATE sessions SET disconnected_at = ?2, disconnect_reason = ?3
                 WHERE session_id = ?1 AND disconnected_at IS NULL",
            )
            .bind(*session_id as i64)
            .bind(&*at)
            .bind(*reason)
            .execute(&mut **tx)
            .await?;
        }
        WriteOp::Message { record, committed } => {
            // Normally inserted in runs by `commit_all`; kept total for any single call.
            insert_messages(tx, &[&**record]).await?;
            return Ok(Effect::Committed(committed.take(), record.id));
        }
        WriteOp::MarkDelivered { user_id, ids, at } => {
            // One statement for the whole set: a statement per id would pay sqlx's worker
            // round trip each time.
            let ids = serde_json::to_string(&*ids).unwrap_or_else(|_| "[]".into());
            let marked = sqlx::query(
                "UPDATE deliveries SET delivered_at = ?3
                 WHERE user_id = ?1 AND delivered_at IS NULL
                   AND message_id IN (SELECT value FROM json_each(?2))",
            )
            .bind(&*user_id)
            .bind(ids)
            .bind(&*at)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            return Ok(Effect::Delivered(user_id.clone(), marked));
        }
        WriteOp::JoinRoom { room, user_id, at } => {
            sqlx::query(
                "INSERT INTO room_members (room, user_id, joined_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&*room)
            .bind(&*user_id)
            .bind(&*at)
            .execute(&mut **tx)
            .await?;
        }
        WriteOp::LeaveRoom { room, user_id } => {
            sqlx::query("DELETE FROM room_members WHERE room = ?1 AND user_id = ?2")
                .bind(&*room)
                .bind(&*user_id)
                .execute(&mut **tx)
                .await?;
        }
        WriteOp::ReserveIds { through } => {
            raise_counter(&mut **tx, RESERVED_THROUGH, *through).await?;
            return Ok(Effect::Reserved(*through));
        }
        WriteOp::Alive { at } => {
            sqlx::query("UPDATE server_runs SET last_alive_at = ?2 WHERE run_id = ?1")
                .bind(run_id)
                .bind(&*at)
                .execute(&mut **tx)
                .await?;
        }
        WriteOp::Stop { at } => {
            sqlx::query(
                "UPDATE server_runs SET last_alive_at = ?2, stopped_at = ?2 WHERE run_id = ?1",
            )
            .bind(run_id)
            .bind(&*at)
            .execute(&mut **tx)
            .await?;
        }
        WriteOp::Flush(_) => {}
    }
    Ok(Effect::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_full_then_powers_of_two() {
        assert_eq!(chunk_sizes(0).collect::<Vec<_>>(), Vec::<usize>::new());
        assert_eq!(chunk_sizes(1).collect::<Vec<_>>(), vec![1]);
        assert_eq!(chunk_sizes(300).collect::<Vec<_>>(), vec![256, 32, 8, 4]);
        assert_eq!(chunk_sizes(512).collect::<Vec<_>>(), vec![256, 256]);
    }
}
