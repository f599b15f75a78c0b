"""The engine end to end: decisions, explanations, long logs, determinism, accuracy on real logs."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from model import paths
from model.diagnose import Diagnoser, read
from model.evaluate import bury, evaluate, load_noise
from model.knowledge import KnowledgeBase
from model.scan import scan
from model.training import train
from tests.conftest import DEV_SET, LOGHUB, needs

SEED_CATEGORIES = ("registry-pull-hang", "apt-invalid-signature", "no-space-left", "postgres-superuser-password",
                   "apt-release-eol", "systemd-cgroup-readonly")

APT_LOG = """Step 2/6 : RUN apt-get update && apt-get install -y curl
 ---> Running in 0d1c2b3a4f5e
Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]
Err:1 http://deb.debian.org/debian bookworm InRelease
  At least one invalid signature was encountered.
Reading package lists...
W: GPG error: http://deb.debian.org/debian bookworm InRelease: At least one invalid signature was encountered.
E: The repository 'http://deb.debian.org/debian bookworm InRelease' is not signed.
The command '/bin/sh -c apt-get update && apt-get install -y curl' returned a non-zero code: 100
"""


def test_when_rule_fires_then_evidence_is_the_failing_line(diagnoser):
    verdict = diagnoser.verdict(APT_LOG)
    assert verdict.category == "apt-invalid-signature" and verdict.decided_by == "rule"
    assert verdict.rule.startswith("apt-invalid-signature/")
    lines = {e.line: e.text for e in verdict.evidence}
    assert 5 in lines and "At least one invalid signature" in lines[5]
    assert all(APT_LOG.splitlines()[e.line - 1].strip() == e.text.strip() for e in verdict.evidence)


def test_when_disk_full_breaks_apt_then_root_cause_first_and_symptom_also(diagnoser):
    log = APT_LOG.replace("Reading package lists...", "Reading package lists...\nE: Write error - write (28: No space left on device)")
    verdict = diagnoser.verdict(log)
    assert verdict.category == "no-space-left"
    assert [finding[0] for finding in verdict.also] == ["apt-invalid-signature"]


def test_when_a_rule_decides_then_the_model_is_not_asked(diagnoser, monkeypatch):
    """A rule-decided answer names other fired overrides in `also`, and no model alternatives."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was consulted")

    monkeypatch.setattr(diagnoser.reader, "count_lines", refuse)
    verdict = diagnoser.verdict(APT_LOG)
    assert verdict.decided_by == "rule" and verdict.alternatives == []
    with pytest.raises(AssertionError, match="consulted"):
        diagnoser.verdict("make: *** [Makefile:12: test] Error 2\nFAILED tests/test_cart.py::test_total")


WEB_REFUSED = """web-1  | > shop-frontend@1.4.0 dev
web-1  | VITE v5.2.8  ready in 412 ms
web-1  | [vite] http proxy error: /api/cart
web-1  | Error: connect ECONNREFUSED 127.0.0.1:8000
web-1  |     at TCPConnectWrapper.afterConnect [as oncomplete] (node:net:1555:16)
"""


def test_when_a_web_port_refuses_then_the_model_may_not_call_it_a_database(diagnoser, model_only):
    """The model sees `connect ECONNREFUSED <ip>` whatever the port; a veto pattern knows the port."""
    rules = diagnoser.rules
    assert "db-connection-refused" in scan(WEB_REFUSED, rules).overrides(rules).vetoed
    assert diagnoser.verdict(WEB_REFUSED).category != "db-connection-refused"
    # the veto never decides anything itself, and a database rule in the same log still wins
    assert diagnoser.verdict(WEB_REFUSED).decided_by != "rule"
    both = WEB_REFUSED + "api-1  | Error: connect ECONNREFUSED 172.18.0.2:5432\n"
    verdict = diagnoser.verdict(both)
    assert verdict.category == "db-connection-refused" and verdict.rule == "db-connection-refused/econnrefused-db-port"


