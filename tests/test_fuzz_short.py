"""Each fuzz harness runs briefly in ``make test``, through the same runner as
``make fuzz``: a crash is saved into its corpus and fails the test.

One case per harness, each in its own process, so that pytest-xdist runs them
beside the rest of the suite. Marked ``fuzz``: the suite's second run, on the
pure-Python twins, leaves them out, since each run already fuzzes both twins.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzzing.run import harnesses

SECONDS = 10
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.fuzz
@pytest.mark.timeout(SECONDS + 120)
@pytest.mark.cost(20)
@pytest.mark.parametrize("name", harnesses())
def test_harness_survives_a_short_run(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TIDEWIRE_NO_SPEEDUPS"}
    proc = subprocess.run(
        [sys.executable, "-m", "fuzzing.run", "--seconds", str(SECONDS), name],
        cwd=ROOT, env=env, capture_output=True, text=True, errors="replace",
        timeout=SECONDS + 100,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-8000:]}"
    # The run really fuzzed: libFuzzer's figures were read.
    assert f"{name}: ok" in proc.stdout and " runs in " in proc.stdout, proc.stdout
