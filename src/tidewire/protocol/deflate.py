"""permessage-deflate (RFC 7692): negotiation and the per-message codec.

``DeflateOptions`` is what a user configures. A client turns it into an offer
with ``client_offer`` and checks the server's answer with ``client_accept``; a
server picks among the client's offers with ``server_accept``. Both end with a
``Deflate`` object that compresses outgoing messages and decompresses incoming
ones for the life of the connection.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from ..exceptions import NegotiationError, PayloadTooBig, ProtocolError

__all__ = [
    "DeflateOptions",
    "Deflate",
    "parse_extensions",
    "client_offer",
    "client_accept",
    "server_accept",
]

NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"
# What may follow a final block in a message: the octet that starts an empty
# stored block (RFC 7692 section 7.2.3.5), then the tail we append; or the
# tail alone.
_AFTER_FINAL = (b"\x00" + _TAIL, _TAIL)

Params = list[tuple[str, str | None]]

_EXT_ITEM = re.compile(
    r"""\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=\s*(?:([!#$%&'*+\-.^_`|~0-9A-Za-z]+)|"([^"\\]*)"))?\s*"""
)


def parse_extensions(values: list[str]) -> list[tuple[str, Params]]:
    """Parse Sec-WebSocket-Extensions header values into (name, params) offers.

    Raise ``NegotiationError`` on a malformed header.
    """
    offers: list[tuple[str, Params]] = []
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            parts = item.split(";")
            name = parts[0].strip()
            if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name):
                raise NegotiationError(f"malformed extension: {item.strip()[:60]}")
            params: Params = []
            for part in parts[1:]:
                m = _EXT_ITEM.fullmatch(part)
                if m is None:
                    raise NegotiationError(f"malformed extension parameter: {part[:60]}")
                params.append((m[1], m[2] if m[2] is not None else m[3]))
            offers.append((name, params))
    return offers


@dataclass(frozen=True)
class DeflateOptions:
    """Settings of permessage-deflate.

    On a server, ``server_*`` settings apply to what the server sends and
    ``client_*`` ones are asked of the client; on a client the same names are
    what it asks for and what it accepts. ``None`` window bits mean 15 (32 KiB).
    ``level`` and ``mem_level`` tune zlib for our own compressor; with a small
    window, ``mem_level`` goes no higher than the window bits less 4.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    level: int = 6
    mem_level: int = 8

    def __post_init__(self) -> None:
        for bits in (self.server_max_window_bits, self.client_max_window_bits):
            if bits is not None and not 8 <= bits <= 15:
                raise ValueError("max_window_bits must be between 8 and 15")
        if not -1 <= self.level <= 9:
            raise ValueError("level must be between -1 and 9")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("mem_level must be between 1 and 9")


DEFAULT_OPTIONS = DeflateOptions()


class Deflate:
    """The codec of one connection once permessage-deflate is agreed.

    ``local_*`` settings bind our compressor, ``remote_*`` the peer's.
    """

    def __init__(
        self,
        *,
        local_no_context_takeover: bool,
        remote_no_context_takeover: bool,
        local_max_window_bits: int,
        remote_max_window_bits: int,
        level: int = 6,
        mem_level: int = 8,
    ) -> None:
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.level = level
        self.mem_level = mem_level
        # zlib can't compress raw deflate with a 256-byte window; RFC 7692 lets
        # any message go uncompressed, so with 8 bits we never compress.
        self.can_compress = local_max_window_bits > 8
        # zlib walks its whole hash table (2 ** (mem_level + 7) slots) each
        # time a small window slides: with a 512-byte window and the default
        # table, that is most of the cost. A table in step with the window
        # compresses a 9-bit window twice as fast, for 2% more bytes.
        self._zlib_mem_level = min(mem_level, local_max_window_bits - 4)
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        self._out_size = 0

    def __repr__(self) -> str:
        return f"<Deflate {self.response_params()}>"

    def response_params(self) -> str:
        return (
            f"local_no_context_takeover={self.local_no_context_takeover} "
            f"remote_no_context_takeover={self.remote_no_context_takeover} "
            f"local_max_window_bits={self.local_max_window_bits} "
            f"remote_max_window_bits={self.remote_max_window_bits}"
        )

    # Sending.

    def compress(self, data: bytes, fin: bool = True) -> bytes:
        """Compress a message, or one fragment of it with ``fin`` on the last."""
        c = self._compressor
        if c is None:
            c = self._compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, -self.local_max_window_bits, self._zlib_mem_level
            )
        out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            if self.local_no_context_takeover:
                self._compressor = None
            # A sync flush always ends with the empty stored block that the
            # receiver puts back (RFC 7692 section 7.2.1).
            out = out[:-4]
        return out

    # Receiving.

    def decompress(self, data: bytes, limit: int | None) -> bytes:
        """Decompress a piece of an incoming message.

        ``limit`` is how many bytes may still come out, ``None`` for no limit;
        raise ``PayloadTooBig`` beyond it, so a small bomb never grows in memory.
        """
        d = self._decompressor
        if d is None:
            # A 15-bit window reads anything a smaller window wrote.
            d = self._decompressor = zlib.decompressobj(-15)
        try:
            if limit is not None:
                out = d.decompress(data, limit + 1)
                if len(out) > limit or d.unconsumed_tail:
                    raise PayloadTooBig("message too big after decompression")
            else:
                out = d.decompress(data)
        except zlib.error as exc:
            raise ProtocolError(f"invalid compressed data: {exc}") from exc
        if d.eof and not _after_final(d.unused_data):
            # zlib would keep whatever follows a final block, unread.
            raise ProtocolError("invalid compressed data: more after the final block")
        return out

    def end_message(self, limit: int | None) -> bytes:
        """Finish an incoming message: flush what the stripped tail holds back."""
        out = self.decompress(_TAIL, limit)
        d = self._decompressor
        # A message that ended with a final block (BFINAL, RFC 7692 section
        # 7.2.3.5) ended its DEFLATE stream: the next one starts a new stream.
        if self.remote_no_context_takeover or (d is not None and d.eof):
            self._decompressor = None
        return out


# The values a max_window_bits parameter may take: "8" to "15", in ASCII.
_WINDOW_BITS = frozenset(str(bits) for bits in range(8, 16))


def _after_final(unused: bytes) -> bool:
    """Whether ``unused``, what came after a final block, may be there."""
    return any(allowed.startswith(unused) for allowed in _AFTER_FINAL)


def _check_params(params: Params) -> dict[str, str | None]:
    """Validate permessage-deflate parameters; raise ``NegotiationError``."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name in seen:
            raise NegotiationError(f"duplicate parameter {name}")
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise NegotiationError(f"{name} takes no value")
        elif name in ("server_max_window_bits", "client_max_window_bits"):
            if value is not None and value not in _WINDOW_BITS:
                raise NegotiationError(f"invalid {name}={value}")
        else:
            raise NegotiationError(f"unknown parameter {name}")
        seen[name] = value
    return seen


def client_offer(options: DeflateOptions) -> str:
    """The Sec-WebSocket-Extensions value a client sends.

    Unless told to give up context takeover, the client makes two offers: the
    one it prefers, then the same with ``client_no_context_takeover`` for a
    server that accepts only clients willing to drop it (RFC 7692 section 5
    lets a server pick any offer).
    """
    first = _offer(options, options.client_no_context_takeover)
    if options.client_no_context_takeover:
        return first
    return f"{first}, {_offer(options, True)}"


def _offer(options: DeflateOptions, client_no_context_takeover: bool) -> str:
    parts = [NAME]
    if options.server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if options.server_max_window_bits is not None:
        parts.append(f"server_max_window_bits={options.server_max_window_bits}")
    if options.client_max_window_bits is not None:
        parts.append(f"client_max_window_bits={options.client_max_window_bits}")
    else:
        # Tell the server that it may ask us for a smaller window.
        parts.append("client_max_window_bits")
    return "; ".join(parts)


def client_accept(options: DeflateOptions, params: Params) -> Deflate:
    """Check the server's answer to ``client_offer``; raise ``NegotiationError``."""
    p = _check_params(params)
    smwb = p.get("server_max_window_bits")
    if "server_max_window_bits" in p and smwb is None:
        raise NegotiationError("server_max_window_bits needs a value")
    if (
        smwb is not None
        and options.server_max_window_bits is not None
        and int(smwb) > options.server_max_window_bits
    ):
        raise NegotiationError("server_max_window_bits above what we asked for")
    if options.server_no_context_takeover and "server_no_context_takeover" not in p:
        raise NegotiationError("server ignored server_no_context_takeover")
    if options.server_max_window_bits is not None and smwb is None:
        raise NegotiationError("server ignored server_max_window_bits")
    cmwb = p.get("client_max_window_bits")
    if "client_max_window_bits" in p and cmwb is None:
        raise NegotiationError("client_max_window_bits needs a value in a response")
    local_bits = options.client_max_window_bits or 15
    if cmwb is not None:
        if int(cmwb) > local_bits:
            raise NegotiationError("client_max_window_bits above what we offered")
        local_bits = int(cmwb)
    return Deflate(
        local_no_context_takeover=(
            options.client_no_context_takeover or "client_no_context_takeover" in p
        ),
        remote_no_context_takeover="server_no_context_takeover" in p,
        local_max_window_bits=local_bits,
        remote_max_window_bits=int(smwb) if smwb is not None else 15,
        level=options.level,
        mem_level=options.mem_level,
    )


def server_accept(
    options: DeflateOptions, offers: list[tuple[str, Params]]
) -> tuple[str, Deflate] | None:
    """Pick the first acceptable permessage-deflate offer.

    Return the response header value and the codec, or ``None`` to decline.
    Malformed offers are skipped, as RFC 7692 section 5 allows.
    """
    for name, params in offers:
        if name != NAME:
            continue
        try:
            p = _check_params(params)
        except NegotiationError:
            continue
        if "server_max_window_bits" in p and p["server_max_window_bits"] is None:
            continue
        response = [NAME]
        server_nct = options.server_no_context_takeover or (
            "server_no_context_takeover" in p
        )
        if server_nct:
            response.append("server_no_context_takeover")
        client_nct = options.client_no_context_takeover or (
            "client_no_context_takeover" in p
        )
        if client_nct:
            response.append("client_no_context_takeover")
        server_bits = options.server_max_window_bits or 15
        if p.get("server_max_window_bits") is not None:
            server_bits = min(server_bits, int(p["server_max_window_bits"] or 15))
            response.append(f"server_max_window_bits={server_bits}")
        client_bits = 15
        if "client_max_window_bits" in p:
            offered = p["client_max_window_bits"]
            wanted = options.client_max_window_bits
            if offered is not None or wanted is not None:
                client_bits = min(int(offered or 15), wanted or 15)
                response.append(f"client_max_window_bits={client_bits}")
        codec = Deflate(
            local_no_context_takeover=server_nct,
            remote_no_context_takeover=client_nct,
            local_max_window_bits=server_bits,
            remote_max_window_bits=client_bits,
            level=options.level,
            mem_level=options.mem_level,
        )
        return "; ".join(response), codec
    return None
