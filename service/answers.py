"""From a submitted log to the response body: diagnose, record, render."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from flask import Response, current_app

from model.diagnose import Diagnoser
from model.redact import redact
from service import metrics, render
from service.body import Submitted
from service.schemas import ClassifyResult

MIMETYPES = {"markdown": "text/markdown", "text": "text/plain"}


def engine() -> Diagnoser:
    return current_app.extensions["logmedic"]


def _store(submitted: Submitted) -> None:
    """Keep the raw log only when LOGMEDIC_STORE_LOGS_DIR says so (logs carry secrets)."""
    directory = current_app.config["LOGMEDIC"].store_logs_dir
    if directory is None:
        return
    data = submitted.log.encode("utf-8", "replace") if isinstance(submitted.log, str) else submitted.log
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    path = Path(directory) / f"{stamp}-{hashlib.sha256(data).hexdigest()[:16]}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def diagnose(submitted: Submitted, lang: str) -> ClassifyResult:
    """Diagnose one submission and count the answer."""
    _store(submitted)
    diagnosis = engine().diagnose(submitted.log, lang)
    metrics.record_answer(diagnosis.category, diagnosis.decided_by, len(submitted.log))
    # The diagnosis's fields as they are (validated once, by the engine), not dumped and validated again;
    # `source` was validated with the request.
    return ClassifyResult.model_construct(**dict(diagnosis), source=submitted.source,
                                          path=redact(submitted.filename) if submitted.filename else None)


def respond(result: ClassifyResult, fmt: str) -> Response:
    """The result as JSON, Markdown or plain text."""
    if fmt == "json":
        return Response(result.model_dump_json(), mimetype="application/json")
    page = render.markdown(result, result.path) if fmt == "markdown" else render.text(result, result.path)
    return Response(page, mimetype=MIMETYPES[fmt], content_type=f"{MIMETYPES[fmt]}; charset=utf-8")


def json_response(model) -> Response:
    return Response(json.dumps(model.model_dump(mode="json"), ensure_ascii=False), mimetype="application/json")
