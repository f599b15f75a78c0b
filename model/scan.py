"""Candidate selection: which lines of a (possibly huge) log are worth reading.

A CI log can be 50 MB with three relevant lines. Two linear RE2 passes over
the whole log find lines that look like errors and lines some override may
match; only those lines, a little context around them and the last lines of
the log are decoded and cleaned. Nearby lines form windows that the model
classifies one by one, so a failure buried in noise is not diluted by it.
Every cap below keeps cost and memory bounded whatever the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.rules import TAIL_LINES, RuleSet
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
    rb"[^\n]*"  # one match per line at most
)

CONTEXT_BEFORE = 1
CONTEXT_AFTER = 2
MAX_SIGNAL_LINES = 400   # error-like lines kept: a few from the start, most from the end
MAX_RULE_LINES = 20_000  # lines a precise override may match (all of them, unless absurdly many)
MAX_CONTEXT_LINES = 3000 # lines only a broad or context regex may match
MAX_WINDOW_LINES = 40    # a window longer than this is split
MAX_WINDOWS = 48
TAIL_WINDOW = 6          # the end of a log is where a failure usually shows
WRAP_WIDTH = 70          # a line at least this wide that ends mid-word may continue on the next


@dataclass
class Scan:
    """The selected lines of one log, and how they group into windows."""

    total_lines: int
    total_bytes: int
    lines: dict[int, Line]
    rule_lines: list[int]
    signal: list[int]
    tail: list[int]
    windows: list[list[int]]

    def get(self, numbers) -> list[Line]:
        return [self.lines[n] for n in numbers]

    def rule_input(self) -> tuple[list[Line], list[Line]]:
        """What the overrides read: the candidate lines (and their wrapped joins), and the last non-blank lines."""
        return self.get(self.rule_lines) + self.wrapped(), self.get(self.tail[-TAIL_LINES:])

    def wrapped(self) -> list[Line]:
        """Long error-like lines that look cut by a terminal, joined with the next line.

        A message wrapped at the terminal's width ("... does not have a Re" / "lease file.")
        matches no pattern in either half; the join is tried with and without a space.
        """
        joins = []
        for number in sorted(set(self.signal) | set(self.rule_lines)):
            line, after = self.lines.get(number), self.lines.get(number + 1)
            if (line is None or after is None or not after.text or len(line.display) < WRAP_WIDTH
                    or not (line.text[-1:].isalnum() or line.text[-1:] in "-_/'\",:(")):
                continue
            joins.append(Line(number, line.display + after.text, line.text + after.text))
            joins.append(Line(number, f"{line.display} {after.text}", f"{line.text} {after.text}"))
        return joins

    def window_text(self, numbers) -> str:
        return "\n".join(self.lines[n].text for n in numbers if self.lines[n].text)


def _unique_lines(index: LineIndex, offsets, limit: int) -> np.ndarray:
    """Distinct line numbers of `offsets`, at most `limit`: a fifth from the start, the rest from the end."""
    numbers = np.unique(index.numbers(np.asarray(offsets, dtype=np.int64)))
    if len(numbers) > limit:
        head = limit // 5
        numbers = np.concatenate([numbers[:head], numbers[-(limit - head):]])
    return numbers


def _tail(index: LineIndex, lines: dict[int, Line]) -> list[int]:
    """The last non-blank lines (cleaned and cached in `lines`)."""
    found: list[int] = []
    end = index.count
    for reach in (24, 200):
        start = max(1, index.count - reach + 1)
        fresh = [(n, index.raw(n)) for n in range(start, end + 1) if n not in lines]
        lines.update((line.number, line) for line in clean_lines(fresh))
        found = [n for n in range(start, index.count + 1) if lines[n].text][-TAIL_WINDOW:]
        if len(found) >= TAIL_WINDOW or start == 1:
            break
        end = start - 1
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
    """Select and clean the lines worth reading in one log."""
    data = normalize(data)
    index = LineIndex(data)
    precise, broad = rules.candidate_offsets(data)
    rule_numbers = np.union1d(_unique_lines(index, precise, MAX_RULE_LINES),
                              _unique_lines(index, broad, MAX_CONTEXT_LINES))
    signal_numbers = _unique_lines(index, [m.start() for m in _SIGNAL.finditer(data)], MAX_SIGNAL_LINES)

    lines: dict[int, Line] = {}
    tail = _tail(index, lines)
    seeds = sorted(set(signal_numbers.tolist()) | set(tail) | set(rule_numbers[-MAX_SIGNAL_LINES:].tolist()))
    windows = _windows(seeds, index.count)
    wanted = sorted(({n for window in windows for n in window} | set(rule_numbers.tolist())) - lines.keys())
    lines.update((line.number, line) for line in clean_lines([(n, index.raw(n)) for n in wanted]))
    signal = [n for n in signal_numbers.tolist() if n in lines]
    return Scan(index.count, len(data), lines, rule_numbers.tolist(), signal, tail, windows)
