"""A function whose code cannot be packed into an image: its cold start fails, and the
caller gets the error at once, through the pool over a fake engine that packs the code for
real (the images module), as the Docker backend does. It used to raise OSError, which left
the sandbox "starting" and the caller waiting until the queue wait's 429."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from edgelambda import images
from edgelambda.errors import CodeError
from edgelambda.invocation import Invocation
from edgelambda.routing import FunctionSpec
from tests.fakes import FakeBackend, function_spec
from tests.pools import make_pool


class PackingBackend(FakeBackend):
    """Packs the function's code as :meth:`DockerBackend.function_image` does."""

    def __init__(self, limits: images.CodeLimits) -> None:
        super().__init__()
        self.limits = limits

    async def function_image(self, function: FunctionSpec, base_image: str) -> str:
        context = await asyncio.to_thread(
            images.build_context,
            function.code_dir,
            base_image,
            base_image_id="sha256:base",
            limits=self.limits,
        )
        context.close()
        return images.image_tag(function.name, context.digest)


@pytest.mark.parametrize(
    ("unreadable", "limits", "problem"),
    [
        (True, images.CodeLimits(), "symlink leaving the code directory"),
        (False, images.CodeLimits(max_files=1), "more than 1 files"),
    ],
    ids=["unreadable", "over-a-cap"],
)
async def test_code_that_cannot_be_packed_fails_the_call_promptly(
    tmp_path: Path, unreadable: bool, limits: images.CodeLimits, problem: str
) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 1\n")
    (tmp_path / "util.py").write_text("X = 1\n")
    if unreadable:  # even for root: the kernel answers EIO when address 0 is read
        os.symlink("/proc/self/mem", tmp_path / "mem")
    function = replace(function_spec(), image=None, code_dir=tmp_path)
    backend = PackingBackend(limits)
    pool = make_pool(backend, function, queue_wait_s=30)

    with pytest.raises(CodeError, match=problem) as caught:
        await asyncio.wait_for(pool.invoke("fn", Invocation(payload=b"x")), timeout=2)

    assert caught.value.status == 502
    assert backend.started == []
    await pool.close()
