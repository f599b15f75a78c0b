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

SIZES = (("1 KB", 1_000, 200), ("10 KB", 10_000, 200), ("1 MB", 1_000_000, 20), ("50 MB", 50_000_000, 3))


def ere(regex: str) -> tuple[str, bool] | None:
    """An RE2 pattern as a POSIX ERE for grep -E (case-insensitivity as a flag), or None."""
    insensitive = regex.startswith("(?i)")
    body = regex[4:] if insensitive else regex
    body = body.replace("(?:", "(").replace(r"\d", "[0-9]")
    if "(?" in body or "\\p" in body:
        return None
    return body, insensitive


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
    code = (
        "import resource, sys; from pathlib import Path; from model.diagnose import Diagnoser; "
        "d = Diagnoser.load(); base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "d.diagnose(Path(sys.argv[1]).read_bytes()); "
        "print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
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
    noise = noise_lines()
    diagnoser = Diagnoser.load()
    signals = samples("no-space-left") + samples("apt-release-eol") + samples("db-connection-refused")
    patterns = diagnoser.rules.regexes
    work = Path(tempfile.mkdtemp(prefix="logmedic-bench-"))
    print(f"logmedic engine benchmark — model {diagnoser.version}, {len(patterns)} override regexes, "
          f"{os.cpu_count()} cores\n")
    try:
        print(f"{'log':>8} {'median':>12} {'p90':>12} {'runs':>5} {'grep -E':>12} {'ratio':>7}  category")
        for label, size, repeat in SIZES:
            log = make_log(size, rng.choice(signals), noise, rng)
            path = work / f"{label.replace(' ', '')}.log"
            path.write_bytes(log)
            answer = diagnoser.verdict(log).category
            times = sorted(timed(lambda: diagnoser.verdict(log), repeat))
            grep = grep_seconds(patterns, path)
            p90 = times[int(0.9 * (len(times) - 1))]
            print(f"{label:>8} {fmt_ms(median(times))} {fmt_ms(p90)} {repeat:5d} {fmt_ms(grep)} "
                  f"{median(times) / grep:6.1f}x  {answer}")

        base, peak = peak_rss_mb(work / "50MB.log")
        print(f"\npeak RSS classifying the 50 MB log: {peak:.0f} MB (engine loaded: {base:.0f} MB, "
              f"+{peak - base:.0f} MB for the log)")

        batch_dir = work / "batch"
        batch_dir.mkdir()
        total = 0
        every = samples()
        for number in range(400):
            log = make_log(rng.choice((2_000, 20_000, 200_000, 1_000_000)), rng.choice(every), noise, rng)
            (batch_dir / f"{number:04d}.log").write_bytes(log)
            total += len(log)
        for jobs in (1, 2):
            rate, seconds = batch_throughput(batch_dir, total, jobs)
            print(f"batch --jobs {jobs}: {total / 1e6:.0f} MB in 400 logs, {seconds:.1f} s, {rate:.1f} MB/s")
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
