"""The gateway's view of a model pair: both tokenizers, the shared vocabulary, stop ids and prompting."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InvalidArgument
from .loading import ModelSource, load_eos_ids, load_tokenizer
from .request import GenerateInput
from .vocab import VocabReport, compare_vocabs, id_to_token, shared_vocab_mask


class IncompatibleTokenizers(ValueError):
    pass


@dataclass
class TokenizerPair:
    after: object
    before: object
    report: VocabReport
    eos_ids: set[int]
    after_ids: dict[int, str]
    before_ids: dict[int, str]

    @classmethod
    def load(cls, after: ModelSource, before: ModelSource) -> "TokenizerPair":
        after_tok, before_tok = load_tokenizer(after), load_tokenizer(before)
        after_ids, before_ids = id_to_token(after_tok), id_to_token(before_tok)
        report = compare_vocabs(after_ids, before_ids)
        if not report.compatible:
            raise IncompatibleTokenizers(f"{after.model_id} vs {before.model_id}: {report.describe()}")
        eos = load_eos_ids(after, after_tok) | load_eos_ids(before, before_tok)
        return cls(after_tok, before_tok, report, eos, after_ids, before_ids)

    def shared_mask(self, logits_size: int) -> torch.Tensor:
        return shared_vocab_mask(self.after_ids, self.before_ids, logits_size)

    def prompt_ids(self, inp: GenerateInput) -> list[int]:
        """Token ids for the request's prompt: ids as given, raw text, or the after model's chat template."""
        if inp.prompt_token_ids:
            return list(inp.prompt_token_ids)
        if inp.raw_prompt and inp.prompt:
            return self.after(inp.prompt, add_special_tokens=True)["input_ids"]
        if inp.messages:
            messages = [{"role": r, "content": c} for r, c in inp.messages]
        else:
            messages = ([{"role": "system", "content": inp.system_prompt}] if inp.system_prompt else [])
            messages.append({"role": "user", "content": inp.prompt})
        if not getattr(self.after, "chat_template", None):
            raise InvalidArgument("raw_prompt", "the after tokenizer has no chat template; set raw_prompt")
        ids = self.after.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def token_text(self, token_id: int) -> str:
        return self.after.decode([token_id], skip_special_tokens=False)