@pytest.fixture(scope="module")
def model_only(diagnoser):
    """The same model with every override removed, so the model has to decide."""
    kb = KnowledgeBase([entry.model_copy(update={"patterns": ()}) for entry in diagnoser.kb])
    return Diagnoser(kb, diagnoser.bundle)


def test_when_model_decides_then_terms_evidence_and_alternatives(model_only):
    verdict = model_only.verdict(APT_LOG)
    assert verdict.category == "apt-invalid-signature" and verdict.decided_by == "model"
    assert verdict.confidence >= verdict.threshold
    assert any("signature" in term for term in verdict.terms)
    assert any("invalid signature" in e.text for e in verdict.evidence)
    assert all(a.category not in (verdict.category, "unknown") for a in verdict.alternatives)
    assert [a.score for a in verdict.alternatives] == sorted((a.score for a in verdict.alternatives), reverse=True)


def test_when_model_is_unsure_then_unknown_with_its_best_guess_as_alternative(model_only):
    verdict = model_only.verdict("make: *** [Makefile:12: test] Error 2\nFAILED tests/test_cart.py::test_total")
    assert verdict.category == "unknown" and verdict.decided_by == "none"
    assert verdict.confidence > 0.0


@needs(LOGHUB)
def test_when_failure_buried_in_a_huge_log_then_found_with_its_original_line(diagnoser):
    noise = load_noise(LOGHUB)
    rng = random.Random(3)
    filler = [rng.choice(noise) for _ in range(60_000)]
    log = b"\n".join(filler[:41_234] + [b"initdb: error: could not create directory \"/var/lib/postgresql/data/pg_wal\": "
                                        b"No space left on device"] + filler[41_234:])
    verdict = diagnoser.verdict(log)
    assert verdict.category == "no-space-left"
    assert 41_235 in [e.line for e in verdict.evidence]
    assert verdict.lines == 60_001


@pytest.mark.parametrize("log", [b"", b"   \n\t\n", b"\x00\x00\x00", b"x" * (5 * 1024 * 1024), "\ud800 lone surrogate"])
def test_when_degenerate_log_then_unknown_without_error(diagnoser, log):
    assert diagnoser.verdict(log).category == "unknown"


def test_same_log_same_answer(diagnoser):
    first, second = diagnoser.verdict(APT_LOG), diagnoser.verdict(APT_LOG)
    assert first == second


def test_fast_reading_equals_the_pipeline(diagnoser):
    """The engine's line-by-line reading must give exactly the pipeline's probabilities."""
    log = APT_LOG + "\n".join(f"#9 {i}.0 npm WARN deprecated pkg{i}@1.0.{i}: use something else" for i in range(60))
    reading = read(scan(log, diagnoser.rules))
    assert len(reading.views) > 1
    reader = diagnoser.reader
    fast = reader.predict_proba(reader.features(reader.count_lines(reading.texts), reading.views))
    slow = diagnoser.pipeline.predict_proba([reading.view_text(v) for v in range(len(reading.views))])
    np.testing.assert_allclose(fast, slow, atol=1e-5)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """A copy of training_data/ with a few samples per category: enough to train in seconds."""
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(paths.knowledge_dir(paths.DATA_DIR), root / "knowledge")
    for folder in paths.samples_dir(paths.DATA_DIR).iterdir():
        keep = sorted(folder.glob("*.log"))[: 24 if folder.name == "unknown" else 6]
        (root / "samples" / folder.name).mkdir(parents=True)
        for path in keep:
            shutil.copy(path, root / "samples" / folder.name / path.name)
    return root


def test_same_data_same_model(small_data, tmp_path):
    """Training is reproducible: two trainings on the same data give the same threshold and probabilities."""
    reports = [train(small_data, tmp_path / name) for name in ("a", "b")]
    assert reports[0].threshold == reports[1].threshold
    logs = [APT_LOG, "Killed", "FAILED test_x", "dial tcp 1.2.3.4:443: i/o timeout pulling image"]
    answers = []
    for name in ("a", "b"):
        engine = Diagnoser.load(small_data, tmp_path / name)
        answers.append([engine.verdict(log).model_dump() for log in logs])
    assert answers[0] == answers[1]


