"""`logmedic ask`: the CI client. Sends a failed log to a running service (or the local engine) and prints the answer.

A CI step that explains a failure must never become a second failure: when the
service is down, slow or answers an error, the command prints a one-line
warning on stderr and exits 0, unless `--strict`. Only the standard library
talks HTTP (urllib), so the client adds no dependency.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import secrets
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import click
from pydantic import ValidationError

EXIT_NO_ANSWER = 1
EXIT_INPUT = 2
DEFAULT_TIMEOUT = 10.0
GZIP_FROM_BYTES = 64 * 1024  # below this, compressing costs more than sending
MAX_ANNOTATIONS = 10  # GitHub shows at most 10 error annotations per step
MAX_ERROR_BODY = 64 * 1024
CLASSIFY_PATH = "/v1/classify"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would resend the bearer token to whatever host the redirect names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class NoAnswer(Exception):
    """The service or the local engine gave no diagnosis; the message says why, in one line."""


# --- GitHub Actions workflow commands -------------------------------------------------------------
# Escaping follows actions/toolkit (packages/core/src/command.ts): data escapes %, CR and LF;
# property values also escape ':' and ','. '%' goes first so the other escapes are not re-escaped.

def escape_data(value: str) -> str:
    """Escape a workflow command's message."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a workflow command's property value (file, title, ...)."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: str, **properties) -> str:
    """One `::command key=value,...::message` line."""
    props = ",".join(f"{key}={escape_property(str(value))}" for key, value in properties.items() if value is not None)
    return f"::{command}{' ' + props if props else ''}::{escape_data(message)}"


def github_annotations(result, path: str | None) -> list[str]:
    """`::error` lines for the evidence of a known failure; one `::notice` for `unknown`."""
    if result.category == "unknown":
        return [workflow_command("notice", f"{result.title}: {result.summary}", title="logmedic: unknown")]
    title = f"logmedic: {result.title} ({result.category})"
    out = []
    for evidence in result.evidence[:MAX_ANNOTATIONS]:
        message = f"{result.summary}\nline {evidence.line}: {evidence.text}"
        if result.remediation:
            message += f"\nfirst step: {result.remediation[0].command}"
        out.append(workflow_command("error", message, file=path, line=evidence.line, title=title))
    if not out:
        out.append(workflow_command("error", result.summary, file=path, title=title))
    return out


def write_step_summary(page: str) -> str | None:
    """Append the Markdown page to $GITHUB_STEP_SUMMARY; a warning when that cannot be done."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return "GITHUB_STEP_SUMMARY is not set; no job summary written"
    try:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(page if page.endswith("\n") else page + "\n")
    except OSError as exc:
        return f"cannot write the job summary to {target}: {exc.strerror}"
    return None


# --- Asking a service -----------------------------------------------------------------------------

def classify_url(base: str) -> str:
    """The classify endpoint of a service given by its base URL (or by the endpoint itself)."""
    parsed = urllib.parse.urlsplit(base.strip())
    try:
        valid = parsed.scheme in ("http", "https") and bool(parsed.hostname) and (parsed.port or 1) > 0
    except ValueError:  # a port that is not a number
        valid = False
    if not valid:
        # The value is not echoed: a mistyped URL may still carry credentials.
        raise click.BadParameter("not an http(s) URL such as https://logmedic.example.com", param_hint="--url")
    if "@" in parsed.netloc:
        raise click.BadParameter("credentials do not go in the URL; give the token with --token or LOGMEDIC_TOKEN",
                                 param_hint="--url")
    path = parsed.path.rstrip("/")
    if not path.endswith(CLASSIFY_PATH):
        path += CLASSIFY_PATH
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


def shown(url: str) -> str:
    """A URL safe to print: no user:password, no query string."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parsed.scheme, host, parsed.path, "", ""))


def _error_message(exc: urllib.error.HTTPError) -> str:
    """`HTTP 401 unauthorized: <message>` from the service's error body, when it has one."""
    try:
        error = json.loads(exc.read(MAX_ERROR_BODY))["error"]
        return f"HTTP {exc.code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError, OSError, http.client.HTTPException):
        return f"HTTP {exc.code} {exc.reason}"


