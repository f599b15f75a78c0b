# logmedic's image: `docker build -t logmedic .`, then `docker compose up` (compose.yaml) or
# `docker run --read-only --tmpfs /tmp -p 127.0.0.1:8080:8080 logmedic`.

# -- build: install logmedic and its dependencies into a virtual environment, then train the bundle --------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
RUN python -m venv /opt/venv

# Dependencies first, so that editing the knowledge base does not reinstall them.
COPY pyproject.toml README.md ./
COPY model/ model/
COPY service/ service/
RUN pip install --no-cache-dir --editable .

# Training reads training_data/ and writes build/model/, which the runtime user must be able to read.
COPY training_data/ training_data/
RUN logmedic train && chmod -R a+rX build/model

# -- runtime: slim, no compilers, non-root, read-only root file system friendly ----------------------------
FROM python:3.11-slim-bookworm

# Everything the server writes goes to /tmp (a tmpfs under `read_only: true`) or /dev/shm: prometheus'
# multiprocess files (PROMETHEUS_MULTIPROC_DIR, made under TMPDIR), gunicorn's worker heartbeat files
# (/dev/shm); gunicorn's control socket is disabled in service/gunicorn.conf.py and no .pyc is written.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    HOME=/nonexistent \
    LOGMEDIC_HOST=0.0.0.0 \
    LOGMEDIC_PORT=8080 \
    LOGMEDIC_DATA_DIR=/app/training_data \
    LOGMEDIC_MODEL_DIR=/app/build/model

RUN groupadd --system --gid 10001 logmedic \
    && useradd --system --uid 10001 --gid logmedic --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin logmedic

WORKDIR /app
# Owned by root and only readable by the service user: the code and the model cannot be changed at run time.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app

USER 10001:10001
EXPOSE 8080

# The slim image has no curl: Python asks /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LOGMEDIC_PORT', '8080'), timeout=4)"]

# Exec form: gunicorn is PID 1 and gets SIGTERM directly for a graceful shutdown.
CMD ["gunicorn", "--config", "service/gunicorn.conf.py", "service.wsgi:application()"]
