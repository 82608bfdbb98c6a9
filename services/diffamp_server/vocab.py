"""Whether two tokenizers can be amplified against each other, and over which ids."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class SharedVocab:
    """The ids both models may sample, as sorted half-open ranges [start, stop): usually one range, with gaps
    where an id exists in only one tokenizer. Small enough to send to every worker."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, after: dict[int, str], before: dict[int, str], logits_size: int) -> "SharedVocab":
        """Ids both tokenizers have with the same token, below the smaller model's logits size (ids past a
        model's output layer cannot be scored by it)."""
        ids = sorted(i for i in after.keys() & before.keys() if after[i] == before[i] and i < logits_size)
        ranges: list[tuple[int, int]] = []
        for i in ids:
            if ranges and ranges[-1][1] == i:
                ranges[-1] = (ranges[-1][0], i + 1)
            else:
                ranges.append((i, i + 1))
        return cls(tuple(ranges))

    @property
    def size(self) -> int:
        """Highest shared id + 1: logits are cut to this many columns."""
        return self.ranges[-1][1] if self.ranges else 0

    @property
    def count(self) -> int:
        return sum(stop - start for start, stop in self.ranges)

    def ids(self) -> frozenset[int]:
        return frozenset(i for start, stop in self.ranges for i in range(start, stop))

    def mask(self, device="cpu"):
        """A bool tensor over [0, size): True where the id is shared."""
        import torch

        mask = torch.zeros(self.size, dtype=torch.bool, device=device)
        for start, stop in self.ranges:
            mask[start:stop] = True
        return mask
