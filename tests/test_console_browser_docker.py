"""The console in a real headless browser (Debian's chromium driven by Playwright) against
`edgelambda serve`, real containers and the VictoriaLogs stand-in: log in, watch a
function's containers go from none to busy to idle, invoke from the form and read the result
and its log lines, see a rejected routing edit, replay a dead letter after fixing its cause.

With ``EDGELAMBDA_SCREENSHOTS=<dir>`` (``make screenshots``) it also saves each page there."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import unused_port
from playwright.async_api import Browser, Page, async_playwright, expect

from edgelambda.config import DEFAULT_API_KEY, DEFAULT_AUTH_PASS, Settings
from tests.conftest import REPO_ROOT, Starter, function_code, routing_text

pytestmark = pytest.mark.docker

LOG_RECORDER = REPO_ROOT / "docker" / "standins" / "log_recorder.py"
WAIT_MS = 30_000  # a cold start included
SCREENSHOTS = os.environ.get("EDGELAMBDA_SCREENSHOTS")


def routing(broken: str) -> str:
    function = {
        "handler": "app.handler",
        "code": function_code("console"),
        "freeze_after": 0,  # idle stays idle: the test watches for it
        "environment": {"BROKEN": broken},
    }
    routes = [
        {"path": "/work", "method": "GET", "function": "work", "auth": "none"},
        {"path": "/work", "method": "POST", "function": "work", "auth": "jwt"},
    ]
    return routing_text({"work": function}, routes)


def browser_path() -> str:
    """Debian's chromium (``make test`` installs it); EDGELAMBDA_BROWSER names another."""
    path = os.environ.get("EDGELAMBDA_BROWSER") or shutil.which("chromium")
    if path is None:
        pytest.fail("no chromium: `make test` installs Debian's (or set EDGELAMBDA_BROWSER)")
    return path


@pytest.fixture
async def log_store(tmp_path: Path) -> AsyncIterator[str]:
    """The VictoriaLogs stand-in, as a process; its URL."""
    port = unused_port()
    env = {**os.environ, "RECORDER_HOST": "127.0.0.1", "RECORDER_PORT": str(port),
           "RECORDER_DATA_DIR": str(tmp_path / "logs")}  # fmt: skip
    process = await asyncio.create_subprocess_exec(sys.executable, str(LOG_RECORDER), env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"{url}/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # As root, Chromium's own sandbox cannot start; the page is the box's own console.
        launched = await playwright.chromium.launch(
            executable_path=browser_path(), args=["--no-sandbox"]
        )
        yield launched
        await launched.close()


async def reload_status(url: str) -> dict[str, object]:
    """The routing file's last load, through the console's API."""
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{url}/console/api/routes", headers={"x-api-key": DEFAULT_API_KEY}) as got,
    ):
        status: dict[str, object] = (await got.json())["reload"]
        return status


async def edit_routing(url: str, routing_file: Path, text: str) -> dict[str, object]:
    """Write the routing file; the load that follows (accepted or rejected)."""
    before = await reload_status(url)
    await asyncio.to_thread(routing_file.write_text, text)
    for _ in range(200):
        status = await reload_status(url)
        if status["at"] != before["at"]:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway did not reload the routing file within 10 s")


async def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        await page.wait_for_timeout(500)  # let the charts and chips settle
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"console-{name}.png"), full_page=True)


