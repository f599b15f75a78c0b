"""Engine benchmark: latency by log size, peak memory on 50 MB, batch throughput, vs `grep -E`.

Run: .venv/bin/python bench/engine.py   (or `make bench`). Prints its figures; asserts nothing.
The baseline is the physical limit of the job: GNU grep -E with the same override patterns
over the same bytes (it only finds lines; logmedic also selects, cleans, classifies, explains).
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, fmt_ms, make_log, median, noise_lines, samples, timed  # noqa: E402
from model.diagnose import Diagnoser  # noqa: E402

SIZES = (("1 KB", 1_000, 200), ("10 KB", 10_000, 200), ("1 MB", 1_000_000, 15), ("50 MB", 50_000_000, 3))


_CLASS_IN_BRACKET = {"\\w": "[:alnum:]_", "\\d": "0-9", "\\s": "[:space:]"}
_CLASS_OUTSIDE = {"\\d": "[0-9]"}


def ere(regex: str) -> tuple[str, bool] | None:
    """An RE2 pattern as a POSIX ERE for GNU grep -E (case-insensitivity as a flag), or None."""
    insensitive = regex.startswith("(?i)")
    body = regex[4:] if insensitive else regex
    if "(?" in body.replace("(?:", "") or "\\p" in body or "\\x{" in body:
        return None
    out, i, in_class = [], 0, False
    while i < len(body):
        two = body[i:i + 2]
        if two in ("*?", "+?", "??") and not in_class:
            out.append(two[0])
            i += 2
            continue
        if body[i] == "\\":
            out.append((_CLASS_IN_BRACKET if in_class else _CLASS_OUTSIDE).get(two, two))
            i += 2
            continue
        if two == "(?" and not in_class:
            out.append("(")
            i += 3  # "(?:"
            continue
        if body[i] == "[" and not in_class:
            in_class = True
        elif body[i] == "]" and in_class and out and out[-1] not in ("[", "[^"):
            in_class = False
        out.append(body[i])
        i += 1
    return "".join(out), insensitive


def grep_seconds(patterns: list[str], path: Path, repeat: int = 3) -> float:
    """Median time of grep -E over `path` with every convertible pattern (two passes: -i and not)."""
    groups = {True: [], False: []}
    for pattern in patterns:
        converted = ere(pattern)
        if converted:
            groups[converted[1]].append(converted[0])
    files = []
    for insensitive, items in groups.items():
        if items:
            handle = tempfile.NamedTemporaryFile("w", suffix=".ere", delete=False)
            handle.write("\n".join(items) + "\n")
            handle.close()
            files.append((insensitive, handle.name))

    def run():
        for insensitive, name in files:
            subprocess.run(["grep", "-E", "-c"] + (["-i"] if insensitive else []) + ["-f", name, str(path)],
                           stdout=subprocess.DEVNULL, check=False, env={**os.environ, "LC_ALL": "C"})

    try:
        return median(timed(run, repeat))
    finally:
        for _, name in files:
            os.unlink(name)


def peak_rss_mb(log_path: Path) -> tuple[float, float]:
    """(peak RSS with the engine loaded, peak RSS after classifying the log) in a fresh process, MB."""
    # VmHWM, the peak of this process's own memory map: ru_maxrss also keeps the peak of the parent's
    # copy that existed between fork and exec, so a big benchmark process inflated the figure.
    code = (
        "import sys; from pathlib import Path; from model.diagnose import Diagnoser; "
        "hwm = lambda: int(Path('/proc/self/status').read_text().split('VmHWM:')[1].split()[0]); "
        "d = Diagnoser.load(); base = hwm(); d.diagnose(Path(sys.argv[1]).read_bytes()); print(base, hwm())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(log_path)], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.split()
    return int(out[0]) / 1024, int(out[1]) / 1024


def batch_throughput(directory: Path, total_bytes: int, jobs: int) -> tuple[float, float]:
    """(MB/s, seconds) of `logmedic batch --jobs N` over a directory, process start included."""
    logmedic = Path(sys.executable).parent / "logmedic"
    start = time.perf_counter()
    subprocess.run([str(logmedic), "batch", str(directory), "--jobs", str(jobs), "--quiet", "-o", os.devnull],
                   check=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    return total_bytes / seconds / 1e6, seconds


def main() -> None:
    rng = random.Random(7)
    dense = noise_lines()
    ordinary = [line for path in sorted((ROOT / "training_data" / "samples" / "unknown").glob("ok-*.log"))
                for line in path.read_bytes().splitlines() if line.strip()]
    diagnoser = Diagnoser.load()
    failures = samples("no-space-left") + samples("apt-release-eol") + samples("db-connection-refused")
    others = samples("unknown")
    patterns = diagnoser.rules.regexes
    work = Path(tempfile.mkdtemp(prefix="logmedic-bench-"))
    print(f"logmedic engine benchmark — model {diagnoser.version}, {len(patterns)} override regexes, "
          f"{os.cpu_count()} cores")
    print("noise 'build': lines of the team's successful build/CI samples; 'dense': loghub system logs, "
          "where most lines look like errors (worst case). Every run reads a different log.")
    print("grep -E: the override patterns over the same file (process start included: it dominates small logs)\n")
    try:
        print(f"{'log':>6} {'noise':>6} {'signal':>8} {'median':>12} {'p90':>12} {'runs':>5} {'grep -E':>12} "
              f"{'ratio':>7}  answer")
        for label, size, repeat in SIZES:
            for noise_name, noise in (("build", ordinary), ("dense", dense)):
                for signal_name, pool in (("failure", failures), ("none", others)):
                    if size > 1_000_000 and (noise_name, signal_name) != ("dense", "failure"):
                        continue
                    signal = rng.choice(pool)
                    # A different log every run (same size, signal and noise), so no cache sees it twice.
                    logs = [make_log(size, signal, noise, rng) for _ in range(repeat)]
                    log = logs[0]
                    path = work / f"{label.replace(' ', '')}-{noise_name}-{signal_name}.log"
                    path.write_bytes(log)
                    verdict = diagnoser.verdict(log)
                    runs = iter(logs)
                    times = sorted(timed(lambda: diagnoser.verdict(next(runs)), repeat))
                    grep = grep_seconds(patterns, path)
                    p90 = times[int(0.9 * (len(times) - 1))]
                    print(f"{label:>6} {noise_name:>6} {signal_name:>8} {fmt_ms(median(times))} {fmt_ms(p90)} "
                          f"{repeat:5d} {fmt_ms(grep)} {median(times) / grep:6.1f}x  {verdict.category} "
                          f"({verdict.decided_by})")

        base, peak = peak_rss_mb(work / "50MB-dense-failure.log")
        print(f"\npeak RSS classifying the 50 MB log: {peak:.0f} MB (engine loaded: {base:.0f} MB, "
              f"+{peak - base:.0f} MB for the log)")

        batch_dir = work / "batch"
        batch_dir.mkdir()
        total = 0
        every = samples()
        for number in range(400):
            noise = ordinary if number % 2 else dense
            log = make_log(rng.choice((2_000, 20_000, 200_000, 1_000_000)), rng.choice(every), noise, rng)
            (batch_dir / f"{number:04d}.log").write_bytes(log)
            total += len(log)
        for jobs in (1, 2):
            rate, seconds = batch_throughput(batch_dir, total, jobs)
            print(f"batch --jobs {jobs}: {total / 1e6:.0f} MB in 400 logs (half build, half dense noise), "
                  f"{seconds:.1f} s, {rate:.1f} MB/s")
        concatenated = work / "batch.all"
        with open(concatenated, "wb") as out:
            for path in sorted(batch_dir.iterdir()):
                out.write(path.read_bytes())
        grep = grep_seconds(patterns, concatenated)
        print(f"grep -E over the same bytes: {grep:.2f} s, {total / grep / 1e6:.0f} MB/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
