"""A tidewire.sync echo server, for the Autobahn suite.

    python compliance/sync_echo_server.py [PORT [LEVEL]]

Compression is on, at zlib's LEVEL (default 1: the cases check what the peer
decodes, not the ratio), and messages go up to 16 MiB. Keepalive pings go out only
on idle connections (the default), so they don't disturb a case in progress.
SIGTERM shuts the server down cleanly.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from tidewire import DeflateOptions
from tidewire.sync import ServerConnection, serve

MAX_SIZE = 16 * 1024 * 1024


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(port: int, level: int) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, stop)
    with serve(echo, "127.0.0.1", port, compression="deflate", max_size=MAX_SIZE,
               deflate_options=DeflateOptions(level=level)) as server:
        print(f"tidewire.sync echo server listening on ws://127.0.0.1:{server.port}/", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9001,
         int(sys.argv[2]) if len(sys.argv) > 2 else 1)