@needs(DEV_SET)
def test_real_logs_meet_the_accuracy_targets(diagnoser):
    """`logmedic eval ../shared/dev-set`: macro-F1 ≥ 0.92, seed recall ≥ 0.95, unknown given a category < 5%."""
    report = evaluate(diagnoser, DEV_SET)
    assert report.macro_f1 >= 0.92, report.misses
    assert all(report.metrics[c]["recall"] >= 0.95 for c in SEED_CATEGORIES), report.misses
    assert report.unknown_given_category < 0.05


@needs(DEV_SET)
@needs(LOGHUB)
def test_real_logs_buried_in_noise_are_classified_as_well(diagnoser):
    """The dev-set logs inside 1,500 lines of unrelated system logs get the same answers as bare."""
    bare = evaluate(diagnoser, DEV_SET)
    buried = evaluate(diagnoser, DEV_SET, noise=load_noise(LOGHUB), noise_lines=1500)
    assert buried.unknown_given_category <= bare.unknown_given_category
    assert buried.macro_f1 >= bare.macro_f1 - 0.03, buried.misses
    assert len(buried.misses) <= len(bare.misses) + 2, buried.misses


def test_bury_keeps_the_log_intact():
    noise = [f"noise {i}".encode() for i in range(100)]
    log = b"line one\nline two\n"
    buried = bury(log, noise, 50, random.Random(1))
    assert b"line one\nline two" in buried and buried.count(b"\n") == 52


def test_engine_caches_stay_bounded_and_never_change_an_answer(diagnoser, monkeypatch):
    """The per-line caches (which patterns match a line; a line's n-gram counts; a word's character n-grams)
    have a bound, skip very long keys, and give the same answers cold or warm."""
    fresh = Diagnoser(diagnoser.kb, diagnoser.bundle)
    rules, reader = fresh.rules, fresh.reader
    monkeypatch.setattr(type(rules), "KNOWN_LINES", 50)
    monkeypatch.setattr(type(reader), "LINE_CACHE_INDICES", 5_000)
    monkeypatch.setattr(type(reader), "WORD_CACHE", 300)
    rng = random.Random(5)
    logs = [APT_LOG, WEB_REFUSED, "make: *** [Makefile:12: test] Error 2\nFAILED tests/test_cart.py::test_total"]
    logs += ["\n".join(f"worker-{rng.randrange(10**6)} error: step {rng.randrange(10**6)} failed in "
                       f"{''.join(rng.choices('abcdefgh', k=12))}" for _ in range(40)) for _ in range(20)]
    logs.append("error: " + "x" * 5000 + " could not connect\n" + "Z" * 200 + " failed")
    cold = [diagnoser.verdict(log) for log in logs]
    for _ in range(2):
        assert [fresh.verdict(log) for log in logs] == cold
        assert len(rules._known) <= 50
        assert reader._line_cache_size <= 5_000 + max(len(w) + len(c) + 2000 for w, c in reader._line_cache.values())
        assert len(reader._word_cache) <= 300
    assert all(len(text) <= rules.KNOWN_CHARS for text in rules._known)
    assert all(len(word) <= reader.CACHED_WORD_CHARS for word in reader._word_cache)


def test_warm_up_reads_every_log_and_changes_no_answer(diagnoser):
    fresh = Diagnoser(diagnoser.kb, diagnoser.bundle)
    logs = [APT_LOG, WEB_REFUSED, b"", "\ud800 lone surrogate"]
    assert fresh.warm_up(iter(logs)) == 4
    assert [fresh.verdict(log) for log in logs] == [diagnoser.verdict(log) for log in logs]
