"""The protocol core stays free of I/O: no asyncio, threads or sockets."""

from __future__ import annotations

import subprocess
import sys


def test_protocol_core_imports_no_io_modules() -> None:
    code = (
        "import sys, tidewire.protocol\n"
        "bad = [m for m in ('asyncio', 'socket', 'threading', 'selectors') "
        "if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_sync_layer_imports_no_asyncio() -> None:
    code = "import sys, tidewire.sync\nprint('asyncio' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_asgi_layer_imports_neither_the_hub_nor_sync() -> None:
    code = (
        "import sys, tidewire.asgi\n"
        "print([m for m in ('tidewire.hub', 'tidewire.sync') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_hub_client_uses_no_server_module_of_the_hub() -> None:
    """tidewire.hub.client stands on tidewire.asyncio's public API: it never
    imports the hub's server side, so the two meet only on the wire."""
    import ast
    from pathlib import Path

    import tidewire.hub.client as client

    folder = Path(client.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                # ``from ... import asyncio`` (tidewire) is fine; ``from .. import
                # app`` or ``from ..session import ...`` (tidewire.hub) is not.
                assert node.level >= 3, f"{path.name} imports the hub: {ast.dump(node)}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                    node.module or ""]
                for name in names:
                    assert not name.startswith("tidewire.hub"), f"{path.name} imports {name}"
