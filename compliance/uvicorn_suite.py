"""uvicorn's own WebSocket tests, run against tidewire's engine.

``python compliance/uvicorn_suite.py fetch DIR`` downloads the source
distribution of the uvicorn release installed here (pyproject pins it) from
PyPI, extracts its ``tests/`` and ``pyproject.toml`` into ``DIR``, and adapts
them as little as possible (``ADAPTATIONS``): tidewire's class joins the
fixture that parametrizes the engine, and the two checks that name uvicorn's
classes accept it too. Nothing of uvicorn's is kept in this repository.

``python compliance/uvicorn_suite.py run DIR [ENGINE...]`` runs
``tests/protocols/test_websocket.py`` there on every HTTP protocol, for the
engines named (default: tidewire), and prints the counts per engine and
HTTP protocol; the exit status is pytest's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from importlib.metadata import version
from pathlib import Path

SUITE = "tests/protocols/test_websocket.py"
ENGINE_PARAM = '        pytest.param("tidewire.asgi:UvicornProtocol", id="tidewire"),\n'

# (file, what uvicorn has, what runs here, why): each must apply exactly once,
# so that a new uvicorn release that changes these lines stops the run.
ADAPTATIONS = [
    (
        "tests/conftest.py",
        '            "uvicorn.protocols.websockets.websockets_sansio_impl:'
        'WebSocketsSansIOProtocol", id="websockets-sansio"\n        ),\n',
        '            "uvicorn.protocols.websockets.websockets_sansio_impl:'
        'WebSocketsSansIOProtocol", id="websockets-sansio"\n        ),\n' + ENGINE_PARAM,
        "the engine fixture gains tidewire's class",
    ),
    (
        SUITE,
        "from uvicorn.server import ServerState\n",
        "from uvicorn.server import ServerState\n\nfrom tidewire.asgi import UvicornProtocol\n",
        "the keepalive tests' isinstance checks name uvicorn's classes",
    ),
    (
        SUITE,
        "            assert isinstance(protocol, (_WSProtocol, WebSocketsSansIOProtocol))\n"
        "\n            # Wait until",
        "            assert isinstance(protocol, (_WSProtocol, WebSocketsSansIOProtocol, "
        "UvicornProtocol))\n\n            # Wait until",
        "test_server_keepalive_ping_pong: isinstance of uvicorn's classes",
    ),
    (
        SUITE,
        "            assert isinstance(protocol, (_WSProtocol, WebSocketsSansIOProtocol))\n"
        "            assert protocol.ping_timer is None",
        "            assert isinstance(protocol, (_WSProtocol, WebSocketsSansIOProtocol, "
        "UvicornProtocol))\n            assert protocol.ping_timer is None",
        "test_server_keepalive_disabled: isinstance of uvicorn's classes",
    ),
    (
        SUITE,
        "async def test_send_binary_data_to_server_bigger_than_default_on_websockets(\n"
        "    http_protocol_cls: HTTPProtocol,\n",
        "async def test_send_binary_data_to_server_bigger_than_default_on_websockets(\n"
        "    ws_protocol_cls: WSProtocol,\n    http_protocol_cls: HTTPProtocol,\n",
        "the ws_max_size test names WebSocketsSansIOProtocol: it runs on every engine",
    ),
    (
        SUITE,
        "        ws=WebSocketsSansIOProtocol,\n",
        "        ws=ws_protocol_cls,\n",
        "(the same test)",
    ),
]


def fetch(dest: Path) -> None:
    """Download uvicorn's sdist and lay out its adapted tests in ``dest``."""
    release = version("uvicorn")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", "--dest", tmp, f"uvicorn=={release}"],
            check=True,
        )
        (archive,) = Path(tmp).glob("uvicorn-*.tar.gz")
        top = f"uvicorn-{release}/"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile()
                and (m.name.startswith(top + "tests/") or m.name == top + "pyproject.toml")
            ]
            for member in members:
                member.name = member.name.removeprefix(top)
            tar.extractall(dest, members=members, filter="data")
    for path, old, new, _why in ADAPTATIONS:
        file = dest / path
        text = file.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"uvicorn {release}: {path} changed; can't adapt it: {old!r}")
        file.write_text(text.replace(old, new))
    (dest / "RELEASE").write_text(release)


def run(dest: Path, engines: list[str], workers: str) -> int:
    """Run the suite for ``engines`` (tidewire, wsproto, sansio) on both HTTP
    protocols; print the counts."""
    report = dest / "report.xml"
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", SUITE, "-q", "-rfE",
            "-p", "no:cacheprovider", "-p", "no:asyncio",  # tidewire's own plugins stay out
            "-n", workers, "--junitxml", str(report), "-k", " or ".join(engines),
        ],
        cwd=dest,
    )
    counts = _counts(report)
    print(json.dumps({"uvicorn": (dest / "RELEASE").read_text(), "counts": counts}, indent=1))
    return result.returncode


def _counts(report: Path) -> dict[str, dict[str, int]]:
    """Outcomes per "engine / HTTP protocol", from pytest's JUnit report."""
    counts: dict[str, Counter[str]] = {}
    for case in ET.parse(report).iter("testcase"):
        name = case.get("name", "")
        ids = name.partition("[")[2].rstrip("]").split("-")
        engine = next((e for e in ("tidewire", "wsproto", "sansio") if e in ids), "none")
        http = next((h for h in ("httptools", "h11", "zttp") if h in ids), "none")
        if case.find("skipped") is not None:
            outcome = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        else:
            outcome = "passed"
        counts.setdefault(f"{engine} / {http}", Counter())[outcome] += 1
    return {key: dict(value) for key, value in sorted(counts.items())}


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "fetch":
        fetch(Path(argv[1]))
        return 0
    if len(argv) >= 2 and argv[0] == "run":
        return run(Path(argv[1]), argv[2:] or ["tidewire"], workers="2")
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
