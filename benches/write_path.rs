//! Benchmark of the durable write path: acknowledged messages per second, and ack latency.
//!
//! Scenarios (each on a fresh database file in a temporary directory):
//! - `group`: the project's real [`Store`] writer (group commit). C closed-loop producers,
//!   each sending its next message ([`Store::log_message`]) only once the previous one is
//!   acknowledged (its `Commit::durable` resolved true).
//! - `pipelined`: one producer sends N messages through the [`Store`] and waits for every ack.
//! - `per_tx`: a plain sqlx pool (one connection, same pragmas), one
//!   `BEGIN; INSERT; COMMIT` per message, the same C closed-loop producers.
//!
//! Each runs with `synchronous = NORMAL` and then `FULL`.
//!
//! Run: `cargo bench --bench write_path [-- FILTER...]`. A filter keeps the scenarios whose
//! label (e.g. `group/normal/c=64`) contains it. Environment: `BENCH_SECS` (measured seconds
//! per closed-loop scenario, default 3; FULL uses half of it), `BENCH_WARMUP_MS` (default
//! 500), `BENCH_PIPELINED` (messages in the pipelined runs, default 100000),
//! `BENCH_PRODUCERS` (comma-separated, default `1,64,1024`),
//! `BENCH_SYNC` (`normal`, `full` or `both`, the default). The temporary directory follows
//! `TMPDIR`. `BENCH_POSTGRES=postgres://user@host:port` runs the store scenarios (`group`,
//! `pipelined`) on PostgreSQL instead, each in a database of its own created on that server
//! and dropped after (labelled `postgres` in place of the synchronous mode; `per_tx` stays
//! SQLite's).
//!
//! Output: a human-readable line per scenario, then one JSON line per scenario.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use switchboard::Target;
use switchboard::config::{DatabaseSettings, PostgresUrl, Synchronous};
use switchboard::internals::{MessageRecord, Store};

const CREATED_AT: &str = "2026-11-26T07:01:02.345Z";
const BODY: &str = "Deploy finished on eu-west-2; dashboards are green, rolling back nothing.";
const INSERT: &str =
    "INSERT INTO messages (message_id, event, target_kind, target, sender_id, body,
     type, payload, client_msg_id, live_recipients, created_at)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// The payload as the hub would deliver it: `broadcast-message { id, from, message, timestamp }`.
fn payload(id: u64) -> String {
    format!(
        concat!(
            r#"{{"id":{},"from":{{"userId":"bench","username":"Bench Sender","role":"user","#,
            r#""connectedAt":"2026-11-26T07:00:00.000Z","sessions":1}},"message":"{}","#,
            r#""timestamp":"{}"}}"#
        ),
        id, BODY, CREATED_AT
    )
}

fn record(id: u64) -> MessageRecord {
    MessageRecord {
        id,
        event: "broadcast-message".into(),
        target: Target::All,
        sender_id: "bench".into(),
        body: BODY.into(),
        kind: None,
        payload: payload(id),
        client_msg_id: None,
        live_recipients: 0,
        created_at: CREATED_AT.into(),
        sender_session: None,
    }
}

#[derive(Clone, Copy)]
struct Config {
    secs: f64,
    warmup: Duration,
    pipelined: u64,
}

/// The measured window of a closed-loop run: acks completing inside it count.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
}

impl Window {
    fn new(warmup: Duration, secs: f64) -> Self {
        let from = Instant::now() + warmup;
        Self {
            from,
            to: from + Duration::from_secs_f64(secs),
        }
    }

    fn running(&self) -> bool {
        Instant::now() < self.to
    }

    fn secs(&self) -> f64 {
        (self.to - self.from).as_secs_f64()
    }
}

/// What one producer saw.
#[derive(Default)]
struct Tally {
    /// Ack latency, in microseconds, of each ack inside the window.
    latency_us: Vec<u32>,
    failed: u64,
}

impl Tally {
    fn record(&mut self, window: &Window, sent: Instant, ok: bool) {
        let done = Instant::now();
        if !ok {
            self.failed += 1;
        } else if done >= window.from && done <= window.to {
            let us = (done - sent).as_micros().min(u128::from(u32::MAX)) as u32;
            self.latency_us.push(us);
        }
    }

    fn merge(tallies: Vec<Tally>) -> Tally {
        let mut all = Tally::default();
        for t in tallies {
            all.latency_us.extend(t.latency_us);
            all.failed += t.failed;
        }
        all
    }
}

