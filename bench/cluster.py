#!/usr/bin/env python3
"""The cluster benchmark (issue 13, item 6): switchboard-bench against three nodes of one
cluster (PostgreSQL + NATS), compared with one node on SQLite (the default store) and one
node on PostgreSQL without NATS.

    cargo build --release --bins
    python3 bench/cluster.py                      # ~2-3 minutes, prints a table
    python3 bench/cluster.py --jsonl /tmp/c.jsonl # also keep the JSON lines
    python3 bench/cluster.py --configs cluster --duration 5

Each workload gets fresh server processes and, on PostgreSQL, a fresh database
(`sb_bench_<random>`, dropped afterwards) and a fresh NATS subject prefix:

- fanout: `--receivers` (200) receivers in one room, spread round-robin over the nodes; one
  closed-loop sender on node 1 (each message sent once the previous one's ack came, i.e. once
  it is committed). Latency is send timestamp -> receipt, reported for receivers on the
  sender's node and on the others (cross-node).
- private: `--pairs` (100) closed-loop pairs, every sender on node 1 and, in the cluster, every
  receiver on node 2 or 3 (`--remote-receivers`); an ack means the message is committed.

Server CPU is utime+stime from /proc/<pid>/stat over the measured window, summed over the
nodes; the whole PostgreSQL server's and nats-server's CPU over the same window are reported
beside it (they are shared services: anything else using them on the machine counts too).
The load generator also counts, per connection, message ids not above the previous one
(out of order) and senders' own messages delivered back to them (own echoes). After each
workload the nodes are stopped, their logs are scanned for WARN/ERROR lines and for the
sequencer's reads of messages from the database (gap fills, a debug line), and the database
is checked: messages stored, holes in the ids, private deliveries left undelivered. Loopback only; every step is bounded in time.
"""
import argparse
import json
import os
import re
import resource
import secrets
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789abcdef0123"
CONFIGS = {
    "cluster": "3 nodes, PostgreSQL + NATS",
    "sqlite": "1 node, SQLite",
    "pg": "1 node, PostgreSQL, no NATS",
}
OPTS = None


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))


