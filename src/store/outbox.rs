//! The webhook outbox as the writer fills it (`docs/protocol.md` section 15): which events
//! a transaction's facts make, for which endpoints, with what data. The rows go in in the same
//! transaction as the facts, so a commit reports what it did and a crash loses nothing.
//!
//! Shared by every backend: the subscriptions ([`Outbox`]) and the walk ([`record`]) that
//! turns the facts a transaction recorded (`batch.rs`'s `Fact`, gathered by the writer's
//! phases, crash recovery and node loss) into rows. What is backend-specific (locking users, counting
//! open sessions, inserting) is [`OutboxTx`], implemented by each backend's `outbox.rs`.
//!
//! **Online and offline** are cluster-wide: after its own writes, a transaction counts the
//! user's open sessions in the shared table and works back to how many were open before it
//! (opened and closed in it cancel out). On PostgreSQL it first locks the users' rows, so that
//! two nodes closing a user's last two sessions at once see each other: the second waits for
//! the first, and exactly one reports `user.offline`.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::batch::{Fact, Noted, SeenUser};
use super::model::Target;
use crate::auth::grants::pattern_matches;
use crate::config::{Subscription, WebhookEndpoint, WebhookEvent};

/// Which endpoints get which events; empty when no endpoint is configured (then nothing is
/// written, not even looked up).
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    subscribers: Vec<(String, Subscription)>,
    /// `NODE_ID`: the node named in session events.
    node: String,
    /// Whether any endpoint takes each type, by [`WebhookEvent::ALL`]'s order.
    wanted: [bool; WebhookEvent::ALL.len()],
}

impl Outbox {
    /// The outbox of these endpoints, on node `node`.
    pub fn new(node: &str, endpoints: &[WebhookEndpoint]) -> Self {
        let mut wanted = [false; WebhookEvent::ALL.len()];
        for e in endpoints {
            for event in &e.subscription.events {
                wanted[index(*event)] = true;
            }
        }
        Self {
            subscribers: endpoints
                .iter()
                .map(|e| (e.name.clone(), e.subscription.clone()))
                .collect(),
            node: node.to_owned(),
            wanted,
        }
    }

    /// Whether nothing is ever written.
    pub(super) fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// The configured endpoints' names.
    pub(super) fn endpoints(&self) -> Vec<&str> {
        self.subscribers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Why the pending events of an endpoint no longer configured are failed at start.
    pub(super) const UNCONFIGURED: &'static str =
        "endpoint no longer configured (send again once it is)";

    /// Whether any endpoint takes `event`.
    pub(super) fn wants(&self, event: WebhookEvent) -> bool {
        self.wanted[index(event)]
    }
}

fn index(event: WebhookEvent) -> usize {
    WebhookEvent::ALL
        .iter()
        .position(|e| *e == event)
        .unwrap_or_default()
}

/// One outbox row.
pub(super) struct EventRow<'a> {
    pub(super) endpoint: &'a str,
    pub(super) kind: &'static str,
    pub(super) occurred_at: &'a str,
    pub(super) data: String,
}

