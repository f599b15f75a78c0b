"""`logmedic report`: what a batch found, as a summary and a self-contained HTML page.

Rows are read as a stream (JSONL or CSV from `logmedic batch`, or the part files
of the Spark job's output directory) and only counts and a few examples per
category are kept, so a report over millions of rows needs little memory. The
page has no external assets: inline CSS, a small inline script (legend toggles)
allowed by its hash in the page's Content-Security-Policy, and an inline SVG
chart computed here. Everything taken from rows is escaped by the template.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator

import click

UNKNOWN = "unknown"
EXAMPLES = 5  # rows kept per category (and errors) to show on the page
MAX_SERIES = 12  # beyond this many categories the smallest are drawn as one "other categories" line
OTHER = "other categories"
MAX_HOURS = 5000  # hourly counts are dropped past this many distinct hours (the span is then far beyond a day view)
GRANULARITIES = ("hour", "day", "week", "month")
MAX_POINTS = 120  # `auto` picks the finest granularity with at most this many points
PALETTE = ("#2f6fca", "#d1495b", "#1f8a4c", "#edae49", "#6a4c93", "#00798c", "#e07a5f", "#3d405b",
           "#81b29a", "#b5838d", "#f28482", "#8d99ae", "#4a4e69")
UNKNOWN_COLOUR = "#9aa0a6"


class ReportError(Exception):
    """The results cannot be read (missing file, nothing in it)."""


# -- reading rows --------------------------------------------------------------------------------

def result_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files to read: the paths given, and in a directory (the Spark job's output) its data files."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*"))
                         if p.is_file() and not p.name.startswith((".", "_")) and not p.name.endswith(".crc"))
        elif path.is_file():
            found.append(path)
        else:
            raise ReportError(f"{path}: no such file or directory")
    if not found:
        raise ReportError("no result files found")
    return found


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def read_rows(files: Iterable[Path], bad: Counter | None = None) -> Iterator[dict]:
    """Rows of JSONL or CSV result files, one at a time; unparseable lines are counted in `bad`, not raised."""
    for path in files:
        with _open_text(path) as handle:
            if path.name.removesuffix(".gz").endswith(".csv"):
                for row in csv.DictReader(handle):
                    yield {k: (v if v != "" else None) for k, v in row.items()}
                continue
            for line in handle:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
                if isinstance(row, dict):
                    yield row
                elif bad is not None:
                    bad[str(path)] += 1


# -- summarising ---------------------------------------------------------------------------------

def parse_time(value) -> datetime | None:
    """A row's timestamp as an aware UTC datetime, or None when it has no usable one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


@dataclass
class Example:
    """A row shown on the page: which log, how sure, why."""

    id: str
    confidence: float | None
    decided_by: str | None
    evidence: list[tuple[int | None, str]]


@dataclass
class Summary:
    """Counts per category, errors, a few examples, and counts per hour and per day for the chart."""

    rows: int = 0
    errors: int = 0
    unreadable: int = 0
    counts: Counter = field(default_factory=Counter)
    titles: dict[str, str] = field(default_factory=dict)
    examples: dict[str, list[Example]] = field(default_factory=dict)
    error_examples: list[tuple[str, str]] = field(default_factory=list)
    model_versions: Counter = field(default_factory=Counter)
    untimed: int = 0
    first: datetime | None = None
    last: datetime | None = None
    hours: Counter | None = field(default_factory=Counter)
    days: Counter = field(default_factory=Counter)
    _hour_set: set = field(default_factory=set, repr=False)

    @property
    def classified(self) -> int:
        """Rows with a category (errors excluded)."""
        return self.rows - self.errors

    @property
    def unknown_share(self) -> float:
        """Share of classified rows answered `unknown`."""
        return self.counts[UNKNOWN] / self.classified if self.classified else 0.0

    def add(self, row: dict) -> None:
        """Count one result row."""
        self.rows += 1
        category, ident = row.get("category"), str(row.get("id") or row.get("path") or "?")
        if row.get("error") or not category:
            self.errors += 1
            if len(self.error_examples) < EXAMPLES:
                self.error_examples.append((ident, str(row.get("error") or "no category")))
            return
        category = str(category)
        self.counts[category] += 1
        if row.get("title") and category not in self.titles:
            self.titles[category] = str(row["title"])
        if row.get("model_version"):
            self.model_versions[str(row["model_version"])] += 1
        shown = self.examples.setdefault(category, [])
        if len(shown) < EXAMPLES:
            shown.append(Example(ident, _float(row.get("confidence")), row.get("decided_by"), _evidence(row)))
        moment = parse_time(row.get("timestamp"))
        if moment is None:
            self.untimed += 1
            return
        self.first = moment if self.first is None else min(self.first, moment)
        self.last = moment if self.last is None else max(self.last, moment)
        day = moment.date()
        self.days[(day, category)] += 1
        if self.hours is not None:
            hour = moment.replace(minute=0, second=0, microsecond=0)
            self.hours[(hour, category)] += 1
            self._hour_set.add(hour)
            if len(self._hour_set) > MAX_HOURS:
                self.hours, self._hour_set = None, set()


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _evidence(row: dict) -> list[tuple[int | None, str]]:
    evidence = row.get("evidence")
    if isinstance(evidence, list):
        return [(e.get("line"), str(e.get("text", ""))) for e in evidence[:3] if isinstance(e, dict)]
    if isinstance(evidence, str) and evidence:  # CSV: "12: text ; 14: text"
        found = []
        for part in evidence.split(" ; ")[:3]:
            number, _, text = part.partition(": ")
            found.append((int(number) if number.isdigit() else None, text if number.isdigit() else part))
        return found
    return []


