//! Sessions (the `sessions` table) and server runs (`server_runs`): closing a session, closing
//! what a crash left open, and the per-user history that the statistics report (sessions
//! count, total connected time, first seen). Server runs live here because their one reader
//! is the crash recovery of sessions: a session left open is closed at the last moment its
//! run was known to be alive. The dashboard's recent history (`recent`) reads here too. Sessions are opened by the writer's batched INSERT (`writer.rs`).

use std::collections::HashMap;

use sqlx::{SqliteConnection, SqlitePool};

/// What the stored history says about one user. Live sessions count too: their rows are open
/// and measured up to `now`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserHistory {
    /// Sessions ever opened.
    pub sessions_count: u64,
    /// Seconds connected, summed over every session.
    pub total_connected_seconds: u64,
    /// When the user was first seen.
    pub first_seen: String,
}

/// Closes every session row left open, with reason `server_restart`, at the last moment the
/// previous run was known to be alive (never before the session began). Returns how many.
pub(super) async fn close_orphaned(pool: &SqlitePool, now: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sessions
         SET disconnect_reason = 'server_restart',
             disconnected_at = MAX(connected_at, COALESCE(
                 (SELECT last_alive_at FROM server_runs ORDER BY run_id DESC LIMIT 1), ?1))
         WHERE disconnected_at IS NULL",
    )
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Records the start of this server run; returns its id.
pub(super) async fn start_run(pool: &SqlitePool, now: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO server_runs (started_at, last_alive_at) VALUES (?1, ?1) RETURNING run_id",
    )
    .bind(now)
    .fetch_one(pool)
    .await
}

/// The highest session id ever stored (0 if none): new ids continue after it.
pub(super) async fn last_session_id(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
    let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(session_id), 0) FROM sessions")
        .fetch_one(pool)
        .await?;
    Ok(max.max(0) as u64)
}

/// Records that the run is alive at `at` (the time a crash would close its sessions at).
pub(super) async fn run_alive(
    conn: &mut SqliteConnection,
    run_id: i64,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE server_runs SET last_alive_at = ?2 WHERE run_id = ?1")
        .bind(run_id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records that the run ended cleanly at `at`.
pub(super) async fn run_stopped(
    conn: &mut SqliteConnection,
    run_id: i64,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE server_runs SET last_alive_at = ?2, stopped_at = ?2 WHERE run_id = ?1")
        .bind(run_id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Closes a session row with its reason; a row already closed keeps its first ending.
pub(super) async fn close(
    conn: &mut SqliteConnection,
    session_id: u64,
    at: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sessions SET disconnected_at = ?2, disconnect_reason = ?3
         WHERE session_id = ?1 AND disconnected_at IS NULL",
    )
    .bind(session_id as i64)
    .bind(at)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// The stored history of each of `user_ids`, live sessions measured up to `now`.
pub(super) async fn history(
    pool: &SqlitePool,
    user_ids: &[String],
    now: &str,
) -> Result<HashMap<String, UserHistory>, sqlx::Error> {
    let ids = serde_json::to_string(user_ids).unwrap_or_else(|_| "[]".into());
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "SELECT s.user_id,
                COUNT(*),
                SUM(MAX(0, julianday(COALESCE(s.disconnected_at, ?2)) - julianday(s.connected_at)))
                    * 86400.0,
                u.first_seen_at
         FROM sessions s JOIN users u ON u.user_id = s.user_id
         WHERE s.user_id IN (SELECT value FROM json_each(?1))
         GROUP BY s.user_id",
    )
    .bind(ids)
    .bind(now)
    .fetch_all(pool)
    .await?;
    Ok(history_of(rows))
}

/// Per user, `(user_id, sessions, seconds connected, first seen)` as both backends read it.
pub(super) type HistoryRow = (String, i64, f64, String);

/// The history rows, keyed by user.
pub(super) fn history_of(rows: Vec<HistoryRow>) -> HashMap<String, UserHistory> {
    rows.into_iter()
        .map(|(user_id, count, seconds, first_seen)| {
            (
                user_id,
                UserHistory {
                    sessions_count: count.max(0) as u64,
                    total_connected_seconds: seconds.max(0.0).round() as u64,
                    first_seen,
                },
            )
        })
        .collect()
}

/// One stored session, as the REST API lists it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct SessionRow {
    /// Session id.
    pub session_id: i64,
    /// `ws` or `socketio`.
    pub transport: String,
    /// Peer address.
    pub remote_addr: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// When it opened.
    pub connected_at: String,
    /// When it ended (`null` while connected).
    pub disconnected_at: Option<String>,
    /// Why it ended.
    pub disconnect_reason: Option<String>,
}

/// A user's sessions, newest first.
pub(super) async fn sessions_of(
    pool: &SqlitePool,
    user_id: &str,
    limit: u32,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT session_id, transport, remote_addr, user_agent, connected_at, disconnected_at,
                disconnect_reason
         FROM sessions WHERE user_id = ?1 ORDER BY session_id DESC LIMIT ?2",
    )
    .bind(user_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
}

/// A stored session with whose it is, as the operator dashboard's history lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecentSession {
    /// The user it belonged to.
    pub user_id: String,
    /// The session itself.
    #[sqlx(flatten)]
    pub session: SessionRow,
}

/// The newest sessions of anyone, newest first (the primary key's order: ids grow with time).
pub(super) async fn recent(
    pool: &SqlitePool,
    limit: u32,
) -> Result<Vec<RecentSession>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, session_id, transport, remote_addr, user_agent, connected_at,
                disconnected_at, disconnect_reason
         FROM sessions ORDER BY session_id DESC LIMIT ?1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
}
