"""User-space instructions per echoed message in each benchmark server, on real
sockets: ``make instructions`` runs it after ``bench.instructions``.

``bench.instructions`` counts tidewire alone, on fake transports. This counts
every server of the benchmark the same way, so that libraries can be compared
without the noise of a shared machine: each server runs under callgrind with
the C load generator (64 B text, 64 connections, one message in flight each;
``--size`` echoes binary messages of that size instead) outside it. Counters
are zeroed after a warm-up and dumped after the measured run; the instructions
over the messages echoed meanwhile is the figure. What runs in the kernel (the
reads, writes and epoll of every message) isn't counted: every server makes
the same system calls per message, and they are most of the time.
``--connect`` counts whole connections instead, as the connection-rate scenario
makes them (connect, upgrade, one 64 B echo, close handshake). ``--asgi`` counts
the ASGI servers' rows instead (the same ASGI app under each); granian is left
out: its WebSockets run in a worker process, on threads of its own.

    python -m bench.userspace [--only NAME ...] [--seconds S] [--keep DIR]
                              [--size BYTES --conns N] [--connect] [--asgi]
"""

from __future__ import annotations

import argparse
import json
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.load import LOADGEN
from bench.procs import ASGI_SERVERS, REPO, library_env
from bench.scenarios import ASGI_DEFAULT, LABELS, LIMIT, SERVERS

PEER = "picows"
# The ASGI rows that run in one process, which callgrind can count whole.
ASGI_COUNTED = tuple(n for n in ASGI_SERVERS if n != "granian")


def server_argv(name: str, out: Path) -> list[str]:
    module = "tidewire" if name.startswith("tidewire") else name
    if name in ASGI_COUNTED:
        module = "asgi"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p",
            sys.executable, "-m", f"bench.servers.{module}_server",
            "--mode", "echo", "--loop", "uvloop"]
    if name in ASGI_COUNTED:
        argv += ["--asgi", name]
    return argv + (["--callback"] if name == "tidewire-cb" else [])


def control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], capture_output=True, check=True)


def echo(port: int, raw: bool, args: argparse.Namespace, server: int) -> int:
    """Run the load generator, counting only its measured window: the number
    of messages echoed then, or of whole connections with ``--connect``."""
    if args.connect:
        argv = [str(LOADGEN), "connect", "--port", str(port), "--conns", str(args.conns),
                "--size", "64", "--warmup", "5", "--duration", str(args.seconds)]
    else:
        # Four handshakes at a time (one for uvicorn's engines): under valgrind,
        # 64 at once outlast the load generator's 5 s limit on an opening.
        argv = [str(LOADGEN), "echo", "--port", str(port), "--conns", str(args.conns),
                "--size", str(args.size or 64), "--inflight", str(args.inflight), "--warmup", "5",
                "--duration", str(args.seconds)]
        argv += ["--binary"] if args.size else []
    argv += ["--raw"] if raw else []
    gen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert gen.stdout is not None
    result = {}
    for line in gen.stdout:
        result = json.loads(line)
        if result.get("event") == "measuring":
            control("-z", server)  # zero the counters: handshakes and warm-up are out
        elif result.get("event") == "measured":
            control("-d", server)
    gen.wait()
    opened = result.get("opened", 0) >= 1 if args.connect else result.get("opened") == args.conns
    if gen.returncode != 0 or not opened or result.get("errors"):
        raise SystemExit(f"the load generator failed ({gen.returncode}): {result}")
    return int(result["cycles" if args.connect else "messages"])


def count(name: str, args: argparse.Namespace) -> tuple[int, int]:
    """(instructions, messages) of one measured run of server ``name``; its
    callgrind dump is copied into ``args.keep`` if given."""
    keep = args.keep
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        proc = subprocess.Popen(server_argv(name, out), cwd=REPO, env=library_env(name),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 120)
            line = proc.stdout.readline() if ready else ""
            if not line.startswith("LISTENING "):
                raise SystemExit(f"{name} server did not start under valgrind")
            port = int(line.split()[1])
            if name in ASGI_COUNTED:
                # One connection first: uvicorn's engines import their modules at the
                # first upgrade, which under valgrind outlasts the load generator's
                # 5 s limit on an opening.
                subprocess.run([str(LOADGEN), "echo", "--port", str(port), "--warmup", "0",
                                "--duration", "1"], capture_output=True, timeout=120)
            try:
                messages = echo(port, name == LIMIT, args, proc.pid)
            except SystemExit as exc:
                raise SystemExit(f"{name}: {exc}") from None
            for _ in range(100):
                dumps = list(out.glob("cg.*.*"))
                if dumps:
                    break
                time.sleep(0.1)
            text = dumps[0].read_text(errors="replace")
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(dumps[0], keep / f"callgrind.out.{name}")
        finally:
            proc.kill()
            proc.wait()
    totals = [ln for ln in text.splitlines() if ln.startswith("totals:")]
    return int(totals[0].split()[1]), messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=(*SERVERS, *ASGI_COUNTED))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep each server's callgrind dump there, for a profile")
    parser.add_argument("--size", type=int, metavar="BYTES",
                        help="echo binary messages of this size instead of 64 B text")
    parser.add_argument("--conns", type=int, help="64 for echoes, 4 slots for --connect")
    parser.add_argument("--connect", action="store_true",
                        help="count whole connections (connect, upgrade, one 64 B echo, close)"
                        " instead of echoed messages")
    parser.add_argument("--asgi", action="store_true",
                        help="the ASGI servers' rows (granian aside) instead of the libraries'")
    args = parser.parse_args()
    if args.conns is None:
        args.conns = 4 if args.connect else 64
    args.inflight = 1 if args.asgi else 4
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is missing; `apt-get install valgrind` (make instructions "
                  "does it)", file=sys.stderr)
            return 1
    if not LOADGEN.exists():
        print(f"error: {LOADGEN} is missing: build it with `make bench`", file=sys.stderr)
        return 1
    names = args.only or list(ASGI_COUNTED if args.asgi else SERVERS)
    peer = ASGI_DEFAULT if args.asgi else PEER
    if args.connect:
        print(f"Each benchmark server on real sockets (uvloop, {args.conns} connections at a"
              " time): user-space instructions per connection (connect, upgrade, one 64 B"
              " echo, close), kernel not counted:")
    else:
        what = f"{args.size:,} B binary" if args.size else "64 B text"
        print(f"Each benchmark server on real sockets (uvloop, {args.conns} connections,"
              f" {what}): user-space instructions per echoed message, kernel not counted:")
    each = {}
    for name in names:
        instructions, messages = count(name, args)
        each[name] = instructions / messages
    for name in names:
        ratios = [f"{each[name] / each[other]:.2f}× {LABELS[other]}"
                  for other in (peer, LIMIT) if other in each and other != name]
        print(f"  {LABELS[name]:<24} {each[name]:>9,.0f}   {', '.join(ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
