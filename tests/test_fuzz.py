"""Fuzzing: the HTTP API from its own OpenAPI document, and the engine's entry points from random bytes.

1. schemathesis reads /openapi.json from a real gunicorn and sends generated
   requests (valid and invalid) to every operation: no 5xx, every status code
   and body as documented, invalid input refused. The budget is bounded
   (MAX_EXAMPLES per operation) so CI stays fast; `LOGMEDIC_FUZZ_EXAMPLES`
   raises it for a longer local run.
2. hypothesis feeds normalize / scan / Diagnoser.verdict / redact arbitrary
   bytes and text: control characters, lone surrogates, invalid UTF-8, mixed
   encodings, carriage returns, huge lines. No exception may escape and line
   numbers must stay those of the submitted log.
In CI (CI=true) hypothesis runs derandomized, so a run is reproducible.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from model.redact import MAX_CHARS, excerpt, redact
from model.scan import scan
from model.text import LineIndex, normalize
from tests.live import ROOT, running_server

MAX_EXAMPLES = int(os.environ.get("LOGMEDIC_FUZZ_EXAMPLES", "40"))
CI = bool(os.environ.get("CI"))
ENGINE = settings(max_examples=int(os.environ.get("LOGMEDIC_FUZZ_EXAMPLES", "150")), deadline=None,
                  derandomize=CI, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- 1. the HTTP API, from its OpenAPI document -----------------------------------------------------

# schemathesis runs as its own CLI (`schemathesis run`): its pytest plugin does not support pytest 9 yet,
# and the CLI runs every phase (explicit examples, boundary "coverage" cases, random fuzzing).
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# A batch is checked item by item on purpose (README: an invalid item gets its own error and the others
# are still diagnosed), so a schema-violating item yields 200: the generic negative-data check does not
# apply there; `batch_items_refused_one_by_one` below checks what the API promises instead.
CONFIG = """
[[operations]]
include-path = "/v1/classify/batch"
checks.negative_data_rejection.enabled = false
"""


@schemathesis.check
def batch_items_refused_one_by_one(ctx, response, case):
    """Every batch item that is not a valid BatchItem gets ok=false and a validation_error of its own."""
    if case.operation.path != "/v1/classify/batch" or case.method.upper() != "POST" or response.status_code != 200:
        return None
    from pydantic import ValidationError

    from service.schemas import BatchItem

    results = response.json()["results"]
    logs = case.body.get("logs", []) if isinstance(case.body, dict) else []
    for position, item in enumerate(logs):
        try:
            BatchItem.model_validate(item)
        except ValidationError:
            error = results[position]["error"] or {}
            assert results[position]["ok"] is False and error.get("code") == "validation_error", (position, item)
    return None


SLACK_SECRET = "fuzz-signing-secret"


class _SlackSignature(requests.auth.AuthBase):
    """Signs the final request body the way Slack does, so the fuzzer reaches past the signature check."""

    def __call__(self, prepared):
        body = prepared.body or b""
        body = body.encode() if isinstance(body, str) else body
        timestamp = str(int(time.time()))
        digest = hmac.new(SLACK_SECRET.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
        prepared.headers["X-Slack-Request-Timestamp"] = timestamp
        prepared.headers["X-Slack-Signature"] = "v0=" + digest.hexdigest()
        return prepared


@schemathesis.hook
def before_call(context, case, kwargs):
    """Slack endpoints get a valid signature (the unsigned path is one 401, tested by the integration's tests)."""
    if "/integrations/slack/" in case.operation.path:
        kwargs["auth"] = _SlackSignature()


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keep every failure but one the document cannot express: a blank binary body answered 400 empty_log.

    JSON Schema cannot say "bytes with one that is not whitespace" (`pattern` does not apply to
    `format: binary`, and schemathesis ignores it there), so an empty or blank octet-stream body is
    schema-valid yet refused, as the 400 entry of the document says. Anything else still fails the run.
    """
    body = case.body if isinstance(case.body, (bytes, str)) else b""
    blank = not (body.encode() if isinstance(body, str) else body).strip()
    refused = response.status_code == 400 and b'"empty_log"' in response.content
    return not (case.media_type == "application/octet-stream" and blank and refused)


@pytest.fixture(scope="module")
def fuzz_server(model_dir):
    """A real gunicorn with every operation reachable: Slack endpoints on (signature required), no rate limit."""
    env = {"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": "",
           "LOGMEDIC_SLACK_SIGNING_SECRET": SLACK_SECRET, "LOGMEDIC_SLACK_BOT_TOKEN": "xoxb-fuzz",
           "LOGMEDIC_SLACK_API_URL": "http://127.0.0.1:9/"}
    with running_server(env) as server:
        yield server


def test_api_answers_every_generated_request_as_documented(fuzz_server, tmp_path):
    """Every operation of the live /openapi.json, every check schemathesis has (all are on by default;
    `--checks all` would override the per-operation setting above), plus the batch check above.

    No 5xx; status codes, content types, headers and bodies as documented; schema-violating requests
    refused with a 4xx and schema-valid ones accepted; and the server logged no traceback and lost no worker.
    """
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    report = tmp_path / "report.xml"
    command = [str(SCHEMATHESIS), "--no-color", "--config-file", str(tmp_path / "schemathesis.toml"), "run",
               fuzz_server.url + "/openapi.json", "--url", fuzz_server.url,
               "--max-examples", str(MAX_EXAMPLES), "--phases", "examples,coverage,fuzzing",
               "--workers", "1", "--request-timeout", "60", "--suppress-health-check", "all",
               "--report", "junit", "--report-junit-path", str(report)]
    if CI:
        command += ["--generation-deterministic"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.test_fuzz", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    summary = run.stdout[run.stdout.find("SUMMARY"):] if "SUMMARY" in run.stdout else run.stdout[-4000:]
    print(summary)  # operations tested and test cases generated: shown with `pytest -s`
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
    assert re.search(r"Tested: (\d+)", run.stdout) and "Runtime Error" not in run.stdout
    output = fuzz_server.output()
    assert "Traceback" not in output, output[-3000:]
    assert "WORKER TIMEOUT" not in output and "was sent SIG" not in output, output[-3000:]  # no worker died


# -- 2. the engine's entry points, from random input ------------------------------------------------

# Characters that break naive log readers: controls, escapes, carriage returns, NUL, BOMs, lone surrogates.
NASTY = st.sampled_from(["\x00", "\x1b", "\x1b[", "\x1b]8;;", "\x07", "\r", "\r\n", "\t", "\x0b", "\x0c",
                         "\x7f", "\x85", "\u2028", "\ufeff", "\ud800", "\udfff", "\U0010ffff", "é", "가", "⠿"])
LINE = st.lists(st.one_of(st.text(max_size=40), NASTY), max_size=12).map("".join)
ENCODED_LINE = st.tuples(LINE, st.sampled_from(["utf-8", "latin-1", "utf-16-le", "cp1252", "shift_jis"])).map(
    lambda pair: pair[0].encode(pair[1], "replace"))


def _newline_free(data: bytes) -> bytes:
    return data.replace(b"\n", b" ").replace(b"\r", b" ")


@ENGINE
@given(st.one_of(st.binary(max_size=4000), st.text(max_size=2000)))
@example(codecs.BOM_UTF16_LE + "E: no space left on device\n".encode("utf-16-le"))
@example(b"\xff\xfe\x00")           # a UTF-16 BOM and half a character
@example("\ud800 lone surrogate\n")
@example(b"\r" * 1000)               # classic Mac line ends only
def test_normalize_never_raises_and_gives_utf8_bytes(data):
    out = normalize(data)
    assert isinstance(out, bytes) and b"\x00" not in out
    out.decode("utf-8", "replace")


@ENGINE
@given(st.lists(st.one_of(st.binary(max_size=200).map(_newline_free), ENCODED_LINE.map(_newline_free)),
                min_size=1, max_size=60))
def test_when_lines_are_garbage_then_line_numbers_stay_those_of_the_submitted_log(diagnoser, lines):
    """A marker line keeps its number, however hostile the lines around it."""
    data_lines = [b"build log"] + lines
    position = len(data_lines) // 2
    data_lines.insert(position, b"write /var/lib/docker/tmp/x: no space left on device")
    data = b"\n".join(data_lines) + b"\n"
    assume(data[:4096].count(0) <= len(data[:4096]) // 4)  # not sniffed as BOM-less UTF-16 (a feature)

    index = LineIndex(normalize(data))
    assert index.count == len(data_lines)
    selected = scan(data, diagnoser.rules)
    assert selected.total_lines == len(data_lines)
    selected.overrides(diagnoser.rules)  # cleans the candidate lines (the marker is one) and the tail
    assert all(number == line.number and 1 <= number <= len(data_lines) for number, line in selected.lines.items())
    assert "no space left on device" in selected.lines[position + 1].text

    verdict = diagnoser.verdict(data)
    assert verdict.lines == len(data_lines)
    assert verdict.category == "no-space-left"
    assert any(e.line == position + 1 and "no space left on device" in e.text for e in verdict.evidence)
    for finding in [verdict.evidence] + [evidence for *_, evidence in verdict.also]:
        assert all(1 <= e.line <= len(data_lines) for e in finding)


@ENGINE
@given(st.one_of(st.binary(max_size=3000), LINE, st.lists(LINE, max_size=40).map("\n".join)),
       st.sampled_from(["en", "ko"]))
def test_diagnose_never_raises_on_arbitrary_input(diagnoser, data, lang):
    diagnosis = diagnoser.diagnose(data, lang)
    diagnosis.model_dump_json()  # serialisable: no lone surrogate reaches the answer
    assert diagnosis.category == "unknown" or diagnosis.category in diagnoser.kb
    assert all(1 <= e.line <= max(diagnosis.lines, 1) for e in diagnosis.evidence)


@ENGINE
@given(st.one_of(st.text(max_size=800), LINE), st.integers(-10, 2000), st.integers(-10, 2000))
@example("PASSWORD." * 300, 0, 0)
@example("token " + "=" * 700, 5, 9)
def test_redact_and_excerpt_never_raise(text, start, end):
    once = redact(text)
    assert isinstance(once, str)
    assert redact(once) == once  # idempotent: a redacted line is left alone
    piece = excerpt(text, start, end)
    assert isinstance(piece, str) and len(piece) <= 2 * MAX_CHARS  # a mask may be longer than what it hides


HUGE = 5 * 1024 * 1024


@pytest.mark.parametrize("name, data, expected", [
    ("one 5 MB line of letters", b"a" * HUGE, "unknown"),
    ("one 5 MB line of escapes", b"\x1b[" * (HUGE // 2), "unknown"),
    ("5 MB of carriage returns", b"Downloading 10%\r" * (HUGE // 16), "unknown"),
    ("5 MB of NUL bytes", b"\x00" * HUGE, "unknown"),
    ("5 MB of invalid UTF-8", b"\xff\xfe\xc3" * (HUGE // 3), "unknown"),
    ("5 MB of UTF-16 without BOM", "E: no space left on device\n".encode("utf-16-le") * (HUGE // 54), "no-space-left"),
    ("5 MB line, then the failure", b"x" * HUGE + b"\nwrite /x: no space left on device\n", "no-space-left"),
    ("100k tiny lines", b"e\n" * 100_000, None),
], ids=lambda value: value if isinstance(value, str) and " " in value else "")
def test_when_input_is_huge_then_the_engine_answers(diagnoser, name, data, expected):
    verdict = diagnoser.verdict(data)
    assert expected is None or verdict.category == expected
    assert all(len(e.text) <= 2 * MAX_CHARS for e in verdict.evidence)  # an excerpt, never the 5 MB line


def test_when_text_has_lone_surrogates_then_the_answer_is_valid_utf8(diagnoser):
    diagnosis = diagnoser.diagnose("E: \ud800 no space left on device \udfff\n")
    assert diagnosis.category == "no-space-left"
    diagnosis.model_dump_json().encode("utf-8")
    assert not re.search("[\ud800-\udfff]", diagnosis.model_dump_json())
