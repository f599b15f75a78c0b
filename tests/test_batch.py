"""`logmedic batch`: every input kind, error rows, CSV, workers, and resuming after a SIGKILL.

The batch runs as users run it, in a subprocess; its rows are checked against the
engine classifying the same bytes in this process, so a wrong read (an archive
member not found, a .gz not decompressed) shows up as a different answer.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from model import paths
from service.batch import done_ids
from service.inputs import iso_timestamp

LOGMEDIC = str(Path(sys.executable).parent / "logmedic")
SAMPLES = paths.samples_dir(paths.DATA_DIR)
CATEGORIES = ("oom-killed", "no-space-left", "build-dns-failure", "registry-rate-limit", "image-not-found",
              "platform-mismatch", "apt-release-eol", "docker-socket-permission")
STAMP = 1_600_000_000  # 2020-09-13T12:26:40Z


@pytest.fixture(scope="module")
def logs(diagnoser) -> dict[str, bytes]:
    """One sample per category that the engine gets right, so every expected answer differs from `unknown`."""
    chosen = {}
    for category in CATEGORIES:
        for path in sorted((SAMPLES / category).glob("*.log")):
            if diagnoser.verdict(path.read_bytes()).category == category:
                chosen[category] = path.read_bytes()
                break
    assert len(chosen) == len(CATEGORIES), "the engine no longer recognises samples of some categories"
    return chosen


@pytest.fixture
def batch(model_dir):
    def batch(*args, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([LOGMEDIC, "--model-dir", str(model_dir), "batch", "--quiet", *map(str, args)],
                                cwd=cwd, input=stdin, capture_output=True, timeout=600)
        assert b"Traceback" not in result.stderr, result.stderr.decode()
        return result
    return batch


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def diagnosis_fields(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("id", "path", "timestamp", "error")}


def tar_bytes(members: dict[str, bytes], mode: str = "w", mtime: int = STAMP) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        folder = tarfile.TarInfo("job1")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_every_input_kind_gives_the_rows_of_the_engine(batch, diagnoser, logs, tmp_path):
    oom, disk, dns, rate, missing, platform, eol, socket = (logs[c] for c in CATEGORIES)
    root = tmp_path / "in"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / ".git").mkdir()
    (root / "dir" / "a.log").write_bytes(oom)
    (root / "dir" / "sub" / "b.log").write_bytes(disk)
    (root / "dir" / ".hidden.log").write_bytes(dns)  # hidden: left out
    (root / "dir" / ".git" / "x.log").write_bytes(dns)  # inside a hidden folder: left out
    os.utime(root / "dir" / "a.log", (STAMP, STAMP))
    (root / "c.log.gz").write_bytes(gzip.compress(dns))
    (root / "export.tar").write_bytes(tar_bytes({"job1/build.log": rate, "job2/build.log.gz": gzip.compress(missing)}))
    (root / "export.tar.gz").write_bytes(tar_bytes({"x.log": platform}, mode="w:gz"))
    with zipfile.ZipFile(root / "export.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/", b"")
        archive.writestr(zipfile.ZipInfo("a/b.log", date_time=(2021, 1, 2, 3, 4, 6)), eol)
    records = [
        json.dumps({"id": "run-1", "log": socket.decode(), "ts": 1_700_000_000}),
        json.dumps({"id": "run-2", "log": oom.decode(), "ts": "2024-05-01T12:00:00+02:00"}),
        json.dumps({"log": disk.decode(), "ts": 1_700_000_000_000}),  # no id: FILE:LINE; epoch milliseconds
        "",  # blank lines are not records
        "not json",
        json.dumps({"id": "run-6", "message": "no log field"}),
    ]
    (root / "records.jsonl").write_text("\n".join(records) + "\n")
    (root / "globbed").mkdir()
    (root / "globbed" / "one.log").write_bytes(rate)
    (root / "globbed" / "two.txt").write_bytes(dns)  # not matched by the glob
    output = tmp_path / "out.jsonl"

    result = batch("in/dir", "in/c.log.gz", "in/export.tar", "in/export.tar.gz", "in/export.zip", "in/records.jsonl",
                   "in/globbed/*.log", "-", "--jsonl-field", "log", "--id-field", "id", "--time-field", "ts",
                   "-o", output, cwd=tmp_path, stdin=json.dumps({"id": "piped", "log": missing.decode()}).encode())

    assert result.returncode == 0
    rows = rows_of(output)
    expected = [  # (id, bytes classified or None for an error row, timestamp), in input order
        ("in/dir/a.log", oom, iso(STAMP)),
        ("in/dir/sub/b.log", disk, None),
        ("in/c.log.gz", dns, None),
        ("in/export.tar!job1/build.log", rate, iso(STAMP)),
        ("in/export.tar!job2/build.log.gz", missing, iso(STAMP)),
        ("in/export.tar.gz!x.log", platform, iso(STAMP)),
        ("in/export.zip!a/b.log", eol, "2021-01-02T03:04:06Z"),
        ("run-1", socket, "2023-11-14T22:13:20Z"),
        ("run-2", oom, "2024-05-01T10:00:00Z"),
        ("in/records.jsonl:3", disk, "2023-11-14T22:13:20Z"),
        ("in/records.jsonl:5", None, None),
        ("run-6", None, None),
        ("in/globbed/one.log", rate, None),
        ("piped", missing, None),  # stdin is JSONL too when --jsonl-field is given
    ]
    assert [r["id"] for r in rows] == [ident for ident, _, _ in expected]
    for row, (ident, data, stamp) in zip(rows, expected):
        if data is None:
            assert row["category"] is None and row["error"].startswith("bad JSONL record"), row
            continue
        assert row["error"] is None
        assert diagnosis_fields(row) == diagnoser.diagnose(data).model_dump(mode="json"), ident
        if stamp is not None:
            assert row["timestamp"] == stamp, ident
    assert rows[1]["timestamp"] == iso(int((root / "dir" / "sub" / "b.log").stat().st_mtime))  # files: their mtime
    assert rows[9]["path"] == "in/records.jsonl:3" and rows[8]["path"] == "in/records.jsonl:2"
    assert "no field 'log'" in rows[11]["error"]


def test_unreadable_inputs_become_error_rows_and_the_batch_goes_on(batch, logs, tmp_path):
    root = tmp_path / "in"
    (root / "links").mkdir(parents=True)
    (root / "first.log").write_bytes(logs["oom-killed"])
    (root / "bad.log.gz").write_bytes(b"this is not gzip at all")
    (root / "bad.zip").write_bytes(b"PK\x03\x04 not really a zip")
    whole = tar_bytes({"small.log": logs["no-space-left"], "big.log": os.urandom(200_000)}, mode="w:gz")
    (root / "cut.tar.gz").write_bytes(whole[: len(whole) * 3 // 4])  # the first member survives, then the stream ends
    (root / "links" / "dangling.log").symlink_to(root / "nowhere.log")
    (root / "last.log").write_bytes(logs["apt-release-eol"])
    unreadable = []
    if os.geteuid() != 0:  # root reads everything: the permission case only exists for other users
        (root / "secret.log").write_bytes(b"x")
        (root / "secret.log").chmod(0)
        unreadable = ["in/secret.log"]
    output = tmp_path / "out.jsonl"

    result = batch("in/first.log", "in/missing.log", "in/bad.log.gz", "in/bad.zip", "in/cut.tar.gz", "in/links",
                   *unreadable, "in/last.log", "-", "-o", output, cwd=tmp_path, stdin=logs["image-not-found"])

    assert result.returncode == 0
    rows = {r["id"]: r for r in rows_of(output)}
    errors = {ident: r["error"] for ident, r in rows.items() if r["error"]}
    assert rows["in/first.log"]["category"] == "oom-killed"
    assert rows["in/cut.tar.gz!small.log"]["category"] == "no-space-left"
    assert rows["in/last.log"]["category"] == "apt-release-eol"
    assert rows["-"]["category"] == "image-not-found"  # a plain log on stdin
    assert set(errors) == {"in/missing.log", "in/bad.log.gz", "in/bad.zip", "in/cut.tar.gz",
                           "in/links/dangling.log", *unreadable}
    assert "No such file or directory" in errors["in/missing.log"]
    assert "No such file or directory" in errors["in/links/dangling.log"]
    assert "gzip" in errors["in/bad.log.gz"].lower()
    assert all(rows[ident]["category"] is None for ident in errors)
    if unreadable:
        assert "Permission denied" in errors["in/secret.log"]


@pytest.fixture(scope="module")
def corpus(model_dir, logs, tmp_path_factory) -> Path:
    """Three samples per category, a zip of two logs and a broken .gz, batched once as JSONL and as CSV."""
    base = tmp_path_factory.mktemp("corpus")
    root = base / "in"
    root.mkdir()
    for category in sorted(p.name for p in SAMPLES.iterdir() if p.is_dir()):
        for path in sorted((SAMPLES / category).glob("*.log"))[:3]:
            (root / f"{category}-{path.name}").write_bytes(path.read_bytes())
    (root / "bundle.zip").write_bytes(_zip({"m1.log": logs["oom-killed"], "m2.log": logs["no-space-left"]}))
    (root / "zz-broken.log.gz").write_bytes(b"broken")
    for fmt in ("jsonl", "csv"):
        subprocess.run([LOGMEDIC, "--model-dir", str(model_dir), "batch", "--quiet", "in", "--format", fmt,
                        "-o", f"out.{fmt}"], cwd=base, check=True, capture_output=True, timeout=600)
    return base


def test_csv_has_the_same_rows_one_line_each(corpus):
    lines = (corpus / "out.csv").read_text().splitlines()
    table = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert len(lines) == len(table) + 1  # one physical line per row, so a torn last line can be cut on resume
    as_json = rows_of(corpus / "out.jsonl")
    assert [(r["id"], r["category"] or "") for r in table] == [(r["id"], r["category"] or "") for r in as_json]
    first, first_json = table[0], as_json[0]
    assert first["commands"] == " ; ".join(step["command"] for step in first_json["remediation"])
    assert first["evidence"].startswith(f"{first_json['evidence'][0]['line']}: ")
    assert first["confidence"] == str(first_json["confidence"]) and first["timestamp"] == first_json["timestamp"]
    assert table[-1]["error"].startswith("cannot read") and table[-1]["category"] == ""


def test_two_workers_write_exactly_what_one_writes(batch, corpus, tmp_path):
    two = batch("in", "-o", tmp_path / "two.jsonl", "--jobs", "2", cwd=corpus)

    assert two.returncode == 0
    written = (corpus / "out.jsonl").read_bytes()
    assert written.count(b"\n") == len(list((corpus / "in").iterdir())) + 1  # the zip holds two logs
    assert (tmp_path / "two.jsonl").read_bytes() == written


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _alive_in_group(pgid: int) -> list[int]:
    """Processes of a process group that still run (zombies waiting for a reaper do not count)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


