"""Which Slack events were already taken, shared by every worker process of one server.

Slack delivers an event again (with `X-Slack-Retry-Num`) when it did not see
the acknowledgement in time; the retry may reach another gunicorn worker than
the first delivery, so the record lives in files, not in a process's memory.
Creating a file with O_EXCL is atomic: exactly one delivery wins.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

KEEP_SECONDS = 3600     # Slack retries three times within minutes; an hour is plenty
PRUNE_EVERY = 600


class SeenEvents:
    """A set of event ids in a directory: `first_time(id)` is true for exactly one caller."""

    def __init__(self, directory: Path | None = None):
        self.owner = os.getpid()
        self.directory = Path(directory or tempfile.mkdtemp(prefix="logmedic-slack-events-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pruned = time.time()
        if directory is None:
            atexit.register(self._remove)

    def first_time(self, event_id: str) -> bool:
        """Record `event_id`; true unless it was recorded before (within KEEP_SECONDS)."""
        self._prune()
        path = self.directory / hashlib.sha256(event_id.encode()).hexdigest()[:40]
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return True
        except FileExistsError:
            return False
        except FileNotFoundError:  # a temp cleaner removed the directory: start a new record
            self.directory.mkdir(parents=True, exist_ok=True)
            return self.first_time(event_id)

    def _prune(self) -> None:
        now = time.time()
        if now - self.pruned < PRUNE_EVERY:
            return
        self.pruned = now
        for entry in os.scandir(self.directory):
            try:
                if now - entry.stat().st_mtime > KEEP_SECONDS:
                    os.remove(entry.path)
            except FileNotFoundError:  # another worker pruned it first
                pass

    def _remove(self) -> None:
        # Workers forked from the process that made the directory inherit this hook: only the maker removes it.
        if os.getpid() == self.owner:
            shutil.rmtree(self.directory, ignore_errors=True)
