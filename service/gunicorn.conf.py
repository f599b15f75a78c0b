"""gunicorn settings for logmedic: `logmedic serve`, `make run` and the container use this file.

The service is CPU-bound (regexes and a linear model), so it runs one sync
worker per core by default. The app, and with it the model, is loaded once in
the master before forking (preload), so workers share its memory.
"""

import os
import shutil
import tempfile

from service.settings import load_settings

_settings = load_settings()

bind = os.environ.get("LOGMEDIC_BIND") or f"{_settings.host}:{_settings.port}"
workers = _settings.workers or os.cpu_count() or 1
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
