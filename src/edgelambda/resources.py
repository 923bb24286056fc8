"""Create the S3 buckets and DynamoDB tables routing.yaml declares, when missing, with
aiobotocore. Services may still be starting (refusing connections, or answering 503 as
RustFS does until its storage and IAM are ready), so each call retries, bounded; nothing
that exists is ever touched or deleted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiobotocore.session
import botocore.config
import botocore.exceptions
import structlog

from edgelambda.errors import ResourcesUnavailable
from edgelambda.routing import Resources, TableSpec

log = structlog.get_logger(__name__)

RETRY_S = 1.0
MISSING_BUCKET = {"404", "NoSuchBucket", "NotFound"}


@dataclass(frozen=True)
class Endpoints:
    s3_url: str | None
    dynamodb_url: str | None
    region: str
    credentials: Mapping[str, str]  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY


async def ensure_resources(
    resources: Resources, endpoints: Endpoints, *, wait_s: float
) -> list[str]:
    """Create what is missing; return what was created (``s3://b``, ``dynamodb:t``)."""
    deadline = time.monotonic() + wait_s
    created: list[str] = []
    session = aiobotocore.session.get_session()
    if resources.buckets and endpoints.s3_url:
        async with _client(session, "s3", endpoints.s3_url, endpoints) as s3:
            for bucket in resources.buckets:
                if await _retrying(deadline, lambda b=bucket: _ensure_bucket(s3, b)):
                    created.append(f"s3://{bucket}")
    if resources.tables and endpoints.dynamodb_url:
        async with _client(session, "dynamodb", endpoints.dynamodb_url, endpoints) as ddb:
            for table in resources.tables:
                if await _retrying(deadline, lambda t=table: _ensure_table(ddb, t)):
                    created.append(f"dynamodb:{table.name}")
    if created:
        log.info("resources created", created=created)
    return created


def _client(session: Any, service: str, url: str, endpoints: Endpoints) -> Any:
    return session.create_client(
        service,
        endpoint_url=url,
        region_name=endpoints.region,
        aws_access_key_id=endpoints.credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=endpoints.credentials["AWS_SECRET_ACCESS_KEY"],
        # One attempt per call: _retrying is the one retry loop, bounded by its deadline.
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 1}),
    )


async def _retrying(deadline: float, attempt: Any) -> bool:
    """Run ``attempt`` until it answers, retrying while the service is not up yet."""
    while True:
        try:
            result: bool = await attempt()
            return result
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError,
                OSError) as exc:  # fmt: skip
            error: Exception = exc
        except botocore.exceptions.ClientError as exc:
            if not is_not_ready(exc):
                raise
            error = exc
        if time.monotonic() >= deadline:
            raise ResourcesUnavailable(f"service unreachable or not ready: {error}") from error
        await asyncio.sleep(RETRY_S)


NOT_READY_STATUSES = {502, 503, 504}


def is_not_ready(exc: botocore.exceptions.ClientError) -> bool:
    """The service is up but not ready (RustFS answers 503 until its storage and IAM are
    initialised); other errors, a 500 included (RustFS's answer to a session token), are
    final."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status in NOT_READY_STATUSES


async def _ensure_bucket(s3: Any, bucket: str) -> bool:
    try:
        await s3.head_bucket(Bucket=bucket)
        return False
    except botocore.exceptions.ClientError as exc:
        if is_not_ready(exc):
            raise  # _retrying asks again
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
    await dynamodb.create_table(TableName=table.name, **create_table_properties(table))
    return True


def create_table_properties(table: TableSpec) -> dict[str, Any]:
    """The declared properties; on-demand billing when the table names no capacity mode,
    since DynamoDB and Alternator refuse ``BillingMode: PAY_PER_REQUEST`` beside a
    ``ProvisionedThroughput`` (ValidationException)."""
    properties = dict(table.properties)
    if "BillingMode" not in properties and "ProvisionedThroughput" not in properties:
        properties["BillingMode"] = "PAY_PER_REQUEST"
    return properties
