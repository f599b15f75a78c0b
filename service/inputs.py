"""Where logs come from: files, directories, globs, stdin, gzip, archives and JSONL.

Each input becomes a `LogInput` with a stable id (what `--resume` matches) and
its bytes; an input that cannot be read becomes a `LogInput` carrying the
error, so a batch reports it and goes on. Nothing is listed or read ahead:
directories are walked and archives streamed as the batch consumes them, and a
plain file is only read by whoever classifies it (a worker process), so memory
does not grow with the number or size of the inputs.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import stat
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Container, Iterator

MAX_LOG_BYTES = 512 * 1024 * 1024  # a single log larger than this is refused, not read into memory
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
# What a damaged file raises while it is read or decompressed.
READ_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile)


@dataclass
class LogInput:
    """One log to classify: its id, where it came from, its bytes or why they could not be read."""

    id: str
    source: str
    data: bytes | None = None
    error: str | None = None
    timestamp: str | None = None
    file: str | None = None  # a plain file not read yet: the worker that classifies it reads it
    skipped: bool = False  # already in the output (--resume): neither read nor classified

    def loaded(self) -> "LogInput":
        """This input with its bytes: a plain file is read (and stamped) now; a failure becomes `error`."""
        if self.file is None:
            return self
        path = Path(self.file)
        try:
            stamp = iso_timestamp(path.stat().st_mtime)
            raw = read_file(path)
        except READ_ERRORS as exc:
            return replace(self, file=None, error=f"cannot read: {reason(exc)}")
        return file_input(self.id, self.source, raw, stamp)


def file_input(ident: str, source: str, raw: bytes, timestamp: str | None) -> LogInput:
    """A file's bytes as a log: gunzipped when its name ends in .gz; a damaged file becomes the error.

    The Spark job feeds the bytes it read here too, so both give the same rows.
    """
    try:
        return LogInput(ident, source, member_bytes(ident, raw), timestamp=timestamp)
    except READ_ERRORS as exc:
        return LogInput(ident, source, error=f"cannot read: {reason(exc)}", timestamp=timestamp)


def reason(exc: BaseException) -> str:
    """A short human reason for a read failure (no traceback, no repr noise)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def iso_timestamp(value) -> str | None:
    """ISO-8601 UTC (`...Z`) from epoch seconds or milliseconds, or an ISO string; the raw text when unparseable."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                return value  # kept as given: the report counts it as a row without a usable time
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return _iso(moment)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    seconds = value / 1000 if abs(value) >= 1e11 else value  # epoch milliseconds are common in JSON exports
    try:
        return _iso(datetime.fromtimestamp(seconds, timezone.utc))
    except (OverflowError, OSError, ValueError):
        return str(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _read_capped(handle: BinaryIO, what: str) -> bytes:
    data = handle.read(MAX_LOG_BYTES + 1)
    if len(data) > MAX_LOG_BYTES:
        raise OSError(f"{what} more than {MAX_LOG_BYTES >> 20} MB")
    return data


def read_file(path: Path) -> bytes:
    """A file's bytes, refused past MAX_LOG_BYTES."""
    if path.stat().st_size > MAX_LOG_BYTES:
        raise OSError(f"larger than {MAX_LOG_BYTES >> 20} MB")
    return path.read_bytes()


def member_bytes(name: str, data: bytes) -> bytes:
    """An archive member's log: gunzipped when its name ends in .gz (capped against gzip bombs)."""
    if name.lower().endswith(".gz"):
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as handle:
            return _read_capped(handle, "decompresses to")
    return data


def tar_members(handle: BinaryIO, name: str, skip: Container[str] = ()) -> Iterator[LogInput]:
    """Each regular file of a tar stream (plain or compressed), read one at a time."""
    with tarfile.open(fileobj=handle, mode="r|*") as archive:
        while (member := archive.next()) is not None:
            archive.members = []  # streaming: forget members already read, or the list grows with the archive
            if not member.isfile():
                continue
            ident = f"{name}!{member.name}"
            stamp = iso_timestamp(member.mtime)
            if ident in skip:
                yield LogInput(ident, ident, skipped=True)
            elif member.size > MAX_LOG_BYTES:
                yield LogInput(ident, ident, error=f"larger than {MAX_LOG_BYTES >> 20} MB", timestamp=stamp)
            else:
                data = archive.extractfile(member).read()
                try:
                    yield LogInput(ident, ident, member_bytes(member.name, data), timestamp=stamp)
                except READ_ERRORS as exc:
                    yield LogInput(ident, ident, error=f"cannot read archive member: {reason(exc)}", timestamp=stamp)


def zip_members(handle: BinaryIO, name: str, skip: Container[str] = ()) -> Iterator[LogInput]:
    """Each file of a zip archive, read one at a time."""
    with zipfile.ZipFile(handle) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            ident = f"{name}!{info.filename}"
            stamp = iso_timestamp(datetime(*info.date_time, tzinfo=timezone.utc).timestamp())
            if ident in skip:
                yield LogInput(ident, ident, skipped=True)
                continue
            if info.file_size > MAX_LOG_BYTES:
                yield LogInput(ident, ident, error=f"larger than {MAX_LOG_BYTES >> 20} MB", timestamp=stamp)
                continue
            try:
                yield LogInput(ident, ident, member_bytes(info.filename, archive.read(info)), timestamp=stamp)
            except (*READ_ERRORS, RuntimeError) as exc:  # RuntimeError: an encrypted member
                yield LogInput(ident, ident, error=f"cannot read archive member: {reason(exc)}", timestamp=stamp)


