"""Prometheus metrics (`--metrics-port`): what the gateway sees of requests and of each worker call.

Costs on the decode path are a few counter increments per worker call (gateway.py) and per event sent to a
client (calls.py). Load gauges (sequences, KV slots, KV bytes) cost nothing per step: a collector reads the
scheduler when Prometheus scrapes. Worker-side figures are the gateway's view of each worker call (its
duration, rows and tokens), not a scrape of Ray. Every metric is listed in the README (Metrics).

Without --metrics-port the gateway and the calls get NO_METRICS, whose methods do nothing.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

RPCS = ("Generate", "Compare", "Sweep", "CheckTokenizers", "GetModelInfo")
"""The gRPC methods counted; the HTTP API adds its own `rpc` values (openai_api/call_middleware.py)."""
STREAMING_RPCS = ("Generate", "Compare")
FINISH_REASONS = ("stop", "length", "stop_string")

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 40.0,
                80.0, 160.0)
ITL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5,
               1.0, 2.5)
REQUEST_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1800.0,
                   3600.0)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24)
STEP_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _Null:
    """A counter or histogram child that records nothing."""

    def inc(self, amount: float = 1) -> None: ...

    def observe(self, amount: float) -> None: ...


class NullRpcMetrics:
    prompt_tokens = generated_tokens = inter_token = _Null()

    def finished(self, reason: str) -> None: ...

    def sweep_sample(self, hits: int) -> None: ...

    def finished_request(self, code: str, total_s: float, first_token_s: float | None,
                         queue_s: float | None) -> None: ...


class NullMetrics:
    """Metrics off: every hook is a no-op."""

    enabled = False
    _rpc = NullRpcMetrics()

    def rpc(self, rpc: str) -> NullRpcMetrics:
        return self._rpc

    def expect(self, rpcs) -> None: ...

    def worker_call(self, replica_id: str, plan, result, seconds: float) -> None: ...

    def worker_restart(self, replica_id: str) -> None: ...

    def watch(self, gateway, **kv) -> None: ...

    def stop(self) -> None: ...


NO_METRICS = NullMetrics()


class RpcMetrics:
    """One RPC's children, bound once so the per-event cost is an increment."""

    def __init__(self, m: "Metrics", rpc: str):
        self._m, self._rpc = m, rpc
        self.prompt_tokens = m.prompt_tokens.labels(rpc)
        self.generated_tokens = m.generated_tokens.labels(rpc)
        self.inter_token = m.inter_token.labels(rpc)
        self._ttft = m.ttft.labels(rpc)
        self._queue = m.queue.labels(rpc)
        self._duration = m.duration.labels(rpc)
        self._finished = {reason: m.samples_finished.labels(rpc, reason) for reason in FINISH_REASONS}
        self._codes: dict[str, object] = {}

    def finished(self, reason: str) -> None:
        child = self._finished.get(reason)
        if child is None:
            child = self._finished[reason] = self._m.samples_finished.labels(self._rpc, reason)
        child.inc()

    def sweep_sample(self, hits: int) -> None:
        self._m.sweep_samples.inc()
        if hits:
            self._m.detector_hits.inc(hits)

    def finished_request(self, code: str, total_s: float, first_token_s: float | None,
                         queue_s: float | None) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._m.requests.labels(self._rpc, code)
        child.inc()
        self._duration.observe(total_s)
        if first_token_s is not None:
            self._ttft.observe(first_token_s)
        if queue_s is not None:
            self._queue.observe(queue_s)


class _ReplicaMetrics:
    def __init__(self, m: "Metrics", replica_id: str):
        self.call_duration = m.call_duration.labels(replica_id)
        self.step_duration = m.step_duration.labels(replica_id)
        self.rows = m.call_rows.labels(replica_id)
        self.tokens = m.sampled_tokens.labels(replica_id)
        self.restarts = m.restarts.labels(replica_id)