def psql(sql, db="postgres", timeout=30):
    out = subprocess.run(["psql", OPTS.pg_admin_url.rsplit("/", 1)[0] + "/" + db, "-XtAq",
                          "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"psql {sql!r}: {out.stderr.strip()}")
    return out.stdout.strip()


class Node:
    """One switchboard process, its stderr in a file of its own."""

    def __init__(self, name, env, workdir):
        self.name = name
        self.log_path = Path(workdir) / f"{name}.log"
        full = {
            "PATH": os.environ.get("PATH", ""),
            "JWT_SECRET": SECRET,
            "BIND_ADDR": "127.0.0.1:0",
            "RUST_LOG": OPTS.rust_log,
            # One load-generating client per user, sending as fast as acks allow.
            "RATE_LIMIT_PER_SEC": "1000000",
            "RATE_LIMIT_BURST": "1000000",
            "OUTBOUND_QUEUE_CAPACITY": "8192",
            "MAX_QUEUED_PER_USER": "100000",
        }
        full.update(env)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(OPTS.server)], env=full, cwd=workdir,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        self.url = None
        deadline = time.time() + 30
        while time.time() < deadline and self.proc.poll() is None:
            m = re.search(r"listening on (http://[0-9.:]+)", self.log_path.read_text())
            if m:
                self.url = m.group(1)
                break
            time.sleep(0.05)
        if not self.url:
            self.stop()
            raise RuntimeError(f"{name} did not start:\n{self.log_path.read_text()[-2000:]}")

    @property
    def pid(self):
        return str(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()

    def gap_fills(self):
        """Holes the sequencer filled from the database (logged at debug level only)."""
        return self.log_path.read_text(errors="replace").count(
            "read messages the bus did not bring")

    def problems(self):
        """WARN and ERROR lines of its log (timestamps cut), in order."""
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if re.search(r"\b(WARN|ERROR)\b", line):
                lines.append(re.sub(r"^\S+\s+", "", line.strip()))
        return lines


class Setup:
    """The servers of one configuration for one workload, and their database."""

    def __init__(self, config):
        self.config = config
        self.dir = tempfile.mkdtemp(prefix="sb-cluster-bench-")
        self.db = None
        self.nodes = []
        try:
            if config == "sqlite":
                self.nodes.append(Node("n1", {"DATABASE_URL": f"sqlite://{self.dir}/bench.db"},
                                       self.dir))
                return
            self.db = f"sb_bench_{secrets.token_hex(4)}"
            psql(f"CREATE DATABASE {self.db}")
            env = {"DATABASE_URL": OPTS.pg_admin_url.rsplit("/", 1)[0] + "/" + self.db}
            count = 1
            if config == "cluster":
                env.update({"NATS_URL": OPTS.nats_url,
                            "NATS_SUBJECT_PREFIX": f"sbbench{secrets.token_hex(4)}"})
                count = OPTS.nodes
            # One after the other: the first migrates the fresh database.
            for i in range(count):
                name = f"n{i + 1}"
                self.nodes.append(Node(name, {**env, "NODE_ID": name}, self.dir))
            if config == "cluster":
                # Let the nodes hear each other's hello and user lists.
                time.sleep(1.5)
        except BaseException:
            self.close()
            raise

    def close(self):
        for node in self.nodes:
            node.stop()
        if self.db:
            try:
                psql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
            except Exception as e:  # keep going: the report says so
                print(f"  ! could not drop {self.db}: {e}", file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)

    def check_store(self):
        """After the nodes stopped: messages stored, holes between the lowest and highest
        id, private deliveries never marked delivered."""
        q = ("SELECT count(*), coalesce(min(message_id), 0), coalesce(max(message_id), 0), "
             "(SELECT count(*) FROM deliveries WHERE delivered_at IS NULL) FROM messages")
        if self.db:
            row = psql(q, db=self.db).split("|")
        else:
            con = sqlite3.connect(f"{self.dir}/bench.db")
            row = con.execute(q).fetchone()
            con.close()
        count, low, high, undelivered = (int(v) for v in row)
        checked = {"db_messages": count,
                   "db_id_holes": (high - low + 1 - count) if count else 0,
                   "db_undelivered": undelivered}
        if self.db:
            # What PostgreSQL did for the whole run (set-up included), from its statistics,
            # which the nodes' backends flushed as they exited.
            row = psql("SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, "
                       "tup_deleted, tup_fetched FROM pg_stat_database "
                       "WHERE datname = current_database()", db=self.db).split("|")
            checked["pg_stats"] = dict(zip(["commits", "rollbacks", "inserted", "updated",
                                            "deleted", "fetched"], (int(v) for v in row)))
            tables = psql("SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, seq_scan, "
                          "idx_scan FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd > 0 "
                          "ORDER BY relname", db=self.db)
            checked["pg_tables"] = {
                t[0]: dict(zip(["ins", "upd", "hot_upd", "seq_scan", "idx_scan"],
                               (int(v or 0) for v in t[1:])))
                for t in (line.split("|") for line in tables.splitlines() if line)}
        return checked


class QuerySampler:
    """Samples the active queries of a database every `every` seconds (psql in a thread):
    where PostgreSQL's time goes, roughly. It costs some CPU itself; only with
    --sample-queries."""

    def __init__(self, db, every=0.05):
        import collections
        import threading
        self.counts = collections.Counter()
        self.samples = 0
        self.stop_flag = threading.Event()
        sql = ("SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, '-') "
               "|| ' ' || regexp_replace(left(query, 90), '\\s+', ' ', 'g') FROM pg_stat_activity "
               f"WHERE datname = '{db}' AND state = 'active' AND pid <> pg_backend_pid()")

        def loop():
            while not self.stop_flag.wait(every):
                try:
                    rows = psql(sql, db=db, timeout=5)
                except Exception:
                    continue
                self.samples += 1
                for line in rows.splitlines():
                    self.counts[line] += 1

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=10)
        return {"samples": self.samples,
                "top": [[q, n] for q, n in self.counts.most_common(12)]}


def loadavg():
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_one(config, scenario):
    setup = Setup(config)
    result = None
    try:
        urls = ",".join(n.url for n in setup.nodes)
        pids = ",".join(n.pid for n in setup.nodes)
        args = [str(OPTS.bench), scenario, "--servers", urls, "--server-pid", pids,
                "--proto", OPTS.proto, "--secret", SECRET, "--target", CONFIGS[config],
                "--aux-process", "postgres,nats-server", "--duration", str(OPTS.duration)]
        if scenario == "fanout":
            args += ["--receivers", str(OPTS.receivers)]
        else:
            args += ["--receivers", str(OPTS.pairs), "--window", str(OPTS.window)]
            if len(setup.nodes) > 1:
                args += ["--remote-receivers"]
        load = loadavg()
        sampler = QuerySampler(setup.db) if OPTS.sample_queries and setup.db else None
        try:
            out = subprocess.run(args, capture_output=True, text=True,
                                 timeout=OPTS.duration + 120)
        finally:
            sampled = sampler.stop() if sampler else None
        # Warnings while the nodes ran, before those of their shutdown.
        during = {n.name: len(n.problems()) for n in setup.nodes}
        if out.returncode != 0:
            print(f"  ! {config} {scenario}: {out.stderr.strip()[-500:]}", file=sys.stderr)
        else:
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["config"] = config
            result["loadavg_before"] = load
            result["command"] = shlex.join(a if a != urls else "<node urls>" for a in args[1:])
            if sampled:
                result["pg_active_queries"] = sampled
    finally:
        for node in setup.nodes:
            node.stop()
        try:
            checked = setup.check_store()
        except Exception as e:
            checked = {"db_check_error": str(e)}
        problems = {n.name: n.problems() for n in setup.nodes}
        fills = {n.name: n.gap_fills() for n in setup.nodes}
        if OPTS.keep_logs:
            Path(OPTS.keep_logs).mkdir(parents=True, exist_ok=True)
            for n in setup.nodes:
                shutil.copy(n.log_path, Path(OPTS.keep_logs) / f"{config}-{scenario}-{n.name}.log")
        setup.close()
    if result is None:
        for name, lines in problems.items():
            for line in lines[:10]:
                print(f"    {name}: {line}", file=sys.stderr)
        return None
    result.update(checked)
    result["log_problems"] = {k: len(v) for k, v in problems.items() if v}
    result["log_problems_while_running"] = {k: v for k, v in during.items() if v}
    result["log_samples"] = {k: v[:5] for k, v in problems.items() if v}
    if "sequencer=debug" in OPTS.rust_log:
        result["gap_fills"] = fills
    return result


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}" if isinstance(v, float) or digits else f"{v:,}"


