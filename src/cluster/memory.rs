//! A bus inside one process, for tests: a [`MemoryBus`] is the broadcast hub, and each node
//! attaches to it ([`MemoryBus::attach`]) the way a node connects to NATS. It keeps what the
//! cluster code relies on (echo, order per sender, the sender beside the payload) and lets a
//! test break it on purpose: drop or delay the next messages between two nodes, or cut a node
//! off and restore it, so that read-back, `Hello`, loss and cut-off run in one process against
//! a real store.
//!
//! Public but hidden from the docs (not `#[cfg(test)]`): the integration tests in `tests/`
//! build against the library as any user does, and need it there. Not for production: it
//! reaches no other process.
//!
//! Faults are decided when a message is published, under one lock, so that what two nodes
//! hear of one publish is decided at once. A delayed message is handed over by a task of its
//! own after its delay; messages published after it overtake it (that is how a test reorders).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};

use super::bus::{Bus, BusError, Heard, Inbox, LinkState};

/// What a fault does to the messages it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// They never arrive.
    Drop,
    /// They arrive this much later.
    Delay(Duration),
}

/// Which messages a fault applies to: from one node (or any), to one node (or any), whose
/// payload contains a piece of text (or any). The text picks a kind of envelope:
/// `"body":{"messages"` is a batch of committed messages.
#[derive(Debug, Clone, Default)]
pub struct Route {
    from: Option<String>,
    to: Option<String>,
    containing: Option<String>,
}

impl Route {
    /// Every message.
    pub fn any() -> Self {
        Self::default()
    }

    /// Only those published by `node`.
    pub fn from(mut self, node: &str) -> Self {
        self.from = Some(node.to_owned());
        self
    }

    /// Only those on their way to `node`.
    pub fn to(mut self, node: &str) -> Self {
        self.to = Some(node.to_owned());
        self
    }

    /// Only those whose payload contains `text`.
    pub fn containing(mut self, text: &str) -> Self {
        self.containing = Some(text.to_owned());
        self
    }

    fn matches(&self, from: &str, to: &str, payload: &[u8]) -> bool {
        self.from.as_deref().is_none_or(|f| f == from)
            && self.to.as_deref().is_none_or(|t| t == to)
            && self.containing.as_deref().is_none_or(|text| {
                text.is_empty() || payload.windows(text.len()).any(|w| w == text.as_bytes())
            })
    }
}

/// A fault waiting for the messages it applies to.
struct Rule {
    route: Route,
    fault: Fault,
    /// Messages it still applies to.
    left: usize,
}

/// One attached node.
struct Member {
    /// Where its subscription hears; `None` until it subscribes.
    inbox: Option<mpsc::UnboundedSender<Heard>>,
    /// Cut off: hears nothing, and nothing it publishes arrives.
    cut: bool,
}

#[derive(Default)]
struct Shared {
    members: HashMap<String, Member>,
    rules: Vec<Rule>,
    /// Messages each fault took, per node they were on their way to.
    faulted: HashMap<String, usize>,
}

/// The broadcast hub several nodes attach to. Clones share it.
#[derive(Clone, Default)]
pub struct MemoryBus {
    shared: Arc<Mutex<Shared>>,
}

impl MemoryBus {
    /// A bus with no node on it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches the node `node` (its `NODE_ID`): the [`Bus`] to build its gateway with.
    pub fn attach(&self, node: &str) -> Arc<dyn Bus> {
        self.lock().members.insert(
            node.to_owned(),
            Member {
                inbox: None,
                cut: false,
            },
        );
        let (_up, link) = watch::channel(None);
        Arc::new(Attached {
            bus: self.clone(),
            node: node.to_owned(),
            link,
        })
    }

    /// Applies `fault` to the next `count` messages on `route` (each copy to each receiving
    /// node counts once).
    pub fn fault(&self, route: Route, fault: Fault, count: usize) {
        self.lock().rules.push(Rule {
            route,
            fault,
            left: count,
        });
    }

    /// Removes every fault still waiting (one given a count it has not used up).
    pub fn heal(&self) {
        self.lock().rules.clear();
    }

    /// How many messages on their way to `node` a fault has dropped or delayed so far.
    pub fn faulted_to(&self, node: &str) -> usize {
        self.lock().faulted.get(node).copied().unwrap_or(0)
    }

    /// Cuts `node` off: it hears nothing, not even itself, and nothing it publishes arrives
    /// (a half-open connection: its link still looks up).
    pub fn cut(&self, node: &str) {
        self.set_cut(node, true);
    }

    /// Undoes [`MemoryBus::cut`].
    pub fn restore(&self, node: &str) {
        self.set_cut(node, false);
    }

    fn set_cut(&self, node: &str, cut: bool) {
        if let Some(member) = self.lock().members.get_mut(node) {
            member.cut = cut;
        }
    }

    /// No `.await` happens under this lock.
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn subscribe(&self, node: &str) -> Inbox {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(member) = self.lock().members.get_mut(node) {
            member.inbox = Some(tx);
        }
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|heard| (heard, rx))
        })
        .boxed()
    }

    /// Hands `payload` to every subscribed node (the publisher too), unless a cut or a fault
    /// says otherwise.
    fn publish(&self, from: &str, sender: &str, payload: Bytes) {
        let mut shared = self.lock();
        if shared.members.get(from).is_none_or(|m| m.cut) {
            return;
        }
        let receivers: Vec<(String, mpsc::UnboundedSender<Heard>)> = shared
            .members
            .iter()
            .filter(|(_, m)| !m.cut)
            .filter_map(|(node, m)| Some((node.clone(), m.inbox.clone()?)))
            .collect();
        for (to, inbox) in receivers {
            let heard = Heard {
                sender: Some(sender.to_owned()),
                payload: payload.clone(),
            };
            match shared.take_fault(from, &to, &payload) {
                None => {
                    let _ = inbox.send(heard);
                }
                Some(Fault::Drop) => {}
                Some(Fault::Delay(by)) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(by).await;
                        let _ = inbox.send(heard);
                    });
                }
            }
        }
    }
}

