"""The tidewire command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def slow_echo_port() -> Iterator[int]:
    """An echo server that answers each message 0.3 s late."""
    import threading
    import time

    from tidewire.sync import ServerConnection, serve

    def handler(ws: ServerConnection) -> None:
        for message in ws:
            time.sleep(0.3)
            ws.send(message)

    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield server.port
        finally:
            server.shutdown()
            thread.join()


def test_connect_waits_for_late_replies_after_stdin_ends(slow_echo_port: int) -> None:
    url = f"ws://127.0.0.1:{slow_echo_port}/"
    result = run("connect", url, stdin="one\ntwo\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["one", "two"]
    result = run("connect", "--linger", "0", url, stdin="one\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


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


def test_echo_level_out_of_range_is_a_usage_error() -> None:
    result = run("echo", "--port", "0", "--level", "10")
    assert result.returncode == 2
    assert "--level: invalid choice: 10" in result.stderr
    assert "Traceback" not in result.stderr


# tidewire serve


class Serving:
    def __init__(self, proc: subprocess.Popen[str], port: int, key: str, out: list[str]) -> None:
        self.proc, self.port, self.key, self.out = proc, port, key, out


def start_serve(*args: str, env: dict[str, str] | None = None) -> Serving:
    import os

    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--no-demo", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    out = [proc.stdout.readline() for _ in range(4)]
    assert "tidewire hub listening on http://127.0.0.1:" in out[0], (out, proc.poll())
    port = int(out[0].split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
    key = out[2].split("API key: ", 1)[1].split()[0]
    return Serving(proc, port, key, out)


def stop_serve(serving: Serving) -> str:
    serving.proc.terminate()
    out, err = serving.proc.communicate(timeout=timeout(20))
    assert serving.proc.returncode == 0, err
    assert "Traceback" not in err
    return out


def test_serve_prints_where_it_listens_and_how_to_publish() -> None:
    import httpx

    serving = start_serve("--api-key", "key-from-the-command-line")
    try:
        assert serving.key == "key-from-the-command-line"
        curl = serving.out[3]
        assert curl.startswith("publish: curl ") and "/api/publish" in curl
        response = httpx.post(
            f"http://127.0.0.1:{serving.port}/api/publish",
            headers={"Authorization": f"Bearer {serving.key}"},
            json={"channel": "chat:lobby", "data": {"text": "hello"}},
            timeout=timeout(5),
        )
        assert response.status_code == 200, response.text
    finally:
        stop_serve(serving)


def test_serve_generates_an_api_key_when_none_is_set() -> None:
    serving = start_serve()
    try:
        assert len(serving.key) >= 16 and "generated" in serving.out[2]
    finally:
        stop_serve(serving)


def test_serve_takes_options_from_the_environment() -> None:
    serving = start_serve(env={"TIDEWIRE_API_KEY": "key-from-the-environment",
                               "TIDEWIRE_DEMO": "false"})
    try:
        assert serving.key == "key-from-the-environment"
        assert "demo publisher: off" in serving.out[1]
    finally:
        stop_serve(serving)


def test_serve_closes_clients_with_1001_and_a_reconnect_hint_on_sigterm() -> None:
    from tidewire.sync import connect

    serving = start_serve()
    try:
        ws = connect(f"ws://127.0.0.1:{serving.port}/ws", open_timeout=timeout(5))
        ws.send('{"id": 1, "op": "connect"}')
        assert '"result"' in str(ws.recv(timeout=timeout(5)))
    finally:
        out = stop_serve(serving)
    assert "shutting down" in out
    import tidewire

    with pytest.raises(tidewire.ConnectionClosedOK):
        ws.recv(timeout=timeout(5))
    assert ws.close_code == 1001
    assert ws.close_reason is not None and "reconnect" in ws.close_reason


def test_serve_port_in_use_is_one_clear_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run("serve", "--port", str(port), "--no-demo")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: can't listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[hub]\nport = 'eighty'\n", "hub.port must be an integer"),
        ("[hub]\nprot = 80\n", "unknown key hub.prot"),
        ("[namespaces.chat]\nhistory_size = -1\n", "must not be negative"),
        ("[namespaces.chat]\npresence = 'yes'\n", "namespaces.chat.presence must be true or false"),
        ("[hub\n", "isn't valid TOML"),
        ("[nope]\n", "unknown table [nope]"),
        ("[hub]\ntoken_secret = 'short'\n", "at least 32 bytes"),
        ("[hub]\npresence_ttl = 0\n", "presence_ttl must be above 0"),
        ("[hub]\nbroker = 'mysql://x'\n", "unknown broker 'mysql://x'"),
    ],
)
def test_serve_bad_config_is_one_clear_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    result = run("serve", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert needle in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_serve_missing_config_file_is_one_clear_line(tmp_path: Path) -> None:
    result = run("serve", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "can't read" in result.stderr and "Traceback" not in result.stderr


def test_serve_bad_port_in_the_environment_is_one_clear_line() -> None:
    import os

    result = subprocess.run(
        [*CLI, "serve"], capture_output=True, text=True, timeout=timeout(20),
        env={**os.environ, "TIDEWIRE_PORT": "http"},
    )
    assert result.returncode == 2 and "TIDEWIRE_PORT" in result.stderr
