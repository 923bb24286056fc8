"""The console's page and JSON API without an engine: the real gateway and pool, a fake
container backend and a fake runtime (``tests.gateway_box``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edgelambda import auth, console_api
from edgelambda.config import Settings
from edgelambda.errors import Unauthorized
from edgelambda.gateway import SERVER_KEY
from edgelambda.live_feed import LiveFeed, sse_message
from tests.gateway_box import Gateway, GatewayFactory, open_gateways, route

KEY = Settings().api_key
KEYED = {"x-api-key": KEY}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    async with open_gateways(tmp_path) as start:
        yield start


async def get(box: Gateway, path: str, headers: dict[str, str] | None = None) -> Any:
    response = await box.client.get(path, headers=KEYED if headers is None else headers)
    assert response.status == 200, await response.text()
    return await response.json()


def token(settings: Settings) -> str:
    return auth.issue_token(
        "onpremise-user", secret=settings.jwt_secret, now_s=time.time(), expires_s=60, token_id="t"
    )


# -- who may read it ----------------------------------------------------------------------


def test_access_takes_the_api_key_in_development_mode_only() -> None:
    development, production = Settings(), Settings(is_production=True, api_key="k" * 32)

    console_api.check_access({"x-api-key": KEY}, development, time.time())
    with pytest.raises(Unauthorized):
        console_api.check_access({"x-api-key": "wrong"}, development, time.time())
    with pytest.raises(Unauthorized):  # the key is no login in production
        console_api.check_access({"x-api-key": "k" * 32}, production, time.time())
    with pytest.raises(Unauthorized):
        console_api.check_access({}, development, time.time())


def test_access_takes_a_valid_jwt_in_either_mode() -> None:
    settings = Settings(is_production=True, api_key="k" * 32, jwt_secret="s" * 32)
    headers = {"Authorization": f"Bearer {token(settings)}"}

    console_api.check_access(headers, settings, time.time())
    with pytest.raises(Unauthorized):  # expired
        console_api.check_access(headers, settings, time.time() + 3600)
    with pytest.raises(Unauthorized):  # signed with another secret
        console_api.check_access(headers, Settings(jwt_secret="t" * 32), time.time())


async def test_the_page_is_served_to_anyone_but_the_api_is_not(gateway: GatewayFactory) -> None:
    box = await gateway()

    page = await box.client.get("/console")
    refused = await box.client.get("/console/api/functions")
    live = await box.client.get("/console/api/live")

    assert page.status == 200
    assert 'data-auth-path="/user/auth/ver1.0"' in await page.text()
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert (refused.status, await refused.json()) == (401, {"message": "Unauthorized"})
    assert live.status == 401
    script = await box.client.get("/console/static/console.js")
    assert script.status == 200
    assert "/console/api" in await script.text()


async def test_a_login_token_opens_the_api_in_production_mode(gateway: GatewayFactory) -> None:
    box = await gateway(is_production=True, api_key="k" * 32, jwt_secret="s" * 32,
                        auth_pass="p" * 16)  # fmt: skip
    login = await box.client.post(
        "/user/auth/ver1.0",
        headers={"x-api-key": "k" * 32},
        json={"AuthParameters": {"USERNAME": "onpremise-user", "PASSWORD": "p" * 16}},
    )
    jwt = (await login.json())["AuthenticationResult"]["IdToken"]

    with_key = await box.client.get("/console/api/box", headers={"x-api-key": "k" * 32})
    document = await get(box, "/console/api/box", {"Authorization": f"Bearer {jwt}"})

    assert with_key.status == 401
    assert document["mode"] == "production"


API_CALLS = [
    ("GET", "/console/api/functions"),
    ("GET", "/console/api/functions/fn"),
    ("GET", "/console/api/functions/fn/logs"),
    ("POST", "/console/api/functions/fn/remove-idle"),
    ("POST", "/console/api/functions/fn/replay"),
    ("GET", "/console/api/dead-letters"),
    ("POST", "/console/api/dead-letters/some-id/replay"),
    ("GET", "/console/api/routes"),
    ("GET", "/console/api/box"),
    ("GET", "/console/api/live"),
    ("GET", "/console/api/no-such-thing"),
]


@pytest.mark.parametrize(("method", "path"), API_CALLS)
async def test_every_api_call_needs_the_login(
    gateway: GatewayFactory, method: str, path: str
) -> None:
    box = await gateway(route())

    anonymous = await box.client.request(method, path)
    wrong_key = await box.client.request(method, path, headers={"x-api-key": "guess"})
    forged = await box.client.request(
        method, path, headers={"Authorization": f"Bearer {token(Settings(jwt_secret='x' * 32))}"}
    )

    assert [anonymous.status, wrong_key.status, forged.status] == [401, 401, 401]
    assert box.backend.removed == []  # nothing was done


async def test_unknown_api_paths_and_functions_are_404(gateway: GatewayFactory) -> None:
    box = await gateway()

    missing = await box.client.get("/console/api/functions/nope", headers=KEYED)
    unknown = await box.client.get("/console/api/nothing-here", headers=KEYED)

    assert (missing.status, await missing.json()) == (404, {"message": "No function named 'nope'"})
    assert unknown.status == 404


# -- what it shows ------------------------------------------------------------------------


async def test_a_function_shows_its_settings_routes_containers_and_invocations(
    gateway: GatewayFactory,
) -> None:
    box = await gateway(route("/items/{id}", "GET POST"))

    response, delivered = await box.call("GET", "/items/1", {"statusCode": 200, "body": "hi"})
    await asyncio.sleep(0.1)  # the journal concludes the invocation after its answer
    listed = await get(box, "/console/api/functions")
    detail = await get(box, "/console/api/functions/fn")

    assert [f["name"] for f in listed["functions"]] == ["fn"]
    assert detail["runtime"] == "python3.12"
    assert detail["code_hash"] == "fake:1"  # a user's image is shown as it is named
    assert detail["routes"] == [{"methods": ["GET", "POST"], "path": "/items/{id}",
        "function": "fn", "auth": "none", "payload": "1.0", "cors": False}]  # fmt: skip
    assert detail["containers"] == {"busy": 1}  # until its runtime asks for more work
    [invocation] = detail["invocations"]
    assert invocation["request_id"] == delivered.request_id
    assert invocation["trace_id"] == response.headers["X-Amzn-Trace-Id"]
    assert (invocation["outcome"], invocation["cold"]) == ("success", True)
    assert detail["activity"]["invocations"][-1] == 1
    assert detail["dead_letters"] == []


async def test_remove_idle_retires_the_functions_idle_containers(gateway: GatewayFactory) -> None:
    box = await gateway(route())
    await box.call("GET", "/items/1", {"statusCode": 200})
    polling = asyncio.create_task(box.runtime.next())  # the runtime waits for work: idle
    for _ in range(250):
        if (await get(box, "/console/api/functions/fn"))["containers"] == {"ready": 1}:
            break
        await asyncio.sleep(0.02)

    response = await box.client.post("/console/api/functions/fn/remove-idle", headers=KEYED)

    assert (response.status, await response.json()) == (200, {"removed": 1})
    assert (await get(box, "/console/api/functions/fn"))["containers"] == {}
    for _ in range(50):  # the container is removed in the background
        if box.backend.removed:
            break
        await asyncio.sleep(0.02)
    assert box.backend.removed == ["c1"]
    polling.cancel()
    await asyncio.gather(polling, return_exceptions=True)


async def test_dead_letters_are_listed_and_replayed(gateway: GatewayFactory) -> None:
    box = await gateway(route())
    events = box.client.app[SERVER_KEY]._events
    assert events is not None
    later_s = time.time() + 3600  # not due: the worker leaves it alone until replayed
    event_id = await events.enqueue("fn", b'{"n": 1}', trace_id=None, now_s=later_s)
    assert await events.expire(now_s=later_s + 100, max_age_s=60) == 1

    listed = await get(box, "/console/api/dead-letters?function=fn")
    replayed = await box.client.post(f"/console/api/dead-letters/{event_id}/replay", headers=KEYED)
    again = await box.client.post(f"/console/api/dead-letters/{event_id}/replay", headers=KEYED)

    [dead] = listed["dead_letters"]
    assert (dead["id"], dead["payload"], dead["reason"]) == (event_id, '{"n": 1}', "event_too_old")
    assert (replayed.status, await replayed.json()) == (200, {"replayed": 1})
    assert again.status == 404
    delivered = await box.delivered()  # the worker runs it again, now
    assert json.loads(delivered.payload) == {"n": 1}
    await box.runtime.respond(delivered.request_id, {})


async def test_a_functions_dead_letters_are_replayed_and_no_others(
    gateway: GatewayFactory,
) -> None:
    box = await gateway(route(), event_queue_size=2)
    events = box.client.app[SERVER_KEY]._events
    assert events is not None
    later_s = time.time() + 3600
    for function in ("fn", "fn", "fn", "other"):
        await events.enqueue(function, b"{}", trace_id=None, now_s=later_s)
    await events.expire(now_s=later_s + 100, max_age_s=60)
    await box.runtime.close()  # no runtime: replayed events wait in the queue
    events_of_fn = await get(box, "/console/api/functions/fn")

    response = await box.client.post("/console/api/functions/fn/replay", headers=KEYED)

    assert (events_of_fn["dead_letter_count"], len(events_of_fn["dead_letters"])) == (3, 3)
    assert await response.json() == {"replayed": 2, "left": 1}  # the queue's room for fn: 2
    assert [d.function for d in await events.dead_letters()] == ["fn", "other"]


async def test_listings_are_bounded(gateway: GatewayFactory) -> None:
    box = await gateway()
    events = box.client.app[SERVER_KEY]._events
    assert events is not None
    later_s = time.time() + 3600
    for n in range(5):
        await events.enqueue("fn", b"x" * (5000 + n), trace_id=None, now_s=later_s)
    await events.expire(now_s=later_s + 100, max_age_s=60)

    too_many = await box.client.get("/console/api/dead-letters?limit=5000", headers=KEYED)
    listed = await get(box, "/console/api/dead-letters?limit=3")

    assert too_many.status == 400
    assert [d["payload_bytes"] for d in listed["dead_letters"]] == [5000, 5001, 5002]  # oldest
    assert {len(d["payload"]) for d in listed["dead_letters"]} == {4096}  # shown cut


async def test_routes_show_a_rejected_reload_with_its_file_line_and_key(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        "functions:\n  fn:\n    handler: app.handler\n    code: nowhere\n    timeout: soon\n"
    )
    box = await gateway(route(), routing_config_path=routing)

    before = await get(box, "/console/api/routes")
    await box.client.app[SERVER_KEY].reload_routing()
    after = await get(box, "/console/api/routes")

    assert before["reload"]["status"] == "accepted"
    assert before["routes"][0]["path"] == "/items/{id}"
    assert after["reload"]["status"] == "rejected"
    assert (after["reload"]["file"], after["reload"]["line"]) == (str(routing), 5)
    assert after["reload"]["key"] == "functions.fn.timeout"
    assert after["routes"] == before["routes"]  # the old table keeps serving


async def test_the_box_shows_loops_engine_services_and_events(gateway: GatewayFactory) -> None:
    box = await gateway()

    document = await get(box, "/console/api/box")

    assert document["engine"] == {"backend": "docker", "version": "Fake 1.0"}
    assert {loop["name"] for loop in document["loops"]} >= {"console feed", "idle reaper"}
    assert all(loop["status"] == "running" for loop in document["loops"])
    assert document["events"] == {"queued": 0, "dead_letters": 0}
    assert [s["status"] for s in document["services"]] == ["not configured"] * 3
    assert document["log_shipper"] is None


# -- logs, through a LogsQL stand-in ---------------------------------------------------------


async def test_logs_say_when_no_log_store_is_configured(gateway: GatewayFactory) -> None:
    box = await gateway()

    response = await box.client.get("/console/api/functions/fn/logs?request_id=r1", headers=KEYED)

    assert response.status == 503
    assert "EDGELAMBDA_VICTORIALOGS_URL" in (await response.json())["message"]


async def test_logs_are_read_through_logsql_with_a_link_to_its_ui(gateway: GatewayFactory) -> None:
    queries: list[str] = []

    async def query(request: web.Request) -> web.Response:
        queries.append(request.query["query"])
        line = {"_time": "2026-12-02T12:00:00Z", "_msg": "START RequestId: r1",
                "aws_request_id": "r1", "stream": "platform", "container_name": "c1"}  # fmt: skip
        return web.Response(text=json.dumps(line) + "\nnot json\n")

    store = web.Application()
    store.router.add_get("/select/logsql/query", query)
    async with TestServer(store) as server:
        url = str(server.make_url("")).rstrip("/")
        box = await gateway(victorialogs_url=url, victorialogs_ui_url="http://logs.example:9428")

        document = await get(box, "/console/api/functions/fn/logs?request_id=r1&since=2h")
        bad = await box.client.get("/console/api/functions/fn/logs?since=forever", headers=KEYED)

    assert queries == ['_time:2h function:="fn" aws_request_id:="r1" | sort by (_time)']
    assert document["lines"] == [{"time": "2026-12-02T12:00:00Z", "message": "START RequestId: r1",
        "stream": "platform", "request_id": "r1", "container": "c1"}]  # fmt: skip
    assert document["ui_url"].startswith("http://logs.example:9428/select/vmui/#/?query=_time%3A2h")
    assert bad.status == 400


# -- the live feed ---------------------------------------------------------------------------


async def test_the_live_feed_sends_the_document_at_once_and_on_every_change(
    gateway: GatewayFactory,
) -> None:
    box = await gateway(route(), console_refresh_s=0.05)
    response = await box.client.get("/console/api/live", headers=KEYED)
    assert response.headers["Content-Type"] == "text/event-stream"

    async def next_document() -> dict[str, Any]:
        while True:
            line = await asyncio.wait_for(response.content.readline(), 5)
            if line.startswith(b"data: "):
                document: dict[str, Any] = json.loads(line[6:])
                return document

    first = await next_document()
    await box.call("GET", "/items/1", {"statusCode": 200})
    second = await next_document()
    while second["functions"]["fn"]["containers"] != {"busy": 1}:
        second = await next_document()

    assert first["functions"] == {"fn": {"containers": {}, "queued": 0, "code_hash": None}}
    assert second["functions"]["fn"]["code_hash"] == "fake:1"
    assert first["events"] == {"queued": 0, "dead_letters": 0}
    assert first["reload"]["status"] == "accepted"
    response.close()


async def test_a_live_stream_ends_when_its_token_expires(gateway: GatewayFactory) -> None:
    box = await gateway()
    settings = box.client.app[SERVER_KEY].settings
    short = auth.issue_token(
        "onpremise-user", secret=settings.jwt_secret, now_s=time.time(), expires_s=1,
        token_id="t",
    )  # fmt: skip
    started = time.monotonic()

    response = await box.client.get(
        "/console/api/live", headers={"Authorization": f"Bearer {short}"}
    )
    body = await asyncio.wait_for(response.content.read(), 5)

    assert body.startswith(b"data: ")  # the document, then the end
    assert time.monotonic() - started < 3


async def test_an_open_live_feed_does_not_hold_up_shutdown(gateway: GatewayFactory) -> None:
    box = await gateway(shutdown_grace_s=30)
    async with aiohttp.ClientSession() as browser:  # stays connected while the gateway stops
        response = await browser.get(box.client.make_url("/console/api/live"), headers=KEYED)
        await response.content.readline()
        started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(box.client.close(), 10)
        stopped_s = time.monotonic() - started
        assert stopped_s < 5  # not aiohttp's wait for open requests (30 s)
        assert await asyncio.wait_for(response.content.read(), 5) == b"\n"  # it ended


def test_an_sse_message_is_one_data_line_or_a_comment() -> None:
    assert sse_message(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert sse_message(b"") == b": alive\n\n"


async def test_the_feed_sends_a_document_only_when_it_changed() -> None:
    documents = [b"one"]
    renders = 0

    async def render() -> bytes:
        nonlocal renders
        renders += 1
        return documents[-1]

    feed = LiveFeed(render, interval_s=0.01)
    feed.start()
    async with feed.listen() as first, feed.listen() as second:
        assert await first.next(1) == b"one"  # at once
        assert await first.next(0.1) == b""  # unchanged: nothing but a heartbeat
        documents.append(b"two")
        assert await first.next(1) == b"two"
        assert await second.next(1) == b"two"  # the newest only: "one" was never read
        await feed.close()
        assert await first.next(1) is None
    async with feed.listen() as late:  # opened during shutdown: ends at once
        assert await late.next(1) is None
    assert renders > 5  # ticked while listened to
