"""Faults against real processes: killed workers, a stopped master, a bundle gone from disk, a broken bundle.

Each test starts its own gunicorn (tests/live.py) with the project's gunicorn
config, so what is proven is what `logmedic serve` and the container do.
Nothing here asserts a time: loops are bounded by counts and generous
deadlines, and the order of events is checked, not their duration.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.live import running_server, start_server

DISK_LOG = b"Step 5/9 : RUN apt-get install -y build-essential\nwrite /var/lib/docker/tmp/x: no space left on device\n"
BIG_LOG = b"".join(b"2024-05-01T10:00:%02d INFO step %d: compiling module %d\n" % (i % 60, i, i) for i in range(4000)) + DISK_LOG
DEADLINE = 120  # seconds any wait below may take before the test gives up


def _wait_for(condition, what: str, deadline: float = DEADLINE):
    """Poll `condition` until it returns something truthy; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _replacement(server, dead: set[int], count: int) -> list[int] | None:
    workers = server.workers()
    return workers if len(workers) == count and not dead & set(workers) else None


# -- a worker killed under load ---------------------------------------------------------------------

class Load:
    """Client threads posting logs back to back; records every outcome."""

    def __init__(self, url: str, threads: int = 4):
        self.url, self.stop = url, threading.Event()
        self.ok = 0
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def _run(self, number: int) -> None:
        turn = number
        while not self.stop.is_set():
            body = BIG_LOG if turn % 2 else DISK_LOG
            turn += 1
            try:
                response = requests.post(self.url + "/v1/classify", data=body, timeout=60,
                                         headers={"Content-Type": "text/plain"})
                with self.lock:
                    self.statuses.append(response.status_code)
                    self.ok += response.status_code == 200 and response.json()["category"] == "no-space-left"
            except requests.RequestException as exc:
                with self.lock:
                    self.errors.append(type(exc).__name__)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(90)


def test_when_a_worker_is_killed_under_load_then_only_its_request_fails_and_it_is_replaced(model_dir):
    with running_server({"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": ""}, workers=2) as server:
        victim = server.workers()[0]
        with Load(server.url) as load:
            _wait_for(lambda: load.ok >= 20, "20 answers before the kill")
            os.kill(victim, signal.SIGKILL)
            before = load.ok
            workers = _wait_for(lambda: _replacement(server, {victim}, 2), "gunicorn to replace the worker")
            _wait_for(lambda: load.ok >= before + 40, "40 answers after the kill")
        # A sync worker serves one request at a time: at most that one request is lost, as a dropped
        # connection (there is no proxy in front to turn it into a 502), and nothing else fails.
        assert len(load.errors) <= 1, load.errors
        assert all(status == 200 for status in load.statuses), sorted(set(load.statuses))
        assert victim not in workers
        for _ in range(10):  # the new worker answers too (10 sequential requests reach both workers)
            assert server.post("/v1/classify", data=DISK_LOG).json()["category"] == "no-space-left"
        assert f"Worker (pid:{victim}) was sent SIGKILL" in server.output()


# -- graceful drain on SIGTERM ----------------------------------------------------------------------

