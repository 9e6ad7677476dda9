"""Fuzz harnesses for tidewire, driven by atheris (see README.md).

Each ``fuzz_<name>.py`` exposes ``test_one_input(data)``, which returns for
every input handled correctly and raises for a bug; ``run.py`` runs them and
keeps what crashed under ``corpus/<name>/``, where ``tests/test_fuzz_corpus.py``
replays it.
"""

__all__: list[str] = []