/// What the outbox needs from a backend's transaction.
pub(super) trait OutboxTx {
    /// Locks the rows of `users` (sorted) until the commit, where other nodes write the same
    /// table (PostgreSQL); nothing on SQLite, whose one writer is alone.
    async fn lock_users(&mut self, users: &[&str]) -> Result<(), sqlx::Error>;
    /// Open sessions per user, of `users` (absent: none), as this transaction sees them.
    async fn open_sessions(&mut self, users: &[&str]) -> Result<HashMap<String, i64>, sqlx::Error>;
    /// `(username, role)` per user, of `users` (absent: never seen).
    async fn names(
        &mut self,
        users: &[&str],
    ) -> Result<HashMap<String, (String, String)>, sqlx::Error>;
    /// Of the messages `ids`, those stored while no connection took them live.
    async fn queued_offline(&mut self, ids: &[i64]) -> Result<HashSet<u64>, sqlx::Error>;
    async fn insert_events(&mut self, rows: &[EventRow<'_>]) -> Result<(), sqlx::Error>;
}

/// Writes the outbox rows of `noted` (in order) in the caller's transaction; `seen` are the
/// users the transaction itself upserted (their names need no lookup). Returns how many rows.
pub(super) async fn record(
    tx: &mut impl OutboxTx,
    outbox: &Outbox,
    noted: &Noted<'_>,
    seen: &[SeenUser<'_>],
) -> Result<usize, sqlx::Error> {
    if outbox.is_empty() || noted.is_empty() {
        return Ok(0);
    }
    let facts: Vec<&Fact<'_>> = noted.iter().map(|(_, fact)| fact).collect();
    let presence =
        outbox.wants(WebhookEvent::UserOnline) || outbox.wants(WebhookEvent::UserOffline);
    // Per user: sessions open before the transaction, worked back from those open now.
    let mut open: HashMap<&str, i64> = HashMap::new();
    if presence {
        let mut users: Vec<&str> = facts
            .iter()
            .filter_map(|f| match f {
                Fact::Opened { user_id, .. } => Some(*user_id),
                Fact::Closed { user_id, .. } => Some(user_id.as_str()),
                _ => None,
            })
            .collect();
        users.sort_unstable();
        users.dedup();
        if !users.is_empty() {
            tx.lock_users(&users).await?;
            let now = tx.open_sessions(&users).await?;
            for user in users {
                open.insert(user, now.get(user).copied().unwrap_or(0));
            }
            for f in &facts {
                match f {
                    Fact::Opened { user_id, .. } => *open.entry(user_id).or_default() -= 1,
                    Fact::Closed { user_id, .. } => *open.entry(user_id).or_default() += 1,
                    _ => {}
                }
            }
        }
    }
    let delivered: Vec<i64> = facts
        .iter()
        .filter_map(|f| match f {
            Fact::Delivered { id, .. } => Some(*id as i64),
            _ => None,
        })
        .collect();
    let queued = if !delivered.is_empty() && outbox.wants(WebhookEvent::MessageDelivered) {
        tx.queued_offline(&delivered).await?
    } else {
        HashSet::new()
    };

    let mut events: Vec<Event<'_>> = Vec::new();
    for f in &facts {
        walk(f, outbox, &mut open, &queued, &mut events);
    }
    if events.is_empty() {
        return Ok(0);
    }
    let mut names: HashMap<String, (String, String)> = HashMap::new();
    for u in seen {
        names.insert(
            u.user_id.to_owned(),
            (u.username.to_owned(), u.role.to_owned()),
        );
    }
    let mut unknown: Vec<&str> = events
        .iter()
        .map(|e| e.user)
        .filter(|u| !names.contains_key(*u))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    if !unknown.is_empty() {
        names.extend(tx.names(&unknown).await?);
    }
    let mut rows = Vec::new();
    for event in &events {
        let (username, role) = names
            .get(event.user)
            .map_or((event.user, ""), |(n, r)| (n.as_str(), r.as_str()));
        let user = UserData {
            user_id: event.user,
            username,
            role,
        };
        let data = event.data(user);
        for (endpoint, subscription) in &outbox.subscribers {
            if accepts(subscription, event) {
                rows.push(EventRow {
                    endpoint,
                    kind: event.kind.as_str(),
                    occurred_at: event.at,
                    data: data.clone(),
                });
            }
        }
    }
    tx.insert_events(&rows).await?;
    Ok(rows.len())
}

/// A session row a bulk close returned: `(session_id, user_id, transport, disconnected_at)`.
pub(super) type ClosedRow = (i64, String, String, String);

/// The facts of sessions closed in bulk (crash recovery, a lost node) for `reason`; `node`:
/// the node they were on, when not this one.
pub(super) fn closed_facts<'a>(
    rows: &'a [ClosedRow],
    reason: &'a str,
    node: Option<&'a str>,
) -> Noted<'a> {
    rows.iter()
        .enumerate()
        .map(|(at_op, (session_id, user_id, transport, at))| {
            let fact = Fact::Closed {
                session_id: *session_id as u64,
                user_id: user_id.clone(),
                transport: transport.clone(),
                node,
                reason,
                at: at.clone(),
            };
            (at_op, fact)
        })
        .collect()
}

/// The events of one fact, appended to `events` (online before its first session's
/// `session.opened`, offline after its last session's `session.closed`).
fn walk<'f>(
    fact: &'f Fact<'f>,
    outbox: &'f Outbox,
    open: &mut HashMap<&'f str, i64>,
    queued: &HashSet<u64>,
    events: &mut Vec<Event<'f>>,
) {
    let node = outbox.node.as_str();
    let mut push = |kind: WebhookEvent, user: &'f str, at: &'f str, what: What<'f>| {
        if outbox.wants(kind) {
            events.push(Event {
                kind,
                user,
                at,
                what,
            });
        }
    };
    match fact {
        Fact::Opened {
            session_id,
            user_id,
            transport,
            at,
        } => {
            let session = What::Session {
                session_id: *session_id,
                transport,
                node,
                reason: None,
            };
            let count = open.entry(user_id).or_default();
            if *count == 0 {
                push(WebhookEvent::UserOnline, user_id, at, session.clone());
            }
            *count += 1;
            push(WebhookEvent::SessionOpened, user_id, at, session);
        }
        Fact::Closed {
            session_id,
            user_id,
            transport,
            node: lost,
            reason,
            at,
        } => {
            let session = What::Session {
                session_id: *session_id,
                transport,
                node: lost.unwrap_or(node),
                reason: Some(reason),
            };
            push(WebhookEvent::SessionClosed, user_id, at, session.clone());
            let count = open.entry(user_id).or_default();
            *count -= 1;
            if *count == 0 {
                push(WebhookEvent::UserOffline, user_id, at, session);
            }
        }
        Fact::Joined {
            room,
            user_id,
            by_server,
            at,
        } => push(
            WebhookEvent::RoomJoined,
            user_id,
            at,
            What::Room {
                room,
                by_server: Some(*by_server),
                reason: None,
            },
        ),
        Fact::Left {
            room,
            user_id,
            reason,
            at,
        } => push(
            WebhookEvent::RoomLeft,
            user_id,
            at,
            What::Room {
                room,
                by_server: None,
                reason: Some(reason),
            },
        ),
        Fact::Stored {
            record,
            id,
            payload,
        } => push(
            WebhookEvent::MessageStored,
            &record.sender_id,
            &record.created_at,
            What::Message {
                id: *id,
                event: &record.event,
                target: &record.target,
                payload,
            },
        ),
        Fact::Delivered { user_id, id, at } => {
            if queued.contains(id) {
                push(
                    WebhookEvent::MessageDelivered,
                    user_id,
                    at,
                    What::Delivered { id: *id },
                );
            }
        }
    }
}

