"""The WSGI entry point for gunicorn: `service.wsgi:application()`.

A factory, not a module global: the model is loaded when gunicorn asks for the
app. If it cannot load (missing, corrupt, foreign or stale bundle, bad
setting), the server stops with one line that says what to run.
"""

import sys

from model.errors import ModelError
from service import create_app
from service.settings import SettingsError

EXIT_CANNOT_START = 4


def application():
    """Build the app or stop the server with one clear line."""
    try:
        return create_app()
    except (ModelError, SettingsError) as exc:
        sys.stderr.write(f"logmedic: cannot start: {exc}\n")
        sys.stderr.flush()
        sys.exit(EXIT_CANNOT_START)
