"""Every setting, declared once: name, type, default and help.

Read from `LOGMEDIC_<NAME>` environment variables; `create_app({...})` and the
CLI override them; the README lists them all (a test keeps that true).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model import paths

PREFIX = "LOGMEDIC_"
# An empty variable means "the default", except for these, where empty is the value that turns the
# feature off (LOGMEDIC_RATE_LIMIT= disables the rate limit, as the README says).
EMPTY_TURNS_OFF = ("api_tokens", "rate_limit", "slack_signing_secret", "slack_bot_token")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(paths.DATA_DIR, description="Knowledge base and training samples (`training_data/`).")
    model_dir: Path = Field(paths.MODEL_DIR, description="Trained model bundle, written by `logmedic train`.")
    check_stale: bool = Field(True, description="Refuse a model bundle trained on other data than `data_dir`.")
    host: str = Field("127.0.0.1", description="Address `logmedic serve` binds to.")
    port: int = Field(8080, ge=1, le=65535, description="Port `logmedic serve` listens on.")
    workers: int = Field(0, ge=0, le=64, description="gunicorn worker processes; 0 means one per CPU core.")
    timeout: int = Field(30, ge=1, description="Seconds a worker may spend on one request before it is restarted.")
    warm_up: bool = Field(True, description="Before serving, diagnose every training sample once (about 2 s), so that "
                          "each worker's first requests cost what later ones do.")
    max_body_bytes: int = Field(60 * 1024 * 1024, ge=1024, description="Largest request body accepted, after gzip decompression.")
    max_batch_items: int = Field(100, ge=1, description="Most logs in one `POST /v1/classify/batch`.")
    api_tokens: str = Field("", repr=False, description="Comma-separated bearer tokens required on POST endpoints; empty disables auth.")
    api_tokens_file: Path | None = Field(None, description="File with one bearer token per line (added to `api_tokens`).")
    default_lang: Literal["en", "ko"] = Field("en", description="Language of answers when the request does not ask for one.")
    store_logs_dir: Path | None = Field(None, description="When set, submitted logs are written here (off by default: logs carry secrets).")
    rate_limit: str = Field("600/minute", description="Requests per token (or client address) on POST endpoints; empty disables.")
    rate_limit_storage: str = Field("memory://", description="flask-limiter storage URI, e.g. `redis://localhost:6379/0` for a shared limit.")
    slack_signing_secret: str = Field("", repr=False, description="Slack app signing secret; empty disables the Slack endpoints.")
    slack_bot_token: str = Field("", repr=False, description="Slack bot token used to reply in threads.")
    slack_api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL (tests point it at a local fake).")
    slack_response_type: Literal["ephemeral", "in_channel"] = Field("ephemeral", description="Who sees the slash-command answer.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Server log level.")
    debug: bool = Field(False, description="Flask debug mode; refused when `env` is `production`.")
    env: Literal["production", "development"] = Field("production", description="Deployment environment.")

    @model_validator(mode="after")
    def _no_debug_in_production(self) -> "Settings":
        if self.debug and self.env == "production":
            raise ValueError("debug mode is refused in production; set LOGMEDIC_ENV=development to use it")
        return self

    def tokens(self) -> list[str]:
        """The accepted bearer tokens (inline and from the file)."""
        found = [t.strip() for t in self.api_tokens.split(",") if t.strip()]
        if self.api_tokens_file:
            try:
                text = Path(self.api_tokens_file).read_text()
            except OSError as exc:
                raise SettingsError(f"{PREFIX}API_TOKENS_FILE: cannot read {self.api_tokens_file}: {exc.strerror}") from None
            found += [t.strip() for t in text.splitlines() if t.strip() and not t.startswith("#")]
        return found


def _problem(error: dict) -> str:
    """One validation error as `LOGMEDIC_NAME: message`; a rule over several settings has no single name."""
    message = error["msg"].removeprefix("Value error, ")
    return f"{PREFIX}{'.'.join(map(str, error['loc'])).upper()}: {message}" if error["loc"] else message


def load_settings(overrides: dict | None = None, environ=os.environ) -> Settings:
    """Settings from the environment, then `overrides`; a bad value raises SettingsError naming it."""
    values = {}
    for name in Settings.model_fields:
        raw = environ.get(PREFIX + name.upper())
        if raw is not None and (raw != "" or name in EMPTY_TURNS_OFF):
            values[name] = raw
    values.update(overrides or {})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise SettingsError(problems) from None
