//! Criterion micro-benchmarks of the gateway's hot paths.
//!
//! - `decode_client_frame`: one `/ws` text frame through [`ClientFrame::parse`] and then
//!   [`ClientEvent::parse`], as the WebSocket reader does for every frame it receives.
//! - `encode_broadcast/encode_once`: one broadcast event serialized ([`Event::new`]) and its
//!   `/ws` frame encoded (`ws_frame`: [`Event::encoded_once`], as the `/ws` writer does), which
//!   happens once per broadcast.
//! - `encode_broadcast/per_recipient_frame`: `ws_frame` on an event whose frame is
//!   already encoded: what every further recipient costs (a reference-count bump).
//! - `route_room_message_1000/idle_queues`: [`Hub::route`] (the locked step of
//!   [`Hub::publish`]) of one `room-message` to a room of 1,001 members (the sender and 1,000 recipients, one session each) through the real hub
//!   and the real store writer. The queues are drained outside the measured time, as nothing
//!   waits on them; this is the cost the publisher pays under the hub lock.
//! - `route_room_message_1000/live_readers`: the same publish from a task on the runtime while
//!   each of the 1,000 queues is drained by its own task (like a transport's writer task, which
//!   takes the `/ws` frame of every event). Each send then also wakes a parked task.
//! - `route_room_message_1/idle_queues`: the same publish to a room of two members, the fixed
//!   cost of a publish (id, payload, store write) without the fan-out.
//! - `verify_jwt`: [`Verifier::verify`] of an HS256 token.
//!
//! The route benchmarks report elements (recipients) per second as well: time per recipient is
//! the time per publish divided by 1,000, or (t(1000) - t(1)) / 999 without the fixed cost.
//!
//! Run: `cargo bench --bench hot_paths [-- FILTER]`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard::config::{DatabaseSettings, PresenceSettings};
use switchboard::internals::{
    Claims, ClientEvent, ClientFrame, Event, HookAnswer, Hub, Identity, Metrics, Minter, Outbound,
    OutboundQueue, ParseLimits, Publish, RoomName, SessionId, SessionMeta, Store, Transport,
    Verifier, encode_server_frame,
};
use switchboard::protocol::wire::{ChatMessage, UserObject};
use switchboard::{Settings, Target};
use tokio::runtime::Runtime;

/// The `/ws` frame of an event, encoded once and shared, as the `/ws` writer does.
fn ws_frame(event: &Event) -> axum::extract::ws::Utf8Bytes {
    event.encoded_once(|name, data| encode_server_frame(name, data).into())
}

/// The message text used everywhere: a typical chat line.
const BODY: &str = "hello world, the deploy to eu-west-2 finished and the dashboards are green; \
                    shall we start the retro at three?";
/// A timestamp as the contract writes it.
const TIMESTAMP: &str = "2026-11-26T07:01:02.345Z";
/// Recipients of the routed room message.
const RECIPIENTS: usize = 1_000;
/// Publishes measured between two drains of the queues.
const CHUNK: u64 = 256;

fn limits() -> ParseLimits {
    ParseLimits {
        max_message_chars: 4000,
    }
}

fn decode_client_frame(c: &mut Criterion) {
    let text = format!(
        r#"{{"event":"room-message","data":{{"room":"general","message":"{BODY}"}},"ack":42}}"#
    );
    // Check once that the frame is what the benchmark claims to decode.
    let frame = ClientFrame::parse(&text).expect("a valid frame");
    assert!(matches!(
        ClientEvent::parse(&frame.event, frame.data.as_ref(), limits()),
        Ok(ClientEvent::RoomMessage { .. })
    ));

    let mut group = c.benchmark_group("decode_client_frame");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("room_message", |b| {
        b.iter(|| {
            let frame = ClientFrame::parse(black_box(&text)).expect("a valid frame");
            let event = ClientEvent::parse(&frame.event, frame.data.as_ref(), limits())
                .expect("a valid event");
            (frame.ack, event)
        })
    });
    group.finish();
}

/// The sender as the hub describes it in every message.
fn sender_object() -> UserObject {
    UserObject {
        user_id: "9f1c2d3e-4b5a-6789-abcd-ef0123456789".into(),
        username: "Ada Lovelace".into(),
        role: "USER".into(),
        connected_at: "2026-11-26T07:00:00.000Z".into(),
        sessions: 1,
    }
}

