"""Command line: ``edgelambda serve | check | routes | import-sam | invoke | logs | events dlq``.

Logging is configured here, once, for the whole process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from edgelambda.cfn_yaml import load_template
from edgelambda.config import Settings
from edgelambda.docker_backend import BackendLimits, DockerBackend
from edgelambda.errors import ConfigError, EdgeLambdaError
from edgelambda.event_queue import QUEUE_FILE, EventQueue
from edgelambda.gateway import create_app
from edgelambda.invoke_api import INVOKE_PATH
from edgelambda.listener import ConnectionLimits, GuardedSite
from edgelambda.logs import json_object, logsql_query
from edgelambda.routing import RoutingTable
from edgelambda.routing_file import load_configured_routing, parse_routing
from edgelambda.sam_import import convert, parse_overrides, render
from edgelambda.swarm_backend import SwarmBackend

EXIT_STARTUP_FAILURE = 3  # bad configuration or no engine: nothing was served
INVOKE_TIMEOUT_S = 960  # above Lambda's 15 minute maximum
ALL = "all"
DESCRIPTION = (
    "A self-hosted runtime for AWS Lambda functions: serve the functions and routes of"
    " routing.yaml, and work with a running gateway. Settings come from the environment"
    " (see the README's settings table)."
)

log = structlog.get_logger(__name__)


def run_loop(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run the gateway on uvloop (libuv: cheaper socket writes and wake-ups than asyncio's
    selector loop) when the setting asks for it, else on asyncio's own loop."""
    if event_loop == "uvloop":
        import uvloop  # an optional dependency; the setting is checked for it at start-up

        uvloop.run(main)
    else:
        asyncio.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"edgelambda: configuration error: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILURE
    configure_logging(settings.log_format)
    if args.command == "invoke":
        return asyncio.run(invoke(settings, args))
    if args.command == "events":
        return asyncio.run(dead_letters(settings, replay=args.replay))
    if args.command == "logs":
        return asyncio.run(show_logs(settings, args))
    if args.command == "import-sam":
        return import_sam(settings, args)
    return _with_routing(settings, args.command)


def _with_routing(settings: Settings, command: str) -> int:
    """The commands that read the routing file: routes, check, serve."""
    try:
        table = load_configured_routing(settings)
    except ConfigError as exc:
        print(f"edgelambda: configuration error: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILURE
    for note in table.notes:  # what a SAM template served directly could not carry over
        log.warning("not carried over from the SAM template", note=note)
    if command == "routes":
        print_routes(table)
        return 0
    if command == "check":
        mode = "production" if settings.is_production else "development"
        print(f"edgelambda: settings ({mode} mode) and {settings.routing_config_path} are valid")
        return 0
    try:
        run_loop(serve(settings, table), settings.event_loop)
    except (EdgeLambdaError, OSError) as exc:  # no engine, bad config, services never up
        log.error("start-up failed", error=str(exc))
        return EXIT_STARTUP_FAILURE
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgelambda", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the gateway (HTTP on EDGELAMBDA_PORT, default 8000)")
    commands.add_parser("routes", help="print the routing table read from ROUTING_CONFIG_PATH")
    commands.add_parser(
        "check", help="check the settings and the routing file as `serve` would, then exit"
    )
    sam_cmd = commands.add_parser(
        "import-sam", help="write the routing.yaml equivalent to an AWS SAM template"
    )
    sam_cmd.add_argument("template", type=Path, help="the SAM template, e.g. template.yaml")
    sam_cmd.add_argument(
        "-o", "--output", type=Path, help="routing file to write (default: stdout)"
    )
    sam_cmd.add_argument("--parameter-overrides", nargs="+", default=[], metavar="KEY=VALUE",
                         help="template parameters, as `sam deploy` takes them")  # fmt: skip
    sam_cmd.add_argument("--stack-name", help="AWS::StackName (default EDGELAMBDA_SAM_STACK_NAME)")
    invoke_cmd = commands.add_parser("invoke", help="invoke a function on a running gateway")
    invoke_cmd.add_argument("function")
    invoke_cmd.add_argument("--payload", default="{}", help="JSON, or @file to read it from")
    invoke_cmd.add_argument("--async", dest="is_async", action="store_true", help="Event call")
    invoke_cmd.add_argument("--log", action="store_true", help="print the log tail to stderr")
    logs_cmd = commands.add_parser("logs", help="a function's log, read back from VictoriaLogs")
    logs_cmd.add_argument("function")
    logs_cmd.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs_cmd.add_argument("--since", default="10m", help="how far back, e.g. 30s, 10m, 2h, 1d")
    logs_cmd.add_argument("--request-id", help="only this invocation's lines")
    logs_cmd.add_argument(
        "--json", action="store_true", help="whole records (function, request and trace ids)"
    )
    events_cmd = commands.add_parser(
        "events", help="asynchronous (Event) invocations: the dead-letter store"
    )
    events_sub = events_cmd.add_subparsers(dest="events_command", required=True)
    dlq = events_sub.add_parser("dlq", help="list dead-lettered events (or replay them)")
    dlq.add_argument("--replay", nargs="?", const=ALL, default=None, metavar="ID",
                     help="queue one dead letter (or all) again")  # fmt: skip
    return parser


