//! Presence fan-out (`docs/protocol.md` section 9): how `user-connected` / `user-disconnected` (or
//! `presence-diff`) reach every connection without ever costing a handshake its time or a
//! client its connection.
//!
//! Presence is soft state, so it does not travel through the connections' bounded queues
//! (where a burst of it would make a slow consumer of a client that reads fine). Instead:
//!
//! - Under the hub lock, a change is appended to one shared [`PresenceFeed`] log (O(1), encoded
//!   once for everyone), or, in `diff` mode, merged into the open [`Window`].
//! - A flusher task wakes every connection's writer when there is something new: at once
//!   after a quiet spell, then at most every [`USERS_FLUSH_INTERVAL`] (`users`) or once per
//!   `PRESENCE_DIFF_INTERVAL_MS` (`diff`, when it also closes the window into one
//!   `presence-diff`). A burst therefore reaches each connection as a few coalesced writes.
//! - Each writer reads the log from its own [`PresenceCursor`], after the messages queued for
//!   it, at most [`MAX_BATCH`] events at a time. A writer that fell off the end of the log
//!   ([`LOG_CAPACITY`] changes behind) gets one `active-users { users, count }` snapshot in
//!   place of what it missed; in `diff` mode, several pending diffs are merged into one. No
//!   presence frame lists more than [`MAX_DIFF_USERS`] users but a snapshot: a larger window
//!   or merge goes out as several diffs in a row.
//!
//! - When a flush would cost more than `PRESENCE_STORM_BUDGET` deliveries per second (changes
//!   times connections), its changes go out as one `presence-summary` with counts instead
//!   ([`presence_storm`](super::presence_storm)): the log keeps them, marked as summed up, and
//!   every writer skips from the first of them to the summary in one step.
//!
//! The rule a client can rely on: presence events arrive in order; a snapshot replaces every
//! change before it; a `presence-diff` may repeat a change a snapshot already showed (apply
//! joins and leaves as set operations). In `diff` mode every connection gets the same diff,
//! its own user's arrival included.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::presence_storm::{STORM_INTERVAL, StormBudget, Tally};
use super::{Event, Hub, Inner};
use crate::config::{PresenceMode, PresenceSettings};
use crate::protocol::wire::{self, ActiveUsers, Presence, PresenceDiff, UserObject};

/// Changes kept for writers that are behind; a writer further behind gets a snapshot. A
/// snapshot costs as much as the online users (every one of them), a backlog as much as its
/// changes: with thousands online, one is cheaper than the other only far behind.
const LOG_CAPACITY: usize = 65_536;
/// Most presence events a writer takes at once, so that a client's own replies and messages
/// go out between batches.
pub const MAX_BATCH: u64 = 256;
/// Most users one `presence-diff` lists: a window (or a merge) with more changes goes out as
/// several diffs in a row, so that no presence frame outgrows a connection's write buffer.
pub const MAX_DIFF_USERS: usize = 256;
/// `users` mode: least time between two wake-ups of every writer.
pub const USERS_FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// How long one snapshot serves every writer that needs one (building it walks every online
/// user under the hub lock).
const SNAPSHOT_REUSE: Duration = Duration::from_millis(500);

/// One logged change: a `users`-mode event about `subject`, or a `diff`-mode window.
struct Item {
    seq: u64,
    subject: Option<Arc<str>>,
    event: Arc<Event>,
    diff: Option<Arc<DiffContent>>,
    /// A `users`-mode change: whether the subject came online, and the count after it.
    change: Option<(bool, usize)>,
    /// A `presence-summary`: the changes before it that it stands for are not sent.
    summary: bool,
}

/// What a `presence-diff` said, for merging several into one.
struct DiffContent {
    joins: Vec<UserObject>,
    leaves: Vec<UserObject>,
    active_users_count: usize,
    timestamp: String,
}

struct Snapshot {
    /// Covers every item before this one.
    seq: u64,
    at: Instant,
    event: Arc<Event>,
}

#[derive(Default)]
struct Log {
    items: VecDeque<Item>,
    next_seq: u64,
    snapshot: Option<Snapshot>,
    /// Recent merges of pending diffs, by range: writers woken by the same windows are
    /// behind by the same ranges, and share one merge.
    merged: VecDeque<Merged>,
    /// `users` mode: the ranges of changes a summary stands for, oldest first; the summary
    /// is the item at each range's end.
    summed_up: VecDeque<(u64, u64)>,
}

