"""A SAM project served as it is by the compose stack (`make up`): its template.yaml is the
routing file. Its Api and HttpApi routes answer with the payload each speaks, its SimpleTable
exists, its schedule fires, and its layer's module imports."""

from __future__ import annotations

import asyncio
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest
from structlog.testing import capture_logs

from edgelambda.config import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY
from tests.compose_stack import compose_env, data_client, get_json, remove_stack, run_command
from tests.conftest import GatewayFactory

pytestmark = pytest.mark.docker

TEMPLATE = """\
AWSTemplateFormatVersion: 2010-09-09
Transform:
  - AWS::Serverless-2016-10-31
Parameters:
  Greeting: {Type: String, Default: hello}
Globals:
  Function:
    Runtime: python3.12
    Timeout: 30
    Environment:
      Variables:
        TABLE: !Ref Ticks
Resources:
  Ticks:
    Type: AWS::Serverless::SimpleTable
  GreetingLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/greeting
  Hello:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/hello
      Handler: app.handler
      Layers: [!Ref GreetingLayer]
      Environment:
        Variables:
          GREETING: !Sub "${Greeting} from ${AWS::StackName}"
      Events:
        Rest:
          Type: Api
          Properties: {Path: /hello, Method: get}
        Http:
          Type: HttpApi
          Properties: {Path: "/v2/hello/{name}", Method: GET}
  Tick:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/tick
      Handler: app.handler
      Events:
        EveryMinute:
          Type: Schedule
          Properties: {Schedule: rate(1 minute)}
  Queue:
    Type: AWS::SQS::Queue
"""
HELLO = """\
import os

import greeting  # from the layer, under /opt/python


def handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": __import__("json").dumps({
            "version": event.get("version", "1.0"),
            "route": event.get("routeKey") or event.get("resource"),
            "says": greeting.say(os.environ["GREETING"]),
            "table": os.environ["TABLE"],
        }),
    }
"""
GREETING = """\
def say(text):
    return f"{text}!"
"""
TICK = """\
import os
import time

import boto3


def handler(event, context):
    boto3.client("dynamodb").put_item(
        TableName=os.environ["TABLE"],
        Item={"id": {"S": event["id"]}, "source": {"S": event["source"]}},
    )
    return {"at": time.time()}
"""


def sam_project(root: Path) -> Path:
    project = root / "project"
    files = {
        "template.yaml": TEMPLATE,
        "src/hello/app.py": HELLO,
        "layers/greeting/python/greeting.py": GREETING,
        "src/tick/app.py": TICK,
    }
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(text))
    return project


@pytest.fixture
async def sam_env(tmp_path: Path, docker: aiodocker.Docker) -> AsyncIterator[dict[str, str]]:
    """`make up` serving a SAM project: mounted as the functions, its template the routing
    file (a routing.yaml must still exist for the stack's routing mount)."""
    project = sam_project(tmp_path)
    (tmp_path / "routing.yaml").write_text("functions: {}\n")
    name = f"elsam{uuid.uuid4().hex[:8]}"
    env = compose_env(name, tmp_path / "routing.yaml", project) | {
        "EDGELAMBDA_ROUTING_FILE": "functions/template.yaml",
        "EDGELAMBDA_NETWORK": f"{name}_net",
        "EDGELAMBDA_STACK": name,
    }
    try:
        yield env
    finally:
        await remove_stack(env, docker)


async def test_a_sam_project_is_served_from_its_template(sam_env: dict[str, str]) -> None:
    await run_command("make", "up", env=sam_env)
    gateway = f"http://127.0.0.1:{sam_env['EDGELAMBDA_HTTP_PORT']}"

    rest = await get_json(f"{gateway}/hello", within_s=60)
    assert rest == {
        "version": "1.0",
        "route": "/hello",
        "says": "hello from sam-app!",  # the layer's module, the parameter's default
        "table": "sam-app-Ticks",
    }
    http = await get_json(f"{gateway}/v2/hello/ada", within_s=30)
    assert (http["version"], http["route"]) == ("2.0", "GET /v2/hello/{name}")

    dynamodb = data_client("dynamodb", sam_env, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)
    assert "sam-app-Ticks" in (await asyncio.to_thread(dynamodb.list_tables))["TableNames"]
    # rate(1 minute) fires on the minute: within 60 s, plus the Tick function's cold start.
    deadline = time.monotonic() + 100
    while not (
        items := (await asyncio.to_thread(dynamodb.scan, TableName="sam-app-Ticks"))["Items"]
    ):
        assert time.monotonic() < deadline, "the schedule never fired"
        await asyncio.sleep(2)
    assert items[0]["source"] == {"S": "aws.events"}


INLINE_TEMPLATE = """\
AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Resources:
  Hello:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      InlineCode: |
        import json
        def handler(event, context):
            return {"statusCode": 200, "body": json.dumps(
                {"routeKey": event["routeKey"], "rawPath": event["rawPath"]})}
      Events:
        Everything:
          Type: HttpApi
"""


async def test_inline_code_on_the_default_route_runs_through_the_gateway(
    gateway: GatewayFactory,
) -> None:
    client = await gateway(INLINE_TEMPLATE)

    for path in ("/", "/any/path"):
        response = await client.post(path, data=b"{}")
        assert response.status == 200, await response.text()
        assert await response.json() == {"routeKey": "$default", "rawPath": path}


async def test_an_edited_template_is_reloaded_and_a_broken_edit_rejected(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    client = await gateway(INLINE_TEMPLATE)
    assert (await client.get("/before")).status == 200
    template = tmp_path / "routing.yaml"  # where the gateway fixture wrote it

    # A REST route beside the catch-all, to another function: served once reloaded.
    added = INLINE_TEMPLATE + textwrap.indent(
        textwrap.dedent(
            """\
            Plain:
              Type: AWS::Serverless::Function
              Properties:
                Runtime: python3.12
                Handler: index.handler
                InlineCode: |
                  def handler(event, context):
                      return {"statusCode": 200, "body": event["resource"]}
                Events:
                  Get: {Type: Api, Properties: {Path: /plain, Method: GET}}
            """
        ),
        "  ",
    )
    template.write_text(added)
    deadline = time.monotonic() + 15
    while await (response := await client.get("/plain")).text() != "/plain":
        assert time.monotonic() < deadline, f"never reloaded: {response.status}"
        await asyncio.sleep(0.2)

    with capture_logs() as logs:
        template.write_text(added.replace("Handler: index.handler", "Handler: [broken]", 1))
        deadline = time.monotonic() + 15
        while not any(entry["event"].startswith("routing reload rejected") for entry in logs):
            assert time.monotonic() < deadline, "the broken edit was never read"
            await asyncio.sleep(0.1)
    assert await (await client.get("/plain")).text() == "/plain"  # the old table serves on
