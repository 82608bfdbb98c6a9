"""`diffamp serve`: start Ray and the model workers, then serve the gRPC API until SIGTERM.

Lifecycle as in grpc's own examples: grpc.aio server with reflection and the standard health service;
on SIGTERM or SIGINT, stop admitting, report NOT_SERVING, let streams finish within the drain period,
end the rest with UNAVAILABLE, and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from diffamp.v1 import diffamp_pb2, diffamp_pb2_grpc

from .interceptors import BearerTokenInterceptor, DecodeGuardInterceptor
from .config import ServerConfig
from .gateway import Gateway
from .kv_cache import slot_bytes, slots_within_budget
from .loading import ModelSource, context_length, resolve_dtype
from .request import Limits
from .servicer import AmplificationServicer
from .tokenizer_pair import TokenizerPair
from .workers import WorkerPool, WorkerSpec

log = logging.getLogger("diffamp")
SERVICE_NAME = diffamp_pb2.DESCRIPTOR.services_by_name["AmplificationService"].full_name


@dataclass
class RunningServer:
    server: grpc.aio.Server
    gateway: Gateway
    pool: WorkerPool
    port: int
    config: ServerConfig

    async def stop(self, grace_s: float | None = None) -> None:
        grace = self.config.drain_seconds if grace_s is None else grace_s
        await self.gateway.drain(grace)
        await self.server.stop(1.0)
        self.pool.shutdown()


def model_sources(config: ServerConfig) -> tuple[ModelSource, ModelSource]:
    return (ModelSource(config.after, config.tokenizer_class or None, config.trust_remote_code),
            ModelSource(config.before, config.tokenizer_class or None, config.trust_remote_code))


def _model_config(source: ModelSource):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source.model_id, trust_remote_code=source.trust_remote_code).get_text_config()


def resolve_placement(config: ServerConfig) -> tuple[str, str]:
    """(placement, device) from the flags and the Ray cluster's GPUs."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    device = config.device
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if device.startswith("cuda"):
        device = "cuda:0"  # Ray gives each GPU actor its own CUDA_VISIBLE_DEVICES, so it sees cuda:0
    placement = config.placement
    if placement == "auto":
        placement = "split" if device.startswith("cuda") and gpus >= 2 else "colocated"
    return placement, device


def init_ray(config: ServerConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    if config.ray_address:
        deadline = time.monotonic() + 120
        while True:  # in a pod, the Ray head may still be starting
            try:
                ray.init(address=config.ray_address, log_to_driver=True)
                return
            except ConnectionError as exc:
                if time.monotonic() > deadline:
                    raise ConnectionError(f"no Ray cluster at {config.ray_address}: {exc}") from exc
                log.info("waiting for the Ray cluster at %s", config.ray_address)
                time.sleep(2)
    else:
        ray.init(num_cpus=config.ray_num_cpus or None, include_dashboard=False, log_to_driver=True)


async def start_server(config: ServerConfig) -> RunningServer:
    """Load tokenizers, start the workers and the gRPC server. Returns once it is serving."""
    log.info("configuration: %s", config.redacted())
    after_src, before_src = model_sources(config)
    tokenizers = TokenizerPair.load(after_src, before_src)
    after_cfg, before_cfg = _model_config(after_src), _model_config(before_src)
    shared = tokenizers.shared_mask(min(after_cfg.vocab_size, before_cfg.vocab_size))
    init_ray(config)
    placement, device = resolve_placement(config)
    max_seq_len = min(config.max_seq_len, context_length(after_cfg), context_length(before_cfg))
    dtype = resolve_dtype(config.dtype, device)
    per_slot = slot_bytes(after_cfg, max_seq_len, dtype) + slot_bytes(before_cfg, max_seq_len, dtype)
    slots = slots_within_budget(int(config.kv_cache_budget_mb * 2**20), per_slot, config.max_batch_size)
    spec = WorkerSpec(after_src, before_src, config.dtype, device, device, slots, max_seq_len,
                      tuple(shared.tolist()), eos_ids=tuple(sorted(tokenizers.eos_ids)),
                      torch_threads=config.torch_threads)
    log.info("starting %s workers on %s (%d KV slots x %d positions, %.1f MiB of KV cache)", placement, device,
             slots, max_seq_len, slots * per_slot / 2**20)
    resources = (config.actor_resources("after_resources"), config.actor_resources("before_resources"))
    pool = WorkerPool(spec, placement, config.worker_cpus, resources=resources)
    await pool.start()
    limits = Limits(config.max_n, config.max_logprobs, config.max_stop_strings, config.max_stop_string_chars,
                    config.alpha_bound, max_seq_len, int(shared.shape[0]))

    health_servicer = health.aio.HealthServicer()

    def on_health_change(serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            asyncio.get_running_loop().create_task(health_servicer.set(name, status))

    gateway = Gateway(tokenizers, pool, limits, slots, config.max_queued, config.decode_steps,
                      config.max_sweep_samples, on_health_change)
    gateway.start()
    options = [("grpc.max_receive_message_length", config.max_message_bytes),
               ("grpc.max_send_message_length", config.max_message_bytes)]
    interceptors = [BearerTokenInterceptor(config.auth_token)] if config.auth_token else []
    interceptors.append(DecodeGuardInterceptor())
    server = grpc.aio.server(options=options, interceptors=interceptors)
    diffamp_pb2_grpc.add_AmplificationServiceServicer_to_server(AmplificationServicer(gateway), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{config.host}:{config.port}"
    if config.tls_cert:
        with open(config.tls_key, "rb") as k, open(config.tls_cert, "rb") as c:
            credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    await server.start()
    on_health_change(True)
    # "liveness" stays SERVING while the process answers, so a liveness probe never kills a gateway that is
    # only waiting for a worker to restart.
    await health_servicer.set("liveness", health_pb2.HealthCheckResponse.SERVING)
    log.info("diffamp serving on %s:%d (%s, tls %s, auth %s)", config.host, port, placement,
             "on" if config.tls_cert else "off", "on" if config.auth_token else "off")
    return RunningServer(server, gateway, pool, port, config)


async def serve(config: ServerConfig) -> None:
    running = await start_server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"diffamp serving on {config.host}:{running.port}", flush=True)
    await stop.wait()
    log.info("shutting down: draining for up to %.0f s", config.drain_seconds)
    await running.stop()


class BackgroundServer:
    """A whole server (gateway, workers, grpc.aio) on its own event loop in a thread, for notebooks, tests and
    benchmarks: `srv = BackgroundServer(ServerConfig(port=0)); srv.address; srv.stop()`."""

    def __init__(self, config: ServerConfig, start_timeout_s: float = 300):
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="diffamp-server")
        self.thread.start()
        self.config = config
        self.running: RunningServer = self.run(start_server(config), timeout=start_timeout_s)
        self.address = f"{config.host}:{self.running.port}"

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace_s: float = 0.0) -> None:
        self.run(self.running.stop(grace_s))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="diffamp serve", description="Run the diffamp gRPC service.")
    for f in dataclasses.fields(ServerConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} [env {f.metadata['env']}]"
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            parser.add_argument(flag, type=kind, default=None, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ServerConfig.from_env(**vars(args))
        asyncio.run(serve(config))
    except (ValueError, OSError) as exc:
        print(f"diffamp serve: {exc}", file=sys.stderr)
        return 2
    return 0