/// Pending diffs from one sequence to another, merged (and chunked).
type Merged = (u64, u64, Arc<[Arc<Event>]>);

/// Merges kept for sharing.
const MERGES_KEPT: usize = 16;

impl Log {
    fn first_seq(&self) -> u64 {
        self.items.front().map_or(self.next_seq, |i| i.seq)
    }

    fn push(&mut self, subject: Option<Arc<str>>, event: Arc<Event>, diff: Option<DiffContent>) {
        self.push_item(Item {
            seq: self.next_seq,
            subject,
            event,
            diff: diff.map(Arc::new),
            change: None,
            summary: false,
        });
    }

    fn push_item(&mut self, item: Item) {
        if self.items.len() >= LOG_CAPACITY {
            self.items.pop_front();
            let first = self.first_seq();
            while self.summed_up.front().is_some_and(|(_, to)| *to < first) {
                self.summed_up.pop_front();
            }
        }
        self.items.push_back(item);
        self.next_seq += 1;
    }

    /// Appends a `presence-summary` standing for the items from `from` to the end; in `users`
    /// mode those are then skipped (`diff` mode skips what precedes a summary by itself).
    fn push_summary(&mut self, from: u64, event: Arc<Event>) {
        let to = self.next_seq;
        if from < to {
            self.summed_up.push_back((from, to));
        }
        self.push_item(Item {
            seq: to,
            subject: None,
            event,
            diff: None,
            change: None,
            summary: true,
        });
    }

    /// Where a reader at `seq` goes on when `seq` is among changes a summary stands for: the
    /// summary itself.
    fn skip(&self, seq: u64) -> Option<u64> {
        self.summed_up
            .iter()
            .find(|(from, to)| (*from..*to).contains(&seq))
            .map(|(_, to)| *to)
    }

    /// The first change after `seq` that a summary stands for.
    fn next_summed_up(&self, seq: u64) -> Option<u64> {
        self.summed_up
            .iter()
            .map(|(from, _)| *from)
            .find(|from| *from > seq)
    }

    /// Items from `from` (inclusive) to `to` (exclusive) still in the log.
    fn range(&self, from: u64, to: u64) -> impl Iterator<Item = &Item> {
        let start = from.saturating_sub(self.first_seq()) as usize;
        self.items
            .iter()
            .skip(start)
            .take_while(move |item| item.seq < to)
    }
}

struct Shared {
    settings: PresenceSettings,
    budget: StormBudget,
    /// Live cursors: how many connections one change goes to.
    readers: AtomicU64,
    log: Mutex<Log>,
    /// The log's `next_seq` as last published to the writers.
    published: watch::Sender<u64>,
    /// The hub appended something (or closed the window's first change).
    appended: Notify,
    closed: AtomicBool,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self) {
        let next = self.log().next_seq;
        self.published.send_replace(next);
    }

    /// `users` mode: publishes the changes gathered over `span`, or one summary of them when
    /// sending them one by one would pass the budget. Returns how many were summed up.
    fn flush_users(&self, span: Duration) -> u64 {
        let mut log = self.log();
        let from = (*self.published.borrow()).max(log.first_seq());
        let changes = log.next_seq - from;
        let readers = self.readers.load(Ordering::Relaxed);
        let mut summed_up = 0;
        if self.budget.exceeded(changes, readers, span) {
            let mut tally = Tally::default();
            for (joined, count) in log.range(from, log.next_seq).filter_map(|i| i.change) {
                tally.add(joined, count);
            }
            summed_up = tally.connected + tally.disconnected;
            log.push_summary(from, tally.event());
        }
        let next = log.next_seq;
        drop(log);
        self.published.send_replace(next);
        summed_up
    }
}

/// The hub's presence log and its flusher's signals.
pub(super) struct PresenceFeed {
    shared: Arc<Shared>,
}