def summarise(rows: Iterable[dict]) -> Summary:
    """Stream rows into a Summary."""
    summary = Summary()
    for row in rows:
        summary.add(row)
    return summary


# -- the chart -----------------------------------------------------------------------------------

def bucket_of(moment: datetime, granularity: str) -> datetime:
    """The start of the hour, day, ISO week (Monday) or month holding `moment`."""
    if granularity == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    start = datetime(moment.year, moment.month, moment.day if granularity != "month" else 1, tzinfo=timezone.utc)
    if granularity == "week":
        start -= timedelta(days=start.weekday())
    return start


def _next(start: datetime, granularity: str) -> datetime:
    if granularity == "hour":
        return start + timedelta(hours=1)
    if granularity == "day":
        return start + timedelta(days=1)
    if granularity == "week":
        return start + timedelta(days=7)
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=timezone.utc)


def bucket_range(first: datetime, last: datetime, granularity: str) -> list[datetime]:
    """Every bucket from the one holding `first` to the one holding `last`, empty ones included."""
    buckets, current, end = [], bucket_of(first, granularity), bucket_of(last, granularity)
    while current <= end:
        buckets.append(current)
        current = _next(current, granularity)
    return buckets


def choose_granularity(summary: Summary, wanted: str = "auto") -> str:
    """`wanted`, or the finest granularity whose chart has at most MAX_POINTS points."""
    candidates = GRANULARITIES if summary.hours is not None else GRANULARITIES[1:]
    if wanted != "auto":
        if wanted not in candidates:
            raise ReportError(f"--bucket {wanted}: too many distinct hours for an hourly chart; use day or coarser")
        return wanted
    for granularity in candidates:
        # Counting buckets by stepping is fine: only granularities with few enough buckets get this far.
        if _bucket_count(summary.first, summary.last, granularity) <= MAX_POINTS:
            return granularity
    return "month"


def _bucket_count(first: datetime, last: datetime, granularity: str) -> int:
    span = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 28 * 86400}[granularity]
    if (last - first).total_seconds() / span > MAX_POINTS * 2:
        return MAX_POINTS * 2  # far too many, no need to count them
    return len(bucket_range(first, last, granularity))


@dataclass
class Series:
    """One line of the chart."""

    category: str
    colour: str
    values: list[int]
    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def polyline(self) -> str:
        """The points as an SVG polyline `points` attribute."""
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


@dataclass
class Chart:
    """An SVG line chart of rows per category per time bucket, laid out here (the page only draws it)."""

    granularity: str
    buckets: list[datetime]
    series: list[Series]
    width: int = 900
    height: int = 340
    left: int = 56
    right: int = 16
    top: int = 16
    bottom: int = 52
    y_max: int = 1
    y_ticks: list[tuple[float, int]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)

    def label(self, bucket: datetime) -> str:
        """A bucket as people read it."""
        if self.granularity == "hour":
            return bucket.strftime("%Y-%m-%d %H:00")
        if self.granularity == "week":
            return "week of " + bucket.strftime("%Y-%m-%d")
        if self.granularity == "month":
            return bucket.strftime("%Y-%m")
        return bucket.strftime("%Y-%m-%d")

    @property
    def bottom_y(self) -> int:
        """y of the time axis."""
        return self.height - self.bottom

    @property
    def right_x(self) -> int:
        """x of the plot's right edge."""
        return self.width - self.right


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 × 10^k that is at least `value`."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def build_chart(summary: Summary, granularity: str = "auto") -> Chart | None:
    """The chart of categories over time, or None when no row carries a usable timestamp."""
    if summary.first is None:
        return None
    granularity = choose_granularity(summary, granularity)
    buckets = bucket_range(summary.first, summary.last, granularity)
    index = {bucket: i for i, bucket in enumerate(buckets)}
    per: dict[str, list[int]] = {}
    source = summary.hours if granularity == "hour" else summary.days
    for (moment, category), count in source.items():
        if granularity != "hour":
            moment = datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc)
        per.setdefault(category, [0] * len(buckets))[index[bucket_of(moment, granularity)]] += count
    ranked = sorted(per, key=lambda c: (c == UNKNOWN, -sum(per[c]), c))  # unknown last, the rest by size
    named = [c for c in ranked if c != UNKNOWN]
    if len(per) > MAX_SERIES:
        keep = MAX_SERIES - 1 - (UNKNOWN in per)
        merged = [sum(values) for values in zip(*(per[c] for c in named[keep:]))]
        named = named[:keep] + [OTHER]
        per[OTHER] = merged
    order = named + ([UNKNOWN] if UNKNOWN in per else [])
    series = [Series(c, UNKNOWN_COLOUR if c == UNKNOWN else PALETTE[i % len(PALETTE)], per[c])
              for i, c in enumerate(order)]
    chart = Chart(granularity, buckets, series)
    chart.y_max = _nice_ceiling(max((max(s.values) for s in series), default=1))
    plot_w, plot_h = chart.right_x - chart.left, chart.bottom_y - chart.top
    step = plot_w / max(1, len(buckets) - 1)
    x_of = (lambda i: chart.left + plot_w / 2) if len(buckets) == 1 else (lambda i: chart.left + i * step)
    for s in series:
        s.points = [(x_of(i), chart.bottom_y - v / chart.y_max * plot_h) for i, v in enumerate(s.values)]
    tick = chart.y_max // 5 if chart.y_max >= 5 else 1
    chart.y_ticks = [(chart.bottom_y - value / chart.y_max * plot_h, value)
                     for value in range(0, chart.y_max + 1, tick)]
    every = max(1, math.ceil(len(buckets) / 8))
    chart.x_ticks = [(x_of(i), chart.label(b)) for i, b in enumerate(buckets) if i % every == 0]
    return chart


