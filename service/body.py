"""Reading request bodies safely: size limits, gzip, content types, JSON, validation.

Helpers raise APIErrors; routes stay short. A body is refused from its
Content-Length before it is read, and while streaming when it has none; a
gzip body is refused as soon as its decompressed size passes the same limit,
so a gzip bomb never fills memory.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

from flask import Request
from pydantic import BaseModel, ValidationError
from werkzeug.wsgi import get_input_stream

from service.errors import (BadRequest, EmptyLog, MalformedJSON, PayloadTooLarge, UnsupportedMediaType,
                            ValidationFailed, validation_details)

RAW_TYPES = {"text/plain", "application/octet-stream", "application/x-www-form-urlencoded", "text/x-log", ""}
CHUNK = 1 << 16
FORMATS = ("json", "markdown", "text")
LANGS = ("en", "ko")


def is_json(request: Request) -> bool:
    return request.mimetype == "application/json" or request.mimetype.endswith("+json")


def _decompress(compressed: bytes, limit: int) -> bytes:
    """Every gzip member of the body (pigz and `cat a.gz b.gz` write several), never more than `limit` bytes."""
    parts, size, rest = [], 0, compressed
    while rest:
        inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
        try:
            data = inflater.decompress(rest, limit - size + 1)
        except zlib.error:
            raise BadRequest("the gzip body is corrupt", details={"content_encoding": "gzip"}) from None
        size += len(data)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"the body decompresses to more than {limit} bytes")
        if not inflater.eof:
            raise BadRequest("the gzip body is truncated", details={"content_encoding": "gzip"})
        parts.append(data)
        rest = inflater.unused_data
    return b"".join(parts)


def read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed, never more than `limit` bytes."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is {request.content_length} bytes; the limit is {limit}")
    parts, size = [], 0
    # Not `request.stream`: Flask caps it at MAX_CONTENT_LENGTH and refuses the read past the last byte,
    # which turns a body of exactly `limit` bytes into a 413. This stream ends at Content-Length (or at
    # the end of a chunked body), and the loop below enforces the limit itself.
    stream = get_input_stream(request.environ, max_content_length=None)
    while True:
        try:
            chunk = stream.read(CHUNK)
        except MemoryError:
            raise
        except Exception as exc:  # the stream is the client's socket: broken chunked encoding, a client gone away
            raise BadRequest("the request body cannot be read", details={"reason": type(exc).__name__}) from None
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")
        parts.append(chunk)
    body = b"".join(parts)
    return _decompress(body, limit) if encoding != "identity" and body else body


def parse_json(body: bytes):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJSON(details=str(exc)[:200]) from None


def validate(model: type[BaseModel], value):
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ValidationFailed(details=validation_details(exc)) from None


def require_log(log: str | bytes) -> None:
    if not log or not log.strip():
        raise EmptyLog()


@dataclass
class Submitted:
    log: bytes | str
    source: str | None
    filename: str | None


def read_submission(request: Request, limit: int, model: type[BaseModel]) -> Submitted:
    """A log from a JSON body (`model`) or a raw body (source and filename from the query string)."""
    # The query parameter is checked whatever the body: the OpenAPI document declares its enum for both.
    source = request.args.get("source")
    if source not in (None, "build", "runtime"):
        raise ValidationFailed(details=[{"field": "source", "message": "must be build or runtime", "type": "enum"}])
    if is_json(request):
        parsed = validate(model, parse_json(read_body(request, limit)))
        require_log(parsed.log)
        return Submitted(parsed.log, parsed.source, parsed.filename)
    if request.mimetype not in RAW_TYPES:
        raise UnsupportedMediaType(details={"content_type": request.mimetype})
    body = read_body(request, limit)
    require_log(body)
    return Submitted(body, source, request.args.get("filename"))


def choose(request: Request, default_lang: str) -> tuple[str, str]:
    """(format, lang) from the query string, else from Accept and Accept-Language."""
    problems = []
    fmt = request.args.get("format")
    if fmt is None:
        # Most clients (curl, wrk, CI scripts) send no Accept or `*/*`: JSON, without parsing the header.
        accept = request.headers.get("Accept")
        best = (request.accept_mimetypes.best_match(["application/json", "text/markdown", "text/plain"])
                if accept and accept != "*/*" else None)
        fmt = {"text/markdown": "markdown", "text/plain": "text"}.get(best, "json")
    elif fmt not in FORMATS:
        problems.append({"field": "format", "message": f"must be one of {', '.join(FORMATS)}", "type": "enum"})
    lang = request.args.get("lang")
    if lang is None:
        lang = (request.accept_languages.best_match(LANGS) if request.headers.get("Accept-Language") else None) \
            or default_lang
    elif lang not in LANGS:
        problems.append({"field": "lang", "message": "must be en or ko", "type": "enum"})
    if problems:
        raise ValidationFailed(details=problems)
    return fmt, lang
