"""A real gunicorn on a loopback port, started the way `logmedic serve` and the container start it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
CONFIG = ROOT / "service" / "gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A running gunicorn: its URL, its process and what it printed."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path):
        self.process = process
        self.url = url
        self.log_path = log_path
        self._final_output = ""

    def output(self) -> str:
        """Everything the server printed so far (kept after `stop`, which removes the file)."""
        if self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return self._final_output

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=kwargs.pop("timeout", 60), **kwargs)

    def workers(self) -> list[int]:
        """PIDs of the worker processes (children of the master)."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40, keep_log: bool = False) -> int:
        """Stop the server (SIGTERM: a graceful drain) and remove its log file unless asked to keep it."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not keep_log and self.log_path.exists():
            self._final_output = self.log_path.read_text(errors="replace")
            self.log_path.unlink()
        return self.process.returncode


def start_server(env: dict | None = None, workers: int = 2, wait: float = 60) -> Server:
    """Start gunicorn with service/gunicorn.conf.py; return once /healthz answers (or the process died)."""
    port = free_port()
    log = tempfile.NamedTemporaryFile("wb", prefix="logmedic-gunicorn-", suffix=".log", delete=False)
    environment = {**os.environ, "LOGMEDIC_HOST": "127.0.0.1", "LOGMEDIC_PORT": str(port),
                   "LOGMEDIC_WORKERS": str(workers), **(env or {})}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen([str(GUNICORN), "--config", str(CONFIG), "service.wsgi:application()"],
                               cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", Path(log.name))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return server
        try:
            if requests.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"gunicorn did not answer within {wait}s:\n{server.output()}")


@contextmanager
def running_server(env: dict | None = None, workers: int = 2):
    """A started server, stopped (SIGTERM) when the block ends."""
    server = start_server(env, workers)
    if server.process.poll() is not None:
        raise RuntimeError(f"gunicorn exited with {server.process.returncode}:\n{server.output()}")
    try:
        yield server
    finally:
        server.stop()
