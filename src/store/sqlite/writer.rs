//! The writer's `commit_all` on SQLite: the SQL of one gathered batch (`../batch.rs`) in one
//! transaction. The loop, the retry and settle-once are `../writer.rs`'s.
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

use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection, Transaction};

use super::super::batch::{
    DeliveryRow, Facts, InOrder, OpenedSession, Receipts, SeenUser, WebhookMark, WriteOp,
    apply_in_order, delivery_rows, gathered_facts, opened_sessions, records, seen_users,
};
use super::super::model::{JoinedHow, MessageRecord, RESERVED_THROUGH};
use super::super::outbox::{self, Outbox};
use super::chunks::chunked;
use super::counters::raise_counter;
use super::outbox::mark;
use super::{rooms, sessions, users};

/// Runs the SQL of `batch` in one transaction. Reads the writes only: their watchers are
/// for `../writer.rs`'s `settle`, once the outcome is known.
pub(in crate::store) async fn commit_all(
    conn: &mut SqliteConnection,
    batch: &[WriteOp],
    run_id: i64,
    outbox: &Outbox,
) -> Result<Facts, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // Writes of a kind are gathered into a few statements (see the module doc).
    // Gathering reorders them, in phases that keep every dependency: users before their
    // sessions, messages before the receipts that mark them, and everything else in the
    // order it was sent.
    let seen = seen_users(batch);
    upsert_users(&mut tx, &seen).await?;
    let opened = opened_sessions(batch);
    open_sessions(&mut tx, &opened).await?;
    let mut receipts = Receipts::of(batch);
    let records = records(batch);
    insert_messages(&mut tx, &records).await?;
    let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
    insert_deliveries(&mut tx, &delivery_rows(&records, &ids, &mut receipts)).await?;
    let marked = mark_delivered(&mut tx, &mut receipts).await?;
    let mut webhook_events = 0;
    if outbox.is_empty() {
        apply_in_order(&mut tx, batch, run_id, None).await?;
    } else {
        let payloads: Vec<&str> = records.iter().map(|r| r.payload.as_str()).collect();
        let mut facts = gathered_facts(batch, &ids, &payloads, marked);
        apply_in_order(&mut tx, batch, run_id, Some(&mut facts)).await?;
        facts.sort_by_key(|(at_op, _)| *at_op);
        webhook_events = outbox::record(&mut tx, outbox, &facts, &seen).await?;
    }
    tx.commit().await?;
    Ok(Facts {
        delivered: receipts.counts,
        webhook_events,
        reserved: None,
        assigned: Vec::new(),
    })
}

/// Inserts or refreshes the users of a batch, a multi-row upsert per chunk.
async fn upsert_users(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[SeenUser<'_>],
) -> Result<(), sqlx::Error> {
    for chunk in chunked(rows) {
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
    for chunk in chunked(rows) {
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

/// Marks the deliveries of the receipts left over (for messages of earlier batches) in one
/// statement, counting the rows it changed; returns them, `(user, message id)`.
async fn mark_delivered(
    tx: &mut Transaction<'_, Sqlite>,
    receipts: &mut Receipts<'_>,
) -> Result<Vec<(String, u64)>, sqlx::Error> {
    if receipts.pending.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(&str, u64, &str)> = receipts
        .pending
        .iter()
        .map(|(&(user_id, id), &at)| (user_id, id, at))
        .collect();
    let marked: Vec<(String, i64)> = sqlx::query_as(
        "UPDATE deliveries SET delivered_at = marked.at
         FROM (SELECT value ->> 0 AS user_id, value ->> 1 AS message_id, value ->> 2 AS at
               FROM json_each(?1)) AS marked
         WHERE deliveries.delivered_at IS NULL
           AND deliveries.user_id = marked.user_id
           AND deliveries.message_id = marked.message_id
         RETURNING deliveries.user_id, deliveries.message_id",
    )
    .bind(serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
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

/// Inserts the messages of a batch, a multi-row INSERT per chunk.
async fn insert_messages(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[&MessageRecord],
) -> Result<(), sqlx::Error> {
    for chunk in chunked(records) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (message_id, event, target_kind, target, sender_id, body,
                 type, payload, client_msg_id, live_recipients, created_at, sender_session) ",
        );
        insert.push_values(chunk, |mut row, r| {
            row.push_bind(r.id as i64)
                .push_bind(&r.event)
                .push_bind(r.target.kind())
                .push_bind(r.target.key())
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
    for chunk in chunked(rows) {
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

/// The writes not gathered into the multi-row statements, one statement each.
impl InOrder for Transaction<'_, Sqlite> {
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

    /// Raises the counter to the bound asked for: one writer, so nobody else took any.
    async fn reserve_ids(
        &mut self,
        through: u64,
        _block: u64,
    ) -> Result<Option<(u64, u64)>, sqlx::Error> {
        raise_counter(&mut **self, RESERVED_THROUGH, through).await?;
        Ok(None)
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
