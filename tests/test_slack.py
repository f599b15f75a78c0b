"""Slack: signed requests answered with Block Kit, the rest refused; mentions answered in their thread.

Thread replies go to a fake Slack Web API (a local HTTP server recording
`chat.postMessage`), reached through slack-sdk's WebClient as in production.
The signature and thread-reply tests run twice: through Flask's test client
and against a real gunicorn, where the reply is posted from a worker's pool.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from slack_sdk.signature import SignatureVerifier

from model import paths
from model.diagnosis import Alternative, Basis, Diagnosis, Evidence, Finding, Reference, Step
from service.integrations import blocks
from service.integrations.slack import message_log

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-token"
COMMANDS = "/v1/integrations/slack/commands"
EVENTS = "/v1/integrations/slack/events"
SAMPLES = paths.DATA_DIR / "samples"
POSTGRES_LOG = (SAMPLES / "postgres-superuser-password" / "compose-v2-postgis-image-exited.log").read_text()
NO_SPACE_LOG = "\n".join([
    "#12 [build 4/6] RUN apt-get update && apt-get install -y build-essential",
    "#12 3.201 E: You don't have enough free space in /var/cache/apt/archives/.",
    "#12 ERROR: failed to copy files: copy file range failed: no space left on device",
])
WAIT = 30  # seconds to wait for a reply to reach the fake Slack; generous for a loaded CI machine


# -- helpers ------------------------------------------------------------------------------------

def sign(body: bytes, timestamp: int | None = None, secret: str = SECRET) -> dict:
    """Slack's signature headers for `body` (computed by slack-sdk, as Slack computes them)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)}


def command_body(text: str, command: str = "/logmedic") -> bytes:
    return urllib.parse.urlencode({"token": "ignored", "team_id": "T1", "channel_id": "C1", "user_id": "U1",
                                   "command": command, "text": text,
                                   "response_url": "https://hooks.slack.com/commands/T1/1/x"}).encode()


def mention(text: str, channel: str = "C0LOGS", ts: str | None = None, thread_ts: str | None = None,
            event_id: str | None = None) -> dict:
    event = {"type": "app_mention", "user": "U0USER", "text": text, "channel": channel,
             "ts": ts or f"{time.time():.6f}", "event_ts": "1"}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return {"token": "ignored", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
            "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(), "event_time": int(time.time()),
            "event": event}


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text if hasattr(response, "text") else response.data
    body = response.json() if callable(response.json) else response.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "Traceback" not in json.dumps(body)


def texts(value):
    """Every `text` string anywhere in a block structure."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "text" and isinstance(item, str):
                yield item
            else:
                yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


def assert_valid_blocks(message_blocks: list[dict]) -> None:
    """Slack's Block Kit limits, checked independently of the code that builds the blocks."""
    json.dumps(message_blocks)  # serialisable
    assert 1 <= len(message_blocks) <= 50
    for block in message_blocks:
        assert block["type"] in {"header", "section", "context", "divider"}, block
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and 1 <= len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn" and 1 <= len(block["text"]["text"]) <= 3000
        if block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
            assert all(1 <= len(e["text"]) <= 3000 for e in block["elements"])
    for text in texts(message_blocks):
        assert len(text) <= 3000
        assert text.count("```") % 2 == 0, f"unbalanced code fence: {text[:200]!r}"
        # mrkdwn: no raw `<` except Slack links we made; a `<@U...>` from a log must never mention anyone
        assert "<@" not in text and "<!" not in text


def section_texts(message_blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in message_blocks if b["type"] == "section"]


