"""Batch benchmark: `logmedic batch` over 10,000 logs, throughput and peak memory, kill and resume.

Run: .venv/bin/python bench/batch.py [--logs 10000] [--max-kb 128] [--profile 400]
Prints its figures; asserts nothing (the exactly-once check prints OK or what is wrong).

The logs are the team's samples (training_data/samples, every category and `unknown`)
each buried at a random line of real system-log noise read in place from
../shared/corpora/loghub (never copied into the project), sizes log-uniform from
1 KB to --max-kb. Measured in the same run:
  - the parallel ceiling: how much faster two CPU-bound processes go than one on this
    machine right now (2.00x on two free cores; shared or busy vCPUs give less);
  - baselines over the same files: `cat` (reading the bytes) and GNU `grep -E` with the
    override patterns (finding the lines, which is all a regex tool does);
  - `logmedic batch --jobs 1` and `--jobs 2`: wall time, MB/s, logs/s, CPU seconds, and the
    peak memory of the whole process tree (parent and workers), sampled from /proc every
    50 ms: the sum of RSS (counts pages shared copy-on-write by forked workers once per
    process) and the sum of PSS (shares them out: what the tree really costs), with the
    tree's PSS at each tenth of the run to show that it stays flat;
  - the `--jobs 2` run killed with SIGKILL halfway, then rerun with `--resume`: every log
    must appear exactly once (no duplicate, none missing, every line whole).
With --profile N, N of the logs are classified under cProfile in this process and the
time is split by where it goes.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import LOGHUB, ROOT, SAMPLES, make_log, noise_lines  # noqa: E402
from bench.engine import ere  # noqa: E402

LOGMEDIC = Path(sys.executable).parent / "logmedic"
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- the logs -------------------------------------------------------------------------------------

def make_logs(directory: Path, count: int, max_kb: int, seed: int = 11) -> tuple[int, dict[str, str]]:
    """Write `count` logs into 100 sub-directories; return the total bytes and each log's sample category."""
    rng = random.Random(seed)
    noise = noise_lines()
    signals = [(p.parent.name, p.read_bytes()) for p in sorted(SAMPLES.glob("*/*.log"))]
    total, labels = 0, {}
    for number in range(count):
        size = int(math.exp(rng.uniform(math.log(1_000), math.log(max_kb * 1_000))))
        category, signal_bytes = rng.choice(signals)
        log = make_log(size, signal_bytes, noise, rng)
        path = directory / f"{number % 100:02d}" / f"{number:05d}.log"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(log)
        total += len(log)
        labels[str(path)] = category
    return total, labels


# -- the process tree's memory, from /proc --------------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree[parent].append(int(entry.name))
    return tree


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants."""
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KB; (0, 0) once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            lines = handle.read().splitlines()[1:]  # the first line names the address range
        fields = dict(line.split(":", 1) for line in lines)
        return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


class TreeSampler:
    """Samples the memory of a process tree every `interval` seconds while it runs."""

    def __init__(self, root: int, interval: float = 0.05):
        self.root, self.interval = root, interval
        self.samples: list[tuple[float, int, int, int, int]] = []  # (time, rss, pss, processes, max rss)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            pids = tree_pids(self.root)
            each = [memory_kb(pid) for pid in pids]
            each = [m for m in each if m[0]]
            if each:
                self.samples.append((time.monotonic(), sum(m[0] for m in each), sum(m[1] for m in each),
                                     len(each), max(m[0] for m in each)))
            self.stop.wait(self.interval)

    def finish(self):
        """Stop sampling."""
        self.stop.set()
        self.thread.join()

    def peak(self, column: int) -> int:
        """The largest value seen in one column of the samples."""
        return max((s[column] for s in self.samples), default=0)

    def by_tenth(self) -> list[int]:
        """Peak tree PSS (KB) in each tenth of the run's duration."""
        tenths = [0] * 10
        if not self.samples:
            return tenths
        start, end = self.samples[0][0], self.samples[-1][0]
        for moment, _, pss, _, _ in self.samples:
            slot = min(9, int((moment - start) / max(end - start, 1e-9) * 10))
            tenths[slot] = max(tenths[slot], pss)
        return tenths


