"""The HTTP API's routes: each parses, calls the engine, serialises."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, request

from model.knowledge import KnowledgeBase
from service import answers, metrics
from service.body import Submitted, choose, read_body, parse_json, read_submission, require_log, validate
from service.errors import APIError, NotFound, ValidationFailed, error_body, to_api_error
from service.openapi import operation
from service.schemas import (BatchEnvelope, BatchItem, BatchRequest, BatchResponse, BatchResultItem, Category,
                             CategoryList, ClassifyRequest, ClassifyResult, ErrorDetail, Health, Ready, Remedy)
from service.security import protected

bp = Blueprint("api", __name__)
FORMAT_QUERY = (("format", "json (default), markdown or text; or use the Accept header", ("json", "markdown", "text")),
                ("lang", "en or ko; or use Accept-Language", ("en", "ko")))


def settings():
    return current_app.config["LOGMEDIC"]


@bp.post("/v1/classify")
@operation(method="post", path="/v1/classify", summary="Diagnose one log", body=ClassifyRequest, raw_body=True,
           response=ClassifyResult, errors=(400, 413, 415, 422), auth=True, text_formats=True,
           query=FORMAT_QUERY + (("source", "raw bodies: build or runtime", ("build", "runtime")),
                                 ("filename", "raw bodies: echoed back as `path`", None)))
@protected
def classify():
    """Send a JSON body `{"log": "..."}` or the raw log (`curl --data-binary @build.log`); gzip accepted."""
    fmt, lang = choose(request, settings().default_lang)
    submitted = read_submission(request, settings().max_body_bytes, ClassifyRequest)
    return answers.respond(answers.diagnose(submitted, lang), fmt)


def _batch_item(raw, lang: str) -> BatchResultItem:
    ident = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    try:
        item = validate(BatchItem, raw)
        require_log(item.log)
        result = answers.diagnose(Submitted(item.log, item.source, item.filename), lang)
        return BatchResultItem(id=item.id, ok=True, result=result)
    except APIError as exc:
        error = to_api_error(exc)
        return BatchResultItem(id=ident, ok=False, error=ErrorDetail(**error_body(error.code, error.message, error.details)["error"]))


@bp.post("/v1/classify/batch")
@operation(method="post", path="/v1/classify/batch", summary="Diagnose several logs", body=BatchRequest,
           response=BatchResponse, errors=(400, 413, 415, 422), auth=True, query=FORMAT_QUERY[1:])
@protected
def classify_batch():
    """One result per item, in order; an invalid item gets its own error entry."""
    _, lang = choose(request, settings().default_lang)
    if not request.is_json:
        from service.errors import UnsupportedMediaType
        raise UnsupportedMediaType("send application/json: {\"logs\": [{\"id\": ..., \"log\": ...}]}")
    envelope = validate(BatchEnvelope, parse_json(read_body(request, settings().max_body_bytes)))
    limit = settings().max_batch_items
    if len(envelope.logs) > limit:
        raise ValidationFailed(f"at most {limit} logs per batch", details=[
            {"field": "logs", "message": f"{len(envelope.logs)} items; the limit is {limit}", "type": "too_long"}])
    results = [_batch_item(raw, lang) for raw in envelope.logs]
    return answers.json_response(BatchResponse(results=results, model_version=answers.engine().version))


def _category(kb: KnowledgeBase, category: str, lang: str) -> Category:
    entry = kb[category]
    return Category(
        id=entry.id, title=entry.title.get(lang), summary=entry.summary.get(lang),
        explanation=entry.explanation.get(lang).strip(), causes=[c.get(lang) for c in entry.causes],
        remediation=[Remedy(command=s.command, description=s.description.get(lang), destructive=s.destructive,
                            deletes=s.deletes.get(lang) if s.deletes else None) for s in entry.remediation],
        transient=entry.transient, seed=entry.seed, references=[r.model_dump() for r in entry.references],
        patterns=[p.id for p in entry.patterns])


@bp.get("/v1/categories")
@operation(method="get", path="/v1/categories", summary="The knowledge base", response=CategoryList,
           errors=(422,), query=FORMAT_QUERY[1:], tag="knowledge")
def categories():
    """Every category logmedic knows, with its explanation and remediation."""
    _, lang = choose(request, settings().default_lang)
    kb = answers.engine().kb
    return answers.json_response(CategoryList(categories=[_category(kb, c, lang) for c in kb.ids]))


@bp.get("/v1/categories/<category>")
@operation(method="get", path="/v1/categories/<category>", summary="One category", response=Category,
           errors=(404, 422), query=FORMAT_QUERY[1:], path_params=("category",), tag="knowledge")
def category(category: str):
    """One category of the knowledge base."""
    _, lang = choose(request, settings().default_lang)
    kb = answers.engine().kb
    if category not in kb:
        raise NotFound(f"no category {category!r}; GET /v1/categories lists them")
    return answers.json_response(_category(kb, category, lang))


@bp.get("/healthz")
@operation(method="get", path="/healthz", summary="Alive", response=Health, tag="operations")
def healthz():
    """The process answers."""
    return {"status": "ok"}


@bp.get("/readyz")
@operation(method="get", path="/readyz", summary="Ready: the model is loaded", response=Ready, tag="operations")
def readyz():
    """The model is loaded; its version and the hash of the data it was trained on."""
    engine = answers.engine()
    manifest = engine.bundle.manifest
    return answers.json_response(Ready(status="ready", model_version=engine.version,
                                       training_data_hash=manifest["training_data_hash"],
                                       threshold=engine.threshold, categories=len(engine.kb.ids)))


@bp.get("/metrics")
@operation(method="get", path="/metrics", summary="Prometheus metrics", response=None, tag="operations",
           response_type="text/plain")
def prometheus():
    """Requests by route and status, latency histogram, answers by category, share of `unknown`."""
    return metrics.scrape()


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
