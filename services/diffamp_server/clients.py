"""Who a request comes from, the same way for gRPC and the HTTP API: peers written as gRPC writes them
(ipv4:HOST:PORT, ipv6:[HOST]:PORT), and the key fair shares count a request against."""

from __future__ import annotations

import hashlib


def peer_of(host: str, port: int) -> str:
    """A client address as gRPC writes a peer, so both APIs log the same form."""
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def client_key(authorization: str | None, peer: str) -> str:
    """Whom fairness counts a request against: its bearer token (hashed) when it sends one, else its peer's
    address without the port. A client gets the same key over gRPC and HTTP."""
    if authorization:
        return "token:" + hashlib.sha256(authorization.encode()).hexdigest()[:12]
    return peer.rsplit(":", 1)[0] if peer.count(":") > 1 else peer
