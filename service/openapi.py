"""The OpenAPI document, generated from the routes' declarations and the pydantic models.

Each route declares itself once with `@operation(...)`; nothing here is
written by hand twice. `build_spec` turns the declarations plus the models'
JSON schemas into OpenAPI 3.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.schemas import ErrorResponse

REF = "#/components/schemas/{model}"
ERROR_TEXT = {
    400: "Malformed JSON, a corrupt gzip body, or an empty log (`empty_log`).",
    401: "Missing or wrong bearer token (when LOGMEDIC_API_TOKENS is set).",
    404: "No such resource.",
    413: "Body larger than LOGMEDIC_MAX_BODY_BYTES (before or after gzip decompression).",
    415: "Unsupported Content-Type or Content-Encoding.",
    422: "The body or a query parameter does not match the schema; `details` lists the fields.",
    429: "Rate limit reached; retry after the `Retry-After` seconds.",
    503: "The model is not loaded.",
}


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    response: type[BaseModel] | None
    body: type[BaseModel] | None = None
    raw_body: bool = False
    errors: tuple[int, ...] = ()
    auth: bool = False
    query: tuple[tuple[str, str, tuple[str, ...] | None], ...] = ()
    text_formats: bool = False
    tag: str = "diagnosis"
    response_type: str = "application/json"
    description: str = ""
    path_params: tuple[str, ...] = field(default_factory=tuple)
    body_type: str = "application/json"
    error_text: dict[int, str] = field(default_factory=dict)


OPERATIONS: list[Operation] = []


def operation(**kwargs):
    """Declare a route for the OpenAPI document (the decorated function is unchanged)."""
    def decorate(view):
        OPERATIONS.append(Operation(description=(view.__doc__ or "").strip(), **kwargs))
        return view
    return decorate


def _content(op: Operation, schema_ref: dict | None) -> dict:
    content = {op.response_type: {"schema": schema_ref or {"type": "string"}}}
    if op.text_formats:
        content["text/markdown"] = {"schema": {"type": "string"}}
        content["text/plain"] = {"schema": {"type": "string"}}
    return content


def build_spec(version: str, models: list[type[BaseModel]]) -> dict:
    """OpenAPI 3.1 for every declared operation."""
    used = {m for op in OPERATIONS for m in (op.body, op.response) if m} | set(models) | {ErrorResponse}
    _, defs = models_json_schema([(m, "validation" if any(op.body is m for op in OPERATIONS) else "serialization")
                                  for m in sorted(used, key=lambda m: m.__name__)], ref_template=REF)
    error = {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        path = op.path.replace("<", "{").replace(">", "}")
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in op.path_params]
        for name, text, choices in op.query:
            schema = {"type": "string", **({"enum": list(choices)} if choices else {})}
            parameters.append({"name": name, "in": "query", "required": False, "description": text, "schema": schema})
        responses = {"200": {"description": "OK", "content": _content(
            op, {"$ref": REF.format(model=op.response.__name__)} if op.response else None)}}
        for status in sorted(set(op.errors) | ({401, 429} if op.auth else set())):
            responses[str(status)] = {"description": op.error_text.get(status, ERROR_TEXT[status]), "content": error}
        entry = {"summary": op.summary, "description": op.description, "operationId": f"{op.method}_{path}",
                 "tags": [op.tag], "responses": responses}
        if parameters:
            entry["parameters"] = parameters
        if op.body or op.raw_body:
            content = {}
            if op.body:
                content[op.body_type] = {"schema": {"$ref": REF.format(model=op.body.__name__)}}
            if op.raw_body:
                # A blank body is refused (400 empty_log): the schema says so, so clients and fuzzers know.
                raw = {"schema": {"type": "string", "pattern": "\\S", "description": "the raw log"}}
                content["text/plain"] = raw
                content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
            # A body model whose fields all have defaults accepts an empty body (a bare Slack slash command).
            required = op.raw_body or any(f.is_required() for f in op.body.model_fields.values())
            entry["requestBody"] = {"required": required, "content": content}
        if op.auth:
            entry["security"] = [{"bearer": []}, {}]
        paths.setdefault(path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "logmedic", "version": version,
                 "description": "Diagnoses failed Docker builds and container logs: category, explanation, "
                                "remediation commands, evidence lines and confidence, or `unknown`."},
        "paths": paths,
        "components": {"schemas": defs["$defs"],
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