/// One scenario's figures.
struct Figures {
    scenario: &'static str,
    synchronous: &'static str,
    producers: usize,
    acked: u64,
    secs: f64,
    failed: u64,
    latency_us: Vec<u32>,
    note: String,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.acked as f64 / self.secs
    }

    fn percentile(&self, p: f64) -> Option<u32> {
        if self.latency_us.is_empty() {
            return None;
        }
        let rank = ((self.latency_us.len() - 1) as f64 * p).round() as usize;
        self.latency_us.get(rank).copied()
    }

    fn label(&self) -> String {
        format!(
            "{}/{}/c={}",
            self.scenario, self.synchronous, self.producers
        )
    }

    fn print(&mut self) {
        self.latency_us.sort_unstable();
        let ms = |v: Option<u32>| v.map_or("-".to_owned(), |us| format!("{:.2}", us as f64 / 1e3));
        println!(
            "{:<28} {:>10.0} msgs/s  ({} in {:.2} s)  ack p50 {} ms  p99 {} ms  max {} ms  failed {}{}",
            self.label(),
            self.rate(),
            self.acked,
            self.secs,
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(self.latency_us.last().copied()),
            self.failed,
            if self.note.is_empty() {
                String::new()
            } else {
                format!("  [{}]", self.note)
            },
        );
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "scenario": self.scenario,
            "synchronous": self.synchronous,
            "producers": self.producers,
            "acked": self.acked,
            "secs": (self.secs * 1000.0).round() / 1000.0,
            "msgs_per_s": self.rate().round(),
            "p50_us": self.percentile(0.5),
            "p99_us": self.percentile(0.99),
            "max_us": self.latency_us.last(),
            "failed": self.failed,
            "note": self.note,
        })
    }
}

fn sync_name(s: Synchronous) -> &'static str {
    if postgres_server().is_some() {
        return "postgres";
    }
    match s {
        Synchronous::Normal => "normal",
        Synchronous::Full => "full",
    }
}

/// The server `BENCH_POSTGRES` names, if the store scenarios run on PostgreSQL.
fn postgres_server() -> Option<String> {
    std::env::var("BENCH_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A database of a scenario's own on the `BENCH_POSTGRES` server; dropped by [`Self::drop`].
struct BenchDatabase {
    server: String,
    name: String,
}

impl BenchDatabase {
    async fn create(server: &str) -> Self {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .expect("BENCH_POSTGRES reachable");
        let name = format!("sb_bench_{}", std::process::id());
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .expect("drop an old bench database");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the bench database");
        Self {
            server: server.to_owned(),
            name,
        }
    }

    async fn drop(self) {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", self.server))
            .await
            .expect("BENCH_POSTGRES reachable");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("drop the bench database");
    }
}

async fn open_store(dir: &tempfile::TempDir, sync: Synchronous) -> (Store, Option<BenchDatabase>) {
    if let Some(server) = postgres_server() {
        let db = BenchDatabase::create(&server).await;
        let url = PostgresUrl::parse(&format!("{server}/{}", db.name)).expect("a postgres URL");
        let store = Store::open(
            &DatabaseSettings::postgres(url),
            switchboard::internals::Metrics::shared(),
        )
        .await
        .expect("open the store");
        return (store, Some(db));
    }
    let mut settings = DatabaseSettings::at(dir.path().join("bench.db"));
    settings.synchronous = sync;
    (
        Store::open(&settings, switchboard::internals::Metrics::shared())
            .await
            .expect("open the store"),
        None,
    )
}

/// Closes the store, then drops its PostgreSQL database if it had one.
async fn close_store(store: Store, db: Option<BenchDatabase>) {
    store.close().await;
    if let Some(db) = db {
        db.drop().await;
    }
}

/// Sends one message through the store and waits for its ack; true if committed.
async fn send_and_wait(store: &Store) -> bool {
    if store.ensure_id_headroom().await.is_err() {
        return false;
    }
    let id = store.allocate_message_id();
    store.log_message(record(id)).durable().await
}

/// Runs `producers` closed-loop producers until the window ends; `send` sends one message
/// and resolves to whether it was acknowledged as committed.
async fn closed_loop<F, Fut>(producers: usize, window: Window, send: F) -> Tally
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let tasks: Vec<_> = (0..producers)
        .map(|_| {
            let send = send.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while window.running() {
                    let sent = Instant::now();
                    let ok = send().await;
                    tally.record(&window, sent, ok);
                }
                tally
            })
        })
        .collect();
    let mut tallies = Vec::with_capacity(producers);
    for t in tasks {
        tallies.push(t.await.expect("producer task"));
    }
    Tally::merge(tallies)
}

async fn group_closed_loop(sync: Synchronous, producers: usize, cfg: Config) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, db) = open_store(&dir, sync).await;
    let window = Window::new(cfg.warmup, cfg.secs);
    let sender = store.clone();
    let tally = closed_loop(producers, window, move || {
        let store = sender.clone();
        async move { send_and_wait(&store).await }
    })
    .await;
    let total = store.last_message_id();
    close_store(store, db).await;
    Figures {
        scenario: "group",
        synchronous: sync_name(sync),
        producers,
        acked: tally.latency_us.len() as u64,
        secs: window.secs(),
        failed: tally.failed,
        latency_us: tally.latency_us,
        note: format!("{total} ids allocated incl. warm-up"),
    }
}

