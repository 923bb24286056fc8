"""Declared buckets and tables are created against a real S3/DynamoDB protocol server
(moto, started on 127.0.0.1), waiting for it to come up; nothing existing is touched."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import aiobotocore.session
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from edgelambda.resources import (
    Endpoints,
    ResourcesUnavailable,
    create_table_properties,
    ensure_resources,
)
from edgelambda.routing import Resources, TableSpec

TABLE = TableSpec(
    "orders",
    {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
    },
)
RESOURCES = Resources(buckets=("uploads",), tables=(TABLE,))
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "edgelambda", "AWS_SECRET_ACCESS_KEY": "edgelambda"}
PROVISIONED = TableSpec(
    "ledger",
    {
        **TABLE.properties,
        "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    },
)


def endpoints(url: str) -> Endpoints:
    return Endpoints(url, url, "us-east-1", CREDENTIALS)


async def start_moto(port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture
async def moto_url() -> AsyncIterator[str]:
    port = unused_port()
    process = await start_moto(port)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    await process.wait()


async def test_missing_resources_are_created_once(moto_url: str) -> None:
    first = await ensure_resources(RESOURCES, endpoints(moto_url), wait_s=30)
    second = await ensure_resources(RESOURCES, endpoints(moto_url), wait_s=30)

    assert first == ["s3://uploads", "dynamodb:orders"]
    assert second == []
    session = aiobotocore.session.get_session()
    async with session.create_client(
        "dynamodb", endpoint_url=moto_url, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
    ) as dynamodb:  # fmt: skip
        described = await dynamodb.describe_table(TableName="orders")
    assert described["Table"]["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]


async def test_start_up_waits_for_services_that_are_still_starting() -> None:
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    ensuring = asyncio.create_task(ensure_resources(RESOURCES, endpoints(url), wait_s=60))
    await asyncio.sleep(1.5)  # the service is not there yet
    process = await start_moto(port)
    try:
        assert await asyncio.wait_for(ensuring, timeout=60) == ["s3://uploads", "dynamodb:orders"]
    finally:
        process.terminate()
        await process.wait()


async def test_an_absent_service_is_a_clear_error_after_the_wait() -> None:
    url = f"http://127.0.0.1:{unused_port()}"

    with pytest.raises(ResourcesUnavailable, match="unreachable"):
        await ensure_resources(RESOURCES, endpoints(url), wait_s=1)


async def test_a_table_with_provisioned_throughput_keeps_its_capacity_mode(moto_url: str) -> None:
    # DynamoDB, Alternator and moto refuse PAY_PER_REQUEST beside ProvisionedThroughput.
    resources = Resources(buckets=(), tables=(PROVISIONED,))

    assert await ensure_resources(resources, endpoints(moto_url), wait_s=30) == ["dynamodb:ledger"]


def test_on_demand_billing_only_when_no_capacity_mode_is_declared() -> None:
    assert create_table_properties(TABLE)["BillingMode"] == "PAY_PER_REQUEST"
    assert "BillingMode" not in create_table_properties(PROVISIONED)
    provisioned = TableSpec("t", {**PROVISIONED.properties, "BillingMode": "PROVISIONED"})
    assert create_table_properties(provisioned)["BillingMode"] == "PROVISIONED"


async def answer_503(request: web.Request) -> web.Response:
    return web.Response(status=503)


async def test_start_up_waits_for_a_service_that_answers_503_until_ready() -> None:
    # RustFS answers 503 on every S3 call until its storage and IAM are ready.
    port = unused_port()
    not_ready = web.Application()
    not_ready.router.add_route("*", "/{tail:.*}", answer_503)
    runner = web.AppRunner(not_ready)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    ensuring = asyncio.create_task(ensure_resources(RESOURCES, endpoints(url), wait_s=90))
    await asyncio.sleep(2)
    assert not ensuring.done()
    await runner.cleanup()
    process = await start_moto(port)
    try:
        assert await asyncio.wait_for(ensuring, timeout=90) == ["s3://uploads", "dynamodb:orders"]
    finally:
        process.terminate()
        await process.wait()
