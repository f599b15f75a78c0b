"""Slack: the `/logmedic` slash command and the Events API (`app_mention` answered in the thread).

Every request is checked with slack-sdk's SignatureVerifier on the raw body
before anything else is read; a missing, wrong or stale (replayed) signature
gets 401. With no signing secret configured the endpoints answer 404: the
integration is off. Slash commands are answered directly (the engine takes
milliseconds); mentions are acknowledged at once and answered from a thread
pool, because Slack retries events it has not seen acknowledged within 3 s.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from typing import Any, Literal
from urllib.parse import parse_qs

from flask import Blueprint, Flask, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from slack_sdk.signature import SignatureVerifier

from service import answers
from service.body import Submitted, parse_json, read_body, validate
from service.errors import BadRequest, BadSignature, NotFound
from service.integrations import blocks
from service.integrations.seen import SeenEvents
from service.openapi import operation

log = logging.getLogger("logmedic.slack")
bp = Blueprint("slack", __name__)

REPLAY_WINDOW = 5 * 60   # seconds; Slack's own recommendation, and what SignatureVerifier enforces
REPLY_THREADS = 4
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_FENCED = re.compile(r"```(.*?)```", re.DOTALL)
_MENTION = re.compile(r"<[@!][^>]*>")
_LINK = re.compile(r"<([^<>|]*)\|([^<>]*)>|<([^<>|]*)>")
SLACK_ERRORS = {401: "Missing, wrong or stale (older than 5 minutes: a replay) Slack signature.",
                404: "The Slack integration is off: LOGMEDIC_SLACK_SIGNING_SECRET is empty.",
                422: "A signed body whose fields do not match the schema; `details` lists them."}
COMMAND_ERRORS = {**SLACK_ERRORS, 400: "A form with too many fields, or a corrupt gzip body."}
EVENT_ERRORS = {**SLACK_ERRORS, 400: "Signed, but not valid JSON (`malformed_json`), or a corrupt gzip body."}


class SlashCommand(BaseModel):
    """The form Slack posts for a slash command (application/x-www-form-urlencoded); other fields are ignored."""

    model_config = ConfigDict(extra="allow")
    command: str = Field("/logmedic", description="the command as typed")
    text: str = Field("", description="everything after the command: the log (``` fences optional)")
    channel_id: str | None = None
    user_id: str | None = None
    response_url: str | None = None


class SlackMessage(BaseModel):
    """A Block Kit message, the slash command's answer."""

    response_type: Literal["ephemeral", "in_channel"]
    text: str = Field(description="plain fallback for notifications")
    blocks: list[dict[str, Any]] = Field(description="Block Kit blocks, within Slack's limits")


class SlackEnvelope(BaseModel):
    """An Events API request: `url_verification` or an `event_callback` wrapping one event."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="url_verification, event_callback, ...")
    challenge: str | None = Field(None, description="url_verification: echoed back")
    event_id: str | None = Field(None, description="event_callback: unique per event, the same on retries")
    event: dict[str, Any] | None = Field(None, description="event_callback: the event (app_mention is answered)")


class SlackEventAnswer(BaseModel):
    """`{"challenge": ...}` for url_verification, else the acknowledgement and what became of the event."""

    challenge: str | None = None
    ok: bool | None = None
    outcome: Literal["accepted", "duplicate", "ignored", "no_token"] | None = Field(
        None, description="accepted: a reply will be posted in the thread; duplicate: a retry of an event "
                          "already taken; ignored: not an app_mention; no_token: LOGMEDIC_SLACK_BOT_TOKEN is empty")


def settings():
    """This app's settings."""
    return current_app.config["LOGMEDIC"]


def verified_body() -> bytes:
    """The raw body, once Slack's signature over it checks out; raises NotFound or BadSignature."""
    secret = settings().slack_signing_secret
    if not secret:
        raise NotFound(SLACK_ERRORS[404])
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not signature or not _TIMESTAMP.fullmatch(timestamp):
        raise BadSignature("the X-Slack-Signature and X-Slack-Request-Timestamp headers are required")
    # Checked here too (SignatureVerifier also refuses it) only to say why: the clock, not the secret.
    if abs(time.time() - int(timestamp)) > REPLAY_WINDOW:
        raise BadSignature("the request timestamp is more than 5 minutes from now: replayed or delayed",
                           details={"reason": "stale_timestamp"})
    body = read_body(request, settings().max_body_bytes)
    try:
        valid = SignatureVerifier(secret).is_valid(body, timestamp, signature)
    except UnicodeDecodeError:  # Slack signs UTF-8 text; anything else is not from Slack
        valid = False
    if not valid:
        raise BadSignature(details={"reason": "signature_mismatch"})
    return body


def message_log(text: str) -> str:
    """The log in a Slack message: mentions dropped, links and entities undone, code blocks unwrapped."""
    text = _MENTION.sub("", text)
    text = _LINK.sub(lambda m: m.group(2) if m.group(1) is not None else m.group(3), text)
    text = unescape(text)
    fenced = [part for part in _FENCED.findall(text) if part.strip()]
    # A log pasted in a code block is the block's content; stray or empty fences are not a log.
    return "\n".join(fenced) if fenced else text.replace("```", "")


