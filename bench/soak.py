"""Load and soak: saturate a real gunicorn with small and 1 MB logs (wrk), report throughput, latency, errors, RSS.

Run: .venv/bin/python bench/soak.py [--duration 60] [--warmup 15] [--keep-recycling]
Needs `wrk` (Debian package). Prints its figures and exits 1 when a target is missed: any error
(socket error or non-200 answer), or a worker whose RSS grew by 10% or more over the soak.

Two wrk processes run at once against the same server, one posting a small failed-build log
(a few kB), one posting a 1 MB log (the same failure buried in real system-log noise), each
with its own connections, so each reports its own throughput and p50/p90/p99. Together they keep
every sync worker busy (more connections than workers). Worker RSS is read from
/proc/<pid>/status (VmRSS) after a warm-up (caches filled) and at the end; gunicorn's periodic
worker recycling (max_requests) is switched off for the soak so the same processes are measured
from start to end (--keep-recycling keeps it, to check that recycling under load loses nothing).

Baseline in the same run: the engine alone (Diagnoser.verdict in this process) on the same two
logs, and the throughput N workers would reach on the same mix with no HTTP at all.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, make_log, noise_lines, timed  # noqa: E402
from model.diagnose import Diagnoser  # noqa: E402
from service.settings import load_settings  # noqa: E402
from tests.live import start_server  # noqa: E402

LUA = Path(__file__).with_name("soak.lua")
SMALL_SAMPLE = ROOT / "training_data" / "samples" / "no-space-left"
GROWTH_LIMIT = 0.10


def bodies() -> tuple[bytes, bytes]:
    """A small failed-build log, and a 1 MB log with the same failure buried in noise."""
    small = min((p.read_bytes() for p in sorted(SMALL_SAMPLE.glob("*.log"))), key=lambda b: abs(len(b) - 3000))
    big = make_log(1_000_000, small, noise_lines(), random.Random(7))
    return small, big


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_wrk(url: str, body: Path, connections: int, seconds: int) -> subprocess.Popen:
    env = {**os.environ, "SOAK_BODY": str(body), "SOAK_PATH": "/v1/classify"}
    return subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(LUA),
                             url], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wrk_result(process: subprocess.Popen) -> dict:
    output, _ = process.communicate(timeout=600)
    line = next((line for line in output.splitlines() if line.startswith("SOAK ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{output}")
    return json.loads(line[5:])


def run_mix(url: str, small: Path, big: Path, seconds: int, small_conns: int, big_conns: int) -> dict[str, dict]:
    processes = {"small": start_wrk(url, small, small_conns, seconds), "1 MB": start_wrk(url, big, big_conns, seconds)}
    return {name: wrk_result(process) for name, process in processes.items()}


def errors(result: dict) -> int:
    return result["non200"] + result["connect"] + result["read"] + result["write"] + result["timeout"]


def baseline(small: bytes, big: bytes, workers: int, small_share: float) -> None:
    settings = load_settings()  # the same LOGMEDIC_* settings the server reads
    diagnoser = Diagnoser.load(settings.data_dir, settings.model_dir, settings.check_stale)
    small_s = statistics.median(timed(lambda: diagnoser.verdict(small), 60))
    big_s = statistics.median(timed(lambda: diagnoser.verdict(big), 8))
    mixed = small_share * small_s + (1 - small_share) * big_s
    print(f"baseline, engine alone in this process: small {small_s * 1000:.1f} ms, 1 MB {big_s * 1000:.1f} ms; "
          f"{workers} workers on the soak's mix ({small_share:.0%} small) would do {workers / mixed:.1f} logs/s "
          f"with no HTTP at all")


def main() -> None:
    """Run the soak and print its figures."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--duration", type=int, default=60, help="soak seconds (default 60)")
    args.add_argument("--warmup", type=int, default=15, help="warm-up seconds before RSS is first read (default 15)")
    args.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="gunicorn workers (default: cores)")
    args.add_argument("--small-connections", type=int, default=4)
    args.add_argument("--big-connections", type=int, default=2)
    args.add_argument("--keep-recycling", action="store_true", help="keep gunicorn's max_requests worker recycling")
    options = args.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    small, big = bodies()
    work = Path(tempfile.mkdtemp(prefix="logmedic-soak-"))
    (work / "small.log").write_bytes(small)
    (work / "big.log").write_bytes(big)
    print(f"bodies: small {len(small)} B, big {len(big)} B; {options.workers} sync workers; "
          f"wrk: {options.small_connections} connections posting small logs + {options.big_connections} posting 1 MB logs")

    env = {"LOGMEDIC_RATE_LIMIT": "", "LOGMEDIC_LOG_LEVEL": "warning"}
    if not options.keep_recycling:
        env["GUNICORN_CMD_ARGS"] = "--max-requests 0"
    server = start_server(env, workers=options.workers)
    try:
        if server.process.poll() is not None:
            raise SystemExit(f"gunicorn did not start:\n{server.output()}")
        for body in (small, big):
            answer = server.post("/v1/classify", data=body).json()
            assert answer["category"] == "no-space-left", answer["category"]
        boot = {pid: rss_kib(pid) for pid in server.workers()}

        run_mix(server.url, work / "small.log", work / "big.log", options.warmup,
                options.small_connections, options.big_connections)
        start_pids = server.workers()
        start = {pid: rss_kib(pid) for pid in start_pids}
        cpu_start = {pid: cpu_seconds(pid) for pid in start_pids}
        began = time.monotonic()
        results = run_mix(server.url, work / "small.log", work / "big.log", options.duration,
                          options.small_connections, options.big_connections)
        elapsed = time.monotonic() - began
        end_pids = server.workers()
        end = {pid: rss_kib(pid) for pid in end_pids}
        busy = {pid: (cpu_seconds(pid) - cpu_start[pid]) / elapsed for pid in end_pids if pid in cpu_start}
        master = rss_kib(server.process.pid)
        log = server.output()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nsoak: {options.duration} s (measured {elapsed:.1f} s) after {options.warmup} s of warm-up")
    total_requests = sum(r["requests"] for r in results.values())
    total_errors = sum(errors(r) for r in results.values())
    for name, r in results.items():
        seconds = r["duration_us"] / 1e6
        print(f"  {name:>5} logs: {r['requests']:6d} requests, {r['requests'] / seconds:7.1f} req/s, "
              f"p50 {r['p50_us'] / 1000:7.1f} ms, p90 {r['p90_us'] / 1000:7.1f} ms, p99 {r['p99_us'] / 1000:7.1f} ms, "
              f"max {r['max_us'] / 1000:7.1f} ms; errors {errors(r)} (non-200 {r['non200']} {r['statuses'] or ''}, "
              f"connect {r['connect']}, read {r['read']}, write {r['write']}, timeout {r['timeout']})")
    mb = results["1 MB"]["requests"] * len(big) / 1e6 + results["small"]["requests"] * len(small) / 1e6
    print(f"  total: {total_requests} requests, {total_requests / elapsed:.1f} req/s, {mb / elapsed:.1f} MB/s of logs; "
          f"errors {total_errors}")
    baseline(small, big, options.workers, results["small"]["requests"] / max(total_requests, 1))
    print("  workers on CPU during the soak: " + ", ".join(f"pid {pid} {share:.0%}" for pid, share in busy.items())
          + f" (wrk runs on the same {os.cpu_count()} cores)")

    print("\nworker RSS (VmRSS):")
    worst = 0.0
    for pid in sorted(set(start_pids) | set(end_pids)):
        before, after = start.get(pid), end.get(pid)
        if before is None or after is None:
            state = "started during the soak" if before is None else "gone by the end (recycled)"
            print(f"  pid {pid}: {state}; start {before or '-'} KiB, end {after or '-'} KiB")
            continue
        growth = (after - before) / before
        worst = max(worst, growth)
        print(f"  pid {pid}: boot {boot.get(pid, 0) / 1024:6.1f} MiB, start {before / 1024:6.1f} MiB, "
              f"end {after / 1024:6.1f} MiB, growth over the soak {growth:+.1%} ({after - before:+d} KiB)")
    print(f"  master: {master / 1024:.1f} MiB")
    problems = [line for line in log.splitlines()
                if "Traceback" in line or "WORKER TIMEOUT" in line or "was sent SIG" in line or "[ERROR]" in line]
    print(f"  server log: {len(problems)} error lines" + (":\n    " + "\n    ".join(problems[:10]) if problems else ""))

    missed = []
    if total_errors:
        missed.append(f"{total_errors} errors")
    if worst >= GROWTH_LIMIT:
        missed.append(f"RSS grew {worst:.1%}")
    if problems:
        missed.append("errors in the server log")
    print("\nresult: " + ("targets met (0 errors, RSS growth under 10%)" if not missed else "MISSED: " + ", ".join(missed)))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
