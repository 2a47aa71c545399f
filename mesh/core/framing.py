"""Framing: a fixed 5-byte header, then the body; big messages span several frames.

Header: 1 flag byte and a 4-byte big-endian body length. Flags:

- ``0x01`` (MORE): more frames of this message follow;
- ``0x00`` (FINAL): the last frame of a message, and of the answer it belongs to;
- ``0x02`` (PARTIAL): the last frame of a message after which more messages of
  the same answer follow: a partial result (generated tokens, say) before the
  final one.

A frame body is at most ``MAX_FRAME_BYTES`` (libp2p 0.8.1 cannot read single
messages past ~6.5 MB); a message is the concatenation of its frames' bodies,
at most ``max_message``.

:class:`FrameReader` is sans-IO: feed it bytes as they arrive, in any split, and
it returns the complete messages. It never buffers more than one header plus
``max_message`` bytes, and rejects a declared length over a cap before reading it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mesh.core import limits
from mesh.errors import MalformedMessage, TooLarge

HEADER = struct.Struct(">BI")
HEADER_BYTES = HEADER.size
FLAG_FINAL = 0x00
FLAG_MORE = 0x01
FLAG_PARTIAL = 0x02
_LAST_FLAGS = (FLAG_FINAL, FLAG_PARTIAL)


@dataclass(frozen=True, slots=True)
class Message:
    """One reassembled message; ``partial`` when more messages of its answer follow."""

    data: bytes
    partial: bool = False


def encode_frames(
    message: bytes, *, max_frame: int = limits.MAX_FRAME_BYTES, partial: bool = False
) -> bytes:
    """Split ``message`` into frames of at most ``max_frame`` body bytes each.

    Args:
        message: the message.
        max_frame: the largest frame body.
        partial: mark it as a partial result that more messages of its answer follow.
    """
    view = memoryview(message)
    parts: list[bytes] = []
    offset = 0
    end_flag = FLAG_PARTIAL if partial else FLAG_FINAL
    while True:
        chunk = view[offset : offset + max_frame]
        offset += len(chunk)
        last = offset >= len(view)
        parts.append(HEADER.pack(end_flag if last else FLAG_MORE, len(chunk)))
        parts.append(bytes(chunk))
        if last:
            return b"".join(parts)


class FrameReader:
    """Reassembles messages from a byte stream, in any split of its bytes.

    Frame bodies are kept as the pieces they arrived in and joined once, when
    their message ends: memory held is the bytes received (plus at most one
    partial header), never a regrown buffer or a second copy of a frame.
    """

    def __init__(
        self,
        *,
        max_frame: int = limits.MAX_FRAME_BYTES,
        max_message: int = limits.MAX_MESSAGE_BYTES,
    ) -> None:
        self._max_frame = max_frame
        self._max_message = max_message
        self._head = bytearray()  # a header not yet complete (< HEADER_BYTES)
        self._flag: int | None = None  # the flag of the frame whose body is being read
        self._remaining = 0  # body bytes of that frame still to come
        self._pieces: list[bytes] = []  # bodies (or parts of them) of the current message
        self._message_bytes = 0  # bytes in _pieces
        self._declared = 0  # body bytes the current message's headers declared so far

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a complete message."""
        return len(self._head) + self._message_bytes

    @property
    def idle(self) -> bool:
        """True when no partial frame or message is pending."""
        return not self._head and self._flag is None and not self._pieces

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return every message they complete, in order.

        Raises:
            TooLarge: a frame or the message it belongs to exceeds its cap.
            MalformedMessage: an unknown flag byte.
        """
        messages: list[Message] = []
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end or (self._flag is not None and self._remaining == 0):
            if self._flag is None:
                take = min(HEADER_BYTES - len(self._head), end - pos)
                self._head += view[pos : pos + take]
                pos += take
                if len(self._head) < HEADER_BYTES:
                    break
                self._start_frame()
                continue
            if self._remaining:
                take = min(self._remaining, end - pos)
                piece = data if take == end and pos == 0 else bytes(view[pos : pos + take])
                self._pieces.append(piece)
                self._message_bytes += take
                self._remaining -= take
                pos += take
            if not self._remaining:
                self._end_frame(messages)
        return messages

    def _start_frame(self) -> None:
        flag, length = HEADER.unpack(self._head)
        if flag not in (FLAG_FINAL, FLAG_MORE, FLAG_PARTIAL):
            raise MalformedMessage(f"unknown frame flag {flag:#x}")
        if length > self._max_frame:
            raise TooLarge(f"frame of {length} bytes exceeds cap of {self._max_frame}")
        if self._declared + length > self._max_message:
            raise TooLarge(f"message exceeds cap of {self._max_message} bytes")
        self._head.clear()
        self._flag = flag
        self._remaining = length
        self._declared += length

    def _end_frame(self, messages: list[Message]) -> None:
        flag, self._flag = self._flag, None
        if flag in _LAST_FLAGS:
            messages.append(Message(b"".join(self._pieces), partial=flag == FLAG_PARTIAL))
            self._pieces = []
            self._message_bytes = 0
            self._declared = 0
