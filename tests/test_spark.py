"""The Spark job in local[2] gives the rows `logmedic batch` gives on the same inputs, row for row.

One local Spark session (a JVM, two cores) serves the module; the job runs through
`service.spark_job.run`, the function its command line calls after making the session.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from model import paths

pytest.importorskip("pyspark", reason="pyspark is in the dev extras")
pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs a Java runtime (.ci/run installs one)")

LOGMEDIC = str(Path(sys.executable).parent / "logmedic")
SAMPLES = paths.samples_dir(paths.DATA_DIR)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable  # workers use this venv
    session = (SparkSession.builder.master("local[2]").appName("logmedic-test")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.memory", "1g").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_600_000_000
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Two samples per category in nested folders, a .gz, a .tar.gz and a .zip, a damaged .gz, a name with a space."""
    root = tmp_path_factory.mktemp("spark") / "logs"
    for folder in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.log"))[:2]:
            (root / folder.name).mkdir(parents=True, exist_ok=True)
            (root / folder.name / path.name).write_bytes(path.read_bytes())
    first = {p.parent.name: p.read_bytes() for p in sorted(SAMPLES.glob("*/*.log"))}
    (root / "packed").mkdir()
    (root / "packed" / "disk.log.gz").write_bytes(gzip.compress(first["no-space-left"]))
    (root / "packed" / "ci-export.tar.gz").write_bytes(_tar({"job1/build.log": first["oom-killed"],
                                                             "job2/build.log.gz": gzip.compress(first["image-not-found"])}))
    with zipfile.ZipFile(root / "packed" / "artifacts.zip", "w") as archive:
        archive.writestr("a/run.log", first["registry-rate-limit"])
    (root / "packed" / "damaged.log.gz").write_bytes(b"not gzip")
    (root / "packed" / "with space.log").write_bytes(first["build-dns-failure"])
    return root


@pytest.fixture(scope="module")
def batch_rows(model_dir, inputs) -> dict[str, dict]:
    """What `logmedic batch` writes for the same directory, by id."""
    output = inputs.parent / "batch.jsonl"
    subprocess.run([LOGMEDIC, "--model-dir", str(model_dir), "batch", "--quiet", str(inputs), "-o", str(output)],
                   check=True, capture_output=True, timeout=600)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    return {row["id"]: row for row in rows}


def spark_lines(directory: Path) -> list[dict]:
    return [json.loads(line) for part in sorted(directory.glob("part-*")) for line in part.read_text().splitlines()]


def test_spark_jsonl_rows_equal_batch_rows(spark, model_dir, inputs, batch_rows):
    from service.spark_job import run

    output = inputs.parent / "spark-jsonl"
    run(spark, [str(inputs)], str(output), "jsonl", model_dir=str(model_dir), partitions=4)

    rows = spark_lines(output)
    assert len(rows) == len({r["id"] for r in rows}) == len(batch_rows) > 40
    assert {r["id"]: r for r in rows} == batch_rows  # every field: category, evidence, timestamp, error...
    by_id = {r["id"]: r for r in rows}
    assert by_id[f"{inputs}/packed/ci-export.tar.gz!job2/build.log.gz"]["category"] == "image-not-found"
    assert by_id[f"{inputs}/packed/with space.log"]["category"] == "build-dns-failure"
    assert by_id[f"{inputs}/packed/damaged.log.gz"]["error"].startswith("cannot read")


def test_spark_parquet_has_the_same_fields_and_values(spark, model_dir, inputs, batch_rows):
    from service.spark_job import run

    output = inputs.parent / "spark-parquet"
    run(spark, [str(inputs)], str(output), "parquet", model_dir=str(model_dir))

    table = spark.read.parquet(str(output))
    columns = table.columns
    rows = [r.asDict(recursive=True) for r in table.collect()]
    assert len(rows) == len(batch_rows)
    for row in rows:
        expected = batch_rows[row["id"]]
        assert list(expected) == [c for c in columns if c in expected]  # the same field order
        assert {k: v for k, v in row.items() if k in expected} == expected
        assert all(row[k] is None for k in columns if k not in expected)  # error rows: no diagnosis


def test_spark_jsonl_records_match_batch(spark, model_dir, tmp_path):
    from service.spark_job import run

    records = []
    for number, path in enumerate(sorted(SAMPLES.glob("*/*.log"))[::40]):
        records.append({"job": f"job-{number}", "log": path.read_text(errors="replace"), "at": 1_700_000_000 + number})
    records.append({"job": "no-log-field", "message": "x"})
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    subprocess.run([LOGMEDIC, "--model-dir", str(model_dir), "batch", "--quiet", str(tmp_path / "in"),
                    "--jsonl-field", "log", "--id-field", "job", "--time-field", "at", "-o", str(tmp_path / "b.jsonl")],
                   check=True, capture_output=True, timeout=600)

    run(spark, [str(tmp_path / "in")], str(tmp_path / "out"), model_dir=str(model_dir), jsonl_field="log",
        id_field="job", time_field="at")

    # The same rows but `path`: batch says FILE:LINE, Spark (which does not number lines) says FILE.
    expected = {r["id"]: {**r, "path": str(tmp_path / "in" / "runs.jsonl")}
                for r in map(json.loads, (tmp_path / "b.jsonl").read_text().splitlines())}
    assert {r["id"]: r for r in spark_lines(tmp_path / "out")} == expected
    assert len(expected) == len(records) and expected["no-log-field"]["error"]


def test_spark_job_command_line_help_and_usage_errors():
    help_text = subprocess.run([sys.executable, "-m", "service.spark_job", "--help"], capture_output=True, timeout=120)
    assert help_text.returncode == 0 and b"--jsonl-field" in help_text.stdout and b"parquet" in help_text.stdout
    usage = subprocess.run([sys.executable, "-m", "service.spark_job", "x", "-o", "y", "--id-field", "id"],
                           capture_output=True, timeout=120)
    assert usage.returncode == 2 and b"--id-field and --time-field need --jsonl-field" in usage.stderr
