"""diffamp: logit diff amplification as a service.

This package is the client side (generated stubs in diffamp.v1, the CLI) and needs only grpcio and
protobuf. The server and the in-process library API live in diffamp_server (`pip install 'diffamp[serve]'`);
`diffamp.Amplifier` forwards to it.
"""

__version__ = "0.1.0"


def __getattr__(name):
    if name in ("Amplifier", "Completion", "CompletionLogprobs"):
        try:
            import diffamp_server
        except ImportError as exc:
            raise ImportError(f"diffamp.{name} needs the server extra: pip install 'diffamp[serve]' ({exc})") from exc
        return getattr(diffamp_server, name)
    raise AttributeError(name)
