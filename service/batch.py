"""Batch classification of historical logs: many inputs, one row each, memory kept flat.

Workers are separate processes (the work is CPU-bound); at most a few logs
per worker are in flight at once, so memory does not grow with the total
input size. Rows are written in input order, one whole line per write, so an
interrupted run can be resumed: ids already in the output are skipped, and a
half-written last line is cut off first.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from model.diagnose import Diagnoser
from service.inputs import LogInput

IN_FLIGHT_PER_JOB = 4
CSV_FIELDS = ("id", "path", "category", "confidence", "decided_by", "transient", "title", "summary",
              "commands", "evidence", "also", "alternatives", "timestamp", "lines", "model_version", "error")

_diagnoser: Diagnoser | None = None
_lang = "en"


def _init_worker(data_dir: str, model_dir: str, check_stale: bool, lang: str) -> None:
    global _diagnoser, _lang
    if _diagnoser is None:
        _diagnoser = Diagnoser.load(Path(data_dir), Path(model_dir), check_stale)
    _lang = lang


def row_for(diagnoser: Diagnoser, item: LogInput, lang: str = "en") -> dict:
    """One output row: the diagnosis with its id, or the error that stopped it."""
    base = {"id": item.id, "path": item.id, "timestamp": item.timestamp}
    if item.error is not None:
        return {**base, "category": None, "error": item.error}
    return {**base, **diagnoser.diagnose(item.data, lang).model_dump(mode="json"), "error": None}


def _classify(item: LogInput) -> dict:
    return row_for(_diagnoser, item, _lang)


def to_csv_row(row: dict) -> dict:
    """A row flattened for CSV: lists become `; `-joined text."""
    flat = {key: row.get(key) for key in CSV_FIELDS}
    flat["commands"] = " ; ".join(step["command"] for step in row.get("remediation") or [])
    flat["evidence"] = " ; ".join(f"{e['line']}: {e['text']}" for e in row.get("evidence") or [])
    flat["also"] = " ; ".join(f["category"] for f in row.get("also") or [])
    flat["alternatives"] = " ; ".join(f"{a['category']}={a['score']}" for a in row.get("alternatives") or [])
    return flat


def done_ids(output: Path, fmt: str) -> set[str]:
    """Ids already written to `output`; a torn last line (from a kill) is removed first."""
    if not output.exists():
        return set()
    with open(output, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            handle.truncate(cut)
            data = data[:cut]
    text = data.decode("utf-8", "replace")
    if fmt == "csv":
        return {row["id"] for row in csv.DictReader(io.StringIO(text)) if row.get("id")}
    ids = set()
    for line in text.splitlines():
        try:
            ids.add(json.loads(line)["id"])
        except (ValueError, KeyError, TypeError):
            continue
    return ids


@dataclass
class BatchResult:
    written: int = 0
    skipped: int = 0
    errors: int = 0
    categories: Counter = field(default_factory=Counter)


class _Writer:
    """Appends whole rows with one write each."""

    def __init__(self, output: Path | None, fmt: str, fresh: bool):
        self.fmt = fmt
        self.fd = None if output is None else os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if fresh else 0), 0o644)
        self.header_needed = fmt == "csv" and (output is None or fresh or os.path.getsize(output) == 0)

    def write(self, row: dict) -> None:
        if self.fmt == "csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, CSV_FIELDS, lineterminator="\n")
            if self.header_needed:
                writer.writeheader()
                self.header_needed = False
            writer.writerow(to_csv_row(row))
            payload = buffer.getvalue()
        else:
            payload = json.dumps(row, ensure_ascii=False) + "\n"
        data = payload.encode("utf-8")
        if self.fd is None:
            os.write(1, data)
        else:
            os.write(self.fd, data)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)


def run_batch(items: Iterable[LogInput], diagnoser: Diagnoser, output: Path | None, fmt: str = "jsonl",
              jobs: int = 1, resume: bool = False, lang: str = "en",
              loader_args: tuple | None = None, progress: Callable[[dict], None] | None = None) -> BatchResult:
    """Classify every item and write one row each; returns counts per category."""
    result = BatchResult()
    seen = done_ids(output, fmt) if resume and output is not None else set()
    writer = _Writer(output, fmt, fresh=not resume)

    def emit(row: dict) -> None:
        writer.write(row)
        result.written += 1
        if row.get("error"):
            result.errors += 1
        else:
            result.categories[row["category"]] += 1
        if progress:
            progress(row)

    def todo():
        for item in items:
            if item.id in seen:
                result.skipped += 1
                continue
            yield item

    try:
        if jobs <= 1:
            for item in todo():
                emit(row_for(diagnoser, item, lang))
        else:
            global _diagnoser
            _diagnoser = diagnoser  # inherited by forked workers, shared copy-on-write
            with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(*loader_args, lang)) as pool:
                pending: deque[tuple[LogInput, Future]] = deque()
                for item in todo():
                    pending.append((item, pool.submit(_classify, item) if item.error is None else None))
                    while len(pending) >= jobs * IN_FLIGHT_PER_JOB:
                        emit(_collect(*pending.popleft(), diagnoser, lang))
                while pending:
                    emit(_collect(*pending.popleft(), diagnoser, lang))
    finally:
        writer.close()
    return result


def _collect(item: LogInput, future: Future | None, diagnoser: Diagnoser, lang: str) -> dict:
    return row_for(diagnoser, item, lang) if future is None else future.result()
