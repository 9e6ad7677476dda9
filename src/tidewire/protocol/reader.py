"""Incoming frames to messages: parsing, unmasking, reassembly, UTF-8, inflate.

A ``Reader`` is fed bytes and appends events to a list: ``str`` for a text
message, ``bytes`` for a binary one, ``Ping``, ``Pong`` or ``Close`` for control
frames. It raises a ``ProtocolError`` (with its close code) on the first
violation, after appending the events that came before it.

Payloads are processed as they arrive, not once a frame is complete, so invalid
UTF-8 is caught on the first bad byte and a message over the limit is refused
before it is buffered.

This module is the pure-Python twin: the build compiles the same source with
Cython as ``_reader_c`` (C types in ``_reader_c.pxd``), which ``connection``
uses unless ``TIDEWIRE_NO_SPEEDUPS=1``.
"""

from __future__ import annotations

import codecs

from ..exceptions import InvalidUTF8, PayloadTooBig, ProtocolError
from .deflate import Deflate
from .frames import Close, Ping, Pong, parse_close
from .mask import Assembly, apply_mask, copy_unmasked

__all__ = ["Reader", "Event"]

Event = str | bytes | Ping | Pong | Close

_new_decoder = codecs.getincrementaldecoder("utf-8")

# Reader._remaining between two frames.
_NO_FRAME = -1
# A binary message in one frame at least this long is assembled in place, in
# a buffer of its size allocated when its header comes: unless the frame is
# longer than this, which a header can claim without sending a byte more.
_ASSEMBLE_MIN = 1 << 16
_ASSEMBLE_MAX = 1 << 24


def _reason(exc: UnicodeDecodeError) -> str:
    """Why UTF-8 was refused, the same wherever the message was cut: CPython
    calls an encoded surrogate (ED A0..BF) an "invalid continuation byte" when
    it has the third byte, and the reader says "encoded surrogate" when the
    message stops before it."""
    bad = exc.object[exc.start : exc.start + 2]
    if len(bad) == 2 and bad[0] == 0xED and bad[1] >= 0xA0:
        return "encoded surrogate"
    return exc.reason


