"""The API's documentation: /openapi.json (generated) and a readable page at /docs."""

from __future__ import annotations

import json

from flask import Blueprint, Flask, current_app, render_template

from service import schemas
from service.openapi import build_spec, operation
from service.security import PAGE_CSP

bp = Blueprint("docs", __name__)


def spec() -> dict:
    """The OpenAPI document, built once per app."""
    if "logmedic.openapi" not in current_app.extensions:
        models = [schemas.BatchItem, schemas.ErrorResponse]
        current_app.extensions["logmedic.openapi"] = build_spec(current_app.extensions["logmedic"].version, models)
    return current_app.extensions["logmedic.openapi"]


@bp.get("/openapi.json")
@operation(method="get", path="/openapi.json", summary="This API's OpenAPI 3.1 document", response=None, tag="docs")
def openapi_json():
    """Generated from the route declarations and the pydantic models."""
    return current_app.response_class(json.dumps(spec(), indent=2), mimetype="application/json")


@bp.get("/docs")
@operation(method="get", path="/docs", summary="This documentation as a web page", response=None, tag="docs",
           response_type="text/html")
def docs_page():
    """Every endpoint, its parameters, bodies, answers and errors."""
    document = spec()
    response = current_app.response_class(render_template("docs.html", spec=document,
                                                          schemas=document["components"]["schemas"]),
                                          mimetype="text/html")
    response.headers["Content-Security-Policy"] = PAGE_CSP
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
