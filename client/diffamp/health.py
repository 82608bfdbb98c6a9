"""The standard gRPC health check (grpc.health.v1.Health/Check) with only grpcio: for container HEALTHCHECKs.

Works against the diffamp gateway and against a Ray raylet, which serves the same standard service.
"""

from __future__ import annotations

import grpc

CHECK = "/grpc.health.v1.Health/Check"
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _encode_request(service: str) -> bytes:
    data = service.encode()
    if not data:
        return b""
    length, out = len(data), bytearray([0x0A])
    while length > 0x7F:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out) + data


def _decode_status(data: bytes) -> int:
    """HealthCheckResponse has one field, status (1, varint); absent means UNKNOWN."""
    if len(data) >= 2 and data[0] == 0x08:
        return data[1]
    return 0


def check(channel: grpc.Channel, service: str = "", timeout_s: float = 3.0) -> str:
    call = channel.unary_unary(CHECK, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return STATUS_NAMES.get(_decode_status(call(_encode_request(service), timeout=timeout_s)), "UNKNOWN")