# -- runs ----------------------------------------------------------------------------------------

def cpu_children() -> float:
    """CPU seconds (user + system) of every waited-for child so far, workers included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_batch(inputs: Path, output: Path, jobs: int) -> dict:
    """One `logmedic batch` run, sampled; returns wall seconds, CPU seconds and memory figures."""
    command = [str(LOGMEDIC), "batch", "--quiet", str(inputs), "--jobs", str(jobs), "-o", str(output)]
    cpu = cpu_children()
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE)
    sampler = TreeSampler(process.pid)
    _, stderr = process.communicate()
    seconds = time.perf_counter() - start
    sampler.finish()
    if process.returncode != 0:
        raise SystemExit(f"batch failed ({process.returncode}): {stderr.decode()[-2000:]}")
    return {"seconds": seconds, "cpu": cpu_children() - cpu, "sampler": sampler}


def baseline_seconds(command: list[str], repeat: int = 3) -> float:
    """Best of `repeat` runs (the page cache is warm after the first)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                       env={**os.environ, "LC_ALL": "C"})
        best = min(best, time.perf_counter() - start)
    return best


def grep_command(directory: Path, work: Path) -> tuple[list[list[str]], int]:
    """grep -E -r commands (case-sensitive and -i) with every override pattern that converts to ERE."""
    from model.diagnose import Diagnoser

    groups: dict[bool, list[str]] = {True: [], False: []}
    regexes = Diagnoser.load(check_stale=False).rules.regexes
    for regex in regexes:
        converted = ere(regex)
        if converted:
            groups[converted[1]].append(converted[0])
    commands = []
    for insensitive, patterns in groups.items():
        if patterns:
            path = work / f"patterns-{int(insensitive)}.ere"
            path.write_text("\n".join(patterns) + "\n")
            commands.append(["grep", "-E", "-r", "-c", *(["-i"] if insensitive else []), "-f", str(path), str(directory)])
    return commands, sum(len(g) for g in groups.values())


SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(20_000_000):\n    x += i\nprint(time.perf_counter() - t)"


def parallel_ceiling() -> tuple[float, float]:
    """(seconds of a CPU-bound loop alone, speed-up of two such loops at once): what 2 workers can gain here."""
    alone = float(subprocess.run([sys.executable, "-c", SPIN], capture_output=True, text=True).stdout)
    start = time.perf_counter()
    pair = [subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.DEVNULL) for _ in range(2)]
    for process in pair:
        process.wait()
    return alone, 2 * alone / (time.perf_counter() - start)


def kill_halfway_and_resume(inputs: Path, output: Path, count: int, labels: dict[str, str]) -> None:
    """SIGKILL a --jobs 2 run once half the rows are written, rerun with --resume, check exactly-once."""
    command = [str(LOGMEDIC), "batch", "--quiet", str(inputs), "--jobs", "2", "-o", str(output)]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL, start_new_session=True)
    written = 0
    while process.poll() is None:
        written = _count_lines(output)
        if written >= count // 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    process.wait()
    at_kill = _count_lines(output)
    tail = output.read_bytes()[-200:] if output.exists() else b""
    torn = bool(tail) and not tail.endswith(b"\n")
    time.sleep(1.5)  # the workers notice their parent is gone within 0.5 s and exit
    orphans = [pid for pid in _group(process.pid)]
    for pid in orphans:  # never leave processes behind, whatever the figures say
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    print(f"killed (SIGKILL, parent only) with {at_kill} of {count} rows written"
          f"{', last line torn' if torn else ''}; worker processes left running: {len(orphans)}")
    start = time.perf_counter()
    resumed = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True)
    seconds = time.perf_counter() - start
    rows, bad = [], 0
    with open(output, "rb") as handle:
        for line in handle:
            try:
                rows.append(json.loads(line)["id"])
            except (ValueError, KeyError):
                bad += 1
    unique = set(rows)
    missing = set(labels) - unique
    extra = unique - set(labels)
    duplicates = len(rows) - len(unique)
    print(f"--resume: exit {resumed.returncode}, {seconds:.1f} s; output {len(rows)} rows, {len(unique)} distinct ids, "
          f"{duplicates} duplicates, {len(missing)} missing, {len(extra)} unexpected, {bad} unparseable lines")
    verdict = "OK" if (resumed.returncode == 0 and len(rows) == count and not (duplicates or missing or extra or bad)) \
        else "FAILED"
    print(f"every log exactly once: {verdict}")


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def _group(pgid: int) -> list[int]:
    alive = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry.name))
    return alive


