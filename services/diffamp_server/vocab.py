"""Whether two tokenizers can be amplified against each other, and over which ids."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class VocabReport:
    compatible: bool
    after_vocab_size: int
    before_vocab_size: int
    shared_vocab_size: int
    mismatches: tuple[tuple[int, str, str], ...]

    def describe(self) -> str:
        shown = ", ".join(f"id {i}: after {a!r} vs before {b!r}" for i, a, b in self.mismatches[:5])
        return (
            f"tokenizers disagree on {len(self.mismatches)}+ shared ids ({shown}); "
            f"after has {self.after_vocab_size} tokens, before {self.before_vocab_size}"
        )


def id_to_token(tokenizer) -> dict[int, str]:
    return {i: t for t, i in tokenizer.get_vocab().items()}


def compare_vocabs(after: dict[int, str], before: dict[int, str], max_mismatches: int = 20) -> VocabReport:
    """Compatible when the maps agree on every id both have; shared ids are those with the same token."""
    common = sorted(after.keys() & before.keys())
    mismatches = tuple((i, after[i], before[i]) for i in common if after[i] != before[i])
    return VocabReport(
        compatible=not mismatches,
        after_vocab_size=len(after),
        before_vocab_size=len(before),
        shared_vocab_size=len(common) - len(mismatches),
        mismatches=mismatches[:max_mismatches],
    )


def shared_vocab_mask(after: dict[int, str], before: dict[int, str], logits_size: int) -> torch.Tensor:
    """A bool mask over ids [0, n): True where both tokenizers have the id with the same token.

    n is the highest shared id + 1, capped at the smaller model's logits size (ids past a model's output
    layer cannot be scored by it).
    """
    shared = [i for i in after.keys() & before.keys() if after[i] == before[i] and i < logits_size]
    mask = torch.zeros(max(shared) + 1 if shared else 0, dtype=torch.bool)
    mask[shared] = True
    return mask
