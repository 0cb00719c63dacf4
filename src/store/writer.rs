//! The one writer task. Every write is a [`WriteOp`] on a channel; the task takes whatever has
//! queued up (up to [`MAX_BATCH`]) and commits it in one transaction (group commit), because
//! sqlx-sqlite runs each statement on a worker thread and a transaction per write would make
//! the disk sync, not the work, the limit.

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 1024;

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

pub(super) async fn run(pool: SqlitePool, mut rx: mpsc::UnboundedReceiver<WriteOp>, run_id: i64) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            break;
        }
        let stop = batch.iter().any(|op| matches!(op, WriteOp::Stop { .. }));
        if let Err(e) = commit(&pool, &batch, run_id).await {
            tracing::error!(error = %e, writes = batch.len(), "could not commit a batch of writes");
        }
        for op in batch.drain(..) {
            if let WriteOp::Flush(done) = op {
                let _ = done.send(());
            }
        }
        if stop {
            break;
        }
    }
}

async fn commit(pool: &SqlitePool, batch: &[WriteOp], run_id: i64) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for op in batch {
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
                .bind(user_id)
                .bind(username)
                .bind(role)
                .bind(at)
                .execute(&mut *tx)
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
                .bind(user_id)
                .bind(*transport)
                .bind(remote_addr)
                .bind(user_agent)
                .bind(at)
                .execute(&mut *tx)
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
                .bind(at)
                .bind(*reason)
                .execute(&mut *tx)
                .await?;
            }
            WriteOp::Alive { at } => {
                sqlx::query("UPDATE server_runs SET last_alive_at = ?2 WHERE run_id = ?1")
                    .bind(run_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            WriteOp::Stop { at } => {
                sqlx::query(
                    "UPDATE server_runs SET last_alive_at = ?2, stopped_at = ?2 WHERE run_id = ?1",
                )
                .bind(run_id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            WriteOp::Flush(_) => {}
        }
    }
    tx.commit().await
}
