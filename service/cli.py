"""The `logmedic` command line.

JSON goes to stdout, progress and diagnostics to stderr.

\b
Exit codes:
  0  success (an `unknown` answer is a success)
  1  the engine cannot run: no trained model, a stale or foreign one, or a broken
     knowledge base (the message says what to run); `eval --fail-under` not met
  2  usage or input errors (bad option, unreadable or empty input)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from model.errors import ModelError
from service.settings import SettingsError, load_settings

EXIT_ENGINE = 1
EXIT_INPUT = 2


class Context:
    """What every command shares: settings, and the engine loaded on first use."""

    def __init__(self, overrides: dict):
        try:
            self.settings = load_settings(overrides)
        except SettingsError as exc:
            raise click.UsageError(str(exc)) from None
        self._diagnoser = None

    @property
    def diagnoser(self):
        if self._diagnoser is None:
            from model.diagnose import Diagnoser

            try:
                self._diagnoser = Diagnoser.load(self.settings.data_dir, self.settings.model_dir,
                                                 self.settings.check_stale)
            except ModelError as exc:
                fail(str(exc), EXIT_ENGINE)
        return self._diagnoser


def fail(message: str, code: int) -> None:
    click.echo(f"logmedic: {message}", err=True)
    sys.exit(code)


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, help=__doc__)
@click.version_option(package_name="logmedic")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Knowledge base and samples [env LOGMEDIC_DATA_DIR; default: training_data/].")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Model bundle [env LOGMEDIC_MODEL_DIR; default: build/model/].")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, model_dir: Path | None) -> None:
    overrides = {k: v for k, v in {"data_dir": data_dir, "model_dir": model_dir}.items() if v is not None}
    ctx.obj = Context(overrides)


@main.command()
@click.option("--seed", default=0, show_default=True, help="Random seed of the folds and the classifier.")
@click.option("--if-needed", is_flag=True, help="Only train when the bundle is missing, stale or unloadable.")
@pass_context
def train(context: Context, seed: int, if_needed: bool) -> None:
    """Train the model on training_data/ and write the bundle.

    Prints cross-validated precision and recall per category: overrides plus
    model as users get them, and the model alone.
    """
    from model.bundle import read_manifest
    from model.samples import tree_hash
    from model.training import train as run_training

    settings = context.settings
    if if_needed:
        try:
            current = read_manifest(settings.model_dir).get("training_data_hash") == tree_hash(settings.data_dir)
        except ModelError:
            current = False
        if current:
            click.echo(f"model in {settings.model_dir} is up to date", err=True)
            return
    click.echo(f"training on {settings.data_dir} ...", err=True)
    try:
        report = run_training(settings.data_dir, settings.model_dir, seed=seed)
    except ModelError as exc:
        fail(str(exc), EXIT_ENGINE)
    click.echo(f"{'category':32} {'prec':>6} {'recall':>6} {'f1':>6} {'n':>5}   model alone: prec recall")
    for category, m in report.metrics.items():
        alone = report.model_only.get(category, {})
        click.echo(f"{category:32} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} {m['support']:5d}"
                   f"   {alone.get('precision', 0):6.3f} {alone.get('recall', 0):6.3f}")
    click.echo(f"samples: {report.samples}  threshold: {report.threshold:.2f}  "
               f"unknown samples given a category (cross-validated): {report.unknown_given_category:.2%}")
    click.echo(f"model bundle written to {settings.model_dir}")


def _inputs(paths: tuple[str, ...], **jsonl):
    from service.inputs import list_inputs, read_inputs

    items = list_inputs(list(paths) or ["-"])
    if not items:
        fail("no input files found", EXIT_INPUT)
    return items, read_inputs(items, **jsonl)


@main.command()
@click.argument("paths", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="text for people, json (one object per input per line), markdown for CI summaries and chat.")
@click.option("--lang", type=click.Choice(["en", "ko"]), default=None, help="Language of the answer [default: en].")
@pass_context
def classify(context: Context, paths: tuple[str, ...], fmt: str, lang: str | None) -> None:
    """Diagnose logs: PATH... (files, directories, .gz) or - for stdin (the default)."""
    from service import render

    lang = lang or context.settings.default_lang
    _, items = _inputs(paths)
    code = 0
    color = fmt == "text" and sys.stdout.isatty()
    for item in items:
        if item.error:
            click.echo(f"logmedic: {item.id}: {item.error}", err=True)
            code = EXIT_INPUT
            continue
        diagnosis = context.diagnoser.diagnose(item.data, lang)
        path = None if item.id == "-" else item.id
        if fmt == "json":
            click.echo(json.dumps({"path": path, **diagnosis.model_dump(mode="json")}, ensure_ascii=False))
        elif fmt == "markdown":
            click.echo(render.markdown(diagnosis, path))
        else:
            click.echo(render.text(diagnosis, path, color=color))
    sys.exit(code)


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where rows go [default: stdout].")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (one per core is the useful most).")
@click.option("--resume", is_flag=True, help="Keep the rows already in --output, classify only the inputs missing.")
@click.option("--jsonl-field", default=None, help="Read .jsonl/.ndjson/.json(.gz) inputs: the field that holds the log.")
@click.option("--id-field", default=None, help="With --jsonl-field: the field used as row id [default: FILE:LINE].")
@click.option("--time-field", default=None,
              help="With --jsonl-field: the field holding the log's time (ISO 8601 or epoch s/ms).")
@click.option("--lang", type=click.Choice(["en", "ko"]), default="en", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@pass_context
def batch(context: Context, paths, output, fmt, jobs, resume, jsonl_field, id_field, time_field, lang, quiet) -> None:
    """Classify many logs: one row per log, the fields of `classify --format json` plus id, path, timestamp, error.

    PATH may be a file, a directory (recursive, hidden files skipped), a glob, a .gz file,
    a .tar/.tar.gz/.tgz/.zip archive (one row per member), a JSONL file (with --jsonl-field)
    or - for stdin. Rows come in input order. An unreadable input becomes a row with an
    `error` and the batch goes on (error rows do not change the exit code). A file's
    timestamp is its modification time. After an interruption, rerun the same command
    with --resume: inputs whose id is in the output are skipped, the rest appended.
    """
    import itertools
    import time

    from tqdm import tqdm

    from service.batch import BatchError, done_ids, run_batch
    from service.inputs import iter_inputs, read_inputs

    if resume and output is None:
        raise click.UsageError("--resume needs --output")
    if (id_field or time_field) and not jsonl_field:
        raise click.UsageError("--id-field and --time-field need --jsonl-field")
    listed = iter_inputs(list(paths))
    first = next(listed, None)
    if first is None:
        fail("no input files found", EXIT_INPUT)
    done = done_ids(output, fmt) if resume else set()
    if done and not quiet:
        click.echo(f"resuming: {len(done)} rows already in {output}", err=True)
    items = read_inputs(itertools.chain([first], listed), jsonl_field, id_field, time_field, skip=done, lazy=True)
    diagnoser = context.diagnoser
    settings = context.settings
    bar = tqdm(unit="log", file=sys.stderr, disable=quiet, dynamic_ncols=True, smoothing=0.1)
    started = time.monotonic()
    try:
        result = run_batch(items, diagnoser, output, fmt, jobs, append=resume, lang=lang,
                           loader_args=(str(settings.data_dir), str(settings.model_dir), settings.check_stale),
                           progress=lambda category, error: bar.update(1))
    except BatchError as exc:
        fail(f"{exc}; the rows written are kept: rerun with --resume to continue", EXIT_ENGINE)
    except KeyboardInterrupt:
        fail("interrupted; the rows written are kept: rerun with --resume to continue", 130)
    finally:
        bar.close()
    if not quiet:
        seconds = time.monotonic() - started
        click.echo(f"{result.written} written in {seconds:.1f} s ({result.written / max(seconds, 1e-9):.1f} logs/s), "
                   f"{result.skipped} skipped (already done), {result.errors} errors", err=True)
        for category, count in result.categories.most_common():
            click.echo(f"  {count:8d}  {category}", err=True)


@main.command(name="eval")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--noise", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Bury every log in lines taken from the *.log files of this directory.")
@click.option("--noise-lines", default=1500, show_default=True, help="Lines of noise around each log.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--fail-under", type=float, default=None, help="Exit 1 when macro-F1 is below this.")
@pass_context
def evaluate(context: Context, directory: Path, noise, noise_lines, as_json, fail_under) -> None:
    """Score the engine on DIRECTORY/<category-id>/*.log.

    Prints precision, recall and F1 per category, macro-F1, the share of
    `unknown` logs given a category, and every misclassified file.
    """
    from dataclasses import asdict

    from model.errors import SampleError
    from model.evaluate import evaluate as run_eval, load_noise

    noise_data = load_noise(noise) if noise else None
    try:
        report = run_eval(context.diagnoser, directory, noise_data, noise_lines)
    except SampleError as exc:
        fail(str(exc), EXIT_INPUT)
    if as_json:
        click.echo(json.dumps(asdict(report), indent=2))
    else:
        click.echo(f"{'category':32} {'prec':>6} {'recall':>6} {'f1':>6} {'n':>4}")
        for category, m in report.metrics.items():
            click.echo(f"{category:32} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} {m['support']:4d}")
        click.echo(f"\nlogs: {report.total}{f'  (each buried in {noise_lines} lines of noise)' if noise else ''}")
        click.echo(f"macro-F1 (all labels): {report.macro_f1:.4f}")
        click.echo(f"macro-F1 (categories, without unknown): {report.macro_f1_categories:.4f}")
        click.echo(f"unknown logs given a category: {report.unknown_given_category:.2%}")
        if report.misses:
            click.echo("\nmisclassified:")
            for miss in report.misses:
                click.echo(f"  {miss.path}: expected {miss.expected}, got {miss.predicted} "
                           f"({miss.decided_by}, {miss.confidence:.2f})")
    if fail_under is not None and report.macro_f1 < fail_under:
        sys.exit(EXIT_ENGINE)


@main.command()
@click.option("--lang", type=click.Choice(["en", "ko"]), default="en", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@pass_context
def categories(context: Context, lang: str, as_json: bool) -> None:
    """List the failure categories logmedic knows."""
    from model.knowledge import load_knowledge_base
    from model.paths import knowledge_dir

    try:
        kb = load_knowledge_base(knowledge_dir(context.settings.data_dir))
    except ModelError as exc:
        fail(str(exc), EXIT_ENGINE)
    if as_json:
        click.echo(json.dumps([{"id": e.id, "title": e.title.get(lang), "summary": e.summary.get(lang),
                                "seed": e.seed, "transient": e.transient} for e in kb], ensure_ascii=False, indent=2))
        return
    for entry in kb:
        flags = ("seed " if entry.seed else "     ") + ("transient" if entry.transient else "")
        click.echo(f"{entry.id:30} {flags:15} {entry.title.get(lang)}")


@main.command()
@click.option("--host", default=None, help="Address to bind [env LOGMEDIC_HOST; default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [env LOGMEDIC_PORT; default 8080].")
@click.option("--workers", type=int, default=None, help="Worker processes [env LOGMEDIC_WORKERS; default: one per core].")
@pass_context
def serve(context: Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the HTTP service under gunicorn (service/gunicorn.conf.py)."""
    import os
    import shutil

    import service

    env = dict(os.environ)
    settings = context.settings
    env.update({"LOGMEDIC_DATA_DIR": str(settings.data_dir), "LOGMEDIC_MODEL_DIR": str(settings.model_dir)})
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            env[f"LOGMEDIC_{name}"] = str(value)
    config = Path(service.__file__).parent / "gunicorn.conf.py"
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or shutil.which("gunicorn")
    if gunicorn is None:
        fail("gunicorn is not installed", EXIT_ENGINE)
    os.execve(gunicorn, [gunicorn, "--config", str(config), "service.wsgi:application()"], env)


@main.command()
@pass_context
def check(context: Context) -> None:
    """Check the knowledge base: valid entries, examples that fire, near misses that do not.

    Every entry in training_data/knowledge/ is validated; every override pattern must
    fire on each of its examples and on none of its near misses, and no pattern may fire
    on a sample in training_data/samples/unknown/. Prints each problem; exits 1 if any.
    """
    from model.knowledge import load_knowledge_base
    from model.lint import lint_patterns
    from model.paths import knowledge_dir, samples_dir
    from model.rules import RuleSet

    try:
        kb = load_knowledge_base(knowledge_dir(context.settings.data_dir))
    except ModelError as exc:
        fail(str(exc), EXIT_ENGINE)
    problems = lint_patterns(kb, RuleSet(kb.patterns()), samples_dir(context.settings.data_dir) / "unknown")
    for problem in problems:
        click.echo(problem)
    patterns = sum(len(e.patterns) for e in kb)
    click.echo(f"{len(kb.ids)} entries, {patterns} patterns, {len(problems)} problems", err=True)
    sys.exit(EXIT_ENGINE if problems else 0)


from service.ask import ask; main.add_command(ask)  # noqa: E402,E702 -- `logmedic ask` (CI client)

from service.report import report  # noqa: E402 -- `logmedic report` (batch results as a page)
main.add_command(report)


if __name__ == "__main__":
    main()
