//! What the writer gathers from a batch of writes, shared by every backend: the write
//! operations themselves ([`WriteOp`], built only by the `Store` methods that name an
//! intent), the rows a batch holds gathered by kind (users deduplicated, sessions, messages,
//! delivery rows with their receipts folded in), and what a committed batch taught
//! ([`Facts`]). A backend's `writer.rs` turns these into statements (`commit_all`); the loop
//! and settle-once are `writer.rs`'s.
//!
//! Gathering reorders the writes, in phases that keep every dependency: users before their
//! sessions, messages before the receipts that mark them, and everything else in the order
//! it was sent (each backend's `commit_all` runs them in that order).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::{oneshot, watch};

use super::model::{JoinedHow, MessageRecord};

/// One durable write. Built only by the [`Store`](super::Store) methods that name an intent
/// (`session_opened`, `log_message`, ...): callers say what happened, this says which rows
/// change.
#[derive(Debug)]
pub(super) enum WriteOp {
    /// A user connected: insert it, or refresh its name, role and `last_seen_at`.
    SeenUser {
        user_id: String,
        /// Display name.
        username: String,
        role: String,
        /// When.
        at: String,
    },
    /// A connection opened.
    OpenSession {
        /// Session id (allocated by the store).
        session_id: u64,
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
        session_id: u64,
        /// When.
        at: String,
        /// Why (see the `sessions.disconnect_reason` column).
        reason: &'static str,
    },
    /// A message to log; `committed` hears whether it became durable.
    Message {
        record: Box<MessageRecord>,
        /// Told `Some(true)` once committed, `Some(false)` if it could not be stored.
        committed: Option<watch::Sender<Option<bool>>>,
        /// For a message sequenced at commit: where its id is written before `committed`
        /// is told.
        assigned: Option<Arc<AtomicU64>>,
    },
    /// Connections of `user_id` took these messages.
    MarkDelivered {
        /// The recipient.
        user_id: String,
        ids: Vec<u64>,
        /// When.
        at: String,
    },
    /// A user joined a room.
    JoinRoom {
        room: String,
        user_id: String,
        /// When.
        at: String,
        /// By whom, and how much history it opens.
        how: JoinedHow,
    },
    /// A user's membership of a room ended.
    LeaveRoom {
        room: String,
        user_id: String,
        /// `left`, `removed` or `not_granted` (the webhook's `reason`).
        reason: &'static str,
        /// When.
        at: String,
    },
    /// The webhook sender's progress on outbox rows.
    Webhooks(WebhookMark),
    /// An operator revoked a user's tokens; `committed` hears whether it became durable.
    RevokeTokens {
        user_id: String,
        /// The first `iat` still accepted.
        not_before: u64,
        /// When.
        at: String,
        /// Told `Some(true)` once committed, `Some(false)` if it could not be stored.
        committed: watch::Sender<Option<bool>>,
    },
    /// Reserve message ids: up to `through` (SQLite, one writer), or the next `block` ids
    /// of the shared counter, whatever other nodes took (PostgreSQL).
    ReserveIds {
        /// New reservation bound.
        through: u64,
        /// Ids per reservation.
        block: u64,
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
    /// Tests only: a statement for the writer's own connection (a `PRAGMA` that only holds
    /// per connection), run in the batch that takes it; `done` is answered when settled.
    #[cfg(test)]
    OnWriterConnection {
        sql: String,
        done: oneshot::Sender<()>,
    },
}

/// Something a transaction did that webhooks may report, in the order it did it.
#[derive(Debug)]
pub(super) enum Fact<'a> {
    Opened {
        session_id: u64,
        user_id: &'a str,
        transport: &'a str,
        at: &'a str,
    },
    Closed {
        session_id: u64,
        user_id: String,
        transport: String,
        /// The node whose session it was: `None` for this one.
        node: Option<&'a str>,
        reason: &'a str,
        at: String,
    },
    Joined {
        room: &'a str,
        user_id: &'a str,
        by_server: bool,
        at: &'a str,
    },
    Left {
        room: &'a str,
        user_id: &'a str,
        reason: &'a str,
        at: &'a str,
    },
    Stored {
        record: &'a MessageRecord,
        /// The message's id and payload as committed (assigned at commit in a cluster).
        id: u64,
        payload: &'a str,
    },
    /// A receipt marked a queued delivery (the message was stored while its recipient had
    /// no live connection; [`record`] keeps only those).
    Delivered {
        user_id: String,
        id: u64,
        at: &'a str,
    },
}

