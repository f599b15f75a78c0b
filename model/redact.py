"""Secret redaction for anything logmedic echoes back from a log.

Logs carry secrets: passwords in environment variables and URLs, registry
and cloud tokens, Authorization headers, private keys. Evidence lines are
redacted before they leave the engine, so no output format can leak them.
Every secret pattern runs with RE2 (linear time, whatever the text): Python's
`re` took seconds on some crafted lines of a few kilobytes (a run of
`PASSWORD.` made the secret-name rule cubic). RE2 has no lookaround, so the
few checks that needed one are done in the replacement functions below. The
base64-run check alone runs with `re`: one character class that cannot start
inside a run, so it is linear, and `re` calls back into Python for each run
(every evidence line with a digest has one) at a tenth of the RE2 wrapper's cost.
"""

from __future__ import annotations

import re

import re2

from model.text import compile_re2

_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False

MASK = "[REDACTED]"
MAX_CHARS = 600
MARGIN = 200  # characters around an excerpt that redaction still reads

_SECRET_WORDS = (r"[A-Za-z0-9_.-]*(?:PASSWORD|PASSWD|PASSPHRASE|PWD|SECRET|TOKEN|API[_-]?KEY|ACCESS[_-]?KEY"
                 r"|PRIVATE[_-]?KEY|CREDENTIALS?|AUTH[_-]?KEY|CLIENT[_-]?SECRET|SESSION[_-]?KEY)[A-Za-z0-9_.-]*")


def _credential(match) -> str:
    """Mask a Bearer/Basic/token credential only when it has a digit or base64 padding ("basic auth" has none)."""
    value = match.group(3)
    if any(c.isdigit() or c in "=+/" for c in value):
        return match.group(1) + match.group(2) + MASK
    return match.group(0)


# Shell variables whose names look like a secret's but hold the working directory (`-v "$PWD":/src`).
_NOT_SECRETS = frozenset({"PWD", "OLDPWD"})


def _named_value(match) -> str:
    """Mask the value of a secret-named variable, unless an earlier rule already did."""
    if match.group(3).startswith(MASK) or match.group(1).upper() in _NOT_SECRETS:
        return match.group(0)
    return match.group(1) + match.group(2) + MASK


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
    (r"\b(bearer|basic|token)(\s+)([A-Za-z0-9._~+/=][A-Za-z0-9._~+/=-]{7,})", _credential),
    # The user may be empty: redis://:password@host.
    (r"\b([a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@", r"\1" + MASK + "@"),
    (r"(--password(?:=|\s+)|--passwd(?:=|\s+)|\blogin\b[^\n]*?\s-p\s+)(?:\"[^\"]*\"|'[^']*'|[^-\s]\S*)", r"\1" + MASK),
    (r"\b(mysql(?:admin|dump)?\b[^\n]*?\s-p)\S+", r"\1" + MASK),
    (rf"\b({_SECRET_WORDS})(\"?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)", _named_value),
)
_PATTERNS = tuple(p for p, _ in _CASE_SENSITIVE) + tuple("(?i)" + p for p, _ in _ANY_CASE)
_RULES = tuple((compile_re2(p), r) for p, r in zip(_PATTERNS, [r for _, r in _CASE_SENSITIVE + _ANY_CASE]))

# Long runs of base64 that mix cases and digits look like key material; pure hex (digests) does not.
_BASE64 = r"[A-Za-z0-9+/_-]{40,}={0,2}"
_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])" + _BASE64)

# Most lines hold no secret: one pass of a set of every rule says which rules (if any) need to run.
_WHICH = re2.Set.SearchSet(_SET_OPTIONS)
for _pattern in (*_PATTERNS, _BASE64):
    _WHICH.Add(_pattern)
_WHICH.Compile()


def _key_like(match) -> str:
    run = match.group(0)
    mixed = run != run.lower() and run != run.upper() and any(digit in run for digit in "0123456789")
    return MASK if mixed else run


def _encodable(text: str) -> str:
    """The text with lone surrogates (from JSON "\\ud800" escapes) replaced: RE2 reads UTF-8 only."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def redact(text: str) -> str:
    """The text with every secret-looking value replaced by [REDACTED]."""
    text = _encodable(text)
    which = set(_WHICH.Match(text) or ())
    if not which:
        return text
    for number, (pattern, replacement) in enumerate(_RULES):
        if number in which:
            text = pattern.sub(replacement, text)
    return _BASE64_RUN.sub(_key_like, text) if len(_RULES) in which else text


def excerpt(text: str, start: int = 0, end: int = 0) -> str:
    """A redacted piece of a long line around [start, end), cut at whitespace so no secret is half-kept.

    Redaction reads MARGIN more characters on each side than the piece keeps, and runs before the
    cut: cutting first could separate `Authorization: Basic` or `-p` from the credential after it
    and leave the credential bare at the start of the piece, where nothing marks it as one.
    """
    if len(text) <= MAX_CHARS:
        return redact(text)
    left = max(0, min(start, len(text)) - MAX_CHARS // 3)
    wide_left = max(0, left - MARGIN)
    wide = redact(text[wide_left:left + MAX_CHARS + MARGIN])
    # Masks change lengths a little; the piece stays where it was relative to the wide window.
    offset = min(left - wide_left, len(wide))
    piece = wide[offset:offset + MAX_CHARS]
    if left > 0:
        piece = "… " + piece.split(None, 1)[-1] if " " in piece else "…"
    if left + MAX_CHARS < len(text):
        piece = piece.rsplit(None, 1)[0] + " …" if " " in piece else "…"
    return piece
