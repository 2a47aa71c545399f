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
    """Reassembles messages from a byte stream, in any split of its bytes."""

    def __init__(
        self,
        *,
        max_frame: int = limits.MAX_FRAME_BYTES,
        max_message: int = limits.MAX_MESSAGE_BYTES,
    ) -> None:
        self._max_frame = max_frame
        self._max_message = max_message
        self._buffer = bytearray()
        self._parts: list[bytes] = []
        self._message_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a complete message."""
        return len(self._buffer) + self._message_bytes

    @property
    def idle(self) -> bool:
        """True when no partial frame or message is pending."""
        return not self._buffer and not self._parts

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return every message they complete, in order.

        Raises:
            TooLarge: a frame or the message it belongs to exceeds its cap.
            MalformedMessage: an unknown flag byte.
        """
        self._buffer += data
        messages: list[Message] = []
        while len(self._buffer) >= HEADER_BYTES:
            flag, length = HEADER.unpack_from(self._buffer)
            if flag not in (FLAG_FINAL, FLAG_MORE, FLAG_PARTIAL):
                raise MalformedMessage(f"unknown frame flag {flag:#x}")
            if length > self._max_frame:
                raise TooLarge(f"frame of {length} bytes exceeds cap of {self._max_frame}")
            if self._message_bytes + length > self._max_message:
                raise TooLarge(f"message exceeds cap of {self._max_message} bytes")
            if len(self._buffer) < HEADER_BYTES + length:
                break
            body = bytes(self._buffer[HEADER_BYTES : HEADER_BYTES + length])
            del self._buffer[: HEADER_BYTES + length]
            self._parts.append(body)
            self._message_bytes += length
            if flag in _LAST_FLAGS:
                messages.append(Message(b"".join(self._parts), partial=flag == FLAG_PARTIAL))
                self._parts.clear()
                self._message_bytes = 0
        return messages
