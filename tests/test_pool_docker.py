"""The pool against the real engine: warm reuse, idle stop and warm start, scale-out and
queueing, timeouts, crashes, init errors and sandbox identity."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiodocker
import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from edgelambda.containers import LABEL_STACK
from edgelambda.gateway import SERVER_KEY
from tests.conftest import (
    BASE_IMAGE,
    BOTH_BACKENDS,
    TEST_FUNCTIONS,
    GatewayFactory,
    Server,
    Starter,
    lifecycle_routing,
    one_function,
    report,
)

pytestmark = pytest.mark.docker


async def containers(docker: aiodocker.Docker, client: TestClient, *, running: bool) -> list[str]:
    stack = client.app[SERVER_KEY].settings.stack
    filters = {"label": [f"{LABEL_STACK}={stack}"]}
    if running:
        filters["status"] = ["running"]
    found = await docker.containers.list(all=not running, filters=json.dumps(filters))
    return [c.id for c in found]


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        await asyncio.sleep(0.1)


async def test_warm_reuse_idle_stop_warm_start_and_retention(
    gateway: GatewayFactory, docker: aiodocker.Docker
) -> None:
    client = await gateway(
        lifecycle_routing(idle_timeout=1.5), reap_interval_s=0.2, stopped_retention_s=2.0
    )

    first, second = await report(client), await report(client)
    assert first["container"] == second["container"]
    assert (first["invocations"], second["invocations"]) == (1, 2)
    assert first["uid"] == 993  # never root

    # Idle past the timeout: stopped, not removed.
    await eventually(lambda: _none_running(docker, client), timeout_s=5)
    assert len(await containers(docker, client, running=False)) == 1

    restarted = await report(client)
    assert restarted["container"] == first["container"]  # the same container, restarted
    assert restarted["invocations"] == 1  # ...with a new process

    # Stopped past the retention period: removed; the next request is a cold start.
    await eventually(lambda: _none_at_all(docker, client), timeout_s=8)
    cold = await report(client)
    assert cold["container"] != first["container"]


async def _none_running(docker: aiodocker.Docker, client: TestClient) -> bool:
    return not await containers(docker, client, running=True)


async def _none_at_all(docker: aiodocker.Docker, client: TestClient) -> bool:
    return not await containers(docker, client, running=False)


async def _burst(client: TestClient, count: int, query: str) -> list[tuple[int, str]]:
    async def one() -> tuple[int, str]:
        response = await client.get(f"/fn{query}")
        return response.status, await response.text()

    return await asyncio.gather(*(one() for _ in range(count)))


async def _max_containers_during(
    docker: aiodocker.Docker, client: TestClient, work: Awaitable[list[tuple[int, str]]]
) -> tuple[list[tuple[int, str]], int]:
    """Run ``work`` while sampling the number of running containers every 50 ms."""
    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, len(await containers(docker, client, running=True)))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        results = await work
    finally:
        done.set()
        await sampler
    return results, peak


@BOTH_BACKENDS
async def test_ten_concurrent_sleeps_scale_out_to_ten(
    gateway: GatewayFactory, docker: aiodocker.Docker
) -> None:
    client = await gateway(lifecycle_routing(max_concurrency=10))
    # Warm the pool first: ten concurrent container starts alone take ~1.8 s on this engine
    # (measured with bare aiodocker calls), which no gateway can hide. `make bench` reports
    # the cold burst separately.
    warm_up, _ = await _max_containers_during(
        docker, client, _burst(client, 10, "?action=sleep&s=0.5")
    )
    assert [status for status, _ in warm_up] == [200] * 10

    started = time.monotonic()
    results, peak = await _max_containers_during(
        docker, client, _burst(client, 10, "?action=sleep&s=1")
    )
    wall_s = time.monotonic() - started

    assert [status for status, _ in results] == [200] * 10
    containers_used = {json.loads(body)["container"] for _, body in results}
    assert len(containers_used) == 10  # one each: ten warm sandboxes, none shared
    assert peak <= 10  # and never more than max_concurrency
    assert wall_s < 2.5, f"10 concurrent 1 s calls took {wall_s:.2f} s"


@BOTH_BACKENDS
async def test_max_concurrency_one_queues_on_one_container(
    gateway: GatewayFactory, docker: aiodocker.Docker
) -> None:
    client = await gateway(lifecycle_routing(max_concurrency=1))

    results, peak = await _max_containers_during(
        docker, client, _burst(client, 10, "?action=sleep&s=0.2")
    )

    assert [status for status, _ in results] == [200] * 10
    assert len({json.loads(body)["container"] for _, body in results}) == 1
    assert peak == 1


@BOTH_BACKENDS
async def test_a_full_queue_answers_429(gateway: GatewayFactory) -> None:
    client = await gateway(lifecycle_routing(max_concurrency=1), queue_size=2)

    results = await _burst(client, 10, "?action=sleep&s=0.3")

    statuses = sorted(status for status, _ in results)
    assert statuses.count(200) == 2  # the two that fitted in the queue
    assert statuses.count(429) == 8
    assert {body for status, body in results if status == 429} == {
        '{"message": "Too Many Requests"}'
    }


@BOTH_BACKENDS
async def test_a_timeout_is_504_and_the_container_is_replaced(gateway: GatewayFactory) -> None:
    client = await gateway(lifecycle_routing(timeout=1))
    before = await report(client)

    started = time.monotonic()
    response = await client.get("/fn?action=sleep&s=10")
    elapsed_s = time.monotonic() - started

    assert response.status == 504
    assert await response.json() == {"message": "Endpoint request timed out"}
    assert elapsed_s < 2.0
    after = await report(client)
    assert after["container"] != before["container"]


@BOTH_BACKENDS
@pytest.mark.parametrize(
    ("action", "error_type"), [("crash", "Runtime.ExitError"), ("oom", "Runtime.OutOfMemory")]
)
async def test_a_dying_runtime_is_502_and_the_next_request_succeeds(
    gateway: GatewayFactory, action: str, error_type: str
) -> None:
    client = await gateway(lifecycle_routing(memory=128))
    before = await report(client)

    response = await client.get(f"/fn?action={action}")

    assert response.status == 502
    assert await response.json() == {"message": "Internal server error"}
    assert response.headers["x-amzn-ErrorType"] == error_type
    after = await report(client)
    assert after["container"] != before["container"]


@BOTH_BACKENDS
async def test_an_init_error_is_502_naming_its_type(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    code = tmp_path / "broken"
    shutil.copytree(TEST_FUNCTIONS / "broken", code)
    client = await gateway(one_function(code))

    response = await client.get("/fn")

    assert response.status == 502
    assert response.headers["x-amzn-ErrorType"] == "Runtime.ImportModuleError"
    # Fix the code: the next cold start builds a new image from it and succeeds.
    (code / "app.py").write_text(
        "def handler(event, context):\n    return {'statusCode': 200, 'body': 'fixed'}\n"
    )
    response = await client.get("/fn")
    assert response.status == 200
    assert await response.text() == "fixed"


@BOTH_BACKENDS
async def test_a_foreign_caller_gets_403_and_no_work(
    gateway: GatewayFactory, docker: aiodocker.Docker
) -> None:
    client = await gateway(lifecycle_routing(max_concurrency=1))
    gateway_obj = client.app[SERVER_KEY]
    await report(client)  # a sandbox exists and is polling for work
    slow = asyncio.create_task(client.get("/fn?action=sleep&s=1"))
    await asyncio.sleep(0.2)
    queued = asyncio.create_task(client.get("/fn"))  # waits for the one sandbox

    url = f"http://{gateway_obj.runtime_api}/2018-06-01/runtime/invocation/next"
    probe = (
        "import urllib.request, urllib.error\n"
        "try:\n"
        f"    urllib.request.urlopen({url!r}, timeout=5)\n"
        "    print('status 200')\n"
        "except urllib.error.HTTPError as e:\n"
        "    print('status', e.code)\n"
    )
    foreign = await docker.containers.run(
        {
            "Image": BASE_IMAGE,
            "Entrypoint": ["python3", "-c", probe],
            "Labels": {LABEL_STACK: gateway_obj.settings.stack},
            "HostConfig": {"NetworkMode": gateway_obj.settings.docker_network},
        }
    )
    try:
        await foreign.wait(timeout=20)
        output = "".join(await foreign.log(stdout=True, stderr=True))
    finally:
        await foreign.delete(force=True)

    assert "status 403" in output
    assert (await slow).status == 200
    assert (await queued).status == 200  # the queued invocation was not stolen


def write_wheel(directory: Path) -> None:
    """A minimal pure-Python wheel, so the test needs no index and commits no binary."""
    files = {
        "tinydep/__init__.py": 'VALUE = "from a vendored wheel"\n',
        "tinydep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
        "tinydep-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: edgelambda-tests\n"
            "Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{name},,\n" for name in [*files, "tinydep-1.0.dist-info/RECORD"])
    directory.mkdir()
    with zipfile.ZipFile(directory / "tinydep-1.0-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr("tinydep-1.0.dist-info/RECORD", record)


@BOTH_BACKENDS
async def test_requirements_are_installed_into_the_image(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    code = tmp_path / "withdeps"
    shutil.copytree(TEST_FUNCTIONS / "withdeps", code)
    write_wheel(code / "wheels")  # vendored, as an air-gapped box does
    client = await gateway(one_function(code))

    response = await client.get("/fn")

    assert response.status == 200, await response.text()
    assert await response.text() == "from a vendored wheel"


@BOTH_BACKENDS
async def test_containers_are_hardened_and_labelled(
    gateway: GatewayFactory, docker: aiodocker.Docker, backend_kind: str
) -> None:
    client = await gateway(lifecycle_routing(memory=192))
    await report(client)
    (container_id,) = await containers(docker, client, running=True)

    info = await docker.containers.container(container_id).show()

    host = info["HostConfig"]
    assert info["Config"]["User"] == "993:990"
    assert host["CapDrop"] == ["ALL"]
    # Swarm's service API (1.41) cannot set no-new-privileges on a task (README).
    no_new_privileges = {"docker": ["no-new-privileges"], "swarm": None}[backend_kind]
    assert host["SecurityOpt"] == no_new_privileges
    assert host["ReadonlyRootfs"] is True
    tmpfs = {m["Target"] for m in host.get("Mounts") or [] if m["Type"] == "tmpfs"}
    assert "/tmp" in set(host.get("Tmpfs") or {}) | tmpfs  # a task's is a tmpfs mount
    assert host["Memory"] == 192 * 1024 * 1024
    assert host["PidsLimit"] == 1024
    assert host["NanoCpus"] > 0
    assert host["Binds"] is None  # the code came in the image, not through a mount
    labels = info["Config"]["Labels"]
    assert labels["edgelambda.function"] == "fn"
    assert labels["edgelambda.stack"] == client.app[SERVER_KEY].settings.stack
    assert len(labels["edgelambda.instance"]) == 32


# -- bounded code and output (issue 13, 5 and 6): a real `edgelambda serve`, whose settings
# reach the backend ---------------------------------------------------------------------------

FLOOD_HANDLER = """\
def handler(event, context):
    query = event.get("queryStringParameters") or {}
    for i in range(int(query.get("lines", "0"))):
        print(f"{i:08d} " + "x" * 1000)
    print("marker " + query.get("marker", ""))
    return {"statusCode": 200, "body": "ok"}