def _form(body: bytes) -> SlashCommand:
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=200)
    except ValueError:
        raise BadRequest("the form has too many fields") from None
    return validate(SlashCommand, {name: values[0] for name, values in fields.items()})


@bp.post("/v1/integrations/slack/commands")
@operation(method="post", path="/v1/integrations/slack/commands", summary="Slack slash command `/logmedic`",
           body=SlashCommand, body_type="application/x-www-form-urlencoded", response=SlackMessage,
           errors=(400, 401, 404, 413, 422), error_text=COMMAND_ERRORS, tag="integrations")
def slack_command():
    """Signed by Slack (X-Slack-Signature); answers the pasted log with Block Kit, or a usage note when empty."""
    command = _form(verified_body())
    lang = settings().default_lang
    log_text = message_log(command.text)
    if not log_text.strip():
        return jsonify(SlackMessage(response_type="ephemeral", text="logmedic: usage",
                                    blocks=blocks.usage_blocks(lang, command.command)).model_dump())
    result = answers.diagnose(Submitted(log_text, None, None), lang)
    return jsonify(SlackMessage(response_type=settings().slack_response_type, text=blocks.fallback_text(result),
                                blocks=blocks.diagnosis_blocks(result)).model_dump())


@bp.post("/v1/integrations/slack/events")
@operation(method="post", path="/v1/integrations/slack/events", summary="Slack Events API",
           body=SlackEnvelope, response=SlackEventAnswer, errors=(400, 401, 404, 413, 422),
           error_text=EVENT_ERRORS, tag="integrations")
def slack_events():
    """Signed by Slack; answers url_verification, acknowledges at once and replies to app_mention in its thread."""
    envelope = validate(SlackEnvelope, parse_json(verified_body()))
    if envelope.type == "url_verification":
        return jsonify({"challenge": envelope.challenge or ""})
    outcome = accept(envelope, request.headers.get("X-Slack-Retry-Num"))
    return jsonify({"ok": True, "outcome": outcome})


def accept(envelope: SlackEnvelope, retry: str | None) -> str:
    """Decide what to do with an event and queue the reply; returns the outcome."""
    event = envelope.event or {}
    channel, ts = event.get("channel"), event.get("ts")
    if envelope.type != "event_callback" or event.get("type") != "app_mention" \
            or not isinstance(channel, str) or not isinstance(ts, str):
        return "ignored"
    if not current_app.extensions["logmedic.slack.seen"].first_time(envelope.event_id or f"{channel}/{ts}"):
        log.info("slack: event %s already taken; retry %s ignored", envelope.event_id, retry)
        return "duplicate"
    if not settings().slack_bot_token:
        log.warning("slack: cannot reply to a mention: LOGMEDIC_SLACK_BOT_TOKEN is empty")
        return "no_token"
    thread = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else ts
    text = event.get("text") if isinstance(event.get("text"), str) else ""
    _pool().submit(reply, current_app._get_current_object(), channel, thread, text).add_done_callback(_report)
    return "accepted"


def _report(future) -> None:
    # An exception in the pool is otherwise silent: nobody waits for the future.
    if future.exception() is not None:
        log.error("slack: the reply failed", exc_info=future.exception())


def reply(app: Flask, channel: str, thread_ts: str, text: str) -> None:
    """Diagnose the mention's log and post the answer in its thread (runs in the reply pool)."""
    with app.app_context():
        config = app.config["LOGMEDIC"]
        lang = config.default_lang
        log_text = message_log(text)
        if log_text.strip():
            result = answers.diagnose(Submitted(log_text, None, None), lang)
            message, fallback = blocks.diagnosis_blocks(result), blocks.fallback_text(result)
        else:
            message, fallback = blocks.usage_blocks(lang, "@logmedic"), "logmedic: usage"
        base_url = config.slack_api_url if config.slack_api_url.endswith("/") else config.slack_api_url + "/"
        client = WebClient(token=config.slack_bot_token, base_url=base_url, timeout=10)
        try:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=fallback, blocks=message,
                                    unfurl_links=False, unfurl_media=False)
        except (SlackClientError, OSError) as exc:  # Slack down or refusing: nobody is waiting, so log it
            log.warning("slack: chat.postMessage to %s failed: %s", channel, exc)


def _pool() -> ThreadPoolExecutor:
    """This process's reply pool; made after gunicorn forks (a pool's threads do not survive a fork)."""
    extensions = current_app.extensions
    with extensions["logmedic.slack.lock"]:
        pid, pool = extensions.get("logmedic.slack.pool", (None, None))
        if pid != os.getpid():
            pool = ThreadPoolExecutor(REPLY_THREADS, thread_name_prefix="logmedic-slack")
            extensions["logmedic.slack.pool"] = (os.getpid(), pool)
        return pool


def init_app(app: Flask) -> None:
    """Register the Slack routes and, when the integration is on, the record of events already taken."""
    if app.config["LOGMEDIC"].slack_signing_secret:  # off otherwise: no directory to keep
        app.extensions["logmedic.slack.seen"] = SeenEvents()
    app.extensions["logmedic.slack.lock"] = threading.Lock()
    app.register_blueprint(bp)
