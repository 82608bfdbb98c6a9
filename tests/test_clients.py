"""A client is the same client over gRPC and over the HTTP API: fair shares count both under one key."""

from diffamp_server.clients import client_key, peer_of


def test_the_same_client_has_one_key_over_grpc_and_http():
    assert peer_of("127.0.0.1", 6000) == "ipv4:127.0.0.1:6000"
    assert peer_of("::1", 6000) == "ipv6:[::1]:6000"
    for grpc_peer, host in (("ipv4:10.0.0.7:41000", "10.0.0.7"), ("ipv6:[::1]:41000", "::1")):
        assert client_key(None, grpc_peer) == client_key(None, peer_of(host, 52000))
    assert client_key("Bearer abc", "ipv4:10.0.0.7:1") == client_key("Bearer abc", peer_of("10.0.0.8", 2))
    assert client_key("Bearer abc", "") != client_key("Bearer abd", "")
    assert client_key(None, "ipv4:10.0.0.7:1") != client_key(None, "ipv4:10.0.0.8:1")
