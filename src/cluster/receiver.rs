//! What this node hears on the bus: it applies what the other nodes say, passes their
//! committed messages to the sequencer, and, on a timer, notices the nodes that fell silent
//! (lost), whether its own bus still works (cut off), and the sessions of nodes never heard.
//!
//! The loop never waits for the database (lost nodes' rows and revocations are written or
//! read in tasks of their own), so a slow database cannot make this node fall silent to
//! itself and count everyone lost.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Me;
use super::bus::{Heard, Inbox, LinkState};
use super::liveness::{Heard as Sender, Nodes};
use super::publisher::Control;
use super::wire::{Body, Envelope, WireMessage};
use crate::auth::Verifier;
use crate::hub::{CloseReason, ClusterEvent, Hub};
use crate::protocol::wire::timestamp;
use crate::store::{ClusterStore, CommittedMessage};

/// Least time between two complaints about another cluster on the subject.
const FOREIGN_WARNING_EVERY: Duration = Duration::from_secs(60);
/// Bus messages already arrived that are taken before the liveness checks.
const DRAIN_BEFORE_CHECK: usize = 10_000;

/// Applies what the other nodes say, and notices the ones that fell silent.
pub struct Receiver {
    me: Me,
    hub: Hub,
    verifier: Verifier,
    nodes: Nodes,
    remote: mpsc::Sender<Vec<CommittedMessage>>,
    control: mpsc::Sender<Control>,
    /// When this node last asked everyone for their users.
    asked_at: Option<Instant>,
    ask_every: Duration,
    /// This node's own connection to the bus, as the bus reports it.
    link: LinkState,
    /// The cluster's door into the store (lost nodes' rows).
    db: ClusterStore,
    /// `NODE_TIMEOUT_SECS`.
    timeout: Duration,
    /// When this node joined, or last came back from a cut-off (which forgot every node):
    /// the look for nodes never heard waits a whole timeout of listening after it.
    started: Instant,
    /// Whether nodes that left open sessions behind and were never heard were looked for.
    orphans_checked: bool,
    /// When this node last heard its own heartbeat come back.
    heard_self: Instant,
    /// When another cluster on the subject was last complained about.
    foreign_warned: Option<Instant>,
    /// Whether this node's own list of users is to go out at the next check: a message of
    /// another node was missed, and it may have been that node asking for it (`Hello`).
    owe_users: bool,
    /// When each node still speaking in a run declared lost was last told so.
    told_lost: HashMap<String, Instant>,
}

/// What the receiver talks to.
pub struct Wiring {
    /// Where other nodes' commits go (the sequencer's task).
    pub remote: mpsc::Sender<Vec<CommittedMessage>>,
    /// The publisher.
    pub control: mpsc::Sender<Control>,
    /// This node's bus connection.
    pub link: LinkState,
    /// The cluster's door into the store (lost nodes' rows).
    pub db: ClusterStore,
}

impl Receiver {
    /// Nobody heard yet; asks for users at most every `ask_every`; a node is lost after
    /// `timeout`.
    pub fn new(
        me: Me,
        hub: Hub,
        verifier: Verifier,
        wiring: Wiring,
        ask_every: Duration,
        timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        Self {
            me,
            hub,
            verifier,
            nodes: Nodes::new(timeout),
            remote: wiring.remote,
            control: wiring.control,
            asked_at: None,
            ask_every,
            link: wiring.link,
            db: wiring.db,
            timeout,
            started: now,
            orphans_checked: false,
            heard_self: now,
            foreign_warned: None,
            owe_users: false,
            told_lost: HashMap::new(),
        }
    }

