"""Shared by the benchmarks: realistic logs of any size, built from the team's samples and loghub noise."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "training_data" / "samples"
LOGHUB = ROOT.parent / "shared" / "corpora" / "loghub"


def noise_lines() -> list[bytes]:
    """Lines of real system logs (read from ../shared, never copied into the project)."""
    lines = []
    for path in sorted(LOGHUB.glob("*.log")):
        lines.extend(line for line in path.read_bytes().splitlines() if line.strip())
    if not lines:
        raise SystemExit(f"no noise corpus at {LOGHUB}")
    return lines


def samples(category: str | None = None) -> list[bytes]:
    folders = [SAMPLES / category] if category else sorted(p for p in SAMPLES.iterdir() if p.is_dir())
    return [p.read_bytes() for folder in folders for p in sorted(folder.glob("*.log"))]


def make_log(size: int, signal: bytes, noise: list[bytes], rng: random.Random) -> bytes:
    """About `size` bytes of noise with `signal` placed at a random line."""
    body, total = [], 0
    while total < size - len(signal):
        start = rng.randrange(len(noise))
        for line in noise[start:start + 200]:
            body.append(line)
            total += len(line) + 1
            if total >= size - len(signal):
                break
    body.insert(rng.randrange(len(body) + 1), signal.rstrip(b"\n"))
    return b"\n".join(body) + b"\n"


def timed(fn, repeat: int) -> list[float]:
    """Wall-clock seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:9.2f} ms"


def median(values) -> float:
    return statistics.median(values)