def table(results):
    lines = ["| configuration | fan-out deliveries/s | server CPU µs/delivery (sum over nodes) "
             "| + PostgreSQL + NATS µs/delivery | p50 / p99 ms (cross-node) | p50 / p99 ms "
             "(same node) | private msgs/s (acked = committed) | private CPU µs/msg (nodes; "
             "+ PG + NATS) | private p50 / p99 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for config in OPTS.configs:
        fan = next((r for r in results if r["config"] == config and r["scenario"] == "fanout"), None)
        prv = next((r for r in results if r["config"] == config and r["scenario"] == "private"), None)
        cells = [CONFIGS[config]]
        if fan:
            aux = fan.get("aux_cpu_us_per_delivery_postgres", 0) + \
                fan.get("aux_cpu_us_per_delivery_nats-server", 0)
            cells += [fmt(fan["deliveries_per_sec"]),
                      fmt(fan.get("server_cpu_us_per_delivery"), 2),
                      fmt(fan.get("server_cpu_us_per_delivery", 0) + aux, 2)]
            if "latency_cross_node_p50_us" in fan:
                cells += [f"{fan['latency_cross_node_p50_us'] / 1000:.2f} / "
                          f"{fan['latency_cross_node_p99_us'] / 1000:.2f}",
                          f"{fan['latency_same_node_p50_us'] / 1000:.2f} / "
                          f"{fan['latency_same_node_p99_us'] / 1000:.2f}"]
            else:
                cells += ["–", f"{fan['latency_p50_us'] / 1000:.2f} / "
                               f"{fan['latency_p99_us'] / 1000:.2f}"]
        else:
            cells += ["failed" if "fanout" in OPTS.workloads else "–"] + ["–"] * 4
        if prv:
            aux = prv.get("aux_cpu_us_per_delivery_postgres", 0) + \
                prv.get("aux_cpu_us_per_delivery_nats-server", 0)
            cpu = prv.get("server_cpu_us_per_delivery")
            cells += [fmt(prv["acked_per_sec"]),
                      f"{fmt(cpu, 1)}; {fmt((cpu or 0) + aux, 1)}",
                      f"{prv['latency_p50_us'] / 1000:.2f} / {prv['latency_p99_us'] / 1000:.2f}"]
        else:
            cells += ["failed" if "private" in OPTS.workloads else "–", "–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    checks = ["", "| configuration | workload | sent | acked | delivered | lost | dup | out of "
              "order | own echoes | reads from the db (gap fills) | db messages | db id holes | db undelivered | WARN/ERROR lines while running; "
              "in all | load avg |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        checks.append(
            f"| {CONFIGS[r['config']]} | {r['scenario']} | {fmt(r['sent'])} | {fmt(r['acked'])} | "
            f"{fmt(r['deliveries'])} | {r['lost']} | {r['duplicated']} | {r['out_of_order']} | "
            f"{r.get('own_echoes', '–')} | {sum(r.get('gap_fills', {}).values()) if 'gap_fills' in r else '–'} | "
            f"{fmt(r.get('db_messages'))} | {r.get('db_id_holes', '–')} | "
            f"{r.get('db_undelivered', '–')} | {sum(r['log_problems_while_running'].values())}; "
            f"{sum(r['log_problems'].values())} | {r['loadavg_before']:.2f} |")
    return "\n".join(lines + checks)


def main():
    global OPTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="cluster,sqlite,pg",
                    help="comma-separated, run in this order: " + ", ".join(CONFIGS))
    ap.add_argument("--workloads", default="fanout,private")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--receivers", type=int, default=200, help="fan-out receivers")
    ap.add_argument("--pairs", type=int, default=100, help="private message pairs")
    ap.add_argument("--window", type=int, default=1,
                    help="private: messages a sender keeps waiting for their ack")
    ap.add_argument("--duration", type=int, default=10, help="seconds of sending per workload")
    ap.add_argument("--proto", default="ws", choices=["ws", "sio"])
    ap.add_argument("--server", default=str(ROOT / "target" / "release" / "switchboard"))
    ap.add_argument("--bench", default=str(ROOT / "target" / "release" / "switchboard-bench"))
    ap.add_argument("--pg-admin-url", default=os.environ.get(
        "BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a database on the server to create the per-run databases from")
    ap.add_argument("--nats-url", default=os.environ.get("BENCH_NATS_URL",
                                                         "nats://127.0.0.1:4222"))
    ap.add_argument("--jsonl", help="append every run's JSON line to this file")
    ap.add_argument("--rust-log", default="warn,switchboard::startup=info,switchboard::cluster=info,"
                    "switchboard::cluster::sequencer=debug",
                    help="the nodes' RUST_LOG; with switchboard::cluster::sequencer=debug (the "
                         "default) the holes filled from the database are counted (gap_fills)")
    ap.add_argument("--keep-logs", help="copy the nodes' logs into this directory")
    ap.add_argument("--sample-queries", action="store_true",
                    help="sample PostgreSQL's active queries during each workload (costs CPU)")
    OPTS = ap.parse_args()
    OPTS.configs = OPTS.configs.split(",")
    raise_fd_limit()
    print(f"receivers {OPTS.receivers}, pairs {OPTS.pairs} (window {OPTS.window}), "
          f"{OPTS.duration} s per workload, {OPTS.proto}, nodes {OPTS.nodes}", flush=True)
    results = []
    started = time.time()
    for config in OPTS.configs:
        for scenario in OPTS.workloads.split(","):
            print(f"{CONFIGS[config]}: {scenario}", flush=True)
            r = run_one(config, scenario)
            if r:
                results.append(r)
                print("  " + json.dumps(r), flush=True)
                if OPTS.jsonl:
                    with open(OPTS.jsonl, "a") as f:
                        f.write(json.dumps(r) + "\n")
    print(f"\n{time.time() - started:.0f} s\n")
    print(table(results))


if __name__ == "__main__":
    main()
