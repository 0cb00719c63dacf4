#!/usr/bin/env python3
"""The cost of one join under each room rule (README "Access control", "What a join costs").

    cargo build --release --bins
    python3 bench/joins.py                      # 10 connections x 300 joins per rule
    python3 bench/joins.py --connections 1 --joins 2000

Starts the join hook of the load generator (`switchboard-bench hook-server`: `{"allow": true}`
at once, on loopback), then a fresh gateway per hook cache setting, with one policy file that
sends each rule's rooms to it by prefix:

    anyone-*  "join": "anyone"
    token-*   "join": "token"       (the token's rooms claim: 10 patterns, the granting one last)
    roles-*   "join": {"roles": [3 roles]}
    hook-*    "join": "hook"        (JOIN_HOOK_CACHE_SECS=0: uncached; 30: cached)

and runs `switchboard-bench joins --rule ...` against it: C connections, one user each, each
timing J `join-room` -> `joined-room` round trips in a closed loop (with an untimed
`leave-room` after each, so every join is a new membership). Prints a Markdown table and
writes it to bench/results/joins.md. Only loopback addresses are used.
"""
import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "target" / "release" / "switchboard-bench"
SERVER = ROOT / "target" / "release" / "switchboard"
RESULTS = ROOT / "bench" / "results"
SECRET = "bench-secret-0123456789abcdef0123"
HOOK_SECRET = "whsec_" + base64.b64encode(b"bench-join-hook-key-0123456789").decode()

POLICIES = {"rooms": [
    {"match": "anyone-*", "join": "anyone"},
    {"match": "token-*", "join": "token"},
    {"match": "roles-*", "join": {"roles": ["ADMIN2", "MOD", "STAFF"]}},
    {"match": "hook-*", "join": "hook"},
]}

# (label, --rule, JOIN_HOOK_CACHE_SECS)
RUNS = [
    ("anyone", "anyone", "0"),
    ("token (claim of 10 patterns)", "token", "0"),
    ('{"roles": [3 roles]}', "roles", "0"),
    ("hook, uncached", "hook", "0"),
    ("hook, cached", "hook", "30"),
]


def started(cmd, env, pattern, what, cwd=None):
    """Starts `cmd`, waits for `pattern` on its stderr; the process and the match."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    log = []
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        log.append(line)
        m = re.search(pattern, line)
        if m:
            # Keep draining its stderr so it never blocks on a full pipe.
            subprocess.Popen(["cat"], stdin=proc.stderr, stdout=subprocess.DEVNULL)
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError(f"{what} did not start: {''.join(log)}")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def gateway(hook_url, cache_secs, data_dir):
    policies = Path(data_dir) / "policies.json"
    policies.write_text(json.dumps(POLICIES))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "JWT_SECRET": SECRET,
        "BIND_ADDR": "127.0.0.1:0",
        "DATABASE_URL": f"sqlite://{data_dir}/bench.db",
        "RUST_LOG": "warn,switchboard::startup=info",
        "RATE_LIMIT_PER_SEC": "1000000",
        "RATE_LIMIT_BURST": "1000000",
        "ROOM_POLICIES": str(policies),
        "JOIN_HOOK_URL": hook_url,
        "JOIN_HOOK_SECRET": HOOK_SECRET,
        "JOIN_HOOK_CACHE_SECS": cache_secs,
    }
    return started([str(SERVER)], env, r"listening on (http://[0-9.:]+)", "switchboard",
                   cwd=data_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--joins", type=int, default=300, help="timed joins per connection")
    opts = ap.parse_args()
    for binary in (BENCH, SERVER):
        if not binary.exists():
            sys.exit(f"{binary} is missing: cargo build --release --bins")

    hook, hook_url = started([str(BENCH), "hook-server"], {"PATH": os.environ.get("PATH", "")},
                             r"hook listening on (http://\S+)", "the hook")
    rows = []
    try:
        for label, rule, cache in RUNS:
            data_dir = tempfile.mkdtemp(prefix="sb-joins-")
            server, url = gateway(hook_url, cache, data_dir)
            try:
                cmd = [str(BENCH), "joins", "--url", url, "--secret", SECRET,
                       "--server-pid", str(server.pid), "--rule", rule,
                       "--connections", str(opts.connections), "--joins", str(opts.joins)]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                if out.returncode != 0:
                    sys.exit(f"{label}: {out.stderr.strip()[-500:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result["label"] = label
                rows.append(result)
                print(json.dumps(result), file=sys.stderr)
            finally:
                stop(server)
                shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        stop(hook)

    lines = [
        f"`python3 bench/joins.py --connections {opts.connections} --joins {opts.joins}` "
        f"({opts.connections} connections joining at once, {opts.connections * opts.joins} "
        f"timed joins per rule, {os.cpu_count()} cores)",
        "",
        "| join rule | median | p99 | joins/s (each with a leave) | server CPU per join + leave |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['join_p50_us']} µs | {r['join_p99_us']} µs | "
            f"{r['joins_per_sec']:,.0f} | {r.get('server_cpu_us_per_join_and_leave', '?')} µs |")
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "joins.md").write_text(table)


if __name__ == "__main__":
    main()
