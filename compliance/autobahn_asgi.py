"""The Autobahn fuzzing client against an ASGI echo app under uvicorn.

    python compliance/autobahn_asgi.py [ENGINE ...]

runs the whole case set once per engine given (``tidewire``, or one of
uvicorn's: ``websockets-sansio``, ``wsproto``, ``websockets``) on uvicorn's
httptools protocol, and prints each engine's counts of results. The test
(test_autobahn_asgi.py) runs tidewire's engine this way and wants no case failed.
"""

from __future__ import annotations

import collections
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from test_autobahn import HERE, REPORTS, fuzz_server

__all__ = ["ENGINES", "counts", "fuzz"]

# --ws values: tidewire's import string, and uvicorn's own engine names.
ENGINES = {
    "tidewire": "tidewire.asgi:UvicornProtocol",
    "websockets-sansio": "websockets-sansio",
    "wsproto": "wsproto",
    "websockets": "websockets",
}


def fuzz(engine: str, http: str, outdir: Path, cases: Sequence[str] = ()) -> str:
    """Serve the echo app with ``engine`` over ``http`` (h11 or httptools),
    with permessage-deflate on, run the cases (every one, or those kosoku's
    -i and -x options in ``cases`` select) into ``outdir``; return the
    server's log."""
    return fuzz_server(
        lambda port: [
            sys.executable, "-m", "uvicorn", "asgi_echo:app", "--app-dir", str(HERE),
            "--port", str(port), "--ws", ENGINES[engine], "--http", http,
            "--ws-per-message-deflate", "true", "--ws-max-size", str(16 * 1024 * 1024),
            "--log-level", "warning", "--lifespan", "on",
        ],
        outdir,
        list(cases),
    )


def counts(outdir: Path) -> dict[str, int]:
    """How many cases ended in each result: the worse of a case's behaviour
    and its closing behaviour (FAILED over UNIMPLEMENTED over the others)."""
    (cases,) = json.loads((outdir / "index.json").read_text()).values()
    rank = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "WRONG CODE", "FAILED"]
    tally: collections.Counter[str] = collections.Counter()
    for result in cases.values():
        outcomes = (result["behavior"], result["behaviorClose"])
        tally[max(outcomes, key=lambda o: rank.index(o) if o in rank else len(rank))] += 1
    return dict(tally)


def main(engines: list[str]) -> None:
    for engine in engines:
        outdir = REPORTS / f"asgi_{engine}_httptools"
        outdir.mkdir(parents=True, exist_ok=True)
        log = fuzz(engine, "httptools", outdir)
        tracebacks = log.count("Traceback")
        print(f"{engine}: {counts(outdir)}; tracebacks in its log: {tracebacks}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(ENGINES))
