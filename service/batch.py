"""Batch classification of historical logs: many inputs, one row each, memory kept flat.

Workers are separate processes (the work is CPU-bound). They read plain files
themselves and return finished output lines, so the parent only lists inputs,
streams archives and writes. Logs go to workers in small chunks, at most
`IN_FLIGHT_PER_JOB` chunks per worker at once, so memory does not grow with the
number or total size of the inputs. Rows are written in input order, one whole line per write, so an
interrupted run can be resumed: ids already in the output are skipped, and a
half-written last line is cut off first.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import signal
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from model.diagnose import Diagnoser
from service.inputs import LogInput

IN_FLIGHT_PER_JOB = 2      # chunks per worker in flight
CHUNK_LOGS = 16            # logs per worker task
CHUNK_BYTES = 8 << 20      # ... or fewer, when the parent already holds their bytes (archives, JSONL, stdin)
CSV_FIELDS = ("id", "path", "timestamp", "category", "confidence", "decided_by", "transient", "title", "summary",
              "commands", "evidence", "also", "alternatives", "lines", "model_version", "error")

log = logging.getLogger("logmedic.batch")


class BatchError(Exception):
    """The batch had to stop (a worker process died); what was written so far can be resumed."""


@dataclass
class _Job:
    diagnoser: Diagnoser
    lang: str
    fmt: str


_job: _Job | None = None  # this process's engine and output settings (the parent's, or a worker's)


def row_for(diagnoser: Diagnoser, item: LogInput, lang: str = "en") -> dict:
    """One output row: the diagnosis with its id, path and timestamp, or the error that stopped it."""
    base = {"id": item.id, "path": item.source, "timestamp": item.timestamp}
    if item.error is not None:
        return {**base, "category": None, "error": item.error}
    try:
        diagnosis = diagnoser.diagnose(item.data, lang)
    except Exception as exc:  # an engine bug on one log must not lose the rest of a long batch: report, go on
        log.exception("classifying %s failed", item.id)
        return {**base, "category": None, "error": f"internal error: {type(exc).__name__}"}
    return {**base, **diagnosis.model_dump(mode="json"), "error": None}


def _one_line(value):
    # CSV rows stay one physical line each, so a torn last line can be found and cut like in JSONL.
    return " ".join(value.splitlines()) if isinstance(value, str) else value


def to_csv_row(row: dict) -> dict:
    """A row flattened for CSV: lists become ` ; `-joined text, every field on one line."""
    flat = {key: row.get(key) for key in CSV_FIELDS}
    flat["commands"] = " ; ".join(step["command"] for step in row.get("remediation") or [])
    flat["evidence"] = " ; ".join(f"{e['line']}: {e['text']}" for e in row.get("evidence") or [])
    flat["also"] = " ; ".join(f["category"] for f in row.get("also") or [])
    flat["alternatives"] = " ; ".join(f"{a['category']}={a['score']}" for a in row.get("alternatives") or [])
    return {key: _one_line(value) for key, value in flat.items()}


def encode_row(row: dict, fmt: str) -> bytes:
    """One output line (JSONL or CSV, without the CSV header), newline-terminated."""
    if fmt == "csv":
        buffer = io.StringIO()
        csv.DictWriter(buffer, CSV_FIELDS, lineterminator="\n").writerow(to_csv_row(row))
        # surrogateescape: a file name that is not UTF-8 comes back byte for byte, so --resume still matches it
        return buffer.getvalue().encode("utf-8", "surrogateescape")
    try:
        return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a non-UTF-8 file name: \u escapes keep the line valid JSON and the id exact
        return (json.dumps(row) + "\n").encode("ascii")


def csv_header() -> bytes:
    """The CSV header line."""
    return (",".join(CSV_FIELDS) + "\n").encode()


def _line_id(line: bytes, fmt: str, id_column: int | None) -> str | None:
    try:
        if fmt == "csv":
            return next(csv.reader([line.decode("utf-8", "surrogateescape")]))[id_column]
        return json.loads(line)["id"]
    except (ValueError, KeyError, IndexError, TypeError, StopIteration):
        return None


def done_ids(output: Path, fmt: str) -> set[str]:
    """Ids already written to `output`; a torn last line (the run was killed mid-write) is cut off first."""
    if not output.exists():
        return set()
    ids: set[str] = set()
    complete = 0  # offset just past the last whole line
    id_column = None
    with open(output, "rb") as handle:
        for line in handle:  # streamed: the output may be far larger than memory
            if not line.endswith(b"\n"):
                break
            complete += len(line)
            if fmt == "csv" and id_column is None:
                header = next(csv.reader([line.decode("utf-8", "replace")]), [])
                id_column = header.index("id") if "id" in header else 0
                continue
            ident = _line_id(line, fmt, id_column)
            if ident is not None:
                ids.add(ident)
    if complete < output.stat().st_size:
        os.truncate(output, complete)
    return ids


@dataclass
class BatchResult:
    """What a run did: rows written, inputs skipped as already done, error rows, rows per category."""

    written: int = 0
    skipped: int = 0
    errors: int = 0
    categories: Counter = field(default_factory=Counter)


class _Writer:
    """Appends whole lines, one write each (a kill can tear at most the last one)."""

    def __init__(self, output: Path | None, fmt: str, append: bool):
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_TRUNC)
        self.fd = 1 if output is None else os.open(output, flags, 0o644)
        self.owned = output is not None
        if fmt == "csv" and (output is None or not append or os.path.getsize(output) == 0):
            self.write(csv_header())

    def write(self, data: bytes) -> None:
        """Write all of `data` (looping over short writes)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        """Close the output file (never stdout)."""
        if self.owned:
            os.close(self.fd)


