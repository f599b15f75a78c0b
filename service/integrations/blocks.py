"""Diagnoses as Slack Block Kit messages that always fit Slack's limits, however long the log.

Slack refuses a whole message when one element breaks a limit, so every text
is cut here, deliberately and visibly ("…(truncated)"), before it is sent.
Nothing of the submitted log reaches a block except the evidence lines, which
the engine has already redacted. mrkdwn needs `&`, `<` and `>` escaped (else
`<@U…>` in a log would mention someone), and a code block ends at the next
three backticks, so backtick runs inside code are broken up.
"""

from __future__ import annotations

import re

from model.diagnosis import Diagnosis
from service.render import LABELS

MAX_BLOCKS = 50          # per message
SECTION_TEXT = 3000      # a section's text
HEADER_TEXT = 150        # a header's plain_text
CONTEXT_ELEMENTS = 10    # elements in one context block
CONTEXT_TEXT = 2000      # kept well under Slack's per-element limit; these lines are short anyway
FALLBACK_TEXT = 300      # the notification text; the blocks carry the content
MAX_STEPS = 12           # remediation steps shown (the knowledge base has at most 7)
COMMAND_CHARS = 1500
DESCRIPTION_CHARS = 900
EVIDENCE_LINE_CHARS = 500
TRUNCATED = "…(truncated)"

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_BACKTICK_RUN = re.compile(r"`(?=``)")
_DECIDED = {"rule": "decided_rule", "model": "decided_model", "none": "decided_none"}

USAGE = {
    "en": ("*Usage:* `{command} <paste the failed build, CI or container log>`\n"
           "logmedic answers with what failed, why, the commands that fix it and the log lines that show it. "
           "Long logs can go in a code block. In a channel, mention the app with the log and the answer comes in the thread."),
    "ko": ("*사용법:* `{command} <실패한 빌드, CI 또는 컨테이너 로그 붙여넣기>`\n"
           "logmedic이 무엇이 실패했는지, 원인, 해결 명령과 근거가 되는 로그 줄을 알려 줍니다. "
           "긴 로그는 코드 블록에 넣어도 됩니다. 채널에서는 앱을 멘션하고 로그를 붙이면 스레드로 답합니다."),
}


def escape(text: str) -> str:
    """Text made safe for mrkdwn: `&`, `<` and `>` as entities (no mentions, no links)."""
    return text.translate(_ESCAPES)


def clip(raw: str, limit: int, mrkdwn: bool = True) -> str:
    """`raw` escaped (for mrkdwn) and cut to at most `limit` characters, the cut marked by TRUNCATED."""
    out = escape(raw) if mrkdwn else raw
    if len(out) <= limit:
        return out
    budget = limit - len(TRUNCATED)
    if budget < 0:  # no room for the marker: an ellipsis alone says it was cut
        return "…"[:limit]
    keep = min(len(raw), budget)
    while True:  # escaping lengthens text, so cut the raw text until its escaped form fits
        piece = escape(raw[:keep]) if mrkdwn else raw[:keep]
        if len(piece) <= budget:
            return piece + TRUNCATED
        keep -= len(piece) - budget


def code(raw: str, limit: int) -> str:
    """A mrkdwn code block of at most `limit` characters that no backtick inside can close early."""
    return "```\n" + clip(_BACKTICK_RUN.sub("`\u200b", raw), limit - 8) + "\n```"


def _text(kind: str, text: str) -> dict:
    return {"type": kind, "text": text}


def _section(text: str) -> dict:
    return {"type": "section", "text": _text("mrkdwn", text)}


def _context(*texts: str) -> dict:
    return {"type": "context", "elements": [_text("mrkdwn", t) for t in texts if t][:CONTEXT_ELEMENTS]}


def _joined(items: list[str], limit: int, sep: str = " · ") -> str:
    """Whole items joined while they fit (a link is never cut in half), then the marker."""
    out = ""
    for item in items:
        candidate = item if not out else out + sep + item
        if len(candidate) > limit - len(TRUNCATED) - len(sep):
            return out + sep + TRUNCATED if out else TRUNCATED
        out = candidate
    return out


