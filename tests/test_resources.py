"""Declared buckets and tables are created against a real S3/DynamoDB protocol server
(moto, started on 127.0.0.1), waiting for it to come up; nothing existing is touched."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import aiobotocore.session
import pytest
from aiohttp.test_utils import unused_port

from edgelambda.resources import Endpoints, ResourcesUnavailable, ensure_resources
from edgelambda.routing import Resources, TableSpec

TABLE = TableSpec(
    "orders",
    {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
    },
)
RESOURCES = Resources(buckets=("uploads",), tables=(TABLE,))


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
    endpoints = Endpoints(moto_url, moto_url, "us-east-1")

    first = await ensure_resources(RESOURCES, endpoints, wait_s=30)
    second = await ensure_resources(RESOURCES, endpoints, wait_s=30)

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
    ensuring = asyncio.create_task(
        ensure_resources(RESOURCES, Endpoints(url, url, "us-east-1"), wait_s=60)
    )
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
        await ensure_resources(RESOURCES, Endpoints(url, url, "us-east-1"), wait_s=1)
