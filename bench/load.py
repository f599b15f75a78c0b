"""HTTP load benchmark: POST /v1/classify with a 10 KB log against GET /healthz on the same gunicorn.

Run: .venv/bin/python bench/load.py [--seconds 5] [--rounds 3] [--rate 100] [--open-seconds 20] [--profile] [--nice -10]
Starts its own gunicorn (service/gunicorn.conf.py, one worker per core, rate limit off) on a loopback
port, drives it with `wrk` (Debian package `wrk`) for throughput and closed-loop latency, then with an
open-loop generator (below; wrk cannot pace requests) at a fixed rate for the latency a steady stream of
CI jobs sees. A third closed-loop row posts the same log to a route that does everything but the engine
(see `application`), the ceiling any engine speed-up could reach. A fourth posts 64 different 10 KB logs
in turn (failures of every category, and `unknown` ones the model has to read through), so that no cache
sees the same text twice in a row; the open loop posts those too. Prints its figures and the issue's
targets; asserts nothing.

Targets (issue 3): classify throughput >= 50% of /healthz throughput for 10 KB logs; p99 < 50 ms at
100 requests/s on a 2-core machine. The client shares the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import LOGHUB, ROOT, SAMPLES, noise_lines  # noqa: E402
from tests.live import CONFIG, GUNICORN, Server, free_port  # noqa: E402

LOG_SIZE = 10 * 1024
FAILURE_SAMPLE = SAMPLES / "no-space-left" / "buildkit-ingest-write-no-space-compose-build.log"
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
local f = assert(io.open("{path}", "rb"))
wrk.body = f:read("*a")
f:close()
"""
# Many different logs, one after the other: no cache in the engine (RE2's lazily built automata, the
# per-word n-gram cache, CPU caches) sees the same text twice in a row, as with real CI traffic.
LUA_MIX = """local bodies = {{}}
for path in io.lines("{listing}") do
  local f = assert(io.open(path, "rb"))
  bodies[#bodies + 1] = f:read("*a")
  f:close()
end
local n = 0
request = function()
  n = n % #bodies + 1
  return wrk.format("POST", nil, {{["Content-Type"] = "text/plain"}}, bodies[n])
end
"""
MIX_LOGS = 64
BUILD_HEAD = """#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 1.21kB done
#1 DONE 0.0s

#2 [internal] load metadata for docker.io/library/eclipse-temurin:17-jdk
#2 DONE 1.2s

#3 [internal] load .dockerignore
#3 transferring context: 2B done
#3 DONE 0.0s

#4 [1/6] FROM docker.io/library/eclipse-temurin:17-jdk@sha256:4f2c1a0b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b
#4 CACHED

#5 [internal] load build context
#5 transferring context: 3.42MB 0.3s done
#5 DONE 0.3s

#6 [2/6] WORKDIR /srv/app
#6 CACHED

#7 [3/6] COPY . .
#7 DONE 0.4s

#8 [4/6] RUN ./gradlew --no-daemon test
"""


def application():
    """The service's app with the per-client rate limit off (one address would hit it) unless BENCH_RATE_LIMIT
    sets one; everything else as `service.wsgi:application()` builds it from LOGMEDIC_* variables.

    One extra route, for this benchmark only: `POST /bench/no-engine` reads the body as `/v1/classify` does
    and sends back a JSON answer computed once, so the HTTP, body and serialisation cost can be told apart
    from the engine's."""
    from flask import Response, request

    from service import answers, create_app
    from service.body import read_submission
    from service.schemas import ClassifyRequest

    app = create_app({"rate_limit": os.environ.get("BENCH_RATE_LIMIT", "")})
    answer: list[bytes] = []

    @app.post("/bench/no-engine")
    def no_engine():
        submitted = read_submission(request, app.config["LOGMEDIC"].max_body_bytes, ClassifyRequest)
        if not answer:
            answer.append(answers.respond(answers.diagnose(submitted, "en"), "json").get_data())
        return Response(answer[0], mimetype="application/json")

    return app