def request_diagnosis(url: str, data: bytes, *, token: str | None, lang: str | None, filename: str | None,
                      timeout: float):
    """POST the log to the service's classify endpoint; the answer as a ClassifyResult, or NoAnswer."""
    from service.schemas import ClassifyResult

    query = {k: v for k, v in {"lang": lang, "filename": filename, "format": "json"}.items() if v}
    headers = {"Content-Type": "application/octet-stream", "Accept": "application/json",
               "User-Agent": "logmedic-ask"}
    if len(data) >= GZIP_FROM_BYTES:
        data = gzip.compress(data, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url}?{urllib.parse.urlencode(query)}", data=data, headers=headers,
                                     method="POST")
    where = shown(url)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        location = exc.headers.get("Location") if exc.headers else None
        moved = f" (redirected to {shown(location)}; give that URL)" if location else ""
        raise NoAnswer(f"{where} answered {_error_message(exc)}{moved}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise NoAnswer(f"{where} did not answer within {timeout:g}s") from None
        raise NoAnswer(f"cannot reach {where}: {getattr(reason, 'strerror', None) or reason}") from None
    except (socket.timeout, TimeoutError):
        raise NoAnswer(f"{where} did not answer within {timeout:g}s") from None
    except (http.client.HTTPException, OSError) as exc:
        raise NoAnswer(f"{where} broke the connection: {exc.__class__.__name__} {exc}".strip()) from None
    try:
        return ClassifyResult.model_validate_json(body)
    except ValidationError:
        raise NoAnswer(f"{where} answered something that is not a logmedic diagnosis") from None


def local_diagnosis(settings, data: bytes, lang: str | None, path: str | None):
    """Diagnose in-process with the engine in settings' data and model directories."""
    from model.diagnose import Diagnoser
    from model.errors import ModelError
    from service.schemas import ClassifyResult

    try:
        engine = Diagnoser.load(settings.data_dir, settings.model_dir, settings.check_stale)
    except ModelError as exc:
        raise NoAnswer(f"no --url and no usable local model: {exc}") from None
    diagnosis = engine.diagnose(data, lang or settings.default_lang)
    return ClassifyResult(**diagnosis.model_dump(), path=path)


# --- The command ----------------------------------------------------------------------------------

def read_log(path: str) -> bytes:
    """The log's bytes from a file (decompressed when .gz) or stdin; an unreadable or empty log exits 2."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        elif path.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = Path(path).read_bytes()
    except (OSError, EOFError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        click.echo(f"logmedic: {path}: {reason}", err=True)
        sys.exit(EXIT_INPUT)
    if not data.strip():
        click.echo(f"logmedic: {path}: the log is empty", err=True)
        sys.exit(EXIT_INPUT)
    return data


def _settings(ctx: click.Context):
    """The group's settings (honouring --data-dir/--model-dir), or the environment's when run alone."""
    settings = getattr(ctx.find_root().obj, "settings", None)
    if settings is None:
        from service.settings import load_settings

        settings = load_settings()
    return settings


def _print_page(page: str, github: bool) -> None:
    """Print the diagnosis; under GitHub, with workflow commands off so log lines cannot issue any."""
    if not github:
        click.echo(page, nl=False)
        return
    # The page quotes log lines; a line starting with `::` would otherwise be run as a workflow command.
    resume = secrets.token_hex(16)
    click.echo(f"::stop-commands::{resume}")
    click.echo(page, nl=False)
    click.echo(f"::{resume}::")


@click.command(context_settings={"max_content_width": 100})
@click.argument("path", default="-", metavar="[PATH|-]")
@click.option("--url", envvar="LOGMEDIC_URL", default=None, metavar="URL",
              help="Base URL of a logmedic service [env LOGMEDIC_URL]; without it the local engine answers.")
@click.option("--token", envvar="LOGMEDIC_TOKEN", default=None, metavar="T",
              help="Bearer token for the service [env LOGMEDIC_TOKEN; prefer the env var in CI].")
@click.option("--github", is_flag=True,
              help="Also append the Markdown diagnosis to $GITHUB_STEP_SUMMARY and print ::error annotations.")
@click.option("--lang", type=click.Choice(["en", "ko"]), default=None, help="Language of the answer [default: en].")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True,
              help="What is printed on stdout.")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=DEFAULT_TIMEOUT, show_default=True, metavar="S",
              help="Seconds to wait for the service to connect and to answer.")
@click.option("--strict", is_flag=True, help="Exit 1 when no diagnosis could be had, instead of 0.")
@click.pass_context
def ask(ctx: click.Context, path: str, url: str | None, token: str | None, github: bool, lang: str | None, fmt: str,
        timeout: float, strict: bool) -> None:
    """Diagnose a failed CI log: PATH or - for stdin (the default).

    With --url (or LOGMEDIC_URL) the log goes to a running service
    (POST /v1/classify, gzipped when large); without it the local engine
    answers. The diagnosis is printed on stdout. A service that is down, slow
    or answers an error only costs a one-line warning on stderr: the build
    log's failure stays the only failure.

    \b
    Exit codes:
      0  a diagnosis was printed (`unknown` included), or none could be had
         (service down, slow, answering an error; no local model): warning on stderr
      1  with --strict: no diagnosis could be had
      2  usage or input errors (bad option, unreadable or empty log)
    """
    from service import render

    endpoint = classify_url(url) if url and url.strip() else None
    data = read_log(path)
    shown_path = None if path == "-" else path
    try:
        if endpoint:
            result = request_diagnosis(endpoint, data, token=token, lang=lang, filename=shown_path, timeout=timeout)
        else:
            result = local_diagnosis(_settings(ctx), data, lang, shown_path)
    except NoAnswer as exc:
        click.echo(f"logmedic: warning: no diagnosis: {exc}", err=True)
        sys.exit(EXIT_NO_ANSWER if strict else 0)

    if fmt == "json":
        page = json.dumps(result.model_dump(mode="json"), ensure_ascii=False) + "\n"
    elif fmt == "markdown":
        page = render.markdown(result, result.path)
    else:
        page = render.text(result, result.path, color=not github and sys.stdout.isatty())
    _print_page(page, github)
    if github:
        problem = write_step_summary(render.markdown(result, result.path))
        if problem:
            click.echo(f"logmedic: warning: {problem}", err=True)
        for line in github_annotations(result, shown_path):
            click.echo(line)
