"""`logmedic ask` and the CI examples: local and service modes, failing soft, GitHub annotations.

Service mode runs against a real gunicorn; the misbehaving services (slow, redirecting)
and the GitLab API are tiny local HTTP servers. The examples in examples/ci/ are run as
written: their scripts are read from the YAML and executed with bash.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from service.ask import escape_data, escape_property, workflow_command
from service.cli import main
from tests.live import free_port, running_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "ci"
BIN = Path(sys.executable).parent  # the venv the tests run in, where `logmedic` is installed
TOKEN = "ci-token-5f1e9a"

# A `docker build` (BuildKit, plain progress, as CI prints it) that fails on a full disk.
BUILD_LOG = """\
#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 312B done
#1 DONE 0.0s

#2 [internal] load metadata for docker.io/library/python:3.11-slim
#2 DONE 0.7s

#3 [internal] load .dockerignore
#3 transferring context: 2B done
#3 DONE 0.0s

#4 [1/4] FROM docker.io/library/python:3.11-slim@sha256:9c6f6a7b2a4ae3e0b1d5e2a0f0e8e7d1c3a2b1f0e9d8c7b6a5f4e3d2c1b0a9f8
#4 CACHED

#5 [internal] load build context
#5 transferring context: 18.21kB done
#5 DONE 0.0s

#6 [2/4] WORKDIR /app
#6 DONE 0.1s

#7 [3/4] COPY requirements.txt .
#7 DONE 0.0s

#8 [4/4] RUN pip install --no-cache-dir -r requirements.txt
#8 1.203 Collecting torch==2.3.0 (from -r requirements.txt (line 1))
#8 1.410   Downloading torch-2.3.0-cp311-cp311-manylinux1_x86_64.whl (779.1 MB)
#8 58.92 ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device
#8 58.92
#8 ERROR: process "/bin/sh -c pip install --no-cache-dir -r requirements.txt" did not complete successfully: exit code: 1
------
 > [4/4] RUN pip install --no-cache-dir -r requirements.txt:
58.92 ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device
------
Dockerfile:5
--------------------
   3 |     COPY requirements.txt .
   4 | >>> RUN pip install --no-cache-dir -r requirements.txt
   5 |