/// What the webhook sender learnt about some outbox rows (`outbox.rs`).
#[derive(Debug)]
pub(super) enum WebhookMark {
    /// The endpoint acknowledged them.
    Sent { ids: Vec<i64>, at: String },
    /// A request carrying them failed; they are tried again.
    Retrying { ids: Vec<i64>, error: String },
    /// A request carrying them failed after the give-up time: they are failed.
    Failed {
        ids: Vec<i64>,
        at: String,
        error: String,
    },
    /// An operator asked at `at` for these failed rows to be sent again.
    Resend { ids: Vec<i64>, at: String },
}

/// What a committed transaction taught that its settlement needs.
#[derive(Default)]
pub(super) struct Facts {
    /// Per user, how many deliveries the receipts marked (the offline queue lengths follow).
    pub(super) delivered: HashMap<String, u64>,
    /// Outbox rows written (the webhook sender is woken when there are any).
    pub(super) webhook_events: usize,
    /// The ids `(first, through)` a reservation took from a shared counter (PostgreSQL);
    /// `None` when the batch's reservation is the bound it asked for (SQLite).
    pub(super) reserved: Option<(u64, u64)>,
    /// Sequenced at commit (`sequence.rs`): the id and the payload with it spliced in of
    /// each of the batch's messages, in batch order.
    pub(super) assigned: Vec<(u64, String)>,
}

/// A user seen in a batch, once however many times it connected: first and last time,
/// name and role from the last connection (what the upserts one after the other would
/// leave; PostgreSQL refuses one upsert that touches a row twice).
pub(super) struct SeenUser<'a> {
    pub(super) user_id: &'a str,
    pub(super) username: &'a str,
    pub(super) role: &'a str,
    pub(super) first_at: &'a str,
    pub(super) last_at: &'a str,
}

/// The users a batch saw, in the order first seen.
pub(super) fn seen_users(batch: &[WriteOp]) -> Vec<SeenUser<'_>> {
    let mut rows: Vec<SeenUser<'_>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for op in batch {
        if let WriteOp::SeenUser {
            user_id,
            username,
            role,
            at,
        } = op
        {
            match index.get(user_id.as_str()) {
                Some(&i) => {
                    let row = &mut rows[i];
                    row.username = username;
                    row.role = role;
                    row.last_at = at;
                }
                None => {
                    index.insert(user_id, rows.len());
                    rows.push(SeenUser {
                        user_id,
                        username,
                        role,
                        first_at: at,
                        last_at: at,
                    });
                }
            }
        }
    }
    rows
}

/// A session a batch opened.
pub(super) struct OpenedSession<'a> {
    pub(super) session_id: i64,
    pub(super) user_id: &'a str,
    pub(super) transport: &'static str,
    pub(super) remote_addr: Option<&'a str>,
    pub(super) user_agent: Option<&'a str>,
    pub(super) at: &'a str,
}

/// The sessions a batch opened, in order.
pub(super) fn opened_sessions(batch: &[WriteOp]) -> Vec<OpenedSession<'_>> {
    batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::OpenSession {
                session_id,
                user_id,
                transport,
                remote_addr,
                user_agent,
                at,
            } => Some(OpenedSession {
                session_id: *session_id as i64,
                user_id,
                transport,
                remote_addr: remote_addr.as_deref(),
                user_agent: user_agent.as_deref(),
                at,
            }),
            _ => None,
        })
        .collect()
}

/// The messages a batch logs, in id order.
pub(super) fn records(batch: &[WriteOp]) -> Vec<&MessageRecord> {
    batch
        .iter()
        .filter_map(|op| match op {
            WriteOp::Message { record, .. } => Some(&**record),
            _ => None,
        })
        .collect()
}

/// What a batch did that webhooks may report, each with the position of the write that did it
/// in the batch, so that the events follow the order the writes were sent in, whatever
/// order the phases ran them in.
pub(super) type Noted<'a> = Vec<(usize, Fact<'a>)>;

