"""Running a sweep through the Sweep RPC: samples are appended to the sweep file as they arrive, and an
interrupted or refused call is resumed from the file after a back-off (AIP-194: only RESOURCE_EXHAUSTED and
UNAVAILABLE are retried)."""

from __future__ import annotations

import asyncio
import json
import sys

import grpc

from diffamp import messages
from diffamp.common.detectors import Detector
from diffamp.common.sweep import MODE_ORDER, SweepPrompt, SweepRecord, SweepSettings
from diffamp.sweep_file import SweepFile
from diffamp.sweep_report import Progress
from diffamp.v1 import diffamp_pb2_grpc

RETRYABLE = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)


async def run_sweep(stub: diffamp_pb2_grpc.AmplificationServiceStub, prompts: list[SweepPrompt],
                    settings: SweepSettings, detectors: list[Detector], output: str, progress: bool = True,
                    timeout: float | None = None, attempts: int = 8, out=sys.stderr) -> list[SweepRecord]:
    """Run the samples of the sweep that `output` lacks, appending them to it; returns all of the sweep's
    records (resumed ones included), ordered by alpha, prompt id and index, with `detectors` applied."""
    sweep_file = SweepFile(output)
    total = len(prompts) * len(settings.modes) * len(settings.alphas) * settings.n
    delay = 0.5
    for attempt in range(attempts):
        done = sweep_file.load(settings, prompts, detectors)
        if len(done) == total:
            break
        completed: dict[tuple[str, str, float], list[int]] = {}
        for prompt_id, mode, alpha, index in done:
            completed.setdefault((prompt_id, mode, alpha), []).append(index)
        bar = Progress(len(done), out) if progress else None
        try:
            with sweep_file.open_for_append(settings, prompts) as f:
                request = messages.sweep_request(prompts, settings, detectors, completed)
                async for item in stub.Sweep(request, timeout=timeout):
                    if item.HasField("sample"):
                        f.write(json.dumps(messages.sweep_record(item.sample).to_json(), ensure_ascii=False) + "\n")
                        f.flush()
                    elif item.HasField("progress") and bar:
                        bar.show(item.progress)
            break
        except grpc.aio.AioRpcError as err:
            if err.code() not in RETRYABLE or attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    latest = sweep_file.load(settings, prompts, detectors)
    return [latest[k] for k in sorted(latest, key=lambda k: (MODE_ORDER.index(k[1]), k[2], k[0], k[3]))]
