"""Secret redaction for anything logmedic echoes back from a log.

Logs carry secrets: passwords in environment variables and URLs, registry
and cloud tokens, Authorization headers, private keys. Evidence lines are
redacted before they leave the engine, so no output format can leak them.
Inputs here are short (one evidence line), so Python's `re` is safe to use.
"""

from __future__ import annotations

import re

MASK = "[REDACTED]"
MAX_CHARS = 600

_SECRET_WORDS = (r"[A-Za-z0-9_.-]*(?:PASSWORD|PASSWD|PASSPHRASE|PWD|SECRET|TOKEN|API[_-]?KEY|ACCESS[_-]?KEY"
                 r"|PRIVATE[_-]?KEY|CREDENTIALS?|AUTH[_-]?KEY|CLIENT[_-]?SECRET|SESSION[_-]?KEY)[A-Za-z0-9_.-]*")

# (pattern, replacement): the replacement keeps the name and drops the value.
# Token formats are case-sensitive; names of secrets (password=, Authorization:) are not.
_CASE_SENSITIVE = (
    (r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*", "-----BEGIN PRIVATE KEY----- " + MASK),
    (r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}\b", MASK),
    (r"\b(gh[pousr]_)[A-Za-z0-9]{20,255}\b", r"\1" + MASK),
    (r"\bgithub_pat_[A-Za-z0-9_]{20,255}", "github_pat_" + MASK),
    (r"\bglpat-[A-Za-z0-9_-]{20,}", "glpat-" + MASK),
    (r"\bxox[abposre]-[A-Za-z0-9-]{8,}", "xox-" + MASK),
    (r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+", "https://hooks.slack.com/services/" + MASK),
    (r"\bnpm_[A-Za-z0-9]{30,}", "npm_" + MASK),
    (r"\bAIza[0-9A-Za-z_-]{30,}", MASK),
    (r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}", MASK),
    (r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", MASK),
)
_ANY_CASE = (
    (r"\b((?:proxy-)?authorization\s*[:=]\s*)(?:\"[^\"]*\"|'[^']*'|[^\s,;\"']+(?:[ \t]+[^\s,;\"']+)?)", r"\1" + MASK),
    # A credential after Bearer/Basic/token has digits or base64 padding; "basic auth challenge" does not.
    (r"\b(bearer|basic|token)(\s+)(?=[A-Za-z0-9._~+/=-]*[0-9=+/])(?!-)[A-Za-z0-9._~+/=-]{8,}", r"\1\2" + MASK),
    (r"\b([a-z][a-z0-9+.-]*://[^\s/:@]+:)[^\s/@]+@", r"\1" + MASK + "@"),
    (r"(--password(?:=|\s+)|--passwd(?:=|\s+)|\blogin\b[^\n]*?\s-p\s+)(?!-)(?:\"[^\"]*\"|'[^']*'|\S+)", r"\1" + MASK),
    (r"\b(mysql(?:admin|dump)?\b[^\n]*?\s-p)(?!\s)(\S+)", r"\1" + MASK),
    (rf"\b({_SECRET_WORDS})(\"?\s*[=:]\s*)(?!{re.escape(MASK)})(?:\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)", r"\1\2" + MASK),
)
_RULES = tuple((re.compile(p), r) for p, r in _CASE_SENSITIVE) + tuple(
    (re.compile(p, re.IGNORECASE), r) for p, r in _ANY_CASE)

# Long runs of base64 that mix cases and digits look like key material; pure hex (digests) does not.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{40,}={0,2}")


def _key_like(match: re.Match) -> str:
    run = match.group(0)
    mixed = any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)
    return MASK if mixed else run


# Most lines hold no secret: one cheap search decides whether the full rule set runs.
_MAYBE_SECRET = re.compile(
    r"(?i)PRIVATE KEY|AKIA|ASIA|gh[pousr]_|github_pat_|glpat-|xox[abposre]-|hooks\.slack|npm_|AIza|[rs]k_(live|test)"
    r"|eyJ|auth|bearer|basic|token|://[^\s/@]+:[^\s/@]+@|pass|pwd|secret|key|credential|session"
    r"|[A-Za-z0-9+/_-]{40}")


def redact(text: str) -> str:
    """The text with every secret-looking value replaced by [REDACTED]."""
    if not _MAYBE_SECRET.search(text):
        return text
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return _BASE64_RUN.sub(_key_like, text)


def excerpt(text: str, start: int = 0, end: int = 0) -> str:
    """A redacted piece of a long line around [start, end), cut at whitespace so no secret is half-kept."""
    if len(text) > MAX_CHARS:
        left = max(0, min(start, len(text)) - MAX_CHARS // 3)
        piece = text[left:left + MAX_CHARS]
        if left > 0:
            piece = "… " + piece.split(None, 1)[-1] if " " in piece else "…"
        if left + MAX_CHARS < len(text):
            piece = piece.rsplit(None, 1)[0] + " …" if " " in piece else "…"
        text = piece
    return redact(text)
