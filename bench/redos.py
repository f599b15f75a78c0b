"""ReDoS benchmark: hostile inputs for every regex the engine runs on untrusted text.

Run: .venv/bin/python bench/redos.py [--size BYTES] [--quick]. Prints figures; asserts nothing.

For each override pattern of the knowledge base (run by RE2) and each pattern
the engine runs with Python's `re` (model/text.py, model/redact.py, the
model's tokenizer), it builds adversarial inputs from the pattern itself: long
runs of the characters the pattern repeats, the same runs behind the
pattern's literals, and lines made of a literal repeated over and over (what
makes a lazy `.*?` rescan the rest of the line from every occurrence). Each
input is one line of `--size` bytes (5 MB by default).

It reports the worst time per Python-`re` pattern, then the worst-case time
of a full classification (`Diagnoser.verdict`) per override pattern and the
overall worst, against a baseline: classifying a log of the same size made of
ordinary noise. tests/test_redos.py reuses the generator to check that every
input finishes; it never asserts a time.
"""

from __future__ import annotations

import argparse
import re
import re._constants as C
import re._parser as parser
import string
import sys
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZE = 5 * 1024 * 1024
MAX_INPUTS = 24

# Characters tried against each repeated piece of a pattern: ASCII, a few non-ASCII letters, controls.
_POOL = string.ascii_letters + string.digits + string.punctuation + " \t\x0b\x0c\x01\x7féü가⠿"
_UNBOUNDED = 32  # a repeat allowing more than this many is treated as unbounded
_CATEGORIES = {
    C.CATEGORY_DIGIT: str.isdigit, C.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
    C.CATEGORY_SPACE: str.isspace, C.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
    C.CATEGORY_WORD: lambda c: c.isalnum() or c == "_", C.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
}


def _parse(regex: str, flags: int = 0):
    """Python's parse tree of a pattern; RE2-only escapes are rewritten first (`\\x{2800}` → `\\u2800`)."""
    regex = re.sub(r"\\x\{([0-9A-Fa-f]{1,4})\}", lambda m: "\\u" + m.group(1).rjust(4, "0"), regex)
    regex = regex.replace(r"\z", r"\Z").replace(r"\pL", r"[^\W\d_]").replace(r"\pN", r"\d")
    return parser.parse(regex, flags & re.IGNORECASE)


def _in_set(items, char: str, ignore_case: bool) -> bool:
    negate, found = False, False
    for op, arg in items:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            found |= chr(arg) == char or (ignore_case and chr(arg).lower() == char.lower())
        elif op is C.RANGE:
            low, high = arg
            found |= any(low <= ord(c) <= high for c in {char, char.lower(), char.upper()} if ignore_case or c == char)
        elif op is C.CATEGORY:
            found |= _CATEGORIES.get(arg, lambda c: False)(char)
    return found != negate


def _atom_chars(op, arg, ignore_case: bool) -> set[str]:
    if op is C.LITERAL:
        char = chr(arg)
        return {char, char.swapcase()} if ignore_case else {char}
    if op is C.NOT_LITERAL:
        return {c for c in _POOL if c != chr(arg)}
    if op is C.ANY:
        return set(_POOL)
    if op is C.IN:
        return {c for c in _POOL if _in_set(arg, c, ignore_case)}
    return set()


class _Shape:
    """What a parse tree repeats and spells out: character alphabets under repeats, and literals."""

    def __init__(self, regex: str, flags: int = 0):
        self.alphabets: list[str] = []
        self.literals: list[str] = []
        tree = _parse(regex, flags)
        self._walk(tree, bool(tree.state.flags & re.IGNORECASE), None)

    def _walk(self, items, ignore_case: bool, alphabet: set | None) -> None:
        literal = ""
        for op, arg in items:
            if op is C.LITERAL:
                literal += chr(arg)
            else:
                self._literal(literal)
                literal = ""
            chars = _atom_chars(op, arg, ignore_case)
            if alphabet is not None:
                alphabet |= chars
            if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
                low, high, body = arg
                inner: set[str] | None = set() if high == C.MAXREPEAT or high > _UNBOUNDED else None
                self._walk(body, ignore_case, inner if inner is not None else alphabet)
                if inner:
                    self._alphabet(inner)
                    if alphabet is not None:
                        alphabet |= inner
            elif op is C.SUBPATTERN:
                _, add_flags, _, body = arg
                self._walk(body, ignore_case or bool(add_flags & re.IGNORECASE), alphabet)
            elif op is C.BRANCH:
                for branch in arg[1]:
                    self._walk(branch, ignore_case, alphabet)
            elif op in (C.ASSERT, C.ASSERT_NOT):
                self._walk(arg[1], ignore_case, None)
            elif op is C.ATOMIC_GROUP:
                self._walk(arg, ignore_case, alphabet)
        self._literal(literal)

    def _alphabet(self, chars: set[str]) -> None:
        key = "".join(sorted(chars))
        if key not in self.alphabets:
            self.alphabets.append(key)

    def _literal(self, text: str) -> None:
        if len(text.strip()) >= 2 and text not in self.literals:
            self.literals.append(text)


