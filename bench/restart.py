#!/usr/bin/env python3
"""A restart under load: N clients (5,000 by default) of one protocol, a publisher sending to
everyone (5/s by default), then the server goes away and comes back; `switchboard-bench restart`
measures the time until all are back, the returns' handshakes, the messages each client
missed while away and got after its return, duplicates, and the server's peak CPU and RSS.

    cargo build --release --bins
    (cd bench/peers/node-socketio && npm ci)
    python3 bench/restart.py                     # every case below, ~5 minutes
    python3 bench/restart.py --only ws10,node    # some of them
    python3 bench/restart.py --clients 1000      # smaller
    python3 bench/restart.py --rate 20 --append  # another rate, added to the same files

Cases (--only):
  ws10, ws2    switchboard /ws, RECONNECT_SPREAD_SECS 10 (the default) and 2
  sio10, sio2  switchboard Socket.IO, the same
  sio2-sioc    switchboard Socket.IO, spread 2, clients on socket.io-client's backoff (which
               ignores the hint), as official socket.io-clients on their defaults come back
  node         the Node socket.io 4.8 peer with connectionStateRecovery
  node-plain   the same peer without it (nothing is recovered: the baseline)

What "the stop" is differs, because the servers differ: switchboard is stopped with SIGTERM
(it tells each client when to come back, spread over RECONNECT_SPREAD_SECS) and started again
on the same SQLite file and address; its clients come back the client package's way (at least
the hint, then backoff with full jitter) with lastMessageId. The Node peer keeps its recovery
state in memory, which a process restart loses, so its case is the one socket.io's connection
state recovery is built for: the process stays and every connection's transport is closed
(the peer's bench-only POST /bench/cut); its clients come back socket.io-client's way (1 s,
±50 %, doubling up to 5 s) with the pid and offset socket.io gave them. Presence broadcasts
are off on both sides (PRESENCE_EVENTS=off, BENCH_PRESENCE=off): 5,000 users arriving would
otherwise measure presence fan-out (see bench/run.py --only storm), not recovery;
`--presence users` measures switchboard's return in its default presence mode (where a storm's
presence goes out as counts, docs/protocol.md section 9).

The rate: 5,000 clients at 20/s is 100,000 deliveries/s, which takes the Node peer's whole
core and 1.2 of switchboard's 2 before anything is stopped; 5/s leaves room for the return.

Writes bench/results/restart.jsonl (one JSON line per run, with the load average before it;
--append keeps the lines already there) and bench/results/restart.md (a table per client
count and rate; what follows its notes marker is kept).
"""
import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "bench" / "peers" / "node-socketio"
RESULTS = ROOT / "bench" / "results"
SECRET = "bench-secret-0123456789abcdef0123"
NOTES = "<!-- notes: kept when restart.py rewrites this file -->"