def _watch_parent() -> None:
    """Exit when the parent dies (even by SIGKILL), instead of lingering as an orphan."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="logmedic-parent-watch", daemon=True).start()


def _init_worker(loader_args: tuple, lang: str, fmt: str) -> None:
    global _job
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops cleanly
    _watch_parent()
    # Forked workers inherit the parent's loaded engine (shared copy-on-write); others load it.
    diagnoser = _job.diagnoser if _job is not None else Diagnoser.load(*map(_as_loader_arg, loader_args))
    _job = _Job(diagnoser, lang, fmt)


def _as_loader_arg(value):
    return Path(value) if isinstance(value, str) else value


def _work(item: LogInput) -> tuple[bytes, str | None, bool]:
    row = row_for(_job.diagnoser, item.loaded(), _job.lang)
    return encode_row(row, _job.fmt), row["category"], row["error"] is not None


def _work_chunk(items: list[LogInput]) -> list[tuple[bytes, str | None, bool]]:
    return [_work(item) for item in items]


def _chunks(items: Iterable[LogInput]):
    """Items grouped for one worker task: a task per log would spend more on hand-offs than on small logs."""
    chunk: list[LogInput] = []
    size = 0
    for item in items:
        chunk.append(item)
        size += len(item.data or b"")
        if len(chunk) >= CHUNK_LOGS or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def run_batch(items: Iterable[LogInput], diagnoser: Diagnoser, output: Path | None, fmt: str = "jsonl",
              jobs: int = 1, append: bool = False, lang: str = "en", loader_args: tuple | None = None,
              progress: Callable[[str | None, bool], None] | None = None) -> BatchResult:
    """Classify every item not marked skipped and write one row each, in input order.

    `append` keeps what `output` holds (for --resume); `loader_args` (data dir, model dir,
    check_stale) let workers load the engine when they are not forked from this process.
    """
    global _job
    result = BatchResult()
    _job = _Job(diagnoser, lang, fmt)
    writer = _Writer(output, fmt, append)

    def emit(line: bytes, category: str | None, error: bool) -> None:
        writer.write(line)
        result.written += 1
        if error:
            result.errors += 1
        else:
            result.categories[category] += 1
        if progress:
            progress(category, error)

    def todo():
        for item in items:
            if item.skipped:
                result.skipped += 1
            else:
                yield item

    try:
        if jobs <= 1:
            for item in todo():
                emit(*_work(item))
            return result
        pool = ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(loader_args or (), lang, fmt))
        pending: deque[tuple[list[LogInput], Future]] = deque()
        try:
            for chunk in _chunks(todo()):
                pending.append((chunk, pool.submit(_work_chunk, chunk)))
                while len(pending) >= jobs * IN_FLIGHT_PER_JOB:
                    for row in _collect(*pending.popleft()):
                        emit(*row)
            while pending:
                for row in _collect(*pending.popleft()):
                    emit(*row)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return result
    finally:
        writer.close()


def _collect(chunk: list[LogInput], future: Future) -> list[tuple[bytes, str | None, bool]]:
    try:
        return future.result()
    except BrokenProcessPool:
        names = chunk[0].id if len(chunk) == 1 else f"{chunk[0].id} … {chunk[-1].id}"
        raise BatchError(f"a worker process died while classifying {names} "
                         "(killed, perhaps out of memory)") from None
