"""What every harness's ``main()`` does: run atheris on ``test_one_input``."""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["fuzz"]


def fuzz(test_one_input: Callable[[bytes], None], load: Callable[[], object]) -> None:
    """Instrument what ``load()`` imports, then fuzz with the command line's
    libFuzzer options. atheris is imported here only: harnesses replay their
    corpus without it."""
    import atheris

    with atheris.instrument_imports():
        load()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
