"""uvicorn's own WebSocket tests, against tidewire's engine, on each of
uvicorn's HTTP protocols (h11, httptools, zttp).

``make test`` fetches the suite of the pinned uvicorn release from PyPI into
``.venv/uvicorn-tests`` (compliance/uvicorn_suite.py lists the few lines it
adapts and why); this test runs it and wants every case passed, none skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SUITE_DIR = HERE.parent / ".venv" / "uvicorn-tests"
HTTP_PROTOCOLS = ("h11", "httptools", "zttp")

pytestmark = [pytest.mark.compliance, pytest.mark.timeout(900)]


@pytest.mark.cost(20)
def test_uvicorn_websocket_suite_passes_on_tidewire() -> None:
    if not (SUITE_DIR / "RELEASE").exists():
        pytest.fail(
            f"uvicorn's tests aren't in {SUITE_DIR}: run `make test`, which fetches them "
            "(python compliance/uvicorn_suite.py fetch .venv/uvicorn-tests)"
        )
    run = subprocess.run(
        [sys.executable, str(HERE / "uvicorn_suite.py"), "run", str(SUITE_DIR), "tidewire"],
        capture_output=True,
        text=True,
        timeout=850,
    )
    output = run.stdout
    assert run.returncode == 0, output[-6000:] + run.stderr[-2000:]
    counts = json.loads(output[output.index("{\n"):])["counts"]
    for http in HTTP_PROTOCOLS:
        outcome = counts.get(f"tidewire / {http}")
        assert outcome is not None, f"no test ran on {http}: {counts}"
        assert set(outcome) == {"passed"}, f"on {http}: {outcome}\n{output[-6000:]}"
