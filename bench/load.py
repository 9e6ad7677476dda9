"""Starting the load: the C load generator, or one library's Python client."""

from __future__ import annotations

import sys

from bench.procs import REPO, JsonLinesProcess, library_env
from bench.settings import Settings

LOADGEN = REPO / "bench" / "loadgen" / "loadgen"

Option = str | int | float | bool


def loadgen(
    mode: str, port: int, settings: Settings, hold_stdin: bool = False, **options: Option
) -> JsonLinesProcess:
    """``loadgen MODE --port PORT --name value...``; ``True`` options are bare flags."""
    argv = [str(LOADGEN), mode, "--port", str(port)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    return JsonLinesProcess(f"loadgen-{mode}", argv, settings.client_cpu, hold_stdin)


def client(name: str, port: int, size: int, settings: Settings) -> JsonLinesProcess:
    """``python -m bench.clients.NAME_client``: echo of ``size`` bytes of text, 1 connection."""
    module = {"tidewire-cb": "tidewire_cb", "tidewire-py": "tidewire"}.get(name, name)
    argv = [sys.executable, "-m", f"bench.clients.{module}_client"]
    argv += ["--uri", f"ws://127.0.0.1:{port}/", "--size", str(size)]
    argv += ["--warmup", str(settings.warmup), "--duration", str(settings.duration)]
    argv += ["--loop", settings.loop]
    return JsonLinesProcess(f"client-{name}", argv, settings.client_cpu, env=library_env(name))
