"""Command line: ``edgelambda serve`` and ``edgelambda routes``.

Logging is configured here, once, for the whole process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

import structlog
from aiohttp import web

from edgelambda.app import create_app
from edgelambda.config import Settings
from edgelambda.docker_backend import DockerBackend
from edgelambda.errors import ConfigError, EngineUnavailable
from edgelambda.routing import RoutingTable, load_routing

EXIT_STARTUP_FAILURE = 3  # bad configuration or no engine: nothing was served

log = structlog.get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        configure_logging(settings.log_format)
        table = load_routing(settings.routing_config_path)
    except ConfigError as exc:
        print(f"edgelambda: configuration error: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILURE
    except OSError as exc:
        print(f"edgelambda: cannot read the routing file: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILURE
    if args.command == "routes":
        print_routes(table)
        return 0
    try:
        asyncio.run(serve(settings, table))
    except (EngineUnavailable, ConfigError, OSError) as exc:
        log.error("start-up failed", error=str(exc))
        return EXIT_STARTUP_FAILURE
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgelambda", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the gateway (HTTP on EDGELAMBDA_PORT, default 8000)")
    commands.add_parser("routes", help="print the routing table read from ROUTING_CONFIG_PATH")
    return parser


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
    backend = await DockerBackend.connect()
    try:
        runner = web.AppRunner(
            create_app(settings, table, backend),
            access_log=None,
            shutdown_timeout=settings.shutdown_grace_s,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
            log.info("gateway listening", host=settings.host, port=settings.port)
            await _until_signalled()
            log.info("shutting down")
        finally:
            await runner.cleanup()
    finally:
        await backend.close()


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