# -- where the time goes ---------------------------------------------------------------------------

PHASES = (  # (label, path fragments of the functions whose own time counts for it), first match wins
    ("scan: find candidate lines (RE2 passes, decoding)", ("model/scan.py", "model/text.py", "re2")),
    ("overrides: rule evaluation", ("model/rules.py",)),
    ("features: n-gram counting, TF-IDF", ("model/classifier.py", "feature_extraction")),
    ("model: sparse algebra, SVM, calibration", ("scipy", "sklearn", "numpy")),
    ("diagnosis: texts, pydantic models", ("model/diagnosis.py", "model/diagnose.py", "pydantic", "model/redact.py")),
    ("batch: reading files, JSON rows", ("service/", "json", "gzip", "pathlib")),
)


def profile(paths: list[Path]) -> None:
    """Classify `paths` as a --jobs 1 batch does, under cProfile; print the time by phase and the top functions."""
    from model.diagnose import Diagnoser
    from service import batch
    from service.inputs import LogInput

    diagnoser = Diagnoser.load(check_stale=False)
    batch._job = batch._Job(diagnoser, "en", "jsonl")
    items = [LogInput(str(p), str(p), file=str(p)) for p in paths]
    total = sum(p.stat().st_size for p in paths)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for item in items:
        batch._work(item)
    profiler.disable()
    seconds = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    by_phase: dict[str, float] = defaultdict(float)
    own_total = 0.0
    for (filename, _, name), (_, _, tottime, _, callers) in stats.stats.items():
        own_total += tottime
        # A builtin (re.sub, numpy.array...) counts for the phase of the code that called it.
        shares = [(caller, edge[3]) for caller, edge in callers.items()] if filename == "~" else []
        weight = sum(share for _, share in shares)
        for (c_file, _, c_name), share in (shares if weight > 0 else [((filename, 0, name), 1.0)]):
            where = f"{c_file}:{c_name}"
            label = next((lab for lab, parts in PHASES if any(part in where for part in parts)), "other")
            by_phase[label] += tottime * (share / weight if weight > 0 else 1.0)
    print(f"\nprofile: {len(paths)} logs, {total / 1e6:.1f} MB, {seconds:.1f} s under cProfile "
          f"({seconds / len(paths) * 1000:.1f} ms/log, {total / seconds / 1e6:.2f} MB/s; the profiler adds overhead)")
    for label, spent in sorted(by_phase.items(), key=lambda kv: -kv[1]):
        print(f"  {spent / own_total:6.1%}  {label}")
    print("  top functions by own time:")
    ranked = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]
    for (filename, line, name), (_, calls, tottime, cumtime, _) in ranked:
        short = filename.replace(str(ROOT) + "/", "").replace(str(Path(sys.prefix)) + "/lib/python3.11/site-packages/", "")
        print(f"  {tottime / own_total:6.1%} {calls:8d} calls  {short}:{line} {name}")


# -- main ------------------------------------------------------------------------------------------

def report_run(label: str, run: dict, total: int, count: int) -> None:
    """Print one run's figures."""
    sampler = run["sampler"]
    print(f"{label:22} {run['seconds']:7.1f} s {total / run['seconds'] / 1e6:7.2f} MB/s {count / run['seconds']:7.1f} logs/s"
          f"  CPU {run['cpu']:6.1f} s ({total / max(run['cpu'], 1e-9) / 1e6:5.2f} MB per CPU-s)"
          f"  peak tree RSS {sampler.peak(1) / 1024:6.0f} MB, PSS {sampler.peak(2) / 1024:6.0f} MB, "
          f"{sampler.peak(3)} processes, largest process {sampler.peak(4) / 1024:4.0f} MB")


