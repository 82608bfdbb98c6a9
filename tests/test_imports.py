"""Which side imports what: the server uses only the generated stubs and the neutral module of the client
package; the client reaches the server only through its lazy entry points; the worker side needs no grpc."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "services" / "diffamp_server"
CLIENT = ROOT / "client" / "diffamp"
LAZY_SERVER_IMPORTS = {("__init__.py", "diffamp_server"), ("cli.py", "diffamp_server.server")}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_the_server_imports_only_stubs_and_the_neutral_module_of_the_client():
    wrong = [(p.relative_to(ROOT), name) for p in SERVER.rglob("*.py") for name in _imports(p)
             if name.split(".")[0] == "diffamp" and not name.startswith(("diffamp.v1", "diffamp.common"))]
    assert not wrong, wrong


def test_the_client_reaches_the_server_only_lazily():
    found = {(p.name, name) for p in CLIENT.rglob("*.py") for name in _imports(p) if name.startswith("diffamp_server")}
    assert found <= LAZY_SERVER_IMPORTS, found - LAZY_SERVER_IMPORTS


def test_the_neutral_module_imports_no_grpc_and_does_no_io():
    for path in (CLIENT / "common").rglob("*.py"):
        names = _imports(path)
        assert not [n for n in names if n.split(".")[0] in ("grpc", "google", "diffamp_server")], (path, names)
        assert "open(" not in path.read_text(), path


def _run_blocking(blocked: tuple[str, ...], code: str) -> subprocess.CompletedProcess:
    blocker = (f"import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
               f"        if name in {blocked!r} or name.split('.')[0] in {blocked!r}:\n"
               f"            raise ImportError('blocked for this test: ' + name)\n"
               f"sys.meta_path.insert(0, Block())\n")
    return subprocess.run([sys.executable, "-c", blocker + code], capture_output=True, text=True, timeout=120)


def test_the_gateway_loads_no_client_rendering_or_cli_code():
    out = _run_blocking(("diffamp.render", "diffamp.cli", "diffamp.sweep_rpc", "diffamp.sweep_report",
                         "diffamp.sweep_file", "diffamp.connection"),
                        "import diffamp_server.lifecycle, diffamp_server.gateway, diffamp_server.servicer\nprint('ok')")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_worker_side_imports_no_grpc():
    out = _run_blocking(("grpc", "grpc_status", "grpc_health", "grpc_reflection", "google.rpc"),
                        "import diffamp_server.workers, diffamp_server.engine.pair, diffamp_server.engine.split\n"
                        "print('ok')")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
