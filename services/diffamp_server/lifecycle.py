"""A running diffamp server: load the tokenizers, start Ray and the model replicas, serve gRPC until SIGTERM.

Lifecycle as in grpc's own examples: grpc.aio server with reflection and the standard health service;
on SIGTERM or SIGINT, stop admitting, report NOT_SERVING, let streams finish within the drain period,
end the rest with UNAVAILABLE, and exit 0. With --http-port, the OpenAI-compatible HTTP API (openai_api/)
runs in the same event loop on the same gateway, and stops after the same drain.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from diffamp.v1 import diffamp_pb2, diffamp_pb2_grpc

from .config import ServerConfig, parse_replicas
from .engine.lora import check_base
from .gateway import Gateway, GatewaySettings
from .interceptors import BearerTokenInterceptor, CallInterceptor, DecodeGuardInterceptor
from .metrics import NO_METRICS, Metrics
from .replica import RayPlacement
from .replicas import ReplicaManager
from .request import Limits
from .resources import (init_ray, logits_size, model_config, model_sources, plan_kv, resolve_placement,
                        worker_threads)
from .servicer import AdminServicer, AmplificationServicer
from .tokenizer_pair import TokenizerPair
from .workers import WorkerSpec

if TYPE_CHECKING:
    from .openai_api.server import HttpServer

log = logging.getLogger("diffamp")
MAX_STREAMS_PER_CONNECTION = 256
"""A stream whose client stopped reading keeps one pending message until the client reads or leaves; this
bounds how many one connection can hold."""
SERVICE_NAME = diffamp_pb2.DESCRIPTOR.services_by_name["AmplificationService"].full_name
ADMIN_SERVICE_NAME = diffamp_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name


@dataclass
class RunningServer:
    server: grpc.aio.Server
    gateway: Gateway
    replicas: ReplicaManager
    port: int
    config: ServerConfig
    tasks: list[asyncio.Task] = field(default_factory=list)
    metrics: Metrics = field(default=NO_METRICS)
    metrics_port: int = 0
    http: HttpServer | None = None

    @property
    def http_port(self) -> int | None:
        """The OpenAI-compatible HTTP API's bound port; None when it is off."""
        return self.http.port if self.http else None

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain (both APIs answer 503 to new requests meanwhile), then close both servers."""
        grace = self.config.drain_seconds if grace_s is None else grace_s
        started = time.monotonic()
        scheduler = self.gateway.scheduler
        log.info("shutting down: draining for up to %.0f s", grace, extra={"fields": {
            "event": "shutdown_started", "drain_s": grace, "live_sequences": scheduler.live_sequences,
            "queued_sequences": scheduler.queued_sequences}})
        for task in self.tasks:
            task.cancel()
        await self.gateway.drain(grace)
        await asyncio.gather(self.server.stop(1.0), *([self.http.stop()] if self.http else []))
        self.gateway.shutdown_replicas()
        self.metrics.stop()
        log.info("shut down in %.1f s", time.monotonic() - started, extra={"fields": {
            "event": "shutdown_complete", "seconds": round(time.monotonic() - started, 3)}})


def _health_reporter(health_servicer):
    def on_health_change(serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            asyncio.get_running_loop().create_task(health_servicer.set(name, status))
    return on_health_change


async def start_server(config: ServerConfig) -> RunningServer:
    """Load tokenizers, start the workers and the gRPC server. Returns once it is serving."""
    started = time.monotonic()
    log.info("configuration", extra={"fields": {"event": "configuration", "config": config.redacted()}})
    metrics, metrics_port = NO_METRICS, 0
    if config.metrics_port:  # first, so a taken port fails before the models load, and scrapes see the start
        metrics = Metrics()
        metrics_port = metrics.serve(config.host, config.metrics_port)
        log.info("metrics on http://%s:%d/metrics", config.host, metrics_port,
                 extra={"fields": {"event": "metrics_started", "metrics_port": metrics_port}})
    try:
        return await _start(config, started, metrics, metrics_port)
    except BaseException:
        metrics.stop()
        raise


async def _start(config: ServerConfig, started: float, metrics, metrics_port: int) -> RunningServer:
    after_src, before_src = model_sources(config)
    before_cfg = model_config(before_src)
    after_cfg = before_cfg if config.lora else model_config(after_src)
    if config.lora:
        check_base(config.adapter, config.before)
    tokenizers = TokenizerPair.load(after_src, before_src, logits_size(after_cfg, before_cfg), config.one_sided_tokens)
    init_ray(config)
    placement, device = resolve_placement(config)
    kv = plan_kv(config, device, after_cfg, before_cfg)
    spec = WorkerSpec(after=after_src, before=before_src, dtype=config.dtype, device=device,
                      max_batch_size=kv.slots, max_seq_len=kv.max_seq_len, shared_vocab=tokenizers.shared,
                      eos_ids=tuple(sorted(tokenizers.eos_ids)),
                      torch_threads=worker_threads(config, placement, device),
                      adapter=config.adapter, engine=config.engine, compile=config.compile,
                      compile_cache_dir=config.compile_cache_dir,
                      decode_steps=config.decode_steps,
                      max_logprobs=config.max_logprobs)
    log.info("%s replicas on %s, each with %d KV slots x %d positions (%.1f MiB of KV cache)", placement, device,
             kv.slots, kv.max_seq_len, kv.total_bytes / 2**20)
    where = RayPlacement(placement=placement, worker_cpus=config.worker_cpus,
                         after_resources=config.actor_resources("after_resources"),
                         before_resources=config.actor_resources("before_resources"))
    limits = Limits(request=config.request_limits(), max_seq_len=kv.max_seq_len,
                    max_token_chars=tokenizers.max_token_chars,
                    lora_layers=before_cfg.num_hidden_layers if config.lora else None)
    health_servicer = health.aio.HealthServicer()
    gateway = Gateway(tokenizers, limits, GatewaySettings(
        max_queued=config.max_queued, decode_steps=config.decode_steps,
        stream_buffer_bytes=int(config.stream_buffer_mb * 2**20), stream_stall_s=config.stream_stall_seconds),
        on_health_change=_health_reporter(health_servicer))
    gateway.metrics = metrics
    metrics.watch(gateway, kv_bytes_per_slot=kv.bytes_per_slot, kv_positions_per_slot=kv.max_seq_len)
    replicas = ReplicaManager(gateway, spec, where, drain_s=config.drain_seconds)
    await replicas.scale_to(parse_replicas(config.replicas))
    tasks = [asyncio.get_running_loop().create_task(replicas.follow_cluster(), name="diffamp-follow-cluster")]
    server = _grpc_server(config, gateway, replicas, health_servicer, metrics)
    address = f"{config.host}:{config.port}"
    if config.tls_cert:
        with open(config.tls_key, "rb") as k, open(config.tls_cert, "rb") as c:
            port = server.add_secure_port(address, grpc.ssl_server_credentials([(k.read(), c.read())]))
    else:
        port = server.add_insecure_port(address)
    await server.start()
    try:
        http = await _http_server(config, gateway, metrics) if config.http_port else None
    except BaseException:
        for task in tasks:
            task.cancel()
        await server.stop(0)
        await gateway.drain(0)
        gateway.shutdown_replicas()
        metrics.stop()
        raise
    # "liveness" stays SERVING while the process answers, so a liveness probe never kills a gateway that is
    # only waiting for a worker to restart.
    await health_servicer.set("liveness", health_pb2.HealthCheckResponse.SERVING)
    # Everything loaded so far (tokenizers, torch, transformers) lives as long as the process: frozen, the
    # garbage collector no longer walks it, so a collection during a big request pauses the event loop for
    # milliseconds instead of a tenth of a second.
    gc.collect()
    gc.freeze()
    log.info("diffamp serving on %s:%d (%s, tls %s, auth %s)", config.host, port, placement,
             "on" if config.tls_cert else "off", "on" if config.auth_token else "off", extra={"fields": {
                 "event": "startup", "host": config.host, "port": port, "metrics_port": metrics_port,
                 "http_port": http.port if http else None, "placement": placement, "device": device,
                 "replicas": len(gateway.replicas), "kv_slots": kv.slots, "max_seq_len": kv.max_seq_len,
                 "kv_cache_bytes": kv.total_bytes, "tls": bool(config.tls_cert), "auth": bool(config.auth_token),
                 "startup_s": round(time.monotonic() - started, 3)}})
    if http:
        log.info("OpenAI-compatible HTTP API on %s://%s:%d/v1", "https" if config.tls_cert else "http", config.host,
                 http.port)
    return RunningServer(server, gateway, replicas, port, config, tasks, metrics, metrics_port, http)


async def _http_server(config: ServerConfig, gateway: Gateway, metrics) -> HttpServer:
    """The OpenAI-compatible API (openai_api/), imported only when it is on."""
    from .openai_api.app import ApiSettings
    from .openai_api.server import start_http

    settings = ApiSettings(auth_token=config.auth_token, max_body_bytes=config.max_message_bytes,
                           after_model=config.after, before_model=config.before, log_prompts=config.log_prompts)
    return await start_http(gateway, settings, host=config.host, port=config.http_port, tls_cert=config.tls_cert,
                            tls_key=config.tls_key, metrics=metrics)


def _grpc_server(config: ServerConfig, gateway: Gateway, replicas: ReplicaManager, health_servicer,
                 metrics=NO_METRICS) -> grpc.aio.Server:
    options = [("grpc.max_receive_message_length", config.max_message_bytes),
               ("grpc.max_send_message_length", config.max_message_bytes),
               ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION)]
    # The call interceptor first: it sees every RPC, one refused for its token included.
    interceptors = [CallInterceptor(metrics, config.log_prompts)]
    if config.auth_token:
        interceptors.append(BearerTokenInterceptor(config.auth_token))
    interceptors.append(DecodeGuardInterceptor())
    server = grpc.aio.server(options=options, interceptors=interceptors)
    diffamp_pb2_grpc.add_AmplificationServiceServicer_to_server(
        AmplificationServicer(gateway, max_message_bytes=config.max_message_bytes), server)
    diffamp_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(gateway, replicas), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, ADMIN_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return server


async def serve(config: ServerConfig) -> None:
    running = await start_server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if config.log_format == "text":  # in json, stdout carries log objects only (the startup event says as much)
        print(f"diffamp serving on {config.host}:{running.port}", flush=True)
        if running.http:
            print(f"OpenAI-compatible HTTP API on {config.host}:{running.http_port}", flush=True)
    await stop.wait()
    await running.stop()
