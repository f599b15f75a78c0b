"""From a raw log to a diagnosis: overrides first, then the model, else `unknown`.

The decision in order:
1. If overrides fire, the category with the highest knowledge-base priority
   wins (root causes outrank their symptoms); the others become `also`.
   The model is not consulted: such answers have no `alternatives`.
2. Otherwise the model reads every candidate window, and the whole selection;
   the most confident category across them is the answer if it reaches the
   bundle's abstention threshold (chosen on held-out data at training time).
3. Otherwise the answer is `unknown`: naming a wrong category is worse.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from model import paths
from model.bundle import Bundle, load_bundle
from model.classifier import Reader
from model.diagnosis import Alternative, Diagnosis, Evidence, Verdict, describe
from model.errors import BundleError
from model.knowledge import UNKNOWN, KnowledgeBase, load_knowledge_base
from model.redact import excerpt
from model.rules import RuleHit, RuleSet
from model.samples import tree_hash
from model.scan import Scan, scan
from model.text import Line, mask_lines

MAX_WHOLE_LINES = 240
MAX_EVIDENCE = 6


@dataclass
class Reading:
    """What the model reads of one log: each selected line once (masked), and views over them.

    View 0 is the whole selection; when there are several windows, each is a view too.
    """

    numbers: list[int]
    texts: list[str]
    views: list[list[int]]

    def view_text(self, view: int) -> str:
        return "\n".join(self.texts[i] for i in self.views[view])


def read(selected: Scan) -> Reading:
    """The model's reading of a scan: every window, and the whole selection."""
    windows = selected.windows
    selected.ensure(n for window in windows for n in window)
    every = sorted({n for window in windows for n in window if selected.lines[n].text})
    every = every[-MAX_WHOLE_LINES:] if len(every) > MAX_WHOLE_LINES else every
    numbers = sorted(set(every) | {n for w in windows for n in w if selected.lines[n].text})
    position = {n: i for i, n in enumerate(numbers)}
    texts = mask_lines([selected.lines[n].text for n in numbers])
    views = [[position[n] for n in every]] if every else []
    if len(windows) > 1:
        views += [[position[n] for n in w if n in position] for w in windows]
    return Reading(numbers, texts, [v for v in views if v])


def best_category(probabilities: np.ndarray, classes: list[str], vetoed: set[str] = frozenset()) -> tuple[int, str, float]:
    """(view index, category, probability) of the most confident answer across views, `unknown` and vetoed aside."""
    if probabilities.size == 0:
        return -1, UNKNOWN, 0.0
    scores = probabilities.copy()
    for category in {UNKNOWN, *vetoed}:
        if category in classes:
            scores[:, classes.index(category)] = -1.0
    view, column = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(view), classes[column], float(scores[view, column])


