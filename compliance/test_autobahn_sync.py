"""The Autobahn conformance suite, run by kosoku, against tidewire.sync both ways.

The threaded twin of ``test_autobahn.py``, whose helpers it uses:

- as a server: kosoku's fuzzing client drives ``sync_echo_server.py``;
- as a client: kosoku's fuzzing server is driven by ``autobahn_sync_client.py``.

Every case must end OK, NON-STRICT or INFORMATIONAL. Reports land in
``compliance/reports/sync_server-<part>`` and ``compliance/reports/sync_client-<part>``.
"""

from __future__ import annotations

import sys

import pytest
from test_autobahn import (
    HERE,
    Part,
    assert_passed,
    fuzz_client,
    fuzz_server,
)

pytestmark = [pytest.mark.compliance, pytest.mark.timeout(1800)]


def test_autobahn_sync_server(part: Part) -> None:
    log = fuzz_server(
        lambda port: [sys.executable, str(HERE / "sync_echo_server.py"), str(port),
                      str(part.level)],
        part.outdir,
        part.args(),
    )
    assert_passed(log, part.outdir, part.expected, "as sync server")


def test_autobahn_sync_client(part: Part) -> None:
    log = fuzz_client("autobahn_sync_client.py", part.outdir, part.args(), part.level)
    assert_passed(log, part.outdir, part.expected, "as sync client")
