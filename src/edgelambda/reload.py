"""Hot reload: routing.yaml and the functions' code directories and layers are watched while
the gateway runs. What a batch of file changes means is decided by a pure function; the
watch loop is the thin shell that applies it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
import watchfiles

from edgelambda.errors import ConfigError, RoutingConfigError
from edgelambda.routing import FunctionSpec
from edgelambda.tasks import LoopRegistry, start_loop

log = structlog.get_logger(__name__)

_DEFAULT_FILTER = watchfiles.DefaultFilter()  # editors' swap files, caches, VCS directories


@dataclass(frozen=True)
class ChangeSet:
    """What a batch of file changes touched."""

    is_routing_changed: bool
    functions: frozenset[str]  # functions whose code directory or a layer changed


def classify(
    paths: Iterable[str], *, routing_path: Path, functions: Mapping[str, FunctionSpec]
) -> ChangeSet:
    """Map changed file paths to the routing file and to the functions whose code or layers
    they are."""
    routing = routing_path.absolute()
    is_routing_changed = False
    touched: set[str] = set()
    for raw in paths:
        path = Path(raw).absolute()
        if path == routing:
            is_routing_changed = True
            continue
        touched.update(
            name
            for name, spec in functions.items()
            if any(path.is_relative_to(source) for source in spec.source_paths)
        )
    return ChangeSet(is_routing_changed, frozenset(touched))


def is_relevant(path: str, *, routing_path: Path, functions: Mapping[str, FunctionSpec]) -> bool:
    """Whether a changed path is the routing file or inside a code directory or layer. The routing
    file's directory is watched whole, and may hold busy files (a data directory, logs)
    whose changes must not wake the gateway."""
    change = classify([path], routing_path=routing_path, functions=functions)
    return change.is_routing_changed or bool(change.functions)


def watched_paths(routing_path: Path, functions: Mapping[str, FunctionSpec]) -> list[Path]:
    """The routing file's directory, the routing file itself, and every existing code
    directory and layer (a .zip layer's directory). Editors replace files by renaming, which
    only a watch on the directory sees; a file bind-mounted into a container (the compose
    stack's routing.yaml) is written from outside, which only a watch on the file itself
    sees."""
    routing = routing_path.absolute()
    sources = {
        source.parent if source.is_file() else source  # a .zip layer: watch its directory
        for spec in functions.values()
        if spec.image is None
        for source in spec.source_paths
    }
    directories = sorted(path for path in {routing.parent} | sources if path.is_dir())
    return directories + ([routing] if routing.is_file() else [])


@dataclass(frozen=True)
class ReloadStatus:
    """How the routing file's last load went: accepted, or rejected with the error (and the
    file, line and key it names, when it is the routing file's own)."""

    at_s: float
    error: str | None = None  # the whole message, naming the file, line and key
    source: str | None = None
    line: int | None = None
    key: str | None = None
    problem: str | None = None  # what is wrong at that key

    @classmethod
    def accepted(cls, at_s: float) -> ReloadStatus:
        return cls(at_s)

    @classmethod
    def rejected(cls, at_s: float, error: ConfigError) -> ReloadStatus:
        if isinstance(error, RoutingConfigError):
            return cls(at_s, str(error), error.source, error.line, error.key, error.problem)
        return cls(at_s, str(error))

    def as_json(self) -> dict[str, object]:
        return {
            "status": "accepted" if self.error is None else "rejected",
            "at": self.at_s,
            "error": self.error,
            "file": self.source,
            "line": self.line,
            "key": self.key,
            "problem": self.problem,
        }


class Watcher:
    """Watches the files and calls ``on_change`` with each debounced batch of changes.

    The set of watched directories follows the routing table: after ``on_change`` returns,
    ``paths()`` is asked again and the watch restarts when it changed."""

    def __init__(
        self,
        *,
        paths: Callable[[], list[Path]],
        is_relevant: Callable[[str], bool],
        on_change: Callable[[set[str]], Awaitable[None]],
        debounce_ms: int,
    ) -> None:
        self._paths = paths
        self._is_relevant = is_relevant
        self._on_change = on_change
        self._debounce_ms = debounce_ms
        self._is_closing = False
        # Ends one round of watching; the watch thread polls it, so no cancellation needed.
        self._round_stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, loops: LoopRegistry | None = None) -> None:
        self._task = start_loop(self._run(), "reload watcher", loops)

    async def close(self) -> None:
        self._is_closing = True
        self._round_stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._is_closing:
            self._round_stop = asyncio.Event()
            paths = self._paths()
            async for changes in watchfiles.awatch(
                *paths,
                watch_filter=self._filter,
                debounce=self._debounce_ms,
                stop_event=self._round_stop,
            ):
                await self._handle({path for _, path in changes})
                if self._paths() != paths:
                    self._round_stop.set()  # watch the new set of directories

    def _filter(self, change: watchfiles.Change, path: str) -> bool:
        return _DEFAULT_FILTER(change, path) and self._is_relevant(path)

    async def _handle(self, changed: set[str]) -> None:
        try:
            await self._on_change(changed)
        except Exception:  # a failed reload must never stop the watching
            log.exception("reload failed")
