"""The processes under soak: hub nodes (``tidewire serve``) and a ``redis-server``.

Each runs in its own process on a free port of 127.0.0.1, with its files (a
config, a log) in the run's directory, until ``stop()``. What the soak measures
of them comes from ``/proc/<pid>``: ``rss_bytes()`` and ``fds()``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = [
    "NodeError",
    "HubNode",
    "RedisNode",
    "Process",
    "CHANNEL_NAMESPACE",
    "rss_bytes",
    "fds",
]

CHANNEL_NAMESPACE = "soak"  # the soak's channels are soak:0, soak:1, ...

# Every node's config: the soak's namespace open to anonymous subscribers,
# with history and presence, so that each subscribe and each publication
# does the work a real one does. join_leave stays off: a thousand joins,
# each pushed to every subscriber, would be a million messages of noise.
CONFIG = """\
[hub]
host = "127.0.0.1"
port = 0
demo = false
api_key = "{api_key}"
broker = "{broker}"
max_subscriptions = 16

[namespaces.{namespace}]
history_size = 100
history_ttl = 300
presence = true
anonymous = true
"""

READY = re.compile(r"tidewire hub listening on http://127\.0\.0\.1:(\d+)/")
HTTP_TIMEOUT = 10.0  # seconds for the node's answer to a GET
# What a node holds for its clients, and its counters of trouble: all must be
# 0 once the clients have left.
STATE_METRICS = ("connections_open", "subscriptions", "channels", "slow_consumers",
                 "interrupted")
START_TIMEOUT = 30.0  # seconds for a process to be ready, on a loaded machine
STOP_TIMEOUT = 15.0  # seconds for SIGTERM to end it before SIGKILL


class NodeError(RuntimeError):
    """A process didn't start, or died; the message quotes its log."""


def rss_bytes(pid: int) -> int:
    """The resident set size of a process, from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise NodeError(f"process {pid} has no VmRSS (a zombie?)")


def fds(pid: int) -> list[str]:
    """What each open file descriptor of a process points to (``socket:[123]``,
    ``anon_inode:[eventpoll]``, a path...); a descriptor closed while it was
    being read is left out."""
    base = f"/proc/{pid}/fd"
    out = []
    for name in os.listdir(base):
        try:
            out.append(os.readlink(f"{base}/{name}"))
        except FileNotFoundError:
            pass
    return out


class Process:
    """A child process with its log in ``directory``; ``name`` says what it is."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.log_path = directory / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def _spawn(self, argv: list[str], cwd: Path) -> None:
        # Settings come from the config file alone; the choice of twins passes.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TIDEWIRE_") or k == "TIDEWIRE_NO_SPEEDUPS"}
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} isn't started"
        return self.proc.pid

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise NodeError(f"{self.name} exited (status {code}); its log ends:\n"
                            f"{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; return the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode


class HubNode(Process):
    """``python -m tidewire serve --config FILE`` on a free port: one hub node
    on ``broker`` (``memory`` or a Redis URL)."""

    def __init__(self, name: str, directory: Path, broker: str, api_key: str) -> None:
        super().__init__(name, directory)
        self.broker = broker
        self.api_key = api_key
        config = directory / f"{name}.toml"
        config.write_text(CONFIG.format(api_key=api_key, broker=broker,
                                        namespace=CHANNEL_NAMESPACE))
        self._spawn([sys.executable, "-m", "tidewire", "serve", "--config", str(config)],
                    directory)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        """Until the node's banner names its port in the log."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self.check_alive()
            match = READY.search(self.log_path.read_text(errors="replace"))
            if match is not None:
                self.port = int(match.group(1))
                return
            time.sleep(0.05)
        raise NodeError(f"{self.name} didn't start in {START_TIMEOUT:.0f} s; its log ends:\n"
                        f"{self.log_tail()}")

    def _get(self, path: str) -> bytes:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                         headers={"Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            body: bytes = response.read()
            return body

    def state(self) -> dict[str, int]:
        """What the node holds for its clients, from ``/metrics`` (gauges and
        the counters of trouble) and ``/api/channels`` (subscribers in presence,
        every node's)."""
        out: dict[str, int] = {}
        for line in self._get("/metrics").decode().splitlines():
            name, _, value = line.partition(" ")
            key = name.removeprefix("tidewire_hub_").removesuffix("_total")
            if key in STATE_METRICS:
                out[key] = int(float(value))
        channels = json.loads(self._get("/api/channels"))["channels"]
        out["presence"] = sum(c["subscribers"] for c in channels)
        return out


class RedisNode(Process):
    """A ``redis-server`` on a free port that keeps nothing on disk."""

    ATTEMPTS = 3  # a free port can be taken between the look and the bind

    def __init__(self, directory: Path) -> None:
        super().__init__("redis-server", directory)
        exe = shutil.which("redis-server")
        if exe is None:
            raise NodeError("the soak on Redis needs redis-server: "
                            "apt-get install redis-server (make soak does it)")
        for _ in range(self.ATTEMPTS):
            self.port = _free_port()
            self._spawn([exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                         "--appendonly", "no", "--dir", str(directory)],
                        directory)
            if self._answers():
                return
        raise NodeError(f"redis-server didn't start; its log ends:\n{self.log_tail()}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers(self) -> bool:
        """True once it answers PING; False if it exited (its port was taken)."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise NodeError(f"redis-server didn't answer PING in {START_TIMEOUT:.0f} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
