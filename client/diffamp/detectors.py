"""Named tests on a completion's text: substrings and regular expressions (and, in Python, any callable).

Substring and regex detectors keep their spec, so a sweep can send them to the server; a plain callable
runs where it was made, on the client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass


MAX_PATTERN_CHARS = 256


@dataclass(frozen=True)
class Detector:
    name: str
    test: Callable[[str], bool]
    substring: str | None = None
    regex: str | None = None
    ignore_case: bool = False

    def __call__(self, text: str) -> bool:
        return bool(self.test(text))

    @property
    def portable(self) -> bool:
        """A substring or regex detector, which the server can run too."""
        return self.substring is not None or self.regex is not None


def substring(name: str, needle: str, ignore_case: bool = False) -> Detector:
    if not needle:
        raise ValueError(f"detector {name!r}: empty substring")
    if ignore_case:
        lowered = needle.lower()
        return Detector(name, lambda text: lowered in text.lower(), substring=needle, ignore_case=True)
    return Detector(name, lambda text: needle in text, substring=needle)


def regex(name: str, pattern: str) -> Detector:
    if not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"detector {name!r}: a regular expression of 1 to {MAX_PATTERN_CHARS} characters, "
                         f"got {len(pattern)}")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"detector {name!r}: bad regular expression: {exc}") from None
    return Detector(name, lambda text: compiled.search(text) is not None, regex=pattern)


def parse_spec(spec: str) -> Detector:
    """NAME=TEXT (substring) or NAME=re:PATTERN (regular expression)."""
    name, sep, body = spec.partition("=")
    if not sep or not name or not body:
        raise ValueError(f"detector {spec!r} is not NAME=TEXT or NAME=re:PATTERN")
    if body.startswith("re:"):
        return regex(name, body[3:])
    return substring(name, body)


def load_file(path: str) -> list[Detector]:
    """A JSON list of {"name", "substring" | "regex", "ignore_case"?} objects."""
    with open(path, encoding="utf-8") as f:
        items = json.load(f)
    out = []
    for item in items:
        if "regex" in item:
            out.append(regex(item["name"], item["regex"]))
        else:
            out.append(substring(item["name"], item["substring"], item.get("ignore_case", False)))
    return out
