"""The one configuration object of the gateway process, and the one place that reads the environment.

Precedence: command-line flag > environment variable > default. The seed's variables MODEL_AFTER_ID,
MODEL_BEFORE_ID, DEVICE, HOST and PORT are still honoured.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from diffamp.common.defaults import LIMITS, RequestLimits

DEMO_PAIR_DIR = Path(__file__).parent / "demo_pair"
PLACEMENTS = ("auto", "colocated", "split")
ONE_SIDED_POLICIES = ("retokenize", "reject")
ENGINES = ("auto", "static", "eager")
LOG_FORMATS = ("text", "json")


@dataclass
class ServerConfig:
    after: str = field(default=str(DEMO_PAIR_DIR / "after"), metadata={"env": "MODEL_AFTER_ID",
                       "help": "post-trained model: hub id or local directory (default: the built-in demo pair)"})
    before: str = field(default=str(DEMO_PAIR_DIR / "before"), metadata={"env": "MODEL_BEFORE_ID",
                        "help": "base model: hub id or local directory"})
    after_adapter: str = field(default="", metadata={
        "env": "DIFFAMP_AFTER_ADAPTER",
        "help": "the after model as a PEFT LoRA adapter on --before (hub id or directory): one set of weights, both "
                "models in one forward, and weight-space amplification (mode weights) beside logit-space. An --after "
                "directory holding an adapter_config.json is taken as this"})
    device: str = field(default="auto", metadata={"env": "DEVICE",
                        "help": "auto (cuda:0 if visible, else cpu), cpu, cuda, cuda:N"})
    dtype: str = field(default="auto", metadata={"env": "DIFFAMP_DTYPE",
                       "help": "auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16"})
    host: str = field(default="127.0.0.1", metadata={"env": "HOST", "help": "address to bind"})
    port: int = field(default=50051, metadata={"env": "PORT", "help": "gRPC port (0 picks a free one)"})
    http_port: int = field(default=0, metadata={
        "env": "DIFFAMP_HTTP_PORT",
        "help": "serve the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health) "
                "on this port, same host, token and TLS as gRPC (0: off; the k8s manifests use 8000)"})
    placement: str = field(default="auto", metadata={"env": "DIFFAMP_PLACEMENT",
                           "help": "auto, colocated (one actor, both models) or split (one actor per model)"})
    replicas: str = field(default="1", metadata={
        "env": "DIFFAMP_REPLICAS",
        "help": "model-pair replicas behind this gateway: a count, or auto (as many as the Ray cluster's GPUs hold "
                "for the placement, following the cluster as it grows); change it while serving with "
                "`diffamp replicas N`"})
    ray_address: str = field(default="", metadata={"env": "RAY_ADDRESS",
                             "help": "join this Ray cluster; empty starts a local one"})
    ray_num_cpus: int = field(default=0, metadata={"env": "DIFFAMP_RAY_NUM_CPUS",
                              "help": "CPUs of the local Ray instance (0: all)"})
    after_resources: str = field(default="", metadata={"env": "DIFFAMP_AFTER_RESOURCES",
                                 "help": "Ray custom resources the after (or colocated) actor needs, "
                                         'as JSON: {"gpu_a": 1}'})
    before_resources: str = field(default="", metadata={"env": "DIFFAMP_BEFORE_RESOURCES",
                                  "help": "Ray custom resources the before actor needs (split placement), as JSON"})
    worker_cpus: float = field(default=1.0, metadata={"env": "DIFFAMP_WORKER_CPUS",
                               "help": "Ray CPUs each model actor reserves"})
    torch_threads: int = field(default=0, metadata={"env": "DIFFAMP_TORCH_THREADS",
                               "help": "torch threads in each worker (0: every core it may use, within a container's "
                                       "CPU limit; on CPU with a local Ray, those cores divided among the workers it "
                                       "starts with)"})
    tokenizer_class: str = field(default="", metadata={"env": "DIFFAMP_TOKENIZER_CLASS",
                                 "help": "force a transformers tokenizer class, e.g. LlamaTokenizer"})
    trust_remote_code: bool = field(default=False, metadata={"env": "DIFFAMP_TRUST_REMOTE_CODE",
                                    "help": "run model repositories' own Python code (off by default)"})
    max_batch_size: int = field(default=64, metadata={"env": "DIFFAMP_MAX_BATCH_SIZE",
                                "help": "KV slots: sequences decoded together per step"})
    kv_cache_budget_mb: float = field(default=0.0, metadata={"env": "DIFFAMP_KV_CACHE_BUDGET_MB",
                                      "help": "most MiB the KV caches of both models may hold; caps the KV slots "
                                              "(0: no budget beyond --max-batch-size)"})
    engine: str = field(default="auto", metadata={
        "env": "DIFFAMP_ENGINE",
        "help": "auto (static when the model allows it, else eager), static (static shapes, CUDA graphs on GPU; "
                "refuses a model it cannot run) or eager (transformers' own attention; any architecture)"})
    compile: bool = field(default=False, metadata={
        "env": "DIFFAMP_COMPILE",
        "help": "torch.compile (inductor) the decode step before serving; the first start compiles, later starts "
                "read the compiled code from --compile-cache-dir"})
    compile_cache_dir: str = field(default="", metadata={
        "env": "TORCHINDUCTOR_CACHE_DIR",
        "help": "where compiled code is cached across restarts (a volume in Kubernetes); empty: torch's default, "
                "a directory under /tmp"})
    decode_steps: int = field(default=8, metadata={"env": "DIFFAMP_DECODE_STEPS",
                              "help": "most decode steps per worker call; more amortise the Ray round trip, and "
                                      "streams then receive tokens in chunks of up to this many"})
    max_seq_len: int = field(default=1024, metadata={"env": "DIFFAMP_MAX_SEQ_LEN",
                             "help": "positions per KV slot (prompt + completion); capped at the models' context"})
    max_queued: int = field(default=16384, metadata={"env": "DIFFAMP_MAX_QUEUED",
                            "help": "sequences waiting for a KV slot before new requests get RESOURCE_EXHAUSTED"})
    max_n: int = field(default=LIMITS.max_n, metadata={"env": "DIFFAMP_MAX_N", "help": "largest n per request"})
    max_sweep_samples: int = field(default=LIMITS.max_sweep_samples, metadata={
        "env": "DIFFAMP_MAX_SWEEP_SAMPLES", "help": "largest prompts x alphas x n per Sweep call"})
    max_detectors: int = field(default=LIMITS.max_detectors, metadata={
        "env": "DIFFAMP_MAX_DETECTORS", "help": "most detectors per Sweep call"})
    max_logprobs: int = field(default=LIMITS.max_logprobs, metadata={"env": "DIFFAMP_MAX_LOGPROBS",
                                                                     "help": "largest logprobs K"})
    max_stop_strings: int = field(default=LIMITS.max_stop_strings, metadata={"env": "DIFFAMP_MAX_STOP_STRINGS",
                                                                             "help": "most stop strings per request"})
    max_stop_string_chars: int = field(default=LIMITS.max_stop_string_chars, metadata={
        "env": "DIFFAMP_MAX_STOP_STRING_CHARS", "help": "longest stop string"})
    alpha_bound: float = field(default=LIMITS.alpha_bound, metadata={"env": "DIFFAMP_ALPHA_BOUND",
                                                                     "help": "|alpha| limit"})
    one_sided_tokens: str = field(default="retokenize", metadata={
        "env": "DIFFAMP_ONE_SIDED_TOKENS",
        "help": "prompts holding tokens only the after tokenizer has: retokenize (the before model reads that "
                "token's text in its own tokens) or reject (INVALID_ARGUMENT)"})
    stream_buffer_mb: float = field(default=4.0, metadata={
        "env": "DIFFAMP_STREAM_BUFFER_MB",
        "help": "most MiB of output buffered per stream; past it the request's samples wait for the client to read"})
    stream_stall_seconds: float = field(default=60.0, metadata={
        "env": "DIFFAMP_STREAM_STALL_SECONDS",
        "help": "a stream whose client reads nothing for this long is ended with RESOURCE_EXHAUSTED"})
    max_message_bytes: int = field(default=4 * 1024 * 1024, metadata={"env": "DIFFAMP_MAX_MESSAGE_BYTES",
                                   "help": "largest gRPC message received or sent"})
    drain_seconds: float = field(default=30.0, metadata={"env": "DIFFAMP_DRAIN_SECONDS",
                                 "help": "on SIGTERM, how long in-flight streams may finish"})
    auth_token: str = field(default="", repr=False, metadata={
        "env": "DIFFAMP_AUTH_TOKEN", "secret": True,
        "help": "require 'authorization: Bearer TOKEN' on every RPC but health (visible in ps: prefer "
                "--auth-token-file or the environment variable)"})
    auth_token_file: str = field(default="", metadata={
        "env": "DIFFAMP_AUTH_TOKEN_FILE", "help": "read the bearer token from this file (first line)"})
    tls_cert: str = field(default="", metadata={"env": "DIFFAMP_TLS_CERT", "help": "PEM certificate file"})
    tls_key: str = field(default="", metadata={"env": "DIFFAMP_TLS_KEY", "help": "PEM private key file"})
    metrics_port: int = field(default=0, metadata={
        "env": "DIFFAMP_METRICS_PORT",
        "help": "serve Prometheus metrics over plain HTTP at http://HOST:PORT/metrics, on the --host address "
                "(0: off; the k8s manifests use 9090)"})
    log_format: str = field(default="text", metadata={
        "env": "DIFFAMP_LOG_FORMAT", "help": "text (one readable line per event) or json (one JSON object per line)"})
    log_prompts: bool = field(default=False, metadata={
        "env": "DIFFAMP_LOG_PROMPTS",
        "help": "put Generate and Compare prompts and completions in the finished-request log line (off: they can "
                "be sensitive)"})

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}; got {self.placement!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535]; got {self.port}")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be in [0, 65535] (0: off); got {self.metrics_port}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}; got {self.log_format!r}")
        if not 0 <= self.http_port <= 65535:
            raise ValueError(f"http_port must be in [0, 65535] (0: off); got {self.http_port}")
        ports = [p for p in (self.port, self.metrics_port, self.http_port) if p]
        if len(set(ports)) < len(ports):
            raise ValueError(f"port, metrics_port and http_port must differ; got {self.port}, {self.metrics_port} "
                             f"and {self.http_port}")
        for name in ("max_batch_size", "decode_steps", "max_seq_len", "max_n", "max_sweep_samples", "max_queued",
                     "max_message_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both a certificate and a key file")
        for name in ("after_resources", "before_resources"):
            self.actor_resources(name)
        if self.kv_cache_budget_mb < 0:
            raise ValueError(f"kv_cache_budget_mb must be >= 0; got {self.kv_cache_budget_mb}")
        if self.alpha_bound <= 0:
            raise ValueError(f"alpha_bound must be > 0; got {self.alpha_bound}")
        parse_replicas(self.replicas)
        if self.lora and self.placement == "split":
            raise ValueError("a LoRA pair holds one set of weights: use the colocated placement")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {self.engine!r}")
        if self.one_sided_tokens not in ONE_SIDED_POLICIES:
            raise ValueError(f"one_sided_tokens must be one of {', '.join(ONE_SIDED_POLICIES)}; "
                             f"got {self.one_sided_tokens!r}")
        if self.stream_buffer_mb <= 0 or self.stream_stall_seconds <= 0:
            raise ValueError("stream_buffer_mb and stream_stall_seconds must be > 0")
        if self.auth_token and self.auth_token_file:
            raise ValueError("give the auth token once: --auth-token or --auth-token-file, not both")
        if self.auth_token_file:
            try:
                with open(self.auth_token_file, encoding="utf-8") as f:
                    self.auth_token = f.readline().strip()
            except OSError as exc:
                raise ValueError(f"cannot read the auth token file: {exc}") from None
            if not self.auth_token:
                raise ValueError(f"the auth token file {self.auth_token_file} is empty")

    @property
    def lora(self) -> bool:
        """The after model is an adapter on the before model."""
        return bool(self.after_adapter) or (Path(self.after) / "adapter_config.json").is_file()

    @property
    def adapter(self) -> str:
        return self.after_adapter or (self.after if self.lora else "")

    def request_limits(self) -> RequestLimits:
        """The request limits, as configured."""
        return replace(LIMITS, max_n=self.max_n, max_logprobs=self.max_logprobs,
                       max_stop_strings=self.max_stop_strings, max_stop_string_chars=self.max_stop_string_chars,
                       alpha_bound=self.alpha_bound, max_sweep_samples=self.max_sweep_samples,
                       max_detectors=self.max_detectors)

    def actor_resources(self, name: str) -> dict | None:
        """after_resources / before_resources parsed: a JSON object of resource name -> amount, or None."""
        raw = getattr(self, name)
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name} must be a JSON object, e.g. '{{\"gpu_a\": 1}}': {exc}") from None
        if not isinstance(value, dict) or not all(isinstance(v, (int, float)) for v in value.values()):
            raise ValueError(f"{name} must be a JSON object of resource name -> number; got {raw!r}")
        return value

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "ServerConfig":
        """Defaults, then environment variables, then explicit overrides (flags) that are not None."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _parse(f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def redacted(self) -> dict:
        """The configuration as a dict for logs, with secrets replaced."""
        return {f.name: ("***" if f.metadata.get("secret") and getattr(self, f.name) else getattr(self, f.name))
                for f in fields(self)}


AUTO_REPLICAS = 0


def parse_replicas(value: str) -> int:
    """'auto' -> AUTO_REPLICAS (0), else a count >= 1."""
    if str(value).strip().lower() == "auto":
        return AUTO_REPLICAS
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"replicas must be 'auto' or a count >= 1; got {value!r}")
    return count


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """`diffamp serve`'s flags: one per ServerConfig field, named after it."""
    parser = parser or argparse.ArgumentParser(prog="diffamp serve", description="Run the diffamp gRPC service.")
    for f in fields(ServerConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} [env {f.metadata['env']}]"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            parser.add_argument(flag, type=kind, default=None, help=help_text)
    return parser


def _parse(type_name, raw: str):
    if type_name in (bool, "bool"):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if type_name in (int, "int"):
        return int(raw)
    if type_name in (float, "float"):
        return float(raw)
    return raw
