"""The ``part`` fixture of the Autobahn runs, both I/O layers' (test_autobahn.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from test_autobahn import PARTS, REPORTS, Part


@pytest.fixture(params=PARTS)
def part(request: pytest.FixtureRequest) -> Iterator[Part]:
    include, exclude, expected, level = request.param
    name = request.node.name.removeprefix("test_autobahn_").replace("[", "-").rstrip("]")
    path = REPORTS / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    yield Part(include, exclude, expected, level, path)
