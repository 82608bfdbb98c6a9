"""A sweep's JSONL file: header lines with the settings and the prompts' fingerprints, then one line per sample.

Rerunning a sweep with the same file resumes it. A stored sample is reused only when everything it depends
on is unchanged: the sampling settings and base seed (a difference is refused, naming the field), and the
prompt it came from (a prompt whose text changed under the same id is refused). More alphas, a larger n and
new prompts are fine. Detectors are not part of the settings: they are re-applied to the stored texts on
every load, so adding one costs no sampling.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import replace

from diffamp.common.detectors import Detector
from diffamp.common.seeds import derive_seed
from diffamp.common.sweep import SweepPrompt, SweepRecord, SweepSettings

FORMAT_KEY = "diffamp_sweep"
FORMAT_VERSION = 1


class SettingsMismatch(ValueError):
    """The file holds samples drawn with other settings or another prompt under the same id."""


class SweepFile:
    def __init__(self, path: str):
        self.path = path

    def _lines(self) -> Iterable[dict]:
        if not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interrupted run; its sample is simply redone

    def load(self, settings: SweepSettings, prompts: list[SweepPrompt],
             detectors: list[Detector]) -> dict[tuple[str, str, float, int], SweepRecord]:
        """The stored samples that belong to this sweep, with `detectors` re-applied to their texts.

        Raises SettingsMismatch when the file was written with other sampling settings or another prompt
        under an id this sweep uses."""
        wanted = {p.id: p for p in prompts}
        alphas = set(settings.alphas)
        headers, records = [], {}
        for obj in self._lines():
            if FORMAT_KEY in obj:
                headers.append(obj)
                continue
            if not headers:
                raise SettingsMismatch(f"{self.path} is not a diffamp sweep file (no header line); "
                                       "use a new --output")
            record = SweepRecord.from_json(obj)
            prompt = wanted.get(record.prompt_id)
            if (prompt is None or record.alpha not in alphas or record.mode not in settings.modes
                    or record.index >= settings.n
                    or record.seed != derive_seed(settings.seed, record.prompt_id, record.alpha)):
                continue
            records[record.key] = record
        if headers:
            self._check(headers, settings, wanted)
        return {k: _redetect(r, detectors) for k, r in records.items()}

    def _check(self, headers: list[dict], settings: SweepSettings, prompts: dict[str, SweepPrompt]) -> None:
        stored = headers[0]["sampling"]
        now = settings.sampling()
        for name in now:
            if stored.get(name) != now[name]:
                raise SettingsMismatch(
                    f"{self.path} was sampled with {name} = {stored.get(name)!r}, this sweep asks for {now[name]!r}; "
                    f"use a new --output, or the same {name}")
        fingerprints: dict[str, str] = {}
        for header in headers:
            fingerprints.update(header.get("prompts", {}))
        for pid, prompt in prompts.items():
            if pid in fingerprints and fingerprints[pid] != prompt.fingerprint():
                raise SettingsMismatch(f"{self.path}: prompt {pid!r} is not the prompt stored under that id; "
                                       "give it a new id or use a new --output")

    def open_for_append(self, settings: SweepSettings, prompts: list[SweepPrompt]):
        """The file, ready for records: a header line is written for a new file or for prompts it lacks."""
        known: dict[str, str] = {}
        has_header = False
        for obj in self._lines():
            if FORMAT_KEY in obj:
                has_header = True
                known.update(obj.get("prompts", {}))
        _end_with_newline(self.path)
        f = open(self.path, "a", encoding="utf-8")
        new = {p.id: p.fingerprint() for p in prompts if p.id not in known}
        if new or not has_header:
            f.write(json.dumps({FORMAT_KEY: FORMAT_VERSION, "sampling": settings.sampling(), "prompts": new},
                               ensure_ascii=False) + "\n")
            f.flush()
        return f


def _redetect(record: SweepRecord, detectors: list[Detector]) -> SweepRecord:
    return replace(record, detectors=tuple(d.name for d in detectors if d(record.text)))


def _end_with_newline(path: str) -> None:
    """An interrupted run can leave half a line; new records must start on a line of their own."""
    if os.path.exists(path) and os.path.getsize(path):
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
