"""What users hit over HTTP, against a real gunicorn on a loopback port: the bad-input matrix, the issue's
"done when" with real curl, and what the server writes to its own log."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from functools import cache
from pathlib import Path

import pytest
import requests

from tests.conftest import SEED_NOTES, needs
from tests.live import CONFIG, GUNICORN, ROOT, Server, free_port, running_server
from tests.test_api import DISK_LOG, HANGUL, assert_error

SMALL_LIMIT = 4096
TOKEN = "live-test-token-7f3a9c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def wait_for_workers(server: Server, count: int, timeout: float = 30) -> list[int]:
    """The worker PIDs once all `count` workers have booted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = server.workers()
        if len(pids) == count:
            return sorted(pids)
        time.sleep(0.1)
    raise AssertionError(f"{count} workers did not boot: {server.workers()}\n{server.output()}")


def answers_normally(server: Server, headers: dict | None = None) -> None:
    response = server.post("/v1/classify", data=DISK_LOG, headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.json()["category"] == "no-space-left"


@pytest.fixture(scope="module")
def small_server(model_dir):
    """A second gunicorn with a 4 KiB body limit, 3 items per batch and a bearer token."""
    with running_server({"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "",
                         "LOGMEDIC_MAX_BODY_BYTES": str(SMALL_LIMIT), "LOGMEDIC_MAX_BATCH_ITEMS": "3",
                         "LOGMEDIC_API_TOKENS": TOKEN}) as server:
        yield server


@pytest.fixture(scope="module")
def servers(live_server, small_server) -> dict[str, Server]:
    return {"default": live_server, "small": small_server}


def _chunks(total: int, size: int = 1024):
    """A body sent with Transfer-Encoding: chunked (a generator has no length, so no Content-Length)."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"a" * piece


@cache
def _gzip_bomb(megabytes: int) -> bytes:
    """`megabytes` MiB of zeros, gzip-compressed to about a thousandth of that."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    return b"".join(compressor.compress(block) for _ in range(megabytes)) + compressor.flush()


# A 5 MB line as CI logs have them: docker's build-context progress rewritten with carriage returns.
PROGRESS_LINE = ("Sending build context to Docker daemon  " + "".join(
    f"{i // 10}.{i % 10}MB\r" for i in range(600_000)))[:5 * 1024 * 1024].encode() + b"\n" + DISK_LOG.encode()

# (name, server, request keyword arguments, status, error code or category): every row is documented in the
# README (HTTP API): bad input gets its status and a JSON error; odd but readable bytes get an answer.
MATRIX = [
    ("empty body", "default", dict(data=b""), 400, "empty_log"),
    ("whitespace only", "default", dict(data=b" \n\t \r\n   \n"), 400, "empty_log"),
    ("binary with NUL bytes", "default", dict(data=bytes(range(256)) * 64, headers={
        "Content-Type": "application/octet-stream"}), 200, "unknown"),
    ("invalid UTF-8", "default", dict(data=b"\xc3\x28\xff\xfe\xa0 build step\n" + DISK_LOG.encode() + b"\xed\xa0\x80\n"),
     200, "no-space-left"),
    ("UTF-16 with BOM", "default", dict(data=DISK_LOG.encode("utf-16"), headers={"Content-Type": "text/plain"}),
     200, "no-space-left"),
    ("5 MB single line", "default", dict(data=PROGRESS_LINE), 200, "no-space-left"),
    ("one byte over the limit", "small", dict(data=b"a" * (SMALL_LIMIT + 1), headers=AUTH), 413, "payload_too_large"),
    ("exactly the limit", "small", dict(data=(DISK_LOG * 200).encode()[:SMALL_LIMIT], headers=AUTH), 200,
     "no-space-left"),
    ("chunked over the limit, no Content-Length", "small", dict(data=_chunks(SMALL_LIMIT + 8192), headers=AUTH), 413,
     "payload_too_large"),
    ("gzip bomb (128 MiB of zeros)", "default", dict(data=_gzip_bomb(128), headers={"Content-Encoding": "gzip"}), 413,
     "payload_too_large"),
    ("gzip just over the limit once inflated", "small", dict(data=gzip.compress(b"a" * (SMALL_LIMIT + 1)),
                                                             headers={"Content-Encoding": "gzip", **AUTH}), 413,
     "payload_too_large"),
    ("corrupt gzip", "default", dict(data=b"\x1f\x8b\x08\x00garbage", headers={"Content-Encoding": "gzip"}), 400,
     "bad_request"),
    ("malformed JSON", "default", dict(data=b'{"log": "x",', headers={"Content-Type": "application/json"}), 400,
     "malformed_json"),
    ("JSON of the wrong types", "default", dict(json={"log": 12, "source": 3}), 422, "validation_error"),
    ("unknown fields", "default", dict(json={"log": DISK_LOG, "severity": "high"}), 422, "validation_error"),
    ("unsupported content type", "default", dict(data=DISK_LOG, headers={"Content-Type": "image/png"}), 415,
     "unsupported_media_type"),
    ("batch over the item limit", "small", dict(path="/v1/classify/batch", json={"logs": [
        {"id": str(i), "log": DISK_LOG} for i in range(4)]}, headers=AUTH), 422, "validation_error"),
    ("missing token", "small", dict(data=DISK_LOG), 401, "unauthorized"),
    ("wrong token", "small", dict(data=DISK_LOG, headers={"Authorization": "Bearer not-the-token"}), 401,
     "unauthorized"),
]


@pytest.mark.parametrize("name, which, request_kwargs, status, expected", MATRIX, ids=[row[0] for row in MATRIX])
def test_bad_input_matrix(servers, name, which, request_kwargs, status, expected):
    server = servers[which]
    pids = wait_for_workers(server, 2)
    request = dict(request_kwargs)
    response = server.post(request.pop("path", "/v1/classify"), **request)
    if status == 200:
        assert response.status_code == 200, response.text[:500]
        assert response.json()["category"] == expected
    else:
        assert_error(response, status, expected)
    # the server is unharmed: same workers, and a normal request gets a normal answer
    answers_normally(server, AUTH if which == "small" else None)
    assert wait_for_workers(server, 2) == pids
    assert server.process.poll() is None


def test_a_gzip_bomb_is_refused_before_it_is_inflated(served):
    """A 128 MiB bomb against a 2 MiB limit: the worker's peak memory grows by about the limit, not the bomb."""
    [pid] = wait_for_workers(served, 1)
    status = Path(f"/proc/{pid}/status")
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current resident size
    except OSError:
        pass  # then the peak since start counts: this server has only seen small requests
    before = int(re.search(r"VmRSS:\s+(\d+) kB", status.read_text()).group(1)) // 1024
    for _ in range(3):
        assert_error(served.post("/v1/classify", data=_gzip_bomb(128), headers={"Content-Encoding": "gzip"}),
                     413, "payload_too_large")
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", status.read_text()).group(1)) // 1024
    assert peak - before < 48, f"worker {pid} grew {peak - before} MiB on a bomb refused at 2 MiB"
    assert wait_for_workers(served, 1) == [pid]
    answers_normally(served)


# -- the "done when", with real curl against `logmedic serve` (what `make run` runs) ----------


def seed_postgres_log() -> str:
    """The notes' postgres problem log: the first ```log block of the `## postgres` section."""
    text = SEED_NOTES.read_text(encoding="utf-8")
    section = re.search(r"^## postgres\n(.*?)(?=^## )", text, flags=re.M | re.S).group(1)
    return re.search(r"```log\n(.*?)```", section, flags=re.S).group(1)


@pytest.fixture(scope="module")
def served(model_dir):
    """`logmedic serve`, as `make run` starts it (one worker to keep the test light, a 2 MiB body limit)."""
    port = free_port()
    log = tempfile.NamedTemporaryFile("wb", prefix="logmedic-serve-", suffix=".log", delete=False)
    # A 2 MiB body limit for the gzip bomb's memory test; the seed log is a few hundred bytes.
    env = {**os.environ, "LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "",
           "LOGMEDIC_MAX_BODY_BYTES": str(2 * 1024 * 1024)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen([str(Path(sys.executable).parent / "logmedic"), "serve", "--host", "127.0.0.1",
                                "--port", str(port), "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", Path(log.name))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(server.url + "/healthz", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.2)
    else:
        server.stop(signal.SIGKILL)
        raise AssertionError(f"logmedic serve did not come up:\n{server.output()}")
    yield server
    server.stop()
    Path(log.name).unlink(missing_ok=True)


def curl(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("curl")
    if binary is None:
        pytest.skip("curl is not installed")
    return subprocess.run([binary, "--silent", "--show-error", "--fail-with-body", "--write-out",
                           "\n%{http_code} %{content_type}", *args], capture_output=True, text=True, timeout=60)


def split(result: subprocess.CompletedProcess) -> tuple[str, str, str]:
    """(body, status, content type) from curl's output with the --write-out trailer."""
    assert result.returncode == 0, result.stderr + result.stdout
    body, _, trailer = result.stdout.rpartition("\n")
    status, _, content_type = trailer.partition(" ")
    return body, status, content_type


@needs(SEED_NOTES)
def test_done_when_curl_data_binary_seed_postgres_log(served, tmp_path):
    path = tmp_path / "postgres.log"
    path.write_text(seed_postgres_log(), encoding="utf-8")
    url = served.url + "/v1/classify"

    body, status, content_type = split(curl("--data-binary", f"@{path}", url))
    assert (status, content_type.split(";")[0]) == ("200", "application/json")
    answer = json.loads(body)
    assert answer["category"] == "postgres-superuser-password"
    commands = [step["command"] for step in answer["remediation"]]
    assert any("POSTGRES_PASSWORD=" in c for c in commands)
    assert any("POSTGRES_HOST_AUTH_METHOD=trust" in c for c in commands)
    assert "POSTGRES_PASSWORD=[REDACTED]" in json.dumps(answer["evidence"])  # the notes' example value is not echoed

    page, status, content_type = split(curl("--data-binary", f"@{path}", "-H", "Accept: text/markdown", url))
    assert (status, content_type) == ("200", "text/markdown; charset=utf-8")
    assert page.startswith("### logmedic: ") and "(`postgres-superuser-password`)" in page
    assert "**Fix**" in page and "```sh" in page and "POSTGRES_HOST_AUTH_METHOD=trust" in page
    assert not page.lstrip().startswith("{")

    body, status, _ = split(curl("--data-binary", f"@{path}", url + "?lang=ko"))
    korean = json.loads(body)
    assert korean["category"] == "postgres-superuser-password" and korean["lang"] == "ko"
    assert HANGUL.search(korean["title"]) and HANGUL.search(korean["explanation"])

    page, status, _ = split(curl("--data-binary", f"@{path}", "-H", "Accept: text/markdown", url + "?lang=ko"))
    assert HANGUL.search(page)


def test_curl_sees_json_errors_too(served):
    result = subprocess.run([shutil.which("curl") or "curl", "--silent", "--data-binary", "", "-w", "\n%{http_code}",
                             served.url + "/v1/classify"], capture_output=True, text=True, timeout=60)
    body, _, status = result.stdout.rpartition("\n")
    assert status == "400" and '"code":"empty_log"' in body.replace(" ", "")


def test_access_log_carries_no_bodies_queries_or_tokens(small_server):
    marker = "BODYMARKER-5d1e2f"
    query_secret = "QUERYMARKER-a8b7c6"
    response = small_server.post(f"/v1/classify?filename={query_secret}.log",
                                 data=f"{marker} password=hunter2-live\n{DISK_LOG}", headers=AUTH)
    assert response.status_code == 200
    small_server.post("/v1/classify", data=f"{marker}\n", headers={"Authorization": "Bearer wrong-token-x"})
    deadline = time.monotonic() + 10
    while '"POST /v1/classify" 401' not in small_server.output() and time.monotonic() < deadline:
        time.sleep(0.1)  # gunicorn writes the access line after the response
    output = small_server.output()
    assert '"POST /v1/classify" 200' in output and '"POST /v1/classify" 401' in output
    for leaked in (marker, query_secret, "hunter2-live", TOKEN, "wrong-token-x", "No space left"):
        assert leaked not in output, leaked


# -- what gunicorn answers itself is JSON too -------------------------------------------------------


def raw_http(server: Server, request: bytes) -> tuple[str, dict, str]:
    """Send bytes on a socket; (status line, headers, body) of the answer."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body.decode()


class RawResponse:
    """Enough of a response for assert_error."""

    def __init__(self, status: str, headers: dict, body: str):
        self.status_code = int(status.split()[1])
        self.headers = {"Content-Type": headers.get("content-type", "")}
        self.text = body


# (why, raw request, status): HTTP that never reaches Flask.
MALFORMED_HTTP = [
    ("garbage request line", b"HELLO THERE\r\n\r\n", 400),
    ("bad chunk size", b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n", 400),
    ("request line too long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
]


@pytest.mark.parametrize("why, request_bytes, status", MALFORMED_HTTP, ids=[row[0] for row in MALFORMED_HTTP])
def test_malformed_http_gets_a_json_error(live_server, why, request_bytes, status):
    pids = wait_for_workers(live_server, 2)
    answer = RawResponse(*raw_http(live_server, request_bytes))
    assert answer.status_code == status
    assert_error(answer, status, json.loads(answer.text)["error"]["code"])
    answers_normally(live_server)
    assert wait_for_workers(live_server, 2) == pids


SLOW = b"SLOW-LOG-FOR-THE-TIMEOUT-TEST"


def slow_application():
    """The real app whose engine takes 60 s on one marker log: a worker that outlives LOGMEDIC_TIMEOUT."""
    from service.wsgi import application

    app = application()
    engine = app.extensions["logmedic"]
    diagnose = engine.diagnose

    def slow(data, lang="en"):
        if SLOW in (data if isinstance(data, bytes) else data.encode()):
            time.sleep(60)
        return diagnose(data, lang)

    engine.diagnose = slow
    return app


def test_a_worker_past_its_timeout_answers_json_and_is_replaced(model_dir):
    port = free_port()
    log = tempfile.NamedTemporaryFile("wb", prefix="logmedic-timeout-", suffix=".log", delete=False)
    env = {**os.environ, "LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "", "LOGMEDIC_TIMEOUT": "2",
           "LOGMEDIC_HOST": "127.0.0.1", "LOGMEDIC_PORT": str(port), "LOGMEDIC_WORKERS": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen([str(GUNICORN), "--config", str(CONFIG), "tests.test_http_live:slow_application()"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", Path(log.name))
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, server.output()
            try:
                if requests.get(server.url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        [first] = wait_for_workers(server, 1)
        response = server.post("/v1/classify", data=SLOW, timeout=60)
        assert_error(response, 503, "timeout")
        assert "LOGMEDIC_TIMEOUT" in response.json()["error"]["message"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = server.workers()
            if len(pids) == 1 and pids != [first]:
                break
            time.sleep(0.2)
        assert server.workers() != [first], "the stuck worker was not replaced"
        answers_normally(server)
        assert "WORKER TIMEOUT" in server.output()
    finally:
        server.stop()
        Path(log.name).unlink(missing_ok=True)
