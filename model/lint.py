"""Checks that keep the overrides honest: examples fire, near misses and healthy logs do not."""

from __future__ import annotations

from pathlib import Path

from model.knowledge import UNKNOWN, KnowledgeBase
from model.rules import RuleSet
from model.scan import scan


def fired(rules: RuleSet, text: str | bytes, vetoes: bool = False) -> set[str]:
    """Pattern ids that fire on one log; with `vetoes`, also the veto patterns that matched."""
    selected = scan(text, rules)
    hits, vetoed = selected.overrides(rules)
    ids = {hit.rule.pattern_id for hit in hits}
    if vetoes:
        ids |= {rule.pattern_id for rule in rules.rules if rule.veto and rule.category in vetoed}
    return ids


def lint_patterns(kb: KnowledgeBase, rules: RuleSet, unknown_dir: Path | None = None) -> list[str]:
    """Every problem found: an example that does not fire, a near miss or an `unknown` sample that does.

    Veto patterns are meant to match `unknown` logs; their examples must veto, their near misses not."""
    problems = []
    for entry, pattern in kb.patterns():
        for number, example in enumerate(pattern.examples, 1):
            if pattern.id not in fired(rules, example, vetoes=pattern.veto):
                problems.append(f"{pattern.id}: example {number} does not match: {example[:120]!r}")
        for number, near in enumerate(pattern.near_misses, 1):
            if pattern.id in fired(rules, near, vetoes=pattern.veto):
                problems.append(f"{pattern.id}: near miss {number} matches: {near[:120]!r}")
    if unknown_dir is not None:
        for path in sorted(Path(unknown_dir).rglob("*.log")):
            ids = fired(rules, path.read_bytes())
            if ids:
                problems.append(f"{path}: an '{UNKNOWN}' sample fires {sorted(ids)}")
    return problems
