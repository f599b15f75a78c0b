"""Preprocessing: from raw bytes to clean, numbered lines.

Whole-log work happens on UTF-8 bytes with linear-time RE2 passes (a CI log
can be 50 MB); per-line work (carriage-return rewrites, prefix stripping,
masking) only touches the few lines the scanner selects. Original line
numbers are kept for evidence; prefixes and volatile tokens are removed only
from the text the rules and the model read.
"""

from __future__ import annotations

import codecs
import re
from typing import NamedTuple

import numpy as np
import re2

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def compile_re2(pattern: str | bytes):
    """Compile with RE2, quietly; raises `re2.error` on unsupported syntax."""
    return re2.compile(pattern, _RE2_OPTIONS)


# Escape sequences: CSI (colours, cursor moves), OSC (titles, links), charset and two-byte escapes.
# Run with Python's `re`, which is linear here (every match starts at an ESC byte, which none of the
# repeated classes contains, and the three classes of a CSI sequence are disjoint; tests/test_redos.py
# runs it over hostile 5 MB lines): RE2's Python wrapper pays some microseconds per match, so a
# coloured 60 MB CI log (millions of escapes) took longer to clean than the request timeout.
_ANSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\x5c)?|[()#][0-9A-Za-z]|[@-Z\x5c-_])")
# Per-selection patterns below run with Python's `re`: they are linear (no nested
# quantifier can fail after matching), and `re` is much cheaper per call than the
# RE2 wrapper on the small joined selections they see.
# Colour codes whose ESC byte was lost on the way to an issue thread: "[91mW: GPG error".
_ANSI_REMNANT = re.compile(r"\[\d{1,3}(?:;\d{1,3})*m")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Prefixes tools put before the message: CI and journald timestamps, BuildKit
# step ids and elapsed seconds, compose service names, CI annotations. Anchored
# (tried at line starts only: unanchored, `[\w.@-]+` would rescan long words
# from every position) and matched line by line.
_PREFIX = re.compile(
    r"^(?:"
    r"[ \t]+"
    r"|\[?\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2}| ?UTC)?\]?"
    r"|\[?\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\]?"
    r"|[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} [\w.-]+ [\w./@-]+(?:\[\d+\])?:"
    r"|\[Container\]"
    r"|#\d+(?: \d+\.\d+)?[ \t]"
    r"|\d+\.\d{1,4}[ \t]"
    r"|\d+\t"
    r"|[\w.@-]+[ \t]*\|[ \t]"
    r"|=> => #[ \t]?"
    r"|##\[[a-z]+\]"
    r"|\[\d+\]\([^)\s]*\)"
    r"|remote:[ \t]"
    r")+"
)

_HEX = "[0-9a-fA-F]"
# Every mask but the temp-path one needs a digit: they run token by token, only on the tokens
# that have one (a token never contains a character these patterns cannot match across). Each has a
# cheap test a token must pass before the pattern is tried (a necessary condition for a match, so
# skipping changes nothing): most tokens are timestamps, ports and versions that need two or three.
_DIGIT_MASKS = tuple(
    (re.compile(pattern), replacement, worth_trying)
    for pattern, replacement, worth_trying in (
        (rf"\b{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}\b", "<uuid>",
         lambda t: len(t) >= 36 and "-" in t),
        (rf"\b[sS][hH][aA](?:1|256|512)?:{_HEX}{{12,}}\b", "<digest>", lambda t: len(t) >= 16 and ":" in t),
        (rf"\b(?={_HEX}*\d)(?={_HEX}*[a-fA-F]){_HEX}{{12,}}\b", "<hex>", lambda t: len(t) >= 12),
        (r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", "<ip>", lambda t: t.count(".") >= 3),
        (r"\[(?=[0-9a-fA-F:]*(?:[a-fA-F]|::))[0-9a-fA-F]*:[0-9a-fA-F:]*(?:%\w+)?\]", "<ip>",  # [::]:80
         lambda t: "[" in t and ":" in t),
        (rf"\b{_HEX}{{1,4}}(?::{_HEX}{{1,4}}){{7}}\b", "<ip>", lambda t: t.count(":") >= 7),
        (r"(?<![\w.])\d+(?:[.,:]\d+)+", "<num>", lambda t: "." in t or "," in t or ":" in t),
        (r"(?<![\w.])\d{4,}", "<num>", lambda t: len(t) >= 4),
    )
)
_DIGIT_TOKEN = re.compile(r"(?<![\w.:,/\[\]%-])[\w.:,/\[\]%-]*?\d[\w.:,/\[\]%-]*")
_TMP_PATH = re.compile(r"(?:/var/lib/docker/tmp|/var/tmp|/tmp)/\S*")


_MASKED: dict[str, str] = {}  # token -> masked token: ports, versions, addresses recur from log to log
_MASKED_MAX = 20_000


def _mask_token(match: re.Match) -> str:
    token = match.group()
    masked = _MASKED.get(token)
    if masked is not None:
        return masked
    masked = token
    if token.isascii() and token.isdigit():  # most tokens: a plain number (same result as the patterns)
        masked = "<num>" if len(token) >= 4 else token
    else:
        for pattern, replacement, worth_trying in _DIGIT_MASKS:
            if worth_trying(masked):
                masked = pattern.sub(replacement, masked)
    if len(token) <= 64:
        if len(_MASKED) >= _MASKED_MAX:
            _MASKED.clear()
        _MASKED[token] = masked
    return masked


MAX_FEATURE_CHARS = 1500
MAX_LINE_CHARS = 16_384


def _transcode(data: bytes) -> bytes:
    """Bytes in UTF-8: byte-order marks honoured, BOM-less UTF-16 sniffed."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            body = data[len(bom):]
            return body if encoding == "utf-8" else body.decode(encoding, "replace").encode("utf-8")
    head = data[:4096]
    if len(head) >= 8 and head.count(0) > len(head) // 4:
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if odd > len(head) // 3 and even < len(head) // 20:
            return data.decode("utf-16-le", "replace").encode("utf-8")
        if even > len(head) // 3 and odd < len(head) // 20:
            return data.decode("utf-16-be", "replace").encode("utf-8")
    return data


def normalize(data: bytes | str) -> bytes:
    """Raw log → UTF-8 bytes with `\\n` line ends and no NUL bytes or ANSI escapes.

    Never raises on content: invalid UTF-8 stays as bytes and is replaced when
    lines are decoded; line count is preserved so line numbers stay original.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    else:
        data = _transcode(bytes(data))
    if b"\x00" in data:
        data = data.replace(b"\x00", b"")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
        if b"\n" not in data:
            data = data.replace(b"\r", b"\n")  # classic Mac line ends
    if b"\x1b" in data:
        data = _ANSI.sub(b"", data)
    return data


class LineIndex:
    """Maps byte offsets to 1-based line numbers and back, without splitting the log."""

    def __init__(self, data: bytes):
        self.data = data
        self.newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        trailing = 1 if data and not data.endswith(b"\n") else 0
        self.count = len(self.newlines) + trailing

    def numbers(self, offsets) -> np.ndarray:
        """Line numbers of many byte offsets at once."""
        return np.searchsorted(self.newlines, np.asarray(offsets, dtype=np.int64), side="left") + 1

    def span(self, number: int) -> tuple[int, int]:
        start = int(self.newlines[number - 2]) + 1 if number > 1 else 0
        end = int(self.newlines[number - 1]) if number - 1 < len(self.newlines) else len(self.data)
        return start, end

    def width(self, number: int) -> int:
        """Length of a line in bytes."""
        start, end = self.span(number)
        return end - start

    def raw(self, number: int) -> str:
        start, end = self.span(number)
        return self.data[start:end].decode("utf-8", "replace")

    def raws(self, numbers: list[int]) -> list[str]:
        """`raw` of many sorted line numbers; each run of consecutive lines is decoded at once."""
        found: list[str] = []
        i = 0
        while i < len(numbers):
            j = i
            while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
                j += 1
            start, end = self.span(numbers[i])[0], self.span(numbers[j])[1]
            found.extend(self.data[start:end].decode("utf-8", "replace").split("\n"))
            i = j + 1
        return found


class Line(NamedTuple):
    """One selected log line: its original number, what a person sees, what rules and model read."""

    number: int
    display: str
    text: str


def resolve_carriage_returns(line: str) -> str:
    """What a terminal shows for a progress line rewritten with `\\r`: its last non-blank segment."""
    if "\r" not in line:
        return line
    for segment in reversed(line.split("\r")):
        if segment.strip():
            return segment
    return ""


def strip_prefix(display: str) -> str:
    """The message without the prefixes tools put in front of it."""
    match = _PREFIX.match(display)
    return display[match.end():] if match else display


def shorten(raw: str) -> str:
    """A line of absurd length keeps its start and its end: no real error message is that long."""
    if len(raw) <= MAX_LINE_CHARS:
        return raw
    half = MAX_LINE_CHARS // 2
    return f"{raw[:half]} … {raw[-half:]}"


def clean_lines(raw_lines: list[tuple[int, str]]) -> list[Line]:
    """Turn raw decoded lines into `Line`s (display keeps prefixes, text drops them), in one pass."""
    if not raw_lines:
        return []
    joined = "\n".join(resolve_carriage_returns(shorten(raw)) for _, raw in raw_lines)
    if "[" in joined:
        joined = _ANSI_REMNANT.sub("", joined)
    joined = _CONTROL.sub("", joined)
    displays = joined.split("\n")
    return [Line(number, display.rstrip(), strip_prefix(display).strip())
            for (number, _), display in zip(raw_lines, displays)]


def clean_line(number: int, raw: str) -> Line:
    """One raw line as a `Line`."""
    return clean_lines([(number, raw)])[0]


_MASKED_LINES: dict[str, str] = {}  # a line -> the line masked: lines recur from log to log
_MASKED_LINES_CHARS = 2_000_000     # characters kept, keys and values (a few MB)
_masked_lines_size = 0


def mask_lines(texts: list[str]) -> list[str]:
    """Replace volatile tokens (hashes, ids, IPs, numbers, temp paths) so features generalise.

    Lines are masked on their own (no pattern crosses a line), so a line seen recently is looked up;
    the others are masked together, in one pass.
    """
    global _masked_lines_size
    texts = [text[:MAX_FEATURE_CHARS] for text in texts]
    masked = [_MASKED_LINES.get(text) for text in texts]
    fresh = [position for position, line in enumerate(masked) if line is None]
    if not fresh:
        return masked
    joined = _DIGIT_TOKEN.sub(_mask_token, "\n".join(texts[position] for position in fresh))
    if "tmp/" in joined:
        joined = _TMP_PATH.sub("<tmp>", joined)
    for position, line in zip(fresh, joined.split("\n")):
        if _masked_lines_size >= _MASKED_LINES_CHARS:
            _MASKED_LINES.clear()
            _masked_lines_size = 0
        masked[position] = _MASKED_LINES[texts[position]] = line
        _masked_lines_size += len(line) + len(texts[position])
    return masked


def mask(text: str) -> str:
    """`mask_lines` for one line."""
    return mask_lines([text.replace("\n", " ")])[0]
