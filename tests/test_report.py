"""`logmedic report`: the HTML page as headless Chromium renders it, and the summary behind it.

The page is opened in Debian's Chromium (`--dump-dom` gives the DOM after the page's
script ran); the test reads the counts, the unknown share and the chart from that DOM,
and the console for any Content-Security-Policy refusal or script error.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from service.report import Summary, build_chart, choose_granularity, summarise

LOGMEDIC = str(Path(sys.executable).parent / "logmedic")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0")
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (.ci/run installs it)")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
XSS = '<img src=x onerror="document.body.setAttribute(\'data-pwned\', 1)">'


# -- a real browser, and the DOM it rendered ---------------------------------------------------------

class Node:
    """An element of the rendered DOM: tag, attributes, children (nodes and text)."""

    def __init__(self, tag: str, attrs: dict, parent: "Node | None" = None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str | None = None, **attrs) -> list["Node"]:
        """Descendants with this tag and these attribute values (`class_` matches one class)."""
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if (tag is None or child.tag == tag) and all(_matches(child, k, v) for k, v in attrs.items()):
                    found.append(child)
                found.extend(child.all(tag, **attrs))
        return found

    def one(self, tag: str | None = None, **attrs) -> "Node":
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]


def _matches(node: Node, key: str, value) -> bool:
    if key == "class_":
        return value in (node.attrs.get("class") or "").split()
    actual = node.attrs.get(key.replace("_", "-"))
    return actual is not None if value is True else actual == value


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#document", {})

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse_dom(html: str) -> Node:
    """The serialised DOM as a tree."""
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def chromium(url: str, profile: Path, extra: tuple[str, ...] = ()) -> tuple[Node, list[str]]:
    """Open `url` in headless Chromium: the DOM after load (scripts run) and the console lines."""
    profile.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, "--dump-dom", url],
                            capture_output=True, timeout=180)
    html = result.stdout.decode("utf-8", "replace")
    assert result.returncode == 0 and html.strip(), result.stderr.decode("utf-8", "replace")[-3000:]
    console = [line for line in result.stderr.decode("utf-8", "replace").splitlines() if ":CONSOLE" in line]
    return parse_dom(html), console


# -- results to report on -------------------------------------------------------------------------

START = date(2024, 3, 1)


def row(ident: str, category: str | None, when: datetime | None, error: str | None = None, **extra) -> dict:
    return {"id": ident, "path": ident, "timestamp": when.isoformat().replace("+00:00", "Z") if when else None,
            "category": category, "confidence": 0.9 if category else None, "decided_by": "rule" if category else None,
            "title": f"Title of {category}" if category else None, "evidence": [{"line": 7, "text": f"evidence {ident}"}],
            "model_version": "lm1-test", "error": error, **extra}


def at(day: int, hour: int = 12) -> datetime:
    return datetime(START.year, START.month, START.day, hour, tzinfo=timezone.utc) + timedelta(days=day)


@pytest.fixture
def results(tmp_path) -> tuple[Path, Counter, dict[str, list[int]]]:
    """Rows over ten days (days 3 and 4 empty), with hostile ids, evidence and a hostile category name."""
    plan = [  # (category, day, how many)
        ("no-space-left", 0, 5), ("no-space-left", 2, 3), ("no-space-left", 9, 1),
        ("oom-killed", 1, 4), ("oom-killed", 5, 2),
        ("unknown", 0, 2), ("unknown", 6, 6), ("unknown", 9, 2),
        (XSS, 7, 1),  # a category is just text from a file: it must come out as text
    ]
    rows, counts, per_day = [], Counter(), {}
    for category, day, many in plan:
        for number in range(many):
            rows.append(row(f"{category}-{day}-{number}", category, at(day, number)))
            counts[category] += 1
            per_day.setdefault(category, [0] * 10)[day] += 1
    rows.insert(0, row(f"</code><script>document.body.setAttribute('data-pwned', 2)</script>{XSS}", "oom-killed",
                       at(5), evidence=[{"line": 3, "text": f"ERROR {XSS} \"><svg onload=alert(1)>"}]))  # first: shown
    counts["oom-killed"] += 1
    per_day["oom-killed"][5] += 1
    rows.append(row("no-time", "oom-killed", None))  # counted, not charted
    counts["oom-killed"] += 1
    rows.append(row(f"broken-{XSS}", None, None, error=f"cannot read: {XSS}"))
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "this line is not JSON\n")
    return path, counts, per_day


def run_report(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LOGMEDIC, "report", *map(str, args)], cwd=cwd, capture_output=True, timeout=120)


def counts_on_page(dom: Node) -> dict[str, int]:
    table = dom.one("table", id="category-counts")
    return {tr.attrs["data-category"]: int(tr.one("td", class_="count").text().replace(",", ""))
            for tr in table.all("tr", data_category=True)}


def figure(dom: Node, ident: str) -> str:
    return dom.one("div", id=ident).one("span", class_="value").text().strip()


# -- tests ----------------------------------------------------------------------------------------

@needs_chromium
def test_page_shows_the_counts_the_unknown_share_and_one_line_per_category(results, tmp_path):
    path, counts, per_day = results
    result = run_report(path, "--html", "report.html", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()

    dom, console = chromium((tmp_path / "report.html").as_uri(), tmp_path / "profile")

    assert counts_on_page(dom) == counts
    classified = sum(counts.values())
    assert figure(dom, "classified") == str(classified)
    assert figure(dom, "unknown-share") == f"{counts['unknown'] / classified * 100:.1f}%"
    assert figure(dom, "errors") == "1"
    assert figure(dom, "categories-found") == str(len(counts) - 1)
    chart = dom.one("svg", id="chart")
    series = chart.all("g", class_="series")
    assert sorted(g.attrs["data-category"] for g in series) == sorted(per_day)
    for g in series:  # one point per day from the first to the last, empty days drawn as zero
        points = g.all("circle", class_="point")
        assert [int(p.attrs["data-count"]) for p in points] == per_day[g.attrs["data-category"]]
        assert len(g.one("polyline").attrs["points"].split()) == 10
    legend = dom.one("ul", id="legend").all("li")
    assert len(legend) == len(series)
    assert all(li.attrs.get("role") == "button" and li.attrs.get("aria-pressed") == "true" for li in legend), \
        "the page's script did not run (blocked by its own Content-Security-Policy?)"
    assert not [line for line in console if "Content Security Policy" in line or "Uncaught" in line], console


@needs_chromium
def test_text_from_rows_is_escaped_never_markup(results, tmp_path):
    path, _, _ = results
    assert run_report(path, "--html", "report.html", cwd=tmp_path).returncode == 0

    dom, _ = chromium((tmp_path / "report.html").as_uri(), tmp_path / "profile")

    body = dom.one("body")
    assert "data-pwned" not in body.attrs
    assert not dom.all("img"), "an <img> from a row became markup"
    assert not [n for n in dom.all() if any(k.startswith("on") for k in n.attrs)], "an event handler attribute got in"
    assert len(dom.all("script")) == 1  # the page's own
    text = body.text()
    assert XSS in text and "<script>document.body.setAttribute('data-pwned', 2)</script>" in text
    assert '"><svg onload=alert(1)>' in text
    assert XSS in counts_on_page(dom)  # the hostile category name is a table row like any other


def test_summary_json_and_errors_of_the_command(results, tmp_path):
    path, counts, per_day = results
    result = run_report(path, cwd=tmp_path)
    assert result.returncode == 0
    summary = json.loads(result.stdout)
    assert summary["counts"] == dict(counts) and summary["errors"] == 1 and summary["unreadable_lines"] == 1
    assert summary["unknown_share"] == round(counts["unknown"] / sum(counts.values()), 6)
    assert summary["chart"]["granularity"] == "day" and summary["chart"]["series"] == per_day
    assert summary["untimed"] == 1
    assert b"1 lines are not JSON" in result.stderr

    missing = run_report(tmp_path / "none.jsonl", cwd=tmp_path)
    assert missing.returncode == 2 and b"no such file" in missing.stderr and b"Traceback" not in missing.stderr


def _summary(stamps: list[str], category: str = "oom-killed") -> Summary:
    return summarise({"id": str(i), "category": category, "timestamp": s} for i, s in enumerate(stamps))


@pytest.mark.parametrize("stamps, granularity, points", [
    # within a day: one point per hour, first to last
    (["2024-03-01T01:10:00Z", "2024-03-01T05:59:00Z"], "hour", 5),
    # a month: days
    (["2024-03-01T00:00:00Z", "2024-03-31T23:00:00Z"], "day", 31),
    # half a year: ISO weeks (Mondays), 2024-01-01 is a Monday
    (["2024-01-01T00:00:00Z", "2024-06-30T00:00:00Z"], "week", 26),
    # three years: months
    (["2021-01-15T00:00:00Z", "2023-12-15T00:00:00Z"], "month", 36),
    # an offset: converted to UTC first (still 2024-03-01 23:30 UTC)
    (["2024-03-02T08:30:00+09:00", "2024-03-01T21:00:00Z"], "hour", 3),
])
def test_chart_granularity_keeps_the_chart_readable(stamps, granularity, points):
    summary = _summary(stamps)
    chart = build_chart(summary)
    assert choose_granularity(summary) == granularity
    assert chart.granularity == granularity and len(chart.buckets) == points
    assert sum(chart.series[0].values) == len(stamps)


def test_many_categories_are_drawn_as_the_largest_plus_other_and_unknown():
    rows = []
    for rank in range(15):  # category c00 has 15 rows, c14 has 1
        rows += [{"id": f"{rank}-{n}", "category": f"c{rank:02d}", "timestamp": "2024-03-01T00:00:00Z"}
                 for n in range(15 - rank)]
    rows += [{"id": f"u{n}", "category": "unknown", "timestamp": "2024-03-02T00:00:00Z"} for n in range(3)]
    chart = build_chart(summarise(rows), "day")
    names = [s.category for s in chart.series]
    assert names == [f"c{rank:02d}" for rank in range(10)] + ["other categories", "unknown"]
    assert chart.series[10].values == [sum(15 - rank for rank in range(10, 15)), 0]
    assert chart.series[-1].values == [0, 3]


def test_rows_without_timestamps_give_counts_and_no_chart(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(row("a", "oom-killed", None)) + "\n")
    result = run_report(path, "--html", "r.html", cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout)["chart"] is None
    page = (tmp_path / "r.html").read_text()
    assert 'id="no-timestamps"' in page and "<svg id=\"chart\"" not in page


@needs_chromium
def test_batch_then_report_end_to_end(model_dir, tmp_path):
    """JSONL logs with times → `logmedic batch` → `logmedic report --html` → what Chromium shows."""
    samples = Path(__file__).resolve().parent.parent / "training_data" / "samples"
    picks = [("no-space-left", 0), ("no-space-left", 1), ("oom-killed", 1), ("unknown", 2), ("unknown", 2)]
    with open(tmp_path / "logs.jsonl", "w") as out:
        for number, (category, day) in enumerate(picks):
            text = sorted((samples / category).glob("*.log"))[number].read_text(errors="replace")
            out.write(json.dumps({"job": f"job-{number}", "log": text, "at": f"2024-05-0{day + 1}T10:00:00Z"}) + "\n")
    batch = subprocess.run([LOGMEDIC, "--model-dir", str(model_dir), "batch", "--quiet", "logs.jsonl",
                            "--jsonl-field", "log", "--id-field", "job", "--time-field", "at", "-o", "results.jsonl"],
                           cwd=tmp_path, capture_output=True, timeout=600)
    assert batch.returncode == 0, batch.stderr.decode()
    written = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert run_report("results.jsonl", "--html", "report.html", "--bucket", "day", cwd=tmp_path).returncode == 0

    dom, console = chromium((tmp_path / "report.html").as_uri(), tmp_path / "profile")

    expected = Counter(r["category"] for r in written)
    assert counts_on_page(dom) == expected
    assert figure(dom, "unknown-share") == f"{expected['unknown'] / len(written) * 100:.1f}%"
    series = dom.one("svg", id="chart").all("g", class_="series")
    assert len(series) == len(expected)
    assert all(len(g.all("circle", class_="point")) == 3 for g in series)  # three days
    shown_ids = {code.text() for code in dom.all("code", class_="id")}
    assert shown_ids == {r["id"] for r in written}
    assert not [line for line in console if "Content Security Policy" in line or "Uncaught" in line], console


def test_csv_results_and_a_spark_output_directory_give_the_same_summary(results, tmp_path):
    from service.batch import csv_header, encode_row

    path, counts, per_day = results
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    (tmp_path / "results.csv").write_bytes(csv_header() + b"".join(encode_row(r, "csv") for r in rows))
    spark_dir = tmp_path / "spark-out"  # what the Spark job writes: part files, a _SUCCESS marker, .crc files
    spark_dir.mkdir()
    (spark_dir / "part-00000-a.txt").write_text("".join(json.dumps(r) + "\n" for r in rows[:10]))
    (spark_dir / "part-00001-b.txt").write_text("".join(json.dumps(r) + "\n" for r in rows[10:]))
    (spark_dir / "_SUCCESS").write_text("")
    (spark_dir / ".part-00000-a.txt.crc").write_bytes(b"\x00\x01")

    from_csv = json.loads(run_report("results.csv", cwd=tmp_path).stdout)
    from_spark = json.loads(run_report("spark-out", cwd=tmp_path).stdout)

    for summary in (from_csv, from_spark):
        assert summary["counts"] == dict(counts) and summary["errors"] == 1
        assert summary["chart"]["series"] == per_day