CASES = {
    "ws10": ("switchboard /ws", "ws", "switchboard", 10, None),
    "ws2": ("switchboard /ws", "ws", "switchboard", 2, None),
    "sio10": ("switchboard Socket.IO", "sio", "switchboard", 10, None),
    "sio2": ("switchboard Socket.IO", "sio", "switchboard", 2, None),
    "sio2-sioc": ("switchboard Socket.IO", "sio", "switchboard", 2, "socketio-client"),
    "node": ("node socket.io 4.8, recovery on", "sio", "node-peer", None, None),
    "node-plain": ("node socket.io 4.8, recovery off", "sio", "node-peer", None, None),
}
DEFAULT = ["ws10", "ws2", "sio10", "sio2", "node"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_case(key, opts):
    label, proto, kind, spread, policy = CASES[key]
    port = free_port()
    data = tempfile.mkdtemp(prefix="sb-restart-")
    env = {"PATH": os.environ.get("PATH", ""), "JWT_SECRET": SECRET}
    if kind == "switchboard":
        env.update({
            "BIND_ADDR": f"127.0.0.1:{port}",
            "DATABASE_URL": f"sqlite://{data}/bench.db",
            "RUST_LOG": "warn,switchboard::startup=info",
            "RECONNECT_SPREAD_SECS": str(spread),
            "PRESENCE_EVENTS": opts.presence,
            "MAX_CONNECTIONS": "19900",
        })
        server = [str(opts.server)]
    else:
        env.update({"PORT": str(port), "BENCH_ADMIN": "1", "BENCH_PRESENCE": "off",
                    "BENCH_RECOVERY": "0" if key == "node-plain" else "1"})
        server = ["node", str(PEER / "server.js")]
    cmd = [str(opts.bench), "restart", "--proto", proto, "--kind", kind, "--target", label,
           "--clients", str(opts.clients), "--rate", str(opts.rate),
           "--connect-concurrency", "256"]
    if policy:
        cmd += ["--policy", policy]
    cmd += ["--", *server]
    load = os.getloadavg()
    print(f"{key}: {label}, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    try:
        out = subprocess.run(cmd, env=env, cwd=data, capture_output=True, text=True, timeout=900)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    if out.returncode != 0:
        print(f"  ! {key}: {out.stderr.strip()[-800:]}", file=sys.stderr)
        return None
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r.update({"case": key, "spread_s": spread, "load_before": [round(v, 2) for v in load],
              "presence_events": opts.presence if kind == "switchboard" else "off"})
    print("  " + json.dumps(r), flush=True)
    return r


def fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(rows):
    lines = [
        "| case | what happened | all back | return p50 | handshake p50 / p99 | missed delivered | duplicates | lost | CPU before / peak | peak RSS | load before |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["kind"] == "switchboard":
            what = (f"SIGTERM, spread {r['spread_s']} s; down {r['down_s']:.2f} s "
                    f"(stop {r['shutdown_s']:.2f} + start {r['start_s']:.2f})")
            if r["policy"] != "package":
                what += "; socket.io-client backoff"
            if r.get("presence_events", "off") != "off":
                what += f"; presence {r['presence_events']}"
        else:
            what = f"connections cut, process stays; {fmt(r['recovered'])} recovered"
        back = (f"{r['all_back_s']:.2f} s" if r.get("all_back_s") is not None
                else f"{fmt(r['back'])} of {fmt(r['connected'])}")
        lines.append(
            f"| {r['target']} | {what} | {back} | {r['return_p50_s']:.2f} s | "
            f"{r['handshake_p50_us'] / 1000:,.1f} / {r['handshake_p99_us'] / 1000:,.1f} ms | "
            f"{fmt(r['missed_delivered'])} / {fmt(r['missed_expected'])} | {fmt(r['duplicates'])} | "
            f"{fmt(r['lost'])} | {fmt(r.get('steady_cpu_pct'))} / {fmt(r.get('peak_cpu_pct'))} % | "
            f"{fmt((r.get('peak_rss_kib') or 0) // 1024)} MiB | {r['load_before'][0]:.2f} |")
    return "\n".join(lines)


def write_md(rows, path):
    groups = {}
    for r in rows:
        groups.setdefault((r["clients"], r["rate_per_sec"]), []).append(r)
    tables = "\n\n".join(f"**{clients:,} clients, {rate:g} messages/s to everyone** "
                          f"({clients * rate:,.0f} deliveries/s):\n\n{table(rs)}"
                          for (clients, rate), rs in groups.items())
    text = f"""# Restart under load

`python3 bench/restart.py` (`switchboard-bench restart`): N clients of one protocol, one user
each, a publisher sending to everyone, then the server goes away and comes back. Loopback, 2
shared vCPUs, the load generator on the same cores; the machine had other work (the load
average before each run is in the last column). Presence broadcasts off on both sides.

- **switchboard**: SIGTERM (each client is told when to come back, spread over
  `RECONNECT_SPREAD_SECS`), then the same binary started again on the same SQLite file and
  address. Clients come back the client package's way (at least the hint, then backoff with
  full jitter) with `lastMessageId` (`/ws` query, Socket.IO auth). Publisher: `POST
  /websocket/publish` to everyone (stored; acknowledged after commit).
- **Node peer** (`bench/peers/node-socketio`, socket.io 4.8 with `connectionStateRecovery`,
  2 min): a process restart loses its in-memory state, so what is measured is the event its
  recovery covers: the process stays, every connection's transport is closed (bench-only
  `POST /bench/cut`). Clients come back socket.io-client's way (1 s ±50 %, doubling to 5 s)
  with socket.io's `pid` and `offset`. Publisher: bench-only `POST /bench/broadcast`
  (`io.emit`).

Columns: **all back**: from the SIGTERM (or the cut) until the last client had `connected`
again; **return p50**: the median client's; **handshake**: from the start of the successful
attempt to `connected`; **missed delivered**: messages acknowledged to the publisher after the
last one a client had when cut and before its return, summed over clients, and how many of
them it received after returning (replay or recovery); **duplicates**: ids received twice;
**lost**: acknowledged messages a client never received, over the whole run; **CPU**: the
server process while publishing before the stop, and its peak over 500 ms windows after it
(100 % = one core; the Node peer runs JavaScript on one); **peak RSS**: the server process
after the stop (the new one for switchboard). A client's connection attempt gives up after
20 s (socket.io-client's default `timeout`) and backs off.

{tables}

Raw lines: `bench/results/restart.jsonl`.
"""
    # Notes written by hand below the marker survive a rewrite.
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES):] if NOTES in old else NOTES + "\n"
    path.write_text(text + "\n" + notes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(DEFAULT),
                    help="comma-separated cases: " + ", ".join(CASES))
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--presence", default="off", choices=["off", "users", "diff"],
                    help="switchboard's PRESENCE_EVENTS (the peer's presence stays off)")
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--server", default=str(ROOT / "target" / "release" / "switchboard"))
    ap.add_argument("--bench", default=str(ROOT / "target" / "release" / "switchboard-bench"))
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--append", action="store_true",
                    help="keep the lines already in restart.jsonl")
    ap.add_argument("--summarize", action="store_true",
                    help="rewrite restart.md from restart.jsonl without running")
    opts = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    results = Path(opts.results)
    results.mkdir(parents=True, exist_ok=True)
    jsonl = results / "restart.jsonl"
    kept = []
    if (opts.summarize or opts.append) and jsonl.exists():
        kept = [json.loads(l) for l in jsonl.read_text().splitlines() if l.strip()]
    rows = []
    if not opts.summarize:
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in kept))
        for key in opts.only.split(","):
            r = run_case(key, opts)
            if r:
                rows.append(r)
                with open(jsonl, "a") as f:
                    f.write(json.dumps(r) + "\n")
    write_md(kept + rows, results / "restart.md")
    print(table(rows or kept))


if __name__ == "__main__":
    main()
