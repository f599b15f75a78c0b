"""Abuse: rate limits (in memory and in a real Redis), size limits, security headers, no debug in
production, and a container that runs as a non-root user on a read-only root file system.

Every HTTP check runs against a real gunicorn (tests/live.py); the Redis one
against a real redis-server that the test starts on a free port (.ci/run
installs it; the test is skipped where the binary is missing).
"""

from __future__ import annotations

import gzip
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from service.settings import Settings, SettingsError, load_settings
from tests.live import ROOT, free_port, running_server, start_server

LOG = "Step 2/4 : RUN pip install -r requirements.txt\nwrite /var/lib/docker/tmp/x: no space left on device\n"


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()["error"]
    assert body["code"] == code and body["message"]
    return body


def assert_retry_after(response: requests.Response) -> None:
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60, response.headers.get("Retry-After")


# -- rate limits ---------------------------------------------------------------------------------------

def test_rate_limit_is_per_token_with_429_and_retry_after(model_dir):
    env = {"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "5/minute",
           "LOGMEDIC_API_TOKENS": "token-alpha,token-beta"}
    # One worker: the in-memory counter lives in each worker process (README: use Redis to share it).
    with running_server(env, workers=1) as server:
        alpha = {"Authorization": "Bearer token-alpha"}
        for _ in range(5):
            assert server.post("/v1/classify", data=LOG, headers=alpha).status_code == 200
        assert_retry_after(server.post("/v1/classify", data=LOG, headers=alpha))
        assert_retry_after(server.post("/v1/classify/batch", json={"logs": [{"id": "a", "log": LOG}]}, headers=alpha))
        # another token has its own budget; health, readiness and docs are never limited
        assert server.post("/v1/classify", data=LOG, headers={"Authorization": "Bearer token-beta"}).status_code == 200
        for path in ("/healthz", "/readyz", "/openapi.json") * 4:
            assert server.get(path).status_code == 200
        # no token: 401, never a 200 (the limit does not let an unauthenticated request through)
        assert_error(server.post("/v1/classify", data=LOG), 401, "unauthorized")