--------------------
ERROR: failed to solve: process "/bin/sh -c pip install --no-cache-dir -r requirements.txt" did not complete successfully: exit code: 1
"""
FAILURE = "No space left on device"
# Lines of BUILD_LOG (1-based) that show the failure: what the annotations must point at.
FAILURE_LINES = [n for n, line in enumerate(BUILD_LOG.splitlines(), 1) if FAILURE in line]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No ambient LOGMEDIC_URL/TOKEN or proxy may change what a test sees."""
    for name in ("LOGMEDIC_URL", "LOGMEDIC_TOKEN", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def build_log(tmp_path) -> Path:
    path = tmp_path / "build.log"
    path.write_text(BUILD_LOG)
    return path


@pytest.fixture(scope="module")
def token_server(model_dir):
    """A real gunicorn that requires TOKEN on POST endpoints."""
    with running_server({"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "",
                         "LOGMEDIC_API_TOKENS": TOKEN}, workers=1) as server:
        yield server


def ask(*args: str, env: dict | None = None, input: bytes | None = None):
    """Run `logmedic ask ARGS` in-process; the click Result (stdout and stderr apart)."""
    return CliRunner().invoke(main, ["ask", *args], env=env, input=input, catch_exceptions=False)


def served(server, log: bytes, fmt: str = "json", filename: str = "build.log", token: str | None = None):
    """What the service itself answers for `log` (the reference the client must reproduce)."""
    headers = {"Accept": {"json": "application/json", "markdown": "text/markdown"}[fmt]}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = server.post(f"/v1/classify?filename={filename}", data=log, headers=headers)
    assert response.status_code == 200, response.text
    return response.json() if fmt == "json" else response.text


# --- tiny local HTTP servers for what a real logmedic never does ----------------------------------

class Recorder:
    """A local HTTP server that records every request and answers with `respond(request) -> (status, headers, body)`."""

    def __init__(self, respond):
        self.requests: list[dict] = []
        self.released = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {"path": self.path, "headers": dict(self.headers), "body": body}
                recorder.requests.append(request)
                status, headers, payload = respond(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def forward_to(server):
    """A `respond` that passes the request, byte for byte, to a real logmedic and returns its answer."""
    def respond(request):
        keep = {k: v for k, v in request["headers"].items()
                if k.lower() in ("content-type", "content-encoding", "accept", "authorization")}
        answer = server.post(request["path"], data=request["body"], headers=keep)
        return answer.status_code, {"Content-Type": answer.headers["Content-Type"]}, answer.content
    return respond


# --- local mode -----------------------------------------------------------------------------------

def test_when_no_url_then_the_local_engine_answers(build_log, model_dir, diagnoser):
    result = CliRunner().invoke(main, ["--model-dir", str(model_dir), "ask", str(build_log), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    expected = diagnoser.diagnose(BUILD_LOG.encode(), "en").model_dump(mode="json")
    assert answer == {**expected, "path": str(build_log), "source": None}
    assert answer["category"] == "no-space-left"


def test_when_no_url_and_no_model_then_warning_and_exit_0(build_log, tmp_path):
    args = ["--model-dir", str(tmp_path / "no-model"), "ask", str(build_log)]
    result = CliRunner().invoke(main, args)
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr.startswith("logmedic: warning: no diagnosis: no --url and no usable local model")
    assert CliRunner().invoke(main, args + ["--strict"]).exit_code == 1


# --- service mode ---------------------------------------------------------------------------------

def test_when_url_then_the_services_answer_is_printed(build_log, live_server, monkeypatch):
    monkeypatch.chdir(build_log.parent)
    as_json = ask("build.log", "--url", live_server.url, "--format", "json")
    assert as_json.exit_code == 0, as_json.stderr
    assert json.loads(as_json.stdout) == served(live_server, BUILD_LOG.encode())
    # Markdown rendered by the client is the page the service renders itself.
    as_markdown = ask("build.log", "--url", live_server.url + "/", "--format", "markdown")
    assert as_markdown.stdout == served(live_server, BUILD_LOG.encode(), "markdown")
    # The endpoint's own URL works too, and so does stdin and Korean.
    korean = ask("--url", live_server.url + "/v1/classify", "--lang", "ko", "--format", "json", input=BUILD_LOG.encode())
    answer = json.loads(korean.stdout)
    assert (answer["lang"], answer["category"], answer["path"]) == ("ko", "no-space-left", None)
    text = ask("build.log", env={"LOGMEDIC_URL": live_server.url})  # the URL from the environment
    assert text.exit_code == 0 and "✖ no-space-left" in text.stdout


def test_when_the_log_is_large_then_it_is_sent_gzipped(tmp_path, live_server):
    noise = "".join(f"#8 {i / 100:.2f} Downloading layer {i:06d} ... done\n" for i in range(20000))
    big = (noise + BUILD_LOG).encode()
    path = tmp_path / "big.log"
    path.write_bytes(big)
    small = tmp_path / "small.log"
    small.write_text(BUILD_LOG)
    with Recorder(forward_to(live_server)) as wire:
        result = ask(str(path), "--url", wire.url, "--format", "json")
        ask(str(small), "--url", wire.url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    sent, sent_small = wire.requests
    assert sent["headers"]["Content-Encoding"] == "gzip"
    assert len(sent["body"]) < len(big) / 5 and gzip.decompress(sent["body"]) == big
    assert "Content-Encoding" not in sent_small["headers"] and sent_small["body"] == BUILD_LOG.encode()
    answer = json.loads(result.stdout)
    offset = noise.count("\n")
    assert answer["category"] == "no-space-left"
    assert [e["line"] for e in answer["evidence"]] == [offset + n for n in FAILURE_LINES]


def test_when_the_service_is_down_then_warning_and_exit_0(build_log):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = ask(str(build_log), "--url", url)
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"logmedic: warning: no diagnosis: cannot reach {url}/v1/classify")
    strict = ask(str(build_log), "--url", url, "--strict")
    assert strict.exit_code == 1 and "cannot reach" in strict.stderr


def test_when_the_service_is_slow_then_timeout_warning_and_exit_0(build_log):
    def stall(request):
        recorder.released.wait(60)  # released when the test ends
        return 200, {}, b"{}"

    with Recorder(stall) as recorder:
        result = ask(str(build_log), "--url", recorder.url, "--timeout", "0.5")
        strict = ask(str(build_log), "--url", recorder.url, "--timeout", "0.5", "--strict")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == f"logmedic: warning: no diagnosis: {recorder.url}/v1/classify did not answer within 0.5s\n"
    assert strict.exit_code == 1 and "did not answer within 0.5s" in strict.stderr


def test_when_the_service_answers_an_error_then_warning_and_exit_0(build_log, token_server):
    result = ask(str(build_log), "--url", token_server.url)  # no token: 401
    assert (result.exit_code, result.stdout) == (0, "")
    assert re.fullmatch(r"logmedic: warning: no diagnosis: \S+ answered HTTP 401 unauthorized: .+\n", result.stderr)
    assert ask(str(build_log), "--url", token_server.url, "--strict").exit_code == 1


def test_when_the_service_redirects_then_the_token_does_not_follow(build_log):
    with Recorder(lambda request: (200, {}, b"{}")) as elsewhere:
        with Recorder(lambda request: (307, {"Location": elsewhere.url + "/v1/classify"}, b"")) as moved:
            result = ask(str(build_log), "--url", moved.url, "--token", TOKEN)
    assert result.exit_code == 0 and "answered HTTP 307" in result.stderr and "give that URL" in result.stderr
    assert len(moved.requests) == 1 and elsewhere.requests == []


def test_when_the_answer_is_not_a_diagnosis_then_warning(build_log):
    with Recorder(lambda request: (200, {"Content-Type": "text/html"}, b"<html>proxy login</html>")) as portal:
        result = ask(str(build_log), "--url", portal.url)
    assert (result.exit_code, result.stdout) == (0, "")
    assert "answered something that is not a logmedic diagnosis" in result.stderr


def test_token_is_sent_as_bearer_and_never_printed(build_log, token_server):
    with Recorder(forward_to(token_server)) as wire:
        by_option = ask(str(build_log), "--url", wire.url, "--token", TOKEN, "--format", "json")
    assert by_option.exit_code == 0, by_option.stderr
    assert wire.requests[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(by_option.stdout)["category"] == "no-space-left"
    by_env = ask(str(build_log), "--url", token_server.url, env={"LOGMEDIC_TOKEN": TOKEN})
    assert by_env.exit_code == 0 and "no-space-left" in by_env.stdout
    wrong = ask(str(build_log), "--url", token_server.url, "--token", "wrong-" + TOKEN, "--github")
    assert wrong.exit_code == 0 and "HTTP 401" in wrong.stderr
    for result in (by_option, by_env, wrong):
        assert TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize("url, message", [
    ("ftp://logmedic.example", "not an http(s) URL"),                  # another scheme
    ("logmedic.example:8080", "not an http(s) URL"),                   # no scheme
    ("http://ci:hunter2@host:80a/", "not an http(s) URL"),             # a port that is not a number
    ("https://ci:hunter2@logmedic.example", "credentials do not go in the URL"),
])
def test_when_the_url_is_unusable_then_usage_error_without_echoing_it(build_log, url, message):
    result = ask(str(build_log), "--url", url)
    assert result.exit_code == 2 and message in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize("content, message", [
    (None, "No such file or directory"),  # the build step never wrote its log
    (b"  \n\n", "the log is empty"),       # it wrote nothing
])
def test_when_the_log_is_missing_or_empty_then_exit_2(tmp_path, content, message):
    path = tmp_path / "build.log"
    if content is not None:
        path.write_bytes(content)
    result = ask(str(path), "--url", "http://127.0.0.1:9")
    assert result.exit_code == 2 and message in result.stderr


# --- GitHub Actions -------------------------------------------------------------------------------

def parse_annotations(stdout: str) -> list[dict]:
    """`::error`/`::notice` lines as dicts of their (unescaped) properties plus command and message."""
    found = []
    for line in stdout.splitlines():
        match = re.fullmatch(r"::(error|notice|warning)(?: ([^:]*))?::(.*)", line)
        if match and not line.startswith("::stop-commands::"):
            props = dict(p.split("=", 1) for p in match[2].split(",")) if match[2] else {}
            found.append({"command": match[1], "message": urllib.parse.unquote(match[3]),
                          **{k: urllib.parse.unquote(v) for k, v in props.items()}})
    return found


@pytest.mark.parametrize("value, data, prop", [
    ("plain text", "plain text", "plain text"),
    ("100% done", "100%25 done", "100%25 done"),                  # % first, so escapes are not re-escaped
    ("a\r\nb", "a%0D%0Ab", "a%0D%0Ab"),                          # CR and LF
    ("apt: E, W", "apt: E, W", "apt%3A E%2C W"),                  # ':' and ',' only in properties
    ("%0A", "%250A", "%250A"),                                    # a literal escape stays literal
])
def test_workflow_command_escaping(value, data, prop):
    assert (escape_data(value), escape_property(value)) == (data, prop)


def test_workflow_command_properties_cannot_break_the_line():
    line = workflow_command("error", "two\nlines", file="logs/a,b:c.log", line=3, title="x: y")
    assert line == "::error file=logs/a%2Cb%3Ac.log,line=3,title=x%3A y::two%0Alines"


def test_github_mode_writes_the_summary_and_annotates_the_evidence(build_log, live_server, monkeypatch):
    monkeypatch.chdir(build_log.parent)
    summary = build_log.parent / "summary.md"
    summary.write_text("## earlier step\n")
    result = ask("build.log", "--url", live_server.url, "--github", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    # Appended, not overwritten: the Markdown page the service renders itself.
    assert summary.read_text() == "## earlier step\n" + served(live_server, BUILD_LOG.encode(), "markdown")
    answer = served(live_server, BUILD_LOG.encode())
    annotations = parse_annotations(result.stdout)
    assert [a["line"] for a in annotations] == [str(e["line"]) for e in answer["evidence"]]
    assert [int(a["line"]) for a in annotations] == FAILURE_LINES
    lines = BUILD_LOG.splitlines()
    for annotation in annotations:
        assert annotation["command"] == "error" and annotation["file"] == "build.log"
        assert annotation["title"] == "logmedic: No space left on device (no-space-left)"
        assert f"line {annotation['line']}: {lines[int(annotation['line']) - 1]}" in annotation["message"]
    # The page quoting log lines is printed with workflow commands off; the annotations come after.
    out = result.stdout.splitlines()
    stop = out[0].removeprefix("::stop-commands::")
    assert out[0].startswith("::stop-commands::") and len(stop) >= 16
    resume = out.index(f"::{stop}::")
    assert "✖ no-space-left — No space left on device" in out[1:resume]
    assert all(line.startswith("::error ") for line in out[resume + 1:]) and len(out[resume + 1:]) == len(FAILURE_LINES)


def test_github_mode_on_unknown_gives_one_notice(tmp_path, live_server):
    path = tmp_path / "ok.log"
    path.write_text("Step 1/2 : FROM alpine:3.20\nStep 2/2 : RUN echo hello\nhello\nSuccessfully built 1a2b3c4d5e6f\n")
    summary = tmp_path / "summary.md"
    result = ask(str(path), "--url", live_server.url, "--github", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 0
    annotations = parse_annotations(result.stdout)
    assert [(a["command"], a["title"]) for a in annotations] == [("notice", "logmedic: unknown")]
    assert "(`unknown`)" in summary.read_text()


def test_github_mode_without_summary_file_still_annotates(build_log, live_server):
    result = ask(str(build_log), "--url", live_server.url, "--github")
    assert result.exit_code == 0
    assert result.stderr == "logmedic: warning: GITHUB_STEP_SUMMARY is not set; no job summary written\n"
    assert len(parse_annotations(result.stdout)) == len(FAILURE_LINES)


def github_steps() -> dict:
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    return {step.get("name"): step for step in workflow["jobs"]["build"]["steps"]}


def github_env(step: dict, secrets: dict) -> dict:
    """The step's `env:` as the runner evaluates it: `${{ secrets.X }}` is the secret, or empty."""
    env = {}
    for name, value in step.get("env", {}).items():
        value = re.sub(r"\$\{\{\s*secrets\.(\w+)\s*\}\}", lambda m: secrets.get(m[1], ""), str(value))
        assert "${{" not in value, f"expression the test cannot evaluate: {value}"
        env[name] = value
    return env


def run_in_ci_shell(script: str, workspace: Path, env: dict) -> subprocess.CompletedProcess:
    """Run a `run:` script the way GitHub's Linux runners do: bash --noprofile --norc -eo pipefail."""
    assert "${{" not in script  # expressions in scripts are an injection risk; the examples use env
    assert shutil.which("logmedic", path=str(BIN)), f"logmedic is not installed in {BIN}"
    path = workspace / "step.sh"
    path.write_text(script)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOGMEDIC_", "GITHUB_"))}
    full = {**base, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GITHUB_ACTIONS": "true", **env}
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)], cwd=workspace, env=full,
                          capture_output=True, text=True, timeout=120)


def test_github_example_is_wired_as_documented():
    steps = github_steps()
    build = steps["Build the image"]["run"]
    assert "set -o pipefail" in build and "docker build . 2>&1 | tee build.log" in build
    for name in ("Install logmedic", "Ask logmedic"):
        assert steps[name]["if"] == "failure()"
    assert "--github" in steps["Ask logmedic"]["run"]


def test_github_example_ask_step_end_to_end(tmp_path, token_server):
    """The key test: the example's exact ask step, against a real gunicorn, with a failing build log."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "build.log").write_text(BUILD_LOG)
    summary = tmp_path / "step_summary.md"
    summary.touch()  # the runner creates it empty
    step = github_steps()["Ask logmedic"]
    env = github_env(step, {"LOGMEDIC_URL": token_server.url, "LOGMEDIC_TOKEN": TOKEN})
    done = run_in_ci_shell(step["run"], workspace, {**env, "GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    page = summary.read_text()
    assert page == served(token_server, BUILD_LOG.encode(), "markdown", token=TOKEN)
    assert page.startswith("### logmedic: No space left on device (`no-space-left`)")
    annotations = parse_annotations(done.stdout)
    assert [(a["command"], a["file"], int(a["line"])) for a in annotations] == \
        [("error", "build.log", n) for n in FAILURE_LINES]
    assert TOKEN not in done.stdout + page


def test_github_example_ask_step_when_the_service_is_down(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "build.log").write_text(BUILD_LOG)
    summary = tmp_path / "step_summary.md"
    summary.touch()
    step = github_steps()["Ask logmedic"]
    env = github_env(step, {"LOGMEDIC_URL": f"http://127.0.0.1:{free_port()}", "LOGMEDIC_TOKEN": TOKEN})
    done = run_in_ci_shell(step["run"], workspace, {**env, "GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 0  # the step adds no failure of its own
    assert done.stderr.startswith("logmedic: warning: no diagnosis: cannot reach") and done.stderr.count("\n") == 1
    assert summary.read_text() == "" and parse_annotations(done.stdout) == []


# --- GitLab CI and plain curl ---------------------------------------------------------------------

def test_gitlab_example_saves_the_artifact_and_posts_the_mr_note(tmp_path, token_server):
    pipeline = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    build, job = pipeline["docker-build"], pipeline["logmedic"]
    assert "set -o pipefail" in build["script"] and "docker build . 2>&1 | tee build.log" in build["script"]
    assert build["artifacts"]["paths"] == ["build.log"] and job["when"] == "on_failure"
    assert job["artifacts"]["paths"] == ["logmedic.md"]
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "build.log").write_text(BUILD_LOG)
    with Recorder(lambda request: (201, {"Content-Type": "application/json"}, b'{"id": 1}')) as gitlab:
        env = {"LOGMEDIC_URL": token_server.url, "LOGMEDIC_TOKEN": TOKEN, "CI_MERGE_REQUEST_IID": "7",
               "CI_PROJECT_ID": "42", "CI_API_V4_URL": gitlab.url + "/api/v4", "LOGMEDIC_NOTE_TOKEN": "note-token"}
        # The job's `script:` as the runner runs it (before_script installs logmedic; here it is on PATH).
        done = run_in_ci_shell("\n".join(job["script"]), workspace, env)
    assert done.returncode == 0, done.stderr
    artifact = (workspace / "logmedic.md").read_text()
    assert artifact == served(token_server, BUILD_LOG.encode(), "markdown", token=TOKEN)
    [note] = gitlab.requests
    assert note["path"] == "/api/v4/projects/42/merge_requests/7/notes"
    assert note["headers"]["PRIVATE-TOKEN"] == "note-token"
    assert urllib.parse.parse_qs(note["body"].decode())["body"] == [artifact]


def run_curl_example(workspace: Path, url: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGMEDIC_")}
    env.update({"LOGMEDIC_URL": url, **({"LOGMEDIC_TOKEN": token} if token else {})})
    return subprocess.run(["sh", str(EXAMPLES / "curl.sh")], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=60)


def test_curl_example_prints_the_markdown_and_fails_soft(tmp_path, token_server):
    (tmp_path / "build.log").write_text(BUILD_LOG)
    done = run_curl_example(tmp_path, token_server.url, TOKEN)
    assert done.returncode == 0, done.stderr
    assert done.stdout == served(token_server, BUILD_LOG.encode(), "markdown", filename="", token=TOKEN)
    refused = run_curl_example(tmp_path, token_server.url)  # no token: 401
    down = run_curl_example(tmp_path, f"http://127.0.0.1:{free_port()}")
    for result in (refused, down):
        assert result.returncode == 0 and result.stdout == ""
        assert "logmedic: warning: no diagnosis" in result.stderr
