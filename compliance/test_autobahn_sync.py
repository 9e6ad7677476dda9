"""The Autobahn conformance suite, run by kosoku, against tidewire.sync both ways.

The threaded twin of ``test_autobahn.py``, whose helpers it uses:

- as a server: kosoku's fuzzing client drives ``sync_echo_server.py``;
- as a client: kosoku's fuzzing server is driven by ``autobahn_sync_client.py``.

Every case must end OK, NON-STRICT or INFORMATIONAL. Reports land in
``compliance/reports/sync_server`` and ``compliance/reports/sync_client``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_autobahn import (
    HERE,
    PARALLELISM,
    REPORTS,
    failures,
    free_port,
    fuzz_server,
    kosoku,
    stop,
    wait_for_port,
)

pytestmark = [pytest.mark.compliance, pytest.mark.timeout(1800)]


@pytest.fixture
def report_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    path = REPORTS / request.node.name.removeprefix("test_autobahn_")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    yield path


@pytest.mark.cost(180)
def test_autobahn_sync_server(report_dir: Path) -> None:
    log = fuzz_server(
        lambda port: [sys.executable, str(HERE / "sync_echo_server.py"), str(port)], report_dir
    )
    assert "Traceback" not in log, log[-3000:]
    bad = failures(report_dir)
    assert not bad, f"{len(bad)} Autobahn cases failed as sync server:\n" + "\n".join(bad)


@pytest.mark.cost(180)
def test_autobahn_sync_client(report_dir: Path) -> None:
    port = free_port()
    fuzzer = subprocess.Popen(
        [kosoku(), "-m", "fuzzingserver", "-o", str(report_dir), f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, fuzzer)
        client = subprocess.run(
            [sys.executable, str(HERE / "autobahn_sync_client.py"), f"ws://127.0.0.1:{port}",
             PARALLELISM],
            capture_output=True,
            timeout=1700,
        )
        # After /updateReports the fuzzing server writes its reports and exits.
        fuzzer.wait(timeout=300)
    finally:
        stop(fuzzer)
    log = client.stderr.decode(errors="replace")
    assert client.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    bad = failures(report_dir)
    assert not bad, f"{len(bad)} Autobahn cases failed as sync client:\n" + "\n".join(bad)