class Metrics:
    """The metrics of one server, in their own registry (several servers can share a process, as in tests)."""

    enabled = True

    def __init__(self, gateway=None, *, kv_bytes_per_slot: int = 0, kv_positions_per_slot: int = 1):
        from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics

        disable_created_metrics()  # no *_created series: they double what is scraped and no dashboard reads them
        self.registry = r = CollectorRegistry()
        self.requests = Counter("diffamp_requests", "RPCs and HTTP API requests finished, by method and final "
                                "gRPC status code", ["rpc", "code"], registry=r)
        self.duration = Histogram("diffamp_request_duration_seconds", "request duration, from its start to its status",
                                  ["rpc"], buckets=REQUEST_BUCKETS, registry=r)
        self.queue = Histogram("diffamp_request_queue_seconds",
                               "time a request waited for its first KV slot (from being queued to being admitted)",
                               ["rpc"], buckets=QUEUE_BUCKETS, registry=r)
        self.ttft = Histogram("diffamp_time_to_first_token_seconds",
                              "time from a generation request's start (Generate, Compare, HTTP chat and "
                              "completions) to its first token being sent (or, unstreamed, ready)",
                              ["rpc"], buckets=TTFT_BUCKETS, registry=r)
        self.inter_token = Histogram("diffamp_inter_token_latency_seconds",
                                     "per sample, time between two chunks sent to the client divided by the tokens "
                                     "in the later chunk (one observation per chunk)",
                                     ["rpc"], buckets=ITL_BUCKETS, registry=r)
        self.prompt_tokens = Counter("diffamp_prompt_tokens", "prompt tokens of the requests queued (after model's "
                                     "tokenizer; a Sweep queues one request per prompt, alpha and chunk of samples)",
                                     ["rpc"], registry=r)
        self.generated_tokens = Counter("diffamp_generated_tokens", "tokens sent to clients", ["rpc"], registry=r)
        self.samples_finished = Counter("diffamp_samples_finished", "samples that finished, by finish reason",
                                        ["rpc", "finish_reason"], registry=r)
        self.sweep_samples = Counter("diffamp_sweep_samples", "Sweep samples finished and sent", registry=r)
        self.detector_hits = Counter("diffamp_sweep_detector_hits",
                                     "detectors that fired on Sweep samples (a sample can fire several)", registry=r)
        self.call_duration = Histogram("diffamp_worker_call_duration_seconds",
                                       "one worker call (up to --decode-steps steps) as the gateway waits for it, "
                                       "Ray round trip included", ["replica"], buckets=CALL_BUCKETS, registry=r)
        self.step_duration = Histogram("diffamp_worker_step_duration_seconds",
                                       "a worker call's duration divided by the steps it ran", ["replica"],
                                       buckets=STEP_BUCKETS, registry=r)
        self.call_rows = Histogram("diffamp_worker_batch_size", "rows (sequences) in a worker call",
                                   ["replica"], buckets=ROW_BUCKETS, registry=r)
        self.sampled_tokens = Counter("diffamp_worker_sampled_tokens",
                                      "tokens the workers sampled (including tokens past a stop string and tokens of "
                                      "samples cancelled during the call)", ["replica"], registry=r)
        self.restarts = Counter("diffamp_worker_restarts", "worker failures recovered from by restarting the "
                                "replica's workers", ["replica"], registry=r)
        ProcessCollector(registry=r)
        self._rpcs: dict[str, RpcMetrics] = {}
        self.expect(RPCS)
        self._replicas: dict[str, _ReplicaMetrics] = {}
        self._server = None
        if gateway is not None:
            self.watch(gateway, kv_bytes_per_slot=kv_bytes_per_slot, kv_positions_per_slot=kv_positions_per_slot)

    def watch(self, gateway, *, kv_bytes_per_slot: int, kv_positions_per_slot: int) -> None:
        """Report the gateway's load (sequences, KV use, replica health) at every scrape from now on."""
        self.registry.register(GatewayCollector(gateway, kv_bytes_per_slot, kv_positions_per_slot))

    def expect(self, rpcs) -> None:
        """These RPCs' OK series exist from now on, at 0, so rate() sees their first increase."""
        for name in rpcs:
            self.rpc(name)
            self.requests.labels(name, "OK")

    # -- hooks ------------------------------------------------------------------------------------------
    def rpc(self, rpc: str) -> RpcMetrics:
        m = self._rpcs.get(rpc)
        if m is None:
            m = self._rpcs[rpc] = RpcMetrics(self, rpc)
        return m

    def replica(self, replica_id: str) -> _ReplicaMetrics:
        m = self._replicas.get(replica_id)
        if m is None:
            m = self._replicas[replica_id] = _ReplicaMetrics(self, replica_id)
        return m

    def worker_call(self, replica_id: str, plan, result, seconds: float) -> None:
        """One successful worker call: its duration, rows and the tokens it sampled."""
        m = self.replica(replica_id)
        lengths = [len(t) for t in result.token_ids]
        steps = max(lengths, default=0)
        m.call_duration.observe(seconds)
        m.rows.observe(plan.num_rows)
        m.tokens.inc(sum(lengths))
        if steps:
            m.step_duration.observe(seconds / steps)

    def worker_restart(self, replica_id: str) -> None:
        self.replica(replica_id).restarts.inc()

    # -- the endpoint -----------------------------------------------------------------------------------
    def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP on host:port in a daemon thread; returns the port."""
        from prometheus_client import start_http_server

        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        return self._server.server_port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class GatewayCollector:
    """Load gauges read from the scheduler at scrape time, in the scrape's thread. It only reads ints and copies
    lists and dicts (atomic under the GIL), so it needs no lock with the event loop."""

    def __init__(self, gateway, kv_bytes_per_slot: int, kv_positions_per_slot: int):
        self.gateway = gateway
        self.kv_bytes_per_slot = kv_bytes_per_slot
        self.bytes_per_position = kv_bytes_per_slot / max(1, kv_positions_per_slot)

    def _families(self):
        from prometheus_client.core import GaugeMetricFamily

        replica = ["replica"]
        return {
            "live": GaugeMetricFamily("diffamp_sequences_live", "sequences holding a KV slot (decoding, or "
                                      "finished and released at the next step)", labels=replica),
            "queued": GaugeMetricFamily("diffamp_sequences_queued",
                                        "sequences waiting for a KV slot, across replicas"),
            "slots_used": GaugeMetricFamily("diffamp_kv_slots_used", "KV slots in use (one per live sequence)",
                                            labels=replica),
            "slots": GaugeMetricFamily("diffamp_kv_slots_capacity", "KV slots of the replica", labels=replica),
            "tokens": GaugeMetricFamily("diffamp_kv_tokens_used", "KV positions written by live sequences (prompt "
                                        "+ generated tokens)", labels=replica),
            "bytes_used": GaugeMetricFamily("diffamp_kv_bytes_used", "bytes of KV cache (both models) holding live "
                                            "sequences' positions", labels=replica),
            "bytes": GaugeMetricFamily("diffamp_kv_bytes_capacity", "bytes of KV cache (both models) allocated",
                                       labels=replica),
            "up": GaugeMetricFamily("diffamp_replica_up", "1 while the replica serves, 0 while its workers restart",
                                    labels=replica),
            "serving": GaugeMetricFamily("diffamp_serving", "1 while the server admits requests (a replica serves "
                                         "and it is not draining)"),
        }

    def describe(self):
        return list(self._families().values())

    def collect(self):
        f = self._families()
        gateway = self.gateway
        scheduler = gateway.scheduler
        healthy = set(gateway.healthy)
        for replica_id, rows in list(scheduler.rows.items()):
            samples = list(rows)
            slots = scheduler.slots.get(replica_id, 0)
            tokens = sum(s.owner.request.prompt.longest + len(s.output.token_ids) for s in samples)
            f["live"].add_metric([replica_id], len(samples))
            f["slots_used"].add_metric([replica_id], len(samples))
            f["slots"].add_metric([replica_id], slots)
            f["tokens"].add_metric([replica_id], tokens)
            f["bytes_used"].add_metric([replica_id], tokens * self.bytes_per_position)
            f["bytes"].add_metric([replica_id], slots * self.kv_bytes_per_slot)
            f["up"].add_metric([replica_id], 1 if replica_id in healthy else 0)
        f["queued"].add_metric([], scheduler.queued)
        f["serving"].add_metric([], 1 if gateway.serving else 0)
        return list(f.values())
