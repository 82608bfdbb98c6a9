"""Model names: the pair is one model, and a name may choose alpha, for tools that can set only the model name.

    diffamp              alpha from the request body, else the server's default (1)
    diffamp@after        alpha 0: the after model alone
    diffamp@before       alpha -1: the before model alone
    diffamp@alpha=0.5    alpha 0.5
"""

from __future__ import annotations

BASE = "diffamp"
FIXED = {"after": 0.0, "before": -1.0}
ALPHA_PREFIX = "alpha="


class ModelNotFound(Exception):
    def __init__(self, name: str):
        super().__init__(f"The model '{name}' does not exist. This server serves '{BASE}', '{BASE}@after', "
                         f"'{BASE}@before' and '{BASE}@alpha=X' (see GET /v1/models)")
        self.name = name


def alpha_of(name: str) -> float | None:
    """The alpha a model name chooses (None: the name leaves it to the request), or ModelNotFound. The value is
    not checked here: request validation checks it like any alpha."""
    base, at, suffix = name.partition("@")
    if base != BASE:
        raise ModelNotFound(name)
    if not at:
        return None
    if suffix in FIXED:
        return FIXED[suffix]
    if suffix.startswith(ALPHA_PREFIX):
        try:
            return float(suffix[len(ALPHA_PREFIX):])
        except ValueError:
            pass
    raise ModelNotFound(name)


def listed() -> list[tuple[str, float | None]]:
    """What GET /v1/models lists: each name and the alpha it fixes."""
    return [(BASE, None), (f"{BASE}@after", FIXED["after"]), (f"{BASE}@before", FIXED["before"])]
