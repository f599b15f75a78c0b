"""The HTTP API's contract through Flask's test client: every route, every error path, one error shape."""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import zlib
from unittest import mock

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_openapi
from prometheus_client.parser import text_string_to_metric_families

from model.diagnose import Diagnoser

POSTGRES_LOG = (
    "Error: Database is uninitialized and superuser password is not specified.\n"
    "       You must specify POSTGRES_PASSWORD to a non-empty value for the\n"
    '       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".\n')
DISK_LOG = "Step 4/9 : RUN apt-get update\nE: No space left on device\n"
BORING_LOG = "Step 1/3 : FROM python:3.11\nStep 2/3 : COPY . /app\nSuccessfully built 1f2e3d4c5b6a\n"
HANGUL = re.compile(r"[\uac00-\ud7a3]")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def make_app(diagnoser, test_config):
    """Build an app with settings overrides, reusing the session's loaded engine (loading takes seconds)."""
    from service import create_app

    def make(**overrides):
        with mock.patch.object(Diagnoser, "load", return_value=diagnoser):
            return create_app({**test_config, **overrides})

    return make


@pytest.fixture(scope="module")
def api(make_app):
    """One app with the default settings (rate limit off) for the read-only tests of this module."""
    return make_app()


@pytest.fixture
def http(api):
    return api.test_client()


def assert_error(response, status: int, code: str):
    """The one error shape: JSON `{"error": {"code", "message", "details"}}`, the right status, no HTML, no traceback.

    Takes a Flask test response or a `requests` response (tests/test_http_live.py uses it too); returns `details`.
    """
    text = response.text
    assert response.status_code == status, text
    assert response.headers["Content-Type"].split(";")[0].strip() == "application/json", text
    assert "<html" not in text.lower() and "traceback" not in text.lower() and 'file "' not in text.lower()
    body = json.loads(text)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body["error"]["details"]


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