async def test_an_operator_sees_and_operates_the_box_in_a_browser(
    serve_factory: Starter, log_store: str, browser: Browser, tmp_path: Path
) -> None:
    server = await serve_factory(
        routing("0"),
        env={
            "EDGELAMBDA_VICTORIALOGS_URL": log_store,
            "EDGELAMBDA_LOG_FLUSH_INTERVAL_S": "0.1",
            "EDGELAMBDA_EVENT_RETRY_DELAYS_S": "0.2,0.2",
            "EDGELAMBDA_CONSOLE_REFRESH_S": "0.2",
            "EDGELAMBDA_RELOAD_DEBOUNCE_MS": "100",
        },
    )
    routing_file = tmp_path / "serve-routing.yaml"
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    # Log in: the auth endpoint's JWT, kept in the tab's session.
    await page.goto(f"{server.url}/console")
    await page.fill("input[name=apikey]", DEFAULT_API_KEY)
    await page.fill("input[name=username]", Settings().auth_user)
    await page.fill("input[name=password]", DEFAULT_AUTH_PASS)
    await page.click("#login button[type=submit]")
    row = page.locator('#functions tr[data-function="work"]')
    await expect(row.locator('[data-state="none"]')).to_be_visible()
    assert "Bearer" not in await page.content()  # the token is not written into the page

    # A request: none -> busy -> idle, pushed by the live feed.
    async with aiohttp.ClientSession() as client:
        request = asyncio.create_task(client.get(f"{server.url}/work?s=2&say=hi"))
        await expect(row.locator('[data-state="busy"]')).to_have_text("busy 1", timeout=WAIT_MS)
        await expect(row.locator('[data-state="ready"]')).to_have_text("idle 1", timeout=WAIT_MS)
        assert (await request).status == 200
    await screenshot(page, "functions")

    # Invoke from the form: the result, and the invocation's log lines.
    await row.locator("a").first.click()
    # What a function prints or answers is shown as text, never as markup.
    await page.fill("#invoke textarea", '{"say": "hello from the form <img src=x id=injected>"}')
    await page.click("#invoke button[type=submit]")
    result = page.locator("#invoke-result")
    await expect(result).to_contain_text('"said": "hello from the form <img')
    await expect(page.locator("#invoke-log")).to_contain_text(
        "console function says hello from the form"
    )
    await expect(page.locator("#invoke-log")).to_contain_text("REPORT RequestId")
    request_id = (await page.locator("#invoke-status").inner_text()).rsplit(" ", 1)[-1]
    invocation = page.locator(f'#invocation-table tr[data-request-id="{request_id}"]')
    await expect(invocation).to_contain_text("success")
    log_lines = page.locator(".invocation-log")
    for _ in range(20):  # the log store has it once the shipper flushed (0.1 s)
        await invocation.locator(".show-logs").click()
        await expect(log_lines).to_be_visible()
        if "hello from the form" in await log_lines.inner_text():
            break
        await page.wait_for_timeout(250)
    await expect(log_lines).to_contain_text("console function says hello from the form <img")
    await expect(page.locator("#injected")).to_have_count(0)
    link = page.get_by_role("link", name="Open in VictoriaLogs")
    assert "/select/vmui/#/?query=" in (await link.get_attribute("href") or "")

    # Break the function, and an Event invocation ends as a dead letter.
    assert (await edit_routing(server.url, routing_file, routing("1")))["status"] == "accepted"
    await page.goto(f"{server.url}/console#/functions/work")
    await page.select_option("#invoke select", "Event")
    await page.click("#invoke button[type=submit]")
    await expect(page.locator("#invoke-status")).to_contain_text("HTTP 202")
    dead = page.locator("#dead-letter-table tr[data-dead-letter]")
    await expect(dead).to_have_count(1, timeout=WAIT_MS)
    await expect(dead).to_contain_text("the console function is broken")

    # A rejected routing edit: its error, with the file, line and key.
    await page.goto(f"{server.url}/console#/routes")
    await expect(page.locator("#reload-status")).to_have_class("banner accepted")
    routing_file.write_text(routing("1").replace('"freeze_after": 0', '"freeze_after": "soon"'))
    banner = page.locator("#reload-status.rejected")  # the live feed brings the news
    await expect(banner).to_contain_text("freeze_after", timeout=WAIT_MS)
    await expect(banner).to_contain_text(f"{routing_file.name}:6 functions.work.freeze_after")
    await expect(banner).to_contain_text("must be a number")
    await expect(page.locator("#routes tbody tr")).to_have_count(2)  # the old table serves on
    await screenshot(page, "routes")

    # Fix it, replay the dead letter: it runs again and succeeds.
    assert (await edit_routing(server.url, routing_file, routing("0")))["status"] == "accepted"
    await expect(page.locator("#reload-status")).to_have_class("banner accepted")
    await page.goto(f"{server.url}/console#/functions/work")
    await page.click("#dead-letter-table .replay-one")
    await expect(page.locator("#action-result")).to_have_text("replayed 1 event(s)")
    await expect(page.locator("#no-dead-letters")).to_be_visible(timeout=WAIT_MS)
    latest = page.locator("#invocation-table tbody tr[data-request-id]").first
    await expect(latest).to_contain_text("success", timeout=WAIT_MS)
    await screenshot(page, "function")

    await page.goto(f"{server.url}/console#/box")
    await expect(page.locator("#services")).to_contain_text("VictoriaLogs")
    await expect(page.locator("#services")).to_contain_text("up")
    await expect(page.locator("#loops")).not_to_contain_text("dead")
    await screenshot(page, "box")
    assert errors == []