def _step(number: int, step, t: dict) -> str:
    text = f"{number}. {clip(step.description, DESCRIPTION_CHARS)}"
    if step.destructive:
        deletes = f" — {t['deletes']}: {clip(step.deletes, DESCRIPTION_CHARS)}" if step.deletes else ""
        text += f"\n:warning: *{t['destructive']}*{deletes}"
    return text + "\n" + code(step.command, COMMAND_CHARS + 8)


def _evidence(d: Diagnosis, t: dict) -> str:
    """The evidence lines in one code block: whole lines while they fit, then the marker."""
    head = f"*{t['evidence']}*\n"
    budget = SECTION_TEXT - len(head) - 8 - len(TRUNCATED) - 1
    lines: list[str] = []
    used = 0
    for item in d.evidence:
        line = f"{item.line:>5} | {item.text}"
        line = _BACKTICK_RUN.sub("`\u200b", line)
        line = clip(line, EVIDENCE_LINE_CHARS)
        if used + len(line) + 1 > budget:
            lines.append(TRUNCATED)
            break
        lines.append(line)
        used += len(line) + 1
    return head + "```\n" + "\n".join(lines) + "\n```"


def fallback_text(d: Diagnosis) -> str:
    """The message's plain `text`: what notifications and screen readers show."""
    t = LABELS[d.lang]
    return clip(f"logmedic: {d.title} ({d.category}, {t['confidence']} {d.confidence:.2f})", FALLBACK_TEXT)


def diagnosis_blocks(d: Diagnosis) -> list[dict]:
    """The diagnosis as Block Kit: title, explanation, commands as code, confidence, evidence."""
    t = LABELS[d.lang]
    decision = t[_DECIDED[d.decided_by]] + (f" `{escape(d.basis.rule)}`" if d.decided_by == "rule" and d.basis.rule else "")
    facts = [f"`{escape(d.category)}`", f"*{t['confidence']}:* {d.confidence:.2f}", clip(decision, 300)]
    if d.transient:
        facts.append(clip(t["transient"], 300))
    blocks = [
        {"type": "header", "text": _text("plain_text", clip(f"logmedic: {d.title}", HEADER_TEXT, mrkdwn=False))},
        _context(*facts),
        _section(clip(d.summary, SECTION_TEXT)),
        _section(clip(f"*{t['why']}.* {d.explanation}", SECTION_TEXT)),
    ]
    if d.remediation:
        blocks.append(_section(f"*{t['fix']}*"))
        shown = d.remediation[:MAX_STEPS]
        blocks += [_section(_step(n, step, t)) for n, step in enumerate(shown, 1)]
        if len(d.remediation) > len(shown):
            blocks.append(_context(TRUNCATED))
    if d.evidence:
        blocks.append(_section(_evidence(d, t)))
    extra = []
    if d.also:
        extra.append(f"*{t['also']}:* " + _joined([f"`{escape(f.category)}` {f.confidence:.2f}" for f in d.also],
                                                 CONTEXT_TEXT - 40, ", "))
    if d.alternatives:
        extra.append(f"_{t['alternatives']}:_ " + _joined([f"`{escape(a.category)}` {a.score:.2f}" for a in d.alternatives],
                                                          CONTEXT_TEXT - 40, ", "))
    if d.references:
        links = [f"<{r.url}|{clip(r.title, 150).replace('|', '/')}>" for r in d.references if "|" not in r.url and ">" not in r.url]
        extra.append(_joined(links, CONTEXT_TEXT))
    extra.append(f"model {escape(d.model_version)} · {d.lines} lines")
    blocks.append(_context(*extra))
    return fit(blocks)


def usage_blocks(lang: str, command: str = "/logmedic") -> list[dict]:
    """A short how-to, for an empty slash command or a mention without a log."""
    return fit([_section(clip(USAGE[lang].format(command=command), SECTION_TEXT))])


def fit(blocks: list[dict]) -> list[dict]:
    """At most MAX_BLOCKS blocks, the last one saying that more were cut."""
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    return blocks[:MAX_BLOCKS - 1] + [_context(TRUNCATED)]
