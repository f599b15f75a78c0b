"""Accuracy, measured: classify a labelled directory and report what went wrong.

Optionally buries every log in lines of unrelated noise first, to show that
the answer does not depend on the log arriving clean.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from model.diagnose import Diagnoser
from model.knowledge import UNKNOWN
from model.samples import load_samples
from model.training import per_category


@dataclass
class Miss:
    path: str
    expected: str
    predicted: str
    decided_by: str
    confidence: float


@dataclass
class EvalReport:
    total: int
    metrics: dict[str, dict[str, float]]
    macro_f1: float
    macro_f1_categories: float
    unknown_given_category: float
    misses: list[Miss] = field(default_factory=list)


def load_noise(directory: Path) -> list[bytes]:
    """Non-empty lines of every `*.log` file under `directory`."""
    lines = []
    for path in sorted(Path(directory).rglob("*.log")):
        lines.extend(line for line in path.read_bytes().splitlines() if line.strip())
    return lines


def bury(log: bytes, noise: list[bytes], count: int, rng: random.Random) -> bytes:
    """The log placed at a random point inside `count` consecutive-looking lines of noise."""
    start = rng.randrange(max(1, len(noise) - count))
    filler = noise[start:start + count]
    cut = rng.randrange(len(filler) + 1)
    return b"\n".join(filler[:cut] + [log.rstrip(b"\n")] + filler[cut:]) + b"\n"


def evaluate(diagnoser: Diagnoser, directory: Path, noise: list[bytes] | None = None,
             noise_lines: int = 1500, seed: int = 0) -> EvalReport:
    """Classify every `<category>/*.log` under `directory` and score the answers."""
    rng = random.Random(seed)
    samples = load_samples(directory)
    expected, predicted, misses = [], [], []
    for sample in samples:
        data = sample.read()
        if noise:
            data = bury(data, noise, noise_lines, rng)
        verdict = diagnoser.verdict(data)
        expected.append(sample.label)
        predicted.append(verdict.category)
        if verdict.category != sample.label:
            misses.append(Miss(str(sample.path), sample.label, verdict.category, verdict.decided_by,
                               round(verdict.confidence, 3)))
    metrics = per_category(expected, predicted)
    gold = sorted(set(expected))
    categories = [c for c in gold if c != UNKNOWN]
    negatives = [p for e, p in zip(expected, predicted) if e == UNKNOWN]
    return EvalReport(
        total=len(samples),
        metrics={c: metrics[c] for c in sorted(metrics)},
        macro_f1=round(sum(metrics[c]["f1"] for c in gold) / len(gold), 4),
        macro_f1_categories=round(sum(metrics[c]["f1"] for c in categories) / max(1, len(categories)), 4),
        unknown_given_category=round(sum(p != UNKNOWN for p in negatives) / max(1, len(negatives)), 4),
        misses=misses,
    )
