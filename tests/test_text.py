"""Preprocessing: decoding never fails, noise is removed, line numbers stay original."""

from __future__ import annotations

import codecs

import pytest

from model.text import LineIndex, clean_line, mask, normalize, strip_prefix


def lines_of(data) -> list[str]:
    normalized = normalize(data)
    index = LineIndex(normalized)
    return [clean_line(n, index.raw(n)).text for n in range(1, index.count + 1)]


@pytest.mark.parametrize("raw, expected", [
    # ANSI colours from the legacy builder (stderr in red) and BuildKit
    (b"\x1b[91mE: Unable to fetch\x1b[0m\n", ["E: Unable to fetch"]),
    (b"\x1b[1;31mERROR\x1b[0m: failed to solve\n", ["ERROR: failed to solve"]),
    # OSC hyperlink escape around a word
    (b"see \x1b]8;;https://x.y\x07docs\x1b]8;;\x07 now\n", ["see docs now"]),
    # colour codes whose ESC byte was lost in a copy-paste
    (b"13:43:23 [91mW: GPG error: bad\n", ["W: GPG error: bad"]),
    # CRLF line ends
    (b"one\r\ntwo\r\n", ["one", "two"]),
    # a progress line rewritten with carriage returns shows its last state
    (b"Downloading 10%\rDownloading 55%\rDownloading 100%\nnext\n", ["Downloading 100%", "next"]),
    # NUL bytes are dropped
    (b"no\x00 space\n", ["no space"]),
    # invalid UTF-8 is replaced, never an exception
    (b"bad \xff\xfe byte\n", ["bad \ufffd\ufffd byte"]),
])
def test_when_noise_in_bytes_then_clean_lines(raw, expected):
    assert lines_of(raw) == expected


def test_when_utf16_with_bom_then_decoded():
    data = codecs.BOM_UTF16_LE + "E: The repository is not signed.\n두 번째 줄\n".encode("utf-16-le")
    assert lines_of(data) == ["E: The repository is not signed.", "두 번째 줄"]


def test_when_utf16_without_bom_then_sniffed():
    data = "Cannot connect to the Docker daemon\nsecond line\n".encode("utf-16-le")
    assert lines_of(data)[0] == "Cannot connect to the Docker daemon"


def test_when_utf8_bom_then_dropped():
    assert lines_of(codecs.BOM_UTF8 + b"hello\n") == ["hello"]


def test_when_str_with_lone_surrogate_then_no_error():
    assert lines_of("a\ud800b\n") == ["a?b"]


def test_when_classic_mac_line_ends_then_split():
    assert lines_of(b"one\rtwo\rthree") == ["one", "two", "three"]


def test_when_five_megabyte_single_line_then_one_line():
    data = b"x" * (5 * 1024 * 1024)
    index = LineIndex(normalize(data))
    assert index.count == 1
    assert len(index.raw(1)) == 5 * 1024 * 1024


def test_line_numbers_are_original():
    index = LineIndex(normalize(b"a\n\x1b[31mb\x1b[0m\r\nc\rd\n\n\ne"))
    assert index.count == 6
    assert [index.raw(n) for n in (1, 2, 3, 6)] == ["a", "b", "c\rd", "e"]
    assert index.numbers([0, 2, 4, 11]).tolist() == [1, 2, 3, 6]


@pytest.mark.parametrize("line, message", [
    ("2024-01-11T06:23:58.1234567Z ##[error]Process completed with exit code 1.", "Process completed with exit code 1."),
    ("[2024-07-06T21:17:20.497Z] to_added_stage", "to_added_stage"),
    ("2024-01-11 15:23:58 2024-01-11 06:23:58.586 UTC [26] PANIC:  could not write", "[26] PANIC:  could not write"),
    ("13:43:22   At least one invalid signature was encountered.", "At least one invalid signature was encountered."),
    ("#7 0.858 Get:1 http://ports.ubuntu.com/ubuntu-ports jammy InRelease", "Get:1 http://ports.ubuntu.com/ubuntu-ports jammy InRelease"),
    ("#7 ERROR: process did not complete", "ERROR: process did not complete"),
    ("3.594 E: The repository 'x' is not signed.", "E: The repository 'x' is not signed."),
    ("db-1  | Error: Database is uninitialized", "Error: Database is uninitialized"),
    ("db_1   | Error: Database is uninitialized", "Error: Database is uninitialized"),
    ("gromox-core-1     | Failed to create /init.scope control group", "Failed to create /init.scope control group"),
    ("2024-12-22 23:46:16 postgres-1  |        You must specify", "You must specify"),
    ("remote: W: Failed to fetch", "W: Failed to fetch"),
    ("[49](https://gitlab.example/jobs/14#L49)$ pip install markdown", "$ pip install markdown"),
    ("Jan 11 06:23:58 host dockerd[812]: time=\"x\" level=error", "time=\"x\" level=error"),
    ("[Container] 2024/01/11 06:23:58.123456 Running command", "Running command"),
    # not prefixes: a shell pipe and plain prose stay as they are
    ("cat build.log | grep error", "cat build.log | grep error"),
    ("Step 3/9 : RUN apt-get update", "Step 3/9 : RUN apt-get update"),
])
def test_when_tool_prefix_then_stripped(line, message):
    assert strip_prefix(line) == message


@pytest.mark.parametrize("text, expected", [
    ("Digest: sha256:37926e7ba5138271a9e1e1902c520e03bce104c057741a7f82f35a4ff364d8c2", "Digest: <digest>"),
    ("container 3f1c2b9d4e5a6b7c8d9e0f1a2b3c4d5e in use", "container <hex> in use"),
    ("404  Not Found [IP: 185.125.190.36 80]", "404  Not Found [IP: <ip> 80]"),
    ("dial tcp 199.96.61.1:443: connect: connection timed out", "dial tcp <ip>: connect: connection timed out"),
    ("ref 25309008-d3b6-4795-9b53-5704e2dd5a06::x", "ref <uuid>::x"),
    ("write /tmp/pip-build-x1y2/setup.py: failed", "write <tmp> failed"),
    ("Loading layer 66.76MB/66.76MB at 2024", "Loading layer <num>MB/<num>MB at <num>"),
    # short integers carry meaning (exit codes, HTTP statuses, errno) and are kept
    ("exit code: 137 after 429 and Errno 28", "exit code: 137 after 429 and Errno 28"),
])
def test_when_volatile_tokens_then_masked(text, expected):
    assert mask(text) == expected


def test_masking_a_line_seen_before_gives_the_same_and_the_cache_stays_bounded(monkeypatch):
    from model import text

    monkeypatch.setattr(text, "_MASKED_LINES", {})
    monkeypatch.setattr(text, "_masked_lines_size", 0)
    monkeypatch.setattr(text, "_MASKED_LINES_CHARS", 2_000)
    lines = [f"pull 10.0.{n % 7}.3:5000/app@sha256:{n:064x} took {n * 37} ms" for n in range(300)]
    first = text.mask_lines(lines)
    assert first[1] == "pull <ip>/app@<digest> took 37 ms" and first[299] == "pull <ip>/app@<digest> took <num> ms"
    assert text.mask_lines(lines[::-1]) == first[::-1]
    assert [text.mask(line) for line in lines[:20]] == first[:20]
    assert text._masked_lines_size == sum(len(k) + len(v) for k, v in text._MASKED_LINES.items())
    assert text._masked_lines_size < 2_000 + 2 * max(map(len, lines))
