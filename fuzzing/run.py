"""Run the fuzz harnesses with atheris: ``python -m fuzzing.run --seconds N [names...]``.

Harnesses are the modules ``fuzzing/fuzz_<name>.py``; with no names, each runs
in turn. Each starts from its seeds (``seeds/<name>/``), its past crashes
(``corpus/<name>/``) and what earlier runs on this machine found interesting
(``.work/<name>/``, not committed). An input that crashes a harness, raises,
runs out of memory or hangs is copied into ``corpus/<name>/``, where
``tests/test_fuzz_corpus.py`` replays it until the bug is fixed, and the run
fails. Each run appends its figures to ``.work/runs.tsv``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HERE", "harnesses", "corpus_files", "Result", "fuzz", "main"]

HERE = Path(__file__).resolve().parent
RSS_LIMIT_MB = 2048
INPUT_TIMEOUT = 120  # seconds for one input before it counts as a hang (a loaded machine)


def harnesses() -> list[str]:
    """Every harness's name: ``fuzz_<name>.py`` in this folder."""
    return sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py"))


def corpus_files(name: str) -> list[Path]:
    """The committed inputs that once crashed harness ``name``."""
    folder = HERE / "corpus" / name
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


@dataclass
class Result:
    name: str
    seconds: float
    runs: int | None
    cov: int | None
    ft: int | None
    crash: Path | None
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.crash is None

    def summary(self) -> str:
        state = "ok" if self.ok else f"CRASH {self.crash}" if self.crash else "FAILED"
        return (
            f"{self.name}: {state}, {self.runs} runs in {self.seconds:.0f} s, "
            f"cov {self.cov}, ft {self.ft}"
        )


def _last_int(pattern: str, text: str) -> int | None:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else None


def fuzz(name: str, seconds: int, *, quiet: bool = False) -> Result:
    """Fuzz harness ``name`` for ``seconds``; keep a crash in its corpus."""
    work = HERE / ".work" / name
    seeds = HERE / "seeds" / name
    corpus = HERE / "corpus" / name
    for folder in (work, seeds, corpus):
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as tmp:
        args = [
            sys.executable,
            "-m",
            f"fuzzing.fuzz_{name}",
            f"-max_total_time={seconds}",
            f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-timeout={INPUT_TIMEOUT}",
            f"-artifact_prefix={tmp}/",
            "-print_final_stats=1",
            str(work),  # new inputs go into the first folder
            str(seeds),
            str(corpus),
        ]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
        ))
        start = time.monotonic()
        proc = subprocess.run(
            args, cwd=HERE.parent, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace",
        )
        elapsed = time.monotonic() - start
        crash = None
        for artifact in sorted(Path(tmp).iterdir()):
            kind = artifact.name.split("-")[0]  # crash, oom, timeout, leak, slow
            if kind == "slow":
                continue  # over 10 s but done: on a loaded machine, no bug
            data = artifact.read_bytes()
            crash = corpus / f"{kind}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
            crash.write_bytes(data)
    output = proc.stdout
    result = Result(
        name=name,
        seconds=elapsed,
        runs=_last_int(r"stat::number_of_executed_units: (\d+)", output)
        or _last_int(r"#(\d+)\s", output),
        cov=_last_int(r" cov: (\d+)", output),
        ft=_last_int(r" ft: (\d+)", output),
        crash=crash,
        returncode=proc.returncode,
        output=output,
    )
    with open(HERE / ".work" / "runs.tsv", "a") as log:
        log.write(
            f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\t{name}\t{elapsed:.0f}\t{result.runs}\t"
            f"{result.cov}\t{result.ft}\t{'ok' if result.ok else 'crash'}\n"
        )
    if not result.ok and not quiet:
        print(output[-6000:], file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzzing.run", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"harnesses to run; all by default: "
                        f"{', '.join(harnesses())}")
    parser.add_argument("--seconds", type=int, default=300, help="per harness (300)")
    options = parser.parse_args(argv)
    names = options.names or harnesses()
    unknown = set(names) - set(harnesses())
    if unknown:
        parser.error(f"no harness named {', '.join(sorted(unknown))}")
    failed = []
    for name in names:
        print(f"fuzzing {name} for {options.seconds} s", flush=True)
        result = fuzz(name, options.seconds)
        print(result.summary(), flush=True)
        if not result.ok:
            failed.append(result)
    for result in failed:
        where = "; replay it with pytest tests/test_fuzz_corpus.py" if result.crash else ""
        print(f"{result.summary()}{where}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
