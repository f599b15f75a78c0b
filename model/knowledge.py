"""The knowledge base: one validated YAML entry per category id.

Each entry says what the failure is, why it happens, how to fix it and which
regex overrides decide it outright. Entries are data; this module only
validates them (pydantic) and compiles their patterns (RE2) at load time, so a
broken entry stops start-up with its file and field named.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model.errors import KnowledgeError

UNKNOWN = "unknown"
LANGUAGES = ("en", "ko")

# Commands that delete data must be marked destructive and say what they delete.
_DESTRUCTIVE_COMMAND = re.compile(
    r"\bprune\b|\brm\s+-[a-zA-Z]*[rf]|\bdocker\s+(container\s+|volume\s+|image\s+)?rm\b|\brmi\b"
    r"|\bdown\s+(-v|--volumes)\b|\bvolume\s+rm\b|\bdropdb\b|\bDROP\s+DATABASE\b",
    re.IGNORECASE,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    """A sentence or paragraph in every supported language."""

    en: str = Field(min_length=1)
    ko: str = Field(min_length=1)

    def get(self, lang: str) -> str:
        """The text in `lang`, English when that language is missing."""
        return getattr(self, lang, None) or self.en


class Step(_Strict):
    """One remediation step: a shell command and one line on what it does."""

    command: str = Field(min_length=1)
    description: Text
    destructive: bool = False
    deletes: Text | None = None

    @model_validator(mode="after")
    def _destructive_says_what_it_deletes(self) -> "Step":
        if _DESTRUCTIVE_COMMAND.search(self.command) and not self.destructive:
            raise ValueError(f"command {self.command!r} deletes data: mark it destructive: true")
        if self.destructive and self.deletes is None:
            raise ValueError("a destructive step must say what it deletes (field 'deletes')")
        return self


class Reference(_Strict):
    title: str = Field(min_length=1)
    url: str = Field(pattern=r"^https://")


class Pattern(_Strict):
    """A high-precision regex override (RE2 syntax).

    `regex` is searched in every cleaned line of a log: ANSI codes removed,
    carriage-return rewrites resolved, line prefixes (timestamps, BuildKit step
    ids, compose service names) stripped; never masked. `^` may only open the
    pattern and `$` only close it. Every regex in `requires` must also match
    some line of the same log. `scope: tail` limits the match to the last
    non-blank lines, for failures that show as output that simply stops. A
    line that also matches a regex of `unless` does not count (RE2 has no
    lookaround, so exclusions are listed here instead); a regex of
    `excluded_by` that matches any line of the log stops the pattern.
    `priority`, when set, replaces the category's for this pattern (a failure
    that is a root cause in one wording and a symptom in another). A `veto`
    pattern never decides: when it matches, the model may not answer its
    category for that log unless another of the category's patterns fires
    (a refused connection to a web port looks like a database's to the model,
    which never sees port numbers).
    """

    id: str = Field(pattern=r"^[a-z0-9-]+/[a-z0-9-]+$")
    regex: str = Field(min_length=3)
    requires: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    excluded_by: tuple[str, ...] = ()
    scope: Literal["any", "tail"] = "any"
    score: float = Field(default=0.95, gt=0.5, le=1.0)
    priority: int | None = Field(default=None, ge=0, le=100)
    veto: bool = False
    description: str = Field(min_length=1)
    examples: tuple[str, ...] = Field(min_length=1)
    near_misses: tuple[str, ...] = Field(min_length=1)

    @field_validator("regex", "requires", "unless", "excluded_by")
    @classmethod
    def _compiles_under_re2(cls, value):
        from model.rules import check_pattern

        for regex in (value,) if isinstance(value, str) else value:
            check_pattern(regex)
        return value


class Entry(_Strict):
    """Everything logmedic knows about one failure category."""

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    seed: bool = False
    priority: int = Field(ge=0, le=100)
    transient: bool
    title: Text
    summary: Text
    explanation: Text
    causes: tuple[Text, ...] = Field(min_length=1)
    remediation: tuple[Step, ...]
    references: tuple[Reference, ...] = ()
    patterns: tuple[Pattern, ...] = ()

    @model_validator(mode="after")
    def _pattern_ids_belong_to_entry(self) -> "Entry":
        for pattern in self.patterns:
            if not pattern.id.startswith(self.id + "/"):
                raise ValueError(f"pattern id {pattern.id!r} must start with '{self.id}/'")
        if self.id != UNKNOWN and not self.remediation:
            raise ValueError("a failure category needs at least one remediation step")
        return self


class KnowledgeBase:
    """The loaded, validated entries, by id, in file-name order."""

    def __init__(self, entries: list[Entry]):
        self.entries = {entry.id: entry for entry in entries}

    def __getitem__(self, category: str) -> Entry:
        return self.entries[category]

    def __contains__(self, category: str) -> bool:
        return category in self.entries

    def __iter__(self):
        return iter(self.entries.values())

    @property
    def ids(self) -> list[str]:
        return list(self.entries)

    def patterns(self):
        """Every (entry, pattern) pair, in a stable order."""
        for entry in self:
            for pattern in entry.patterns:
                yield entry, pattern


def _field_path(loc) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def load_entry(path: Path) -> Entry:
    """Read and validate one knowledge-base file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise KnowledgeError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(raw, dict):
        raise KnowledgeError(f"{path}: expected a mapping at the top level")
    try:
        entry = Entry.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise KnowledgeError(f"{path}: {problems}") from exc
    if entry.id != path.stem:
        raise KnowledgeError(f"{path}: id {entry.id!r} does not match the file name")
    return entry


def load_knowledge_base(directory: Path) -> KnowledgeBase:
    """Load every `*.yaml` entry of `directory`; the `unknown` entry is required."""
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise KnowledgeError(f"{directory}: no knowledge-base entries (*.yaml) found")
    kb = KnowledgeBase([load_entry(path) for path in files])
    if UNKNOWN not in kb:
        raise KnowledgeError(f"{directory}: the '{UNKNOWN}' entry is missing")
    return kb