def _representatives(alphabet: str) -> str:
    """A few characters of an alphabet, one per kind (lower, upper, digit, space, punctuation, other)."""
    kinds = (str.islower, str.isupper, str.isdigit, str.isspace, lambda c: c in string.punctuation,
             lambda c: not c.isascii())
    picked = [next((c for c in alphabet if kind(c)), "") for kind in kinds]
    return "".join(c for c in picked if c) or alphabet[:1]


def _outsider(alphabet: str) -> str:
    """A character the alphabet does not contain: what makes a long match fail at the very end."""
    return next((c for c in "!#~\x01;'\"=" if c not in alphabet), "\x02")


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size] if unit else ""


def adversarial(regex: str, size: int = SIZE, flags: int = 0) -> dict[str, str]:
    """Named one-line inputs of about `size` characters built to make `regex` backtrack.

    In order of how often they hurt: runs of each repeated alphabet (one character, then a mix)
    ending in a character outside it; a literal of the pattern repeated, alone or glued to the
    alphabet's characters (each occurrence may rescan the rest of the line); a literal followed
    by a run. At most MAX_INPUTS inputs.
    """
    shape = _Shape(regex, flags)
    alphabets = [(_representatives(a), _outsider(a)) for a in shape.alphabets]
    literals = shape.literals[:4]
    inputs: dict[str, str] = {}
    for number, (reps, stop) in enumerate(alphabets):
        inputs[f"run{number}:{reps[0]!r}"] = _fill(reps[0], size - 1) + stop
        if len(reps) > 1:
            inputs[f"mix{number}:{reps!r}"] = _fill(reps, size - 1) + stop
    for literal in literals:
        inputs[f"repeat:{literal[:20]!r}"] = _fill(literal + " ", size)
    glue = "".join(dict.fromkeys(c for reps, _ in alphabets for c in reps if not c.isspace()))
    for literal in literals:
        for char in glue[:3]:
            inputs.setdefault(f"repeat:{literal[:20]!r}+{char!r}", _fill(literal + char, size))
    for number, (reps, stop) in enumerate(alphabets):
        for literal in literals[:2]:
            inputs.setdefault(f"after{number}:{literal[:20]!r}", literal + _fill(reps, size - len(literal) - 1) + stop)
    if not inputs:
        inputs["plain"] = _fill("a ", size)
    return dict(islice(inputs.items(), MAX_INPUTS))


def hostile_inputs(pattern, size: int = SIZE) -> dict[str, str | bytes]:
    """`adversarial` for a compiled pattern (Python `re` or RE2, text or bytes): inputs of its own type."""
    source = pattern.pattern
    if isinstance(source, bytes):
        source = source.decode("latin-1")
    inputs = adversarial(source, size, 0 if is_re2(pattern) else pattern.flags)
    if isinstance(pattern.pattern, bytes):
        return {label: text.encode("utf-8") for label, text in inputs.items()}
    return inputs


def engine_patterns() -> list[tuple[str, object]]:
    """Every compiled regex the engine keeps at module level for untrusted text: (name, pattern).

    Found by walking the modules, so a pattern added later is covered without editing this list.
    """
    from model import classifier, redact, rules, scan, text

    found = []
    for module in (text, scan, rules, redact, classifier):
        for name, value in vars(module).items():
            if _is_regex(value):
                found.append((f"{module.__name__}.{name}", value))
            elif isinstance(value, tuple):
                for position, item in enumerate(value):
                    pattern = item[0] if isinstance(item, tuple) and item else item
                    if _is_regex(pattern):
                        found.append((f"{module.__name__}.{name}[{position}]", pattern))
    found.append(("model.classifier.TOKEN_PATTERN", re.compile(classifier.TOKEN_PATTERN)))
    return found


def _is_regex(value) -> bool:
    return isinstance(value, re.Pattern) or (is_re2(value) and hasattr(value, "finditer"))


def is_re2(pattern) -> bool:
    """Whether a compiled pattern is run by RE2 (linear time by construction)."""
    return type(pattern).__module__ == "re2"


def consume(pattern, text: str) -> int:
    """Every match of `pattern` in `text`, the way `sub`/`finditer` walk a line; returns the count."""
    return sum(1 for _ in pattern.finditer(text))


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_python_patterns(size: int) -> None:
    """Worst time of each engine regex over its adversarial lines, and of redact() as a whole."""
    print(f"Regexes the engine runs on untrusted text, every match found (finditer), adversarial {size / 1e6:.1f} MB lines")
    worst_by_engine: dict[str, tuple[float, str]] = {}
    count = 0
    redact_inputs: dict[int, str] = {}
    for name, pattern in engine_patterns():
        inputs = hostile_inputs(pattern, size)
        if name.startswith("model.redact."):
            redact_inputs.update((hash(text), text) for text in list(inputs.values())[:3])
        times = {label: _seconds(lambda: consume(pattern, text)) for label, text in inputs.items()}
        label, worst = max(times.items(), key=lambda kv: kv[1])
        count += len(times)
        engine = "RE2" if is_re2(pattern) else "Python re"
        if worst > worst_by_engine.get(engine, (0.0, ""))[0]:
            worst_by_engine[engine] = (worst, f"{name} on {label}")
        print(f"  {name:<34} {engine:<9} {len(times):2} inputs, worst {worst * 1000:8.1f} ms  ({label})")
    print(f"  {count} runs. Overall worst per engine (RE2 times include the Python wrapper's cost per match):")
    for engine, (worst, where) in worst_by_engine.items():
        print(f"    {engine:<9} {worst * 1000:8.1f} ms: {where}")
    from model.redact import redact

    worst = max(_seconds(lambda: redact(text)) for text in redact_inputs.values())
    print(f"  redact() as a whole on {len(redact_inputs)} distinct lines built for its rules: worst {worst * 1000:.1f} ms")