"""


async def test_code_that_cannot_be_packed_is_a_prompt_502_until_fixed(
    serve_factory: Starter, tmp_path: Path
) -> None:
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(FLOOD_HANDLER)
    (code / "mem").symlink_to("/proc/self/mem")  # unreadable, even for root (EIO)
    server = await serve_factory(one_function(code), log=tmp_path / "gateway.log")

    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.get(f"{server.url}/fn") as response:
            assert response.status == 502  # it used to wait out the queue (30 s), then 429
        assert time.monotonic() - started < 10
        (code / "mem").unlink()
        async with session.get(f"{server.url}/fn") as response:
            assert response.status == 200, await response.text()
    assert "symlink leaving the code directory" in (tmp_path / "gateway.log").read_text()


async def test_function_output_is_rotated_by_the_engine(
    serve_factory: Starter, tmp_path: Path, docker: aiodocker.Docker
) -> None:
    server, log = await flood_past_a_rotation(serve_factory, tmp_path)

    (container,) = await docker.containers.list(
        filters=json.dumps({"label": [f"{LABEL_STACK}={server.stack}"]})
    )
    info = await container.show()
    assert info["HostConfig"]["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-file": "2", "max-size": "1m"},
    }
    assert "00000000 " in log.read_text()  # its output was followed from the start


async def test_function_output_after_a_rotation_is_still_followed(
    serve_factory: Starter, tmp_path: Path
) -> None:
    _, log = await flood_past_a_rotation(serve_factory, tmp_path)

    deadline = time.monotonic() + 10
    while "marker after-rotation" not in log.read_text():  # the follower outlived rotations
        assert time.monotonic() < deadline, "output after a rotation never reached the log"
        await asyncio.sleep(0.2)
    assert log.read_text().count("marker after-rotation") == 1  # a follow anew repeats none


async def flood_past_a_rotation(serve_factory: Starter, tmp_path: Path) -> tuple[Server, Path]:
    """A function printing 3 MB into 1 MB x 2 rotated log files, then one more line."""
    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(FLOOD_HANDLER)
    log = tmp_path / "gateway.log"
    env = {"EDGELAMBDA_FUNCTION_LOG_MAX_MB": "1", "EDGELAMBDA_FUNCTION_LOG_MAX_FILES": "2"}
    server = await serve_factory(one_function(code), env=env, log=log)

    async with aiohttp.ClientSession() as session:
        for query in ("lines=3000&marker=first", "marker=after-rotation"):  # 3 MB, then 1 line
            async with session.get(f"{server.url}/fn?{query}") as response:
                assert response.status == 200, await response.text()
    return server, log