impl PresenceFeed {
    pub fn new(settings: PresenceSettings) -> Self {
        let (published, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                budget: StormBudget::new(settings.storm_budget),
                readers: AtomicU64::new(0),
                settings,
                log: Mutex::new(Log::default()),
                published,
                appended: Notify::new(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    pub fn mode(&self) -> PresenceMode {
        self.shared.settings.mode
    }

    /// Under the hub lock: a user's first connection opened (`joined`) or last one closed.
    pub fn user_changed(
        &self,
        window: &mut Window,
        user: &UserObject,
        joined: bool,
        timestamp: &str,
        active_users_count: usize,
    ) {
        match self.mode() {
            PresenceMode::Off => return,
            PresenceMode::Users => {
                let name = if joined {
                    "user-connected"
                } else {
                    "user-disconnected"
                };
                let event = Event::new(
                    name,
                    &Presence {
                        user,
                        timestamp: timestamp.to_owned(),
                        active_users_count,
                    },
                );
                let subject = Arc::from(user.user_id.as_str());
                let mut log = self.shared.log();
                let seq = log.next_seq;
                log.push_item(Item {
                    seq,
                    subject: Some(subject),
                    event,
                    diff: None,
                    change: Some((joined, active_users_count)),
                    summary: false,
                });
            }
            PresenceMode::Diff => window.record(user.clone(), joined),
        }
        self.shared.appended.notify_one();
    }

    /// Under the hub lock: closes the `diff` window into one logged `presence-diff` (or a
    /// summary, when sending its users to every reader would pass the budget). Returns what
    /// it logged.
    fn close_window(&self, window: &mut Window, active_users_count: usize) -> Closed {
        let (joins, leaves) = window.take();
        if joins.is_empty() && leaves.is_empty() {
            return Closed::Nothing;
        }
        let changes = (joins.len() + leaves.len()) as u64;
        let readers = self.shared.readers.load(Ordering::Relaxed);
        let mut log = self.shared.log();
        if self
            .shared
            .budget
            .exceeded(changes, readers, self.shared.settings.diff_interval)
        {
            let tally = Tally {
                connected: joins.len() as u64,
                disconnected: leaves.len() as u64,
                active_users_count,
            };
            let from = log.next_seq;
            log.push_summary(from, tally.event());
            return Closed::Summary(changes);
        }
        let timestamp = wire::now();
        for diff in chunks(joins, leaves, active_users_count, &timestamp) {
            let event = diff_event(&diff);
            log.push(None, event, Some(diff));
        }
        Closed::Diffs
    }

    /// A cursor at the log's end, for a connection registering under the hub lock.
    pub fn cursor(&self, hub: Hub, user_id: Arc<str>) -> PresenceCursor {
        self.shared.readers.fetch_add(1, Ordering::Relaxed);
        PresenceCursor {
            hub,
            shared: self.shared.clone(),
            published: self.shared.published.subscribe(),
            next: self.shared.log().next_seq,
            user_id,
        }
    }

    /// The cached snapshot if it still serves, else `None` (the hub builds a new one).
    fn cached_snapshot(&self) -> Option<(u64, Arc<Event>)> {
        let log = self.shared.log();
        let snapshot = log.snapshot.as_ref()?;
        (snapshot.at.elapsed() < SNAPSHOT_REUSE && snapshot.seq >= log.first_seq())
            .then(|| (snapshot.seq, snapshot.event.clone()))
    }

    /// Under the hub lock: where a snapshot taken now stands in the log.
    fn snapshot_seq(&self) -> u64 {
        self.shared.log().next_seq
    }

    fn cache_snapshot(&self, seq: u64, event: Arc<Event>) {
        let mut log = self.shared.log();
        if log.snapshot.as_ref().is_none_or(|s| s.seq <= seq) {
            log.snapshot = Some(Snapshot {
                seq,
                at: Instant::now(),
                event,
            });
        }
    }

    /// Stops the flusher (the hub is gone).
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.appended.notify_one();
    }

    /// Wakes the writers when the log grows, at the pace of the mode (see the module doc).
    /// Runs until the hub is dropped.
    pub fn spawn_flusher(&self, hub: Weak<Inner>) {
        let shared = self.shared.clone();
        if shared.settings.mode == PresenceMode::Off {
            return;
        }
        let hub_of_window = hub.clone();
        let summed_up = move |n: u64| {
            if n > 0
                && let Some(inner) = hub.upgrade()
            {
                inner.metrics.presence_summed_up(n);
            }
        };
        tokio::spawn(async move {
            let mut flushed = Instant::now();
            loop {
                shared.appended.notified().await;
                if shared.closed.load(Ordering::Relaxed) {
                    return;
                }
                match shared.settings.mode {
                    PresenceMode::Off => return,
                    PresenceMode::Users => {
                        let n = shared.flush_users(flushed.elapsed());
                        flushed = Instant::now();
                        summed_up(n);
                        // A storm's next summary comes a second later, not 50 ms.
                        let pause = if n > 0 {
                            STORM_INTERVAL
                        } else {
                            USERS_FLUSH_INTERVAL
                        };
                        tokio::time::sleep(pause).await;
                    }
                    PresenceMode::Diff => {
                        tokio::time::sleep(shared.settings.diff_interval).await;
                        let Some(inner) = hub_of_window.upgrade() else {
                            return;
                        };
                        let hub = Hub { inner };
                        let closed = {
                            let mut state = hub.state();
                            let count = state.online_count();
                            hub.inner
                                .presence
                                .close_window(&mut state.presence_window, count)
                        };
                        drop(hub);
                        match closed {
                            Closed::Nothing => {}
                            Closed::Diffs => shared.publish(),
                            Closed::Summary(n) => {
                                shared.publish();
                                summed_up(n);
                                // Changes go on gathering in the window meanwhile.
                                tokio::time::sleep(
                                    STORM_INTERVAL.saturating_sub(shared.settings.diff_interval),
                                )
                                .await;
                            }
                        }
                    }
                }
            }
        });
    }
}

/// What closing a `diff` window logged.
enum Closed {
    Nothing,
    Diffs,
    /// A summary of this many changes.
    Summary(u64),
}

/// One window's (or merge's) changes as diffs of at most [`MAX_DIFF_USERS`] users each.
fn chunks(
    joins: Vec<UserObject>,
    leaves: Vec<UserObject>,
    active_users_count: usize,
    timestamp: &str,
) -> Vec<DiffContent> {
    let diff = |joins: &[UserObject], leaves: &[UserObject]| DiffContent {
        joins: joins.to_vec(),
        leaves: leaves.to_vec(),
        active_users_count,
        timestamp: timestamp.to_owned(),
    };
    if joins.len() + leaves.len() <= MAX_DIFF_USERS {
        return vec![DiffContent {
            joins,
            leaves,
            active_users_count,
            timestamp: timestamp.to_owned(),
        }];
    }
    let mut out: Vec<DiffContent> = joins
        .chunks(MAX_DIFF_USERS)
        .map(|part| diff(part, &[]))
        .collect();
    out.extend(leaves.chunks(MAX_DIFF_USERS).map(|part| diff(&[], part)));
    out
}

fn diff_event(diff: &DiffContent) -> Arc<Event> {
    Event::new(
        "presence-diff",
        &PresenceDiff {
            joins: &diff.joins,
            leaves: &diff.leaves,
            active_users_count: diff.active_users_count,
            timestamp: &diff.timestamp,
        },
    )
}

impl Hub {
    /// `active-users` as of now, and the log position it stands for: shared by every writer
    /// that needs one within [`SNAPSHOT_REUSE`].
    fn presence_snapshot(&self) -> (u64, Arc<Event>) {
        let presence = &self.inner.presence;
        if let Some(cached) = presence.cached_snapshot() {
            return cached;
        }
        let (seq, users) = {
            let state = self.state();
            (presence.snapshot_seq(), state.online_users())
        };
        let users: Vec<UserObject> = users.into_iter().map(|u| u.user).collect();
        let event = Event::new(
            "active-users",
            &ActiveUsers {
                count: users.len(),
                users,
            },
        );
        presence.cache_snapshot(seq, event.clone());
        (seq, event)
    }
}

/// One connection's place in the presence log, read by its writer.
pub struct PresenceCursor {
    hub: Hub,
    shared: Arc<Shared>,
    published: watch::Receiver<u64>,
    /// The first item not yet taken.
    next: u64,
    user_id: Arc<str>,
}

impl std::fmt::Debug for PresenceCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceCursor")
            .field("next", &self.next)
            .finish()
    }
}

