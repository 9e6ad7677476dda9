"""The states of a connection and its side, shared by ``connection`` and its
compiled twin ``_connection_c`` so that both compare equal members."""

from __future__ import annotations

import enum

__all__ = ["State", "Side"]


class State(enum.Enum):
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class Side(enum.Enum):
    SERVER = 0
    CLIENT = 1