def import_sam(settings: Settings, args: argparse.Namespace) -> int:
    """Convert a SAM template into routing.yaml (paths relative to where it is written),
    check it as `serve` would read it, and write it; warnings go to stderr."""
    template_path: Path = args.template
    output: Path | None = args.output
    base_dir = (output.absolute().parent if output else Path.cwd()).resolve()
    try:
        options = replace(
            settings.sam_options(),
            parameter_overrides={
                **settings.sam_parameters,
                **parse_overrides(args.parameter_overrides),
            },
            stack=args.stack_name or settings.sam_stack_name,
        )
        template = load_template(_read_text(template_path), str(template_path))
        conversion = convert(
            template,
            source=str(template_path),
            template_dir=template_path.absolute().parent.resolve(),
            base_dir=base_dir,
            options=options,
        )
        text = render(conversion, source=template_path.name)
        name = str(output) if output else "routing.yaml"
        parse_routing(text, source=name, base_dir=base_dir, code_root=settings.code_root)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"edgelambda: import-sam: {exc}", file=sys.stderr)
        return 1
    for warning in conversion.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    return 0


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


async def invoke(settings: Settings, args: argparse.Namespace) -> int:
    """POST to the gateway's Invoke API, as `aws lambda invoke` would."""
    payload = _payload(args.payload)
    headers = {
        "x-api-key": settings.api_key,
        "X-Amz-Invocation-Type": "Event" if args.is_async else "RequestResponse",
        "X-Amz-Log-Type": "Tail" if args.log else "None",
    }
    url = settings.gateway_url + INVOKE_PATH.format(function=args.function)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=INVOKE_TIMEOUT_S)) as session,
            session.post(url, data=payload, headers=headers) as response,
        ):
            body = await response.read()
            _print_invoke_result(response.status, response.headers, body)
            failed = response.status >= 400 or "X-Amz-Function-Error" in response.headers
    except aiohttp.ClientError as exc:
        print(
            f"edgelambda: cannot reach the gateway at {settings.gateway_url}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 1 if failed else 0


def _payload(raw: str) -> bytes:
    return Path(raw[1:]).read_bytes() if raw.startswith("@") else raw.encode()


def _print_invoke_result(status: int, headers: Mapping[str, str], body: bytes) -> None:
    if "X-Amz-Log-Result" in headers:
        sys.stderr.write(base64.b64decode(headers["X-Amz-Log-Result"]).decode("utf-8", "replace"))
    if status == HTTPStatus.ACCEPTED:
        print(json.dumps({"StatusCode": status}))
        return
    print(body.decode("utf-8", "replace"))


async def show_logs(settings: Settings, args: argparse.Namespace) -> int:
    """Query VictoriaLogs' LogsQL API (``/select/logsql/query``, or ``/tail`` to follow)."""
    if not settings.victorialogs_url:
        print("edgelambda: EDGELAMBDA_VICTORIALOGS_URL is not set", file=sys.stderr)
        return 1
    query = logsql_query(
        args.function, since=args.since, request_id=args.request_id, is_follow=args.follow
    )
    endpoint = "tail" if args.follow else "query"
    url = f"{settings.victorialogs_url.rstrip('/')}/select/logsql/{endpoint}"
    timeout = aiohttp.ClientTimeout(total=None if args.follow else 60)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, params={"query": query}) as response,
        ):
            response.raise_for_status()
            async for line in response.content:
                _print_log_line(line, is_json=args.json)
    except aiohttp.ClientError as exc:
        print(f"edgelambda: cannot read logs from {url}: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_log_line(raw: bytes, *, is_json: bool) -> None:
    record = json_object(raw)
    if record is None:
        return
    text = json.dumps(record) if is_json else f"{record.get('_time', '')} {record.get('_msg', '')}"
    print(text, flush=True)


async def dead_letters(settings: Settings, *, replay: str | None) -> int:
    """List the dead-letter store, or move dead letters back to the queue."""
    queue = await EventQueue.open(settings.data_dir / QUEUE_FILE)
    try:
        if replay is not None:
            moved = await queue.replay(None if replay == ALL else replay, now_s=time.time())
            print(f"replayed {moved} event(s); a running gateway picks them up")
            return 0 if moved else 1
        for dead in await queue.dead_letters():
            print(json.dumps({
                "id": dead.id, "function": dead.function, "attempts": dead.attempts,
                "reason": str(dead.reason), "last_error": dead.last_error,
                "payload": dead.payload.decode("utf-8", "replace"),
            }))  # fmt: skip
    finally:
        await queue.close()
    return 0


def configure_logging(log_format: str) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


def print_routes(table: RoutingTable) -> None:
    for route in table.routes:
        methods = ",".join(sorted(route.methods))
        print(f"{methods:<12} {route.path:<40} -> {route.function} (auth {route.auth.value})")


async def serve(settings: Settings, table: RoutingTable) -> None:
    """Serve until SIGTERM or SIGINT, then shut down in order: stop accepting, drain
    in-flight work, remove every container, close the engine client."""
    backend = await connect_backend(settings)
    try:
        runner = web.AppRunner(
            create_app(settings, table, backend),
            access_log=None,
            shutdown_timeout=settings.shutdown_grace_s,
        )
        await runner.setup()
        try:
            limits = ConnectionLimits.of(settings)
            await GuardedSite(runner, limits, host=settings.host, port=settings.port).start()
            log.info("gateway listening", host=settings.host, port=settings.port)
            _warn_if_open(settings)
            await _until_signalled()
            log.info("shutting down")
        finally:
            await runner.cleanup()
    finally:
        await backend.close()


async def connect_backend(settings: Settings) -> DockerBackend | SwarmBackend:
    """The backend EDGELAMBDA_BACKEND names, connected to the engine aiodocker finds."""
    limits = BackendLimits.from_settings(settings)
    if settings.backend == "swarm":
        return await SwarmBackend.connect(limits, registry=settings.registry)
    return await DockerBackend.connect(limits)


def _warn_if_open(settings: Settings) -> None:
    """Development mode says once that the box is open (EDGELAMBDA_PRODUCTION=true closes it)."""
    if not settings.is_production:
        log.warning(
            "development mode: the box is open; any SigV4 signature passes the Invoke API and"
            " development defaults are accepted (EDGELAMBDA_PRODUCTION=true refuses them)",
            defaults_in_use=settings.default_secrets(),
        )


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
