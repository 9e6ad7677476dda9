"""Write the seed inputs of the harnesses: ``python -m fuzzing.seeds``.

Seeds are meaningful starting points (valid frames, compressed messages, real
handshakes) that atheris mutates; they live in ``seeds/<name>/``, apart from
``corpus/<name>/``, which holds only inputs that once crashed a harness. Each
harness module that wants seeds has a ``seeds()`` function returning them by
file name; this script writes them.
"""

from __future__ import annotations

import importlib
import sys

from fuzzing.run import HERE, harnesses

__all__ = ["main"]


def main() -> int:
    for name in harnesses():
        module = importlib.import_module(f"fuzzing.fuzz_{name}")
        make = getattr(module, "seeds", None)
        if make is None:
            continue
        folder = HERE / "seeds" / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        seeds: dict[str, bytes] = make()
        for file_name, data in seeds.items():
            (folder / file_name).write_bytes(data)
        print(f"{name}: {len(seeds)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
