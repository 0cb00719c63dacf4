//! The writer's `commit_all` on PostgreSQL: the SQL of one batch in one transaction. The
//! loop, the gathering of writes by kind and settle-once are `../writer.rs`'s, shared with
//! SQLite; this only runs statements.
//!
//! Rows of a kind go in as one statement over arrays (`INSERT ... SELECT * FROM UNNEST($1,
//! $2, ...)`): one statement text whatever the number of rows, so it is prepared once per
//! connection, and a round trip per table instead of per row. Multi-row `VALUES` built with
//! `QueryBuilder` were measured against it (`docs/architecture.md`, "Store backends").

use sqlx::{Connection, PgConnection, Postgres, Transaction};

use super::super::batch::{
    DeliveryRow, Facts, InOrder, OpenedSession, Receipts, SeenUser, WebhookMark, WriteOp,
    apply_in_order, delivery_rows, gathered_facts, opened_sessions, records, seen_users,
};
use super::super::model::{JoinedHow, MessageRecord};
use super::super::outbox::{self, Outbox};
use super::super::sequence::splice_id;
use super::outbox::mark;
use super::{counters, rooms, sessions, users};

/// Runs the SQL of `batch` in one transaction (the phases of the SQLite `commit_all`: users
/// before their sessions, messages before the receipts that mark them, then everything else
/// in the order it was sent).
pub(in crate::store) async fn commit_all(
    conn: &mut PgConnection,
    batch: &[WriteOp],
    run_id: i64,
    outbox: &Outbox,
) -> Result<Facts, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let seen = seen_users(batch);
    upsert_users(&mut tx, &seen).await?;
    let opened = opened_sessions(batch);
    open_sessions(&mut tx, &opened, run_id).await?;
    let mut receipts = Receipts::of(batch);
    let records = records(batch);
    let assigned = assign_ids(&mut tx, &records).await?;
    let mut next_assigned = assigned.iter();
    let (ids, payloads): (Vec<u64>, Vec<&str>) = records
        .iter()
        .map(|r| match r.id {
            0 => next_assigned
                .next()
                .map_or((0, r.payload.as_str()), |(id, p)| (*id, p.as_str())),
            id => (id, r.payload.as_str()),
        })
        .unzip();
    insert_messages(&mut tx, &records, &ids, &payloads).await?;
    insert_deliveries(&mut tx, &delivery_rows(&records, &ids, &mut receipts)).await?;
    let marked = mark_delivered(&mut tx, &mut receipts).await?;
    let mut webhook_events = 0;
    let reserved = if outbox.is_empty() {
        apply_in_order(&mut tx, batch, run_id, None).await?
    } else {
        let mut facts = gathered_facts(batch, &ids, &payloads, marked);
        let reserved = apply_in_order(&mut tx, batch, run_id, Some(&mut facts)).await?;
        facts.sort_by_key(|(at_op, _)| *at_op);
        webhook_events = outbox::record(&mut tx, outbox, &facts, &seen).await?;
        reserved
    };
    tx.commit().await?;
    Ok(Facts {
        delivered: receipts.counts,
        webhook_events,
        reserved,
        assigned,
    })
}

/// Ids for the batch's messages sequenced at commit (id 0), taken from the shared counter in
/// this transaction, and their payloads with the id spliced in. The counter's row stays
/// locked until the commit: another node's batch takes its ids after this one commits, which
/// is what makes ids commit-ordered and without holes (`../sequence.rs`).
async fn assign_ids(
    tx: &mut Transaction<'_, Postgres>,
    records: &[&MessageRecord],
) -> Result<Vec<(u64, String)>, sqlx::Error> {
    let unassigned = records.iter().filter(|r| r.id == 0).count() as u64;
    if unassigned == 0 {
        return Ok(Vec::new());
    }
    let (first, _) = counters::reserve_block(&mut **tx, 0, unassigned).await?;
    Ok(records
        .iter()
        .filter(|r| r.id == 0)
        .zip(first..)
        .map(|(r, id)| (id, splice_id(&r.payload, id)))
        .collect())
}

