"""Every input that ever crashed a fuzz harness, replayed: one case per file.

A crash saved by ``python -m fuzzing.run`` into ``fuzzing/corpus/<name>/``
fails here until the bug is fixed, and guards against its return after.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from fuzzing.run import corpus_files, harnesses

CASES = [(name, path) for name in harnesses() for path in corpus_files(name)]


def test_every_harness_has_a_corpus_folder_or_none_yet() -> None:
    # The glob found the harnesses: a broken discovery would replay nothing.
    assert "frames" in harnesses()


@pytest.mark.parametrize(
    ("name", "path"), CASES, ids=[f"{name}/{path.name}" for name, path in CASES]
)
def test_crash_input_is_handled(name: str, path: Path) -> None:
    harness = importlib.import_module(f"fuzzing.fuzz_{name}")
    harness.test_one_input(path.read_bytes())
