"""ReDoS: no regex logmedic runs on a log can be made to backtrack for ever.

Overrides come from the knowledge base and must be RE2 (linear time, no
backtracking): a pattern that needs backtracking fails here and refuses to
load. The few patterns the engine runs with Python's `re` (found by walking
the engine's modules, so a new one is covered automatically) are run over
hostile 5 MB lines built from the pattern itself (bench/redos.py) and must
finish. No time is asserted: a linear pattern takes well under a second per
line here, a quadratic one would need hours, and HANG_SECONDS sits between.
bench/redos.py prints the actual times.
"""

from __future__ import annotations

import multiprocessing
import re

import pytest
import re2

from bench.redos import SIZE, adversarial, consume, engine_patterns, hostile_inputs, is_re2
from model import paths
from model.knowledge import Pattern, load_knowledge_base
from model.redact import redact
from model.rules import check_pattern

HANG_SECONDS = 300  # per pattern, for all its inputs: ~30x the slowest linear pattern on a busy 2-core CI box

KB = load_knowledge_base(paths.knowledge_dir(paths.DATA_DIR))
KB_REGEXES = [(f"{p.id}:{field}", regex) for _, p in KB.patterns()
              for field, regexes in (("regex", (p.regex,)), ("requires", p.requires), ("unless", p.unless),
                                     ("excluded_by", p.excluded_by))
              for regex in regexes]
PYTHON_RE = [(name, pattern) for name, pattern in engine_patterns() if not is_re2(pattern)]


@pytest.mark.parametrize("name, regex", KB_REGEXES, ids=[name for name, _ in KB_REGEXES])
def test_every_knowledge_base_regex_compiles_under_re2(name, regex):
    options = re2.Options()
    options.log_errors = False
    re2.compile(regex, options)  # raises re2.error for anything that would need backtracking


@pytest.mark.parametrize("regex", [
    r"(a+)\1",                 # backreference
    r"error(?=: fatal)",       # lookahead
    r"(?<!no )space left",     # lookbehind
    r"(?>a+)b",                # atomic group
    r"a++b",                   # possessive quantifier
])
def test_when_a_pattern_needs_backtracking_then_the_knowledge_base_refuses_it(regex):
    with pytest.raises(ValueError, match="RE2"):
        check_pattern(regex)
    with pytest.raises(ValueError):
        Pattern(id="x/y", regex=regex, description="d", examples=("e",), near_misses=("n",))


def test_override_matching_runs_only_on_re2(diagnoser):
    """The compiled rule set holds RE2 objects only: no Python `re` object decides an override."""
    found = []
    for value in vars(diagnoser.rules).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, re.Pattern) or is_re2(item):
                found.append(item)
    assert found and all(is_re2(item) for item in found)


def test_engine_patterns_are_found():
    """The walker that finds the engine's regexes sees the preprocessing and redaction patterns."""
    names = [name for name, _ in engine_patterns()]
    assert any(name.startswith("model.text._PREFIX") for name in names)
    assert any(name.startswith("model.redact._RULES") for name in names)
    assert any(name.startswith("model.scan._SIGNAL") for name in names)


def _run_all(pattern, inputs: dict[str, str], done) -> None:
    for label in inputs:
        consume(pattern, inputs[label])
        done.put(label)


def _finishes(target, *args) -> tuple[bool, list[str]]:
    """Run `target` in a forked process; (finished in HANG_SECONDS, labels it completed)."""
    context = multiprocessing.get_context("fork")
    done = context.Queue()
    process = context.Process(target=target, args=(*args, done))
    process.start()
    process.join(HANG_SECONDS)
    hung = process.is_alive()
    if hung:
        process.kill()
        process.join()
    labels = []
    while not done.empty():
        labels.append(done.get())
    return not hung and process.exitcode == 0, labels


@pytest.mark.parametrize("name, pattern", PYTHON_RE, ids=[name for name, _ in PYTHON_RE])
def test_when_python_re_pattern_reads_hostile_5mb_lines_then_it_finishes(name, pattern):
    inputs = hostile_inputs(pattern, SIZE)
    finished, completed = _finishes(_run_all, pattern, inputs)
    stuck = [label for label in inputs if label not in completed]
    assert finished, f"{name} did not finish in {HANG_SECONDS}s on {stuck[:1]} (input built by bench/redos.py)"


def _redact_all(inputs: dict[str, str], done) -> None:
    for label in inputs:
        redact(inputs[label])
        done.put(label)


def test_when_redact_reads_hostile_5mb_lines_then_it_finishes():
    """redact() as a whole (all its RE2 rules and the fast path) over the inputs built for each of its rules."""
    distinct = {}
    for name, pattern in engine_patterns():
        if name.startswith("model.redact."):
            for label, text in list(adversarial(pattern.pattern, SIZE).items())[:3]:
                distinct.setdefault(hash(text), (f"{name}/{label}", text))
    inputs = dict(distinct.values())
    inputs["secret names"] = "PASSWORD." * (SIZE // 9)  # cubic under the former Python-re rule
    finished, completed = _finishes(_redact_all, inputs)
    assert finished, f"redact() did not finish in {HANG_SECONDS}s on {[k for k in inputs if k not in completed][:1]}"


@pytest.mark.parametrize("line, expected", [
    # 600 characters of this made the former Python-re secret-name rule take 0.25 s, 2400 took 12 s
    ("PASSWORD." * 300 + "x", "PASSWORD." * 300 + "x"),
    ("DB_PASSWORD." * 3 + "=hunter2", "DB_PASSWORD." * 3 + "=[REDACTED]"),
])
def test_redaction_of_secret_names_is_unchanged_by_the_linear_engine(line, expected):
    assert redact(line) == expected
