"""Who may call, how often, and the headers every answer carries.

Bearer tokens (when configured) are compared in constant time against every
accepted token. Rate limits are per token, else per client address, kept in
memory or in Redis (LOGMEDIC_RATE_LIMIT_STORAGE). Health endpoints stay open.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import wraps

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from service.errors import RateLimited, Unauthorized

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}
PAGE_CSP = "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _accepted(offered: bytes, tokens: list[bytes]) -> bool:
    """Whether `offered` is one of `tokens`, compared in constant time against every one."""
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(offered, token)
    return bool(offered) and matched


def client_key() -> str:
    """Rate-limit key: an accepted bearer token (hashed), else the client address.

    A made-up token does not get a budget of its own: else a client could reset its limit by
    sending a fresh random token with every request.
    """
    token = _bearer()
    if token and _accepted(token.encode(), current_app.extensions["logmedic.tokens"]):
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return "addr:" + (get_remote_address() or "unknown")


def check_token(tokens: list[bytes]) -> None:
    """Raise Unauthorized unless the request carries one of `tokens` (constant-time comparison)."""
    if tokens and not _accepted((_bearer() or "").encode(), tokens):
        raise Unauthorized()


def protected(view):
    """Mark a POST endpoint: bearer token checked here, rate limit applied by `init_app`."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        check_token(current_app.extensions["logmedic.tokens"])
        return view(*args, **kwargs)

    wrapper.protected = True
    return wrapper


def _retry_after(exc) -> dict:
    limit = getattr(exc, "limit", None)
    seconds = 60
    if limit is not None:
        try:
            seconds = int(limit.limit.get_expiry())
        except Exception:  # the header is advisory; never let it turn a 429 into a 500
            seconds = 60
    return {"Retry-After": str(seconds)}


def init_app(app: Flask) -> None:
    """Tokens, rate limits on the endpoints marked `protected`, security headers. Call after routes exist."""
    settings = app.config["LOGMEDIC"]
    app.extensions["logmedic.tokens"] = [t.encode() for t in settings.tokens()]
    if settings.rate_limit:
        limiter = Limiter(client_key, app=app, storage_uri=settings.rate_limit_storage, headers_enabled=True,
                          default_limits=[], strategy="fixed-window", in_memory_fallback_enabled=True)
        # One budget for all protected endpoints together: a client at its limit on /v1/classify
        # cannot go on with /v1/classify/batch.
        shared = limiter.shared_limit(settings.rate_limit, scope="logmedic")
        for endpoint, view in list(app.view_functions.items()):
            if getattr(view, "protected", False):
                app.view_functions[endpoint] = shared(view)
        app.extensions["logmedic.limiter"] = limiter

    from flask_limiter.errors import RateLimitExceeded

    @app.errorhandler(RateLimitExceeded)
    def _limited(exc):
        from service.errors import render_error

        return render_error(RateLimited(f"rate limit reached: {exc.description}", headers=_retry_after(exc)))

    @app.after_request
    def _headers(response):
        for key, value in HEADERS.items():
            response.headers.setdefault(key, value)
        response.headers.setdefault("Cache-Control", "no-store")
        return response
