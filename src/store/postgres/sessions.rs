//! Sessions and server runs on PostgreSQL; see `../sqlite/sessions.rs`. Crash recovery closes only
//! the rows of this node (`node_id`): in a cluster the other nodes' sessions are alive.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};

use super::super::model::{HistoryRow, RecentSession, SessionRow, UserHistory, history_of};
use super::super::sql;

/// Records the start of this server run of `node_id`; returns its id.
pub(in crate::store) async fn start_run(
    pool: &PgPool,
    node_id: &str,
    now: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO server_runs (started_at, last_alive_at, node_id) VALUES ($1, $1, $2)
         RETURNING run_id",
    )
    .bind(now)
    .bind(node_id)
    .fetch_one(pool)
    .await
}

/// The first id of a new block of session ids, this node's alone (`session_ids` advances by
/// the block size at each call).
pub(in crate::store) async fn take_session_ids(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let first: i64 = sqlx::query_scalar("SELECT nextval('session_ids')")
        .fetch_one(pool)
        .await?;
    Ok(first.max(1) as u64)
}

/// Records that the run is alive at `at`.
pub(in crate::store) async fn run_alive(
    conn: &mut PgConnection,
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
    conn: &mut PgConnection,
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
    conn: &mut PgConnection,
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

/// The stored history of each of `user_ids`, live sessions measured up to `now`. The text
/// times are read as `timestamptz` for the arithmetic.
pub(in crate::store) async fn history(
    pool: &PgPool,
    user_ids: &[String],
    now: &str,
) -> Result<HashMap<String, UserHistory>, sqlx::Error> {
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "SELECT s.user_id,
                COUNT(*),
                COALESCE(SUM(GREATEST(0, EXTRACT(EPOCH FROM
                    COALESCE(s.disconnected_at, $2)::timestamptz
                    - s.connected_at::timestamptz))), 0)::float8,
                u.first_seen_at
         FROM sessions s JOIN users u ON u.user_id = s.user_id
         WHERE s.user_id = ANY($1)
         GROUP BY s.user_id, u.first_seen_at",
    )
    .bind(user_ids)
    .bind(now)
    .fetch_all(pool)
    .await?;
    Ok(history_of(rows))
}

/// A user's sessions, newest first.
pub(in crate::store) async fn sessions_of(
    pool: &PgPool,
    user_id: &str,
    limit: u32,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as(sql::SESSIONS_OF)
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
}

/// The newest sessions of anyone, newest first (the primary key's order: ids grow with time).
pub(in crate::store) async fn recent(
    pool: &PgPool,
    limit: u32,
) -> Result<Vec<RecentSession>, sqlx::Error> {
    sqlx::query_as(sql::RECENT_SESSIONS)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
}

/// The nodes, other than `except`, with sessions recorded as open.
pub(in crate::store) async fn nodes_with_open_sessions(
    pool: &PgPool,
    except: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT node_id FROM sessions
         WHERE disconnected_at IS NULL AND node_id <> $1 ORDER BY node_id",
    )
    .bind(except)
    .fetch_all(pool)
    .await
}
