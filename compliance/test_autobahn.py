"""The Autobahn conformance suite, run by kosoku, against tidewire both ways.

- as a server: kosoku's fuzzing client drives ``tidewire echo``;
- as a client: kosoku's fuzzing server is driven by ``autobahn_client.py``.

Every case must end OK, NON-STRICT or INFORMATIONAL. Reports land in
``compliance/reports/`` (kept out of git); a failure names each bad case and
the reason kosoku gives.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPORTS = HERE / "reports"
EXPECTED_CASES = 517
COMPRESSION_CASES = ("12.*", "13.*")
ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}
PARALLELISM = os.environ.get("TIDEWIRE_AUTOBAHN_PARALLELISM", "2")

pytestmark = [pytest.mark.compliance, pytest.mark.timeout(1800)]


def kosoku() -> str:
    path = shutil.which("kosoku", path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail("kosoku is not installed: run `make test`, which installs it from PyPI")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listened on port {port} after {seconds}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def failures(outdir: Path, expected: int = EXPECTED_CASES) -> list[str]:
    """Every case that isn't accepted, with kosoku's reason."""
    index = json.loads((outdir / "index.json").read_text())
    assert len(index) == 1, f"expected one agent in the report, got {list(index)}"
    (cases,) = index.values()
    assert len(cases) == expected, f"{len(cases)} cases ran, not {expected}"
    bad = []
    for case_id, result in sorted(cases.items(), key=lambda kv: _key(kv[0])):
        if result["behavior"] in ACCEPTED and result["behaviorClose"] in ACCEPTED:
            continue
        detail = json.loads((outdir / result["reportfile"]).read_text())
        bad.append(
            f"{case_id}: {result['behavior']}/{result['behaviorClose']}: "
            f"{detail.get('result')} / {detail.get('resultClose')}"
        )
    return bad


def assert_passed(log: str, outdir: Path, expected: int, role: str) -> None:
    """No traceback in ``log``, and every case of ``outdir`` accepted."""
    assert "Traceback" not in log, log[-3000:]
    bad = failures(outdir, expected)
    assert not bad, f"{len(bad)} Autobahn cases failed {role}:\n" + "\n".join(bad)


def _key(case_id: str) -> list[int]:
    return [int(part) for part in case_id.split(".")]


# Each run is cut in two, so that pytest-xdist's workers share them out: the
# 90 cases of 12.* and the 427 others. The compression cases are most of a
# run's CPU time, and our side's zlib level (the last value) is set per part:
# - 12.* agree on the defaults (32 KiB windows, context kept both ways). There
#   a peer can check our framing of compressed messages but nothing that
#   depends on the level: level 0 (stored blocks, no search) costs the least.
# - 13.* agree on small windows and no context takeover, promises of our
#   compressor that only back-references can break: level 1, zlib's fastest
#   that makes them, so that the peer's decoder checks them.
# Whatever the level, our decoder reads the fuzzer's own level-6 streams.
# The costs are CPU-seconds, the fuzzer's and ours (see conftest.py).
PARTS = [
    pytest.param((("12.*",), (), 90, 0), id="12", marks=pytest.mark.cost(95)),
    pytest.param(((), ("12.*",), EXPECTED_CASES - 90, 1), id="rest",
                 marks=pytest.mark.cost(85)),
]


@dataclass(frozen=True)
class Part:
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    expected: int
    level: int  # zlib's, of our side's compressor
    outdir: Path

    def args(self) -> list[str]:
        """kosoku's options that select this part's cases."""
        return [*(a for c in self.include for a in ("-i", c)),
                *(a for c in self.exclude for a in ("-x", c))]


def fuzz_server(command: Callable[[int], list[str]], outdir: Path, cases: list[str]) -> str:
    """Start the server ``command(port)`` gives, run kosoku's fuzzing client
    against it into ``outdir`` (``cases``: kosoku's -i and -x options), stop
    it; return what it logged."""
    port = free_port()
    log_path = outdir / "server.log"
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(command(port), stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            wait_for_port(port, server)
            subprocess.run(
                [kosoku(), "-m", "fuzzingclient", "-p", PARALLELISM, "-o", str(outdir),
                 *cases, f"127.0.0.1:{port}"],
                check=False,
                stdout=subprocess.DEVNULL,
                timeout=1700,
            )
        finally:
            stop(server)
    return log_path.read_text(errors="replace")


def fuzz_client(script: str, outdir: Path, cases: list[str], level: int) -> str:
    """Run kosoku's fuzzing server into ``outdir`` with ``cases`` (its -i and
    -x options) and the client ``script`` against it, compressing at zlib
    ``level``; return what the client logged, once it has passed."""
    port = free_port()
    fuzzer = subprocess.Popen(
        [kosoku(), "-m", "fuzzingserver", "-o", str(outdir), *cases, f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, fuzzer)
        client = subprocess.run(
            [sys.executable, str(HERE / script), f"ws://127.0.0.1:{port}", PARALLELISM,
             str(level)],
            capture_output=True,
            timeout=1700,
        )
        # After /updateReports the fuzzing server writes its reports and exits.
        fuzzer.wait(timeout=300)
    finally:
        stop(fuzzer)
    log = client.stderr.decode(errors="replace")
    assert client.returncode == 0, log[-3000:]
    return log


def test_autobahn_server(part: Part) -> None:
    log = fuzz_server(
        lambda port: [sys.executable, "-m", "tidewire", "echo", "--port", str(port),
                      "--level", str(part.level)],
        part.outdir,
        part.args(),
    )
    assert_passed(log, part.outdir, part.expected, "as server")


def test_autobahn_client(part: Part) -> None:
    log = fuzz_client("autobahn_client.py", part.outdir, part.args(), part.level)
    assert_passed(log, part.outdir, part.expected, "as client")
