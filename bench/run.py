#!/usr/bin/env python3
"""Runs the benchmark matrix: switchboard over /ws, switchboard over Socket.IO, and two
reference peers with the same events in memory, the Node Socket.IO 4.8 one
(bench/peers/node-socketio) and a bare socketioxide one (bench/peers/socketioxide-bare), each
scenario against a fresh server, with the load generator (target/release/switchboard-bench) on
the same machine.

    cargo build --release --bins
    (cd bench/peers/node-socketio && npm ci)
    cargo build --release --manifest-path bench/peers/socketioxide-bare/Cargo.toml
    python3 bench/run.py            # the full matrix (~10 minutes)
    python3 bench/run.py --quick    # a smaller one (~3 minutes)
    # before/after a change: the same scenarios against another build of the server
    python3 bench/run.py --quick --only fanout,private --targets ws,sio \
        --server /path/to/old/switchboard --results /tmp/before
    # catch-up on a stored history of 1,000,000 messages (written into the server's file)
    python3 bench/run.py --only catchup --targets ws
    # the socketioxide peer built elsewhere (another CARGO_TARGET_DIR)
    python3 bench/run.py --quick --targets bare,sio --bare /tmp/tgt/release/socketioxide-bare

Cluster mode (three nodes on PostgreSQL + NATS against one node on SQLite and one on
PostgreSQL) has a runner of its own: bench/cluster.py (figures in bench/results/cluster.md).
A restart under load (5,000 clients, the server stopped and started again; the Node peer's
connection state recovery) has one too: bench/restart.py (bench/results/restart.md).

Targets (--targets): ws, sio (switchboard), node (the Node peer), bare (the socketioxide peer).
The default is all four, or the first three with a note when the socketioxide peer's binary
is missing. --bare names that binary; its default is $BARE_PEER_BIN, else
bench/peers/socketioxide-bare/target/release/socketioxide-bare.

Writes bench/results/results.jsonl (one JSON line per run), bench/results/summary.md (the
tables in the README) and bench/results/fanout.svg (deliveries/s, server CPU per delivery and
p99 latency against receivers). Only loopback addresses are used; every run is bounded.
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "target" / "release" / "switchboard-bench"
SERVER = ROOT / "target" / "release" / "switchboard"  # --server overrides
PEER = ROOT / "bench" / "peers" / "node-socketio"
BARE = Path(os.environ.get("BARE_PEER_BIN") or
            ROOT / "bench" / "peers" / "socketioxide-bare" / "target" / "release" / "socketioxide-bare")
RESULTS = ROOT / "bench" / "results"
SECRET = "bench-secret-0123456789abcdef0123"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 20000)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Server:
    """A fresh server process: switchboard (own temp data dir), the Node peer or the bare
    socketioxide peer (both in memory)."""

    def __init__(self, kind, data_dir=None, extra_env=None, binary=None, wrap=(), start_secs=30):
        """`binary` overrides `--server` for switchboard; `wrap` prefixes the command (e.g.
        valgrind), and `start_secs` bounds the wait for its listen line."""
        self.kind = kind
        # A given directory belongs to the caller (it outlives the server); a fresh one is
        # deleted when the server stops.
        self.owns_dir = data_dir is None
        self.dir = data_dir or tempfile.mkdtemp(prefix="sb-bench-")
        env = {"PATH": os.environ.get("PATH", ""), "JWT_SECRET": SECRET}
        if kind == "switchboard":
            env.update({
                "BIND_ADDR": "127.0.0.1:0",
                "DATABASE_URL": f"sqlite://{self.dir}/bench.db",
                "RUST_LOG": "warn,switchboard::startup=info",
                # The load generator is one client sending as fast as acks allow.
                "RATE_LIMIT_PER_SEC": "1000000",
                "RATE_LIMIT_BURST": "1000000",
                "OUTBOUND_QUEUE_CAPACITY": "8192",
                "MAX_QUEUED_PER_USER": "100000",
            })
            env.update(extra_env or {})
            cmd = [*wrap, str(binary or OPTS.server)]
        elif kind == "bare":
            env.update({"PORT": "0"})
            cmd = [str(OPTS.bare)]
        else:
            env.update({"PORT": "0"})
            cmd = ["node", str(PEER / "server.js")]
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.dir, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.url = None
        deadline = time.time() + start_secs
        log = []
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            log.append(line)
            m = re.search(r"listening on (http://[0-9.:]+)", line)
            if m:
                self.url = m.group(1)
                break
        if not self.url:
            raise RuntimeError(f"{kind} did not start: {''.join(log)}")
        # Keep draining its stderr so it never blocks on a full pipe.
        self.drain = subprocess.Popen(["cat"], stdin=self.proc.stderr, stdout=subprocess.DEVNULL)

    @property
    def pid(self):
        return str(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.drain.wait(timeout=5)
        if self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


TARGETS = {
    "switchboard /ws": ("switchboard", "ws"),
    "switchboard Socket.IO": ("switchboard", "sio"),
    "node socket.io 4.8": ("node", "sio"),
    "socketioxide bare": ("bare", "sio"),
}


def run(target, scenario, args, timeout=600, env=None):
    kind, proto = TARGETS[target]
    server = Server(kind, extra_env=env)
    try:
        cmd = [str(BENCH), scenario, "--url", server.url, "--proto", proto, "--secret", SECRET,
               "--server-pid", server.pid, "--target", target] + [str(a) for a in args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            print(f"  ! {target} {scenario} {args}: {out.stderr.strip()[-300:]}", file=sys.stderr)
            return None
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["args"] = " ".join(str(a) for a in args)
        return result
    finally:
        server.stop()


CATCHUP_READER = "catchup-reader"
CATCHUP_ROOM = "catchup-room"
CATCHUP_SIDE_ROOMS = [f"catchup-side-{n}" for n in range(9)]
# The history is written with the server stopped; retention must not prune it at start.
CATCHUP_ENV = {"MESSAGE_RETENTION_DAYS": "0", "MESSAGE_RETENTION_COUNT": "0"}


def seed_history(db, stored, missed):
    """Writes `stored` messages (ids 1..stored) into a migrated switchboard file whose server
    is stopped, in one transaction, and returns the last id the catch-up reader saw. After
    that id the reader may see exactly `missed` messages (every 5th id): mostly its room
    `catchup-room`, and a sprinkle of every other way a message reaches it (public, private
    to and from it, its role, its other rooms). Everything else is other people's traffic:
    200 rooms it is not in, private messages between others, notices to another role. Private
    messages have their (delivered) `deliveries` row, as the server writes them."""
    import sqlite3
    last_seen = stored - 5 * missed
    if last_seen < 0:
        raise ValueError("stored must be at least 5 x missed")
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

    def message(i):
        """(event, target_kind, target, sender) of id i."""
        if i > last_seen and (i - last_seen) % 5 == 0:
            j = (i - last_seen) // 5 % 100
            if j == 1:
                return "broadcast-message", "all", None, "u1"
            if j == 2:
                return "private-message", "user", CATCHUP_READER, f"u{i % 1000}"
            if j == 3:
                return "role-notification", "role", "USER", "root"
            if j == 4:
                return "room-message", "room", CATCHUP_SIDE_ROOMS[i % 9], f"u{i % 1000}"
            if j == 5:
                return "private-message", "user", f"u{i % 1000}", CATCHUP_READER
            return "room-message", "room", CATCHUP_ROOM, f"u{i % 1000}"
        if i <= last_seen and i % 10 == 0:
            return "room-message", "room", CATCHUP_ROOM, f"u{i % 1000}"
        r = i % 10
        if r < 6:
            return "room-message", "room", f"room-{i % 200}", f"u{i % 1000}"
        if r < 9:
            return "private-message", "user", f"u{(i * 7) % 1000}", f"u{i % 1000}"
        return "role-notification", "role", "ADMIN", "root"

    body = "x" * 64
    deliveries = []

    def rows():
        for i in range(1, stored + 1):
            event, kind, target, sender = message(i)
            sender_json = (f'{{"userId":"{sender}","username":"{sender}","role":"USER",'
                           f'"connectedAt":"{now}","sessions":1}}')
            extra = f',"room":"{target}"' if kind == "room" else (
                f',"type":"info","targetRole":"{target}"' if kind == "role" else "")
            payload = (f'{{"id":{i},"from":{sender_json},"message":"{body}",'
                       f'"timestamp":"{now}"{extra}}}')
            if kind == "user":
                deliveries.append((target, i, now, now))
            yield (i, event, kind, target, sender, body, "info" if kind == "role" else None,
                   payload, None, 1, now)

    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA synchronous = OFF")
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO messages (message_id, event, target_kind, target, sender_id, body, type, "
        "payload, client_msg_id, live_recipients, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        rows())
    con.executemany("INSERT INTO deliveries (user_id, message_id, queued_at, delivered_at) "
                    "VALUES (?,?,?,?)", deliveries)
    con.executemany("INSERT INTO room_members (room, user_id, joined_at) VALUES (?,?,?)",
                    [(room, CATCHUP_READER, now) for room in [CATCHUP_ROOM] + CATCHUP_SIDE_ROOMS])
    # The next run hands out ids after the history.
    con.execute("INSERT INTO counters (name, value) VALUES ('message_id_reserved_through', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)", (stored,))
    con.execute("COMMIT")
    con.close()
    return last_seen


def run_catchup(targets, stored, missed, timeout=900):
    """The catch-up scenario on each switchboard target: a file migrated by the server under
    test (so its migrations match), filled with the history while it is stopped, then a copy
    per target served by a fresh start of it."""
    template = tempfile.mkdtemp(prefix="sb-bench-history-")
    results = []
    try:
        Server("switchboard", data_dir=template, extra_env=CATCHUP_ENV).stop()
        started = time.time()
        last_seen = seed_history(f"{template}/bench.db", stored, missed)
        print(f"  wrote {stored:,} messages in {time.time() - started:.1f} s", flush=True)
        for target in targets:
            kind, proto = TARGETS[target]
            if kind != "switchboard":
                continue
            data = tempfile.mkdtemp(prefix="sb-bench-")
            shutil.copy(f"{template}/bench.db", f"{data}/bench.db")
            server = Server(kind, data_dir=data, extra_env=CATCHUP_ENV)
            try:
                args = ["--last-message-id", last_seen, "--missed", missed, "--stored", stored]
                cmd = [str(BENCH), "catchup", "--url", server.url, "--proto", proto, "--secret",
                       SECRET, "--server-pid", server.pid, "--target", target] + [str(a) for a in args]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                if out.returncode != 0:
                    print(f"  ! {target} catchup: {out.stderr.strip()[-300:]}", file=sys.stderr)
                    continue
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result["args"] = " ".join(str(a) for a in args)
                results.append(result)
            finally:
                server.stop()
                shutil.rmtree(data, ignore_errors=True)
    finally:
        shutil.rmtree(template, ignore_errors=True)
    return results


def svg_plot(points, path):
    """Three small line charts side by side: x = receivers; one line per target."""
    metrics = [("deliveries_per_sec", "deliveries / s"),
               ("server_cpu_us_per_delivery", "server CPU µs / delivery"),
               ("latency_p99_us", "p99 latency µs")]
    colors = {"switchboard /ws": "#1f77b4", "switchboard Socket.IO": "#2ca02c",
              "node socket.io 4.8": "#d62728", "socketioxide bare": "#ff7f0e"}
    w, h, pad = 300, 220, 45
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w*3+20}" height="{h+60}" '
           'font-family="sans-serif" font-size="11">']
    for i, (key, label) in enumerate(metrics):
        ox = 10 + i * w
        xs = sorted({p["receivers"] for p in points})
        ys = [p[key] for p in points if p.get(key) is not None]
        if not xs or not ys:
            continue
        ymax = max(ys) * 1.1 or 1
        def px(x):
            return ox + pad + (xs.index(x) / max(len(xs) - 1, 1)) * (w - pad - 15)
        def py(y):
            return 20 + (1 - y / ymax) * (h - 40)
        out.append(f'<text x="{ox + w/2}" y="14" text-anchor="middle" font-weight="bold">{label}</text>')
        out.append(f'<line x1="{ox+pad}" y1="{h-20}" x2="{ox+w-15}" y2="{h-20}" stroke="#999"/>')
        out.append(f'<line x1="{ox+pad}" y1="20" x2="{ox+pad}" y2="{h-20}" stroke="#999"/>')
        for frac in (0, 0.5, 1):
            y = ymax * frac
            out.append(f'<text x="{ox+pad-4}" y="{py(y)+4}" text-anchor="end">{y:,.0f}</text>' if ymax > 20 else
                       f'<text x="{ox+pad-4}" y="{py(y)+4}" text-anchor="end">{y:.1f}</text>')
        for x in xs:
            out.append(f'<text x="{px(x)}" y="{h-6}" text-anchor="middle">{x}</text>')
        for target, color in colors.items():
            series = sorted((p["receivers"], p[key]) for p in points
                            if p["target"] == target and p.get(key) is not None)
            if not series:
                continue
            d = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for j, (x, y) in enumerate(series))
            out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
            for x, y in series:
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
    for j, (target, color) in enumerate(colors.items()):
        out.append(f'<rect x="{20 + j*230}" y="{h+20}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{36 + j*230}" y="{h+30}">{target}</text>')
    out.append(f'<text x="{w*1.5}" y="{h+52}" text-anchor="middle">receivers in one room, one sender, closed loop</text>')
    out.append("</svg>")
    path.write_text("\n".join(out))


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


SCENARIOS = ["fanout", "fixed-rate", "broadcast", "private", "connect-rate", "connections",
             "presence", "catchup", "storm"]
TARGET_KEYS = {"ws": "switchboard /ws", "sio": "switchboard Socket.IO", "node": "node socket.io 4.8",
               "bare": "socketioxide bare"}
OPTS = None


def main():
    global OPTS, RESULTS, TARGETS, BENCH
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    ap.add_argument("--targets", default=None,
                    help="comma-separated: ws, sio, node, bare (default: all whose binary exists)")
    ap.add_argument("--server", default=str(SERVER), help="the switchboard binary to measure")
    ap.add_argument("--bench", default=str(BENCH), help="the switchboard-bench binary")
    ap.add_argument("--bare", default=str(BARE),
                    help="the socketioxide-bare peer binary (default: $BARE_PEER_BIN, else the "
                         "peer's own target/release)")
    ap.add_argument("--results", default=str(RESULTS), help="where results are written")
    opts = ap.parse_args()
    OPTS = opts
    RESULTS = Path(opts.results)
    BENCH = Path(opts.bench)
    wanted = set(opts.only.split(","))
    if opts.targets is None:
        opts.targets = "ws,sio,node"
        if Path(opts.bare).is_file():
            opts.targets += ",bare"
        else:
            print(f"note: no socketioxide peer at {opts.bare}, leaving target 'bare' out (build it "
                  "with cargo build --release --manifest-path "
                  "bench/peers/socketioxide-bare/Cargo.toml, or pass --bare)", flush=True)
    TARGETS = {TARGET_KEYS[k]: TARGETS[TARGET_KEYS[k]] for k in opts.targets.split(",")}
    raise_fd_limit()
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = []
    duration = 5 if opts.quick else 10
    receivers = [200, 1000] if opts.quick else [100, 200, 500, 1000]
    idle = 5000 if opts.quick else 19000
    presence_users = 1000 if opts.quick else 5000

    def record(r):
        if r:
            results.append(r)
            print("  " + json.dumps(r), flush=True)
            with open(RESULTS / "results.jsonl", "a") as f:
                f.write(json.dumps(r) + "\n")

    (RESULTS / "results.jsonl").write_text("")
    if "fanout" in wanted:
        print("fan-out, closed loop", flush=True)
        for n in receivers:
            for target in TARGETS:
                record(run(target, "fanout", ["--receivers", n, "--duration", duration]))
    # Latency at the same offered rate: half of what the Node peer sustained closed-loop.
    node200 = [r for r in results if r["scenario"] == "fanout" and r["target"].startswith("node")
               and r["receivers"] == 200]
    rate = max(10, int(node200[0]["messages_per_sec"] / 2)) if node200 else 100
    if "fixed-rate" in wanted:
        print(f"fan-out at a fixed rate of {rate} msg/s (half the Node peer's), 200 receivers",
              flush=True)
        for target in TARGETS:
            r = run(target, "fanout", ["--receivers", 200, "--rate", rate, "--duration", duration])
            if r:
                r["scenario"] = "fanout-fixed-rate"
            record(r)
    if "broadcast" in wanted:
        print("broadcast", flush=True)
        for target in TARGETS:
            record(run(target, "broadcast", ["--receivers", 200, "--duration", duration]))
    if "private" in wanted:
        print("private", flush=True)
        for target in TARGETS:
            record(run(target, "private", ["--receivers", 100, "--duration", duration]))
            # The same pairs with 16 messages in flight each (pipelined sends).
            r = run(target, "private", ["--receivers", 100, "--window", 16, "--duration", duration])
            if r:
                r["scenario"] = "private-16"
            record(r)
    if "connect-rate" in wanted:
        print("connect rate", flush=True)
        for target in TARGETS:
            record(run(target, "connect-rate", ["--total", 5000 if not opts.quick else 2000]))
    if "connections" in wanted:
        print(f"idle connections ({idle})", flush=True)
        for target in TARGETS:
            # MAX_CONNECTIONS (10,000 by default) would refuse the rest with 503.
            record(run(target, "connections",
                       ["--connections", idle, "--users", 100, "--hold", 5],
                       env={"MAX_CONNECTIONS": "19900"}))
    if "presence" in wanted:
        print(f"presence ({presence_users} users joining one by one)", flush=True)
        for target in [t for t in ["switchboard /ws", "node socket.io 4.8", "socketioxide bare"]
                       if t in TARGETS]:
            record(run(target, "presence", ["--users", presence_users], timeout=900))

    if "catchup" in wanted:
        print("catch-up: 100,000 missed of 1,000,000 stored (switchboard only)", flush=True)
        for r in run_catchup(TARGETS, 1_000_000, 100_000):
            record(r)

    if "storm" in wanted:
        # A restart's reconnect storm; then the fd cap at twice the rate, in both presence modes.
        storms = [(5000, 1000, "users", ["ws", "sio", "node", "bare"])]
        if not opts.quick:
            storms += [(19000, 2000, "users", ["ws", "sio"]), (19000, 2000, "diff", ["ws", "sio"])]
        for users, rate, mode, keys in storms:
            print(f"reconnect storm: {users} users at {rate}/s, PRESENCE_EVENTS={mode}", flush=True)
            for key in keys:
                target = TARGET_KEYS[key]
                if target not in TARGETS:
                    continue
                # The peers keep nothing: no queued messages to wait for.
                queued = 0 if key in ("node", "bare") else 1
                r = run(target, "storm", ["--users", users, "--rate", rate, "--queued", queued,
                                          "--hold", 5, "--connect-concurrency", 256],
                        timeout=900, env={"PRESENCE_EVENTS": mode, "MAX_CONNECTIONS": "19900"})
                if r:
                    r["presence_events"] = mode
                record(r)

    write_summary(results)


def write_summary(results):
    lines = []
    by = lambda scen: [r for r in results if r["scenario"] == scen]
    lines.append("| scenario | target | deliveries/s | server CPU µs/delivery | p50 µs | p99 µs | lost | load gen CPU µs/delivery |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for scen in ["fanout", "fanout-fixed-rate", "broadcast", "private", "private-16"]:
        for r in by(scen):
            label = f"{scen} {r['receivers']} recv" + (f" @ {r['rate_per_sender']}/s" if scen == "fanout-fixed-rate" else "")
            lines.append(f"| {label} | {r['target']} | {fmt(r['deliveries_per_sec'], 0)} | "
                         f"{fmt(r.get('server_cpu_us_per_delivery'), 2)} | {fmt(r['latency_p50_us'])} | "
                         f"{fmt(r['latency_p99_us'])} | {r['lost']} | {fmt(r.get('loadgen_cpu_us_per_delivery'), 2)} |")
    lines.append("")
    lines.append("| scenario | target | figures |")
    lines.append("|---|---|---|")
    for r in by("connect-rate"):
        lines.append(f"| connect rate | {r['target']} | {fmt(r['handshakes_per_sec'], 0)} handshakes/s, "
                     f"p50 {fmt(r['connect_p50_us'])} µs, p99 {fmt(r['connect_p99_us'])} µs, "
                     f"server CPU {fmt(r.get('server_cpu_us_per_handshake'))} µs/handshake |")
    for r in by("connections"):
        lines.append(f"| {r['connections']:,} idle connections | {r['target']} | "
                     f"{fmt(r.get('rss_per_connection_bytes'))} B RSS/connection, "
                     f"RSS {fmt(r.get('rss_after_kib'))} KiB, connect p99 {fmt(r['connect_p99_us'])} µs, "
                     f"/healthz while holding p50 {fmt(r['probe_http_p50_us'])} µs max {fmt(r['probe_http_max_us'])} µs |")
    for r in by("presence"):
        lines.append(f"| presence, {r['users']:,} users | {r['target']} | {fmt(r['presence_frames_expected'])} "
                     f"user-connected frames in {fmt(r['seconds'])} s, server CPU {fmt(r.get('server_cpu_s'))} s "
                     f"({fmt(r.get('server_cpu_us_per_presence_frame'), 2)} µs/frame) |")
    for r in by("storm"):
        lines.append(f"| storm, {r['users']:,} users at {fmt(r['rate_per_sec'], 0)}/s, presence "
                     f"{r.get('presence_events', 'users')} | {r['target']} | {fmt(r['connected'])} connected, "
                     f"{fmt(r['timed_out'])} timed out, handshake p50 {fmt(r['handshake_p50_us'])} µs "
                     f"p99 {fmt(r['handshake_p99_us'])} µs, all missed messages in "
                     f"{fmt(r.get('all_caught_up_s'), 2)} s, {fmt(r['alive_after_hold'])} alive after the hold, "
                     f"{fmt(r['frames_received'])} frames ({fmt(r.get('presence_summaries'))} presence summaries), "
                     f"{fmt(r.get('busy_retries'))} busy retries, server CPU {fmt(r.get('server_cpu_s'))} s |")
    for r in by("catchup"):
        lines.append(f"| catch-up, {r['missed']:,} missed of {r['stored_messages']:,} stored | {r['target']} | "
                     f"{fmt(r['replayed_per_sec'], 0)} replayed msg/s "
                     f"(server CPU {fmt(r.get('server_cpu_us_per_replayed'), 2)} µs/msg), "
                     f"`sync` page of 1,000 p50 {fmt(r['page_p50_us'] / 1000)} ms, "
                     f"p99 {fmt(r['page_p99_us'] / 1000)} ms |")
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n")
    fan = [r for r in results if r["scenario"] == "fanout"]
    svg_plot(fan, RESULTS / "fanout.svg")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--summarize":
        rows = [json.loads(l) for l in (RESULTS / "results.jsonl").read_text().splitlines() if l.strip()]
        write_summary(rows)
    else:
        main()
