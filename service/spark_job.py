"""Classify logs on Spark: the rows of `logmedic batch`, from any path Spark reads, at cluster scale.

The driver reads the model bundle and the knowledge base (local paths, or any
Hadoop path: hdfs://, s3a://, ...), checks that they load, and broadcasts them as
bytes. Each Python worker writes them to a temporary directory once, loads one
`Diagnoser` and reuses it for every partition it runs (`mapPartitions`); rows are
built by `service.batch.row_for`, so they have the fields of `logmedic batch`.

Logs are read with Spark's `binaryFile` source (a row per file, with its
modification time): plain files, `.gz` files and `.tar`/`.tar.gz`/`.tgz`/`.zip`
archives (a row per member) give the same ids and rows as `logmedic batch` given
the same paths. With `--jsonl-field`, inputs are JSON Lines read with Spark's
`text` source (splittable, `.gz` decompressed by Spark); a record's id is its
`--id-field`, else FILE#<hash of the line> (Spark does not number lines).

Run locally:   python -m service.spark_job LOGS... -o OUT [--master local[2]]
On a cluster:  spark-submit [...] service/spark_job.py LOGS... -o OUT   (see the README, "Spark")
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import unquote

import click

from model.paths import knowledge_dir
from service.batch import encode_row, row_for
from service.inputs import LogInput, archive_inputs, file_input, is_archive, iso_timestamp, jsonl_record

FORMATS = ("jsonl", "parquet")
_engines: dict[str, object] = {}  # bundle digest -> Diagnoser, one per Python worker process


# -- the engine, shipped as bytes -------------------------------------------------------------------

def _has_scheme(path: str) -> bool:
    return "://" in path or path.startswith("file:")


def _read_directory(spark, path: str, pattern: str = "*") -> dict[str, bytes]:
    """name -> bytes of the files directly in a directory: a local one, or any Hadoop path (through Spark)."""
    if not _has_scheme(path):
        directory = Path(path)
        return {p.name: p.read_bytes() for p in sorted(directory.glob(pattern)) if p.is_file()}
    found = spark.sparkContext.binaryFiles(path.rstrip("/") + "/" + pattern).collect()
    return {unquote(name.rsplit("/", 1)[-1]): bytes(data) for name, data in sorted(found)}


def engine_files(spark, data_dir: str, model_dir: str) -> dict[str, bytes]:
    """What an executor needs to load the engine: knowledge/*.yaml and the bundle's files, by relative name."""
    knowledge = _read_directory(spark, str(knowledge_dir(data_dir)) if not _has_scheme(data_dir)
                                else data_dir.rstrip("/") + "/knowledge", "*.yaml")
    bundle = _read_directory(spark, model_dir)
    if not knowledge:
        raise click.ClickException(f"no knowledge base (*.yaml) in {data_dir}/knowledge")
    if not bundle:
        raise click.ClickException(f"no model bundle in {model_dir}: run `logmedic train`")
    return {**{f"data/knowledge/{n}": b for n, b in knowledge.items()}, **{f"model/{n}": b for n, b in bundle.items()}}


def files_digest(files: dict[str, bytes]) -> str:
    """A digest naming one engine's files (the cache key in each worker)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def engine_for(digest: str, files: dict[str, bytes]):
    """The engine for these files, loaded once per process (files written to a temp dir, read, removed)."""
    from model.diagnose import Diagnoser

    if digest not in _engines:
        directory = Path(tempfile.mkdtemp(prefix="logmedic-engine-"))
        try:
            for name, data in files.items():
                target = directory / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            # The training samples stay home: staleness is checked on the driver, where they are.
            _engines[digest] = Diagnoser.load(directory / "data", directory / "model", check_stale=False)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return _engines[digest]


# -- records to rows -------------------------------------------------------------------------------

def local_id(uri: str) -> str:
    """A file's id as `logmedic batch` names it: a local path without `file:`; other URIs kept whole."""
    path = unquote(uri)
    if path.startswith("file://"):
        return path[len("file://"):]
    if path.startswith("file:"):
        return path[len("file:"):]
    return path


def file_logs(path: str, mtime: int | None, content: bytes) -> Iterator[LogInput]:
    """The logs of one file read by Spark: its members when it is an archive, else itself."""
    ident = local_id(path)
    if is_archive(ident):
        yield from archive_inputs(io.BytesIO(content), ident)
    else:
        yield file_input(ident, ident, content, iso_timestamp(mtime))


def jsonl_logs(value: str, file: str, field: str, id_field: str | None, time_field: str | None) -> LogInput:
    """One JSONL line read by Spark as a log (the id falls back to FILE#<hash of the line>)."""
    source = local_id(file)
    fallback = f"{source}#{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"
    return jsonl_record(value, source, field, id_field, time_field, fallback_id=fallback)


def classify_partition(records: Iterable, engine, lang: str, jsonl: dict | None) -> Iterator[dict]:
    """mapPartitions body: one engine for the partition, one row per log."""
    digest, files = engine
    diagnoser = engine_for(digest, files.value)
    for record in records:
        if jsonl is not None:
            logs = [jsonl_logs(record["value"], record["file"], **jsonl)] if record["value"].strip() else []
        else:
            logs = file_logs(record["path"], record["mtime"], bytes(record["content"]))
        for item in logs:
            yield row_for(diagnoser, item, lang)


# -- the Parquet schema, from the same pydantic models as the JSON rows ------------------------------------

def spark_schema():
    """The Spark schema of a row: id, path, timestamp, every Diagnosis field (nullable), error."""
    from pyspark.sql import types as T

    from model.diagnosis import Diagnosis

    schema = Diagnosis.model_json_schema()
    defs = schema.get("$defs", {})

    def convert(node: dict):
        if "$ref" in node:
            return convert(defs[node["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in node:
            return convert(next(n for n in node["anyOf"] if n.get("type") != "null"))
        kind = node.get("type")
        if kind == "array":
            return T.ArrayType(convert(node["items"]), True)
        if kind == "object" or "properties" in node:
            return T.StructType([T.StructField(k, convert(v), True) for k, v in node["properties"].items()])
        return {"string": T.StringType(), "integer": T.LongType(), "number": T.DoubleType(),
                "boolean": T.BooleanType()}.get(kind, T.StringType())

    head = [T.StructField(name, T.StringType(), True) for name in ("id", "path", "timestamp")]
    body = [T.StructField(k, convert(v), True) for k, v in schema["properties"].items()]
    return T.StructType(head + body + [T.StructField("error", T.StringType(), True)])


# -- the job ---------------------------------------------------------------------------------------

def run(spark, inputs: list[str], output: str, fmt: str = "jsonl", data_dir: str | None = None,
        model_dir: str | None = None, lang: str = "en", jsonl_field: str | None = None, id_field: str | None = None,
        time_field: str | None = None, overwrite: bool = False, partitions: int | None = None,
        compression: str | None = None) -> None:
    """Read `inputs`, classify every log, write the rows to `output` (a directory of part files)."""
    from pyspark.sql import functions as F

    from service.settings import load_settings

    settings = load_settings({})
    data_dir, model_dir = data_dir or str(settings.data_dir), model_dir or str(settings.model_dir)
    files = engine_files(spark, data_dir, model_dir)
    # A missing, foreign or stale engine fails here, on the driver, with the engine's own message.
    if not _has_scheme(data_dir) and not _has_scheme(model_dir):
        _check_on_driver(data_dir, model_dir, settings.check_stale)  # the samples are here: staleness too
    else:
        _check_files(files)
    engine = (files_digest(files), spark.sparkContext.broadcast(files))

    if jsonl_field:
        frame = spark.read.text(inputs).select("value", F.input_file_name().alias("file"))
        jsonl = {"field": jsonl_field, "id_field": id_field, "time_field": time_field}
    else:
        frame = (spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(inputs)
                 .select("path", F.unix_seconds("modificationTime").alias("mtime"), "content"))
        jsonl = None
    records = frame.rdd if partitions is None else frame.rdd.repartition(partitions)
    rows = records.mapPartitions(lambda part: classify_partition(part, engine, lang, jsonl))

    mode = "overwrite" if overwrite else "errorifexists"
    if fmt == "parquet":
        writer = spark.createDataFrame(rows, spark_schema()).write.mode(mode)
        writer = writer.option("compression", compression) if compression else writer
        writer.parquet(output)
    else:
        lines = rows.map(lambda row: (encode_row(row, "jsonl").decode("utf-8").rstrip("\n"),))
        writer = spark.createDataFrame(lines, "value string").write.mode(mode)
        writer = writer.option("compression", compression) if compression else writer
        writer.text(output)


def _check_on_driver(data_dir: str, model_dir: str, check_stale: bool) -> None:
    from model.diagnose import Diagnoser
    from model.errors import ModelError

    try:
        Diagnoser.load(Path(data_dir), Path(model_dir), check_stale)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None


def _check_files(files: dict[str, bytes]) -> None:
    from model.errors import ModelError

    try:
        engine_for(files_digest(files), files)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("inputs", nargs=-1, required=True)
@click.option("--output", "-o", required=True, help="Output directory (any path Spark writes: local, hdfs://, s3a://).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
              help="jsonl: the lines of `logmedic batch`; parquet: the same fields, nested.")
@click.option("--data-dir", default=None, help="Knowledge base directory (holds knowledge/) [env LOGMEDIC_DATA_DIR].")
@click.option("--model-dir", default=None, help="Model bundle directory [env LOGMEDIC_MODEL_DIR].")
@click.option("--jsonl-field", default=None, help="Read the inputs as JSON Lines; the field that holds the log.")
@click.option("--id-field", default=None, help="With --jsonl-field: the field used as row id.")
@click.option("--time-field", default=None, help="With --jsonl-field: the field holding the log's time.")
@click.option("--lang", type=click.Choice(["en", "ko"]), default="en", show_default=True)
@click.option("--partitions", type=click.IntRange(1), default=None,
              help="Repartition the logs into N partitions (default: as Spark reads them).")
@click.option("--compression", default=None, help="Output codec, e.g. gzip (JSONL) or zstd (Parquet).")
@click.option("--overwrite", is_flag=True, help="Replace the output directory if it exists.")
@click.option("--master", default=None, help="Spark master when not run by spark-submit, e.g. local[2].")
def main(inputs, output, fmt, data_dir, model_dir, jsonl_field, id_field, time_field, lang, partitions,
         compression, overwrite, master) -> None:
    """Classify INPUTS (files, directories, globs; local, hdfs://, s3a://) with logmedic on Spark.

    Writes one row per log with the fields of `logmedic batch` (id, path, timestamp,
    the diagnosis, error) to OUTPUT, as JSON Lines or Parquet part files. Rows are not
    in input order. Exit codes: 0 done, 1 the engine or Spark failed, 2 usage errors.
    """
    if (id_field or time_field) and not jsonl_field:
        raise click.UsageError("--id-field and --time-field need --jsonl-field")
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise click.ClickException("pyspark is not installed: pip install 'logmedic[spark]'") from None
    builder = SparkSession.builder.appName("logmedic")
    if master:  # otherwise spark-submit's --master, or local[*] when run with plain python
        builder = builder.master(master)
    spark = builder.getOrCreate()
    try:
        run(spark, list(inputs), output, fmt, data_dir, model_dir, lang, jsonl_field, id_field, time_field,
            overwrite, partitions, compression)
    finally:
        spark.stop()
    click.echo(json.dumps({"output": output, "format": fmt}), err=False)


if __name__ == "__main__":
    sys.exit(main())