fn encode_broadcast(c: &mut Criterion) {
    let from = sender_object();
    let payload = ChatMessage {
        id: 1_234_567,
        from: &from,
        message: BODY,
        room: Some("general"),
        timestamp: TIMESTAMP,
    };
    let encoded = Event::new("room-message", &payload);
    let frame_len = ws_frame(&encoded).len() as u64;

    let mut group = c.benchmark_group("encode_broadcast");
    group.throughput(Throughput::Bytes(frame_len));
    group.bench_function("encode_once", |b| {
        b.iter(|| {
            let event = Event::new("room-message", black_box(&payload));
            ws_frame(&event)
        })
    });
    group.bench_function("per_recipient_frame", |b| {
        b.iter(|| ws_frame(black_box(&encoded)))
    });
    group.finish();
}

/// A hub over a fresh store with one room of `recipients + 1` members, one session each.
struct Room {
    recipients: usize,
    hub: Hub,
    store: Store,
    room: RoomName,
    sender: SessionId,
    sender_id: Arc<str>,
    from: UserObject,
    /// One per session, the sender's first.
    queues: Vec<OutboundQueue>,
    _dir: tempfile::TempDir,
}

impl Room {
    fn open(rt: &Runtime, recipients: usize) -> Self {
        // Outbound queue capacity (and hold limit) of every session: room for the setup's
        // presence events (one `user-connected` and one `user-joined-room` per other member)
        // and for a chunk of publishes.
        let capacity = 4 * recipients + CHUNK as usize;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let settings = DatabaseSettings::at(dir.path().join("hot_paths.db"));
        let store = rt
            .block_on(Store::open(&settings, Metrics::shared()))
            .expect("the store opens");
        let hub = rt
            .block_on(Hub::load(
                store.clone(),
                Metrics::shared(),
                PresenceSettings::default(),
            ))
            .expect("the hub loads");
        let room = RoomName::parse("bench").expect("a valid room name");
        let mut sessions = Vec::with_capacity(recipients + 1);
        let mut queues = Vec::with_capacity(recipients + 1);
        for i in 0..=recipients {
            let identity = Identity {
                user_id: format!("user-{i:04}").into(),
                username: format!("User {i}").into(),
                role: "USER".into(),
                exp: u64::MAX,
                iat: None,
                grants: None,
            };
            let (outbound, queue) = Outbound::channel(capacity);
            let session_id = rt.block_on(store.next_session_id()).expect("a session id");
            let registered = hub.connect(
                session_id,
                identity,
                SessionMeta {
                    transport: Transport::WebSocket,
                    remote_addr: None,
                    user_agent: None,
                },
                outbound,
                capacity,
            );
            hub.end_replay(registered.session);
            hub.join_room(registered.session, &room, 100, HookAnswer::NotAsked)
                .expect("joins the room");
            sessions.push(registered.session);
            queues.push(queue);
        }
        let sender = sessions[0];
        let from = hub.user_of(sender).expect("the sender is online");
        let mut room = Self {
            recipients,
            hub,
            store,
            room,
            sender,
            sender_id: from.user_id.as_str().into(),
            from,
            queues,
            _dir: dir,
        };
        room.settle(rt);
        assert!(
            room.queues.iter().all(|q| !q.closer.is_closed()),
            "no session was closed during the setup"
        );
        room
    }

    /// Publishes one room message from the sender to every other member.
    fn publish(&self) {
        let published = self
            .hub
            .route(
                Publish::chat(self.sender, self.sender_id.clone(), 1000).message(
                    "room-message",
                    Target::Room(self.room.clone()),
                    BODY,
                    TIMESTAMP,
                    &|id| ChatMessage {
                        id,
                        from: &self.from,
                        message: BODY,
                        room: Some(self.room.as_str()),
                        timestamp: TIMESTAMP,
                    },
                ),
            )
            .expect("the sender is a member");
        assert_eq!(published.delivered, self.recipients);
    }

