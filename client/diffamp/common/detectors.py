"""Named tests on a completion's text: substrings and RE2 regular expressions (and, in Python, any callable).

Regular expressions use RE2 (the google-re2 package): matching takes linear time in the text whatever the
pattern, so a detector sent by a client cannot stall the server. RE2 has no backreferences or lookaround.
Substring and regex detectors keep their spec, so a sweep can send them to the server and re-apply them to
stored texts; a plain callable runs where it was made, on the client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import re2

from .defaults import LIMITS

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


@dataclass(frozen=True)
class Detector:
    """A named test. `substring` or `regex` is set for portable detectors; `test` runs it."""

    name: str
    test: Callable[[str], bool] = field(compare=False, repr=False)
    substring: str | None = None
    regex: str | None = None
    ignore_case: bool = False

    def __call__(self, text: str) -> bool:
        return bool(self.test(text))

    @property
    def portable(self) -> bool:
        """A substring or regex detector, which the server can run and a stored sweep can re-apply."""
        return self.substring is not None or self.regex is not None


def substring(name: str, needle: str, ignore_case: bool = False) -> Detector:
    if not needle:
        raise ValueError(f"detector {name!r}: empty substring")
    if ignore_case:
        lowered = needle.lower()
        return Detector(name, lambda text: lowered in text.lower(), substring=needle, ignore_case=True)
    return Detector(name, lambda text: needle in text, substring=needle)


def regex(name: str, pattern: str, max_chars: int = LIMITS.max_pattern_chars) -> Detector:
    if not pattern or len(pattern) > max_chars:
        raise ValueError(f"detector {name!r}: a regular expression of 1 to {max_chars} characters, got {len(pattern)}")
    try:
        compiled = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"detector {name!r}: not a valid RE2 regular expression: {reason}") from None
    return Detector(name, lambda text: compiled.search(text) is not None, regex=pattern)


def python_callable(name: str, test: Callable[[str], bool]) -> Detector:
    """A detector that runs only where it was made (on the client of a sweep)."""
    return Detector(name, test)


def parse_spec(spec: str) -> Detector:
    """NAME=TEXT (substring) or NAME=re:PATTERN (RE2 regular expression)."""
    name, sep, body = spec.partition("=")
    if not sep or not name or not body:
        raise ValueError(f"detector {spec!r} is not NAME=TEXT or NAME=re:PATTERN")
    if body.startswith("re:"):
        return regex(name, body[3:])
    return substring(name, body)


def from_dict(item: dict) -> Detector:
    """{"name", "substring" | "regex", "ignore_case"?}, as in a detectors file or a stored sweep."""
    if "regex" in item:
        return regex(item["name"], item["regex"])
    return substring(item["name"], item["substring"], item.get("ignore_case", False))


def to_dict(detector: Detector) -> dict:
    if detector.regex is not None:
        return {"name": detector.name, "regex": detector.regex}
    if detector.substring is not None:
        return {"name": detector.name, "substring": detector.substring, "ignore_case": detector.ignore_case}
    raise ValueError(f"detector {detector.name!r} is a Python callable and has no portable form")