class Reader:
    """Parses the frames of one direction of a connection.

    ``expect_mask`` is true on a server (clients must mask) and false on a client
    (servers must not). ``max_size`` bounds a message after decompression and
    ``max_frame_size`` one frame on the wire; ``None`` means no limit. By
    default a frame may be as long as a message, plus room for what deflate
    adds to data that doesn't compress.
    """

    def __init__(
        self,
        *,
        expect_mask: bool,
        max_size: int | None,
        max_frame_size: int | None = None,
        deflate: Deflate | None = None,
    ) -> None:
        self.expect_mask = expect_mask
        self.max_size = max_size
        if max_frame_size is None and max_size is not None:
            max_frame_size = max_size + max_size // 64 + 1024
        self.max_frame_size = max_frame_size
        self.deflate = deflate
        self._buf = b""  # bytes of the next frame that came before the rest
        # Frame being read; _remaining is _NO_FRAME between frames.
        self._remaining = _NO_FRAME
        self._opcode = 0
        self._fin = False
        self._mask: bytes | None = None
        self._offset = 0  # payload bytes of this frame already consumed
        # Message being read: _msg_opcode is 0 between messages.
        self._msg_opcode = 0
        self._compressed = False
        self._chunks: list[bytes] = []
        self._texts: list[str] = []
        self._size = 0  # message bytes so far, after decompression
        self._decoder: codecs.IncrementalDecoder | None = None
        self._whole: Assembly | None = None  # the large one-frame message being read

    def feed(self, data: bytes, events: list[Event]) -> bool:
        """Parse ``data``, appending events; raise ``ProtocolError``.

        Return whether a control frame was among them, so that the caller
        looks at the events only then.
        """
        if type(data) is not bytes:
            data = bytes(data)
        buf = self._buf
        if buf:
            # The start of a header or of a control frame waits: a few bytes.
            buf += data
        elif self._whole is not None:
            # More of a large frame: straight into its assembly.
            n = len(data)
            if n > self._remaining:
                n = self._remaining
            with memoryview(data) as view, view[:n] as chunk:
                self._put(chunk, events)
            if n == len(data):
                return False
            buf = data[n:]
        else:
            buf = data  # the common case: parsed where it is, no copy
        pos = 0
        controls = False
        try:
            while True:
                if self._remaining == _NO_FRAME:
                    used = self._read_header(buf, pos)
                    if used == 0:
                        break
                    pos += used
                    if (
                        self._opcode == 2
                        and self._fin
                        and not self._compressed
                        and _ASSEMBLE_MIN <= self._remaining <= _ASSEMBLE_MAX
                    ):
                        self._whole = Assembly(self._remaining)
                avail = len(buf) - pos
                remaining = self._remaining
                if self._opcode >= 8:
                    if avail < remaining:
                        break
                    payload = bytes(buf[pos : pos + remaining])
                    pos += remaining
                    self._remaining = _NO_FRAME
                    self._control(payload, events)
                    controls = True
                    continue
                if avail == 0 and remaining > 0:
                    break
                n = remaining if avail >= remaining else avail
                if self._whole is not None:
                    with memoryview(buf) as view, view[pos : pos + n] as chunk:
                        self._put(chunk, events)
                    pos += n
                    if self._remaining != _NO_FRAME:
                        break
                    continue
                piece = self._take(buf, pos, n)
                pos += n
                self._data(piece, n == remaining, events)
                if self._remaining != _NO_FRAME:
                    break
        finally:
            # What is left is at most a header and a control frame's payload:
            # data frames are consumed as far as they came.
            self._buf = buf[pos:] if pos < len(buf) else b""
        return controls

    def _read_header(self, buf: bytes, pos: int) -> int:
        """Parse a frame header at ``pos``; return its size, 0 if incomplete."""
        avail = len(buf) - pos
        if avail < 2:
            return 0
        b0 = buf[pos]
        b1 = buf[pos + 1]
        length = b1 & 0x7F
        size = 2
        if length == 126:
            size = 4
        elif length == 127:
            size = 10
        masked = b1 & 0x80
        if masked:
            size += 4
        if avail < size:
            return 0
        if length == 126:
            length = (buf[pos + 2] << 8) | buf[pos + 3]
        elif length == 127:
            if buf[pos + 2] & 0x80:
                raise ProtocolError("frame length with the most significant bit set")
            length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
        opcode = b0 & 0x0F
        fin = (b0 & 0x80) != 0
        rsv1 = (b0 & 0x40) != 0
        if b0 & 0x30:
            raise ProtocolError("reserved bits RSV2 or RSV3 set")
        if (masked != 0) != self.expect_mask:
            raise ProtocolError(
                "unmasked frame from client" if self.expect_mask
                else "masked frame from server"
            )
        if opcode >= 8:
            if opcode > 10:
                raise ProtocolError(f"reserved opcode {opcode:#x}")
            if not fin:
                raise ProtocolError("fragmented control frame")
            if length > 125:
                raise ProtocolError("control frame payload over 125 bytes")
            if rsv1:
                raise ProtocolError("reserved bit RSV1 set on a control frame")
        elif opcode == 0:
            if not self._msg_opcode:
                raise ProtocolError("continuation frame outside a fragmented message")
            if rsv1:
                raise ProtocolError("reserved bit RSV1 set on a continuation frame")
        elif opcode <= 2:
            if self._msg_opcode:
                raise ProtocolError("new message inside a fragmented message")
            if rsv1 and self.deflate is None:
                raise ProtocolError("reserved bit RSV1 set without an extension")
            self._msg_opcode = opcode
            self._compressed = rsv1
        else:
            raise ProtocolError(f"reserved opcode {opcode:#x}")
        if self.max_frame_size is not None and length > self.max_frame_size:
            raise PayloadTooBig(
                f"frame of {length} bytes exceeds the limit of {self.max_frame_size} bytes"
            )
        if (
            opcode < 8
            and not self._compressed
            and self.max_size is not None
            and self._size + length > self.max_size
        ):
            raise PayloadTooBig(
                f"message of {self._size + length} bytes or more exceeds "
                f"the limit of {self.max_size} bytes"
            )
        self._opcode = opcode
        self._fin = fin
        self._mask = buf[pos + size - 4 : pos + size] if masked else None
        self._remaining = length
        self._offset = 0
        return size

    def _control(self, payload: bytes, events: list[Event]) -> None:
        if self._mask is not None:
            payload = apply_mask(payload, self._mask)
        if self._opcode == 9:
            events.append(Ping(payload))
        elif self._opcode == 10:
            events.append(Pong(payload))
        else:
            events.append(parse_close(payload))

    def _take(self, buf: bytes, pos: int, n: int) -> bytes:
        """Copy ``n`` payload bytes at ``pos`` out of ``buf``, unmasked."""
        return copy_unmasked(buf, pos, n, self._mask, self._offset)

    def space(self) -> memoryview | None:
        """Where the next bytes may be read straight into: the rest of the
        large message being assembled, if that is all that is being read; else
        ``None``. Once bytes are written there, call ``filled()``, not ``feed()``."""
        whole = self._whole
        if whole is None or self._buf:
            return None
        return whole.space()

    def filled(self, n: int, events: list[Event]) -> bool:
        """``n`` bytes were written into ``space()``: unmask them where they are;
        append the message once it is complete. Return whether more of it is
        still to come."""
        whole = self._whole
        if whole is None:
            raise ValueError("no message is being assembled")
        whole.filled(n, self._mask)
        self._assembled(n, events)
        return self._whole is not None

    def _put(self, chunk: memoryview, events: list[Event]) -> None:
        """Copy the next payload bytes of a large one-frame binary message into
        its assembly, unmasked; append the message once it is complete."""
        whole = self._whole
        assert whole is not None
        whole.put(chunk, self._mask)
        self._assembled(len(chunk), events)

    def _assembled(self, n: int, events: list[Event]) -> None:
        """``n`` more payload bytes are in the assembly."""
        self._offset += n
        self._remaining -= n
        if self._remaining == 0:
            whole = self._whole
            assert whole is not None
            self._whole = None
            self._remaining = _NO_FRAME
            self._msg_opcode = 0
            self._size = 0
            events.append(whole.take())

    def _data(self, piece: bytes, frame_end: bool, events: list[Event]) -> None:
        """Take ``piece``, the next part of the current data frame's payload,
        already unmasked."""
        n = len(piece)
        self._offset += n
        self._remaining -= n
        last = frame_end and self._fin
        if self._compressed:
            deflate = self.deflate
            assert deflate is not None
            piece = deflate.decompress(piece, self._limit())
            self._size += len(piece)
            if last:
                tail = deflate.end_message(self._limit())
                self._size += len(tail)
                piece += tail
        else:
            self._size += n
        if self._msg_opcode == 1:
            decoder = self._decoder
            try:
                if decoder is None and last:
                    # A message in one piece, the common case, is decoded at
                    # once: an incremental decoder costs more than the decoding.
                    text = piece.decode()
                else:
                    if decoder is None:
                        decoder = self._decoder = _new_decoder()
                    text = decoder.decode(piece, last)
            except UnicodeDecodeError as exc:
                raise InvalidUTF8(f"invalid UTF-8 in text message: {_reason(exc)}") from exc
            if not last:
                # CPython's decoder notices an encoded surrogate (ED A0..BF)
                # only at its third byte; fail at the second, like all others.
                assert decoder is not None
                pending = decoder.getstate()[0]
                if len(pending) == 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                    raise InvalidUTF8("invalid UTF-8 in text message: encoded surrogate")
            if text:
                self._texts.append(text)
        elif piece:
            self._chunks.append(piece)
        if frame_end:
            self._remaining = _NO_FRAME
        if last:
            self._finish(events)

    def _limit(self) -> int | None:
        """How many more bytes the message may hold, ``None`` for no limit."""
        if self.max_size is None:
            return None
        return int(self.max_size) - self._size

    def _finish(self, events: list[Event]) -> None:
        if self._msg_opcode == 1:
            texts = self._texts
            events.append(texts[0] if len(texts) == 1 else "".join(texts))
            texts.clear()
            self._decoder = None
        else:
            chunks = self._chunks
            events.append(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            chunks.clear()
        self._msg_opcode = 0
        self._compressed = False
        self._size = 0
