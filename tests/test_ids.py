"""Request and trace ids: random UUIDs of version 4 in their text form, hex tokens, never
repeated, cut from the OS's randomness read ahead (a read smaller than a request too)."""

from __future__ import annotations

import os
import re
import uuid

from edgelambda import ids

_UUID4_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_a_uuid4_reads_back_as_a_version_4_rfc_4122_uuid() -> None:
    for _ in range(1000):
        text = ids.uuid4()
        assert _UUID4_TEXT.fullmatch(text), text
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_ids_do_not_repeat_across_many_reads_ahead() -> None:
    made = [ids.uuid4() for _ in range(20_000)]  # about 80 reads of 4 KiB

    assert len(set(made)) == len(made)


def test_a_token_has_the_bytes_asked_for_even_beyond_one_read() -> None:
    assert re.fullmatch(r"[0-9a-f]{24}", ids.token_hex(12))
    assert len(ids.token_hex(5000)) == 10_000
    assert ids.token_hex(8) != ids.token_hex(8)


def test_a_forked_child_does_not_repeat_its_parent_s_ids() -> None:
    ids.uuid4()  # the parent has read ahead
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write_end, ids.uuid4().encode())
        os._exit(0)
    os.waitpid(child, 0)
    from_child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.close(write_end)

    assert from_child != ids.uuid4()