def start(workers: int, rate_limit: str, own_session: bool = True) -> Server:
    """gunicorn with service/gunicorn.conf.py on a loopback port, once /healthz answers."""
    port = free_port()
    log = tempfile.NamedTemporaryFile("wb", prefix="logmedic-load-", suffix=".log", delete=False)
    env = {**os.environ, "LOGMEDIC_HOST": "127.0.0.1", "LOGMEDIC_PORT": str(port), "LOGMEDIC_WORKERS": str(workers),
           "LOGMEDIC_LOG_LEVEL": "warning", "BENCH_RATE_LIMIT": rate_limit}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen([str(GUNICORN), "--config", str(CONFIG), "bench.load:application()"], cwd=ROOT,
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=own_session)
    server = Server(process, f"http://127.0.0.1:{port}", Path(log.name))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if len(server.workers()) == workers and server.get("/healthz", timeout=1).status_code == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"gunicorn did not start:\n{server.output()}")


def build_log(size: int, seed: int = 3, sample: Path = FAILURE_SAMPLE) -> bytes:
    """A failing BuildKit build of about `size` bytes: a test step printing real system-log lines
    (loghub), then the failure of a team sample (training_data/samples), as CI would capture it."""
    rng = random.Random(seed)
    noise = noise_lines()
    failure = sample.read_bytes().strip().splitlines()[-12:]
    head = BUILD_HEAD.encode()
    tail = b"\n".join(failure) + b"\n"
    lines, total, clock = [], len(head) + len(tail), 2.0
    start = rng.randrange(len(noise) - 400)
    for line in noise[start:]:
        clock += rng.random() * 0.3
        entry = b"#8 %.3f " % clock + line[:300]
        if total + len(entry) + 1 > size:
            break
        lines.append(entry)
        total += len(entry) + 1
    return head + b"\n".join(lines) + b"\n" + tail


def build_mix(size: int, count: int = MIX_LOGS, seed: int = 11) -> list[bytes]:
    """`count` different failing builds: each a random team sample of any category (`unknown` included)
    after its own stretch of noise."""
    samples = sorted(SAMPLES.rglob("*.log"))
    rng = random.Random(seed)
    return [build_log(size, seed=seed + i, sample=rng.choice(samples)) for i in range(count)]


def engine_cpu_ms(bodies: list[bytes], repeat: int = 200) -> tuple[float, dict[str, int]]:
    """CPU ms of `Diagnoser.diagnose` per log, cycling through `bodies` after one warm-up pass (CPU time: other
    processes do not inflate it), and who decided each log."""
    from model.diagnose import Diagnoser
    from service.settings import load_settings

    settings = load_settings()  # the same LOGMEDIC_DATA_DIR / LOGMEDIC_MODEL_DIR as the server
    engine = Diagnoser.load(settings.data_dir, settings.model_dir, settings.check_stale)
    deciders: dict[str, int] = {}
    for body in bodies * max(1, 10 // len(bodies)):
        engine.diagnose(body)
    for body in bodies:
        decided = engine.diagnose(body).decided_by
        deciders[decided] = deciders.get(decided, 0) + 1
    start = time.process_time()
    for i in range(repeat):
        engine.diagnose(bodies[i % len(bodies)])
    return (time.process_time() - start) / repeat * 1000, deciders


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# -- wrk ---------------------------------------------------------------------------------------------


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def cpu_seconds(server: Server) -> float:
    """User + system CPU time of gunicorn: master, live workers, and workers already recycled (max_requests)."""
    def ticks(pid: int, children: bool = False) -> int:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a worker that just exited: the master's children time counts it
            return 0
        return sum(int(f) for f in fields[11:15 if children else 13])  # utime, stime (, cutime, cstime)

    total = ticks(server.process.pid, children=True) + sum(ticks(pid) for pid in server.workers())
    return total / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: int, connections: int, script: Path | None = None, server: Server | None = None) -> dict:
    """Requests/s, latency percentiles (ms) and the server's CPU ms per request, from one wrk run."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script:
        argv += ["-s", str(script)]
    cpu_before = cpu_seconds(server) if server else 0.0
    out = subprocess.run(argv + [url], capture_output=True, text=True, timeout=seconds + 60).stdout
    cpu = cpu_seconds(server) - cpu_before if server else 0.0
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {q: _ms(v) for q, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, flags=re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"], "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sockets.group(1) if sockets else "none", "cpu_ms": 1000 * cpu / max(1, requests_done)}


# -- where a worker's time goes -------------------------------------------------------------------------

# (label, substring of a py-spy frame "function (file:line)"): inclusive shares printed by --profile.
PARTS = [
    ("engine: model.diagnose.Diagnoser.diagnose", "diagnose (model/diagnose.py"),
    ("  scan: candidate lines, cleaning", "scan (model/scan.py"),
    ("  read: windows of candidate lines", "read (model/diagnose.py"),
    ("  count_lines: n-gram counting", "count_lines (model/classifier.py"),
    ("  features: TF-IDF", "features (model/classifier.py"),
    ("  predict_proba: linear SVM + calibration", "predict_proba (model/classifier.py"),
    ("  rules.evaluate: overrides", "evaluate (model/rules.py"),
    ("  describe: texts of the answer", "describe (model/diagnosis.py"),
    ("service: read the body", "read_submission (service/body.py"),
    ("service: answers.diagnose (engine + pydantic)", "diagnose (service/answers.py"),
    ("service: JSON response", "respond (service/answers.py"),
    ("metrics (prometheus)", "prometheus_client"),
    ("flask + werkzeug dispatch", "full_dispatch_request (flask/app.py"),
    ("gunicorn: whole request", "handle_request (gunicorn/workers/sync.py"),
    ("gunicorn: waiting for a connection", "accept (socket.py"),
]


def profile_workers(pids: list[int], seconds: int) -> list[subprocess.Popen]:
    """py-spy record on each worker for `seconds` (raw collapsed stacks)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
                              "--format", "raw", "--nonblocking", "--output", f"/tmp/logmedic-spy-{pid}.txt"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]


