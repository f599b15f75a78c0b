"""Candidate selection: which lines of a (possibly huge) log are worth reading.

A CI log can be 50 MB with three relevant lines. Two linear RE2 passes over
the whole log find lines that look like errors and lines some override may
match; only those lines, a little context around them and the last lines of
the log are decoded and cleaned. Nearby lines form windows that the model
classifies one by one, so a failure buried in noise is not diluted by it.
Every cap below keeps cost and memory bounded whatever the input.
"""

from __future__ import annotations

import numpy as np

from model.rules import TAIL_LINES, Overrides, RuleSet
from model.text import Line, LineIndex, clean_lines, compile_re2, normalize

# Words real tools print when something goes wrong (or stops: prompts, stalled pulls).
_SIGNAL = compile_re2(
    rb"(?i)(?:error|\berr\b|fail|fatal|panic|denied|refused|cannot|can't|couldn't|could not|unable"
    rb"|not found|no such|timed? ?out|deadline|exceeded|killed|oom|exit code|exited with|non-zero"
    rb"|returned a|abort|invalid|unauthori[sz]ed|forbidden|conflict|already in use|already allocated"
    rb"|\bhang|\bhung\b|stuck|\b[EW]: |platform|not permitted|permission|no space|read-only|enospc|eai_again"
    rb"|econnrefused|externally.managed|debconf|please select|geographic area|configuring"
    rb"|\b(?:401|403|404|429|137)\b|not signed|signature|release file|uninitiali[sz]ed|exec format"
    rb"|manifest|toomanyrequests|rate limit|resolv|\[!+\]|traceback|exception|exiting pid)"
)

CONTEXT_BEFORE = 1
CONTEXT_AFTER = 2
MAX_SIGNAL_LINES = 400   # error-like lines kept: a few from the start, most from the end
MAX_RULE_LINES = 5000    # lines a precise override may match (all of them, unless absurdly many)
MAX_CONTEXT_LINES = 3000 # lines only a broad (anchored) pattern may match
FEW_CANDIDATES = 500     # fewer matches than this: no cap applies, one pass finds them all
CONTEXT_MATCHES = 32     # lines searched for a context regex (`requires`, `excluded_by`): first and last
MAX_WINDOW_LINES = 40    # a window longer than this is split
MAX_WINDOWS = 48
TAIL_WINDOW = 6          # the end of a log is where a failure usually shows
WRAP_WIDTH = 70          # a line at least this wide that ends mid-word may continue on the next