async fn group_pipelined(sync: Synchronous, cfg: Config) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, db) = open_store(&dir, sync).await;
    let n = cfg.pipelined;
    let start = Instant::now();
    let mut waiting = Vec::with_capacity(n as usize);
    for _ in 0..n {
        store.ensure_id_headroom().await.expect("message ids");
        let id = store.allocate_message_id();
        let commit = store.log_message(record(id));
        waiting.push((Instant::now(), commit));
    }
    let sent_all = start.elapsed();
    let mut tally = Tally::default();
    let window = Window {
        from: start,
        to: start + Duration::from_secs(3600),
    };
    for (sent, mut commit) in waiting {
        let ok = commit.durable().await;
        tally.record(&window, sent, ok);
    }
    let secs = start.elapsed().as_secs_f64();
    close_store(store, db).await;
    Figures {
        scenario: "pipelined",
        synchronous: sync_name(sync),
        producers: 1,
        acked: tally.latency_us.len() as u64,
        secs,
        failed: tally.failed,
        latency_us: tally.latency_us,
        note: format!(
            "{n} sent in {:.0} ms, then waited",
            sent_all.as_secs_f64() * 1e3
        ),
    }
}

/// A plain pool on a fresh, migrated file with the store's pragmas.
async fn open_pool(dir: &tempfile::TempDir, sync: Synchronous) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("bench.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match sync {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        })
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(120))
        .connect_with(options)
        .await
        .expect("open the pool");
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .expect("migrate");
    pool
}

fn bind_row<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    r: &'q MessageRecord,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    q.bind(r.id as i64)
        .bind(&r.event)
        .bind(r.target.kind())
        .bind(r.target.key())
        .bind(&r.sender_id)
        .bind(&r.body)
        .bind(&r.kind)
        .bind(&r.payload)
        .bind(&r.client_msg_id)
        .bind(r.live_recipients as i64)
        .bind(&r.created_at)
}

async fn insert_own_tx(pool: &SqlitePool, r: &MessageRecord) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    bind_row(sqlx::query(INSERT), r).execute(&mut *tx).await?;
    tx.commit().await
}

async fn per_tx_closed_loop(sync: Synchronous, producers: usize, cfg: Config) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = open_pool(&dir, sync).await;
    let next_id = Arc::new(AtomicU64::new(1));
    let window = Window::new(cfg.warmup, cfg.secs);
    let sender = pool.clone();
    let tally = closed_loop(producers, window, move || {
        let pool = sender.clone();
        let r = record(next_id.fetch_add(1, Ordering::Relaxed));
        async move { insert_own_tx(&pool, &r).await.is_ok() }
    })
    .await;
    pool.close().await;
    Figures {
        scenario: "per_tx",
        synchronous: sync_name(sync),
        producers,
        acked: tally.latency_us.len() as u64,
        secs: window.secs(),
        failed: tally.failed,
        latency_us: tally.latency_us,
        note: String::new(),
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |label: &str| filters.is_empty() || filters.iter().any(|f| label.contains(f));
    let secs: f64 = env_or("BENCH_SECS", 3.0);
    let warmup = Duration::from_millis(env_or("BENCH_WARMUP_MS", 500));
    let pipelined: u64 = env_or("BENCH_PIPELINED", 100_000);
    let producers: Vec<usize> = std::env::var("BENCH_PRODUCERS")
        .unwrap_or_else(|_| "1,64,1024".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let syncs: Vec<Synchronous> = match std::env::var("BENCH_SYNC").as_deref() {
        // PostgreSQL has no synchronous mode of ours: one pass.
        _ if postgres_server().is_some() => vec![Synchronous::Normal],
        Ok("normal") => vec![Synchronous::Normal],
        Ok("full") => vec![Synchronous::Full],
        _ => vec![Synchronous::Normal, Synchronous::Full],
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "write_path: {} CPUs, tokio workers = default, {secs} s per closed-loop scenario \
         (FULL: {:.1} s) after {} ms warm-up; temp dir {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        secs / 2.0,
        warmup.as_millis(),
        std::env::temp_dir().display(),
    );
    let mut results: Vec<Figures> = Vec::new();
    runtime.block_on(async {
        for &sync in &syncs {
            let s = sync_name(sync);
            let cfg = Config {
                secs: if sync == Synchronous::Full {
                    secs / 2.0
                } else {
                    secs
                },
                warmup,
                pipelined,
            };
            let mut run = |mut f: Figures| {
                f.print();
                results.push(f);
            };
            for &c in &producers {
                if wanted(&format!("group/{s}/c={c}")) {
                    run(group_closed_loop(sync, c, cfg).await);
                }
            }
            if wanted(&format!("pipelined/{s}/c=1")) {
                run(group_pipelined(sync, cfg).await);
            }
            for &c in &producers {
                if postgres_server().is_none() && wanted(&format!("per_tx/{s}/c={c}")) {
                    run(per_tx_closed_loop(sync, c, cfg).await);
                }
            }
        }
    });
    for f in &results {
        println!("{}", f.json());
    }
}