def main() -> None:
    """Make the logs, time the baselines and the runs, kill and resume, profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=10_000, help="number of logs [10000]")
    parser.add_argument("--max-kb", type=int, default=128, help="largest log in KB (sizes are log-uniform from 1 KB) [128]")
    parser.add_argument("--profile", type=int, default=400, help="logs classified under cProfile, 0 for none [400]")
    parser.add_argument("--skip-jobs1", action="store_true", help="do not time --jobs 1 (it takes the longest)")
    parser.add_argument("--skip-resume", action="store_true", help="do not run the kill-and-resume check")
    args = parser.parse_args()
    if not LOGHUB.is_dir():
        raise SystemExit(f"no noise corpus at {LOGHUB}")
    # A current model first; then the runs do not re-check staleness, so someone editing
    # training_data/ during the benchmark does not stop it halfway.
    subprocess.run([str(LOGMEDIC), "train", "--if-needed"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    os.environ["LOGMEDIC_CHECK_STALE"] = "false"
    work = Path(tempfile.mkdtemp(prefix="logmedic-bench-batch-"))
    try:
        inputs = work / "logs"
        inputs.mkdir()
        started = time.perf_counter()
        total, labels = make_logs(inputs, args.logs, args.max_kb)
        print(f"logmedic batch benchmark: {args.logs} logs, {total / 1e6:.1f} MB (mean {total / args.logs / 1e3:.1f} KB, "
              f"1 KB to {args.max_kb} KB), samples from {SAMPLES.relative_to(ROOT)} in noise from {LOGHUB} "
              f"(made in {time.perf_counter() - started:.0f} s)")
        print(f"machine: {os.cpu_count()} cores, load average before the runs "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine slows every figure alike)")

        alone, ceiling = parallel_ceiling()
        print(f"parallel ceiling: a CPU-bound loop takes {alone:.1f} s alone; two at once run {ceiling:.2f}x as fast "
              f"as one (2.00x on two free cores): the most --jobs 2 can gain here")
        commands, converted = grep_command(inputs, work)
        cat = baseline_seconds(["sh", "-c", f"find '{inputs}' -type f -exec cat {{}} + > /dev/null"])
        grep = sum(baseline_seconds(c, repeat=1) for c in commands)  # the page cache is warm after cat
        print(f"\n{'baseline cat':22} {cat:7.2f} s {total / cat / 1e6:7.1f} MB/s {args.logs / cat:9.0f} logs/s")
        print(f"{'baseline grep -E -r':22} {grep:7.2f} s {total / grep / 1e6:7.1f} MB/s {args.logs / grep:9.0f} logs/s"
              f"  ({converted} override patterns as ERE)")

        runs = {}
        for jobs in ([2] if args.skip_jobs1 else [1, 2]):
            runs[jobs] = run_batch(inputs, work / f"out-{jobs}.jsonl", jobs)
            report_run(f"logmedic batch -j {jobs}", runs[jobs], total, args.logs)
        print("\ntree PSS (MB), peak in each tenth of the --jobs 2 run's duration: "
              + " ".join(f"{kb / 1024:.0f}" for kb in runs[2]["sampler"].by_tenth()))
        if 1 in runs:
            same = (work / "out-1.jsonl").read_bytes() == (work / "out-2.jsonl").read_bytes()
            print(f"--jobs 2 output identical to --jobs 1: {'yes' if same else 'NO'}")
            print(f"--jobs 2 speed-up over --jobs 1: {runs[1]['seconds'] / runs[2]['seconds']:.2f}x")
        rows = [json.loads(line) for line in (work / "out-2.jsonl").open("rb")]
        correct = sum(1 for r in rows if r["category"] == labels[r["id"]])
        unknown = sum(1 for r in rows if r["category"] == "unknown")
        print(f"answers: {correct / len(rows):.1%} equal to the buried sample's category, {unknown / len(rows):.1%} unknown")

        if not args.skip_resume:
            print()
            kill_halfway_and_resume(inputs, work / "killed.jsonl", args.logs, labels)

        if args.profile:
            profile([Path(p) for p in sorted(labels)[: args.profile]])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
