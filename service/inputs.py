"""Where logs come from: files, directories, globs, stdin, gzip, archives and JSONL.

Each input becomes a `LogInput` with a stable id (used by `--resume`) and its
bytes; an input that cannot be read becomes a `LogInput` carrying the error,
so a batch reports it and goes on.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

MAX_MEMBER_BYTES = 512 * 1024 * 1024  # a single log larger than this is refused, not read into memory
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class LogInput:
    id: str
    data: bytes | None = None
    error: str | None = None
    timestamp: str | None = None


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _read_file(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_MEMBER_BYTES:
        raise OSError(f"larger than {MAX_MEMBER_BYTES >> 20} MB")
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as handle:
            data = handle.read(MAX_MEMBER_BYTES + 1)
        if len(data) > MAX_MEMBER_BYTES:
            raise OSError(f"decompresses to more than {MAX_MEMBER_BYTES >> 20} MB")
        return data
    return path.read_bytes()


def _decompress_member(name: str, data: bytes) -> bytes:
    if name.endswith(".gz"):
        return gzip.decompress(data)
    return data


def _tar_members(path: Path) -> Iterator[LogInput]:
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            if not member.isfile():
                continue
            ident = f"{path}!{member.name}"
            if member.size > MAX_MEMBER_BYTES:
                yield LogInput(ident, error=f"larger than {MAX_MEMBER_BYTES >> 20} MB")
                continue
            try:
                data = _decompress_member(member.name, archive.extractfile(member).read())
                yield LogInput(ident, data, timestamp=_iso(member.mtime))
            except (OSError, EOFError, tarfile.TarError) as exc:
                yield LogInput(ident, error=f"cannot read archive member: {exc}")


def _zip_members(path: Path) -> Iterator[LogInput]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            ident = f"{path}!{info.filename}"
            if info.file_size > MAX_MEMBER_BYTES:
                yield LogInput(ident, error=f"larger than {MAX_MEMBER_BYTES >> 20} MB")
                continue
            try:
                data = _decompress_member(info.filename, archive.read(info))
                stamp = datetime(*info.date_time, tzinfo=timezone.utc).timestamp()
                yield LogInput(ident, data, timestamp=_iso(stamp))
            except (OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
                yield LogInput(ident, error=f"cannot read archive member: {exc}")


def _jsonl_records(path: Path | None, handle, field: str, id_field: str | None,
                   time_field: str | None) -> Iterator[LogInput]:
    name = str(path) if path else "-"
    for number, raw in enumerate(handle, 1):
        if not raw.strip():
            continue
        fallback = f"{name}:{number}"
        try:
            record = json.loads(raw)
            log = record[field]
            if not isinstance(log, str):
                raise TypeError(f"field {field!r} is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            yield LogInput(fallback, error=f"bad JSONL record: {exc}")
            continue
        ident = str(record.get(id_field, fallback)) if id_field else fallback
        stamp = record.get(time_field) if time_field else None
        yield LogInput(ident, log.encode("utf-8", "replace"), timestamp=str(stamp) if stamp is not None else None)


def _expand(argument: str) -> list[Path]:
    if any(ch in argument for ch in "*?["):
        return sorted(Path(p) for p in glob.glob(argument, recursive=True) if os.path.isfile(p))
    path = Path(argument)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    return [path]


def list_inputs(arguments: list[str]) -> list[str | Path]:
    """The files (and `-`) the arguments name, in order, before anything is read."""
    found: list[str | Path] = []
    for argument in arguments:
        found.extend(["-"] if argument == "-" else _expand(argument))
    return found


def read_inputs(items: list[str | Path], jsonl_field: str | None = None, id_field: str | None = None,
                time_field: str | None = None) -> Iterator[LogInput]:
    """Every log in the listed items; archives and JSONL files yield one log per member or record."""
    for item in items:
        if item == "-":
            if jsonl_field:
                yield from _jsonl_records(None, sys.stdin.buffer, jsonl_field, id_field, time_field)
            else:
                yield LogInput("-", sys.stdin.buffer.read())
            continue
        path = Path(item)
        name = path.name.lower()
        try:
            if name.endswith(_ARCHIVE_SUFFIXES):
                yield from (_zip_members(path) if name.endswith(".zip") else _tar_members(path))
            elif jsonl_field and (name.endswith(_JSONL_SUFFIXES) or name.endswith(".json")):
                with open(path, "rb") as handle:
                    yield from _jsonl_records(path, handle, jsonl_field, id_field, time_field)
            else:
                yield LogInput(str(path), _read_file(path), timestamp=_iso(path.stat().st_mtime))
        except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            yield LogInput(str(path), error=f"cannot read: {reason}")
