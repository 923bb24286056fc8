"""The data services' health as the gateway reaches them (S3, DynamoDB, VictoriaLogs), for
the console's box page: each answers HTTP within :data:`TIMEOUT_S` or is down. One round of
checks serves every console asking within :data:`TTL_S`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

TIMEOUT_S = 2.0
TTL_S = 5.0  # consoles opened together share one round of checks


class ServiceStatus(StrEnum):
    UP = "up"
    DOWN = "down"
    NOT_CONFIGURED = "not configured"


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    url: str | None
    status: ServiceStatus
    detail: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "url": self.url,
            "status": self.status.value,
            "detail": self.detail,
        }


class ServiceChecks:
    """Checks ``services`` (name -> the URL asked; None: not configured) on demand."""

    def __init__(self, services: Mapping[str, str | None]) -> None:
        self._services = dict(services)
        self._session: aiohttp.ClientSession | None = None
        self._last: tuple[float, list[ServiceHealth]] | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def results(self) -> list[ServiceHealth]:
        async with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] > TTL_S:
                checks = [self._check(name, url) for name, url in self._services.items()]
                self._last = (now, list(await asyncio.gather(*checks)))
            return self._last[1]

    async def _check(self, name: str, url: str | None) -> ServiceHealth:
        if url is None:
            return ServiceHealth(name, None, ServiceStatus.NOT_CONFIGURED)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        started = time.monotonic()
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                # Any HTTP answer means it serves (S3 and DynamoDB refuse an unsigned GET).
                took_ms = (time.monotonic() - started) * 1000
                detail = f"HTTP {response.status} in {took_ms:.0f} ms"
                return ServiceHealth(name, url, ServiceStatus.UP, detail)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return ServiceHealth(name, url, ServiceStatus.DOWN, str(exc) or type(exc).__name__)
