//! `sync { since }` and the catch-up every new connection gets.
//!
//! `sync` replays, oldest first and as the original events, every stored message the caller
//! may see with an id above `since` (public messages, private ones to or from it, messages of
//! the rooms it is a member of now, notifications to it or its role), at most
//! [`SYNC_LIMIT`] per call, then `sync-complete { lastMessageId, count, more, complete }`.
//! The ack carries the same four fields.
//!
//! On connection ([`replay_on_connect`]) the user's offline queue is delivered right after
//! `connected`, and with `?lastMessageId=` (or Socket.IO `auth.lastMessageId`) everything
//! missed since then too, merged in id order and ended by `sync-complete`. Live events that
//! arrive meanwhile are held by the hub and follow the replay, so order is kept.

use super::{Ack, Caller, CommandError, Outcome};
use crate::auth::Identity;
use crate::hub::Event;
use crate::metrics::Delivery;
use crate::protocol::wire::SyncComplete;
use crate::store::{Reader, ReplayPage, StoredMessage};

/// Most messages replayed per `sync` call (and per page of a connection's catch-up).
pub const SYNC_LIMIT: u32 = 1000;

pub(super) async fn apply(caller: &Caller, since: u64) -> Outcome {
    let store = &caller.store;
    // Below the horizon every message is settled: the page misses nothing sent before.
    let until = store.read_horizon().await;
    let identity = caller.identity();
    let page = store
        .replay_page(ReplayPage {
            reader: reader(&identity),
            since: Some(since),
            undelivered: false,
            cursor: since,
            until,
            limit: SYNC_LIMIT,
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "sync could not read the message log");
            CommandError::StoreUnavailable
        })?;
    let Some(count) = send_all(caller, &page).await else {
        return Err(CommandError::Hub(crate::hub::HubError::SessionGone));
    };
    let complete = SyncComplete {
        last_message_id: page.last().map_or(since, |m| m.id.max(since)),
        count,
        more: page.len() == SYNC_LIMIT as usize,
        complete: store.pruned_through() <= since,
    };
    caller.reply(Event::new("sync-complete", &complete));
    Ok(Ack::Synced(complete))
}

/// A new connection's catch-up: its offline queue, plus what it missed since
/// `last_message_id` when given; then the hub releases the live events it held.
pub async fn replay_on_connect(caller: &Caller, last_message_id: Option<u64>, until: u64) {
    let store = &caller.store;
    // Nothing queued and no recovery asked for: the common case costs no database round trip.
    // (The count includes messages just sent to this user, whose rows may not be committed
    // yet: those take the full path below.) In a cluster the count knows only what this node
    // queued, so the database is asked.
    let identity = caller.identity();
    if last_message_id.is_none()
        && !store.is_sequenced()
        && store.queued_for(&identity.user_id) == 0
    {
        caller.hub.end_replay(caller.session);
        return;
    }
    // After every write, not just the messages up to `until`: delivery receipts of the
    // user's previous connection must be committed too, or what it already took would be
    // sent again.
    let history = store.after_writes().await;
    let cap = SYNC_LIMIT as usize + caller.limits.max_queued_per_user as usize;
    let (mut cursor, mut count, mut more, mut failed) = (0, 0, false, false);
    loop {
        let page = match history
            .replay_page(ReplayPage {
                reader: reader(&identity),
                since: last_message_id,
                undelivered: true,
                cursor,
                until,
                limit: SYNC_LIMIT,
            })
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "catch-up could not read the message log");
                failed = true;
                break;
            }
        };
        let Some(sent) = send_all(caller, &page).await else {
            return;
        };
        count += sent;
        if let Some(last) = page.last() {
            cursor = last.id;
        }
        if page.len() < SYNC_LIMIT as usize {
            break;
        }
        if count >= cap {
            more = true;
            break;
        }
    }
    if failed {
        let notice = super::error_event(&CommandError::CatchUpFailed);
        caller.outbound.send_wait(notice).await;
    }
    if let Some(since) = last_message_id {
        let complete = SyncComplete {
            last_message_id: cursor.max(since),
            count,
            more,
            complete: store.pruned_through() <= since,
        };
        // Straight to the connection: it ends the replay, before the held live events.
        caller
            .outbound
            .send_wait(Event::new("sync-complete", &complete))
            .await;
    }
    caller.hub.end_replay(caller.session);
}

/// Who reads: the role is the one of the connection's current token (a refresh can change it).
fn reader(identity: &Identity) -> Reader<'_> {
    Reader {
        user_id: &identity.user_id,
        role: &identity.role,
        unreadable: &[],
    }
}

/// Queues stored messages for the caller, waiting for room rather than overflowing its
/// queue, and counts them as replayed (once per page). `None` if the connection closed
/// meanwhile.
async fn send_all(caller: &Caller, page: &[StoredMessage]) -> Option<usize> {
    let mut sent = 0;
    let mut closed = false;
    for m in page {
        let delivery = m.to_reader.then_some(m.id);
        match Event::stored(m.event.clone(), m.payload.clone(), delivery) {
            Ok(event) => {
                if !caller.outbound.send_wait(event).await {
                    closed = true;
                    break;
                }
                sent += 1;
            }
            Err(e) => tracing::error!(id = m.id, error = %e, "a stored payload is not valid JSON"),
        }
    }
    caller.metrics.delivered(Delivery::Replayed, sent);
    (!closed).then_some(page.len())
}