@pytest.fixture
def many_logs(tmp_path) -> Path:
    """300 logs of about 10 KB: each a sample after lines of `unknown` samples."""
    filler = b"".join(p.read_bytes() for p in sorted((SAMPLES / "unknown").glob("*.log")))
    every = [p.read_bytes() for p in sorted(SAMPLES.glob("*/*.log"))]
    root = tmp_path / "many"
    root.mkdir()
    for number in range(300):
        start = (number * 7919) % max(1, len(filler) - 8_000)
        body = filler[start:start + 8_000]
        (root / f"{number:03d}.log").write_bytes(body + b"\n" + every[number % len(every)])
    return root


def _start_batch(model_dir, logs, output):
    """`logmedic batch --jobs 2` over `logs` in its own session (so a test can kill it whole); (process, argv)."""
    command = [LOGMEDIC, "--model-dir", str(model_dir), "batch", "--quiet", str(logs), "--jobs", "2", "-o", str(output)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    return process, command


def test_killed_halfway_then_resumed_every_log_appears_exactly_once(model_dir, diagnoser, many_logs, tmp_path):
    output = tmp_path / "out.jsonl"
    process, command = _start_batch(model_dir, many_logs, output)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if output.exists() and output.read_bytes().count(b"\n") >= 60:
                process.send_signal(signal.SIGKILL)  # the parent only, as the OOM killer or `kill -9` would
                break
            time.sleep(0.01)
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
        before = output.read_bytes().count(b"\n")
        assert 60 <= before < 300, "the batch was not stopped halfway"
        deadline = time.monotonic() + 30
        while _alive_in_group(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive_in_group(process.pid) == [], "workers outlived their killed parent"
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.stderr.close()

    resumed = subprocess.run([*command, "--resume"], capture_output=True, timeout=600)

    assert resumed.returncode == 0, resumed.stderr.decode()
    rows = rows_of(output)  # every line parses: no torn line
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) == 300
    assert sorted(ids) == sorted(str(p) for p in many_logs.iterdir())
    for row in rows[before - 5:before + 5]:  # around the cut: the answers of an uninterrupted run
        assert row["category"] == diagnoser.verdict(Path(row["id"]).read_bytes()).category


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_cuts_a_torn_last_line_and_writes_the_rest_once(batch, corpus, tmp_path, fmt):
    whole = (corpus / f"out.{fmt}").read_bytes()
    lines = whole.splitlines(keepends=True)
    head = 30 if fmt == "jsonl" else 31  # (the CSV header and) thirty rows
    output = tmp_path / f"out.{fmt}"
    output.write_bytes(b"".join(lines[:head]) + lines[head][: len(lines[head]) // 2])  # killed mid-write

    assert batch("in", "-o", output, "--format", fmt, "--resume", cwd=corpus).returncode == 0

    assert output.read_bytes() == whole  # input order and content, as if never interrupted


def test_done_ids_reads_what_a_run_wrote(tmp_path):
    output = tmp_path / "out.jsonl"
    output.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "categ')
    assert done_ids(output, "jsonl") == {"a", "b"}
    assert output.read_text() == '{"id": "a"}\n{"id": "b"}\n'
    assert done_ids(tmp_path / "none.jsonl", "jsonl") == set()


def test_resume_needs_an_output_file(batch, tmp_path):
    result = batch(".", "--resume", cwd=tmp_path)
    assert result.returncode == 2 and b"--resume needs --output" in result.stderr


@pytest.mark.parametrize("value, expected", [
    (1_700_000_000, "2023-11-14T22:13:20Z"),  # epoch seconds
    (1_700_000_000_123, "2023-11-14T22:13:20Z"),  # epoch milliseconds (JavaScript, many exporters)
    ("1700000000", "2023-11-14T22:13:20Z"),  # epoch seconds as text
    ("2023-11-14T22:13:20Z", "2023-11-14T22:13:20Z"),  # ISO with Z
    ("2023-11-15T07:13:20+09:00", "2023-11-14T22:13:20Z"),  # ISO with an offset: converted to UTC
    ("2023-11-14 22:13:20", "2023-11-14T22:13:20Z"),  # naive: taken as UTC
    ("yesterday", "yesterday"),  # unparseable: kept, the report counts it as without a usable time
    (None, None),
])
def test_timestamps_become_utc_iso(value, expected):
    assert iso_timestamp(value) == expected


def _workers_of(pid: int) -> list[int]:
    """Forked children running the parent's command line (not, say, multiprocessing's resource tracker)."""
    found = []
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                same = (entry / "cmdline").read_bytes() == command
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z" and same:
                found.append(int(entry.name))
    return found


def test_when_a_worker_dies_then_the_batch_stops_with_a_message_and_resume_finishes(model_dir, many_logs, tmp_path):
    output = tmp_path / "out.jsonl"
    process, command = _start_batch(model_dir, many_logs, output)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            workers = _workers_of(process.pid)
            if output.exists() and output.read_bytes().count(b"\n") >= 30 and workers:
                os.kill(workers[0], signal.SIGKILL)  # as the OOM killer would
                break
            time.sleep(0.01)
        stderr = process.communicate(timeout=120)[1].decode()
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    assert process.returncode == 1, stderr
    assert "a worker process died" in stderr and "--resume" in stderr and "Traceback" not in stderr
    kept = len(rows_of(output))
    assert 30 <= kept < 300
    resumed = subprocess.run([*command, "--resume"], capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()
    ids = [row["id"] for row in rows_of(output)]
    assert len(ids) == len(set(ids)) == 300