/// One event, before it is written once per endpoint that takes it.
struct Event<'a> {
    kind: WebhookEvent,
    /// The user it is about (the sender of a stored message, the recipient of a delivered
    /// one).
    user: &'a str,
    at: &'a str,
    what: What<'a>,
}

#[derive(Clone)]
enum What<'a> {
    Session {
        session_id: u64,
        transport: &'a str,
        node: &'a str,
        reason: Option<&'a str>,
    },
    Room {
        room: &'a str,
        by_server: Option<bool>,
        reason: Option<&'a str>,
    },
    Message {
        id: u64,
        event: &'a str,
        target: &'a Target,
        payload: &'a str,
    },
    Delivered {
        id: u64,
    },
}

impl Event<'_> {
    /// The room it names, if any (what an endpoint's `rooms` filter looks at).
    fn room(&self) -> Option<&str> {
        match &self.what {
            What::Room { room, .. } => Some(room),
            What::Message {
                target: Target::Room(room),
                ..
            } => Some(room.as_str()),
            _ => None,
        }
    }

    /// The event's `data`, JSON.
    fn data(&self, user: UserData<'_>) -> String {
        let json = match &self.what {
            What::Session {
                session_id,
                transport,
                node,
                reason,
            } => serde_json::to_string(&SessionData {
                user,
                session_id: *session_id,
                transport,
                node,
                reason: *reason,
            }),
            What::Room {
                room,
                by_server,
                reason,
            } => serde_json::to_string(&RoomData {
                user,
                room,
                by_server: *by_server,
                reason: *reason,
            }),
            What::Message {
                id,
                event,
                target,
                payload,
            } => {
                let head = serde_json::to_string(&MessageData {
                    user,
                    id: *id,
                    event,
                    target: target.kind(),
                    room: match target {
                        Target::Room(room) => Some(room.as_str()),
                        _ => None,
                    },
                    to_user_id: target.user(),
                    role: match target {
                        Target::Role(role) => Some(role.as_str()),
                        _ => None,
                    },
                });
                // The payload is the gateway's own JSON, stored as sent: spliced in as it is
                // rather than parsed and written again for every message.
                head.map(|head| {
                    let open = head.strip_suffix('}').unwrap_or(&head);
                    format!("{open},\"message\":{payload}}}")
                })
            }
            What::Delivered { id } => serde_json::to_string(&DeliveredData { user, id: *id }),
        };
        // Serializing borrowed strings and numbers cannot fail.
        json.unwrap_or_else(|_| "{}".into())
    }
}

fn accepts(subscription: &Subscription, event: &Event<'_>) -> bool {
    if !subscription.events.contains(&event.kind) {
        return false;
    }
    if let What::Message { event: name, .. } = &event.what
        && !subscription.message_events.is_empty()
        && !subscription.message_events.iter().any(|e| e == name)
    {
        return false;
    }
    match event.room() {
        Some(room) if !subscription.rooms.is_empty() => subscription
            .rooms
            .iter()
            .any(|pattern| pattern_matches(pattern, room)),
        _ => true,
    }
}

/// The user object of section 3, without its live fields (connections are node-local and
/// change by the time the event arrives).
#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct UserData<'a> {
    user_id: &'a str,
    username: &'a str,
    role: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionData<'a> {
    user: UserData<'a>,
    session_id: u64,
    transport: &'a str,
    node: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomData<'a> {
    user: UserData<'a>,
    room: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_server: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageData<'a> {
    user: UserData<'a>,
    id: u64,
    event: &'a str,
    /// `all`, `user`, `room` or `role`.
    target: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveredData<'a> {
    user: UserData<'a>,
    id: u64,
}

#[cfg(test)]
mod tests;