class Diagnoser:
    """A loaded knowledge base, its compiled overrides and a verified model bundle."""

    def __init__(self, kb: KnowledgeBase, bundle: Bundle):
        missing = [label for label in bundle.labels if label not in kb]
        if missing:
            raise BundleError(f"the model emits labels with no knowledge-base entry: {missing}: "
                              "run `logmedic train`")
        self.kb = kb
        self.rules = RuleSet(kb.patterns())
        self.bundle = bundle
        self.pipeline = bundle.pipeline
        # The engine multiplies many tiny matrices: BLAS threads only fight over the cores (a 10 KB
        # log took 160 ms instead of 12 ms on a busy 2-core machine), and workers are one per core.
        threadpool_limits(limits=1, user_api="blas")
        self.reader = Reader(self.pipeline)
        self.classes = self.reader.classes
        self.threshold = bundle.threshold
        self.version = bundle.version

    @classmethod
    def load(cls, data_dir: Path = paths.DATA_DIR, model_dir: Path = paths.MODEL_DIR,
             check_stale: bool = True) -> "Diagnoser":
        """Load everything, refusing a missing, corrupt, foreign or stale model bundle."""
        kb = load_knowledge_base(paths.knowledge_dir(data_dir))
        data_hash = tree_hash(data_dir) if check_stale else None
        return cls(kb, load_bundle(model_dir, data_hash))

    # -- evidence -----------------------------------------------------------------------------

    def _evidence_line(self, line: Line, regex: int | None = None) -> Evidence:
        start = 0
        if regex is not None:
            span = self.rules.span(regex, line.text)
            if span:
                start = max(0, line.display.find(line.text[:40])) + span[0]
        return Evidence(line=line.number, text=excerpt(line.display, start))

    def _rule_evidence(self, hits: list[RuleHit]) -> list[Evidence]:
        chosen: dict[int, Evidence] = {}
        for hit in sorted(hits, key=lambda h: -h.rule.score):
            primary = hit.lines[:2] + hit.lines[-1:] if len(hit.lines) > 2 else hit.lines
            for line in primary:
                chosen.setdefault(line.number, self._evidence_line(line, hit.rule.regex))
            for line, regex in zip(hit.context, hit.rule.requires):
                chosen.setdefault(line.number, self._evidence_line(line, regex))
        return [chosen[n] for n in sorted(chosen)[:MAX_EVIDENCE]]

    def _model_evidence(self, selected: Scan, reading: Reading, counts, view: int, category: str) -> list[Evidence]:
        rows = reading.views[view]
        scores = self.reader.line_scores(counts, rows, category)
        best = [rows[i] for i in np.argsort(-scores)[:3] if scores[i] > 0]
        return [self._evidence_line(selected.lines[reading.numbers[r]]) for r in sorted(best)]

    # -- decision -----------------------------------------------------------------------------

    def verdict(self, data: bytes | str) -> Verdict:
        """Decide, without texts: category, confidence, who decided, evidence, alternatives."""
        selected = scan(data, self.rules)
        hits, vetoed = selected.overrides(self.rules)
        common = {"threshold": self.threshold, "lines": selected.total_lines}

        if hits:
            # An override is a precise statement about a line; the model is not asked for a second opinion
            # (its scores on the few matched lines were noise: mostly under 0.1 for other categories, and
            # they cost half of the engine's time). Other overrides that fired are the answer's `also`.
            by_category: dict[str, list[RuleHit]] = defaultdict(list)
            for hit in hits:
                by_category[hit.rule.category].append(hit)
            order = sorted(by_category, key=lambda c: min((-h.rule.priority, -h.rule.score) for h in by_category[c]))
            category = order[0]
            top = max(by_category[category], key=lambda h: (h.rule.priority, h.rule.score))
            also = [(c, "rule", max(h.rule.score for h in by_category[c]), self._rule_evidence(by_category[c]))
                    for c in order[1:]]
            return Verdict(category=category, confidence=top.rule.score, decided_by="rule",
                           evidence=self._rule_evidence(by_category[category]), alternatives=[], also=also,
                           rule=top.rule.pattern_id, rule_description=top.rule.description, **common)

        reading = read(selected)
        if reading.views:
            counts = self.reader.count_lines(reading.texts)
            features = self.reader.features(counts, reading.views)
            probabilities = self.reader.predict_proba(features)
        else:
            counts, features, probabilities = None, None, np.zeros((0, len(self.classes)))
        view, model_category, model_p = best_category(probabilities, self.classes, vetoed)

        if model_p >= self.threshold:
            return Verdict(category=model_category, confidence=model_p, decided_by="model",
                           evidence=self._model_evidence(selected, reading, counts, view, model_category),
                           alternatives=self._alternatives(probabilities, view, model_category),
                           terms=self.reader.top_terms(features, view, model_category), **common)

        signal = selected.get(selected.signal[-3:])
        return Verdict(category=UNKNOWN, confidence=1.0 - model_p, decided_by="none",
                       evidence=[self._evidence_line(line) for line in signal],
                       alternatives=self._alternatives(probabilities, view, UNKNOWN), **common)

    def _alternatives(self, probabilities: np.ndarray, view_index: int, chosen: str) -> list[Alternative]:
        if view_index < 0:
            return []
        row = probabilities[view_index]
        ranked = [(self.classes[i], float(row[i])) for i in np.argsort(-row)]
        return [Alternative(category=c, score=round(p, 4)) for c, p in ranked
                if c not in (chosen, UNKNOWN) and p >= 0.01][:3]

    def warm_up(self, logs: Iterable[bytes | str]) -> int:
        """Diagnose each log once, and forget the answers; returns how many.

        RE2 builds its automata lazily, state by state, as text arrives: in a fresh process the prefilter took
        0.64 ms per 14 KB of new system-log text, and 0.07-0.11 ms once 600 such pieces had gone through. The
        n-gram, masking and override-match caches fill as well. Done in the gunicorn master before it forks, every worker (and every
        worker that replaces one) starts with all of it.
        """
        count = 0
        for count, log in enumerate(logs, 1):
            self.verdict(log)
        return count

    def diagnose(self, data: bytes | str, lang: str = "en") -> Diagnosis:
        """The full answer for one log, with texts in `lang` (en or ko)."""
        return describe(self.verdict(data), self.kb, lang, self.version)
