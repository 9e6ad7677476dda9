"""Processes of a run: servers under test, and programs that print JSON lines.

Each server runs as its own process pinned to ``settings.server_cpu``; load
generators and clients are pinned to ``settings.client_cpu``. Their stderr goes
to ``bench/.logs/`` so that a failure can be explained. The hub scenario runs
the hub itself, ``tidewire serve`` (``HubProcess``), the same way, and for its
Redis contender a ``redis-server`` of its own (``RedisProcess``); its Node rivals
are Socket.IO (``SocketioProcess``) and soketi (``SoketiProcess``), installed by
``make bench`` into ``bench/node``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from bench.settings import Settings

if TYPE_CHECKING:
    from typing_extensions import Self

REPO = Path(__file__).resolve().parent.parent
LOG_DIR = REPO / "bench" / ".logs"
NODE_DIR = REPO / "bench" / "node"  # package.json, its lock file, node_modules
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Event = dict[str, Any]
# The servers of bench/servers/asgi_server.py (``--asgi NAME``), running the same ASGI apps.
ASGI_SERVERS = ("uvicorn-tidewire", "uvicorn-sansio", "uvicorn-wsproto", "granian", "hypercorn")


def terminate(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 10 s; wait for the exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class BenchError(RuntimeError):
    """A sample could not be measured; the message says why."""


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv]


def log_file(name: str) -> IO[str]:
    LOG_DIR.mkdir(exist_ok=True)
    return open(LOG_DIR / f"{name}.log", "w")


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_wait_seconds(pid: int) -> float:
    """Time the main thread of a process (the event loop, for a server) was ready to
    run but waited for a core."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def process_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for process {pid}")


class ProcessMeter:
    """Between ``start()`` and ``stop()``: the share of one core a process used, and
    the share of the time its main thread was ready to run but waited for its core
    (to other work on the machine, or to the process's own threads)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.begin: tuple[float, float, float] | None = None
        self.cpu: float | None = None
        self.wait: float | None = None

    def _read(self) -> tuple[float, float, float]:
        return time.monotonic(), process_cpu_seconds(self.pid), process_wait_seconds(self.pid)

    def start(self) -> None:
        try:
            self.begin = self._read()
        except OSError:
            self.begin = None

    def stop(self) -> None:
        if self.begin is None or self.cpu is not None:
            return
        try:
            end = self._read()
        except OSError:
            return
        wall = end[0] - self.begin[0]
        if wall > 0:
            self.cpu = (end[1] - self.begin[1]) / wall
            self.wait = (end[2] - self.begin[2]) / wall


def library_env(name: str) -> dict[str, str] | None:
    """The environment of a contender's process: the pure-Python twins for
    "tidewire-py", else the harness's own."""
    if name != "tidewire-py":
        return None
    return dict(os.environ, TIDEWIRE_NO_SPEEDUPS="1")


