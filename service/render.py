"""Diagnoses as people read them: a terminal page and Markdown (CI summaries, chat)."""

from __future__ import annotations

import re
import textwrap

import click

from model.diagnosis import Diagnosis

LABELS = {
    "en": {
        "decided_rule": "decided by rule", "decided_model": "decided by the model", "decided_none": "no known failure matched",
        "confidence": "confidence", "transient": "transient: a retry may succeed", "why": "Why",
        "causes": "Likely causes", "fix": "Fix", "evidence": "Evidence", "also": "Also in this log",
        "alternatives": "Other candidates", "destructive": "destructive", "deletes": "deletes",
        "terms": "terms", "references": "References", "line": "line",
    },
    "ko": {
        "decided_rule": "규칙으로 판정", "decided_model": "모델로 판정", "decided_none": "알려진 실패와 일치하지 않음",
        "confidence": "신뢰도", "transient": "일시적 문제: 다시 시도하면 성공할 수 있음", "why": "원인 설명",
        "causes": "가능한 원인", "fix": "해결 방법", "evidence": "근거", "also": "이 로그의 다른 실패",
        "alternatives": "다른 후보", "destructive": "삭제 주의", "deletes": "삭제 대상",
        "terms": "단어", "references": "참고 자료", "line": "줄",
    },
}


def _decision(d: Diagnosis, t: dict) -> str:
    if d.decided_by == "rule":
        return f"{t['decided_rule']} `{d.basis.rule}`"
    if d.decided_by == "model":
        terms = ", ".join(d.basis.terms[:4])
        return f"{t['decided_model']}" + (f" ({t['terms']}: {terms})" if terms else "")
    return t["decided_none"]


def _fence(text: str, info: str = "") -> str:
    """A code block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def markdown(d: Diagnosis, path: str | None = None) -> str:
    """A Markdown page: ready for a GitHub job summary, a GitLab note or a chat message."""
    t = LABELS[d.lang]
    out = [f"### logmedic: {d.title} (`{d.category}`)"]
    if path:
        out.append(f"`{path}`")
    meta = f"**{t['confidence']}:** {d.confidence:.2f} · {_decision(d, t)}"
    if d.transient:
        meta += f" · {t['transient']}"
    out += [meta, "", d.summary, "", f"**{t['why']}.** {d.explanation}"]
    if d.remediation:
        out += ["", f"**{t['fix']}**", ""]
        for number, step in enumerate(d.remediation, 1):
            warning = f" ⚠️ **{t['destructive']}** ({t['deletes']}: {step.deletes})" if step.destructive else ""
            out.append(f"{number}. {step.description}{warning}")
            out.append(textwrap.indent(_fence(step.command, "sh"), "   "))
    if d.evidence:
        body = "\n".join(f"{e.line:>5} | {e.text}" for e in d.evidence)
        out += ["", f"**{t['evidence']}**", "", _fence(body, "text")]
    if d.also:
        out += ["", f"**{t['also']}:** " + ", ".join(f"{f.title} (`{f.category}`, {f.confidence:.2f})" for f in d.also)]
    if d.alternatives:
        out += ["", f"_{t['alternatives']}: " + ", ".join(f"`{a.category}` {a.score:.2f}" for a in d.alternatives) + "_"]
    if d.references:
        out += ["", f"{t['references']}: " + " · ".join(f"[{r.title}]({r.url})" for r in d.references)]
    return "\n".join(out) + "\n"


def text(d: Diagnosis, path: str | None = None, color: bool = False) -> str:
    """A terminal page: what failed, why, what to run, and the lines that show it."""
    t = LABELS[d.lang]

    def style(s, **kw):
        return click.style(s, **kw) if color else s

    mark = style("✔ unknown" if d.category == "unknown" else f"✖ {d.category}", fg="green" if d.category == "unknown" else "red", bold=True)
    head = f"{mark} — {d.title}"
    if path:
        head = f"{style(path, dim=True)}\n{head}"
    out = [head, f"  {t['confidence']} {d.confidence:.2f}, {_decision(d, t)}" + (f"; {t['transient']}" if d.transient else ""),
           "", textwrap.fill(d.summary, 100, initial_indent="  ", subsequent_indent="  "),
           "", style(t["why"], bold=True), textwrap.fill(d.explanation, 100, initial_indent="  ", subsequent_indent="  ")]
    if d.remediation:
        out += ["", style(t["fix"], bold=True)]
        for number, step in enumerate(d.remediation, 1):
            out.append(f"  {number}. {style(step.command, fg='cyan', bold=True)}")
            out.append(f"     {step.description}")
            if step.destructive:
                out.append("     " + style(f"⚠ {t['destructive']} — {t['deletes']}: {step.deletes}", fg="yellow"))
    if d.evidence:
        out += ["", style(t["evidence"], bold=True)]
        line_label = t["line"]
        out += [f"  {style(f'{line_label} {e.line:>4}', dim=True)}  {e.text}" for e in d.evidence]
    if d.also:
        out += ["", style(t["also"], bold=True)] + [f"  - {f.category}: {f.title} ({f.confidence:.2f})" for f in d.also]
    if d.alternatives:
        out += ["", f"{t['alternatives']}: " + ", ".join(f"{a.category} {a.score:.2f}" for a in d.alternatives)]
    return "\n".join(out) + "\n"