def metric_samples(client) -> dict[tuple, float]:
    """/metrics as {(sample name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


# -- every route is exercised ------------------------------------------------------------------

# (method, URL rule) → a request that must answer 200 on it. A route added without a row here fails
# test_every_route_is_in_the_table. The integrations' routes (/v1/integrations/...) answer only signed
# requests and are tested with their integration (tests/test_slack.py).
INTEGRATIONS = "/v1/integrations/"
ROUTES = {
    ("POST", "/v1/classify"): dict(path="/v1/classify", data=DISK_LOG, content_type="text/plain"),
    ("POST", "/v1/classify/batch"): dict(path="/v1/classify/batch", json={"logs": [{"id": "a", "log": DISK_LOG}]}),
    ("GET", "/v1/categories"): dict(path="/v1/categories"),
    ("GET", "/v1/categories/<category>"): dict(path="/v1/categories/no-space-left"),
    ("GET", "/healthz"): dict(path="/healthz"),
    ("GET", "/readyz"): dict(path="/readyz"),
    ("GET", "/metrics"): dict(path="/metrics"),
    ("GET", "/openapi.json"): dict(path="/openapi.json"),
    ("GET", "/docs"): dict(path="/docs"),
    ("GET", "/static/<path:filename>"): dict(path="/static/docs.css"),
}


def app_routes(app) -> set[tuple[str, str]]:
    return {(method, rule.rule) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def test_every_route_is_in_the_table(api):
    assert {r for r in app_routes(api) if not r[1].startswith(INTEGRATIONS)} == set(ROUTES)


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_every_route_answers(http, route):
    method, _ = route
    request = dict(ROUTES[route])
    response = http.open(request.pop("path"), method=method, **request)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    # every answer carries the security headers; no cache keeps an API answer (static files may be revalidated)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    if not route[1].startswith("/static/"):
        assert response.headers["Cache-Control"] == "no-store"


# -- POST /v1/classify: bodies ------------------------------------------------------------------

# (request keyword arguments, why): every way of sending the postgres log must give the same answer.
BODIES = [
    (dict(json={"log": POSTGRES_LOG}), "JSON body"),
    (dict(data=json.dumps({"log": POSTGRES_LOG}), content_type="application/vnd.logmedic+json"), "a +json type"),
    (dict(data=POSTGRES_LOG, content_type="text/plain"), "raw text"),
    (dict(data=POSTGRES_LOG, content_type="text/plain; charset=utf-8"), "raw text with a charset"),
    (dict(data=POSTGRES_LOG.encode(), content_type="application/octet-stream"), "raw bytes"),
    (dict(data=POSTGRES_LOG, content_type="application/x-www-form-urlencoded"), "curl --data-binary's default type"),
    (dict(data=POSTGRES_LOG), "no content type at all"),
    (dict(data=POSTGRES_LOG.encode("utf-16"), content_type="text/plain"), "UTF-16 with a BOM"),
    (dict(data=gz(POSTGRES_LOG.encode()), content_type="text/plain", headers={"Content-Encoding": "gzip"}),
     "gzip raw body"),
    (dict(data=gz(POSTGRES_LOG.encode()), content_type="text/plain", headers={"Content-Encoding": "x-gzip"}),
     "x-gzip is gzip"),
    (dict(data=gz(json.dumps({"log": POSTGRES_LOG}).encode()), content_type="application/json",
          headers={"Content-Encoding": "gzip"}), "gzip JSON body"),
    (dict(data=gz(POSTGRES_LOG[:80].encode()) + gz(POSTGRES_LOG[80:].encode()), content_type="text/plain",
          headers={"Content-Encoding": "gzip"}), "a gzip of two members (pigz, cat a.gz b.gz)"),
]


@pytest.mark.parametrize("request_kwargs, why", BODIES, ids=[why for _, why in BODIES])
def test_when_postgres_log_sent_any_way_then_postgres_superuser_password(http, request_kwargs, why):
    response = http.post("/v1/classify", **request_kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    result = response.get_json()
    assert result["category"] == "postgres-superuser-password"
    assert result["decided_by"] == "rule"
    commands = "\n".join(step["command"] for step in result["remediation"])
    assert "POSTGRES_PASSWORD=" in commands and "POSTGRES_HOST_AUTH_METHOD=trust" in commands
    assert result["evidence"] and result["evidence"][0]["line"] == 1


def test_raw_body_takes_source_and_filename_from_the_query(http):
    result = http.post("/v1/classify?source=build&filename=ci/build.log", data=DISK_LOG).get_json()
    assert (result["source"], result["path"], result["category"]) == ("build", "ci/build.log", "no-space-left")


def test_json_body_takes_source_and_filename_from_the_body(http):
    result = http.post("/v1/classify", json={"log": DISK_LOG, "source": "runtime", "filename": "x.log"}).get_json()
    assert (result["source"], result["path"]) == ("runtime", "x.log")


def test_when_log_is_not_a_known_failure_then_unknown_is_a_success(http):
    response = http.post("/v1/classify", data=BORING_LOG)
    assert response.status_code == 200
    assert response.get_json()["category"] == "unknown"


def test_binary_bytes_and_invalid_utf8_are_read_not_refused(http):
    # A log may carry binary junk (a cat of a binary, a broken terminal); it is decoded with replacement.
    for body in (b"\x00\x01\x02\xff\xfe" * 50 + DISK_LOG.encode(), DISK_LOG.encode() + b"\xc3\x28\xa0\xa1 \xe2\x82\n"):
        response = http.post("/v1/classify", data=body, content_type="application/octet-stream")
        assert response.status_code == 200
        assert response.get_json()["category"] == "no-space-left"


def test_answer_has_every_field_of_the_cli_json(http, diagnoser, model_dir, tmp_path):
    from click.testing import CliRunner

    from service.cli import main

    path = tmp_path / "build.log"
    path.write_text(DISK_LOG)
    with mock.patch.object(Diagnoser, "load", return_value=diagnoser):
        cli = CliRunner().invoke(main, ["--model-dir", str(model_dir), "classify", "--format", "json", str(path)])
    assert cli.exit_code == 0, cli.output
    expected = json.loads(cli.stdout)
    answer = http.post(f"/v1/classify?filename={path}", data=DISK_LOG).get_json()
    assert set(expected) <= set(answer)
    for field in ("category", "confidence", "decided_by", "evidence", "remediation", "basis", "path", "model_version"):
        assert answer[field] == expected[field], field


# -- content negotiation -----------------------------------------------------------------------

# (query string, headers, expected format, expected language)
NEGOTIATION = [
    ("", {}, "json", "en"),                                            # the default
    ("", {"Accept": "*/*"}, "json", "en"),                             # curl's Accept
    ("", {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, "json", "en"),  # a browser: JSON, never HTML
    ("", {"Accept": "text/markdown"}, "markdown", "en"),
    ("", {"Accept": "text/plain"}, "text", "en"),
    ("?format=markdown", {}, "markdown", "en"),
    ("?format=text", {}, "text", "en"),
    ("?format=json", {"Accept": "text/markdown"}, "json", "en"),       # the query string wins over Accept
    ("?lang=ko", {}, "json", "ko"),
    ("", {"Accept-Language": "ko"}, "json", "ko"),
    ("", {"Accept-Language": "ko-KR,ko;q=0.9,en-US;q=0.8"}, "json", "ko"),  # a Korean browser
    ("?lang=en", {"Accept-Language": "ko"}, "json", "en"),             # the query string wins
    ("?format=markdown&lang=ko", {}, "markdown", "ko"),
    ("", {"Accept": "text/markdown", "Accept-Language": "ko"}, "markdown", "ko"),
]
MIMETYPES = {"json": "application/json", "markdown": "text/markdown", "text": "text/plain"}


@pytest.mark.parametrize("query, headers, fmt, lang", NEGOTIATION)
def test_content_negotiation(http, query, headers, fmt, lang):
    response = http.post("/v1/classify" + query, data=POSTGRES_LOG, headers=headers)
    assert response.status_code == 200
    assert response.mimetype == MIMETYPES[fmt]
    assert response.mimetype_params.get("charset", "utf-8") == "utf-8"
    text = response.get_data(as_text=True)
    if fmt == "json":
        assert response.get_json()["lang"] == lang
    elif fmt == "markdown":
        assert text.startswith("### logmedic: ") and "(`postgres-superuser-password`)" in text
        assert "```sh\n" in text and "POSTGRES_HOST_AUTH_METHOD=trust" in text
    else:
        assert "postgres" in text.lower() and "```" not in text and "\x1b[" not in text  # no Markdown, no colours
    assert bool(HANGUL.search(text)) == (lang == "ko")


def test_default_lang_setting_applies_when_the_request_does_not_ask(make_app):
    client = make_app(default_lang="ko").test_client()
    assert client.post("/v1/classify", data=POSTGRES_LOG).get_json()["lang"] == "ko"
    assert client.post("/v1/classify?lang=en", data=POSTGRES_LOG).get_json()["lang"] == "en"


def test_markdown_is_readable_markdown(http):
    page = http.post("/v1/classify?format=markdown", data=POSTGRES_LOG).get_data(as_text=True)
    lines = page.splitlines()
    assert lines[0] == "### logmedic: postgres: superuser password is not specified (`postgres-superuser-password`)"
    assert "**Fix**" in lines and "**Evidence**" in lines
    assert page.count("```") % 2 == 0  # every fence is closed


# -- errors: one table, one helper ------------------------------------------------------------

# (method, path, request keyword arguments, status, code): every client mistake the API documents.
ERRORS = [
    ("POST", "/v1/classify", dict(data=b"{bad json", content_type="application/json"), 400, "malformed_json"),
    ("POST", "/v1/classify", dict(data=b"\xff\xfe{", content_type="application/json"), 400, "malformed_json"),
    ("POST", "/v1/classify", dict(data=b"not gzip at all", content_type="text/plain",
                                  headers={"Content-Encoding": "gzip"}), 400, "bad_request"),      # corrupt gzip
    ("POST", "/v1/classify", dict(data=gz(DISK_LOG.encode())[:-12], content_type="text/plain",
                                  headers={"Content-Encoding": "gzip"}), 400, "bad_request"),      # truncated gzip
    ("POST", "/v1/classify", dict(data=b""), 400, "empty_log"),
    ("POST", "/v1/classify", dict(data=b" \n\t\r\n  "), 400, "empty_log"),                          # whitespace only
    ("POST", "/v1/classify", dict(json={"log": ""}), 400, "empty_log"),
    ("POST", "/v1/classify", dict(json={"log": "   \n"}), 400, "empty_log"),
    ("POST", "/v1/classify", dict(data=gz(b""), content_type="text/plain",
                                  headers={"Content-Encoding": "gzip"}), 400, "empty_log"),        # gzip of nothing
    ("GET", "/nowhere", {}, 404, "not_found"),
    ("POST", "/v1/nowhere", dict(data=DISK_LOG), 404, "not_found"),
    ("GET", "/v1/classify/", {}, 404, "not_found"),
    ("GET", "/v1/categories/no-such-category", {}, 404, "not_found"),
    ("GET", "/static/nothing.css", {}, 404, "not_found"),
    ("GET", "/v1/classify", {}, 405, "method_not_allowed"),
    ("PUT", "/v1/classify", dict(data=DISK_LOG), 405, "method_not_allowed"),
    ("POST", "/healthz", {}, 405, "method_not_allowed"),
    ("DELETE", "/v1/categories", {}, 405, "method_not_allowed"),
    ("POST", "/v1/classify", dict(data=DISK_LOG, content_type="image/png"), 415, "unsupported_media_type"),
    ("POST", "/v1/classify", dict(data=DISK_LOG, content_type="multipart/form-data; boundary=x"), 415,
     "unsupported_media_type"),
    ("POST", "/v1/classify", dict(data=DISK_LOG, content_type="text/plain", headers={"Content-Encoding": "br"}),
     415, "unsupported_media_type"),
    ("POST", "/v1/classify", dict(data=zlib.compress(DISK_LOG.encode()), content_type="text/plain",
                                  headers={"Content-Encoding": "deflate"}), 415, "unsupported_media_type"),
    ("POST", "/v1/classify/batch", dict(data=DISK_LOG, content_type="text/plain"), 415, "unsupported_media_type"),
    ("POST", "/v1/classify", dict(json={"log": 42}), 422, "validation_error"),                      # wrong type
    ("POST", "/v1/classify", dict(json={"log": ["a", "b"]}), 422, "validation_error"),
    ("POST", "/v1/classify", dict(json=["just", "a", "list"]), 422, "validation_error"),
    ("POST", "/v1/classify", dict(json={}), 422, "validation_error"),                               # missing log
    ("POST", "/v1/classify", dict(json={"log": DISK_LOG, "colour": "red"}), 422, "validation_error"),  # unknown field
    ("POST", "/v1/classify", dict(json={"log": DISK_LOG, "source": "ci"}), 422, "validation_error"),
    ("POST", "/v1/classify", dict(json={"log": DISK_LOG, "filename": "x" * 2000}), 422, "validation_error"),
    ("POST", "/v1/classify?source=ci", dict(data=DISK_LOG), 422, "validation_error"),
    ("POST", "/v1/classify?format=html", dict(data=DISK_LOG), 422, "validation_error"),
    ("POST", "/v1/classify?lang=fr", dict(data=DISK_LOG), 422, "validation_error"),
    ("GET", "/v1/categories?lang=fr", {}, 422, "validation_error"),
    ("GET", "/v1/categories/no-space-left?lang=de", {}, 422, "validation_error"),
    ("POST", "/v1/classify/batch", dict(json={"logs": "not a list"}), 422, "validation_error"),
    ("POST", "/v1/classify/batch", dict(json={"items": []}), 422, "validation_error"),
    ("POST", "/v1/classify/batch", dict(json=[{"id": "a", "log": DISK_LOG}]), 422, "validation_error"),
    ("POST", "/v1/classify/batch", dict(data=b"{", content_type="application/json"), 400, "malformed_json"),
]


@pytest.mark.parametrize("method, path, request_kwargs, status, code", ERRORS,
                         ids=[f"{s}-{c}-{m} {p}" for m, p, _, s, c in ERRORS])
def test_error_paths_have_one_shape(http, method, path, request_kwargs, status, code):
    response = http.open(path, method=method, **request_kwargs)
    assert_error(response, status, code)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_405_says_which_methods_are_allowed(http):
    response = http.get("/v1/classify")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_422_lists_the_pydantic_field_details(http):
    details = assert_error(http.post("/v1/classify", json={"log": 42, "source": "ci", "colour": "red"}),
                           422, "validation_error")
    by_field = {d["field"]: d for d in details}
    assert set(by_field) == {"log", "source", "colour"}
    assert by_field["log"]["type"] == "string_type"
    assert by_field["colour"]["type"] == "extra_forbidden"
    assert all(isinstance(d["message"], str) and d["message"] for d in details)
    assert "42" not in json.dumps(details) and "red" not in json.dumps(details)  # submitted values are not echoed


def test_422_for_query_parameters_names_each_one(http):
    details = assert_error(http.post("/v1/classify?format=html&lang=fr", data=DISK_LOG), 422, "validation_error")
    assert {d["field"] for d in details} == {"format", "lang"}


def test_errors_are_json_whatever_the_client_accepts(http):
    for accept in ("text/html", "text/markdown", "text/plain"):
        assert_error(http.get("/nowhere", headers={"Accept": accept}), 404, "not_found")
        assert_error(http.post("/v1/classify", data=b"", headers={"Accept": accept}), 400, "empty_log")


def test_401_when_a_token_is_required(make_app, tmp_path):
    token_file = tmp_path / "tokens"
    token_file.write_text("# one per line\nfile-token-2\n")
    client = make_app(api_tokens="inline-token-1", api_tokens_file=token_file).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "inline-token-1"},
                    {"Authorization": "Basic aW5saW5lLXRva2VuLTE="}, {"Authorization": "Bearer "}):
        for path, kwargs in (("/v1/classify", dict(data=DISK_LOG)),
                             ("/v1/classify/batch", dict(json={"logs": [{"id": "a", "log": DISK_LOG}]}))):
            response = client.post(path, headers=headers, **kwargs)
            assert_error(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for token in ("inline-token-1", "file-token-2"):
        assert client.post("/v1/classify", data=DISK_LOG, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # health, readiness, metrics and the knowledge base stay open
    for path in ("/healthz", "/readyz", "/metrics", "/v1/categories", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_401_comes_before_reading_the_body(make_app):
    client = make_app(api_tokens="t0ken-value", max_body_bytes=1024).test_client()
    assert_error(client.post("/v1/classify", data=b"x" * 5000), 401, "unauthorized")


def test_413_from_content_length(make_app):
    client = make_app(max_body_bytes=1024).test_client()
    details = assert_error(client.post("/v1/classify", data=b"a" * 1025, content_type="text/plain"), 413,
                           "payload_too_large")
    assert details is None
    assert_error(client.post("/v1/classify", json={"log": "a" * 1100}), 413, "payload_too_large")
    assert_error(client.post("/v1/classify/batch", json={"logs": [{"id": "a", "log": "a" * 1100}]}), 413,
                 "payload_too_large")


def test_a_body_of_exactly_the_limit_is_accepted(make_app):
    # Regression: Flask's capped stream refused the read past the last byte, so exactly `limit` bytes gave 413.
    client = make_app(max_body_bytes=1024).test_client()
    body = (DISK_LOG * 100).encode()[:1024]
    assert client.post("/v1/classify", data=body, content_type="text/plain").status_code == 200
    streamed = client.post("/v1/classify", input_stream=io.BytesIO(body), content_type="text/plain",
                           environ_overrides={"wsgi.input_terminated": True})
    assert streamed.status_code == 200
    assert streamed.get_json()["lines"] == body.count(b"\n") + (not body.endswith(b"\n"))


def test_413_while_streaming_a_body_without_content_length(make_app):
    # gunicorn marks a chunked body as terminated; no Content-Length, so the limit is enforced while reading.
    client = make_app(max_body_bytes=1024).test_client()
    response = client.post("/v1/classify", input_stream=io.BytesIO(b"a" * 5000), content_type="text/plain",
                           environ_overrides={"wsgi.input_terminated": True})
    assert_error(response, 413, "payload_too_large")


def test_413_after_gzip_decompression(make_app):
    client = make_app(max_body_bytes=4096).test_client()
    bomb = gz(b"\0" * 10_000_000)  # 10 MB of zeros in about 10 KB
    assert len(bomb) <= 4096 * 4
    small_bomb = gz(b"a" * 4097)    # under the limit compressed, one byte over it decompressed
    assert len(small_bomb) < 4096
    details = assert_error(client.post("/v1/classify", data=small_bomb, content_type="text/plain",
                                       headers={"Content-Encoding": "gzip"}), 413, "payload_too_large")
    assert details is None
    assert client.post("/v1/classify", data=gz(b"a" * 4096), content_type="text/plain",
                       headers={"Content-Encoding": "gzip"}).status_code == 200
    assert_error(client.post("/v1/classify", data=bomb, content_type="text/plain",
                             headers={"Content-Encoding": "gzip"}), 413, "payload_too_large")
    # a second gzip member cannot smuggle more than the limit either
    assert_error(client.post("/v1/classify", data=gz(b"a" * 3000) + gz(b"b" * 3000), content_type="text/plain",
                             headers={"Content-Encoding": "gzip"}), 413, "payload_too_large")


def test_429_when_rate_limited_with_retry_after(make_app):
    client = make_app(rate_limit="2/minute").test_client()
    statuses = [client.post("/v1/classify", data=DISK_LOG).status_code for _ in range(2)]
    assert statuses == [200, 200]
    response = client.post("/v1/classify", data=DISK_LOG)
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) > 0
    assert client.get("/healthz").status_code == 200  # health stays open


class Exploding:
    """An engine that fails in a way nobody planned for."""

    version = "broken-1"

    def diagnose(self, data, lang="en"):
        raise RuntimeError("boom at /srv/secret/path with password=hunter2")


def test_500_has_no_traceback_and_is_logged(make_app, caplog):
    app = make_app()
    real = app.extensions["logmedic"]
    app.extensions["logmedic"] = Exploding()
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="logmedic.errors"):
        for accept in ("application/json", "text/html", "text/markdown"):
            response = client.post("/v1/classify", data=DISK_LOG, headers={"Accept": accept})
            details = assert_error(response, 500, "internal_error")
            text = response.get_data(as_text=True)
            assert details is None and "boom" not in text and "hunter2" not in text and "RuntimeError" not in text
        batch = client.post("/v1/classify/batch", json={"logs": [{"id": "a", "log": DISK_LOG}]})
        assert_error(batch, 500, "internal_error")
    assert any("unexpected error" in r.getMessage() and r.exc_info for r in caplog.records)
    # the app keeps working once the fault is gone
    app.extensions["logmedic"] = real
    assert client.post("/v1/classify", data=DISK_LOG).status_code == 200


# -- batch ------------------------------------------------------------------------------------


def test_batch_gives_one_result_per_item_in_order_and_an_error_for_each_bad_item(http):
    logs = [
        {"id": "disk", "log": DISK_LOG},
        {"id": "empty", "log": ""},                               # empty_log for this item only
        {"id": "typed", "log": 42},                               # wrong type for this item only
        {"log": DISK_LOG},                                        # no id
        "not an object",
        {"id": "pg", "log": POSTGRES_LOG, "source": "runtime", "filename": "db.log"},
        {"id": "extra", "log": DISK_LOG, "colour": "red"},        # unknown field
        {"id": "boring", "log": BORING_LOG},
    ]
    response = http.post("/v1/classify/batch", json={"logs": logs})
    assert response.status_code == 200
    body = response.get_json()
    results = body["results"]
    assert [r["id"] for r in results] == ["disk", "empty", "typed", None, None, "pg", "extra", "boring"]
    assert [r["ok"] for r in results] == [True, False, False, False, False, True, False, True]
    assert results[0]["result"]["category"] == "no-space-left"
    assert results[5]["result"]["category"] == "postgres-superuser-password"
    assert (results[5]["result"]["source"], results[5]["result"]["path"]) == ("runtime", "db.log")
    assert results[7]["result"]["category"] == "unknown"
    expected_codes = {1: "empty_log", 2: "validation_error", 3: "validation_error", 4: "validation_error",
                      6: "validation_error"}
    for index, code in expected_codes.items():
        error = results[index]["error"]
        assert results[index]["result"] is None
        assert set(error) == {"code", "message", "details"} and error["code"] == code and error["message"]
    assert {d["field"] for d in results[2]["error"]["details"]} == {"log"}
    assert {d["field"] for d in results[6]["error"]["details"]} == {"colour"}
    assert body["model_version"] == results[0]["result"]["model_version"]


def test_batch_answers_in_the_requested_language(http):
    results = http.post("/v1/classify/batch?lang=ko", json={"logs": [{"id": "a", "log": DISK_LOG}]}).get_json()
    assert results["results"][0]["result"]["lang"] == "ko"
    assert HANGUL.search(results["results"][0]["result"]["title"])


def test_batch_over_the_item_limit_is_refused_whole(make_app):
    client = make_app(max_batch_items=3).test_client()
    logs = [{"id": str(i), "log": DISK_LOG} for i in range(4)]
    details = assert_error(client.post("/v1/classify/batch", json={"logs": logs}), 422, "validation_error")
    assert details[0]["field"] == "logs" and "3" in details[0]["message"]
    assert client.post("/v1/classify/batch", json={"logs": logs[:3]}).status_code == 200
    assert client.post("/v1/classify/batch", json={"logs": []}).get_json()["results"] == []


# -- knowledge base, health, readiness ---------------------------------------------------------


def test_categories_list_the_knowledge_base(http, diagnoser):
    body = http.get("/v1/categories").get_json()
    assert [c["id"] for c in body["categories"]] == list(diagnoser.kb.ids)
    postgres = next(c for c in body["categories"] if c["id"] == "postgres-superuser-password")
    assert postgres["seed"] is True and postgres["patterns"]
    assert any("POSTGRES_HOST_AUTH_METHOD=trust" in step["command"] for step in postgres["remediation"])


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_one_category_in_each_language(http, diagnoser, lang):
    body = http.get(f"/v1/categories/no-space-left?lang={lang}").get_json()
    entry = diagnoser.kb["no-space-left"]
    assert body["id"] == "no-space-left" and body["title"] == entry.title.get(lang)
    assert bool(HANGUL.search(body["explanation"])) == (lang == "ko")
    prunes = [step for step in body["remediation"] if "prune" in step["command"]]
    assert prunes and all(step["destructive"] and step["deletes"] for step in prunes)


def test_healthz_and_readyz(http, diagnoser):
    assert http.get("/healthz").get_json() == {"status": "ok"}
    assert http.head("/healthz").status_code == 200
    ready = http.get("/readyz").get_json()
    assert ready == {"status": "ready", "model_version": diagnoser.version,
                     "training_data_hash": diagnoser.bundle.manifest["training_data_hash"],
                     "threshold": diagnoser.threshold, "categories": len(diagnoser.kb.ids)}
    assert re.fullmatch(r"[0-9a-f]{64}", ready["training_data_hash"])


# -- metrics ----------------------------------------------------------------------------------


def test_metrics_count_requests_answers_and_the_share_of_unknown(http):
    before = metric_samples(http)
    http.post("/v1/classify", data=DISK_LOG)
    http.post("/v1/classify", data=DISK_LOG)
    http.post("/v1/classify", data=BORING_LOG)
    http.post("/v1/classify", data=b"")
    http.get("/v1/categories/nope")
    after = metric_samples(http)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    requests = "logmedic_http_requests_total"
    assert delta(requests, route="/v1/classify", method="POST", status="200") == 3
    assert delta(requests, route="/v1/classify", method="POST", status="400") == 1
    assert delta(requests, route="/v1/categories/<category>", method="GET", status="404") == 1
    assert delta("logmedic_answers_total", category="no-space-left", decided_by="rule") == 2
    assert delta("logmedic_answers_total", category="unknown", decided_by="none") == 1
    assert delta("logmedic_http_request_duration_seconds_count", route="/v1/classify") == 4
    # the unknown share is computed from the answer counters in the same scrape
    answers = {k: v for k, v in after.items() if k[0] == "logmedic_answers_total"}
    unknown = sum(v for k, v in answers.items() if ("category", "unknown") in k[1])
    assert after[("logmedic_unknown_answer_ratio", ())] == pytest.approx(unknown / sum(answers.values()))
    assert 0 < after[("logmedic_unknown_answer_ratio", ())] < 1


def test_metrics_is_prometheus_text(http):
    response = http.get("/metrics")
    assert response.mimetype == "text/plain"
    assert "# TYPE logmedic_http_request_duration_seconds histogram" in response.get_data(as_text=True)


def test_metrics_content_type_is_prometheus_exactly(http):
    from prometheus_client import CONTENT_TYPE_LATEST

    assert http.get("/metrics").headers["Content-Type"] == CONTENT_TYPE_LATEST


# -- the OpenAPI document -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec(api) -> dict:
    return api.test_client().get("/openapi.json").get_json()


def test_openapi_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate_openapi(spec)


def test_openapi_documents_every_route_and_nothing_else(api, spec, diagnoser):
    documented = {(method.upper(), re.sub(r"\{(\w+)\}", r"<\1>", path))
                  for path, operations in spec["paths"].items() for method in operations}
    assert documented == app_routes(api) - {("GET", "/static/<path:filename>")}
    assert spec["info"]["version"] == diagnoser.version
    classify = spec["paths"]["/v1/classify"]["post"]
    assert set(classify["requestBody"]["content"]) == {"application/json", "text/plain", "application/octet-stream"}
    assert {"400", "401", "413", "415", "422", "429"} <= set(classify["responses"])
    assert set(classify["responses"]["200"]["content"]) == {"application/json", "text/markdown", "text/plain"}


def schema_validator(spec: dict, name: str) -> OAS31Validator:
    return OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]})


# (request, schema the answer must match): real answers checked against the published document.
CONFORMANCE = [
    (dict(method="POST", path="/v1/classify", data=POSTGRES_LOG), 200, "ClassifyResult"),
    (dict(method="POST", path="/v1/classify?lang=ko", data=BORING_LOG), 200, "ClassifyResult"),
    (dict(method="POST", path="/v1/classify/batch", json={"logs": [{"id": "a", "log": DISK_LOG}, {"id": "b", "log": ""}]}),
     200, "BatchResponse"),
    (dict(method="GET", path="/v1/categories"), 200, "CategoryList"),
    (dict(method="GET", path="/v1/categories/oom-killed"), 200, "Category"),
    (dict(method="GET", path="/healthz"), 200, "Health"),
    (dict(method="GET", path="/readyz"), 200, "Ready"),
    (dict(method="POST", path="/v1/classify", json={"log": 1}), 422, "ErrorResponse"),
    (dict(method="GET", path="/v1/categories/nope"), 404, "ErrorResponse"),
]


@pytest.mark.parametrize("request_kwargs, status, schema", CONFORMANCE, ids=[f"{s} {r['path']}" for r, _, s in CONFORMANCE])
def test_answers_match_the_published_schemas(http, spec, request_kwargs, status, schema):
    request = dict(request_kwargs)
    response = http.open(request.pop("path"), **request)
    assert response.status_code == status
    schema_validator(spec, schema).validate(response.get_json())


def test_docs_page_shows_every_endpoint(http, spec):
    response = http.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for path in spec["paths"]:
        assert path in page, path
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


# -- secrets and stored logs ----------------------------------------------------------------------

SECRET_LOG = (
    "db-1 | POSTGRES_PASSWORD=hunter2supersecret Error: Database is uninitialized and superuser password is not "
    "specified.\n"
    "#7 ERROR: failed to solve: unauthorized: authentication required token=s3cr3tT0kenValue42\n"
    "error: externally-managed-environment AKIAIOSFODNN7EXAMPLE\n")
SECRETS = ("hunter2supersecret", "s3cr3tT0kenValue42", "AKIAIOSFODNN7EXAMPLE",
           "ghp_abcdefghijklmnopqrstuvwxyz0123456789")


@pytest.mark.parametrize("fmt", ["json", "markdown", "text"])
def test_secrets_are_redacted_in_evidence_and_path(http, fmt):
    response = http.post(f"/v1/classify?format={fmt}&filename=/ci/token=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                         data=SECRET_LOG)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    for secret in SECRETS:
        assert secret not in text, secret
    assert "POSTGRES_PASSWORD=[REDACTED]" in text
    if fmt == "json":
        result = response.get_json()
        evidence = "\n".join(e["text"] for e in result["evidence"])
        evidence += "\n".join(e["text"] for finding in result["also"] for e in finding["evidence"])
        assert "[REDACTED]" in evidence and "Database is uninitialized" in evidence
        assert result["path"] == "/ci/token=[REDACTED]"


def test_secrets_in_a_json_filename_are_redacted_too(http):
    result = http.post("/v1/classify", json={"log": DISK_LOG, "filename": "build password=hunter2supersecret.log"})
    assert "hunter2supersecret" not in result.get_data(as_text=True)


def test_logs_are_not_stored_unless_configured(make_app, tmp_path):
    assert make_app().config["LOGMEDIC"].store_logs_dir is None
    store = tmp_path / "store"
    client = make_app(store_logs_dir=store).test_client()
    body = gz(DISK_LOG.encode())
    assert client.post("/v1/classify", data=body, content_type="text/plain",
                       headers={"Content-Encoding": "gzip"}).status_code == 200
    stored = list(store.iterdir())
    assert len(stored) == 1 and stored[0].read_bytes() == DISK_LOG.encode()  # the log as diagnosed, decompressed


def test_when_warm_up_is_on_then_every_training_sample_is_read_before_serving(make_app, diagnoser):
    from model import paths
    from model.samples import load_samples

    with mock.patch.object(Diagnoser, "warm_up", autospec=True, return_value=0) as warm:
        make_app(warm_up=True)
        (engine, logs), _ = warm.call_args
        assert engine is diagnoser
        assert len(list(logs)) == len(load_samples(paths.samples_dir(paths.DATA_DIR))) > 0
        warm.reset_mock()
        make_app(warm_up=False)
        warm.assert_not_called()


def test_when_the_data_dir_has_no_samples_then_the_warm_up_reads_nothing_and_the_app_starts(make_app, tmp_path):
    with mock.patch.object(Diagnoser, "warm_up", autospec=True, return_value=0) as warm:
        app = make_app(warm_up=True, data_dir=tmp_path, check_stale=False)
        (_, logs), _ = warm.call_args
        assert list(logs) == []
    assert app.test_client().get("/healthz").status_code == 200
