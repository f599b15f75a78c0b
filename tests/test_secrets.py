"""Secrets in logs never come back out: not in any answer format, not in batch output, not in the server's logs.

A corpus of secrets (cloud keys, registry and chat tokens, JWTs, passwords in
URLs, environment variables and command lines, Authorization headers, private
keys) is placed on the failing line itself, and next to it, so the lines that
carry them ARE echoed as evidence. Every way an answer leaves logmedic is then
searched for the secret and for any 12-character piece of it: the engine's
answer (en and ko), JSON, Markdown and text over HTTP, the batch endpoint, the
Slack slash command and the Slack thread reply (as posted to a fake Slack
API), the CLI (classify in every format, batch as JSONL and CSV), error
bodies, /metrics, and the gunicorn access and error logs (at debug level).

The secrets are generated at run time from a seeded RNG: no token-shaped
string is committed to the repository.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import random
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest

from model.redact import MASK
from service import render
from tests.live import ROOT, free_port, running_server

RNG = random.Random(20240501)
WINDOW = 12  # a leaked piece of this length counts as a leak


def _token(alphabet: str, size: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(size))


ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits
B64 = ALNUM + "+/"


@dataclass(frozen=True)
class Secret:
    name: str
    fragment: str   # how the secret shows in a log line
    value: str      # what must never come back


def _secrets() -> list[Secret]:
    aws_id = "AKIA" + _token(UPPER, 16)
    aws_key = _token(ALNUM, 20) + "/" + _token(ALNUM, 19)
    ghp, gho = "ghp_" + _token(ALNUM, 36), "gho_" + _token(ALNUM, 36)
    fine = "github_pat_" + _token(ALNUM, 22) + "_" + _token(ALNUM, 59)
    slack_bot = f"xoxb-{_token(string.digits, 12)}-{_token(string.digits, 13)}-{_token(ALNUM, 24)}"
    hook = f"https://hooks.slack.com/services/T{_token(UPPER, 8)}/B{_token(UPPER, 8)}/{_token(ALNUM, 24)}"
    jwt = "eyJhbGciOiJIUzI1NiJ9." + "eyJ" + _token(ALNUM, 40) + "." + _token(ALNUM + "-_", 43)
    glpat, npm = "glpat-" + _token(ALNUM, 20), "npm_" + _token(ALNUM, 36)
    basic = _token(B64, 22) + "=="
    words = [_token(ALNUM, 6) + "-" + _token(ALNUM, 8) for _ in range(14)]
    key_lines = [_token(B64, 64) for _ in range(3)]
    return [
        Secret("aws access key id", f"aws s3 cp --access-key {aws_id} s3://bucket/x", aws_id),
        Secret("aws secret key (named)", f"-e AWS_SECRET_ACCESS_KEY={aws_key}", aws_key),
        Secret("aws secret key (bare)", f"aws configure set aws_secret_access_key {aws_key}", aws_key),
        Secret("github classic token", f"git clone https://x-access-token:{ghp}@github.com/org/repo.git", ghp),
        Secret("github oauth token", f"gh auth login --with-token {gho}", gho),
        Secret("github fine-grained token", f"curl -H 'Authorization: token {fine}' https://api.github.com", fine),
        Secret("slack bot token", f"SLACK_BOT={slack_bot} ./notify.sh", slack_bot),
        Secret("slack webhook", f"curl -X POST {hook} -d '{{}}'", hook.rsplit("/", 3)[-1]),
        Secret("jwt", f"wget --header 'X-Session: {jwt}' https://api.example.com", jwt),
        Secret("postgres url password", f"DATABASE_URL=postgres://app:{words[0]}@db:5432/app", words[0]),
        Secret("mysql url password", f"connecting to mysql://root:{words[1]}@mysql:3306/shop", words[1]),
        Secret("redis url password, no user", f"REDIS_URL=redis://:{words[2]}@cache:6379/0", words[2]),
        Secret("https url password", f"git fetch https://deploy:{words[3]}@gitlab.example.com/x.git", words[3]),
        Secret("docker run -e password", f"docker run -e POSTGRES_PASSWORD={words[4]} -d postgres:16", words[4]),
        Secret("compose password", f"POSTGRES_PASSWORD: {words[5]}", words[5]),
        Secret("basic auth header", f"curl -H 'Authorization: Basic {basic}' https://registry.example.com", basic),
        Secret("bearer header", f"Authorization: Bearer {words[6]}", words[6]),
        Secret("bearer without header", f"curl --oauth2-bearer x -H 'X-Auth: Bearer {words[7]}'", words[7]),
        Secret("proxy authorization", f"Proxy-Authorization: Basic {words[8]}", words[8]),
        Secret("private key block", f"-----BEGIN RSA PRIVATE KEY----- {key_lines[0]}", key_lines[0]),
        Secret("private key body line", f"{key_lines[1]}", key_lines[1]),
        Secret("gitlab token", f"git push https://oauth2:{glpat}@gitlab.com/g/p.git", glpat),
        Secret("gitlab token (header)", f"curl --header 'PRIVATE-TOKEN: {glpat}' https://gitlab.com/api/v4", glpat),
        Secret("npm token", f"//registry.npmjs.org/:_authToken={npm}", npm),
        Secret("npm token (bare)", f"npm config set //r.example/:_auth {npm}", npm),
        Secret("docker login -p", f"docker login -u ci -p {words[9]} registry.example.com", words[9]),
        Secret("docker login --password", f"docker login --password {words[10]} -u ci ghcr.io", words[10]),
        Secret("mysql -p", f"mysql -h db -u root -p{words[11]} shop", words[11]),
        Secret("--password=", f"helm repo add x https://charts.example.com --username ci --password={words[12]}", words[12]),
        Secret("PGPASSWORD", f"PGPASSWORD={words[13]} psql -h db -U app", words[13]),
    ]


SECRETS = _secrets()
FAILURES = [
    ("no-space-left", "write /var/lib/docker/tmp/buildkit-mount: no space left on device"),
    ("docker-daemon-unreachable", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"),
    ("registry-rate-limit", "toomanyrequests: You have reached your pull rate limit."),
]
FAILING_LINE = 3


def log_for(number: int, secret: Secret) -> tuple[str, str]:
    """(expected category, log) with the secret on the failing line (line 3) and on the line before it."""
    category, failure = FAILURES[number % len(FAILURES)]
    lines = ["Step 4/7 : RUN ./deploy.sh", f"+ {secret.fragment}", f"{secret.fragment} {failure}",
             "ERROR: process did not complete successfully: exit code: 1"]
    return category, "\n".join(lines) + "\n"


LOGS = [(secret, *log_for(number, secret)) for number, secret in enumerate(SECRETS)]


def leaked(text: str) -> list[str]:
    """Names of the corpus secrets of which `text` holds the value or any WINDOW-character piece of it."""
    found = []
    for secret in SECRETS:
        value = secret.value
        pieces = {value} if len(value) <= WINDOW else {value[i:i + WINDOW] for i in range(len(value) - WINDOW + 1)}
        if any(piece in text for piece in pieces):
            found.append(secret.name)
    return found


def test_corpus_secrets_are_not_common_words():
    """The leak check itself: no secret piece occurs in the log template or the failure lines."""
    assert not leaked("Step 4/7 : RUN ./deploy.sh ERROR: process did not complete " + " ".join(f for _, f in FAILURES))


# -- the engine and its renderings --------------------------------------------------------------------

@pytest.mark.parametrize("secret, category, log", LOGS, ids=[secret.name for secret, _, _ in LOGS])
def test_when_a_secret_is_on_the_failing_line_then_no_rendering_shows_it(diagnoser, secret, category, log):
    try:  # the Slack renderer (service/integrations/blocks.py) is checked whenever it is there
        from service.integrations import blocks
    except ImportError:
        blocks = None

    for lang in ("en", "ko"):
        diagnosis = diagnoser.diagnose(log, lang)
        assert diagnosis.category == category
        failing = [e for e in diagnosis.evidence if e.line == FAILING_LINE]
        assert failing, "the failing line must be echoed as evidence, else this test proves nothing"
        outputs = [diagnosis.model_dump_json(), render.markdown(diagnosis), render.text(diagnosis)]
        if blocks is not None:
            outputs += [json.dumps(blocks.diagnosis_blocks(diagnosis), ensure_ascii=False),
                        blocks.fallback_text(diagnosis)]
        for output in outputs:
            assert not leaked(output), (secret.name, output[:3000])
    assert MASK in failing[0].text


# Secrets that follow a keyword and a space ("Basic X", "-p X", "--password X"): a cut can separate them.
MULTI_WORD = [s for s in SECRETS if s.fragment[:s.fragment.index(s.value)].endswith(" ")]


@pytest.mark.parametrize("secret", MULTI_WORD, ids=[s.name for s in MULTI_WORD])
def test_when_a_long_line_is_cut_around_the_failure_then_no_piece_of_a_secret_survives(diagnoser, secret):
    """Evidence of a long line is a 600-character excerpt: slide its left edge across the secret's words.

    A cut between `Authorization: Basic` and the credential (or `-p` and the password) must not leave
    the credential bare at the start of the excerpt, where nothing says it is one.
    """
    from model.redact import MAX_CHARS

    failure = FAILURES[0][1]
    tail = " " + " ".join(["tail"] * 150)
    # The excerpt starts MAX_CHARS // 3 characters before the override's match: choose the padding so
    # that start falls on every character of the fragment in turn.
    match = failure.index("no space left")
    for left in range(len(secret.fragment) + 1):
        pad = left + MAX_CHARS // 3 - len(secret.fragment) - 2 - match
        if pad < 1:
            continue
        line = secret.fragment + " " + ("p" * pad) + " " + failure + tail
        diagnosis = diagnoser.diagnose("Step 1/2 : RUN make\n" + line + "\n")
        evidence = " ".join(e.text for e in diagnosis.evidence)
        assert not leaked(evidence), (secret.name, left, evidence[:400])


# -- over HTTP, in the CLI, in the server's logs ------------------------------------------------------

class FakeSlack(BaseHTTPRequestHandler):
    """Records what the service posts to the Slack Web API."""

    posted: list[str] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        FakeSlack.posted.append(body.decode("utf-8", "replace"))
        payload = b'{"ok": true, "ts": "1.2"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


SLACK_SECRET = "secrets-test-signing"


def _signed(body: bytes, content_type: str) -> dict:
    timestamp = str(int(time.time()))
    digest = hmac.new(SLACK_SECRET.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=" + digest, "Content-Type": content_type}


@pytest.fixture(scope="module")
def slack_api():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), FakeSlack)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


@pytest.fixture(scope="module")
def secrets_server(model_dir, slack_api):
    env = {"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "", "LOGMEDIC_LOG_LEVEL": "debug",
           "LOGMEDIC_SLACK_SIGNING_SECRET": SLACK_SECRET, "LOGMEDIC_SLACK_BOT_TOKEN": "xoxb-test",
           "LOGMEDIC_SLACK_API_URL": slack_api}
    with running_server(env) as server:
        yield server


def test_no_http_answer_and_no_server_log_line_shows_a_secret(secrets_server):
    server, seen = secrets_server, []
    for secret, category, log in LOGS:
        body = log.encode()
        for fmt in ("json", "markdown", "text"):
            response = server.post(f"/v1/classify?format={fmt}", data=body, headers={"Content-Type": "text/plain"})
            assert response.status_code == 200
            seen.append(response.text)
        # the secret also in the file name, as JSON and as a query parameter
        response = server.post("/v1/classify", json={"log": log, "filename": f"{secret.fragment}.log", "source": "build"})
        assert response.status_code == 200 and response.json()["category"] == category
        seen.append(response.text)
        response = server.post("/v1/classify?lang=ko&" + urlencode({"filename": secret.fragment}), data=body)
        seen.append(response.text)
        # a slash command carrying the log, signed like Slack signs it
        form = urlencode({"command": "/logmedic", "text": f"```{log}```", "user_id": "U1", "channel_id": "C1"}).encode()
        response = server.post("/v1/integrations/slack/commands", data=form,
                               headers=_signed(form, "application/x-www-form-urlencoded"))
        assert response.status_code == 200
        seen.append(response.text)
    batch = server.post("/v1/classify/batch", json={"logs": [{"id": f"log-{n}", "log": log} for n, (_, _, log) in enumerate(LOGS)]})
    assert batch.status_code == 200 and all(item["ok"] for item in batch.json()["results"])
    seen.append(batch.text)
    # errors must not echo what was sent: a secret as an enum value, as a query value, as a field name
    for secret in SECRETS[:6]:
        for kwargs in ({"json": {"log": "x", "source": secret.value}},
                       {"data": b"x", "params": {"source": secret.value}},
                       {"json": {"log": "x", secret.value: 1}}):
            response = server.post("/v1/classify", **kwargs)
            assert response.status_code == 422
            seen.append(response.text)
    seen.append(server.get("/metrics").text)
    for text in seen:
        assert not leaked(text), text[:3000]
    assert not leaked(server.output()), server.output()[-3000:]


def test_slack_thread_replies_show_no_secret(secrets_server):
    FakeSlack.posted.clear()
    for number, (secret, _, log) in enumerate(LOGS):
        envelope = {"type": "event_callback", "event_id": f"Ev{number}", "team_id": "T1",
                    "event": {"type": "app_mention", "channel": "C1", "ts": f"{number}.1", "user": "U1",
                              "text": f"<@UBOT> why?\n```{log}```"}}
        body = json.dumps(envelope).encode()
        response = secrets_server.post("/v1/integrations/slack/events", data=body, headers=_signed(body, "application/json"))
        assert response.status_code == 200 and response.json()["outcome"] == "accepted"
    deadline = time.monotonic() + 120
    while len(FakeSlack.posted) < len(LOGS) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(FakeSlack.posted) == len(LOGS)
    for posted in FakeSlack.posted:
        assert "blocks" in posted and not leaked(posted), posted[:3000]
    assert not leaked(secrets_server.output())


def test_cli_and_batch_output_show_no_secret(model_dir, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for number, (_, _, log) in enumerate(LOGS):
        (logs / f"job-{number:02}.log").write_text(log)
    cli = [str(Path(sys.executable).parent / "logmedic"), "--model-dir", str(model_dir)]
    outputs = []
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"rows.{fmt}"
        run = subprocess.run(cli + ["batch", str(logs), "--output", str(out), "--format", fmt, "--jobs", "2"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        outputs += [out.read_text(), run.stdout, run.stderr]
        if fmt == "csv":
            rows = list(csv.DictReader(out.open()))
            assert len(rows) == len(LOGS) and all(MASK in row["evidence"] for row in rows)
    for fmt in ("json", "markdown", "text"):
        run = subprocess.run(cli + ["classify", str(logs), "--format", fmt], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        outputs += [run.stdout, run.stderr]
    for output in outputs:
        assert not leaked(output), output[:3000]


@pytest.mark.parametrize("line, expected", [
    # the working directory is not a secret, whatever its variable is called
    ('docker run --rm -v "$PWD":/src -w /src golang:1.22', 'docker run --rm -v "$PWD":/src -w /src golang:1.22'),
    ("docker run -v $PWD:/app -e OLDPWD=/home/ci node:20", "docker run -v $PWD:/app -e OLDPWD=/home/ci node:20"),
    # ... but a variable that only contains PWD in its name still is
    ("-e DB_PWD=s3cr3t-Value -v $PWD:/app", "-e DB_PWD=[REDACTED] -v $PWD:/app"),
    ("MYSQL_ROOT_PASSWORD: hunter2", "MYSQL_ROOT_PASSWORD: [REDACTED]"),
])
def test_shell_working_directory_is_kept_and_secret_names_are_masked(line, expected):
    from model.redact import redact

    assert redact(line) == expected
