"""A disk that fills up on cue, for the event store's fault-injection tests.

:meth:`Disk.connection_class` is a ``sqlite3.Connection`` subclass (what
``sqlite3.connect(factory=...)`` builds) whose statements (each ``execute``, ``commit`` and
``rollback``) are counted; from the ``n``-th one on, ``count`` of them (or all, until
:meth:`Disk.room`) fail with SQLite's own disk-full error. A failure either comes before the
statement runs (the write did not happen) or after it (``lost_reply``: the write happened, its
success was never reported, as when a commit's fsync fails after its frames reached the WAL).
Deterministic: the same script fails at the same statement on every run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

DISK_FULL = "database or disk is full"


class Disk:
    def __init__(self) -> None:
        self.statements = 0  # counted since the last fill_at
        self.failures = 0
        self._fail_from: int | None = None
        self._fail_count: int | None = None
        self._is_lost_reply = False

    def fill_at(self, n: int, *, count: int | None = None, lost_reply: bool = False) -> None:
        """Fail ``count`` statements (None: every one until :meth:`room`) from the ``n``-th
        one after this call."""
        self.statements, self.failures = 0, 0
        self._fail_from, self._fail_count, self._is_lost_reply = n, count, lost_reply

    def fill_now(self) -> None:
        """Fail every statement from the next one until :meth:`room`."""
        self.fill_at(1)

    def room(self) -> None:
        self._fail_from = None

    @property
    def is_full(self) -> bool:
        if self._fail_from is None or self.statements + 1 < self._fail_from:
            return False
        return self._fail_count is None or self.failures < self._fail_count

    def _run(self, statement: Callable[[], T]) -> T:
        is_failing = self.is_full
        self.statements += 1
        if not is_failing:
            return statement()
        self.failures += 1
        if self._is_lost_reply:
            statement()
        error = sqlite3.OperationalError(DISK_FULL)
        error.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
        error.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
        raise error

    def connection_class(self) -> type[sqlite3.Connection]:
        disk = self

        class FillingConnection(sqlite3.Connection):
            def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
                return disk._run(lambda: super(FillingConnection, self).execute(sql, parameters))

            def commit(self) -> None:
                disk._run(super().commit)

            def rollback(self) -> None:
                disk._run(super().rollback)

        return FillingConnection
