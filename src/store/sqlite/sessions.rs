//! Sessions (the `sessions` table) and server runs (`server_runs`) on SQLite: closing a
//! session, closing what a crash left open, and the per-user history that the statistics
//! report (sessions count, total connected time, first seen). Server runs live here because
//! their one reader is the crash recovery of sessions: a session left open is closed at the
//! last moment its run was known to be alive. The dashboard's recent history (`recent`) reads
//! here too. Sessions are opened by the writer's batched INSERT (`writer.rs`).

use std::collections::HashMap;

use sqlx::{SqliteConnection, SqlitePool};

use super::super::model::{HistoryRow, RecentSession, SessionRow, UserHistory, history_of};
use super::super::sql;

/// Records the start of this server run; returns its id.
pub(in crate::store) async fn start_run(pool: &SqlitePool, now: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO server_runs (started_at, last_alive_at) VALUES (?1, ?1) RETURNING run_id",
    )
    .bind(now)
    .fetch_one(pool)
    .await
}

/// The highest session id ever stored (0 if none): new ids continue after it.
pub(in crate::store) async fn last_session_id(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
    let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(session_id), 0) FROM sessions")
        .fetch_one(pool)
        .await?;
    Ok(max.max(0) as u64)
}

/// Records that the run is alive at `at` (the time a crash would close its sessions at).
pub(in crate::store) async fn run_alive(
    conn: &mut SqliteConnection,
    run_id: i64,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql::RUN_ALIVE)
        .bind(run_id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records that the run ended cleanly at `at`.
pub(in crate::store) async fn run_stopped(
    conn: &mut SqliteConnection,
    run_id: i64,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql::RUN_STOPPED)
        .bind(run_id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Closes a session row with its reason; a row already closed keeps its first ending.
pub(in crate::store) async fn close(
    conn: &mut SqliteConnection,
    session_id: u64,
    at: &str,
    reason: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(sql::CLOSE_SESSION)
        .bind(session_id as i64)
        .bind(at)
        .bind(reason)
        .fetch_optional(conn)
        .await
}

/// The stored history of each of `user_ids`, live sessions measured up to `now`.
pub(in crate::store) async fn history(
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

/// A user's sessions, newest first.
pub(in crate::store) async fn sessions_of(
    pool: &SqlitePool,
    user_id: &str,
    limit: u32,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as(sql::SESSIONS_OF)
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
}

/// The newest sessions of anyone, newest first.
pub(in crate::store) async fn recent(
    pool: &SqlitePool,
    limit: u32,
) -> Result<Vec<RecentSession>, sqlx::Error> {
    sqlx::query_as(sql::RECENT_SESSIONS)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
}
