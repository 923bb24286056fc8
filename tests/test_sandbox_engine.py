"""The pool's hands on the engine, driven through a fake container backend: the container
spec it starts, where each sandbox answers, and which exits it reports."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from structlog.testing import capture_logs

from edgelambda.config import Settings
from edgelambda.containers import (
    LABEL_FUNCTION,
    LABEL_IMAGE,
    LABEL_INSTANCE,
    LABEL_STACK,
    ContainerExit,
)
from edgelambda.errors import EngineUnavailable, SandboxRetired
from edgelambda.invocation import Invocation
from edgelambda.routing import FunctionSpec
from edgelambda.sandbox import Sandbox
from edgelambda.sandbox_engine import SandboxEngine
from tests.fakes import FakeBackend, function_spec

RUNTIME_API = "10.0.0.1:9001"
AWS_ENV = {"AWS_ENDPOINT_URL_S3": "http://s3.box:9000", "AWS_ACCESS_KEY_ID": "box-key"}


def make_engine(backend: FakeBackend, settings: Settings | None = None) -> SandboxEngine:
    return SandboxEngine(
        backend=backend, settings=settings or Settings(), runtime_api=RUNTIME_API, aws_env=AWS_ENV
    )


def new_sandbox() -> Sandbox:
    return Sandbox(function_spec(), now_s=0.0)


def poll_for_work(sandbox: Sandbox) -> asyncio.Future[Invocation]:
    """The sandbox's runtime polls ``/next``: it is ready; its pending poll."""
    poll: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
    sandbox.await_work(poll, now_s=0.0)
    return poll


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class Reported:
    """The exits the engine reports, as the pool's callback receives them."""

    def __init__(self) -> None:
        self.exits: list[tuple[Sandbox, ContainerExit]] = []
        self.arrived = asyncio.Event()

    def __call__(self, sandbox: Sandbox, exit: ContainerExit) -> None:
        self.exits.append((sandbox, exit))
        self.arrived.set()


class BuildingBackend(FakeBackend):
    """Builds an image for a function that names none, and records for which base."""

    def __init__(self) -> None:
        super().__init__()
        self.built: list[tuple[str, str]] = []

    async def function_image(self, function: FunctionSpec, base_image: str) -> str:
        self.built.append((function.name, base_image))
        return "built:7"


class FailingEngine(FakeBackend):
    """An engine that refuses to stop or remove containers."""

    async def stop(self, container_id: str) -> None:
        raise EngineUnavailable("engine down")

    async def remove(self, container_id: str) -> None:
        raise EngineUnavailable("engine down")


