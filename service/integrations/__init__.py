"""Integrations with the tools people already use: Slack (chat-ops) for now."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the integrations' routes (Slack); each checks its own settings per request."""
    from service.integrations import slack

    slack.init_app(app)
