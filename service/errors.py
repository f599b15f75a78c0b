"""Every error the API returns: one hierarchy, one body shape, one handler.

Body: {"error": {"code": "...", "message": "...", "details": ...}}. Never an
HTML page, never a traceback; the unexpected is logged and answered with a
generic 500.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from model.redact import redact

log = logging.getLogger("logmedic.errors")


class APIError(Exception):
    status = 500
    code = "internal_error"
    message = "internal error"
    headers: dict = {}

    def __init__(self, message: str | None = None, details=None, headers: dict | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        self.headers = headers or self.headers


class BadRequest(APIError):
    status, code, message = 400, "bad_request", "the request cannot be read"


class MalformedJSON(BadRequest):
    code, message = "malformed_json", "the body is not valid JSON"


class EmptyLog(BadRequest):
    code, message = "empty_log", "the log is empty"


class Unauthorized(APIError):
    status, code, message = 401, "unauthorized", "a valid bearer token is required"
    headers = {"WWW-Authenticate": 'Bearer realm="logmedic"'}


class BadSignature(Unauthorized):
    code, message = "bad_signature", "the Slack request signature is missing, wrong or stale"
    headers: dict = {}  # Slack signs requests; a Bearer challenge would mislead


class NotFound(APIError):
    status, code, message = 404, "not_found", "no such resource"


class MethodNotAllowed(APIError):
    status, code, message = 405, "method_not_allowed", "method not allowed on this resource"


class PayloadTooLarge(APIError):
    status, code, message = 413, "payload_too_large", "the request body is too large"


class UnsupportedMediaType(APIError):
    status, code, message = 415, "unsupported_media_type", "send application/json, text/plain or application/octet-stream"


class ValidationFailed(APIError):
    status, code, message = 422, "validation_error", "the request does not match the schema"


class RateLimited(APIError):
    status, code, message = 429, "rate_limited", "too many requests"


class NotReady(APIError):
    status, code, message = 503, "not_ready", "the service is not ready"


_BY_STATUS = {cls.status: cls for cls in (BadRequest, Unauthorized, NotFound, MethodNotAllowed, PayloadTooLarge,
                                          UnsupportedMediaType, ValidationFailed, RateLimited)}


def error_body(code: str, message: str, details=None) -> dict:
    """The one shape of every error body."""
    return {"error": {"code": code, "message": message, "details": details}}


def validation_details(exc: ValidationError) -> list[dict]:
    """pydantic errors as JSON-safe field details (no echo of the submitted values)."""
    # A field name is the client's text too (an unknown key can be a pasted token): redacted like evidence.
    return [{"field": redact(".".join(str(p) for p in e["loc"])), "message": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)]


def to_api_error(exc: Exception) -> APIError:
    """Any exception as the APIError it should be answered with."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ValidationError):
        return ValidationFailed(details=validation_details(exc))
    if isinstance(exc, HTTPException):
        cls = _BY_STATUS.get(exc.code)
        if cls is not None:
            error = cls()
            if exc.code == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
                error.headers = {"Allow": ", ".join(exc.valid_methods)}
            if exc.code == 429:
                error.headers = {k: v for k, v in (exc.get_headers() or []) if k.lower() == "retry-after"}
            return error
        return APIError(exc.description or "error") if exc.code and exc.code >= 500 else _generic(exc)
    log.exception("unexpected error")
    return APIError()


def _generic(exc: HTTPException) -> APIError:
    error = APIError(exc.description)
    error.status, error.code = exc.code or 400, (exc.name or "error").lower().replace(" ", "_")
    return error


def render_error(exc: Exception):
    error = to_api_error(exc)
    response = jsonify(error_body(error.code, error.message, error.details))
    response.status_code = error.status
    for key, value in error.headers.items():
        response.headers[key] = value
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(Exception, render_error)