def print_profile(pids: list[int], cpu_ms: float) -> None:
    """Inclusive share of samples per part (and its CPU ms per request), and the functions with the most
    samples of their own."""
    stacks: list[tuple[list[str], int]] = []
    for pid in pids:
        path = Path(f"/tmp/logmedic-spy-{pid}.txt")
        if path.exists():
            for line in path.read_text().splitlines():
                frames, _, count = line.rpartition(" ")
                stacks.append((frames.split(";"), int(count)))
            path.unlink()
    total = sum(count for _, count in stacks)
    if not total:
        print("py-spy recorded nothing (is ptrace allowed?)")
        return
    print(f"\nwhere the workers' time goes during the classify run (py-spy, {total} samples):")
    for label, needle in PARTS:
        share = sum(count for frames, count in stacks if any(needle in f for f in frames)) / total
        print(f"  {label:44} {share:6.1%}  ~{share * cpu_ms:5.2f} ms/request")
    own: dict[str, int] = {}
    for frames, count in stacks:
        own[frames[-1]] = own.get(frames[-1], 0) + count
    print("  functions with the most samples of their own:")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {count / total:6.1%}  {frame[:110]}")


# -- open loop ---------------------------------------------------------------------------------------


async def _one(host: str, port: int, request: bytes) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()  # gunicorn's sync workers close the connection after each answer
    writer.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0