class FakeSlack:
    """A local Slack Web API: records every call and answers `{"ok": true, ...}`."""

    def __init__(self):
        self.calls: list[dict] = []
        self.changed = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    payload = json.loads(raw or b"{}")
                else:
                    payload = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
                answer = json.dumps({"ok": True, "channel": payload.get("channel"), "ts": f"{time.time():.6f}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                with fake.changed:
                    fake.calls.append({"method": self.path.strip("/"), "auth": self.headers.get("Authorization"),
                                       "payload": payload})
                    fake.changed.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def posts(self, thread_ts: str | None = None) -> list[dict]:
        with self.changed:
            return [c["payload"] for c in self.calls if c["method"].endswith("chat.postMessage")
                    and (thread_ts is None or c["payload"].get("thread_ts") == thread_ts)]

    def wait_for_post(self, thread_ts: str, timeout: float = WAIT) -> dict:
        """The first chat.postMessage in `thread_ts`; fails after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = self.posts(thread_ts)
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no chat.postMessage in thread {thread_ts} within {timeout}s: {self.calls}")
                self.changed.wait(remaining)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fake_slack():
    fake = FakeSlack()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def slack_config(test_config, fake_slack) -> dict:
    return {**test_config, "slack_signing_secret": SECRET, "slack_bot_token": BOT_TOKEN,
            "slack_api_url": fake_slack.url}


@pytest.fixture(scope="module")
def slack_client(slack_config):
    """One app for the module (loading the model is the slow part); every test uses its own event ids."""
    from service import create_app

    return create_app(slack_config).test_client()


class Target:
    """The Flask test client and a live server behind one `post(path, data, headers)`."""

    def __init__(self, post):
        self.post = post


@pytest.fixture(scope="module")
def live_slack(model_dir, fake_slack):
    """A real gunicorn (2 workers) with the Slack integration on, replying to the fake Slack."""
    from tests.live import running_server

    env = {"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "",
           "LOGMEDIC_SLACK_SIGNING_SECRET": SECRET, "LOGMEDIC_SLACK_BOT_TOKEN": BOT_TOKEN,
           "LOGMEDIC_SLACK_API_URL": fake_slack.url}
    with running_server(env, workers=2) as server:
        yield server


@pytest.fixture(params=["flask", "gunicorn"])
def target(request, slack_client):
    """Where a request goes: Flask's test client, or the real gunicorn (responses normalised)."""
    if request.param == "flask":
        def post(path, data, headers):
            response = slack_client.post(path, data=data, headers=headers)
            return response.status_code, response.get_json(silent=True), dict(response.headers)
    else:
        server = request.getfixturevalue("live_slack")

        def post(path, data, headers):
            response = server.post(path, data=data, headers=headers)
            return response.status_code, response.json(), dict(response.headers)
    return Target(post)


# -- slash command --------------------------------------------------------------------------------

def test_when_signed_slash_command_then_blocks_with_the_category(target):
    body = command_body(POSTGRES_LOG)
    status, answer, _ = target.post(COMMANDS, body, {**FORM, **sign(body)})
    assert status == 200, answer
    assert answer["response_type"] == "ephemeral"
    assert "postgres-superuser-password" in answer["text"]
    message_blocks = answer["blocks"]
    assert_valid_blocks(message_blocks)
    assert message_blocks[0]["type"] == "header" and "superuser password" in message_blocks[0]["text"]["text"]
    assert "`postgres-superuser-password`" in message_blocks[1]["elements"][0]["text"]
    assert any("confidence" in e["text"] for e in message_blocks[1]["elements"])
    sections = section_texts(message_blocks)
    assert any(s.startswith("*Why.*") for s in sections)
    assert any("```\ndocker run" in s and "POSTGRES_PASSWORD" in s for s in sections)  # a command as code
    evidence = next(s for s in sections if s.startswith("*Evidence*"))
    assert "superuser password is not specified" in evidence and "|" in evidence  # line numbers and text


def test_when_response_type_set_in_channel_then_in_channel(slack_config):
    from service import create_app

    client = create_app({**slack_config, "slack_response_type": "in_channel"}).test_client()
    body = command_body(POSTGRES_LOG)
    answer = client.post(COMMANDS, data=body, headers={**FORM, **sign(body)}).get_json()
    assert answer["response_type"] == "in_channel"


def test_when_a_command_deletes_data_then_it_is_marked_with_what_it_deletes(slack_client, diagnoser):
    expected = diagnoser.diagnose(NO_SPACE_LOG, "en")
    assert expected.category == "no-space-left"
    destructive = [s for s in expected.remediation if s.destructive]
    assert destructive, "the knowledge base marks docker prune commands as destructive"
    body = command_body(NO_SPACE_LOG)
    answer = slack_client.post(COMMANDS, data=body, headers={**FORM, **sign(body)}).get_json()
    assert_valid_blocks(answer["blocks"])
    marked = [s for s in section_texts(answer["blocks"]) if ":warning: *destructive*" in s]
    assert len(marked) == len(destructive)
    for step, text in zip(destructive, marked):
        assert blocks.escape(step.deletes) in text and blocks.escape(step.command) in text
    safe = [s for s in section_texts(answer["blocks"]) if re.match(r"\d+\. ", s) and ":warning:" not in s]
    assert len(safe) == len(expected.remediation) - len(destructive)


@pytest.mark.parametrize("text", ["", "   ", "<@U0BOT>", "```\n```"])
def test_when_the_command_has_no_log_then_a_usage_note(slack_client, text):
    body = command_body(text)
    answer = slack_client.post(COMMANDS, data=body, headers={**FORM, **sign(body)}).get_json()
    assert answer["response_type"] == "ephemeral"
    assert_valid_blocks(answer["blocks"])
    assert len(answer["blocks"]) == 1 and "/logmedic" in answer["blocks"][0]["text"]["text"]


def test_when_korean_is_the_default_then_the_blocks_are_korean(slack_config):
    from service import create_app

    client = create_app({**slack_config, "default_lang": "ko"}).test_client()
    body = command_body(POSTGRES_LOG)
    answer = client.post(COMMANDS, data=body, headers={**FORM, **sign(body)}).get_json()
    assert_valid_blocks(answer["blocks"])
    assert any(s.startswith("*원인 설명.*") for s in section_texts(answer["blocks"]))


# -- signatures -------------------------------------------------------------------------------------

def _unsigned(body):
    return {}


def _signed(body):
    return sign(body)


def _replayed(body):
    return sign(body, int(time.time()) - 6 * 60)  # correctly signed, six minutes ago


def _future(body):
    return sign(body, int(time.time()) + 6 * 60)


def _wrong_secret(body):
    return sign(body, secret="not-the-secret")


def _garbled_timestamp(body):
    return {**sign(body), "X-Slack-Request-Timestamp": "yesterday"}


REFUSALS = [
    # no signature headers at all
    ("unsigned", _unsigned, None),
    # signed, then one byte of the body changed
    ("tampered", _signed, lambda body: body.replace(b"postgis", b"postgiz", 1)),
    # a captured request sent again later: valid signature, old timestamp
    ("replayed", _replayed, None),
    # a timestamp from the future is as suspect as an old one
    ("future", _future, None),
    # signed with another app's secret
    ("wrong secret", _wrong_secret, None),
    # a timestamp that is not a number must not crash the verifier
    ("garbled timestamp", _garbled_timestamp, None),
]


@pytest.mark.parametrize("path", [COMMANDS, EVENTS])
@pytest.mark.parametrize("name, headers_for, change", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_when_the_signature_is_not_right_then_401(target, path, name, headers_for, change):
    body = command_body(POSTGRES_LOG) if path == COMMANDS else json.dumps(mention("<@U0BOT> " + POSTGRES_LOG)).encode()
    headers = headers_for(body)
    sent = change(body) if change else body
    assert sent != body or name != "tampered"
    status, answer, response_headers = target.post(path, sent, {**(FORM if path == COMMANDS else JSON), **headers})
    assert status == 401, answer
    assert answer["error"]["code"] == "bad_signature" and set(answer["error"]) == {"code", "message", "details"}
    assert "WWW-Authenticate" not in response_headers
    if name in ("replayed", "future"):
        assert answer["error"]["details"] == {"reason": "stale_timestamp"}


def test_when_the_integration_is_off_then_404(client):
    for path in (COMMANDS, EVENTS):
        body = command_body("x")
        assert_error(client.post(path, data=body, headers={**FORM, **sign(body)}), 404, "not_found")


def test_when_a_signed_event_is_not_json_then_400(slack_client):
    body = b"{not json"
    assert_error(slack_client.post(EVENTS, data=body, headers={**JSON, **sign(body)}), 400, "malformed_json")


def test_when_a_signed_event_has_no_type_then_422(slack_client):
    body = b'{"challenge": "x"}'
    assert_error(slack_client.post(EVENTS, data=body, headers={**JSON, **sign(body)}), 422, "validation_error")


# -- events -----------------------------------------------------------------------------------------

def test_when_url_verification_then_the_challenge_is_answered(target):
    body = json.dumps({"token": "ignored", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"}).encode()
    status, answer, _ = target.post(EVENTS, body, {**JSON, **sign(body)})
    assert status == 200
    assert answer == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_when_mentioned_with_a_log_then_the_answer_is_posted_in_the_thread(target, fake_slack):
    event = mention(f"<@U0LOGMEDIC> what broke?\n```\n{POSTGRES_LOG}\n```", channel="C0BUILDS")
    body = json.dumps(event).encode()
    status, answer, _ = target.post(EVENTS, body, {**JSON, **sign(body)})
    assert status == 200 and answer == {"ok": True, "outcome": "accepted"}
    post = fake_slack.wait_for_post(event["event"]["ts"])
    assert post["channel"] == "C0BUILDS" and post["thread_ts"] == event["event"]["ts"]
    assert "postgres-superuser-password" in post["text"]
    assert_valid_blocks(post["blocks"])
    assert "`postgres-superuser-password`" in post["blocks"][1]["elements"][0]["text"]
    call = next(c for c in fake_slack.calls if c["payload"].get("thread_ts") == event["event"]["ts"])
    assert call["method"] == "api/chat.postMessage" and call["auth"] == f"Bearer {BOT_TOKEN}"


def test_when_mentioned_inside_a_thread_then_the_reply_goes_to_that_thread(target, fake_slack):
    parent = f"{time.time() - 100:.6f}"
    event = mention("<@U0LOGMEDIC> " + NO_SPACE_LOG, channel="C0OPS", thread_ts=parent)
    body = json.dumps(event).encode()
    status, answer, _ = target.post(EVENTS, body, {**JSON, **sign(body)})
    assert status == 200 and answer["outcome"] == "accepted"
    post = fake_slack.wait_for_post(parent)
    assert post["channel"] == "C0OPS" and "no-space-left" in post["text"]
    assert fake_slack.posts(event["event"]["ts"]) == []  # not a new thread under the mention itself


def test_when_mentioned_without_a_log_then_usage_in_the_thread(slack_client, fake_slack):
    event = mention("<@U0LOGMEDIC>")
    body = json.dumps(event).encode()
    assert slack_client.post(EVENTS, data=body, headers={**JSON, **sign(body)}).get_json()["outcome"] == "accepted"
    post = fake_slack.wait_for_post(event["event"]["ts"])
    assert_valid_blocks(post["blocks"])
    assert "Usage" in post["blocks"][0]["text"]["text"]


def test_when_slack_retries_an_event_then_it_is_posted_once(target, fake_slack):
    event = mention("<@U0LOGMEDIC> " + POSTGRES_LOG)
    body = json.dumps(event).encode()
    status, answer, _ = target.post(EVENTS, body, {**JSON, **sign(body)})
    assert answer["outcome"] == "accepted"
    fake_slack.wait_for_post(event["event"]["ts"])
    # Slack's retries: same event id, fresh signature; with gunicorn they may reach either worker
    for attempt in (1, 2, 3):
        status, answer, _ = target.post(EVENTS, body, {**JSON, **sign(body), "X-Slack-Retry-Num": str(attempt),
                                                        "X-Slack-Retry-Reason": "http_timeout"})
        assert status == 200 and answer == {"ok": True, "outcome": "duplicate"}
    # A fresh event sent after the retries is answered; then the first thread still has exactly one reply.
    later = mention("<@U0LOGMEDIC> " + POSTGRES_LOG)
    later_body = json.dumps(later).encode()
    assert target.post(EVENTS, later_body, {**JSON, **sign(later_body)})[1]["outcome"] == "accepted"
    fake_slack.wait_for_post(later["event"]["ts"])
    time.sleep(0.5)  # not a timing assertion: extra room for a wrongly queued duplicate to show up
    assert len(fake_slack.posts(event["event"]["ts"])) == 1


def test_when_an_event_is_not_a_mention_then_it_is_acknowledged_and_ignored(slack_client, fake_slack):
    event = mention("hello")
    event["event"]["type"] = "message"
    body = json.dumps(event).encode()
    answer = slack_client.post(EVENTS, data=body, headers={**JSON, **sign(body)}).get_json()
    assert answer == {"ok": True, "outcome": "ignored"}


def test_when_there_is_no_bot_token_then_the_mention_is_acknowledged_not_answered(slack_config, fake_slack):
    from service import create_app

    client = create_app({**slack_config, "slack_bot_token": ""}).test_client()
    event = mention("<@U0LOGMEDIC> " + POSTGRES_LOG)
    body = json.dumps(event).encode()
    assert client.post(EVENTS, data=body, headers={**JSON, **sign(body)}).get_json()["outcome"] == "no_token"


def test_when_slack_refuses_the_post_then_the_worker_logs_it_and_keeps_serving(slack_config, caplog):
    from service import create_app

    # Nothing listens on this port: the reply fails; the request was already acknowledged.
    from tests.live import free_port

    client = create_app({**slack_config, "slack_api_url": f"http://127.0.0.1:{free_port()}/api/"}).test_client()
    event = mention("<@U0LOGMEDIC> " + POSTGRES_LOG)
    body = json.dumps(event).encode()
    with caplog.at_level("WARNING", logger="logmedic.slack"):
        assert client.post(EVENTS, data=body, headers={**JSON, **sign(body)}).get_json()["outcome"] == "accepted"
        deadline = time.monotonic() + WAIT
        while "chat.postMessage" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "chat.postMessage to C0LOGS failed" in caplog.text
    assert client.post(EVENTS, data=b"{}", headers={**JSON, **sign(b"{}")}).status_code == 422  # still serving


def _take(directory, event_id, results):
    from service.integrations.seen import SeenEvents

    results.put(SeenEvents(directory).first_time(event_id))


def test_when_several_processes_see_one_event_then_exactly_one_takes_it(tmp_path):
    """What lets gunicorn workers share the record: one O_EXCL file per event id."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_take, args=(tmp_path, "Ev0RACE", results)) for _ in range(8)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert sorted(results.get(timeout=10) for _ in workers) == [False] * 7 + [True]


def test_when_the_record_directory_is_cleaned_away_then_events_are_still_taken(tmp_path):
    import shutil

    from service.integrations.seen import SeenEvents

    record = SeenEvents(tmp_path / "seen")
    assert record.first_time("Ev1") and not record.first_time("Ev1")
    shutil.rmtree(tmp_path / "seen")  # e.g. systemd-tmpfiles
    assert record.first_time("Ev2") and not record.first_time("Ev2")


# -- limits -----------------------------------------------------------------------------------------

def test_when_the_log_is_10_mb_then_the_blocks_are_still_valid(slack_client):
    noise = "".join(f"#7 {i:.3f} compiling module_{i} `with` <flags> & -O2 and a long tail of text\n"
                    for i in range(140_000))
    secret_line = "postgis-1  | Error: Database is uninitialized and superuser password is not specified. " \
                  "POSTGRES_PASSWORD=hunter2-very-secret " + "x" * 2000
    log = noise + "```" * 400 + "\n" + secret_line + "\n" + POSTGRES_LOG + "<@U0EVERYONE> <!channel>\n"
    assert len(log.encode()) > 10_000_000
    body = command_body(log)
    response = slack_client.post(COMMANDS, data=body, headers={**FORM, **sign(body)})
    assert response.status_code == 200
    answer = response.get_json()
    assert_valid_blocks(answer["blocks"])
    dumped = json.dumps(answer)
    assert "postgres-superuser-password" in dumped
    assert "hunter2-very-secret" not in dumped  # evidence is redacted; nothing else of the log is in the blocks
    assert len(dumped) < 60_000  # a 10 MB log does not make a 10 MB message


def test_when_every_field_is_huge_then_the_limits_hold_and_cuts_are_marked():
    """The knowledge base is short today; the limits must hold for any content."""
    long = "word & <tag> `code` " * 2000
    diagnosis = Diagnosis(
        category="no-space-left", confidence=0.9, decided_by="rule", transient=True, title="T" * 500,
        summary=long, explanation=long, causes=[long],
        remediation=[Step(command="rm -rf /x ```; echo " + "y" * 5000, description=long, destructive=True,
                          deletes=long) for _ in range(80)],
        evidence=[Evidence(line=n, text="<@U0BOSS> ``` & " + "e" * 600) for n in range(1, 30)],
        alternatives=[Alternative(category=f"c{n}-" + "z" * 100, score=0.1) for n in range(200)],
        also=[Finding(category=f"f{n}-" + "z" * 100, title="x", decided_by="rule", confidence=0.5, evidence=[])
              for n in range(200)],
        basis=Basis(rule="r" * 4000, threshold=0.5),
        references=[Reference(title="docs " * 50, url=f"https://example.com/{n}") for n in range(300)],
        lang="en", model_version="v1", lines=10)
    message_blocks = blocks.diagnosis_blocks(diagnosis)
    assert_valid_blocks(message_blocks)
    assert blocks.TRUNCATED in json.dumps(message_blocks, ensure_ascii=False)
    assert message_blocks[0]["text"]["text"].endswith(blocks.TRUNCATED)
    steps = [s for s in section_texts(message_blocks) if re.match(r"\d+\. ", s)]
    assert len(steps) < 80 and all(blocks.TRUNCATED in s for s in steps)  # steps cut, and each step's text cut
    evidence = [s for s in section_texts(message_blocks) if s.startswith("*Evidence*")]
    assert evidence == [] or blocks.TRUNCATED in evidence[0]
    assert len(blocks.fallback_text(diagnosis)) <= 300


def test_when_there_are_more_than_50_blocks_then_the_last_says_so():
    many = [{"type": "section", "text": {"type": "mrkdwn", "text": str(n)}} for n in range(120)]
    kept = blocks.fit(many)
    assert len(kept) == 50 and kept[:49] == many[:49]
    assert kept[-1]["type"] == "context" and kept[-1]["elements"][0]["text"] == blocks.TRUNCATED


@pytest.mark.parametrize("raw, limit", [
    ("a" * 10, 10),                 # fits exactly: untouched
    ("a" * 13, 12),                 # one too many: only the marker fits
    ("a" * 11, 10),                 # no room even for the marker
    ("abc", 0),                     # no room at all
    ("&" * 100, 30),                # escaping makes it five times longer
    ("<" * 5000 + "b" * 5000, 3000),
])
def test_clip_never_exceeds_its_limit_or_cuts_an_entity(raw, limit):
    out = blocks.clip(raw, limit)
    assert len(out) <= limit
    assert (out == blocks.escape(raw)) == (len(blocks.escape(raw)) <= limit)
    body = out.removesuffix(blocks.TRUNCATED).removesuffix("…")
    assert body.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "").count("&") == 0


# -- reading a log out of a message -----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    # the mention is dropped
    ("<@U0LOGMEDIC> E: failed", " E: failed"),
    # a fenced log is taken as it is, whatever is around the fences
    ("<@U0LOGMEDIC> look:\n```\nline one\nline two\n```\nthanks", "\nline one\nline two\n"),
    # several fenced blocks are joined
    ("```a```\n```b```", "a\nb"),
    # Slack escapes &, < and >; the log had them raw
    ("x &lt;none&gt; &amp;&amp; y", "x <none> && y"),
    # Slack turned URLs into links; the log had the plain text
    ("Get <https://registry-1.docker.io/v2/>: net/http: TLS handshake timeout",
     "Get https://registry-1.docker.io/v2/: net/http: TLS handshake timeout"),
    ("pulling <http://example.com|example.com> failed", "pulling example.com failed"),
])
def test_message_log(text, expected):
    assert message_log(text) == expected


# -- contract ---------------------------------------------------------------------------------------

def test_the_slack_endpoints_are_in_the_openapi_document(slack_client):
    spec = slack_client.get("/openapi.json").get_json()
    command = spec["paths"][COMMANDS]["post"]
    assert set(command["requestBody"]["content"]) == {"application/x-www-form-urlencoded"}
    assert command["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SlackMessage")
    assert "signature" in command["responses"]["401"]["description"]
    events = spec["paths"][EVENTS]["post"]
    assert set(events["requestBody"]["content"]) == {"application/json"}
    assert {"401", "404"} <= set(events["responses"])
    assert "security" not in command and "security" not in events  # Slack signs; bearer tokens do not apply