def pattern_inputs(pattern, size: int, limit: int) -> dict[str, str]:
    """Adversarial lines for one override pattern: from its regex first, then from its other regexes."""
    inputs: dict[str, str] = {}
    for regex in (pattern.regex, *pattern.requires, *pattern.unless, *pattern.excluded_by):
        for label, text in adversarial(regex, size).items():
            if len(inputs) < limit:
                inputs.setdefault(label, text)
    return inputs


def combined_inputs(diagnoser, size: int) -> dict[str, bytes]:
    """Logs that hit every pattern at once (one line of all literals, a log of matching lines), and ANSI colours."""
    literals = [lit for _, p in diagnoser.kb.patterns() for lit in _Shape(p.regex).literals]
    examples = [example for _, p in diagnoser.kb.patterns() for example in p.examples]
    one_line = _fill(" ".join(literals) + " ", size)
    many_lines = _fill("\n".join(examples) + "\n", size)
    coloured = _fill("\x1b[90m12:00:01\x1b[0m \x1b[32mINFO\x1b[0m step \x1b[1mok\x1b[0m\n", size)
    return {"every literal on one line": one_line.encode(), "every pattern's examples, repeated": many_lines.encode(),
            "coloured lines, an escape every 9 bytes": coloured.encode()}


def bench_overrides(size: int, limit: int, quick: bool) -> None:
    """Worst full-classification time per override pattern, and overall, against ordinary noise."""
    import random

    from bench.common import LOGHUB, make_log, noise_lines
    from model.diagnose import Diagnoser

    diagnoser = Diagnoser.load()
    print(f"\nFull classification (Diagnoser.verdict) of adversarial {size / 1e6:.1f} MB logs, per override pattern")
    if LOGHUB.exists():
        noise = make_log(size, b"E: something failed", noise_lines(), random.Random(1))
        baseline = min(_seconds(lambda: diagnoser.verdict(noise)) for _ in range(3))
        print(f"  baseline, {size / 1e6:.1f} MB of ordinary log noise: {baseline * 1000:.1f} ms")
    pairs = list(diagnoser.kb.patterns())[::10] if quick else list(diagnoser.kb.patterns())
    seen: dict[int, float] = {}  # patterns share inputs (a run of "a"): classify each distinct one once
    rows = []
    for number, (_, pattern) in enumerate(pairs, 1):
        times = {}
        for label, text in pattern_inputs(pattern, size, limit).items():
            key = hash(text)
            if key not in seen:
                data = text.encode("utf-8")
                seen[key] = _seconds(lambda: diagnoser.verdict(data))
            times[label] = seen[key]
        label, worst = max(times.items(), key=lambda kv: kv[1])
        rows.append((worst, pattern.id, label, len(times)))
        print(f"  [{number}/{len(pairs)}] {pattern.id}: worst {worst * 1000:.0f} ms", file=sys.stderr, flush=True)
    for label, data in combined_inputs(diagnoser, size).items():
        rows.append((min(_seconds(lambda: diagnoser.verdict(data)) for _ in range(2)), "(all patterns)", label, 1))
    rows.sort(reverse=True)
    print(f"  {len(pairs)} override patterns, {sum(r[3] for r in rows)} adversarial logs "
          f"({len(seen)} distinct) classified; slowest ten patterns:")
    for worst, pattern_id, label, _ in rows[:10]:
        print(f"    {worst * 1000:8.1f} ms  {pattern_id:<48} [{label[:44]}]")
    worsts = sorted(r[0] for r in rows)
    print(f"  per-pattern worst: median {worsts[len(worsts) // 2] * 1000:.1f} ms, "
          f"overall worst {worsts[-1] * 1000:.1f} ms ({rows[0][1]}, {rows[0][2][:44]})")


def main() -> None:
    """Print the figures."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--size", type=int, default=SIZE, help="bytes per adversarial log (default 5 MB)")
    args.add_argument("--inputs", type=int, default=8, help="adversarial logs per override pattern (default 8)")
    args.add_argument("--quick", action="store_true", help="every tenth override pattern only")
    options = args.parse_args()
    bench_python_patterns(options.size)
    bench_overrides(options.size, options.inputs, options.quick)


if __name__ == "__main__":
    main()
