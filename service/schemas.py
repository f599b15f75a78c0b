"""Request and response bodies of the HTTP API; the OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model.diagnosis import Diagnosis

Source = Literal["build", "runtime"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ClassifyRequest(_Request):
    """A log to diagnose, as JSON. Raw bodies (text/plain, application/octet-stream) are accepted too."""

    # `pattern` is documentation only (the check stays in body.require_log, which answers 400 empty_log).
    log: str = Field(description="the log text; empty or blank logs are refused with 400 empty_log",
                     json_schema_extra={"pattern": r"\S"})
    source: Source | None = Field(default=None, description="where the log comes from, when known")
    filename: str | None = Field(default=None, max_length=1024, description="echoed back as `path`")


class BatchItem(_Request):
    id: str = Field(min_length=1, max_length=256, description="your id for this log, echoed back")
    log: str = Field(description="the log text")
    source: Source | None = None
    filename: str | None = Field(default=None, max_length=1024)


class BatchRequest(_Request):
    """Several logs in one request; an invalid item gets its own error instead of failing the request."""

    logs: list[BatchItem] = Field(description="at most LOGMEDIC_MAX_BATCH_ITEMS items")


class BatchEnvelope(_Request):
    """What is checked of a batch before its items: the list itself (items are checked one by one)."""

    logs: list[object]


class ClassifyResult(Diagnosis):
    """A diagnosis, with the submitted file name (redacted) and source."""

    path: str | None = Field(default=None, description="the submitted filename, if any")
    source: Source | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list | dict | str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class BatchResultItem(BaseModel):
    id: str | None
    ok: bool
    result: ClassifyResult | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    results: list[BatchResultItem]
    model_version: str


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    model_version: str
    training_data_hash: str
    threshold: float
    categories: int


class Remedy(BaseModel):
    command: str
    description: str
    destructive: bool
    deletes: str | None = None


class Category(BaseModel):
    id: str
    title: str
    summary: str
    explanation: str
    causes: list[str]
    remediation: list[Remedy]
    transient: bool
    seed: bool
    references: list[dict[str, str]]
    patterns: list[str] = Field(description="ids of the regex overrides that decide this category")


class CategoryList(BaseModel):
    categories: list[Category]
