//! The webhook outbox on PostgreSQL; see `../sqlite/outbox.rs`. Two things only a shared
//! database needs: the users' rows are locked before their open sessions are counted (see
//! `../outbox.rs`: two nodes closing a user's last sessions at once), and the lease
//! ([`take_lease`]) that lets one node at a time send an endpoint's events. Lists of ids are
//! bound as arrays.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::super::batch::WebhookMark;
use super::super::outbox::{ClosedRow, EventRow, Outbox, OutboxTx, closed_facts, record};

impl OutboxTx for Transaction<'_, Postgres> {
    async fn lock_users(&mut self, users: &[&str]) -> Result<(), sqlx::Error> {
        // Sorted by the caller, and locked in that order: two nodes locking the same users
        // cannot wait on each other in a circle.
        sqlx::query("SELECT 1 FROM users WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE")
            .bind(users)
            .execute(&mut **self)
            .await?;
        Ok(())
    }

    async fn open_sessions(&mut self, users: &[&str]) -> Result<HashMap<String, i64>, sqlx::Error> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT user_id, COUNT(*) FROM sessions
             WHERE user_id = ANY($1) AND disconnected_at IS NULL GROUP BY user_id",
        )
        .bind(users)
        .fetch_all(&mut **self)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn names(
        &mut self,
        users: &[&str],
    ) -> Result<HashMap<String, (String, String)>, sqlx::Error> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT user_id, username, role FROM users WHERE user_id = ANY($1)")
                .bind(users)
                .fetch_all(&mut **self)
                .await?;
        Ok(rows.into_iter().map(|(u, n, r)| (u, (n, r))).collect())
    }

    async fn queued_offline(&mut self, ids: &[i64]) -> Result<HashSet<u64>, sqlx::Error> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT message_id FROM messages WHERE message_id = ANY($1) AND live_recipients = 0",
        )
        .bind(ids)
        .fetch_all(&mut **self)
        .await?;
        Ok(rows.into_iter().map(|id| id as u64).collect())
    }

    async fn insert_events(&mut self, rows: &[EventRow<'_>]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        // The ids come from a counter row this transaction holds until it commits (see
        // migrations/postgres/0008): in commit order across the nodes, without holes. Taken
        // last in the transaction, so it is held for as short a time as can be.
        let through: i64 = sqlx::query_scalar(
            "INSERT INTO counters (name, value) VALUES ('webhook_event_id', $1)
             ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value
             RETURNING value",
        )
        .bind(rows.len() as i64)
        .fetch_one(&mut **self)
        .await?;
        let first = through - rows.len() as i64 + 1;
        sqlx::query(
            "INSERT INTO webhook_events (event_id, endpoint, type, occurred_at, data)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])",
        )
        .bind((first..=through).collect::<Vec<i64>>())
        .bind(rows.iter().map(|r| r.endpoint).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.kind).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.data.as_str()).collect::<Vec<_>>())
        .execute(&mut **self)
        .await?;
        Ok(())
    }
}

/// Records the sender's progress on outbox rows.
pub(in crate::store) async fn mark(
    conn: &mut PgConnection,
    mark: &WebhookMark,
) -> Result<(), sqlx::Error> {
    match mark {
        WebhookMark::Sent { ids, at } => {
            sqlx::query(
                "UPDATE webhook_events SET sent_at = $2, attempts = attempts + 1, last_error = NULL
                 WHERE event_id = ANY($1)",
            )
            .bind(ids)
            .bind(at)
            .execute(conn)
            .await?;
        }
        WebhookMark::Retrying { ids, error } => {
            sqlx::query(
                "UPDATE webhook_events SET attempts = attempts + 1, last_error = $2
                 WHERE event_id = ANY($1)",
            )
            .bind(ids)
            .bind(error)
            .execute(conn)
            .await?;
        }
        WebhookMark::Failed { ids, at, error } => {
            sqlx::query(
                "UPDATE webhook_events
                 SET attempts = attempts + 1, last_error = $2, failed_at = $3
                 WHERE event_id = ANY($1)",
            )
            .bind(ids)
            .bind(error)
            .bind(at)
            .execute(conn)
            .await?;
        }
        WebhookMark::Resend { ids, at } => {
            sqlx::query(
                "UPDATE webhook_events SET failed_at = NULL, resent_at = $2
                 WHERE event_id = ANY($1) AND failed_at IS NOT NULL",
            )
            .bind(ids)
            .bind(at)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Marks failed, at `at`, the pending events of endpoints `outbox` no longer names; see
/// `../sqlite/outbox.rs`.
pub(in crate::store) async fn fail_unconfigured(
    tx: &mut Transaction<'_, Postgres>,
    outbox: &Outbox,
    at: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE webhook_events SET failed_at = $2, last_error = $3
         WHERE sent_at IS NULL AND failed_at IS NULL AND NOT (endpoint = ANY($1))",
    )
    .bind(outbox.endpoints())
    .bind(at)
    .bind(Outbox::UNCONFIGURED)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Closes `node_id`'s open sessions with `reason` (`server_restart` for this node after a
/// crash, `node_lost` for another one), at `at` or, for `server_restart`, the last moment
/// the node's previous run was known alive, and writes their webhook events in the same
/// transaction. `lost`: the node named in the events, when it is not this one. Returns how
/// many sessions.
pub(in crate::store) async fn close_node(
    tx: &mut Transaction<'_, Postgres>,
    node_id: &str,
    reason: &'static str,
    at: &str,
    lost: Option<&str>,
    outbox: &Outbox,
) -> Result<u64, sqlx::Error> {
    let closed: Vec<ClosedRow> = sqlx::query_as(
        "UPDATE sessions
         SET disconnect_reason = $3,
             disconnected_at = GREATEST(connected_at, CASE WHEN $3 = 'server_restart'
                 THEN COALESCE((SELECT last_alive_at FROM server_runs WHERE node_id = $1
                                ORDER BY run_id DESC LIMIT 1), $2)
                 ELSE $2 END)
         WHERE disconnected_at IS NULL AND node_id = $1
         RETURNING session_id, user_id, transport, disconnected_at",
    )
    .bind(node_id)
    .bind(at)
    .bind(reason)
    .fetch_all(&mut **tx)
    .await?;
    let facts = closed_facts(&closed, reason, lost);
    record(tx, outbox, &facts, &[]).await?;
    Ok(closed.len() as u64)
}

/// Takes or renews the lease on `endpoint`'s events for `holder`, for `seconds` by the
/// database's clock; false while another holder's lease runs.
pub(in crate::store) async fn take_lease(
    pool: &PgPool,
    endpoint: &str,
    holder: &str,
    seconds: f64,
) -> Result<bool, sqlx::Error> {
    let taken: Option<String> = sqlx::query_scalar(
        "INSERT INTO webhook_leases (endpoint, holder, expires_at)
         VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
         ON CONFLICT (endpoint) DO UPDATE
         SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE webhook_leases.holder = excluded.holder
            OR webhook_leases.expires_at < clock_timestamp()
         RETURNING holder",
    )
    .bind(endpoint)
    .bind(holder)
    .bind(seconds)
    .fetch_optional(pool)
    .await?;
    Ok(taken.is_some())
}

/// Gives up `holder`'s lease on `endpoint` (a node stopping cleanly hands it on at once).
pub(in crate::store) async fn release_lease(
    pool: &PgPool,
    endpoint: &str,
    holder: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM webhook_leases WHERE endpoint = $1 AND holder = $2")
        .bind(endpoint)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(())
}