async fn upsert_users(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[SeenUser<'_>],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: for<'r> fn(&'r SeenUser<'r>) -> &'r str| {
        rows.iter().map(|u| f(u)).collect::<Vec<&str>>()
    };
    sqlx::query(
        "INSERT INTO users (user_id, username, role, first_seen_at, last_seen_at)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT (user_id) DO UPDATE SET username = excluded.username,
             role = excluded.role, last_seen_at = excluded.last_seen_at",
    )
    .bind(column(|u| u.user_id))
    .bind(column(|u| u.username))
    .bind(column(|u| u.role))
    .bind(column(|u| u.first_at))
    .bind(column(|u| u.last_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn open_sessions(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[OpenedSession<'_>],
    run_id: i64,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    // A session belongs to the node of the run that opened it (`NODE_ID`, recorded once in
    // `server_runs`), which is what crash recovery closes by.
    sqlx::query(
        "INSERT INTO sessions
             (session_id, user_id, transport, remote_addr, user_agent, connected_at, node_id)
         SELECT s.*, (SELECT node_id FROM server_runs WHERE run_id = $7) FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[],
                                    $5::text[], $6::text[]) AS s",
    )
    .bind(rows.iter().map(|s| s.session_id).collect::<Vec<i64>>())
    .bind(rows.iter().map(|s| s.user_id).collect::<Vec<&str>>())
    .bind(rows.iter().map(|s| s.transport).collect::<Vec<&str>>())
    .bind(
        rows.iter()
            .map(|s| s.remote_addr)
            .collect::<Vec<Option<&str>>>(),
    )
    .bind(
        rows.iter()
            .map(|s| s.user_agent)
            .collect::<Vec<Option<&str>>>(),
    )
    .bind(rows.iter().map(|s| s.at).collect::<Vec<&str>>())
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `ids` and `payloads`: each record's, as assigned at commit or its own.
async fn insert_messages(
    tx: &mut Transaction<'_, Postgres>,
    records: &[&MessageRecord],
    ids: &[u64],
    payloads: &[&str],
) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let text = |f: fn(&MessageRecord) -> &str| records.iter().map(|r| f(r)).collect::<Vec<_>>();
    let maybe =
        |f: fn(&MessageRecord) -> Option<&str>| records.iter().map(|r| f(r)).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO messages (message_id, event, target_kind, target, sender_id, body,
             type, payload, client_msg_id, live_recipients, created_at, sender_session)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
             $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[],
             $12::bigint[])",
    )
    .bind(ids.iter().map(|&id| id as i64).collect::<Vec<i64>>())
    .bind(text(|r| &r.event))
    .bind(text(|r| r.target.kind()))
    .bind(maybe(|r| r.target.key()))
    .bind(text(|r| &r.sender_id))
    .bind(text(|r| &r.body))
    .bind(maybe(|r| r.kind.as_deref()))
    .bind(payloads)
    .bind(maybe(|r| r.client_msg_id.as_deref()))
    .bind(
        records
            .iter()
            .map(|r| r.live_recipients.min(i64::MAX as u64) as i64)
            .collect::<Vec<i64>>(),
    )
    .bind(text(|r| &r.created_at))
    .bind(
        records
            .iter()
            .map(|r| r.sender_session.map(|s| s as i64))
            .collect::<Vec<Option<i64>>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// After the messages: the foreign key wants that order.
async fn insert_deliveries(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[DeliveryRow<'_>],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO deliveries (user_id, message_id, queued_at, delivered_at)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[])",
    )
    .bind(rows.iter().map(|r| r.0).collect::<Vec<&str>>())
    .bind(rows.iter().map(|r| r.1 as i64).collect::<Vec<i64>>())
    .bind(rows.iter().map(|r| r.2).collect::<Vec<&str>>())
    .bind(rows.iter().map(|r| r.3).collect::<Vec<Option<&str>>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks the deliveries of the receipts left over (for messages of earlier batches) in one
/// statement, counting the rows it changed; returns them, `(user, message id)`.
async fn mark_delivered(
    tx: &mut Transaction<'_, Postgres>,
    receipts: &mut Receipts<'_>,
) -> Result<Vec<(String, u64)>, sqlx::Error> {
    if receipts.pending.is_empty() {
        return Ok(Vec::new());
    }
    let (mut users, mut ids, mut ats) = (Vec::new(), Vec::new(), Vec::new());
    for (&(user_id, id), &at) in &receipts.pending {
        users.push(user_id);
        ids.push(id as i64);
        ats.push(at);
    }
    let marked: Vec<(String, i64)> = sqlx::query_as(
        "UPDATE deliveries SET delivered_at = marked.at
         FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS marked (user_id, message_id, at)
         WHERE deliveries.delivered_at IS NULL
           AND deliveries.user_id = marked.user_id
           AND deliveries.message_id = marked.message_id
         RETURNING deliveries.user_id, deliveries.message_id",
    )
    .bind(users)
    .bind(ids)
    .bind(ats)
    .fetch_all(&mut **tx)
    .await?;
    for (user, _) in &marked {
        *receipts.counts.entry(user.clone()).or_default() += 1;
    }
    Ok(marked
        .into_iter()
        .map(|(user, id)| (user, id as u64))
        .collect())
}

/// The writes not gathered into the array statements, one statement each.
impl InOrder for Transaction<'_, Postgres> {
    async fn close_session(
        &mut self,
        session_id: u64,
        at: &str,
        reason: &str,
    ) -> Result<Option<(String, String)>, sqlx::Error> {
        sessions::close(self, session_id, at, reason).await
    }

    async fn join_room(
        &mut self,
        room: &str,
        user_id: &str,
        at: &str,
        how: &JoinedHow,
    ) -> Result<bool, sqlx::Error> {
        rooms::join(self, room, user_id, at, how).await
    }

    async fn leave_room(&mut self, room: &str, user_id: &str) -> Result<bool, sqlx::Error> {
        rooms::leave(self, room, user_id).await
    }

    async fn mark_webhooks(&mut self, webhooks: &WebhookMark) -> Result<(), sqlx::Error> {
        mark(self, webhooks).await
    }

    async fn revoke_tokens(
        &mut self,
        user_id: &str,
        not_before: u64,
        at: &str,
    ) -> Result<(), sqlx::Error> {
        users::revoke_tokens(self, user_id, not_before, at).await
    }

    /// The next block of the shared counter, not the bound asked for: other nodes may have
    /// reserved past it.
    async fn reserve_ids(
        &mut self,
        _through: u64,
        block: u64,
    ) -> Result<Option<(u64, u64)>, sqlx::Error> {
        counters::reserve_block(&mut **self, 0, block)
            .await
            .map(Some)
    }

    async fn run_alive(&mut self, run_id: i64, at: &str) -> Result<(), sqlx::Error> {
        sessions::run_alive(self, run_id, at).await
    }

    async fn run_stopped(&mut self, run_id: i64, at: &str) -> Result<(), sqlx::Error> {
        sessions::run_stopped(self, run_id, at).await
    }

    #[cfg(test)]
    async fn execute(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::query(sql).execute(&mut **self).await.map(|_| ())
    }
}
