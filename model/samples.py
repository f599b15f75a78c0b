"""Labelled logs on disk: `<dir>/<category-id>/*.log`, for training and evaluation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from model.errors import SampleError


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str

    def read(self) -> bytes:
        return self.path.read_bytes()


def load_samples(directory: Path, labels: set[str] | None = None) -> list[Sample]:
    """Every `*.log` under a folder named for its category, sorted so training is reproducible.

    With `labels`, a folder whose name is not a known category is an error (a typo would
    otherwise silently teach the model a new class).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SampleError(f"{directory}: not a directory of <category-id>/*.log")
    samples = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        if labels is not None and folder.name not in labels:
            raise SampleError(f"{folder}: '{folder.name}' is not a category id of the knowledge base")
        samples.extend(Sample(path, folder.name) for path in sorted(folder.rglob("*.log")))
    if not samples:
        raise SampleError(f"{directory}: no <category-id>/*.log files found")
    return samples


def tree_hash(directory: Path) -> str:
    """SHA-256 over every file's relative path and bytes: what 'stale' is measured against."""
    digest = hashlib.sha256()
    root = Path(directory)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(".") or "/." in relative:
            continue
        digest.update(relative.encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
