"""diffamp's server side: the gateway, the Ray model workers, and the in-process library API.

Processes: client (CLI or generated stubs) --gRPC--> gateway (this package's server.py: validation,
tokenization, continuous-batching scheduler, streaming) --Ray--> model workers (workers.py: one actor per
model, or one for both, each holding models and their slot KV caches; combining and sampling happen
there, next to the logits).
"""

from .amplifier import Amplifier, Completion, CompletionLogprobs

__all__ = ["Amplifier", "Completion", "CompletionLogprobs"]