    /// Empties every queue and lets the store writer commit what it was handed.
    fn settle(&mut self, rt: &Runtime) {
        for queue in &mut self.queues {
            while queue.rx.try_recv().is_ok() {}
        }
        rt.block_on(async {
            self.store.flush().await;
            self.store.ensure_id_headroom().await.expect("message ids");
        });
    }

    /// Times `iters` publishes, emptying the queues outside the measured time every `CHUNK`.
    fn measure_idle(&mut self, rt: &Runtime, iters: u64) -> Duration {
        let mut measured = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            let n = CHUNK.min(iters - done);
            let start = Instant::now();
            for _ in 0..n {
                self.publish();
            }
            measured += start.elapsed();
            done += n;
            self.settle(rt);
        }
        measured
    }

    fn close(self, rt: &Runtime) {
        drop(self.queues);
        rt.block_on(self.store.close());
    }
}

fn route_room_message_1000(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let mut group = c.benchmark_group("route_room_message_1000");
    group.throughput(Throughput::Elements(RECIPIENTS as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(6));

    let mut room = Room::open(&rt, RECIPIENTS);
    group.bench_function("idle_queues", |b| {
        b.iter_custom(|iters| room.measure_idle(&rt, iters))
    });
    room.close(&rt);

    // Every queue drained by its own task, as the transports' writer tasks do.
    let mut room = Room::open(&rt, RECIPIENTS);
    let received = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = room
        .queues
        .drain(1..)
        .map(|mut queue| {
            let received = received.clone();
            rt.spawn(async move {
                while let Some(event) = queue.rx.recv().await {
                    black_box(ws_frame(&event));
                    received.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let room = Arc::new(room);
    group.bench_function("live_readers", |b| {
        b.iter_custom(|iters| {
            let room = room.clone();
            let received = received.clone();
            // Published from a runtime worker, like a command handler: wake-ups go to the
            // worker's own run queue.
            rt.block_on(async move {
                tokio::spawn(async move {
                    let mut measured = Duration::ZERO;
                    let mut done = 0;
                    while done < iters {
                        let n = CHUNK.min(iters - done);
                        let expected = received.load(Ordering::Relaxed) + n * RECIPIENTS as u64;
                        let start = Instant::now();
                        for _ in 0..n {
                            room.publish();
                        }
                        measured += start.elapsed();
                        done += n;
                        while received.load(Ordering::Relaxed) < expected {
                            tokio::task::yield_now().await;
                        }
                        room.store.flush().await;
                        room.store.ensure_id_headroom().await.expect("message ids");
                    }
                    measured
                })
                .await
                .expect("the publishing task does not panic")
            })
        })
    });
    group.finish();
    // A full queue would have failed the `delivered` check in `Room::publish`.
    let room = Arc::into_inner(room).expect("the benchmark released the room");
    room.close(&rt);
    for reader in readers {
        rt.block_on(reader).expect("a reader task does not panic");
    }
}

/// The fixed cost of a publish, for comparison: the same room message to a room of two
/// members (the sender and one recipient). Time per recipient in the 1,000-member room is
/// then roughly (t(1000) - t(1)) / 999.
fn route_room_message_1(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut group = c.benchmark_group("route_room_message_1");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let mut room = Room::open(&rt, 1);
    group.bench_function("idle_queues", |b| {
        b.iter_custom(|iters| room.measure_idle(&rt, iters))
    });
    group.finish();
    room.close(&rt);
}

fn verify_jwt(c: &mut Criterion) {
    let jwt = Settings::for_database("x.db", "a-secret-of-at-least-16-bytes").jwt;
    let verifier = Verifier::from_settings(&jwt).expect("an HS256 verifier");
    let token = Minter::from_settings(&jwt)
        .expect("an HS256 minter")
        .mint(
            Claims {
                sub: Some("9f1c2d3e-4b5a-6789-abcd-ef0123456789".into()),
                username: Some("Ada Lovelace".into()),
                role: Some("USER".into()),
                ..Default::default()
            },
            Duration::from_secs(3600),
        )
        .expect("a token");
    verifier.verify(&token).expect("the token verifies");

    c.bench_function("verify_jwt", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&token))
                .expect("the token verifies")
        })
    });
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = decode_client_frame, encode_broadcast, route_room_message_1000, route_room_message_1,
        verify_jwt
}
criterion_main!(hot_paths);