def archive_inputs(handle: BinaryIO, name: str, skip: Container[str] = ()) -> Iterator[LogInput]:
    """Each member of a .tar/.tar.gz/.tgz/.zip archive; a damaged archive ends with an error row named for it."""
    reader = zip_members if name.lower().endswith(".zip") else tar_members
    try:
        yield from reader(handle, name, skip)
    except READ_ERRORS as exc:
        yield LogInput(name, name, skipped=True) if name in skip else \
            LogInput(name, name, error=f"cannot read: {reason(exc)}")


def jsonl_record(raw: bytes | str, source: str, field: str, id_field: str | None = None,
                 time_field: str | None = None, fallback_id: str | None = None) -> LogInput:
    """One JSONL line as a log: the text in `field`, the id in `id_field` (else `fallback_id`)."""
    ident = fallback_id or source
    try:
        record = json.loads(raw)
        if not isinstance(record, dict):
            raise TypeError("the line is not a JSON object")
        if id_field and record.get(id_field) is not None:
            ident = str(record[id_field])
        log = record[field]
        if not isinstance(log, str):
            raise TypeError(f"field {field!r} is not a string")
    except KeyError:
        return LogInput(ident, source, error=f"bad JSONL record: no field {field!r}")
    except (ValueError, TypeError) as exc:
        return LogInput(ident, source, error=f"bad JSONL record: {exc}")
    stamp = iso_timestamp(record.get(time_field)) if time_field else None
    return LogInput(ident, source, log.encode("utf-8", "surrogatepass"), timestamp=stamp)


def _jsonl_records(handle: BinaryIO, name: str, field: str, id_field: str | None, time_field: str | None,
                   skip: Container[str]) -> Iterator[LogInput]:
    for number, raw in enumerate(handle, 1):
        if not raw.strip():
            continue
        source = f"{name}:{number}"
        if not id_field and source in skip:  # the id is known without parsing the line
            yield LogInput(source, source, skipped=True)
            continue
        item = jsonl_record(raw, source, field, id_field, time_field)
        yield LogInput(item.id, source, skipped=True) if item.id in skip else item


def _walk(directory: Path) -> Iterator[Path]:
    """Files under `directory` in a stable order, hidden ones left out; one directory listed at a time."""
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            try:
                mode = path.stat().st_mode
            except OSError:
                yield path  # a dangling link: reported as an error row rather than silently dropped
                continue
            if stat.S_ISREG(mode):
                yield path  # not FIFOs, sockets or devices: reading those could block forever


def list_inputs(arguments: list[str]) -> list[str | Path]:
    """The files (and `-`) the arguments name, in order, before anything is read."""
    return list(iter_inputs(arguments))


def iter_inputs(arguments: list[str]) -> Iterator[str | Path]:
    """The files (and `-`) the arguments name, in order, found lazily: directories are walked as consumed."""
    for argument in arguments:
        if argument == "-":
            yield "-"
        elif any(ch in argument for ch in "*?[") and not os.path.exists(argument):
            yield from sorted(Path(p) for p in glob.iglob(argument, recursive=True) if os.path.isfile(p))
        elif os.path.isdir(argument):
            yield from _walk(Path(argument))
        else:
            yield Path(argument)


def is_jsonl(name: str) -> bool:
    """Whether a file name looks like JSON Lines (read as records when --jsonl-field is given)."""
    return name.lower().endswith(JSONL_SUFFIXES)


def is_archive(name: str) -> bool:
    """Whether a file name is a .tar/.tar.gz/.tgz/.zip archive (one log per member)."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def read_inputs(items, jsonl_field: str | None = None, id_field: str | None = None,
                time_field: str | None = None, skip: Container[str] = (), lazy: bool = False) -> Iterator[LogInput]:
    """Every log in the listed items; archives and JSONL files yield one log per member or record.

    Ids in `skip` come out marked `skipped`, without their bytes. With `lazy`, plain
    files come out unread (`file` set): `LogInput.loaded()` reads them where they are classified.
    """
    for item in _read_inputs(items, jsonl_field, id_field, time_field, skip):
        yield item if lazy else item.loaded()


def _read_inputs(items, jsonl_field, id_field, time_field, skip) -> Iterator[LogInput]:
    for item in items:
        if item == "-":
            if jsonl_field:
                yield from _jsonl_records(sys.stdin.buffer, "-", jsonl_field, id_field, time_field, skip)
            elif "-" in skip:
                yield LogInput("-", "-", skipped=True)
            else:
                yield LogInput("-", "-", sys.stdin.buffer.read())
            continue
        path = Path(item)
        name = str(path)
        if is_archive(path.name):
            try:
                handle = open(path, "rb")
            except OSError as exc:
                yield LogInput(name, name, skipped=True) if name in skip else \
                    LogInput(name, name, error=f"cannot read: {reason(exc)}")
                continue
            with handle:
                yield from archive_inputs(handle, name, skip)
            continue
        try:
            if jsonl_field and is_jsonl(path.name):
                opener = gzip.open if path.name.lower().endswith(".gz") else open
                with opener(path, "rb") as handle:
                    yield from _jsonl_records(handle, name, jsonl_field, id_field, time_field, skip)
            elif name in skip:
                yield LogInput(name, name, skipped=True)
            else:
                yield LogInput(name, name, file=name)
        except READ_ERRORS as exc:
            # The JSONL file itself is unreadable or damaged: one error row for it, after any records read.
            if name in skip:
                yield LogInput(name, name, skipped=True)
            else:
                yield LogInput(name, name, error=f"cannot read: {reason(exc)}")
