#!/usr/bin/env python3
"""A/B: the same fan-out workload against two builds of the server, to measure what a change
costs on the hot path (issue 12 used it for the metrics' overhead).

Two measures:
- `--mode cpu` (default): server CPU per delivery (from /proc, as `switchboard-bench` reports
  it), the two builds alternating run after run so that drift in the machine's speed hits both
  alike; prints each run and the medians. Needs a quiet machine.
- `--mode callgrind`: the server under `valgrind --tool=callgrind`, instructions counted only
  during the workload (`callgrind_control -z` before, `-d` after) and divided by the
  deliveries. Instruction counts do not depend on what else the machine is doing, so this one
  is fair on a busy machine too; it is slow (the server runs ~50x slower), hence the low rate.

    python3 bench/ab.py --a /path/to/before/switchboard --b target/release/switchboard
    python3 bench/ab.py --a OLD --b NEW --mode callgrind --runs 2
    python3 bench/ab.py --a OLD --b NEW --mode callgrind --scenario private --receivers 20

`--scenario private` measures durable private messages between `--receivers` pairs instead of
the fan-out (one delivery per message, each stored and acknowledged after its commit): the
per-message cost of the store's path rather than the per-delivery cost of fan-out.
"""
import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import BENCH, SECRET  # noqa: E402  (one server starter for every benchmark script)
import run  # noqa: E402


def Server(binary, callgrind_dir=None):
    """A fresh switchboard from run.py's starter, optionally under callgrind (slow to start)."""
    wrap = ()
    if callgrind_dir:
        wrap = ("valgrind", "--tool=callgrind", "--collect-atstart=yes",
                f"--callgrind-out-file={callgrind_dir}/callgrind.out.%p")
    # The server runs in its own data directory: a relative path would not be found there.
    binary = Path(binary).resolve()
    return run.Server("switchboard", binary=binary, wrap=wrap, start_secs=120)


def fanout(server, args, proto, extra):
    cmd = [str(BENCH), args.scenario, "--url", server.url, "--proto", proto, "--secret", SECRET,
           "--server-pid", str(server.proc.pid), "--receivers", str(args.receivers),
           "--duration", str(args.duration)] + extra
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-500:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def one_run(binary, args, proto):
    if args.mode == "cpu":
        server = Server(binary)
        try:
            r = fanout(server, args, proto, [])
        finally:
            server.stop()
        return r["server_cpu_us_per_delivery"], r
    out_dir = tempfile.mkdtemp(prefix="sb-cg-")
    server = Server(binary, callgrind_dir=out_dir)
    try:
        pid = server.proc.pid
        # The valgrind process's pid is the client's: callgrind_control finds it by pid.
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        r = fanout(server, args, proto, ["--rate", str(args.rate)])
        subprocess.run(["callgrind_control", "-d", "workload", str(pid)], check=True,
                       capture_output=True)
        # The first dump after the zeroing: the workload alone.
        total = callgrind_total(f"{out_dir}/callgrind.out.{pid}.1")
    finally:
        server.stop()
        shutil.rmtree(out_dir, ignore_errors=True)
    return total / max(r["deliveries"], 1), r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="the server binary before")
    p.add_argument("--b", required=True, help="the server binary after")
    p.add_argument("--mode", choices=["cpu", "callgrind"], default="cpu")
    p.add_argument("--protos", default="ws,sio")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--receivers", type=int, default=200)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--rate", type=int, default=20, help="messages/s per sender (callgrind mode)")
    p.add_argument("--scenario", choices=["fanout", "private"], default="fanout",
                   help="fan-out to --receivers, or durable private messages between --receivers pairs")
    args = p.parse_args()
    unit = "µs CPU/delivery" if args.mode == "cpu" else "instructions/delivery"
    for proto in args.protos.split(","):
        results = {"a": [], "b": []}
        for i in range(args.runs):
            for side in ("a", "b") if i % 2 == 0 else ("b", "a"):
                value, r = one_run(getattr(args, side), args, proto)
                results[side].append(value)
                print(f"{proto} run {i + 1} {side}: {value:.3f} {unit} "
                      f"({r['deliveries']} deliveries, lost {r['lost']})", flush=True)
        a, b = statistics.median(results["a"]), statistics.median(results["b"])
        print(json.dumps({"proto": proto, "scenario": args.scenario, "mode": args.mode, "unit": unit,
                          "receivers": args.receivers,
                          "a_median": round(a, 3), "b_median": round(b, 3),
                          "change_percent": round((b - a) / a * 100, 2),
                          "a_runs": [round(x, 3) for x in results["a"]],
                          "b_runs": [round(x, 3) for x in results["b"]]}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