async def _open_loop(host: str, port: int, requests: list[bytes], rate: float,
                     seconds: float) -> tuple[list[float], int]:
    """Send at fixed times (start + i / rate) whatever the answers do; latency counts from the planned send
    time, so a slow answer delays nothing and hides nothing (no coordinated omission)."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    latencies: list[float] = []
    failures = 0

    async def fire(planned: float, request: bytes):
        nonlocal failures
        try:
            status = await asyncio.wait_for(_one(host, port, request), timeout=10)
        except (OSError, asyncio.TimeoutError):
            status = 0
        if status != 200:
            failures += 1
        latencies.append((loop.time() - planned) * 1000)

    tasks = []
    for i in range(int(rate * seconds)):
        planned = start + i / rate
        await asyncio.sleep(max(0.0, planned - loop.time()))
        tasks.append(asyncio.create_task(fire(planned, requests[i % len(requests)])))
    await asyncio.gather(*tasks)
    return latencies, failures


def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float) -> dict:
    """Latency of POST /v1/classify at a fixed rate, the bodies in turn."""
    host, port = url.removeprefix("http://").split(":")
    requests = [(f"POST /v1/classify HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: text/plain\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body for body in bodies]
    latencies, failures = asyncio.run(_open_loop(host, int(port), requests, rate, seconds))
    return {"n": len(latencies), "failures": failures, "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90), "p99": percentile(latencies, 99), "max": max(latencies),
            "mean": statistics.fmean(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four closed-loop runs (medians printed)")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections (2 sync workers serve them)")
    parser.add_argument("--rate", type=float, default=100, help="open-loop requests per second")
    parser.add_argument("--open-seconds", type=float, default=20, help="length of the open-loop run")
    parser.add_argument("--workers", type=int, default=0, help="gunicorn workers (0: one per core)")
    parser.add_argument("--profile", action="store_true", help="py-spy the workers during the classify run")
    parser.add_argument("--nice", type=int, default=None, help="run server and clients at this niceness (root may "
                        "go below 0) to measure through other work on a shared machine; says so in the output")
    parser.add_argument("--rate-limit", default="", help="LOGMEDIC_RATE_LIMIT for the server, e.g. 1000000/minute "
                        "to measure the limiter's cost (default: off)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    if not LOGHUB.exists():
        raise SystemExit(f"no noise corpus at {LOGHUB}")
    if args.profile and not (shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists()):
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")

    body = build_log(LOG_SIZE)
    mix = build_mix(LOG_SIZE)
    workdir = Path(tempfile.mkdtemp(prefix="logmedic-load-"))
    log_path = workdir / "build.log"
    log_path.write_bytes(body)
    script = workdir / "post.lua"
    script.write_text(LUA.format(path=log_path))
    listing = workdir / "mix.txt"
    for i, log in enumerate(mix):
        (workdir / f"mix-{i:02d}.log").write_bytes(log)
    listing.write_text("".join(f"{workdir / f'mix-{i:02d}.log'}\n" for i in range(len(mix))))
    mix_script = workdir / "mix.lua"
    mix_script.write_text(LUA_MIX.format(listing=listing))

    workers = args.workers or len(os.sched_getaffinity(0))
    autogroup = Path("/proc/self/autogroup")
    session_nice = re.search(r"nice (-?\d+)", autogroup.read_text()).group(1) if autogroup.exists() else None
    if args.nice is not None:
        # Inherited by gunicorn, its workers and wrk. With the kernel's autogroup scheduling, niceness only ranks
        # processes of one session against each other: the session's own niceness ranks it against the others.
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        if session_nice is not None:
            autogroup.write_text(str(args.nice))
    server = None
    try:
        server = start(workers, args.rate_limit, own_session=args.nice is None)
        answer = server.post("/v1/classify", data=body).json()
        print(f"machine: {os.cpu_count()} cores; gunicorn {workers} sync workers; rate limit "
              f"{args.rate_limit or 'off'}; wrk 1 thread, {args.connections} connections, {args.seconds} s per run; "
              f"niceness {os.getpriority(os.PRIO_PROCESS, 0)}"
              + (f" ({Path('/proc/self/autogroup').read_text().strip()})" if args.nice is not None else ""))
        lines = body.count(b"\n")
        print(f"log: {len(body)} bytes, {lines} lines -> {answer['category']} "
              f"({answer['decided_by']}, {answer['confidence']})")
        engine_one, _ = engine_cpu_ms([body])
        engine_mix, deciders = engine_cpu_ms(mix)
        print(f"mix: {len(mix)} different logs of {min(map(len, mix))}-{max(map(len, mix))} bytes, decided by "
              + ", ".join(f"{k} {v}" for k, v in sorted(deciders.items())))
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              "(other processes on this machine take cores from both server and client)")
        for path in ("/healthz", "/bench/no-engine", "/v1/classify"):  # warm every path in every worker
            wrk(server.url + path, 2, args.connections, None if path == "/healthz" else script)
        wrk(server.url + "/v1/classify", 2, args.connections, mix_script)

        # Rounds, each with every row back to back: other work on a shared machine comes and goes, and a ratio
        # is only fair between runs made under the same conditions. Each figure below is the median of rounds.
        rounds: dict[str, list[dict]] = {"health": [], "bare": [], "classify": [], "mixed": []}
        spied, spies = server.workers(), []  # read before the runs: max_requests may replace workers
        for number in range(args.rounds):
            rounds["health"].append(wrk(server.url + "/healthz", args.seconds, args.connections, server=server))
            rounds["bare"].append(wrk(server.url + "/bench/no-engine", args.seconds, args.connections, script,
                                      server=server))
            if args.profile and number == 0:
                spies = profile_workers(spied, args.seconds)
            rounds["classify"].append(wrk(server.url + "/v1/classify", args.seconds, args.connections, script,
                                          server=server))
            for spy in spies:
                spy.wait(timeout=60)
            rounds["mixed"].append(wrk(server.url + "/v1/classify", args.seconds, args.connections, mix_script,
                                       server=server))
        health, bare, classify, mixed = (
            {key: statistics.median(run[key] for run in runs) if key in ("rps", "p50", "p99", "cpu_ms", "non2xx")
             else runs[-1][key] for key in runs[0]} for runs in rounds.values())
        ratios = [c["rps"] / h["rps"] for c, h in zip(rounds["classify"], rounds["health"])]
        mixed_ratios = [c["rps"] / h["rps"] for c, h in zip(rounds["mixed"], rounds["health"])]
        ratio, mixed_ratio = statistics.median(ratios), statistics.median(mixed_ratios)
        print()
        print(f"{'closed loop (wrk), median':26} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'server CPU ms/req':>18}  "
              f"errors (last round)")
        for name, row in (("GET /healthz", health), ("POST 10 KB, engine skipped", bare),
                          ("POST /v1/classify 10 KB", classify), (f"  the same, {len(mix)} logs in turn", mixed)):
            print(f"{name:26} {row['rps']:9.1f} {row['p50']:8.2f} {row['p99']:8.2f} {row['cpu_ms']:18.2f}  "
                  f"non-2xx {row['non2xx']:.0f}, sockets {row['socket_errors']}")
        print(f"classify / healthz throughput: {ratio:.2f}  (target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'}); "
              f"rounds {', '.join(f'{r:.2f}' for r in ratios)}; by server CPU per request: "
              f"{health['cpu_ms'] / classify['cpu_ms']:.2f}")
        print(f"  with {len(mix)} different logs in turn: {mixed_ratio:.2f}  "
              f"(target >= 0.50: {'met' if mixed_ratio >= 0.5 else 'NOT met'}); "
              f"rounds {', '.join(f'{r:.2f}' for r in mixed_ratios)}; by server CPU per request: "
              f"{health['cpu_ms'] / mixed['cpu_ms']:.2f}")
        print(f"the same POST without the engine / healthz: {bare['rps'] / health['rps']:.2f}; so the engine's "
              f"share of a classify request's server CPU is about {1 - bare['cpu_ms'] / classify['cpu_ms']:.0%}")
        print(f"capacity implied by CPU per request on {workers} cores: about "
              f"{1000 * workers / classify['cpu_ms']:.0f} classify/s")
        print(f"the engine alone, in this process: {engine_one:.2f} ms CPU per diagnosis of the one log, "
              f"{engine_mix:.2f} ms per log of the mix")
        if args.profile:
            print_profile(spied, classify["cpu_ms"])

        steady = open_loop(server.url, mix, args.rate, args.open_seconds)
        print()
        print(f"open loop: {steady['n']} POST /v1/classify at {args.rate:.0f}/s for {args.open_seconds:.0f} s, "
              f"the {len(mix)} logs in turn, {steady['failures']} failures")
        print(f"  latency ms: mean {steady['mean']:.2f}  p50 {steady['p50']:.2f}  p90 {steady['p90']:.2f}  "
              f"p99 {steady['p99']:.2f}  max {steady['max']:.2f}")
        print(f"  p99 < 50 ms at {args.rate:.0f} requests/s: {'met' if steady['p99'] < 50 else 'NOT met'}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if server is not None:
            server.stop()
            server.log_path.unlink(missing_ok=True)
        if args.nice is not None and session_nice is not None:
            autogroup.write_text(session_nice)  # the session outlives this script
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