/// The facts of a batch's gathered phase, for the outbox: the sessions it opened, the
/// messages it stored (`ids` and `payloads`: each record's as committed, in batch order), and
/// the deliveries its receipts marked for messages of earlier batches (`marked`).
pub(super) fn gathered_facts<'a>(
    batch: &'a [WriteOp],
    ids: &[u64],
    payloads: &[&'a str],
    marked: Vec<(String, u64)>,
) -> Noted<'a> {
    let mut marked: std::collections::HashSet<(String, u64)> = marked.into_iter().collect();
    let mut stored = ids.iter().zip(payloads);
    let mut facts = Vec::new();
    for (at_op, op) in batch.iter().enumerate() {
        match op {
            WriteOp::OpenSession {
                session_id,
                user_id,
                transport,
                at,
                ..
            } => facts.push((
                at_op,
                Fact::Opened {
                    session_id: *session_id,
                    user_id,
                    transport,
                    at,
                },
            )),
            WriteOp::Message { record, .. } => {
                if let Some((&id, &payload)) = stored.next() {
                    facts.push((
                        at_op,
                        Fact::Stored {
                            record,
                            id,
                            payload,
                        },
                    ));
                }
            }
            WriteOp::MarkDelivered { user_id, ids, at } if !marked.is_empty() => {
                for &id in ids {
                    if let Some((user_id, id)) = marked.take(&(user_id.clone(), id)) {
                        facts.push((at_op, Fact::Delivered { user_id, id, at }));
                    }
                }
            }
            _ => {}
        }
    }
    facts
}

/// A delivery row: recipient, message id, queued at, delivered at (when its receipt is in
/// the same batch).
pub(super) type DeliveryRow<'a> = (&'a str, u64, &'a str, Option<&'a str>);

/// The delivery rows of the batch's addressed messages (`ids`: each record's id, assigned or
/// its own); a row whose receipt is in the batch takes it (and goes in already delivered).
pub(super) fn delivery_rows<'a>(
    records: &[&'a MessageRecord],
    ids: &[u64],
    receipts: &mut Receipts<'a>,
) -> Vec<DeliveryRow<'a>> {
    records
        .iter()
        .zip(ids)
        .filter_map(|(r, &id)| {
            let user_id = r.target.user()?;
            Some((
                user_id,
                id,
                r.created_at.as_str(),
                receipts.take(user_id, id),
            ))
        })
        .collect()
}

/// The receipts of a batch, and per user how many deliveries they marked so far (the
/// offline queue lengths follow the counts once the batch commits).
pub(super) struct Receipts<'a> {
    /// `(user, message id)` → when, the first receipt of each pair.
    pub(super) pending: HashMap<(&'a str, u64), &'a str>,
    pub(super) counts: HashMap<String, u64>,
}

impl<'a> Receipts<'a> {
    pub(super) fn of(batch: &'a [WriteOp]) -> Self {
        let mut pending = HashMap::new();
        for op in batch {
            if let WriteOp::MarkDelivered { user_id, ids, at } = op {
                for id in ids {
                    pending
                        .entry((user_id.as_str(), *id))
                        .or_insert(at.as_str());
                }
            }
        }
        Self {
            pending,
            counts: HashMap::new(),
        }
    }

