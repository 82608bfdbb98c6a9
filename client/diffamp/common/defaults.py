"""Every default and limit a request is checked against, in one place. The server's flags, the library API,
the CLI's help and the proto comments all take their numbers from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingDefaults:
    """What an unset sampling field means."""

    alpha: float = 1.0
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 0
    max_new_tokens: int = 80
    min_new_tokens: int = 0


GENERATE = SamplingDefaults()
"""Generate and Compare."""

SWEEP = SamplingDefaults(temperature=1.0, top_p=1.0, max_new_tokens=48)
"""Sweep: unfiltered sampling, so importance-weighted estimates of the after model's rate are exact."""


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on what one request may ask for. The server's flags override them."""

    max_n: int = 8192
    max_logprobs: int = 20
    max_stop_strings: int = 8
    max_stop_string_chars: int = 64
    alpha_bound: float = 100.0
    max_sweep_samples: int = 1_000_000
    max_sweep_prompts: int = 100_000
    max_alphas: int = 64
    max_detectors: int = 64
    max_pattern_chars: int = 256
    max_prompt_chars: int = 1_000_000


LIMITS = RequestLimits()

MAX_SAMPLE_INDEX = 2**32
"""Sample indices are uint32 on the wire: first_sample_index + n may not exceed this."""