class ServerProcess:
    """``python -m bench.servers.NAME_server``, pinned, until the ``with`` block ends."""

    def __init__(self, name: str, mode: str, compression: bool, settings: Settings) -> None:
        module = "tidewire" if name.startswith("tidewire") else name
        if name in ASGI_SERVERS:
            module = "asgi"
        argv = [sys.executable, "-m", f"bench.servers.{module}_server"]
        argv += ["--mode", mode, "--loop", settings.loop]
        if name in ASGI_SERVERS:
            argv += ["--asgi", name]
        if name == "tidewire-cb":
            argv.append("--callback")
        if name == "tidewire-once":
            argv.append("--server-no-context-takeover")
        if compression:
            argv.append("--compression")
        self._spawn(name, argv, settings, library_env(name))

    def _spawn(
        self,
        name: str,
        argv: list[str],
        settings: Settings,
        env: dict[str, str] | None = None,
        cpu: int | None = None,
    ) -> None:
        self.name = name
        self.log_path = LOG_DIR / f"server-{name}.log"
        with log_file(f"server-{name}") as log:
            self.proc = subprocess.Popen(
                pinned(settings.server_cpu if cpu is None else cpu, argv),
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.port = 0
        self.info: dict[str, Any] = {}

    def __enter__(self) -> ServerProcess:
        try:
            self._wait_listening(timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_listening(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not self._on_ready_line(line):
            raise BenchError(f"{self.name} server did not start: {tail(self.log_path)}")

    def _on_ready_line(self, line: str) -> bool:
        """Take the port and the info from the first line; False if it isn't one."""
        if not line.startswith("LISTENING "):
            return False
        _, port, info = line.split(" ", 2)
        self.port = int(port)
        self.info = json.loads(info)
        return True

    @property
    def pid(self) -> int:
        """The process that serves: a worker the server named (granian's), else its own."""
        return int(self.info.get("pid", self.proc.pid))

    def rss_bytes(self) -> int:
        self.check_alive()
        return process_rss_bytes(self.pid)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} server exited: {tail(self.log_path)}")

    def stop(self) -> None:
        terminate(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class HubProcess(ServerProcess):
    """The hub, ``tidewire serve --no-demo``, on a free port with the default config,
    its broker aside: the memory broker, or ``broker`` (a Redis URL).

    It is ready once it prints its first line, ``tidewire hub listening on
    http://127.0.0.1:PORT/ ...``; it runs on uvloop when that is installed.
    ``name`` names its log, ``cpu`` the core it is pinned to (the server's core
    by default).
    """

    READY = re.compile(r"tidewire hub listening on http://127\.0\.0\.1:(\d+)/")
    # What `tidewire serve` would take from the environment instead of its defaults.
    ENV_OPTIONS = ("TIDEWIRE_CONFIG", "TIDEWIRE_BROKER", "TIDEWIRE_TOKEN_SECRET")

    def __init__(
        self,
        settings: Settings,
        api_key: str,
        name: str = "hub",
        broker: str | None = None,
        cpu: int | None = None,
    ) -> None:
        argv = [sys.executable, "-m", "tidewire.cli", "serve", "--host", "127.0.0.1"]
        argv += ["--port", "0", "--no-demo", "--api-key", api_key]
        if broker is not None:
            argv += ["--broker", broker]
        self.broker = broker or "memory"
        env = {k: v for k, v in os.environ.items() if k not in self.ENV_OPTIONS}
        self._spawn(name, argv, settings, env, cpu)

    def _on_ready_line(self, line: str) -> bool:
        match = self.READY.match(line)
        if match is None:
            return False
        self.port = int(match.group(1))
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        self.info = {"library": "tidewire serve", "loop": loop, "broker": self.broker}
        return True


def node_argv(*args: str) -> list[str]:
    """``node ARGS...``, once ``make bench`` has installed bench/node's packages."""
    node = shutil.which("node")
    if node is None:
        raise BenchError("node is missing (Debian package nodejs; `make bench` installs it)")
    if not (NODE_DIR / "node_modules" / ".installed").exists():
        raise BenchError("bench/node/node_modules is missing: `make bench` installs it with npm")
    return [node, *args]


def node_package_version(name: str) -> str:
    """The version of an npm package installed in bench/node, or "not installed"."""
    try:
        text = (NODE_DIR / "node_modules" / name / "package.json").read_text()
        return str(json.loads(text)["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


def program_version(program: str, pattern: str) -> str:
    """The version ``program --version`` prints (``pattern``'s group 1), or "not
    installed"."""
    path = shutil.which(program)
    if path is None:
        return "not installed"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    match = re.search(pattern, out.stdout)
    return match.group(1) if match else "unknown"


def node_version() -> str:
    return program_version("node", r"v(\S+)")


class SocketioProcess(ServerProcess):
    """``node bench/node/socketio_server.js``: Socket.IO in one Node process, pinned
    like every server; it prints the same ``LISTENING`` line as the Python ones."""

    def __init__(self, settings: Settings) -> None:
        self._spawn("socketio", node_argv(str(NODE_DIR / "socketio_server.js")), settings)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_version() -> str:
    return program_version("redis-server", r"v=(\S+)")


class FreePortProcess:
    """A server of one sample on a free port of 127.0.0.1, until the ``with`` block
    ends; a subclass's ``_start()`` starts it and says whether it answers.

    A free port can be taken between the look and the bind: ``_start()`` returns
    False when the process exited, and it is tried again on another port.
    """

    ATTEMPTS = 3
    name: str
    log_path: Path
    port = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Self:
        try:
            for _ in range(self.ATTEMPTS):
                if self._start():
                    return self
            raise BenchError(f"{self.name} did not start: {tail(self.log_path)}")
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start(self) -> bool:
        raise NotImplementedError

    def _launch(
        self,
        argv: list[str],
        cpu: int,
        cwd: str | Path,
        ready: Callable[[], bool],
        seconds: float,
        what: str,
        env: dict[str, str] | None = None,
    ) -> bool:
        """Start ``argv`` pinned to ``cpu``, its output in its log; True once
        ``ready()``, False if it exited first."""
        with log_file(self.log_path.stem) as log:
            self.proc = subprocess.Popen(
                pinned(cpu, argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if ready():
                return True
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not {what} in {seconds:g} s: {tail(self.log_path)}")

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited: {tail(self.log_path)}")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)


class RedisProcess(FreePortProcess):
    """A ``redis-server`` of one sample, pinned, until the ``with`` block ends.

    It listens on 127.0.0.1 on a free port and keeps nothing on disk (``--save ""
    --appendonly no``, its directory a temporary one, removed at the end); its log
    goes to ``bench/.logs/redis-server.log``. It is ready once it answers PING.
    """

    def __init__(self, cpu: int) -> None:
        self.name = "redis-server"
        self.log_path = LOG_DIR / "redis-server.log"
        self.cpu = cpu
        self.dir: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> Self:
        if shutil.which("redis-server") is None:
            raise BenchError("redis-server is missing (Debian package redis-server)")
        return super().__enter__()

    def _start(self) -> bool:
        """Start on a free port; True once it answers, False if it exited (port taken)."""
        self.stop()
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.port = free_port()
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no", "--dir", self.dir, "--logfile", ""]
        argv += ["--daemonize", "no", "--databases", "1"]
        return self._launch(argv, self.cpu, self.dir, self._answers_ping, 10, "answer PING")

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        super().stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class SoketiProcess(FreePortProcess):
    """soketi, ``soketi start`` as its users run it (its command line, configured
    by ``SOKETI_*`` variables), pinned like every server, until the ``with`` block
    ends. It has one app, ``app_id`` with ``app_key`` and ``app_secret``.

    It listens on 127.0.0.1 on a free port; its cluster discovery, which it
    always runs, says hello to 127.0.0.1 only (by default it broadcasts to
    255.255.255.255), on a free port too. It is ready once ``GET /ready``
    answers. Its log is ``bench/.logs/server-soketi.log``.
    """

    # What uWebSockets.js says when it can't load its native binary: soketi would
    # then run on a JavaScript stand-in, which is not soketi as its users run it.
    FALLBACK = "Falling back to a NodeJS implementation"

    def __init__(self, settings: Settings, app_id: str, app_key: str, app_secret: str) -> None:
        self.name = "soketi"
        self.log_path = LOG_DIR / "server-soketi.log"
        self.settings = settings
        self.app = {"ID": app_id, "KEY": app_key, "SECRET": app_secret}
        self.info = {
            "library": f"soketi {node_package_version('@soketi/soketi')} (uWebSockets.js"
            f" {node_package_version('uWebSockets.js')})",
            "node": node_version(),
        }

    def _start(self) -> bool:
        """Start on free ports; True once it answers, False if it exited (port taken)."""
        self.stop()
        argv = node_argv(str(NODE_DIR / "node_modules/@soketi/soketi/bin/server.js"), "start")
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOKETI_")}
        env.update({
            "SOKETI_HOST": "127.0.0.1",
            "SOKETI_PORT": str(self.port),
            "SOKETI_METRICS_HOST": "127.0.0.1",
            "SOKETI_METRICS_SERVER_PORT": str(free_port()),
            "SOKETI_CLUSTER_HOST": "127.0.0.1",
            "SOKETI_CLUSTER_PORT": str(free_port()),
            "SOKETI_CLUSTER_UNICAST_ADDRESSES": "127.0.0.1",
            **{f"SOKETI_DEFAULT_APP_{k}": v for k, v in self.app.items()},
        })
        if not self._launch(argv, self.settings.server_cpu, NODE_DIR, self._ready, 30,
                            "answer GET /ready", env):
            return False
        if self.FALLBACK in self.log_path.read_text(errors="replace"):
            raise BenchError("soketi runs without uWebSockets.js's native binary")
        return True

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                answer = sock.recv(1024)
        except OSError:
            return False
        return answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"OK")

    def rss_bytes(self) -> int:
        self.check_alive()
        return process_rss_bytes(self.pid)


class JsonLinesProcess:
    """A pinned program that prints JSON objects, one a line: events, then a result.

    Lines with an ``"event"`` key go to ``on_event`` as they come; the last
    other line is the result. ``release()`` closes its stdin (the idle load
    generator waits for that).
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        cpu: int,
        hold_stdin: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        with log_file(name) as log:
            self.proc = subprocess.Popen(
                pinned(cpu, argv),
                cwd=REPO,
                env=env,
                stdin=subprocess.PIPE if hold_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )

    def release(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def run(
        self, timeout: float, on_event: Callable[[Event], None] | None = None
    ) -> dict[str, Any]:
        """Read lines until the program exits (at most ``timeout`` seconds)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        result: dict[str, Any] | None = None
        try:
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([self.proc.stdout], [], [], left)
                if not ready:
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    break
                data = json.loads(line)
                if "event" in data:
                    if on_event is not None:
                        on_event(data)
                else:
                    result = data
            else:
                raise BenchError(f"{self.name} still running after {timeout:.0f}s")
            self.proc.wait(timeout=10)
        finally:
            self.release()
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc.stdout.close()
        if result is None:
            raise BenchError(f"{self.name} printed no result: {tail(self.log_path)}")
        return result
