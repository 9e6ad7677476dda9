"""A real ``redis-server`` for tests: on a free port, in a temporary directory,
stopped, killed, frozen or restarted (same port) when a test says so. And a
real Sentinel setup: a master, its replica and three ``redis-sentinel``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from ..conftest import timeout

INSTALL = "install it with `apt-get install redis-server` (make test does it)"
INSTALL_SENTINEL = "install it with `apt-get install redis-sentinel` (make test does it)"
# A master syncs a new replica at once, not after 5 s of waiting for others.
NO_SYNC_DELAY = ("--repl-diskless-sync-delay", "0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process. Without ``persist`` a restart loses everything;
    with it, every write is in its append-only file before Redis answers."""

    program, install = "redis-server", INSTALL

    def __init__(self, directory: Path, *, persist: bool = False,
                 extra: tuple[str, ...] = ()) -> None:
        self.persist = persist
        self.extra = extra
        exe = shutil.which(self.program)
        if exe is None:
            raise RuntimeError(f"these tests need {self.program}: {self.install}")
        self.exe = exe
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if self.persist else "no", "--appendfsync", "always",
                "--dir", str(self.directory), *self.extra]

    def start(self) -> None:
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout(10)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.program} exited; see {self.directory / 'redis.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.program} didn't answer within 10 s")

    def kill(self) -> None:
        """Kill it as a crash would: no goodbye to its clients."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout(5)) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(64).startswith(b"+OK")


class SentinelServer(RedisServer):
    """One ``redis-sentinel`` watching the master on ``master_port`` as ``service``."""

    program, install = "redis-sentinel", INSTALL_SENTINEL

    def __init__(self, directory: Path, *, service: str, master_port: int,
                 down_after_ms: int, failover_timeout_ms: int) -> None:
        super().__init__(directory)
        # Sentinel rewrites its own file as it learns the setup.
        (directory / "sentinel.conf").write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {service} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} {failover_timeout_ms}\n"
        )

    def command(self) -> list[str]:
        return [self.exe, str(self.directory / "sentinel.conf")]


class SentinelGroup:
    """A master, one replica of it, and three sentinels (quorum 2), each a
    process of its own in a directory of ``directory``."""

    service = "mymaster"

    def __init__(self, directory: Path, *, down_after_ms: int = 500,
                 failover_timeout_ms: int = 2000) -> None:
        self.down_after_ms = down_after_ms
        self.master = RedisServer(directory / "master", extra=NO_SYNC_DELAY)
        self.replica = RedisServer(
            directory / "replica", extra=("--replicaof", "127.0.0.1", str(self.master.port))
        )
        self.sentinels = [
            SentinelServer(directory / f"sentinel{i}", service=self.service,
                           master_port=self.master.port, down_after_ms=down_after_ms,
                           failover_timeout_ms=failover_timeout_ms)
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self) -> None:
        """Start them all; return once the sentinels know each other and
        the replica, and the replica is in sync, so that a failover can happen."""
        for server in (self.master, self.replica, *self.sentinels):
            server.start()

        def ready() -> bool:
            for sentinel in self.sentinels:
                with redis.Redis(port=sentinel.port, decode_responses=True) as conn:
                    state: dict[str, Any] = conn.sentinel_master(self.service)
                    replicas = conn.sentinel_slaves(self.service)
                if state["num-other-sentinels"] < 2 or not replicas:
                    return False
                if any(r["is_sdown"] or r["master-link-status"] != "ok" for r in replicas):
                    return False
            return True

        poll(ready, 30, "the sentinels didn't see each other and the replica within 30 s")

    def master_port(self) -> int:
        """The port of the master, as the sentinels say now."""
        with redis.Redis(port=self.sentinels[0].port, decode_responses=True) as conn:
            _, port = conn.sentinel_get_master_addr_by_name(self.service)
        return int(port)

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            if server.proc is not None:
                server.thaw()
            server.kill()


def poll(check: Callable[[], bool], seconds: float, failure: str) -> None:
    """Wait, polling, for processes of the test to reach a state."""
    deadline = time.monotonic() + timeout(seconds)
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.05)
