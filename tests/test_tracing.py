from __future__ import annotations

import re

from edgelambda.tracing import new_trace_header, trace_header, trace_root

GIVEN = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def test_a_new_header_carries_the_time_in_its_root() -> None:
    header = new_trace_header(now_s=0x5759E988)

    assert re.fullmatch(r"Root=1-5759e988-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0", header)
    assert new_trace_header(now_s=0x5759E988) != header  # random part


def test_a_valid_incoming_header_is_kept() -> None:
    assert trace_header(GIVEN, now_s=0) == GIVEN
    assert trace_root(GIVEN) == "1-5759e988-bd862e3fe1be46a994272793"


def test_invalid_or_missing_headers_are_replaced() -> None:
    for incoming in (None, "", "Root=garbage", "Parent=53995c3f42cd8ad8", "Root=1-" + "a" * 600):
        assert trace_root(trace_header(incoming, now_s=1)) is not None
        assert trace_header(incoming, now_s=1) != incoming
