"""The command line's start-up failures: a bad setting or routing file stops `serve` with
exit code 3 and a message naming the problem, before any engine is touched."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer


def _serve(tmp_path: Path, routing: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "routing.yaml"
    path.write_text(routing)
    return subprocess.run(
        [sys.executable, "-m", "edgelambda", "serve"],
        env={**os.environ, "ROUTING_CONFIG_PATH": str(path), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_broken_routing_file_stops_start_up_naming_file_line_and_key(tmp_path: Path) -> None:
    result = _serve(tmp_path, "functions:\n  hello:\n    handler: app.handler\n    timeout: -1\n")

    assert result.returncode == 3
    assert f"{tmp_path / 'routing.yaml'}:4: functions.hello.timeout:" in result.stderr


def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    result = _serve(tmp_path, "functions: {}\n", IDLE_TIMEOUT_MINUTES="soon")

    assert result.returncode == 3
    assert "IDLE_TIMEOUT_MINUTES='soon'" in result.stderr


def test_routes_prints_the_table(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "functions:\n  hello:\n    handler: app.handler\n"
        'routes:\n  - {path: "/hello/{name}", method: GET, function: hello, auth: none}\n'
    )

    result = subprocess.run(
        [sys.executable, "-m", "edgelambda", "routes"],
        env={**os.environ, "ROUTING_CONFIG_PATH": str(path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert "GET" in result.stdout
    assert "/hello/{name}" in result.stdout
    assert "-> hello (auth none)" in result.stdout


async def test_logs_reads_back_through_logsql(tmp_path: Path) -> None:
    """`edgelambda logs` against a stand-in of VictoriaLogs' /select/logsql/query."""
    queries: list[str] = []

    async def query(request: web.Request) -> web.Response:
        queries.append(request.query["query"])
        lines = [
            {"_time": "2026-11-28T19:00:00Z", "_msg": "START RequestId: r1 Version: $LATEST"},
            {"_time": "2026-11-28T19:00:01Z", "_msg": "hello from the function"},
        ]
        return web.Response(text="".join(json.dumps(line) + "\n" for line in lines))

    app = web.Application()
    app.router.add_get("/select/logsql/query", query)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgelambda", "logs", "hello", "--since", "5m",
            "--request-id", "r1",
            env={**os.environ, "EDGELAMBDA_VICTORIALOGS_URL": str(server.make_url(""))},
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        await server.close()

    assert process.returncode == 0
    assert stdout.decode().splitlines() == [
        "2026-11-28T19:00:00Z START RequestId: r1 Version: $LATEST",
        "2026-11-28T19:00:01Z hello from the function",
    ]
    assert queries == ['_time:5m function:="hello" aws_request_id:="r1" | sort by (_time)']


SAM_TEMPLATE = """\
AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String}
Resources:
  Hello:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      Runtime: python3.12
      CodeUri: src/hello
      Environment:
        Variables: {STAGE: !Ref Stage}
      Events:
        Get:
          Type: Api
          Properties: {Path: /hello, Method: get}
  Jobs:
    Type: AWS::SQS::Queue
"""


def _edgelambda(
    *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgelambda", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _sam_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "src" / "hello").mkdir(parents=True)
    (project / "template.yaml").write_text(SAM_TEMPLATE)
    return project


def test_import_sam_writes_a_routing_file_that_serve_reads(tmp_path: Path) -> None:
    project = _sam_project(tmp_path)
    output = tmp_path / "out" / "routing.yaml"
    output.parent.mkdir()

    result = _edgelambda(
        "import-sam", str(project / "template.yaml"), "-o", str(output),
        "--parameter-overrides", "Stage=prod",
        EDGELAMBDA_CODE_ROOT=str(tmp_path),  # the code lies beside out/, not below it
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    text = output.read_text()
    assert text.startswith("# Converted from the SAM template template.yaml")
    assert "code: ../project/src/hello" in text  # relative to where routing.yaml is
    assert "STAGE: prod" in text
    assert "warning: Resources.Jobs: AWS::SQS::Queue is not served locally" in result.stderr
    routes = _edgelambda(
        "routes", ROUTING_CONFIG_PATH=str(output), EDGELAMBDA_CODE_ROOT=str(tmp_path)
    )
    assert routes.returncode == 0, routes.stderr
    assert "/hello" in routes.stdout
    assert "-> Hello (auth none)" in routes.stdout


def test_import_sam_prints_to_stdout_and_warns_of_a_missing_parameter(tmp_path: Path) -> None:
    project = _sam_project(tmp_path)

    result = _edgelambda("import-sam", "template.yaml", cwd=project)

    assert result.returncode == 0, result.stderr
    assert "code: src/hello" in result.stdout
    assert "STAGE" not in result.stdout.split("functions:")[1]  # left unset...
    assert "warning: Parameters.Stage: no value" in result.stderr  # ...and said so


def test_import_sam_refuses_a_broken_template(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text("Resources:\n  A: [\n")

    result = _edgelambda("import-sam", str(tmp_path / "template.yaml"))

    assert result.returncode == 1
    assert f"{tmp_path / 'template.yaml'}:3: (syntax)" in result.stderr


def test_a_sam_template_is_served_as_the_routing_file(tmp_path: Path) -> None:
    project = _sam_project(tmp_path)

    result = _edgelambda(
        "routes",
        ROUTING_CONFIG_PATH=str(project / "template.yaml"),
        EDGELAMBDA_SAM_PARAMETERS="Stage=prod",
        EDGELAMBDA_LOG_FORMAT="json",
    )

    assert result.returncode == 0, result.stderr
    assert "-> Hello (auth none)" in result.stdout
    # The log (JSON lines on stdout) says what the template could not carry over.
    notes = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert any("AWS::SQS::Queue" in note.get("note", "") for note in notes)