impl Shared {
    /// The fault of the first rule that applies to this copy, counted.
    fn take_fault(&mut self, from: &str, to: &str, payload: &[u8]) -> Option<Fault> {
        let rule = self
            .rules
            .iter_mut()
            .find(|r| r.left > 0 && r.route.matches(from, to, payload))?;
        rule.left -= 1;
        *self.faulted.entry(to.to_owned()).or_default() += 1;
        Some(rule.fault)
    }
}

/// One node's attachment to a [`MemoryBus`].
struct Attached {
    bus: MemoryBus,
    node: String,
    link: LinkState,
}

impl Bus for Attached {
    fn subscribe(&self) -> BoxFuture<'_, Result<Inbox, BusError>> {
        let inbox = self.bus.subscribe(&self.node);
        async move { Ok(inbox) }.boxed()
    }

    fn publish(&self, sender: &str, payload: Bytes) -> BoxFuture<'_, Result<(), BusError>> {
        self.bus.publish(&self.node, sender, payload);
        async { Ok(()) }.boxed()
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }

    fn link(&self) -> LinkState {
        self.link.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(inbox: &mut Inbox) -> Option<Heard> {
        tokio::time::timeout(Duration::from_secs(1), inbox.next())
            .await
            .ok()
            .flatten()
    }

    fn text(heard: &Heard) -> &str {
        std::str::from_utf8(&heard.payload).expect("utf-8")
    }

    #[tokio::test]
    async fn every_node_hears_every_message_its_own_included() {
        let bus = MemoryBus::new();
        let (a, b) = (bus.attach("a"), bus.attach("b"));
        let (mut heard_a, mut heard_b) = (
            a.subscribe().await.expect("a"),
            b.subscribe().await.expect("b"),
        );

        a.publish("a/1", Bytes::from_static(b"one"))
            .await
            .expect("sent");

        for inbox in [&mut heard_a, &mut heard_b] {
            let heard = next(inbox).await.expect("heard");
            assert_eq!(
                (heard.sender.as_deref(), text(&heard)),
                (Some("a/1"), "one")
            );
        }
    }

    #[tokio::test]
    async fn a_fault_takes_only_the_messages_on_its_route_and_only_as_many_as_told() {
        let bus = MemoryBus::new();
        let (a, b) = (bus.attach("a"), bus.attach("b"));
        let (mut heard_a, mut heard_b) = (
            a.subscribe().await.expect("a"),
            b.subscribe().await.expect("b"),
        );
        bus.fault(
            Route::any().from("a").to("b").containing("msg"),
            Fault::Drop,
            1,
        );

        for payload in ["beat", "msg 1", "msg 2"] {
            a.publish("a/1", Bytes::from(payload)).await.expect("sent");
        }

        let to_b: Vec<String> = [next(&mut heard_b).await, next(&mut heard_b).await]
            .iter()
            .flatten()
            .map(|h| text(h).to_owned())
            .collect();
        assert_eq!(to_b, ["beat", "msg 2"], "b missed the first msg only");
        for want in ["beat", "msg 1", "msg 2"] {
            let heard = next(&mut heard_a).await.expect("a hears itself");
            assert_eq!(text(&heard), want);
        }
        assert_eq!((bus.faulted_to("b"), bus.faulted_to("a")), (1, 0));
    }

    #[tokio::test]
    async fn a_delayed_message_is_overtaken_by_the_next() {
        let bus = MemoryBus::new();
        let a = bus.attach("a");
        let mut heard = a.subscribe().await.expect("a");
        bus.fault(Route::any(), Fault::Delay(Duration::from_millis(100)), 1);

        a.publish("a/1", Bytes::from_static(b"first"))
            .await
            .expect("sent");
        a.publish("a/1", Bytes::from_static(b"second"))
            .await
            .expect("sent");

        let order = [
            next(&mut heard).await.expect("one"),
            next(&mut heard).await.expect("two"),
        ];
        assert_eq!([text(&order[0]), text(&order[1])], ["second", "first"]);
    }

    #[tokio::test]
    async fn a_node_cut_off_hears_nothing_and_is_heard_by_nobody_until_restored() {
        let bus = MemoryBus::new();
        let (a, b) = (bus.attach("a"), bus.attach("b"));
        let (mut heard_a, mut heard_b) = (
            a.subscribe().await.expect("a"),
            b.subscribe().await.expect("b"),
        );
        bus.cut("a");

        a.publish("a/1", Bytes::from_static(b"lost"))
            .await
            .expect("sent");
        b.publish("b/1", Bytes::from_static(b"unheard by a"))
            .await
            .expect("sent");
        bus.restore("a");
        a.publish("a/1", Bytes::from_static(b"back"))
            .await
            .expect("sent");

        let first_at_b = next(&mut heard_b).await.expect("b hears itself");
        assert_eq!(text(&first_at_b), "unheard by a");
        assert_eq!(text(&next(&mut heard_b).await.expect("back")), "back");
        assert_eq!(text(&next(&mut heard_a).await.expect("back")), "back");
    }
}