impl Drop for PresenceCursor {
    fn drop(&mut self) {
        self.shared.readers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PresenceCursor {
    /// Resolves when there is presence to take. Cancel-safe; pends forever when presence is
    /// off or the hub is gone.
    pub async fn changed(&mut self) {
        loop {
            if *self.published.borrow_and_update() > self.next {
                return;
            }
            if self.published.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Appends to `out` the presence events this connection has not had yet (see the module
    /// doc for snapshots and merging).
    pub fn take(&mut self, out: &mut impl Extend<Arc<Event>>) {
        let published = *self.published.borrow();
        if published <= self.next {
            return;
        }
        if self.next < self.shared.log().first_seq() {
            let (seq, snapshot) = self.hub.presence_snapshot();
            out.extend([snapshot]);
            self.next = seq;
        }
        let log = self.shared.log();
        match self.shared.settings.mode {
            PresenceMode::Users | PresenceMode::Off => {
                let until = published.min(self.next + MAX_BATCH);
                while self.next < until {
                    if let Some(summary) = log.skip(self.next) {
                        self.next = summary;
                        continue;
                    }
                    let stop = log
                        .next_summed_up(self.next)
                        .map_or(until, |s| s.min(until));
                    out.extend(
                        log.range(self.next, stop)
                            .filter(|item| item.subject.as_deref() != Some(&*self.user_id))
                            .map(|item| item.event.clone()),
                    );
                    self.next = stop;
                }
                return;
            }
            PresenceMode::Diff => {
                // A summary makes every diff before it moot: it goes out first, then what
                // came after it.
                if let Some(summary) = log
                    .range(self.next, published)
                    .filter(|item| item.summary)
                    .last()
                {
                    out.extend([summary.event.clone()]);
                    self.next = summary.seq + 1;
                }
                let pending: Vec<Arc<DiffContent>> = log
                    .range(self.next, published)
                    .filter_map(|item| item.diff.clone())
                    .collect();
                let cached = log
                    .merged
                    .iter()
                    .find(|(from, to, _)| (*from, *to) == (self.next, published))
                    .map(|(_, _, event)| event.clone());
                let single = log
                    .range(self.next, published)
                    .next()
                    .map(|i| i.event.clone());
                drop(log);
                match (pending.len(), cached, single) {
                    (0, _, _) => {}
                    (1, _, Some(one)) => out.extend([one]),
                    (_, Some(merged), _) => out.extend(merged.iter().cloned()),
                    _ => {
                        let merged: Arc<[Arc<Event>]> = merge_diffs(&pending).into();
                        out.extend(merged.iter().cloned());
                        let mut log = self.shared.log();
                        if log.merged.len() >= MERGES_KEPT {
                            log.merged.pop_front();
                        }
                        log.merged.push_back((self.next, published, merged));
                    }
                }
            }
        }
        self.next = self.next.max(published);
    }
}

/// Several pending `presence-diff`s as one (in chunks of [`MAX_DIFF_USERS`]), for a writer
/// that was behind.
fn merge_diffs(diffs: &[Arc<DiffContent>]) -> Vec<Arc<Event>> {
    let mut window = Window::default();
    let mut last = None;
    for diff in diffs {
        for user in &diff.joins {
            window.record(user.clone(), true);
        }
        for user in &diff.leaves {
            window.record(user.clone(), false);
        }
        last = Some(diff);
    }
    let (joins, leaves) = window.take();
    let (active_users_count, timestamp) = last.map_or((0, wire::now()), |d| {
        (d.active_users_count, d.timestamp.clone())
    });
    chunks(joins, leaves, active_users_count, &timestamp)
        .iter()
        .map(diff_event)
        .collect()
}

/// The changes of one `diff` window, merged: only a user whose state at the end differs from
/// its state at the start is reported (joined then left: neither list).
#[derive(Debug, Default)]
pub(super) struct Window {
    changes: HashMap<String, Change>,
    /// First change order, so the lists read in the order things happened.
    order: Vec<String>,
}

#[derive(Debug)]
struct Change {
    was_online: bool,
    online: bool,
    user: UserObject,
}

impl Window {
    /// A user came online (`joined`) or went offline.
    pub fn record(&mut self, user: UserObject, joined: bool) {
        match self.changes.get_mut(&user.user_id) {
            Some(change) => {
                change.online = joined;
                change.user = user;
            }
            None => {
                self.order.push(user.user_id.clone());
                self.changes.insert(
                    user.user_id.clone(),
                    Change {
                        was_online: !joined,
                        online: joined,
                        user,
                    },
                );
            }
        }
    }

    /// Empties the window into (joins, leaves).
    pub fn take(&mut self) -> (Vec<UserObject>, Vec<UserObject>) {
        let mut joins = Vec::new();
        let mut leaves = Vec::new();
        for user_id in self.order.drain(..) {
            let Some(change) = self.changes.remove(&user_id) else {
                continue;
            };
            match (change.was_online, change.online) {
                (false, true) => joins.push(change.user),
                (true, false) => leaves.push(change.user),
                _ => {}
            }
        }
        (joins, leaves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserObject {
        UserObject {
            user_id: id.into(),
            username: id.into(),
            role: "USER".into(),
            connected_at: wire::now(),
            sessions: 1,
        }
    }

    fn ids(users: &[UserObject]) -> Vec<&str> {
        users.iter().map(|u| u.user_id.as_str()).collect()
    }

    #[test]
    fn a_window_reports_only_net_changes_in_the_order_they_happened() {
        let mut window = Window::default();
        window.record(user("b"), true);
        window.record(user("a"), true);
        window.record(user("gone"), false);
        window.record(user("blink"), true);
        window.record(user("blink"), false);
        window.record(user("back"), false);
        window.record(user("back"), true);
        let (joins, leaves) = window.take();
        assert_eq!(ids(&joins), ["b", "a"]);
        assert_eq!(ids(&leaves), ["gone"]);
        assert_eq!(window.take(), (vec![], vec![]), "taking empties it");
    }

    #[test]
    fn a_large_diff_goes_out_in_chunks_joins_first() {
        let many: Vec<UserObject> = (0..MAX_DIFF_USERS + 10)
            .map(|i| user(&format!("u{i}")))
            .collect();
        let parts = chunks(many, vec![user("gone")], 7, "t");
        let sizes: Vec<(usize, usize)> = parts
            .iter()
            .map(|d| (d.joins.len(), d.leaves.len()))
            .collect();
        assert_eq!(sizes, [(MAX_DIFF_USERS, 0), (10, 0), (0, 1)]);
        assert!(parts.iter().all(|d| d.active_users_count == 7));
    }

    #[test]
    fn a_log_keeps_its_newest_items_and_reads_ranges_by_sequence() {
        let mut log = Log::default();
        for i in 0..(LOG_CAPACITY as u64 + 10) {
            log.push(None, Event::new("x", &i), None);
        }
        assert_eq!(log.first_seq(), 10);
        let seqs: Vec<u64> = log.range(12, 15).map(|i| i.seq).collect();
        assert_eq!(seqs, [12, 13, 14]);
        let from_before: Vec<u64> = log.range(0, 12).map(|i| i.seq).collect();
        assert_eq!(from_before, [10, 11], "what fell off the end is gone");
    }

    #[test]
    fn a_summary_makes_readers_skip_the_changes_it_stands_for() {
        let mut log = Log::default();
        for i in 0..3_u64 {
            log.push(None, Event::new("x", &i), None);
        }
        log.push_summary(1, Event::new("presence-summary", &0));
        log.push(None, Event::new("x", &4), None);
        assert_eq!(log.skip(0), None, "before the storm");
        assert_eq!(
            log.skip(1),
            Some(3),
            "a reader at a summed-up change goes to the summary"
        );
        assert_eq!(log.skip(2), Some(3));
        assert_eq!(log.skip(3), None, "the summary itself is read");
        assert_eq!(log.next_summed_up(0), Some(1));
        assert_eq!(log.next_summed_up(1), None);
        let summary = log.range(3, 4).next().expect("the summary");
        assert!(summary.summary && summary.subject.is_none());
    }

    #[test]
    fn pending_diffs_merge_into_one() {
        let diff = |joins: &[&str], leaves: &[&str], count| {
            Arc::new(DiffContent {
                joins: joins.iter().map(|id| user(id)).collect(),
                leaves: leaves.iter().map(|id| user(id)).collect(),
                active_users_count: count,
                timestamp: wire::now(),
            })
        };
        let first = diff(&["a", "b"], &["old"], 1);
        let second = diff(&["c"], &["a"], 2);
        let merged = merge_diffs(&[first, second]);
        assert_eq!(merged.len(), 1, "small enough for one diff");
        let data: serde_json::Value =
            serde_json::from_str(merged[0].data_json()).expect("valid JSON");
        let names = |key: &str| -> Vec<String> {
            data[key]
                .as_array()
                .expect("a list")
                .iter()
                .map(|u| u["userId"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(names("joins"), ["b", "c"]);
        assert_eq!(names("leaves"), ["old"]);
        assert_eq!(data["activeUsersCount"], 2);
    }
}
