"""What the engine answers: a verdict (language-free) and the diagnosis people read.

The diagnosis is a pydantic model so the CLI, the HTTP API and its OpenAPI
document all share one definition of every field.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field

from model.knowledge import KnowledgeBase

DecidedBy = Literal["rule", "model", "none"]


class Evidence(BaseModel):
    line: int = Field(description="1-based line number in the submitted log")
    text: str = Field(description="the line as submitted, secrets redacted")


class Alternative(BaseModel):
    category: str
    score: float = Field(description="model probability, 0-1")


class Step(BaseModel):
    command: str
    description: str
    destructive: bool = Field(description="true when the command deletes data")
    deletes: str | None = Field(default=None, description="what a destructive command deletes")


class Reference(BaseModel):
    title: str
    url: str


class Basis(BaseModel):
    """Why this answer: the override that fired or the terms the model weighed."""

    rule: str | None = Field(default=None, description="id of the override pattern that decided")
    rule_description: str | None = None
    terms: list[str] = Field(default_factory=list, description="terms that pushed the model to this answer")
    threshold: float = Field(description="the model's abstention threshold")


class Finding(BaseModel):
    """A further failure the same log shows."""

    category: str
    title: str
    decided_by: DecidedBy
    confidence: float
    evidence: list[Evidence]


class Diagnosis(BaseModel):
    """logmedic's answer for one log."""

    category: str = Field(description="a category id, or 'unknown'")
    confidence: float = Field(description="0-1; for 'unknown', how sure logmedic is that no known failure shows")
    decided_by: DecidedBy
    transient: bool = Field(description="true when a plain retry may succeed")
    title: str
    summary: str
    explanation: str
    causes: list[str]
    remediation: list[Step]
    evidence: list[Evidence]
    alternatives: list[Alternative]
    also: list[Finding] = Field(description="further failures shown by the same log")
    basis: Basis
    references: list[Reference]
    lang: Literal["en", "ko"]
    model_version: str
    lines: int = Field(description="lines in the submitted log")


class Verdict(BaseModel):
    """The language-free decision, before texts are attached."""

    category: str
    confidence: float
    decided_by: DecidedBy
    evidence: list[Evidence]
    alternatives: list[Alternative]
    also: list[tuple[str, DecidedBy, float, list[Evidence]]] = []
    rule: str | None = None
    rule_description: str | None = None
    terms: list[str] = []
    threshold: float
    lines: int


@lru_cache(maxsize=256)
def _texts(kb: KnowledgeBase, category: str, lang: str) -> dict:
    """The knowledge base's fixed part of an answer, in `lang` (built once per category and language)."""
    entry = kb[category]
    return dict(
        transient=entry.transient,
        title=entry.title.get(lang),
        summary=entry.summary.get(lang),
        explanation=entry.explanation.get(lang).strip(),
        causes=[cause.get(lang) for cause in entry.causes],
        remediation=[
            Step(command=step.command, description=step.description.get(lang), destructive=step.destructive,
                 deletes=step.deletes.get(lang) if step.deletes else None)
            for step in entry.remediation
        ],
        references=[Reference(title=r.title, url=r.url) for r in entry.references],
    )


def describe(verdict: Verdict, kb: KnowledgeBase, lang: str, model_version: str) -> Diagnosis:
    """Attach the knowledge base's texts, in `lang`, to a verdict."""
    texts = _texts(kb, verdict.category, lang)
    return Diagnosis(
        category=verdict.category,
        confidence=round(verdict.confidence, 4),
        decided_by=verdict.decided_by,
        **texts,
        evidence=verdict.evidence,
        alternatives=verdict.alternatives,
        also=[Finding(category=c, title=kb[c].title.get(lang), decided_by=by, confidence=round(conf, 4), evidence=ev)
              for c, by, conf, ev in verdict.also],
        basis=Basis(rule=verdict.rule, rule_description=verdict.rule_description, terms=verdict.terms,
                    threshold=round(verdict.threshold, 4)),
        lang=lang,
        model_version=model_version,
        lines=verdict.lines,
    )
