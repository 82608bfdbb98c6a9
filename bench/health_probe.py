"""Health-check latency probe: `python bench/health_probe.py HOST:PORT` prints "ready" once the server answers,
then the seconds each standard health check took, one a line, every 20 ms, until its stdin closes. It runs in its
own process so that nothing of the caller's (its GIL, its load) delays the checks. Used by bench/isolation.py
and tests/test_isolation.py."""

import sys
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(sys.argv[1]))
stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
print("ready", flush=True)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.is_set():
    started = time.perf_counter()
    stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
    print(time.perf_counter() - started, flush=True)
    time.sleep(0.02)
