"""The Autobahn client loop with tidewire.sync: every case of a fuzzing server.

    python compliance/autobahn_sync_client.py ws://127.0.0.1:9001 [PARALLELISM [LEVEL]]

Each case is an echo: whatever the server sends comes back, until it closes.
Cases are independent connections, so several run at once, a thread each.
"""

from __future__ import annotations

import sys
import threading
import urllib.parse

from tidewire import ConnectionClosed, DeflateOptions, InvalidHandshake
from tidewire.sync import connect

AGENT = "tidewire.sync"
MAX_SIZE = 16 * 1024 * 1024
# Our compressor's zlib level when the LEVEL argument gives none: the cases
# check what the peer decodes, not the ratio; 1 is the fastest that compresses.
LEVEL = 1


def case_count(server: str) -> int:
    with connect(f"{server}/getCaseCount") as ws:
        return int(ws.recv())


def run_case(server: str, case: int, deflate: DeflateOptions) -> None:
    uri = f"{server}/runCase?case={case}&agent={urllib.parse.quote(AGENT)}"
    try:
        with connect(uri, max_size=MAX_SIZE, deflate_options=deflate) as ws:
            for message in ws:
                ws.send(message)
    except (ConnectionClosed, InvalidHandshake, OSError):
        pass  # many cases end in a protocol error on purpose


def main(server: str, parallelism: int, level: int) -> None:
    deflate = DeflateOptions(level=level)
    cases = iter(range(1, case_count(server) + 1))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                case = next(cases, None)
            if case is None:
                return
            run_case(server, case, deflate)

    threads = [threading.Thread(target=worker) for _ in range(parallelism)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with connect(f"{server}/updateReports?agent={urllib.parse.quote(AGENT)}") as ws:
        try:
            ws.recv()
        except ConnectionClosed:
            pass  # the fuzzing server closes this one when the reports are written


if __name__ == "__main__":
    server = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:9001"
    parallelism = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    level = int(sys.argv[3]) if len(sys.argv) > 3 else LEVEL
    main(server, parallelism, level)
