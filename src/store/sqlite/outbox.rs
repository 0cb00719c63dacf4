//! The webhook outbox on SQLite (`../outbox.rs` says what is written and why): the writer's
//! lookups and inserts for it ([`OutboxTx`]), the sender's marks ([`mark`]), and the
//! sessions a crash left open closed together with their events ([`close_orphaned`]). Lists
//! of ids are bound as one JSON array (`json_each`), one statement whatever their number.

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Sqlite, SqliteConnection, Transaction};

use super::super::batch::WebhookMark;
use super::super::outbox::{ClosedRow, EventRow, Outbox, OutboxTx, closed_facts, record};
use super::chunks::chunked;

fn json<T: serde::Serialize>(value: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

impl OutboxTx for Transaction<'_, Sqlite> {
    /// One writer: nobody else can change a user's sessions meanwhile.
    async fn lock_users(&mut self, _users: &[&str]) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn open_sessions(&mut self, users: &[&str]) -> Result<HashMap<String, i64>, sqlx::Error> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT user_id, COUNT(*) FROM sessions
             WHERE user_id IN (SELECT value FROM json_each(?1)) AND disconnected_at IS NULL
             GROUP BY user_id",
        )
        .bind(json(&users)?)
        .fetch_all(&mut **self)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn names(
        &mut self,
        users: &[&str],
    ) -> Result<HashMap<String, (String, String)>, sqlx::Error> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT user_id, username, role FROM users
             WHERE user_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(json(&users)?)
        .fetch_all(&mut **self)
        .await?;
        Ok(rows.into_iter().map(|(u, n, r)| (u, (n, r))).collect())
    }

    async fn queued_offline(&mut self, ids: &[i64]) -> Result<HashSet<u64>, sqlx::Error> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT message_id FROM messages
             WHERE message_id IN (SELECT value FROM json_each(?1)) AND live_recipients = 0",
        )
        .bind(json(&ids)?)
        .fetch_all(&mut **self)
        .await?;
        Ok(rows.into_iter().map(|id| id as u64).collect())
    }

    async fn insert_events(&mut self, rows: &[EventRow<'_>]) -> Result<(), sqlx::Error> {
        for chunk in chunked(rows) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO webhook_events (endpoint, type, occurred_at, data) ",
            );
            insert.push_values(chunk, |mut row, e| {
                row.push_bind(e.endpoint)
                    .push_bind(e.kind)
                    .push_bind(e.occurred_at)
                    .push_bind(&e.data);
            });
            insert.build().execute(&mut **self).await?;
        }
        Ok(())
    }
}

/// Records the sender's progress on outbox rows.
pub(in crate::store) async fn mark(
    conn: &mut SqliteConnection,
    mark: &WebhookMark,
) -> Result<(), sqlx::Error> {
    let ids = |ids: &[i64]| json(&ids);
    match mark {
        WebhookMark::Sent { ids: sent, at } => {
            sqlx::query(
                "UPDATE webhook_events SET sent_at = ?2, attempts = attempts + 1, last_error = NULL
                 WHERE event_id IN (SELECT value FROM json_each(?1))",
            )
            .bind(ids(sent)?)
            .bind(at)
            .execute(conn)
            .await?;
        }
        WebhookMark::Retrying { ids: tried, error } => {
            sqlx::query(
                "UPDATE webhook_events SET attempts = attempts + 1, last_error = ?2
                 WHERE event_id IN (SELECT value FROM json_each(?1))",
            )
            .bind(ids(tried)?)
            .bind(error)
            .execute(conn)
            .await?;
        }
        WebhookMark::Failed {
            ids: failed,
            at,
            error,
        } => {
            sqlx::query(
                "UPDATE webhook_events
                 SET attempts = attempts + 1, last_error = ?2, failed_at = ?3
                 WHERE event_id IN (SELECT value FROM json_each(?1))",
            )
            .bind(ids(failed)?)
            .bind(error)
            .bind(at)
            .execute(conn)
            .await?;
        }
        WebhookMark::Resend { ids: again, at } => {
            sqlx::query(
                "UPDATE webhook_events SET failed_at = NULL, resent_at = ?2
                 WHERE event_id IN (SELECT value FROM json_each(?1)) AND failed_at IS NOT NULL",
            )
            .bind(ids(again)?)
            .bind(at)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Marks failed, at `at`, the pending events of endpoints `outbox` no longer names: nobody
/// would send them, and retention keeps only sent and failed rows from growing. Listed as
/// failed, they can be sent again once their endpoint is configured again.
pub(in crate::store) async fn fail_unconfigured(
    tx: &mut Transaction<'_, Sqlite>,
    outbox: &Outbox,
    at: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_events SET failed_at = ?2, last_error = ?3
         WHERE sent_at IS NULL AND failed_at IS NULL
           AND endpoint NOT IN (SELECT value FROM json_each(?1))",
    )
    .bind(json(&outbox.endpoints())?)
    .bind(at)
    .bind(Outbox::UNCONFIGURED)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Closes every session row left open, with reason `server_restart`, at the last moment the
/// previous run was known to be alive (never before the session began), and writes their
/// webhook events in the same transaction. Returns how many sessions.
pub(in crate::store) async fn close_orphaned(
    tx: &mut Transaction<'_, Sqlite>,
    now: &str,
    outbox: &Outbox,
) -> Result<u64, sqlx::Error> {
    let closed: Vec<ClosedRow> = sqlx::query_as(
        "UPDATE sessions
         SET disconnect_reason = 'server_restart',
             disconnected_at = MAX(connected_at, COALESCE(
                 (SELECT last_alive_at FROM server_runs ORDER BY run_id DESC LIMIT 1), ?1))
         WHERE disconnected_at IS NULL
         RETURNING session_id, user_id, transport, disconnected_at",
    )
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let facts = closed_facts(&closed, "server_restart", None);
    record(tx, outbox, &facts, &[]).await?;
    Ok(closed.len() as u64)
}