    /// Takes the receipt of `user_id` for message `id`, if the batch has one: when it was
    /// delivered. Counted as a delivery, committed with the batch.
    fn take(&mut self, user_id: &'a str, id: u64) -> Option<&'a str> {
        let at = self.pending.remove(&(user_id, id))?;
        *self.counts.entry(user_id.to_owned()).or_default() += 1;
        Some(at)
    }
}

/// The statements of the writes a batch runs one at a time, in the order they were sent
/// (everything [`apply_in_order`] does not leave to the gathered statements). Each backend's
/// writer implements it on its transaction, so which write runs which statement is decided
/// once, in [`apply_in_order`], and a new kind of write is one more method every backend
/// must answer.
pub(super) trait InOrder {
    /// Closes a session row with its reason; a row already closed keeps its first ending.
    /// Returns the session's user and transport, when this closed it.
    async fn close_session(
        &mut self,
        session_id: u64,
        at: &str,
        reason: &str,
    ) -> Result<Option<(String, String)>, sqlx::Error>;
    /// Makes `user_id` a member of `room` (see [`Store::room_joined`](super::Store::room_joined)).
    /// Returns whether the membership is new.
    async fn join_room(
        &mut self,
        room: &str,
        user_id: &str,
        at: &str,
        how: &JoinedHow,
    ) -> Result<bool, sqlx::Error>;
    /// Ends the membership of `user_id` in `room`; returns whether there was one.
    async fn leave_room(&mut self, room: &str, user_id: &str) -> Result<bool, sqlx::Error>;
    /// Records the webhook sender's progress.
    async fn mark_webhooks(&mut self, mark: &WebhookMark) -> Result<(), sqlx::Error>;
    /// Refuses `user_id`'s tokens issued before `not_before`.
    async fn revoke_tokens(
        &mut self,
        user_id: &str,
        not_before: u64,
        at: &str,
    ) -> Result<(), sqlx::Error>;
    /// Reserves message ids: up to `through` (one writer), or the next `block` of a shared
    /// counter, whatever other nodes took, returned as `(first, through)`.
    async fn reserve_ids(
        &mut self,
        through: u64,
        block: u64,
    ) -> Result<Option<(u64, u64)>, sqlx::Error>;
    /// The run is alive at `at`.
    async fn run_alive(&mut self, run_id: i64, at: &str) -> Result<(), sqlx::Error>;
    /// The run ended cleanly at `at`.
    async fn run_stopped(&mut self, run_id: i64, at: &str) -> Result<(), sqlx::Error>;
    /// Tests only: a statement of the test's own.
    #[cfg(test)]
    async fn execute(&mut self, sql: &str) -> Result<(), sqlx::Error>;
}

/// Runs the writes of `batch` that are not gathered by kind, in the order they were sent, in
/// the caller's transaction; returns the ids a reservation took from a shared counter, if
/// any (the last, should there be several). With `facts`, what the writes did that webhooks
/// report is appended to it.
pub(super) async fn apply_in_order<'a>(
    tx: &mut impl InOrder,
    batch: &'a [WriteOp],
    run_id: i64,
    mut facts: Option<&mut Noted<'a>>,
) -> Result<Option<(u64, u64)>, sqlx::Error> {
    let mut reserved = None;
    for (at_op, op) in batch.iter().enumerate() {
        match op {
            // Gathered before the others run.
            WriteOp::SeenUser { .. }
            | WriteOp::OpenSession { .. }
            | WriteOp::Message { .. }
            | WriteOp::MarkDelivered { .. } => {}
            WriteOp::CloseSession {
                session_id,
                at,
                reason,
            } => {
                let closed = tx.close_session(*session_id, at, reason).await?;
                if let (Some(facts), Some((user_id, transport))) = (facts.as_deref_mut(), closed) {
                    facts.push((
                        at_op,
                        Fact::Closed {
                            session_id: *session_id,
                            user_id,
                            transport,
                            node: None,
                            reason,
                            at: at.clone(),
                        },
                    ));
                }
            }
            WriteOp::JoinRoom {
                room,
                user_id,
                at,
                how,
            } => {
                let new = tx.join_room(room, user_id, at, how).await?;
                if let Some(facts) = facts.as_deref_mut()
                    && new
                {
                    facts.push((
                        at_op,
                        Fact::Joined {
                            room,
                            user_id,
                            by_server: how.by_server,
                            at,
                        },
                    ));
                }
            }
            WriteOp::LeaveRoom {
                room,
                user_id,
                reason,
                at,
            } => {
                let left = tx.leave_room(room, user_id).await?;
                if let Some(facts) = facts.as_deref_mut()
                    && left
                {
                    facts.push((
                        at_op,
                        Fact::Left {
                            room,
                            user_id,
                            reason,
                            at,
                        },
                    ));
                }
            }
            WriteOp::Webhooks(mark) => tx.mark_webhooks(mark).await?,
            WriteOp::RevokeTokens {
                user_id,
                not_before,
                at,
                ..
            } => tx.revoke_tokens(user_id, *not_before, at).await?,
            WriteOp::ReserveIds { through, block } => {
                if let Some(ids) = tx.reserve_ids(*through, *block).await? {
                    reserved = Some(ids);
                }
            }
            WriteOp::Alive { at } => tx.run_alive(run_id, at).await?,
            WriteOp::Stop { at } => tx.run_stopped(run_id, at).await?,
            WriteOp::Flush(_) => {}
            #[cfg(test)]
            WriteOp::OnWriterConnection { sql, .. } => tx.execute(sql).await?,
        }
    }
    Ok(reserved)
}
