"""The tidewire command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import timeout

CLI = [sys.executable, "-m", "tidewire"]


@pytest.fixture
def echo_port() -> Iterator[int]:
    proc = subprocess.Popen(
        [*CLI, "echo", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert "listening on ws://127.0.0.1:" in line, line
    port = int(line.rsplit(":", 1)[1].strip("/\n"))
    try:
        yield port
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=timeout(10))
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, timeout=timeout(20)
    )


def test_connect_sends_lines_and_prints_replies(echo_port: int) -> None:
    result = run("connect", f"ws://127.0.0.1:{echo_port}/", stdin="hello\nwörld\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["hello", "wörld"]


def test_connect_refused_is_one_clear_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run("connect", f"ws://127.0.0.1:{port}/")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: can't connect to ws://127.0.0.1:{port}/")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("uri", ["http://127.0.0.1/", "ws://", "ws://host:notaport/"])
def test_connect_bad_url_is_one_clear_line(uri: str) -> None:
    result = run("connect", uri)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "isn't a valid WebSocket URI" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_connect_failed_handshake_is_one_clear_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            [*CLI, "connect", f"ws://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(timeout(10))
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here\n")
        _, err = proc.communicate(timeout=timeout(20))
    assert proc.returncode == 1
    assert err.strip() == "error: server rejected WebSocket connection: HTTP 404"


def test_echo_port_in_use_is_one_clear_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run("echo", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: can't listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr
