"""The knowledge base: every entry valid, every pattern honest, every label covered."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from model import paths
from model.errors import KnowledgeError
from model.knowledge import UNKNOWN, load_knowledge_base
from model.lint import fired, lint_patterns
from model.rules import RuleSet, check_pattern
from model.samples import load_samples
from tests.conftest import SHARED, needs

KNOWLEDGE = paths.knowledge_dir(paths.DATA_DIR)
SAMPLES = paths.samples_dir(paths.DATA_DIR)
SEED = {"registry-pull-hang", "apt-invalid-signature", "no-space-left", "postgres-superuser-password",
        "apt-release-eol", "systemd-cgroup-readonly"}


@pytest.fixture(scope="module")
def kb():
    return load_knowledge_base(KNOWLEDGE)


@pytest.fixture(scope="module")
def rules(kb):
    return RuleSet(kb.patterns())


@needs(SHARED / "categories.md")
def test_every_category_of_the_contract_has_an_entry(kb):
    contract = set(re.findall(r"^\| `([a-z0-9-]+)` \|", (SHARED / "categories.md").read_text(), flags=re.M))
    assert len(contract) == 21
    assert set(kb.ids) == contract | {UNKNOWN}


def test_the_six_seed_categories_are_marked(kb):
    assert {entry.id for entry in kb if entry.seed} == SEED


def test_every_entry_speaks_english_and_korean(kb):
    hangul = re.compile(r"[\uac00-\ud7a3]")
    for entry in kb:
        for text in (entry.title, entry.summary, entry.explanation, *entry.causes):
            assert hangul.search(text.ko), f"{entry.id}: Korean text missing in {text.ko[:40]!r}"
        for step in entry.remediation:
            assert hangul.search(step.description.ko), f"{entry.id}: {step.command}"


def test_every_failure_category_has_overrides_and_references(kb):
    for entry in kb:
        if entry.id != UNKNOWN:
            assert len(entry.patterns) >= 2, entry.id
            assert entry.references, entry.id


def test_pattern_examples_fire_and_near_misses_do_not(kb, rules):
    """Each override carries examples it must match and near misses it must not;
    no override may fire on an `unknown` sample (a pattern that fires on healthy logs is too broad)."""
    assert lint_patterns(kb, rules, SAMPLES / UNKNOWN) == []


def test_every_label_the_model_can_emit_has_an_entry(kb, diagnoser):
    assert set(diagnoser.bundle.labels) <= set(kb.ids)
    assert set(diagnoser.classes) == set(kb.ids)


def test_samples_exist_for_every_category(kb):
    counts = {}
    for sample in load_samples(SAMPLES, set(kb.ids)):
        counts[sample.label] = counts.get(sample.label, 0) + 1
    assert all(counts.get(c, 0) >= 15 for c in kb.ids), counts
    assert counts[UNKNOWN] >= 200


def test_overrides_fire_on_most_samples_of_their_category(kb, rules):
    """The overrides are the high-precision half; the model covers the rest."""
    for entry in kb:
        if entry.id == UNKNOWN:
            continue
        logs = sorted((SAMPLES / entry.id).glob("*.log"))
        hits = sum(1 for p in logs if any(pid.startswith(entry.id + "/") for pid in fired(rules, p.read_bytes())))
        assert hits / len(logs) >= 0.8, f"{entry.id}: overrides fire on {hits}/{len(logs)} samples"


@pytest.mark.parametrize("regex", [r"(a+)+\1", r"foo(?=bar)", r"(?<!x)y"])
def test_a_pattern_needing_backtracking_is_refused(regex):
    with pytest.raises(ValueError, match="RE2"):
        check_pattern(regex)


@pytest.mark.parametrize("regex", [r"a|^b", r"a$|b", r"(?i)x^y"])
def test_anchors_only_at_the_ends(regex):
    with pytest.raises(ValueError, match="may only"):
        check_pattern(regex)


def _broken_copy(tmp_path: Path, edit) -> Path:
    directory = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, directory)
    path = directory / "no-space-left.yaml"
    path.write_text(edit(path.read_text()))
    return directory


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace("transient: false", "transient: maybe"), "transient"),
    (lambda t: t.replace("    ko: 사용하지 않는 빌드 캐시를 지웁니다. 보통 가장 큰 항목입니다.\n", ""), "remediation.2.description.ko"),
    (lambda t: t.replace("    destructive: true\n    deletes:\n      en: all build cache not used by a running build\n"
                         "      ko: 실행 중인 빌드가 쓰지 않는 모든 빌드 캐시\n", ""), "remediation.2"),
    (lambda t: t.replace("regex: '(?i)no space left on device'", "regex: '(no)+(?=space)'"), "patterns.0.regex"),
    (lambda t: t.replace("id: no-space-left/enospc-text", "id: disk/enospc-text"), "<root>"),
])
def test_when_entry_is_broken_then_file_and_field_are_named(tmp_path, edit, field):
    directory = _broken_copy(tmp_path, edit)
    with pytest.raises(KnowledgeError) as error:
        load_knowledge_base(directory)
    message = str(error.value)
    assert "no-space-left.yaml" in message and field in message


def test_when_unknown_entry_missing_then_refused(tmp_path):
    directory = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, directory)
    (directory / "unknown.yaml").unlink()
    with pytest.raises(KnowledgeError, match="'unknown' entry is missing"):
        load_knowledge_base(directory)