class LosingEngine(FakeBackend):
    """An engine on which some containers vanished while nobody listened (a restart)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: set[str] = set()

    async def running_containers(self, stack: str) -> set[str]:
        return await super().running_containers(stack) - self.lost


# -- containers ----------------------------------------------------------------------------


async def test_create_starts_a_container_from_the_function_s_spec() -> None:
    backend = FakeBackend()
    settings = Settings(stack="shop", docker_network="shop_net", region="eu-central-1")
    engine = make_engine(backend, settings)
    sandbox = new_sandbox()
    before_s = time.time()

    running = await engine.create(sandbox)

    (spec,) = backend.started
    assert spec.image == "fake:1"  # the function's own image: nothing built
    assert spec.labels == {
        LABEL_FUNCTION: "fn",
        LABEL_INSTANCE: sandbox.instance,
        LABEL_STACK: "shop",
        LABEL_IMAGE: "fake:1",
    }
    assert spec.network == "shop_net"
    # The Runtime API's address, called by the sandbox's own name (its secret is in it).
    address, _, port = RUNTIME_API.rpartition(":")
    assert spec.env["AWS_LAMBDA_RUNTIME_API"] == f"runtime-{sandbox.token}:{port}"
    assert spec.extra_hosts == (f"runtime-{sandbox.token}:{address}",)
    assert spec.env["AWS_REGION"] == "eu-central-1"
    assert spec.env["AWS_ENDPOINT_URL_S3"] == "http://s3.box:9000"
    assert spec.env["AWS_ACCESS_KEY_ID"] == "box-key"
    assert sandbox.container_id == "c1"
    assert running.address == "10.0.0.2"
    assert before_s <= running.since_s <= time.time()


async def test_create_builds_an_image_for_a_function_without_one() -> None:
    backend = BuildingBackend()
    settings = Settings()
    engine = make_engine(backend, settings)
    sandbox = Sandbox(replace(function_spec(), image=None), now_s=0.0)

    await engine.create(sandbox)

    assert backend.built == [("fn", settings.base_image_for("python3.12"))]
    assert backend.started[0].image == "built:7"


async def test_restart_starts_the_kept_container_at_its_new_address() -> None:
    backend = FakeBackend()
    engine = make_engine(backend)
    sandbox = new_sandbox()
    await engine.create(sandbox)

    running = await engine.restart(sandbox)

    assert backend.restarted == ["c1"]
    assert len(backend.started) == 1  # no new container
    assert running.address == "10.0.0.3"


async def test_stop_says_whether_the_engine_stopped_the_container() -> None:
    backend = FakeBackend()
    engine = make_engine(backend)
    sandbox = new_sandbox()
    await engine.create(sandbox)

    assert await engine.stop(sandbox) is True
    assert backend.stopped == ["c1"]


async def test_a_stop_the_engine_refuses_is_logged_and_reported_as_not_done() -> None:
    engine = make_engine(FailingEngine())
    sandbox = new_sandbox()
    await engine.create(sandbox)

    with capture_logs() as logs:
        assert await engine.stop(sandbox) is False

    assert logs == [
        {
            "event": "container stop failed",
            "container": "c1",
            "error": "engine down",
            "log_level": "warning",
        }
    ]


async def test_a_removal_the_engine_refuses_is_logged_not_raised() -> None:
    engine = make_engine(FailingEngine())
    sandbox = new_sandbox()
    await engine.create(sandbox)

    with capture_logs() as logs:
        await engine.remove(sandbox)

    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("container removal failed", "warning")
    ]


# -- addresses -----------------------------------------------------------------------------


async def test_a_registered_sandbox_is_found_at_its_address_until_forgotten() -> None:
    engine = make_engine(FakeBackend())
    sandbox = new_sandbox()
    assert engine.at("10.0.0.2") is None

    await engine.register(sandbox, "10.0.0.2")
    assert (engine.at("10.0.0.2"), sandbox.address) == (sandbox, "10.0.0.2")

    engine.forget_address(sandbox)
    assert (engine.at("10.0.0.2"), sandbox.address) == (None, None)
    engine.forget_address(sandbox)  # nothing left to forget


async def test_forgetting_an_address_reused_by_another_sandbox_keeps_the_new_one() -> None:
    engine = make_engine(FakeBackend())
    old, new = new_sandbox(), new_sandbox()
    await engine.register(old, "10.0.0.2")
    await engine.register(new, "10.0.0.2")  # the engine gave old's address to a new container

    engine.forget_address(old)

    assert engine.at("10.0.0.2") is new
    assert (old.address, new.address) == (None, "10.0.0.2")


async def test_wait_for_returns_the_sandbox_registered_while_waiting() -> None:
    engine = make_engine(FakeBackend())
    sandbox = new_sandbox()
    waiting = asyncio.create_task(engine.wait_for("10.0.0.2", wait_s=5))
    await asyncio.sleep(0)
    await engine.register(new_sandbox(), "10.0.0.3")  # another address does not end the wait
    await asyncio.sleep(0)
    assert not waiting.done()

    await engine.register(sandbox, "10.0.0.2")

    assert await asyncio.wait_for(waiting, timeout=1) is sandbox


async def test_wait_for_gives_up_after_its_time() -> None:
    engine = make_engine(FakeBackend())

    assert await engine.wait_for("10.0.0.2", wait_s=0.01) is None

    sandbox = new_sandbox()  # and the wait left nothing locked behind it
    await asyncio.wait_for(engine.register(sandbox, "10.0.0.2"), timeout=1)
    assert await engine.wait_for("10.0.0.2", wait_s=0.01) is sandbox


# -- exits ---------------------------------------------------------------------------------


async def test_reconcile_reports_only_sandboxes_expected_running_whose_container_is_gone() -> None:
    backend = LosingEngine()
    engine = make_engine(backend)
    ready, busy, starting, stopped, alive = (new_sandbox() for _ in range(5))
    polls: dict[Sandbox, asyncio.Future[Invocation]] = {}
    for sandbox in (ready, busy, starting, stopped, alive):
        running = await engine.create(sandbox)  # c1 .. c5
        if sandbox is not starting:
            await engine.register(sandbox, running.address)
            polls[sandbox] = poll_for_work(sandbox)
    busy.assign(Invocation(payload=b"{}"))
    stopped.stop(now_s=1.0)  # still registered: only its state says it is not expected to run
    assert isinstance(polls[stopped].exception(), SandboxRetired)  # its runtime was let go
    backend.lost = {"c1", "c2", "c3", "c4"}  # every container but alive's
    reported = Reported()

    await engine.reconcile(reported)

    assert reported.exits == [
        (ready, ContainerExit("c1", exit_code=-1, is_oom=False)),
        (busy, ContainerExit("c2", exit_code=-1, is_oom=False)),
    ]  # not starting (no address yet), nor stopped, nor alive


async def test_watch_exits_reports_a_known_container_s_exit_and_ignores_others() -> None:
    backend = FakeBackend()
    engine = make_engine(backend)
    sandbox = new_sandbox()
    await engine.create(sandbox)
    reported = Reported()
    watcher = asyncio.create_task(engine.watch_exits(reported))
    known = ContainerExit("c1", exit_code=1, is_oom=False)

    backend.exit_events.put_nowait(ContainerExit("not-ours", exit_code=0, is_oom=False))
    backend.exit_events.put_nowait(known)
    await asyncio.wait_for(reported.arrived.wait(), timeout=1)
    await cancel(watcher)

    assert reported.exits == [(sandbox, known)]


async def test_a_removed_container_s_later_exit_is_not_reported() -> None:
    backend = FakeBackend()
    engine = make_engine(backend)
    removed, kept = new_sandbox(), new_sandbox()
    await engine.create(removed)  # c1
    await engine.create(kept)  # c2
    await engine.remove(removed)
    assert backend.removed == ["c1"]
    reported = Reported()
    watcher = asyncio.create_task(engine.watch_exits(reported))
    kept_exit = ContainerExit("c2", exit_code=137, is_oom=True)

    backend.exit_events.put_nowait(ContainerExit("c1", exit_code=0, is_oom=False))
    backend.exit_events.put_nowait(kept_exit)
    await asyncio.wait_for(reported.arrived.wait(), timeout=1)
    await cancel(watcher)

    assert reported.exits == [(kept, kept_exit)]
