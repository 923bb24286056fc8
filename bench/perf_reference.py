"""The performance reference the gateway is judged against, called where it lies (never
copied into the repository): ``minimal_gateway.py``, the thinnest HTTP -> Runtime API ->
container path, and ``bench.py``, the load client run against both sides with the same flags.

It lies at ``<repository>/../shared/perf`` unless ``EDGELAMBDA_PERF_DIR`` names another
directory.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
from harness import BASE_IMAGE, delete_network, progress, stop_process

REPO = Path(__file__).resolve().parent.parent
PERF_DIR_SETTING = "EDGELAMBDA_PERF_DIR"
READY_TIMEOUT_S = 300.0  # its containers start one after the other
CLIENT_TIMEOUT_S = 300.0
# What minimal_gateway.py calls its network and labels its containers with.
THINNEST_NETWORK = "el-limit"
THINNEST_LABEL = "edgelambda.limit"


@dataclass(frozen=True)
class ClientFlags:
    """bench.py's flags, the same for every side measured."""

    phases: str
    load_duration_s: float
    concurrency: tuple[int, ...]

    def shared(self) -> list[str]:
        return [
            "--phases", self.phases,
            "--duration", str(self.load_duration_s),
            "--concurrency", ",".join(map(str, self.concurrency)),
        ]  # fmt: skip

    def text(self) -> str:
        return " ".join(self.shared())

    def argv(self, label: str, auth: str | None) -> list[str]:
        return ["--label", label, *self.shared(), *(["--auth", auth] if auth else [])]


@dataclass(frozen=True)
class PerfReference:
    directory: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PerfReference:
        directory = Path(env.get(PERF_DIR_SETTING) or REPO.parent / "shared" / "perf")
        missing = [
            name
            for name in ("minimal_gateway.py", "bench.py", "fn/app.py")
            if not (directory / name).is_file()
        ]
        if missing:
            raise SystemExit(
                f"make bench: {directory} lacks {', '.join(missing)}; "
                f"set {PERF_DIR_SETTING} to the performance reference's directory"
            )
        return cls(directory.resolve())

    def copy_function(self, destination: Path) -> None:
        """The reference's function code, copied into ``destination``: the gateway takes a
        function's ``code:`` only from inside its routing file's directory. Copied file by
        file, without the reference's read-only modes, so the copy can be removed."""
        destination.mkdir(parents=True)
        for source in (self.directory / "fn").iterdir():
            if source.is_file():
                shutil.copyfile(source, destination / source.name)

    async def run_client(
        self, url: str, label: str, flags: ClientFlags, auth: str | None = None
    ) -> dict[str, Any]:
        """bench.py against ``url``; its JSON report (its progress goes to stderr)."""
        progress(f"bench.py {label}: {flags.phases} against {url}")
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(self.directory / "bench.py"), url, *flags.argv(label, auth),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            stdout, _ = await asyncio.wait_for(process.communicate(), timeout=CLIENT_TIMEOUT_S)
        finally:
            await stop_process(process, timeout_s=5)
        if process.returncode != 0:
            raise RuntimeError(f"bench.py {label} exited with {process.returncode}")
        result: dict[str, Any] = json.loads(stdout)
        return result

    @asynccontextmanager
    async def thinnest(self, port: int, per_function: int) -> AsyncIterator[str]:
        """``minimal_gateway.py`` on ``port`` with ``per_function`` containers per function,
        ready; its URL. Stopped with SIGTERM on exit, which removes its containers; the
        network it made is removed too, when it made it."""
        had_network = await _network_exists(THINNEST_NETWORK)
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(self.directory / "minimal_gateway.py"),
            "--port", str(port), "--per-function", str(per_function), "--image", BASE_IMAGE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await asyncio.wait_for(_ready_line(process), timeout=READY_TIMEOUT_S)
            yield f"http://127.0.0.1:{port}"
        finally:
            await stop_process(process)
            await _remove_thinnest_leftovers(remove_network=not had_network)


async def _ready_line(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    while line := await process.stdout.readline():
        if line.startswith(b"ready"):
            progress(f"minimal_gateway.py: {line.decode().strip()}")
            return
    raise RuntimeError(f"minimal_gateway.py exited before it was ready ({await process.wait()})")


async def _network_exists(name: str) -> bool:
    async with aiodocker.Docker() as docker:
        return any(n["Name"] == name for n in await docker.networks.list(filters={"name": name}))


async def _remove_thinnest_leftovers(*, remove_network: bool) -> None:
    """What minimal_gateway.py leaves behind: its network, and its containers when it had to
    be killed (it removes every container with its label when it starts, so any left are this
    run's)."""
    async with aiodocker.Docker() as docker:
        filters = json.dumps({"label": [THINNEST_LABEL]})
        for container in await docker.containers.list(all=True, filters=filters):
            await container.delete(force=True)
        if remove_network:
            for net in await docker.networks.list(filters={"name": THINNEST_NETWORK}):
                if net["Name"] == THINNEST_NETWORK:
                    await delete_network(docker, net["Id"])