    /// Hears until `stop`, or until the bus ends the subscription.
    pub async fn run(mut self, mut inbox: Inbox, stop: CancellationToken) {
        let mut check = tokio::time::interval(self.ask_every / 2);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                heard = inbox.next() => {
                    let Some(heard) = heard else {
                        tracing::error!("the bus subscription ended: this node counts its bus as gone");
                        break;
                    };
                    self.receive(&heard);
                }
                _ = check.tick() => self.check(&mut inbox),
            }
        }
    }

    /// The liveness checks, after what already arrived (after a stall, the silence is this
    /// node's).
    fn check(&mut self, inbox: &mut Inbox) {
        for _ in 0..DRAIN_BEFORE_CHECK {
            match inbox.next().now_or_never() {
                Some(Some(heard)) => self.receive(&heard),
                _ => break,
            }
        }
        self.watch_own_link();
        self.declare_lost();
        self.close_orphans();
        self.pay_users();
        self.hub.metrics().cluster().nodes(self.nodes.count());
    }

    fn receive(&mut self, heard: &Heard) {
        self.hub.metrics().cluster().received();
        if heard.sender.as_deref() == Some(self.me.sender.as_str()) {
            // Its own message, heard back: the bus works; nothing else to read in it.
            self.heard_self = Instant::now();
            return;
        }
        match serde_json::from_slice::<Envelope>(&heard.payload) {
            Ok(envelope) => self.apply(envelope),
            Err(e) => tracing::warn!(error = %e, "ignoring an unreadable bus message"),
        }
    }

    fn apply(&mut self, envelope: Envelope) {
        let Envelope {
            cluster,
            node,
            run,
            seq,
            body,
        } = envelope;
        if self.is_foreign(cluster, &node) || self.is_mine(&node, run) {
            return;
        }
        if self.note_sender(&node, run, seq) {
            self.apply_body(&node, body);
        }
    }

    /// Whether the envelope comes from another cluster (another database) sharing the
    /// subject by mistake; complains now and then.
    fn is_foreign(&mut self, cluster: i64, node: &str) -> bool {
        if cluster == self.me.cluster {
            return false;
        }
        let now = Instant::now();
        if self
            .foreign_warned
            .is_none_or(|at| now.duration_since(at) > FOREIGN_WARNING_EVERY)
        {
            self.foreign_warned = Some(now);
            tracing::error!(
                node,
                "another cluster (another database) publishes on this \
                NATS subject: give each cluster its own NATS_SUBJECT_PREFIX; ignoring it"
            );
        }
        true
    }

    /// Whether the envelope carries this node's `NODE_ID`: its own (heard back without the
    /// sender beside it, or of its run before it was declared lost), or another process's
    /// that was given the same id.
    fn is_mine(&mut self, node: &str, run: u64) -> bool {
        if node != self.me.node {
            return false;
        }
        if run == self.me.run {
            self.heard_self = Instant::now();
        } else if run > self.me.run {
            tracing::error!(
                node,
                "another process uses this NODE_ID: give each node its own"
            );
        }
        true
    }

    /// Records that `node` spoke and acts on what that says about it (new, restarted, a
    /// hole in its numbering); whether its message is to be applied.
    fn note_sender(&mut self, node: &str, run: u64, seq: u64) -> bool {
        let heard = self.nodes.heard(node, run, seq, Instant::now());
        if matches!(heard, Sender::Restarted | Sender::New | Sender::Gap) {
            // What it said while unheard may include revocations: the database has them all.
            self.reload_revocations();
        }
        match heard {
            Sender::Known => return true,
            Sender::Departed => return false,
            Sender::DeclaredLost => {
                self.tell_lost(node, run);
                return false;
            }
            Sender::Restarted => {
                tracing::info!(node, "node restarted");
                self.hub.remote_node_gone(node);
                self.ask_for_users(seq);
            }
            Sender::New => {
                tracing::info!(node, "node joined");
                self.ask_for_users(seq);
            }
            Sender::Gap => {
                tracing::warn!(
                    node,
                    seq,
                    "missed bus messages from a node; asking for its users, sending ours"
                );
                self.ask_for_users(0);
            }
        }
        // Its first messages (its `Hello` among them) or some later ones were missed: one
        // may have been a request for this node's users, which nobody would ask again.
        if heard == Sender::Gap || seq > 1 {
            self.owe_users = true;
        }
        true
    }

    fn apply_body(&mut self, node: &str, body: Body) {
        match body {
            Body::Messages { messages } => self.pass_on(node, messages),
            Body::Users { users, last } => {
                if let Some(all) = self.nodes.users_part(node, users, last) {
                    self.hub.remote_node_users(node, all);
                }
            }
            Body::Hello => {
                let _ = self.control.try_send(Control::Users);
            }
            Body::Heartbeat => {}
            Body::Event(event) => self.apply_event(node, event),
            Body::Bye => {
                tracing::info!(node, "node left");
                self.nodes.departed(node);
                self.hub.remote_node_gone(node);
            }
            Body::Lost { node: lost, run } => {
                if lost == self.me.node && run == self.me.run {
                    self.declared_lost(node);
                }
            }
        }
    }

    /// Another node declared this one lost and closed its sessions (this node was paused,
    /// or its messages did not reach that node): its connections would go on unrecorded.
    /// Cut off now; the next check takes connections again as a new run.
    fn declared_lost(&mut self, by: &str) {
        tracing::error!(
            by,
            "another node declared this one lost and closed its sessions: closing every \
             connection (node_lost) and coming back as a new run"
        );
        self.cut_off();
    }

    /// Tells `node`, still speaking in run `run` that this node declared lost, that it was
    /// (at most once per `ask_every`: it may not have heard the first time).
    fn tell_lost(&mut self, node: &str, run: u64) {
        let now = Instant::now();
        if self
            .told_lost
            .get(node)
            .is_some_and(|at| now.duration_since(*at) < self.ask_every)
        {
            return;
        }
        self.told_lost.insert(node.to_owned(), now);
        tracing::warn!(node, "a node declared lost still speaks; telling it");
        let lost = Body::Lost {
            node: node.to_owned(),
            run,
        };
        let _ = self.control.try_send(Control::Send(lost));
    }

    /// Sends this node's list of users if a missed message may have asked for it (once per
    /// check, however many were missed).
    fn pay_users(&mut self) {
        if std::mem::take(&mut self.owe_users) && !self.hub.is_cut_off() {
            let _ = self.control.try_send(Control::Users);
        }
    }

    /// Hands another node's committed messages to the sequencer.
    fn pass_on(&self, node: &str, messages: Vec<WireMessage>) {
        let batch: Vec<_> = messages
            .into_iter()
            .filter_map(WireMessage::into_committed)
            .collect();
        // Never waits (liveness is watched on this loop): a batch the sequencer has no room
        // for is read back from the database as a hole.
        if self.remote.try_send(batch).is_err() {
            tracing::debug!(node, "sequencer behind; a batch will be read back");
        }
    }

    /// Applies a change another node announced.
    fn apply_event(&self, node: &str, event: ClusterEvent) {
        match event {
            ClusterEvent::User(user) => self.hub.remote_user(node, user),
            ClusterEvent::Room(change) => self.hub.remote_room_change(change),
            ClusterEvent::Kick { user_id } => {
                self.hub.close_local_user(&user_id, CloseReason::Kicked);
            }
            ClusterEvent::Revoked {
                user_id,
                not_before,
            } => {
                self.verifier.revocations().revoke(&user_id, not_before);
                self.hub.close_local_user(&user_id, CloseReason::Revoked);
            }
        }
    }

    /// Reads every token revocation from the database into the verifier (revoking is
    /// idempotent): a revocation announced while this node was not listening is not missed,
    /// and the connections of a user whose revocation it had missed are closed (`revoked`),
    /// as the announcement would have. In a task of its own: this loop never waits for the
    /// database.
    fn reload_revocations(&self) {
        let (hub, verifier) = (self.hub.clone(), self.verifier.clone());
        tokio::spawn(async move {
            match hub.store().token_revocations().await {
                Ok(revocations) => {
                    for (user_id, not_before) in revocations {
                        if verifier.revocations().revoke(&user_id, not_before) {
                            hub.close_local_user(&user_id, CloseReason::Revoked);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not reload token revocations"),
            }
        });
    }

    /// Asks every node for its users, unless this is a node's first message (it sends its
    /// list itself as it starts) or this node asked a moment ago.
    fn ask_for_users(&mut self, seq: u64) {
        if seq == 1 {
            return;
        }
        let now = Instant::now();
        if self
            .asked_at
            .is_some_and(|at| now.duration_since(at) < self.ask_every)
        {
            return;
        }
        self.asked_at = Some(now);
        let _ = self.control.try_send(Control::Send(Body::Hello));
    }

    /// How long this node's own bus has been gone, if it is: while the bus reports the link
    /// down, or while this node does not hear its own heartbeats (a half-open connection, a
    /// stalled subscription).
    fn own_link_down_for(&self, now: Instant) -> Option<Duration> {
        let echo_silent = now.saturating_duration_since(self.heard_self);
        let down_since = *self.link.borrow();
        match down_since {
            Some(since) => Some(now.saturating_duration_since(since).max(echo_silent)),
            None if echo_silent > self.timeout / 2 => Some(echo_silent),
            None => None,
        }
    }

    /// Cuts this node off once its own bus has been gone for the timeout (the others count it
    /// lost by then: its connections would be invisible to them), and takes it back when the
    /// bus returns.
    fn watch_own_link(&mut self) {
        let now = Instant::now();
        let down_for = self.own_link_down_for(now);
        if down_for.is_some() {
            // Nobody is heard while this node's own bus is down: that silence is not theirs.
            self.nodes.heard_all(now);
        }
        match down_for {
            Some(down) if down > self.timeout && !self.hub.is_cut_off() => {
                tracing::error!(
                    "the bus has been unreachable for NODE_TIMEOUT_SECS: closing every \
                     connection (node_lost) and refusing new ones until it is back"
                );
                self.cut_off();
            }
            None if self.hub.is_cut_off() => self.rejoin(),
            _ => {}
        }
    }

    /// Closes every connection (`node_lost`), refuses new ones and forgets the other nodes'
    /// users, until [`Receiver::rejoin`].
    fn cut_off(&mut self) {
        self.hub.cut_off();
        for node in self.nodes.forget_all() {
            self.hub.remote_node_gone(&node);
        }
    }

    /// Takes connections again, as a new run: the others declared the old one lost (or
    /// will: it was cut off past the timeout) and ignore it from then on, so that what it
    /// said before and after cannot be mixed up. Like a node starting, it asks for everyone's
    /// users and sends its own.
    fn rejoin(&mut self) {
        let run = super::run_id().max(self.me.run + 1);
        tracing::info!(run, "the bus is back: taking connections again");
        self.reload_revocations();
        self.me = self.me.with_run(run);
        self.heard_self = Instant::now();
        // Nobody is heard yet: a node not heard by now is not one that died.
        self.started = self.heard_self;
        self.told_lost.clear();
        let _ = self.control.try_send(Control::NewRun(run));
        self.hub.rejoin();
        self.asked_at = None;
        let _ = self.control.try_send(Control::Send(Body::Hello));
        let _ = self.control.try_send(Control::Users);
    }

    /// Once, a timeout after joining: closes the open sessions of nodes that were never heard
    /// (a node that died while no other was running) with reason `node_lost`.
    fn close_orphans(&mut self) {
        if self.orphans_checked || self.started.elapsed() <= self.timeout || self.hub.is_cut_off() {
            return;
        }
        self.orphans_checked = true;
        let store = self.db.clone();
        let me = self.me.node.clone();
        let alive: std::collections::HashSet<String> = self.nodes.alive().collect();
        tokio::spawn(async move {
            let nodes = match store.nodes_with_open_sessions(&me).await {
                Ok(nodes) => nodes,
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for sessions left open by lost nodes");
                    return;
                }
            };
            for node in nodes.into_iter().filter(|n| !alive.contains(n)) {
                close_lost_node(&store, &node, "a node not heard since this one joined").await;
            }
        });
    }

    /// Declares the nodes silent past the timeout lost: their users leave presence, their
    /// open sessions are closed with reason `node_lost` (in a task: this loop never waits for
    /// the database). Not while this node's own bus is down (`watch_own_link` counts them
    /// heard meanwhile).
    fn declare_lost(&mut self) {
        for (node, run) in self.nodes.take_lost(Instant::now()) {
            self.hub.metrics().cluster().node_lost();
            let users = self.hub.remote_node_gone(&node);
            tracing::warn!(node, users, "node lost: silent past NODE_TIMEOUT_SECS");
            // Should it still be serving (paused, or unheard by this node only), it learns.
            let lost = Body::Lost {
                node: node.clone(),
                run,
            };
            let _ = self.control.try_send(Control::Send(lost));
            let store = self.db.clone();
            tokio::spawn(async move {
                close_lost_node(&store, &node, "a node lost").await;
            });
        }
    }
}

/// Closes the open sessions of `node` with reason `node_lost`; whichever node gets there
/// first closes them, the others find none.
async fn close_lost_node(store: &ClusterStore, node: &str, why: &'static str) {
    let at = timestamp(SystemTime::now());
    match store.close_node_sessions(node, "node_lost", &at).await {
        Ok(closed) => tracing::warn!(node, closed, "closed the open sessions of {why}"),
        Err(e) => tracing::error!(node, error = %e, "could not close the sessions of {why}"),
    }
}
