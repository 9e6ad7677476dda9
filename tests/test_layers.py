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
