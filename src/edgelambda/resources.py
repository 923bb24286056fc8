"""Create the S3 buckets and DynamoDB tables routing.yaml declares, when missing, with
aiobotocore. Services may still be starting, so each call retries, bounded; nothing that
exists is ever touched or deleted."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiobotocore.session
import botocore.exceptions
import structlog

from edgelambda.containers import DUMMY_CREDENTIALS
from edgelambda.errors import EdgeLambdaError
from edgelambda.routing import Resources, TableSpec

log = structlog.get_logger(__name__)

RETRY_S = 1.0
MISSING_BUCKET = {"404", "NoSuchBucket", "NotFound"}


class ResourcesUnavailable(EdgeLambdaError):
    """A declared bucket or table could not be checked or created in time."""


@dataclass(frozen=True)
class Endpoints:
    s3_url: str | None
    dynamodb_url: str | None
    region: str


async def ensure_resources(
    resources: Resources, endpoints: Endpoints, *, wait_s: float
) -> list[str]:
    """Create what is missing; return what was created (``s3://b``, ``dynamodb:t``)."""
    deadline = time.monotonic() + wait_s
    created: list[str] = []
    session = aiobotocore.session.get_session()
    if resources.buckets and endpoints.s3_url:
        async with _client(session, "s3", endpoints.s3_url, endpoints.region) as s3:
            for bucket in resources.buckets:
                if await _retrying(deadline, lambda b=bucket: _ensure_bucket(s3, b)):
                    created.append(f"s3://{bucket}")
    if resources.tables and endpoints.dynamodb_url:
        async with _client(session, "dynamodb", endpoints.dynamodb_url, endpoints.region) as ddb:
            for table in resources.tables:
                if await _retrying(deadline, lambda t=table: _ensure_table(ddb, t)):
                    created.append(f"dynamodb:{table.name}")
    if created:
        log.info("resources created", created=created)
    return created


def _client(session: Any, service: str, url: str, region: str) -> Any:
    return session.create_client(
        service,
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


async def _retrying(deadline: float, attempt: Any) -> bool:
    """Run ``attempt`` until it answers, retrying while the service is not up yet."""
    while True:
        try:
            result: bool = await attempt()
            return result
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError,
                OSError) as exc:  # fmt: skip
            if time.monotonic() >= deadline:
                raise ResourcesUnavailable(f"service unreachable: {exc}") from exc
            await asyncio.sleep(RETRY_S)


async def _ensure_bucket(s3: Any, bucket: str) -> bool:
    try:
        await s3.head_bucket(Bucket=bucket)
        return False
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in MISSING_BUCKET:
            raise ResourcesUnavailable(f"bucket {bucket}: {exc}") from exc
    await s3.create_bucket(Bucket=bucket)
    return True


async def _ensure_table(dynamodb: Any, table: TableSpec) -> bool:
    try:
        await dynamodb.describe_table(TableName=table.name)
        return False
    except dynamodb.exceptions.ResourceNotFoundException:
        pass
    properties = {"BillingMode": "PAY_PER_REQUEST", **table.properties}
    await dynamodb.create_table(TableName=table.name, **properties)
    return True