def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _accepting_worker(server, port: int, client_port: int) -> int | None:
    """The worker pid that has accepted the connection from `client_port`, read from /proc."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == client_port and state == "01":
            inode = fields[9]
    if inode is None or inode == "0":
        return None
    return next((pid for pid in server.workers() if inode in _socket_inodes(pid)), None)


def _half_sent_request(server, body: bytes) -> socket.socket:
    """A connection that has sent its headers and half its body, once a worker has accepted it."""
    port = int(server.url.rsplit(":", 1)[1])
    connection = socket.create_connection(("127.0.0.1", port), timeout=90)
    head = (f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    connection.sendall(head + body[:len(body) // 2])
    client_port = connection.getsockname()[1]
    _wait_for(lambda: _accepting_worker(server, port, client_port), "a worker to accept the request")
    return connection


def _finish(connection: socket.socket, body: bytes) -> tuple[int, dict]:
    connection.sendall(body[len(body) // 2:])
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    connection.close()
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_when_the_master_gets_sigterm_then_requests_in_flight_complete(model_dir):
    server = start_server({"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": ""}, workers=2)
    try:
        assert server.process.poll() is None, server.output()
        in_flight = [_half_sent_request(server, BIG_LOG) for _ in range(2)]  # one on each worker
        server.process.send_signal(signal.SIGTERM)

        # The master has taken the signal (and passed it to the workers) while both requests were half sent.
        _wait_for(lambda: "Handling signal: term" in server.output(), "the master to handle SIGTERM")
        answers = [_finish(connection, BIG_LOG) for connection in in_flight]
        assert [status for status, _ in answers] == [200, 200]
        assert [body["category"] for _, body in answers] == ["no-space-left", "no-space-left"]
        assert server.process.wait(60) == 0
        assert "Traceback" not in server.output()
    finally:
        server.stop(signal.SIGKILL)


# -- the bundle deleted or replaced on disk while serving ---------------------------------------------

def test_when_the_bundle_is_deleted_or_replaced_on_disk_then_the_service_answers_from_memory(model_dir, tmp_path):
    bundle = tmp_path / "model"
    shutil.copytree(model_dir, bundle)
    with running_server({"LOGMEDIC_MODEL_DIR": str(bundle), "LOGMEDIC_RATE_LIMIT": ""}, workers=2) as server:
        first = server.post("/v1/classify", data=DISK_LOG).json()
        assert first["category"] == "no-space-left"

        shutil.rmtree(bundle)
        assert server.post("/v1/classify", data=DISK_LOG).json() == first
        assert server.get("/readyz").status_code == 200

        bundle.mkdir()  # a foreign bundle appears where the real one was
        (bundle / "manifest.json").write_text(json.dumps({"format": 99, "training_data_hash": "0" * 64}))
        (bundle / "pipeline.joblib").write_bytes(b"not a pickle")
        # New workers fork from the master, which loaded the model before forking (preload): killing
        # every worker proves the answers do not come from disk.
        dead = set(server.workers())
        for pid in dead:
            os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: _replacement(server, dead, 2), "gunicorn to replace both workers")
        for _ in range(6):
            assert server.post("/v1/classify", data=DISK_LOG).json() == first
        assert server.get("/readyz").json()["model_version"] == first["model_version"]
        assert "Traceback" not in server.output()


# -- start with a broken bundle: one clear line, no traceback, non-zero exit ---------------------------

def _manifest(bundle: Path, **changes) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "sklearn":
            manifest["libraries"]["scikit-learn"] = value
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest))


def _truncate(bundle: Path) -> None:
    path = bundle / "pipeline.joblib"
    path.write_bytes(path.read_bytes()[:1000])


def _truncate_and_fix_checksum(bundle: Path) -> None:
    import hashlib

    _truncate(bundle)
    _manifest(bundle, pipeline_sha256=hashlib.sha256((bundle / "pipeline.joblib").read_bytes()).hexdigest())


BROKEN = [
    # another scikit-learn version in the manifest: a foreign bundle
    ("foreign scikit-learn", lambda b: _manifest(b, sklearn="0.24.2"), "scikit-learn 0.24.2"),
    # a pipeline cut short (a copy interrupted): its checksum no longer matches the manifest
    ("truncated pipeline", _truncate, "corrupt"),
    # truncated and the checksum forged to match: refused when unpickling fails
    ("truncated, checksum matching", _truncate_and_fix_checksum, "could not be loaded"),
    # trained on other data than training_data/
    ("stale training data", lambda b: _manifest(b, training_data_hash="0" * 64), "stale"),
    # another bundle format
    ("other format", lambda b: _manifest(b, format=2), "format 2"),
    # a manifest that is not JSON
    ("corrupt manifest", lambda b: (b / "manifest.json").write_text("{not json"), "corrupt"),
    # nothing there at all
    ("no bundle", lambda b: shutil.rmtree(b), "no trained model"),
]


@pytest.mark.parametrize("case, damage, says", BROKEN, ids=[case for case, _, _ in BROKEN])
def test_when_the_bundle_is_broken_then_gunicorn_refuses_to_start_with_one_line(model_dir, tmp_path, case, damage, says):
    bundle = tmp_path / "model"
    shutil.copytree(model_dir, bundle)
    damage(bundle)
    server = start_server({"LOGMEDIC_MODEL_DIR": str(bundle)}, workers=1)
    try:
        code = server.process.wait(60)
    finally:
        server.stop(signal.SIGKILL)
    output = server.output()
    lines = output.strip().splitlines()
    assert code != 0
    assert "Traceback" not in output
    assert len(lines) == 1 and lines[0].startswith("logmedic: cannot start: "), output
    assert says in lines[0] and "logmedic train" in lines[0], lines[0]
