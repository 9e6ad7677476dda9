"""Both twins of the protocol core in one process, for differential harnesses.

``TIDEWIRE_NO_SPEEDUPS`` is read once, at import, and the compiled ``Reader``
and ``Connection`` import the compiled masking functions: ``ConnectionPy``
alone would still parse frames in C. So the pure-Python twin of the whole core
is imported a second time, under another package name (``_tidewire_pure``)
with the switch set while it loads: every module in it is Python, and nothing
of it is shared with ``tidewire.protocol`` but the standard library.

``compiled()`` is the core as the process imported it: compiled, unless the
process runs with ``TIDEWIRE_NO_SPEEDUPS=1``, when the two twins are the same
code and only the split-feeding checks still mean something.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

import tidewire
import tidewire.protocol

__all__ = ["compiled", "pure", "PURE_PACKAGE"]

PURE_PACKAGE = "_tidewire_pure"


def compiled() -> ModuleType:
    """``tidewire.protocol`` as imported: the compiled twins unless disabled."""
    return tidewire.protocol


def pure() -> ModuleType:
    """A second ``tidewire.protocol``, all of it pure Python."""
    loaded = sys.modules.get(f"{PURE_PACKAGE}.protocol")
    if loaded is not None:
        return loaded
    # A bare package over tidewire's sources: its __init__ would import the
    # compiled asyncio layer, which this copy doesn't need.
    spec = importlib.machinery.ModuleSpec(PURE_PACKAGE, None, is_package=True)
    package = importlib.util.module_from_spec(spec)
    package.__path__ = list(tidewire.__path__)
    package.__version__ = tidewire.__version__  # type: ignore[attr-defined]
    sys.modules[PURE_PACKAGE] = package
    saved = os.environ.get("TIDEWIRE_NO_SPEEDUPS")
    os.environ["TIDEWIRE_NO_SPEEDUPS"] = "1"
    try:
        protocol = importlib.import_module(f"{PURE_PACKAGE}.protocol")
    finally:
        if saved is None:
            del os.environ["TIDEWIRE_NO_SPEEDUPS"]
        else:
            os.environ["TIDEWIRE_NO_SPEEDUPS"] = saved
    mask = sys.modules[f"{PURE_PACKAGE}.protocol.mask"]
    assert not mask.SPEEDUPS and mask.copy_unmasked is mask.copy_unmasked_py
    return protocol
