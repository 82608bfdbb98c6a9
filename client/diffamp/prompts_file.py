"""Reading a sweep's prompts and detectors from files."""

from __future__ import annotations

import json

from diffamp.common import detectors
from diffamp.common.sweep import SweepPrompt, first_bad_name


def load_prompts(path: str, system_prompt: str = "", raw: bool = False) -> list[SweepPrompt]:
    """Text lines (one prompt each, id "p<line number>") or JSONL objects with "prompt", "messages" or
    "token_ids" and an optional "id". system_prompt and raw apply to text prompts."""
    prompts = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if not line.lstrip().startswith("{"):
                prompts.append(SweepPrompt(f"p{number}", line, system_prompt=system_prompt, raw=raw))
                continue
            obj = json.loads(line)
            messages = tuple((m["role"], m["content"]) for m in obj.get("messages", ()))
            prompts.append(SweepPrompt(str(obj.get("id", f"p{number}")), obj.get("prompt", ""), messages,
                                       tuple(obj.get("token_ids", ())), system_prompt=system_prompt, raw=raw))
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    bad = first_bad_name(p.id for p in prompts)
    if bad:
        raise ValueError(f"{path}: prompt {bad[0] + 1}'s id is {bad[1]}; ids must be unique and not empty")
    return prompts


def load_detectors(path: str) -> list[detectors.Detector]:
    """A JSON list of {"name", "substring" | "regex", "ignore_case"?} objects."""
    with open(path, encoding="utf-8") as f:
        return [detectors.from_dict(item) for item in json.load(f)]
