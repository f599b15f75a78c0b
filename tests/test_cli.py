"""The `logmedic` command, end to end in a subprocess."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LOGMEDIC = str(Path(sys.executable).parent / "logmedic")
POSTGRES = ("Error: Database is uninitialized and superuser password is not specified.\n"
            "       You must specify POSTGRES_PASSWORD to a non-empty value for the\n"
            "       superuser. For example, \"-e POSTGRES_PASSWORD=password\" on \"docker run\".\n")
EOL = ("E: The repository 'http://archive.ubuntu.com/ubuntu mantic Release' does not have a Release file.\n")
REQUIRED = {"path", "category", "confidence", "decided_by", "transient", "title", "explanation", "remediation",
            "evidence", "alternatives", "model_version"}


@pytest.fixture
def run(model_dir):
    def run(*args, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        environment = {**os.environ, "LOGMEDIC_MODEL_DIR": str(model_dir), **(env or {})}
        return subprocess.run([LOGMEDIC, *args], input=stdin, capture_output=True, env=environment, timeout=300)
    return run


@pytest.fixture
def logs(tmp_path) -> Path:
    (tmp_path / "postgres.log").write_text(POSTGRES)
    (tmp_path / "eol.log.gz").write_bytes(gzip.compress(EOL.encode()))
    (tmp_path / "ok.log").write_text("Successfully built 0a1b2c3d4e5f\nSuccessfully tagged web:latest\n")
    return tmp_path


def test_classify_text_is_for_people(run, logs):
    result = run("classify", str(logs / "postgres.log"))
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "postgres-superuser-password" in out and "POSTGRES_PASSWORD" in out
    for heading in ("Why", "Fix", "Evidence"):
        assert heading in out


def test_classify_json_is_one_object_per_input_per_line(run, logs):
    result = run("classify", "--format", "json", str(logs / "postgres.log"), str(logs / "eol.log.gz"), str(logs / "ok.log"))
    assert result.returncode == 0
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["category"] for r in rows] == ["postgres-superuser-password", "apt-release-eol", "unknown"]
    assert all(REQUIRED <= set(r) for r in rows)
    assert rows[0]["remediation"][0].keys() >= {"command", "description", "destructive"}
    assert rows[0]["evidence"][0].keys() == {"line", "text"}
    assert "POSTGRES_PASSWORD=[REDACTED]" in json.dumps(rows[0]["evidence"])


def test_classify_markdown_in_korean_from_stdin(run):
    result = run("classify", "--format", "markdown", "--lang", "ko", "-", stdin=POSTGRES.encode())
    out = result.stdout.decode()
    assert result.returncode == 0
    assert out.startswith("### logmedic:") and "```sh" in out and "해결 방법" in out


def test_when_input_unreadable_then_exit_2_and_others_still_classified(run, logs):
    result = run("classify", "--format", "json", str(logs / "missing.log"), str(logs / "postgres.log"))
    assert result.returncode == 2
    assert b"missing.log" in result.stderr
    assert json.loads(result.stdout)["category"] == "postgres-superuser-password"


def test_when_no_model_then_exit_1_with_what_to_run(run, logs, tmp_path):
    result = run("classify", str(logs / "ok.log"), env={"LOGMEDIC_MODEL_DIR": str(tmp_path / "none")})
    assert result.returncode == 1
    assert b"logmedic train" in result.stderr and b"Traceback" not in result.stderr


def test_when_bad_option_then_exit_2(run):
    assert run("classify", "--format", "xml").returncode == 2


def test_batch_survives_a_bad_file(run, logs, tmp_path):
    (logs / "broken.log.gz").write_bytes(b"this is not gzip")
    output = tmp_path / "out.jsonl"
    result = run("batch", str(logs), "--output", str(output))
    assert result.returncode == 0
    rows = {Path(r["id"]).name: r for r in map(json.loads, output.read_text().splitlines())}
    assert set(rows) == {"postgres.log", "eol.log.gz", "ok.log", "broken.log.gz"}
    assert rows["broken.log.gz"]["error"] and rows["broken.log.gz"]["category"] is None
    assert rows["eol.log.gz"]["category"] == "apt-release-eol"
    assert REQUIRED <= set(rows["postgres.log"])
    summary = result.stderr.decode()
    assert "1 errors" in summary and "postgres-superuser-password" in summary


def test_eval_prints_scores_and_misses(run, tmp_path):
    for category, text in (("postgres-superuser-password", POSTGRES), ("apt-release-eol", EOL),
                           ("unknown", "Successfully built 1a2b\n")):
        (tmp_path / "set" / category).mkdir(parents=True)
        (tmp_path / "set" / category / "a.log").write_text(text)
    (tmp_path / "set" / "unknown" / "b.log").write_text(POSTGRES)  # deliberately mislabelled
    result = run("eval", str(tmp_path / "set"))
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "macro-F1" in out and "unknown logs given a category: 50.00%" in out
    assert "b.log: expected unknown, got postgres-superuser-password" in out
    assert run("eval", str(tmp_path / "set"), "--fail-under", "0.99").returncode == 1


def test_categories_in_both_languages(run):
    english, korean = run("categories").stdout.decode(), run("categories", "--lang", "ko").stdout.decode()
    assert english.count("\n") == 22 and "no-space-left" in english
    assert "디바이스" in korean


def test_train_if_needed_leaves_a_current_model_alone(run):
    result = run("train", "--if-needed")
    assert result.returncode == 0 and b"up to date" in result.stderr


@pytest.mark.parametrize("command", ["train", "classify", "batch", "eval", "categories", "check", "serve"])
def test_every_command_has_help(run, command):
    result = run(command, "--help")
    assert result.returncode == 0 and len(result.stdout) > 200
