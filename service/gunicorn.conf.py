"""gunicorn settings for logmedic: `logmedic serve`, `make run` and the container use this file.

The service is CPU-bound (regexes and a linear model), so it runs one sync
worker per core by default. The app, and with it the model, is loaded once in
the master before forking (preload), so workers share its memory.
"""

import os
import shutil
import sys
import tempfile

from service.settings import SettingsError, load_settings

try:
    _settings = load_settings()
except SettingsError as exc:  # one clear line, as service/wsgi.py does, not gunicorn's config traceback
    sys.stderr.write(f"logmedic: cannot start: {exc}\n")
    sys.exit(4)


def _cpus() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a container's `cpus:`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


bind = os.environ.get("LOGMEDIC_BIND") or f"{_settings.host}:{_settings.port}"
workers = _settings.workers or _cpus()
worker_class = "sync"
preload_app = True
timeout = _settings.timeout
graceful_timeout = 30
keepalive = 2
max_requests = 5000
max_requests_jitter = 500
loglevel = _settings.log_level
accesslog = "-"
errorlog = "-"
# Method, path, status, size and time; never bodies or headers (they carry logs and tokens).
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
limit_request_line = 8190
worker_tmp_dir = os.environ.get("LOGMEDIC_WORKER_TMP_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
# gunicorn >= 25 opens a control socket in $HOME/.gunicorn (or $XDG_RUNTIME_DIR): nothing here uses gunicornc,
# a read-only root file system has no writable $HOME, and servers started side by side would share the path.
control_socket_disable = True

# Every worker writes its metrics here; /metrics aggregates them. Must be set before prometheus_client loads.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="logmedic-metrics-")
_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def on_starting(server):
    os.makedirs(_metrics_dir, exist_ok=True)
    for name in os.listdir(_metrics_dir):
        os.remove(os.path.join(_metrics_dir, name))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _metrics_dir.startswith(tempfile.gettempdir() + os.sep + "logmedic-metrics-"):
        shutil.rmtree(_metrics_dir, ignore_errors=True)


# gunicorn answers some requests itself: malformed HTTP (a bad request line or chunk size) and the request
# of a worker stopped at its timeout. Its page is HTML; the API promises one JSON error shape everywhere.
_worker_state = {"timed_out": False}


def worker_abort(worker):
    # The master sends SIGABRT to a worker that passed `timeout`: its current request is answered below.
    _worker_state["timed_out"] = True


def _write_json_error(sock, status_int, reason, mesg):
    """gunicorn's `util.write_error`, writing the API's error body instead of an HTML page."""
    import json

    from gunicorn import util

    from service.errors import error_body

    if status_int == 500 and _worker_state["timed_out"]:
        status_int, reason = 503, "Service Unavailable"
        code, message = "timeout", f"the request took longer than {timeout} s (LOGMEDIC_TIMEOUT); its worker was restarted"
    else:
        code, message = reason.lower().replace(" ", "_"), mesg or reason
    body = json.dumps(error_body(code, message)).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def post_fork(server, worker):
    from gunicorn import util

    # In the worker only: the master answers nothing.

    util.write_error = _write_json_error