class Scan:
    """The selected lines of one log, and how they group into windows.

    Work is done on demand: the overrides need only their candidate lines and the
    tail; the error-like lines, the windows the model reads and their cleaning are
    computed only when something asks for them.
    """

    def __init__(self, data: bytes, index: LineIndex, lines: dict[int, Line], rule_lines: list[int]):
        self.data = data
        self.index = index
        self.lines = lines
        self.rule_lines = rule_lines
        self._signal: list[int] | None = None
        self._tail: list[int] | None = None
        self._windows: list[list[int]] | None = None

    @property
    def total_lines(self) -> int:
        return self.index.count

    @property
    def signal(self) -> list[int]:
        """Lines that look like errors (a bounded number)."""
        if self._signal is None:
            offsets = bounded_offsets(_SIGNAL, self.data, MAX_SIGNAL_LINES // 5,
                                      MAX_SIGNAL_LINES - MAX_SIGNAL_LINES // 5)
            self._signal = _unique_lines(self.index, offsets, MAX_SIGNAL_LINES).tolist()
        return self._signal

    @property
    def tail(self) -> list[int]:
        """The last non-blank lines (TAIL_WINDOW of them) that the windows start from."""
        if self._tail is None:
            self._tail = _tail(self.index, self.lines, TAIL_WINDOW)
        return self._tail

    @property
    def windows(self) -> list[list[int]]:
        """Error-like lines, the tail and override candidates with their context, grouped."""
        if self._windows is None:
            seeds = sorted(set(self.signal) | set(self.tail) | set(self.rule_lines[-MAX_SIGNAL_LINES:]))
            self._windows = _windows(seeds, self.index.count)
        return self._windows

    def ensure(self, numbers) -> None:
        """Clean the given lines, if they are not cleaned yet."""
        wanted = sorted(n for n in set(numbers) if n not in self.lines and 1 <= n <= self.index.count)
        self.lines.update((line.number, line) for line in clean_lines(list(zip(wanted, self.index.raws(wanted)))))

    def get(self, numbers) -> list[Line]:
        numbers = list(numbers)
        self.ensure(numbers)
        return [self.lines[n] for n in numbers]

    def overrides(self, rules: RuleSet) -> Overrides:
        """The overrides that fire. Lines cut by a terminal are joined and tried only when nothing fired."""
        tail = self._tail[-TAIL_LINES:] if self._tail is not None else _tail(self.index, self.lines, TAIL_LINES)
        candidates, tail = self.get(self.rule_lines), self.get(tail)

        def context(regex: int) -> list[Line]:
            offsets = bounded_offsets(rules.relaxed(regex), self.data, CONTEXT_MATCHES, CONTEXT_MATCHES)
            numbers = _unique_lines(self.index, offsets, 2 * CONTEXT_MATCHES).tolist()
            return [line for line in self.get(numbers) if rules.matches(regex, line.text)]

        found = rules.evaluate(candidates, tail, context)
        if not found.hits:
            joins = self.wrapped()
            if joins:
                found = rules.evaluate(candidates + joins, tail, context)
        return found

    def wrapped(self) -> list[Line]:
        """Long error-like lines that look cut by a terminal, joined with the next line.

        A message wrapped at the terminal's width ("... does not have a Re" / "lease file.")
        matches no pattern in either half; the join is tried with and without a space.
        """
        long = [n for n in sorted(set(self.signal) | set(self.rule_lines))
                if n < self.index.count and self.index.width(n) >= WRAP_WIDTH]
        self.ensure(long + [n + 1 for n in long])
        joins = []
        for number in long:
            line, after = self.lines[number], self.lines[number + 1]
            if not after.text or not (line.text[-1:].isalnum() or line.text[-1:] in "-_/'\",:("):
                continue
            joins.append(Line(number, line.display + after.text, line.text + after.text))
            joins.append(Line(number, f"{line.display} {after.text}", f"{line.text} {after.text}"))
        return joins


def bounded_offsets(regex, data: bytes, head: int, tail: int) -> list[int]:
    """Start offsets of a pattern's matches: all of them, or the first `head` and the last `tail`.

    Each match costs a Python call, so a log with millions of matching lines would
    cost seconds; past `head` matches the rest of the log is searched from its end,
    in growing chunks, until `tail` matches are found. Cost stays bounded by head + tail.
    """
    first: list[int] = []
    position = 0
    for match in regex.finditer(data):
        first.append(match.start())
        position = match.end()
        if len(first) >= head:
            break
    else:
        return first
    last: list[int] = []
    end, chunk = len(data), 1 << 16
    while end > position and len(last) < tail:
        start = max(position, end - chunk)
        if start > position:
            start = data.rfind(b"\n", position, start) + 1 or start
        last = [m.start() for m in regex.finditer(data, start, end)] + last
        end, chunk = start, chunk * 2
    return first + last[-tail:]


def _unique_lines(index: LineIndex, offsets: list[int], limit: int) -> np.ndarray:
    """Distinct line numbers of `offsets`, at most `limit`: a fifth from the start, the rest from the end."""
    if len(offsets) <= 64:  # the usual handful: plain Python beats numpy's per-call cost
        return np.array(sorted(set(index.numbers(offsets).tolist())), dtype=np.int64)
    numbers = np.unique(index.numbers(np.asarray(offsets, dtype=np.int64)))
    if len(numbers) > limit:
        head = limit // 5
        numbers = np.concatenate([numbers[:head], numbers[-(limit - head):]])
    return numbers


def _tail(index: LineIndex, lines: dict[int, Line], count: int) -> list[int]:
    """The last `count` non-blank lines among the last 200 (cleaned and cached in `lines`)."""
    found: list[int] = []
    for reach in (2 * count, 40, 200):
        start = max(1, index.count - reach + 1)
        wanted = [n for n in range(start, index.count + 1) if n not in lines]
        fresh = list(zip(wanted, index.raws(wanted)))
        lines.update((line.number, line) for line in clean_lines(fresh))
        found = [n for n in range(start, index.count + 1) if lines[n].text][-count:]
        if len(found) >= count or start == 1:
            break
    return found


def _windows(numbers: list[int], total: int) -> list[list[int]]:
    """Group lines with their context into windows; merge neighbours, split long runs."""
    runs: list[list[int]] = []
    for n in numbers:
        start, end = max(1, n - CONTEXT_BEFORE), min(total, n + CONTEXT_AFTER)
        if runs and start <= runs[-1][1] + 1:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    windows = []
    for start, end in runs:
        for chunk in range(start, end + 1, MAX_WINDOW_LINES):
            windows.append(list(range(chunk, min(end, chunk + MAX_WINDOW_LINES - 1) + 1)))
    if len(windows) > MAX_WINDOWS:
        head = MAX_WINDOWS // 4
        windows = windows[:head] + windows[-(MAX_WINDOWS - head):]
    return windows


def scan(data: bytes | str, rules: RuleSet) -> Scan:
    """Find the lines worth reading in one log (see `Scan` for what is computed later)."""
    data = normalize(data)
    index = LineIndex(data)
    # One pass with both prefilters finds every candidate when there are few (nearly always); past that,
    # each is capped on its own, so that broad matches never crowd out the precise ones.
    both = bounded_offsets(rules.primary, data, FEW_CANDIDATES, 0)
    if len(both) < FEW_CANDIDATES:
        rule_numbers = _unique_lines(index, both, FEW_CANDIDATES)
    else:
        precise, broad = (bounded_offsets(regex, data, limit // 5, limit - limit // 5)
                          for regex, limit in zip(rules.unions, (MAX_RULE_LINES, MAX_CONTEXT_LINES)))
        rule_numbers = np.union1d(_unique_lines(index, precise, MAX_RULE_LINES),
                                  _unique_lines(index, broad, MAX_CONTEXT_LINES))
    return Scan(data, index, {}, rule_numbers.tolist())
