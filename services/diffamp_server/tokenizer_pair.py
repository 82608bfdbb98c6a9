"""The gateway's view of a model pair: both tokenizers, the shared vocabulary, stop ids, and prompts turned
into the ids each model sees.

One-sided tokens: ids the after tokenizer has and the before one lacks (chat tokens added in post-training,
say). The before model cannot embed them, so a prompt holding one is either refused (`reject`) or the before
model gets the before tokenizer's encoding of that token's text instead (`retokenize`, the default): the two
models then see prompts of different lengths, which their KV caches track per model. Generated tokens are
always shared ids, so after the prompt both models see the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InvalidArgument
from .loading import ModelSource, load_eos_ids, load_tokenizer
from .request import EncodedPrompt, PromptInput
from .vocab import SharedVocab, VocabReport, compare_vocabs, id_to_token

ONE_SIDED_POLICIES = ("retokenize", "reject")
PROBE_CONVERSATION = ({"role": "system", "content": "probe"}, {"role": "user", "content": "probe"},
                      {"role": "assistant", "content": "probe"}, {"role": "user", "content": "probe"})


class IncompatibleTokenizers(ValueError):
    pass


@dataclass
class TokenizerPair:
    after: object
    before: object
    report: VocabReport
    eos_ids: set[int]
    after_ids: dict[int, str]
    shared: SharedVocab
    one_sided: str = "retokenize"
    _shared_ids: frozenset[int] = field(init=False, repr=False)
    _max_token_chars: int = field(init=False, repr=False)

    def __post_init__(self):
        self._shared_ids = self.shared.ids()
        self._max_token_chars = max((len(t) for t in self.after_ids.values()), default=1)

    @classmethod
    def load(cls, after: ModelSource, before: ModelSource, logits_size: int,
             one_sided: str = "retokenize") -> "TokenizerPair":
        """Both tokenizers; refuses a pair whose maps disagree on an id both have, naming the first ones.
        logits_size is the smaller model's output size: ids past it cannot be sampled."""
        if one_sided not in ONE_SIDED_POLICIES:
            raise ValueError(f"one-sided token policy must be one of {', '.join(ONE_SIDED_POLICIES)}; "
                             f"got {one_sided!r}")
        after_tok, before_tok = load_tokenizer(after), load_tokenizer(before)
        after_ids, before_ids = id_to_token(after_tok), id_to_token(before_tok)
        report = compare_vocabs(after_ids, before_ids)
        if not report.compatible:
            raise IncompatibleTokenizers(f"{after.model_id} vs {before.model_id}: {report.describe()}")
        eos = load_eos_ids(after, after_tok) | load_eos_ids(before, before_tok)
        pair = cls(after_tok, before_tok, report, eos, after_ids, SharedVocab.of(after_ids, before_ids, logits_size),
                   one_sided)
        pair.check_chat_template()
        return pair

    @property
    def max_token_chars(self) -> int:
        """The longest token of the after vocabulary in characters (its text is never longer)."""
        return self._max_token_chars

    def check_chat_template(self) -> None:
        """With the reject policy, a chat template that itself emits one-sided tokens would refuse every chat
        request: refuse to start instead, and say what to do."""
        if self.one_sided != "reject" or not getattr(self.after, "chat_template", None):
            return
        try:
            ids = self._apply_template(list(PROBE_CONVERSATION))
        except Exception:  # noqa: BLE001 - a template that rejects this probe is checked per request instead
            return
        one_sided = [i for i in ids if i not in self._shared_ids]
        if one_sided:
            raise IncompatibleTokenizers(
                f"the after model's chat template emits tokens the before tokenizer lacks "
                f"({', '.join(repr(self.after_ids.get(i, '?')) for i in one_sided[:3])}); with the one-sided token "
                f"policy 'reject' every chat request would be refused. Use --one-sided-tokens retokenize.")

    def encode(self, prompt: PromptInput) -> EncodedPrompt:
        """The ids each model sees: ids as given, raw text, or the after model's chat template; one-sided ids
        per the policy. Raises InvalidArgument naming the field."""
        after_ids = self._after_ids(prompt)
        return EncodedPrompt(after_ids=tuple(after_ids), before_ids=self._before_ids(after_ids, prompt))

    def _after_ids(self, prompt: PromptInput) -> list[int]:
        if prompt.token_ids:
            for i, token in enumerate(prompt.token_ids):
                if token not in self.after_ids:
                    raise InvalidArgument(f"{prompt.field_prefix}.token_ids.ids[{i}]",
                                          f"{token} is not an id of the after tokenizer (it has {len(self.after_ids)})")
            return list(prompt.token_ids)
        if prompt.raw and prompt.text:
            return list(self.after(prompt.text, add_special_tokens=True)["input_ids"])
        if prompt.messages:
            messages = [{"role": r, "content": c} for r, c in prompt.messages]
        else:
            messages = ([{"role": "system", "content": prompt.system_prompt}] if prompt.system_prompt else [])
            messages.append({"role": "user", "content": prompt.text})
        if not getattr(self.after, "chat_template", None):
            raise InvalidArgument(f"{prompt.field_prefix}.raw", "the after tokenizer has no chat template; set raw")
        return self._apply_template(messages)

    def _apply_template(self, messages: list[dict]) -> list[int]:
        ids = self.after.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def _before_ids(self, after_ids: list[int], prompt: PromptInput) -> tuple[int, ...] | None:
        """None when every id is shared; otherwise the before model's ids, or InvalidArgument (reject)."""
        positions = [i for i, token in enumerate(after_ids) if token not in self._shared_ids]
        if not positions:
            return None
        if self.one_sided == "reject":
            token = after_ids[positions[0]]
            where = (f"{prompt.field_prefix}.token_ids.ids[{positions[0]}]" if prompt.token_ids
                     else prompt.field_prefix)
            raise InvalidArgument(where, f"token {self.token_text(token)!r} (id {token}) exists only in the after "
                                         f"model's vocabulary; the before model cannot read it (the server refuses "
                                         f"such prompts: --one-sided-tokens reject)")
        before: list[int] = []
        start = 0
        for i in positions:
            before += after_ids[start:i]
            before += self.before.encode(self.token_text(after_ids[i]), add_special_tokens=False)
            start = i + 1
        before += after_ids[start:]
        return tuple(before)

    def token_text(self, token_id: int) -> str:
        return self.after.decode([token_id], skip_special_tokens=False)
