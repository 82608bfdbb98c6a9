import pytest

from diffamp_server.config import ServerConfig
from diffamp_server.config import build_parser


def test_defaults_env_and_flags_in_that_order():
    env = {"MODEL_AFTER_ID": "org/after", "PORT": "6000", "DEVICE": "cpu", "DIFFAMP_TRUST_REMOTE_CODE": "true"}
    config = ServerConfig.from_env(env)
    assert (config.after, config.port, config.device, config.trust_remote_code) == ("org/after", 6000, "cpu", True)
    assert config.host == "127.0.0.1" and config.placement == "auto"
    args = vars(build_parser().parse_args(["--port", "7000", "--after", "x", "--placement", "split"]))
    config = ServerConfig.from_env(env, **args)
    assert (config.after, config.port, config.placement, config.device) == ("x", 7000, "split", "cpu")
    assert config.http_port == 0 and config.metrics_port == 0  # the HTTP API and the metrics are off unless asked for
    assert ServerConfig.from_env({"DIFFAMP_HTTP_PORT": "8000"}, **vars(build_parser().parse_args([]))).http_port == 8000
    assert ServerConfig.from_env({}, **vars(build_parser().parse_args(["--http-port", "8001"]))).http_port == 8001


@pytest.mark.parametrize("kwargs,message", [
    ({"placement": "sideways"}, "placement"),
    ({"port": 70000}, "port"),
    ({"http_port": -1}, "http_port"),
    ({"http_port": 8000, "port": 8000}, "differ"),
    ({"http_port": 9090, "metrics_port": 9090}, "differ"),
    ({"metrics_port": 50051}, "differ"),
    ({"max_batch_size": 0}, "max_batch_size"),
    ({"tls_cert": "cert.pem"}, "TLS"),
])
def test_bad_config_is_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServerConfig(**kwargs)


def test_secrets_are_redacted():
    assert ServerConfig(auth_token="hunter2").redacted()["auth_token"] == "***"
    assert "hunter2" not in repr(ServerConfig(auth_token="hunter2").redacted())
    assert "hunter2" not in repr(ServerConfig(auth_token="hunter2"))


def test_the_auth_token_can_come_from_a_file_and_never_from_both(tmp_path):
    path = tmp_path / "token"
    path.write_text("from-a-file\n")
    assert ServerConfig(auth_token_file=str(path)).auth_token == "from-a-file"
    with pytest.raises(ValueError, match="not both"):
        ServerConfig(auth_token="x", auth_token_file=str(path))
    (tmp_path / "empty").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        ServerConfig(auth_token_file=str(tmp_path / "empty"))
    assert "from-a-file" not in repr(ServerConfig(auth_token_file=str(path)))


def test_workers_on_one_cpu_machine_share_its_cores(monkeypatch):
    """Two replicas whose workers each took both cores of this machine ran 5.6x slower than one replica."""
    from diffamp_server import workers
    from diffamp_server.resources import worker_threads

    monkeypatch.setattr(workers, "available_cpus", lambda: 8)
    assert worker_threads(ServerConfig(), "colocated", "cpu") == 0  # one worker: every core
    assert worker_threads(ServerConfig(replicas="2"), "colocated", "cpu") == 4
    assert worker_threads(ServerConfig(replicas="3"), "split", "cpu") == 1
    assert worker_threads(ServerConfig(replicas="2", torch_threads=3), "colocated", "cpu") == 3
    assert worker_threads(ServerConfig(replicas="2", ray_address="10.0.0.1:6379"), "colocated", "cpu") == 0
    assert worker_threads(ServerConfig(replicas="2"), "colocated", "cuda") == 0
