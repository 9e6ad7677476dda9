"""The Autobahn conformance suite against tidewire's ASGI engine under uvicorn.

kosoku's fuzzing client drives an ASGI echo app (``asgi_echo.py``) served by
``uvicorn --ws tidewire.asgi:UvicornProtocol`` with permessage-deflate on, on
each of uvicorn's HTTP protocols that hand over the upgrade (httptools, h11).
Every case must end OK, NON-STRICT or INFORMATIONAL, as in test_autobahn.py.
On h11 the compression cases (12.*, 13.*) are left out: they are two thirds of
a run's time, and after the upgrade uvicorn's HTTP protocol never sees a byte,
so they would repeat the httptools run's check of the same code.
Reports land in ``compliance/reports/asgi_<test id>``.

``python compliance/autobahn_asgi.py`` runs uvicorn's own engines through
the same harness, for comparison.
"""

from __future__ import annotations

import shutil

import pytest
from autobahn_asgi import fuzz
from test_autobahn import COMPRESSION_CASES, EXPECTED_CASES, REPORTS, assert_passed

pytestmark = [pytest.mark.compliance, pytest.mark.timeout(1800)]


# httptools runs every case, in the two parts of test_autobahn.py.
@pytest.mark.parametrize(("http", "cases", "expected"), [
    pytest.param("httptools", ["-i", "12.*"], 90, marks=pytest.mark.cost(180),
                 id="httptools-12"),
    pytest.param("httptools", ["-x", "12.*"], EXPECTED_CASES - 90, marks=pytest.mark.cost(90),
                 id="httptools-rest"),
    pytest.param("h11", [a for c in COMPRESSION_CASES for a in ("-x", c)], 301,
                 marks=pytest.mark.cost(10), id="h11-without-compression"),
])
def test_autobahn_asgi_server(
    http: str, cases: list[str], expected: int, request: pytest.FixtureRequest
) -> None:
    outdir = REPORTS / ("asgi_" + request.node.name.split("[")[1].rstrip("]"))
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    log = fuzz("tidewire", http, outdir, cases)
    assert_passed(log, outdir, expected, f"through ASGI on {http}")
