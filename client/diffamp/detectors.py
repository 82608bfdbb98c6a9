"""Named tests on a completion's text: substrings and regular expressions (and, in Python, any callable)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Detector:
    name: str
    test: Callable[[str], bool]

    def __call__(self, text: str) -> bool:
        return bool(self.test(text))


def substring(name: str, needle: str, ignore_case: bool = False) -> Detector:
    if ignore_case:
        lowered = needle.lower()
        return Detector(name, lambda text: lowered in text.lower())
    return Detector(name, lambda text: needle in text)


def regex(name: str, pattern: str) -> Detector:
    compiled = re.compile(pattern)
    return Detector(name, lambda text: compiled.search(text) is not None)


def parse_spec(spec: str) -> Detector:
    """NAME=TEXT (substring) or NAME=re:PATTERN (regular expression)."""
    name, sep, body = spec.partition("=")
    if not sep or not name or not body:
        raise ValueError(f"detector {spec!r} is not NAME=TEXT or NAME=re:PATTERN")
    if body.startswith("re:"):
        try:
            return regex(name, body[3:])
        except re.error as exc:
            raise ValueError(f"detector {name!r}: bad regular expression: {exc}") from None
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
