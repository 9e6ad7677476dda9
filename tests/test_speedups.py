"""Compiled functions agree with their pure-Python twins, and are really used."""

from __future__ import annotations

import os
import random

import pytest

from tidewire.protocol import mask


def test_compiled_speedups_are_in_use_unless_disabled() -> None:
    if os.environ.get("TIDEWIRE_NO_SPEEDUPS"):
        assert mask.apply_mask is mask.apply_mask_py
    else:
        from tidewire import _speedups

        assert mask.apply_mask is _speedups.apply_mask


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 125, 4096, 65535, 65537])
def test_apply_mask_matches_twin(size: int) -> None:
    rng = random.Random(size)
    data = rng.randbytes(size)
    key = rng.randbytes(4)
    assert mask.apply_mask(data, key) == mask.apply_mask_py(data, key)
    assert mask.apply_mask(bytearray(data), key) == mask.apply_mask_py(memoryview(data), key)


@pytest.mark.parametrize("bad", [b"", b"abc", b"abcde"])
def test_apply_mask_rejects_bad_key_length(bad: bytes) -> None:
    for fn in (mask.apply_mask, mask.apply_mask_py):
        with pytest.raises(ValueError):
            fn(b"data", bad)
