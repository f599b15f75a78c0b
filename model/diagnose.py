"""From a raw log to a diagnosis: overrides first, then the model, else `unknown`.

The decision in order:
1. If overrides fire, the category with the highest knowledge-base priority
   wins (root causes outrank their symptoms); the others become `also`.
2. Otherwise the model reads every candidate window, and the whole selection;
   the most confident category across them is the answer if it reaches the
   bundle's abstention threshold (chosen on held-out data at training time).
3. Otherwise the answer is `unknown`: naming a wrong category is worse.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model import paths
from model.bundle import Bundle, load_bundle
from model.classifier import Explainer
from model.diagnosis import Alternative, Diagnosis, Evidence, Verdict, describe
from model.errors import BundleError
from model.knowledge import UNKNOWN, KnowledgeBase, load_knowledge_base
from model.redact import excerpt
from model.rules import RuleHit, RuleSet
from model.samples import tree_hash
from model.scan import Scan, scan
from model.text import Line, mask

MAX_WHOLE_LINES = 240
MAX_EVIDENCE = 6


@dataclass
class View:
    """A piece of the log the model reads: its line numbers and its masked text."""

    numbers: list[int]
    text: str


def read_views(selected: Scan) -> list[View]:
    """The whole selection first, then each window on its own when there are several."""
    masked = {n: mask(line.text) for n, line in selected.lines.items() if line.text}

    def view(numbers) -> View:
        kept = [n for n in numbers if n in masked]
        return View(kept, "\n".join(masked[n] for n in kept))

    every = sorted({n for window in selected.windows for n in window})[-MAX_WHOLE_LINES:]
    views = [view(every)] if every else []
    if len(selected.windows) > 1:
        views.extend(view(window) for window in selected.windows)
    return [v for v in views if v.text]


def best_category(probabilities: np.ndarray, classes: list[str]) -> tuple[int, str, float]:
    """(view index, category, probability) of the most confident non-unknown answer across views."""
    if probabilities.size == 0:
        return -1, UNKNOWN, 0.0
    scores = probabilities.copy()
    if UNKNOWN in classes:
        scores[:, classes.index(UNKNOWN)] = -1.0
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
        self.classes = [str(c) for c in self.pipeline.classes_]
        self.explainer = Explainer(self.pipeline)
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

    def _model_evidence(self, selected: Scan, view: View, category: str) -> list[Evidence]:
        lines = [selected.lines[n] for n in view.numbers]
        scores = self.explainer.line_scores([mask(line.text) for line in lines], category)
        best = [i for i in np.argsort(-scores)[:3] if scores[i] > 0]
        return [self._evidence_line(lines[i]) for i in sorted(best, key=lambda i: lines[i].number)]

    # -- decision -----------------------------------------------------------------------------

    def verdict(self, data: bytes | str) -> Verdict:
        """Decide, without texts: category, confidence, who decided, evidence, alternatives."""
        selected = scan(data, self.rules)
        hits = self.rules.evaluate(*selected.rule_input())
        views = read_views(selected)
        probabilities = (self.pipeline.predict_proba([v.text for v in views]) if views
                         else np.zeros((0, len(self.classes))))
        view_index, model_category, model_p = best_category(probabilities, self.classes)
        common = {"threshold": self.threshold, "lines": selected.total_lines}

        if hits:
            by_category: dict[str, list[RuleHit]] = defaultdict(list)
            for hit in hits:
                by_category[hit.rule.category].append(hit)
            order = sorted(by_category, key=lambda c: (-self.kb[c].priority, -max(h.rule.score for h in by_category[c])))
            category = order[0]
            top = max(by_category[category], key=lambda h: h.rule.score)
            also = [(c, "rule", max(h.rule.score for h in by_category[c]), self._rule_evidence(by_category[c]))
                    for c in order[1:]]
            return Verdict(category=category, confidence=top.rule.score, decided_by="rule",
                           evidence=self._rule_evidence(by_category[category]),
                           alternatives=self._alternatives(probabilities, view_index, category), also=also,
                           rule=top.rule.pattern_id, rule_description=top.rule.description, **common)

        if model_p >= self.threshold:
            view = views[view_index]
            row = self.explainer.features.transform([view.text])
            return Verdict(category=model_category, confidence=model_p, decided_by="model",
                           evidence=self._model_evidence(selected, view, model_category),
                           alternatives=self._alternatives(probabilities, view_index, model_category),
                           terms=self.explainer.top_terms(row, model_category), **common)

        signal = [selected.lines[n] for n in selected.signal if n in selected.lines][-3:]
        return Verdict(category=UNKNOWN, confidence=1.0 - model_p, decided_by="none",
                       evidence=[self._evidence_line(line) for line in signal],
                       alternatives=self._alternatives(probabilities, view_index, UNKNOWN), **common)

    def _alternatives(self, probabilities: np.ndarray, view_index: int, chosen: str) -> list[Alternative]:
        if view_index < 0:
            return []
        row = probabilities[view_index]
        ranked = [(self.classes[i], float(row[i])) for i in np.argsort(-row)]
        return [Alternative(category=c, score=round(p, 4)) for c, p in ranked
                if c not in (chosen, UNKNOWN) and p >= 0.01][:3]

    def diagnose(self, data: bytes | str, lang: str = "en") -> Diagnosis:
        """The full answer for one log, with texts in `lang` (en or ko)."""
        return describe(self.verdict(data), self.kb, lang, self.version)
