#!/usr/bin/env python3
"""What webhooks cost the message path (README "Webhooks", "What webhooks cost").

    cargo build --release --bins
    python3 bench/webhooks.py                    # 3 runs x 20 s
    python3 bench/webhooks.py --duration 60

Runs the durable private-message scenario of bench/run.py (`switchboard-bench private
--receivers 100`: 100 closed-loop pairs over /ws, one message in flight each, every message
stored and acknowledged after its commit) against a fresh gateway on SQLite, three times:

    none       no endpoint: nothing is written to the outbox
    default    one endpoint with WEBHOOK_URL's subscription (every type but message.stored),
               whose receiver answers at once: the messages themselves write no event
    receiver   one endpoint subscribed to every event type, message.stored included, whose
               receiver answers at once (`switchboard-bench hook-server` on loopback)
    dead       the same subscription to a port nobody listens on (connection refused): the
               outbox grows, the sender backs off

and reports messages/s, the gateway's CPU per message, ack latency, the gateway's memory at
the end (VmRSS, VmHWM) and the outbox rows left waiting. Prints a Markdown table and writes it
to bench/results/webhooks.md. Only loopback addresses are used.
"""
import argparse
import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from joins import started, stop  # the same process helpers (bench/joins.py)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "target" / "release" / "switchboard-bench"
SERVER = ROOT / "target" / "release" / "switchboard"
RESULTS = ROOT / "bench" / "results"
SECRET = "bench-secret-0123456789abcdef0123"
HOOK_SECRET = "whsec_" + base64.b64encode(b"bench-webhook-key-0123456789").decode()
EVERY_EVENT = ["user.online", "user.offline", "session.opened", "session.closed",
               "room.joined", "room.left", "message.stored", "message.delivered"]


def memory_kib(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def gateway(data_dir, hook_url, events):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "JWT_SECRET": SECRET,
        "BIND_ADDR": "127.0.0.1:0",
        "DATABASE_URL": f"sqlite://{data_dir}/bench.db",
        "RUST_LOG": "warn,switchboard::startup=info",
        "RATE_LIMIT_PER_SEC": "1000000",
        "RATE_LIMIT_BURST": "1000000",
        "OUTBOUND_QUEUE_CAPACITY": "8192",
        "MAX_QUEUED_PER_USER": "100000",
    }
    if hook_url:
        hooks = Path(data_dir) / "webhooks.json"
        hooks.write_text(json.dumps({"endpoints": [{
            "name": "bench", "url": hook_url, "secret": HOOK_SECRET, "events": events}]}))
        env["WEBHOOKS_FILE"] = str(hooks)
    return started([str(SERVER)], env, r"listening on (http://[0-9.:]+)", "switchboard",
                   cwd=data_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=20, help="seconds per run")
    ap.add_argument("--receivers", type=int, default=100, help="closed-loop pairs")
    ap.add_argument("--only", default="none,default,receiver,dead",
                    help="comma-separated runs, e.g. --only dead --duration 300")
    opts = ap.parse_args()
    for binary in (BENCH, SERVER):
        if not binary.exists():
            sys.exit(f"{binary} is missing: cargo build --release --bins")

    sink, sink_url = started([str(BENCH), "hook-server"], {"PATH": os.environ.get("PATH", "")},
                             r"hook listening on (http://\S+)", "the receiver")
    default_set = [e for e in EVERY_EVENT if e != "message.stored"]
    runs = [("none", None, None), ("default", sink_url, default_set),
            ("receiver", sink_url, EVERY_EVENT), ("dead", "http://127.0.0.1:9/hook", EVERY_EVENT)]
    rows = []
    try:
        for label, url, events in runs:
            if label not in opts.only.split(","):
                continue
            data_dir = tempfile.mkdtemp(prefix="sb-webhooks-")
            server, server_url = gateway(data_dir, url, events)
            try:
                cmd = [str(BENCH), "private", "--url", server_url, "--proto", "ws",
                       "--secret", SECRET, "--server-pid", str(server.pid),
                       "--target", f"webhooks {label}", "--receivers", str(opts.receivers),
                       "--duration", str(opts.duration)]
                load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
                # The gateway's memory while the load runs: a dead endpoint's backlog must
                # stay in the database, not in memory.
                samples = []
                while load.poll() is None:
                    time.sleep(max(opts.duration / 10, 1))
                    if load.poll() is None:
                        samples.append(memory_kib(server.pid).get("VmRSS", 0))
                stdout, stderr = load.communicate(timeout=opts.duration + 300)
                out = subprocess.CompletedProcess(cmd, load.returncode, stdout, stderr)
                if out.returncode != 0:
                    sys.exit(f"{label}: {out.stderr.strip()[-500:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result["label"] = label
                result.update(memory_kib(server.pid))
                result["rss_samples_kib"] = samples
                db = sqlite3.connect(f"{data_dir}/bench.db")
                result["outbox_rows"], result["outbox_pending"] = db.execute(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL)"
                    " FROM webhook_events").fetchone()
                db.close()
                rows.append(result)
                print(json.dumps(result), file=sys.stderr)
            finally:
                stop(server)
                shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        stop(sink)

    def get(r, *keys):
        for k in keys:
            if r.get(k) is not None:
                return r[k]
        return None

    lines = [
        f"`python3 bench/webhooks.py --duration {opts.duration} --receivers {opts.receivers}`: "
        "durable private messages, closed loop, /ws, SQLite, load generator on the same cores.",
        "",
        "| webhooks | msgs/s | gateway CPU per msg | ack p50 | ack p99 | RSS during the run (first, last sample) | outbox rows (waiting) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = get(r, "messages_per_sec", "deliveries_per_sec")
        cpu = get(r, "server_cpu_us_per_message", "server_cpu_us_per_delivery")
        p50 = get(r, "ack_p50_us")
        p99 = get(r, "ack_p99_us")
        samples = r["rss_samples_kib"] or [r.get("VmRSS", 0)]
        first, last = samples[0], samples[-1]
        lines.append(
            f"| {r['label']} | {rate:,.0f} | {cpu:.1f} us | {p50 / 1000:.1f} ms | "
            f"{p99 / 1000:.1f} ms | {first / 1024:.0f}, {last / 1024:.0f} MiB | "
            f"{r['outbox_rows']:,} ({r['outbox_pending']:,}) |")
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "webhooks.md" if opts.only == ap.get_default("only") else f"webhooks-{opts.only}.md"
    (RESULTS / name.replace(",", "-")).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