def test_rate_limit_is_per_client_address_without_tokens(model_dir):
    env = {"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "3/minute"}
    with running_server(env, workers=1) as server:
        for _ in range(3):
            assert server.post("/v1/classify", data=LOG).status_code == 200
        assert_retry_after(server.post("/v1/classify", data=LOG))
        # a made-up bearer token does not buy a fresh budget: only accepted tokens are counted apart
        for made_up in ("made-up-1", "made-up-2"):
            assert_retry_after(server.post("/v1/classify", data=LOG, headers={"Authorization": f"Bearer {made_up}"}))


def test_an_empty_variable_turns_the_rate_limit_off(model_dir, monkeypatch):
    """`LOGMEDIC_RATE_LIMIT=` disables the limit (README); an empty host or port still means the default."""
    from service import create_app

    assert load_settings(environ={"LOGMEDIC_RATE_LIMIT": ""}).rate_limit == ""
    assert load_settings(environ={"LOGMEDIC_API_TOKENS": ""}).api_tokens == ""
    assert load_settings(environ={"LOGMEDIC_HOST": "", "LOGMEDIC_PORT": ""}).host == "127.0.0.1"
    monkeypatch.setenv("LOGMEDIC_RATE_LIMIT", "")
    assert "logmedic.limiter" not in create_app({"model_dir": model_dir}).extensions
    monkeypatch.setenv("LOGMEDIC_RATE_LIMIT", "10/minute")
    assert "logmedic.limiter" in create_app({"model_dir": model_dir}).extensions


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server on a free loopback port, stopped after the test."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("redis-server did not answer")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(30)


def test_rate_limit_in_redis_is_shared_by_all_workers(model_dir, redis_url):
    env = {"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "6/minute",
           "LOGMEDIC_RATE_LIMIT_STORAGE": redis_url}
    with running_server(env, workers=2) as server:
        statuses = [server.post("/v1/classify", data=LOG).status_code for _ in range(8)]
        # with two workers each keeping its own count, 8 requests would all pass a per-worker limit of 6
        assert statuses[:6] == [200] * 6 and statuses[6:] == [429, 429], statuses
        assert_retry_after(server.post("/v1/classify", data=LOG))


def test_when_redis_is_down_the_service_still_answers(model_dir):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    env = {"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "100/minute", "LOGMEDIC_RATE_LIMIT_STORAGE": dead}
    with running_server(env, workers=1) as server:
        response = server.post("/v1/classify", data=LOG)
        assert response.status_code == 200 and response.json()["category"] == "no-space-left"
        assert "Traceback" not in server.output()


# -- size limits ---------------------------------------------------------------------------------------

def test_size_limits_hold_for_plain_chunked_and_gzip_bodies_and_batches(model_dir):
    limit = 256 * 1024
    env = {"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "", "LOGMEDIC_MAX_BODY_BYTES": str(limit),
           "LOGMEDIC_MAX_BATCH_ITEMS": "3"}
    with running_server(env, workers=1) as server:
        big = b"x" * (limit + 1)
        assert_error(server.post("/v1/classify", data=big), 413, "payload_too_large")
        # no Content-Length: refused while streaming
        assert_error(server.post("/v1/classify", data=iter([big[:100_000], big[100_000:]])), 413, "payload_too_large")
        # a gzip bomb: 100 kB on the wire, 100 MB once inflated; refused as soon as it passes the limit
        bomb = gzip.compress(b"\0" * 100_000_000, 9)
        assert len(bomb) < limit
        assert_error(server.post("/v1/classify", data=bomb, headers={"Content-Encoding": "gzip"}), 413,
                     "payload_too_large")
        items = [{"id": str(n), "log": LOG} for n in range(4)]
        body = assert_error(server.post("/v1/classify/batch", json={"logs": items}), 422, "validation_error")
        assert body["details"][0]["field"] == "logs"
        assert server.post("/v1/classify/batch", json={"logs": items[:3]}).status_code == 200
        # a request line past gunicorn's limit is refused before Flask sees it
        assert server.get("/v1/categories?lang=" + "k" * 9000).status_code in (400, 414)


def test_limits_are_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Reliability and security"):]
    for name in ("LOGMEDIC_MAX_BODY_BYTES", "LOGMEDIC_MAX_BATCH_ITEMS", "LOGMEDIC_RATE_LIMIT",
                 "LOGMEDIC_RATE_LIMIT_STORAGE", "LOGMEDIC_TIMEOUT"):
        assert name in section, name
    defaults = Settings()
    assert f"{defaults.max_body_bytes // (1024 * 1024)} MiB" in section
    assert f"{defaults.max_batch_items} logs" in section
    assert defaults.rate_limit in section


# -- headers -------------------------------------------------------------------------------------------

def test_every_answer_carries_security_headers_and_the_docs_page_a_strict_csp(live_server):
    for path in ("/healthz", "/v1/categories", "/openapi.json", "/docs", "/nope"):
        response = live_server.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
    csp = live_server.get("/docs").headers["Content-Security-Policy"]
    directives = dict((part.strip().split(" ", 1) + [""])[:2] for part in csp.split(";") if part.strip())
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert "script-src" not in directives or "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-inline'" not in directives.get("style-src", "") and "'unsafe-eval'" not in csp
    api = live_server.get("/v1/categories").headers["Content-Security-Policy"]
    assert "default-src 'none'" in api


# -- debug mode ----------------------------------------------------------------------------------------

def test_debug_is_refused_in_production_settings():
    with pytest.raises(SettingsError, match="debug mode is refused in production"):
        load_settings({"debug": True}, environ={})
    with pytest.raises(SettingsError, match="debug mode is refused in production"):
        load_settings(environ={"LOGMEDIC_DEBUG": "true", "LOGMEDIC_ENV": "production"})
    assert load_settings(environ={"LOGMEDIC_DEBUG": "true", "LOGMEDIC_ENV": "development"}).debug
    assert Settings().env == "production" and not Settings().debug  # the defaults are the safe ones


def test_gunicorn_with_debug_in_production_refuses_to_start_with_one_line():
    server = start_server({"LOGMEDIC_DEBUG": "true", "LOGMEDIC_ENV": "production"}, workers=1)
    try:
        code = server.process.wait(60)
    finally:
        server.stop(signal.SIGKILL)
    lines = server.output().strip().splitlines()
    assert code != 0 and "Traceback" not in server.output()
    assert lines == ["logmedic: cannot start: debug mode is refused in production; "
                     "set LOGMEDIC_ENV=development to use it"], lines


def test_logmedic_serve_with_debug_in_production_refuses_to_start():
    logmedic = Path(ROOT / ".venv/bin/logmedic")
    if not logmedic.exists():
        pytest.skip("no .venv/bin/logmedic")
    run = subprocess.run([str(logmedic), "serve"], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "LOGMEDIC_DEBUG": "true", "LOGMEDIC_ENV": "production",
                              "LOGMEDIC_PORT": str(free_port())})
    assert run.returncode != 0
    assert "debug mode is refused in production" in run.stderr and "Traceback" not in run.stderr


# -- the container -------------------------------------------------------------------------------------

def _final_stage(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile)
    instructions = [(line.split(None, 1) + [""])[:2] for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, (word, _) in enumerate(instructions) if word.upper() == "FROM")
    return [(word.upper(), args.strip()) for word, args in instructions[last_from:]]


def test_the_image_runs_as_a_non_root_user():
    dockerfile = ROOT / "Dockerfile"
    if not dockerfile.exists():
        pytest.skip("no Dockerfile yet")
    users = [args for word, args in _final_stage(dockerfile.read_text()) if word == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


def test_compose_runs_read_only_without_privileges():
    compose = ROOT / "compose.yaml"
    if not compose.exists():
        pytest.skip("no compose.yaml yet")
    services = yaml.safe_load(compose.read_text())["services"]
    assert services
    for name, service in services.items():
        assert service.get("read_only") is True, name
        assert not service.get("privileged"), name
        assert str(service.get("user", "10001")).split(":")[0] not in ("root", "0"), name
        assert "ALL" in service.get("cap_drop", []), name
        assert any("no-new-privileges" in option for option in service.get("security_opt", [])), name
        assert all(not str(port).startswith(("8080", "0.0.0.0")) for port in service.get("ports", [])), \
            f"{name} publishes on every interface"
