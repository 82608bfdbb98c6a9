"""The client side imports and runs with only grpcio and protobuf: torch, transformers and ray are blocked."""

import subprocess
import sys

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers', 'ray', 'numpy', 'diffamp_server', 'grpc_status',
                                  'grpc_health', 'grpc_reflection', 'tokenizers'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=60)


def test_stubs_and_cli_import_without_server_dependencies():
    out = _run(
        "import diffamp, diffamp.cli, diffamp.connection, diffamp.render, diffamp.sweep_rpc, diffamp.common.sweep\n"
        "from diffamp import messages\n"
        "from diffamp.v1 import diffamp_pb2, diffamp_pb2_grpc\n"
        "req = diffamp_pb2.GenerateRequest(prompt=messages.prompt('hi'), alpha=0.0)\n"
        "assert req.HasField('alpha') and not req.sampling.HasField('temperature')\n"
        "print('ok')"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_cli_help_and_a_failed_call_work_without_server_dependencies():
    out = _run("import sys; from diffamp.cli import main; sys.argv=['diffamp','generate','--help']; main()")
    assert out.returncode == 0 and "--alpha" in out.stdout
    out = _run("import sys; from diffamp.cli import main; sys.exit(main(['info', '--server', '127.0.0.1:9', "
               "'--timeout', '2']))")
    assert out.returncode == 1 and "no diffamp server answers at 127.0.0.1:9" in out.stderr


def test_a_failed_generate_without_a_server_says_how_to_start_one():
    """The helpful sentence without --wait too, not gRPC's raw "failed to connect to all addresses"."""
    out = _run("import sys; from diffamp.cli import main; "
               "sys.exit(main(['generate', 'hi', '--server', '127.0.0.1:9']))")
    assert out.returncode == 1
    assert "no diffamp server answers at 127.0.0.1:9. Start one with `diffamp serve`" in out.stderr
    assert "failed to connect" not in out.stderr


def test_serve_and_library_api_say_which_extra_is_missing():
    out = _run("import sys; from diffamp.cli import main; sys.exit(main(['serve']))")
    assert out.returncode == 2 and "pip install 'diffamp[serve]'" in out.stderr
    out = _run("import diffamp\ntry:\n    diffamp.Amplifier\nexcept ImportError as e:\n    print(e)")
    assert "pip install 'diffamp[serve]'" in out.stdout