# -- the page ------------------------------------------------------------------------------------

def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render_html(summary: Summary, chart: Chart | None, sources: list[str], title: str = "logmedic report") -> str:
    """The self-contained page: inline CSS, script and SVG; the CSP allows exactly those by hash."""
    from jinja2 import Environment, PackageLoader

    # Autoescape everything: ids, evidence and error texts come from logs, which anyone can write.
    environment = Environment(loader=PackageLoader("service", "templates"), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters["csp_hash"] = lambda text: _csp_hash(str(text))
    ranked = sorted(summary.counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return environment.get_template("report.html").render(
        summary=summary, chart=chart, ranked=ranked, sources=sources, title=title, unknown=UNKNOWN, examples=EXAMPLES,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def summary_json(summary: Summary, chart: Chart | None) -> dict:
    """The summary as JSON for scripts: counts, unknown share, and the chart's series."""
    return {
        "rows": summary.rows, "classified": summary.classified, "errors": summary.errors,
        "unreadable_lines": summary.unreadable,
        "counts": dict(sorted(summary.counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "unknown_share": round(summary.unknown_share, 6),
        "model_versions": dict(summary.model_versions),
        "untimed": summary.untimed,
        "first": summary.first.isoformat().replace("+00:00", "Z") if summary.first else None,
        "last": summary.last.isoformat().replace("+00:00", "Z") if summary.last else None,
        "chart": None if chart is None else {
            "granularity": chart.granularity,
            "buckets": [b.isoformat().replace("+00:00", "Z") for b in chart.buckets],
            "series": {s.category: s.values for s in chart.series},
        },
    }


@click.command()
@click.argument("results", nargs=-1, required=True)
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report page here (one self-contained file).")
@click.option("--bucket", type=click.Choice(["auto", *GRANULARITIES]), default="auto", show_default=True,
              help="Time step of the chart; auto keeps it under 120 points.")
@click.option("--title", default="logmedic report", show_default=True, help="Title of the page.")
def report(results: tuple[str, ...], html_path: Path | None, bucket: str, title: str) -> None:
    """Summarise `logmedic batch` results: counts per category, share of unknown, categories over time.

    RESULTS are JSONL or CSV files written by `logmedic batch` (.gz too), or the output
    directory of the Spark job. Prints the summary as JSON; with --html also writes a page
    with no external assets. The chart uses each row's timestamp (the file's modification
    time, or --time-field for JSONL inputs); rows without one are counted, not charted.
    """
    try:
        files = result_files(results)
        bad: Counter = Counter()
        summary = summarise(read_rows(files, bad))
        summary.unreadable = sum(bad.values())
        if summary.rows == 0:
            raise ReportError("no result rows found in " + ", ".join(map(str, files)))
        chart = build_chart(summary, bucket)
    except (ReportError, OSError) as exc:
        click.echo(f"logmedic: {exc}", err=True)
        sys.exit(2)
    for path, count in bad.items():
        click.echo(f"logmedic: {path}: {count} lines are not JSON objects (skipped)", err=True)
    if html_path is not None:
        page = render_html(summary, chart, [str(f) for f in files], title)
        html_path.write_text(page, encoding="utf-8")
        click.echo(f"report written to {html_path} ({len(page.encode()) / 1024:.0f} KB)", err=True)
    click.echo(json.dumps(summary_json(summary, chart), ensure_ascii=False))

