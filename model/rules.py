"""Regex overrides: high-precision patterns from the knowledge base, run with RE2.

Logs are untrusted input, so every pattern is compiled by RE2 (linear time,
no backtracking); a pattern RE2 cannot compile stops loading. One union of all
patterns finds candidate lines in the whole log in a single pass; an `re2.Set`
then tells, per cleaned line, exactly which patterns match.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import re2

from model.text import Line, compile_re2

_FLAGS_PREFIX = re2.compile(r"^\(\?[a-zA-Z]+\)")
TAIL_LINES = 3

_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.max_mem = 256 << 20
# The engine only asks where a pattern matches, never what its groups hold: without capturing groups RE2
# needs no second pass over a match to fill them (the union of all patterns has 85), a third faster.
_SEARCH_OPTIONS = re2.Options()
_SEARCH_OPTIONS.log_errors = False
_SEARCH_OPTIONS.max_mem = 256 << 20
_SEARCH_OPTIONS.never_capture = True


def _anchors(regex: str) -> list[tuple[int, str]]:
    """Positions of `^` and `$` outside character classes and escapes."""
    found, i, in_class = [], 0, False
    while i < len(regex):
        char = regex[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class, i = True, i + 1
            i += regex[i:i + 1] == "^"
            i += regex[i:i + 1] == "]"
            continue
        elif char in "^$":
            found.append((i, char))
        i += 1
    return found


def check_pattern(regex: str) -> None:
    """Raise ValueError unless `regex` compiles under RE2 and anchors only its ends."""
    try:
        compile_re2(regex)
    except re2.error as exc:
        raise ValueError(f"not a valid RE2 pattern (linear-time engine): {regex!r}: {exc}") from None
    flags = _FLAGS_PREFIX.match(regex)
    start = flags.end() if flags else 0
    for position, char in _anchors(regex):
        if not ((char == "^" and position == start) or (char == "$" and position == len(regex) - 1)):
            raise ValueError(f"{regex!r}: '{char}' may only open ('^') or close ('$') the pattern")


def relax(regex: str) -> str:
    """The pattern without its end anchors: matches a superset, on raw lines with prefixes."""
    flags = _FLAGS_PREFIX.match(regex)
    head, body = (regex[:flags.end()], regex[flags.end():]) if flags else ("", regex)
    if body.startswith("^"):
        body = body[1:]
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    return head + body


@dataclass(frozen=True)
class Rule:
    category: str
    pattern_id: str
    priority: int
    score: float
    description: str
    scope: str
    regex: int
    requires: tuple[int, ...]
    unless: tuple[int, ...]
    excluded_by: tuple[int, ...]
    veto: bool = False


@dataclass
class RuleHit:
    """A rule that fired: the pattern behind it and the lines that prove it."""

    rule: Rule
    lines: list[Line]
    context: list[Line] = field(default_factory=list)


class Overrides(NamedTuple):
    hits: list[RuleHit]
    vetoed: set[str]


class RuleSet:
    """All overrides of a knowledge base, compiled once."""

    # Which patterns match a cleaned line, for lines seen recently: the same lines recur from log to log
    # (build steps, tool banners), and a lookup costs a fraction of matching the set again.
    KNOWN_LINES = 20_000
    KNOWN_CHARS = 1000  # longer lines are matched every time (memory stays under ~25 MB)

    def __init__(self, pattern_pairs):
        regexes: dict[str, int] = {}

        def index(regex: str) -> int:
            return regexes.setdefault(regex, len(regexes))

        pairs = list(pattern_pairs)
        self.rules = [
            Rule(entry.id, p.id, entry.priority if p.priority is None else p.priority, p.score, p.description,
                 p.scope, index(p.regex), tuple(index(r) for r in p.requires), tuple(index(u) for u in p.unless),
                 tuple(index(x) for x in p.excluded_by), p.veto)
            for entry, p in pairs
        ]
        self.regexes = list(regexes)
        self._by_regex: dict[int, list[int]] = defaultdict(list)  # regex -> the rules it is the pattern of
        for number, rule in enumerate(self.rules):
            self._by_regex[rule.regex].append(number)
        self._compiled = [re2.compile(regex, _SEARCH_OPTIONS) for regex in self.regexes]
        self._set = re2.Set.SearchSet(_SET_OPTIONS)
        for regex in self.regexes:
            self._set.Add(regex)
        self._set.Compile()
        self._known: dict[str, frozenset[int]] = {}
        # Two whole-log passes find candidate lines. "Precise" regexes match raw lines exactly as they
        # match cleaned ones (no anchors): their lines are the failures, all kept. "Broad" ones are
        # anchored patterns searched without their anchors: supersets, capped. Tail-scoped patterns only
        # read the tail, which is always read. The context regexes of `requires` and `excluded_by` are
        # searched in the whole log only when a pattern that needs them has matched (`context`).
        primary = {r.regex for r in self.rules if r.scope != "tail"}
        precise = sorted(i for i in primary if relax(self.regexes[i]) == self.regexes[i])
        broad = sorted(primary - set(precise))
        self._precise, self._broad = (self._union(indexes) for indexes in (precise, broad))
        self._primary = self._union(sorted(primary))  # both at once: one pass when matches are few
        self._relaxed = {i: self._union([i]) for r in self.rules for i in (*r.requires, *r.excluded_by)}

    def _union(self, indexes: list[int]):
        body = "|".join(f"(?:{relax(self.regexes[i])})" for i in indexes) or "[^\\x00-\\x{10FFFF}]"
        return re2.compile(body.encode("utf-8"), _SEARCH_OPTIONS)

    @property
    def unions(self):
        """The two whole-log prefilters: (precise, broad)."""
        return self._precise, self._broad

    @property
    def primary(self):
        """Both prefilters in one regex."""
        return self._primary

    def relaxed(self, regex: int):
        """A context regex without its anchors, compiled for searching the whole log."""
        return self._relaxed[regex]

    def matches(self, regex: int, text: str) -> bool:
        return self._compiled[regex].search(text) is not None

    def _matches(self, lines: list[Line]) -> tuple[dict[int, list[Line]], dict[Line, set[int]]]:
        """Lines per regex index, and regex indexes per line."""
        by_regex: dict[int, list[Line]] = defaultdict(list)
        by_line: dict[Line, frozenset[int]] = {}
        known = self._known
        for line in lines:
            found = known.get(line.text)
            if found is None:
                found = frozenset(self._set.Match(line.text) or ())
                if len(line.text) <= self.KNOWN_CHARS:
                    if len(known) >= self.KNOWN_LINES:
                        known.clear()
                    known[line.text] = found
            by_line[line] = found
            for regex in found:
                by_regex[regex].append(line)
        return by_regex, by_line

    def evaluate(self, lines: list[Line], tail: list[Line],
                 context: Callable[[int], list[Line]] | None = None) -> "Overrides":
        """The rules that fire on these cleaned lines (tail: the last non-blank ones).

        `context(regex)` returns the lines of the whole log a context regex matches; without it,
        only the given lines are searched. A category whose pattern matched but was explained
        away (`unless`, `excluded_by`) and that no other pattern decided is `vetoed`: the model
        may not answer it from the same signal.
        """
        (anywhere, per_line), (at_end, tail_lines) = self._matches(lines), self._matches(tail)
        per_line.update(tail_lines)

        def found(regex: int) -> list[Line]:
            if regex not in anywhere and context is not None:
                anywhere[regex] = context(regex)
            return anywhere.get(regex, [])

        hits, vetoed = [], set()
        # Only the rules whose own pattern matched somewhere can fire (in knowledge-base order).
        matched = set(anywhere).union(at_end)
        for number in sorted(n for regex in matched for n in self._by_regex.get(regex, ())):
            rule = self.rules[number]
            primary = (at_end if rule.scope == "tail" else anywhere).get(rule.regex, [])
            if not primary:
                continue
            if rule.unless:
                primary = [line for line in primary if not per_line[line].intersection(rule.unless)]
            if not primary or any(found(x) for x in rule.excluded_by):
                if not rule.veto:
                    vetoed.add(rule.category)  # its signal is here, but explained by something else
                continue
            if rule.veto:
                if all(found(r) for r in rule.requires):
                    vetoed.add(rule.category)
                continue
            if all(found(r) for r in rule.requires):
                hits.append(RuleHit(rule, primary, [found(r)[0] for r in rule.requires]))
        return Overrides(hits, vetoed - {hit.rule.category for hit in hits})

    def span(self, regex: int, text: str) -> tuple[int, int] | None:
        """Where one regex matches in a cleaned line (for evidence excerpts)."""
        match = self._compiled[regex].search(text)
        return match.span() if match else None
