"""Stand in for RustFS (S3) or ScyllaDB Alternator (DynamoDB) with moto's server, taking the
real image's configuration and behaving like it wherever edgelambda's tests depend on it.

    python3 moto_entry.py rustfs [VOLUME ...]        # configured by RUSTFS_* variables
    python3 moto_entry.py scylladb [SCYLLA FLAG ...]  # the scylla image's command line

``rustfs`` (rustfs/rustfs, ``rustfs/src/config/cli.rs``): listens on ``RUSTFS_ADDRESS``
(``:9000``), accepts only the root access key ``RUSTFS_ACCESS_KEY`` (signatures themselves
are not checked), serves ``/health`` (liveness) and ``/health/ready`` (503 until ready, as
``rustfs/src/server/http.rs`` does while storage and IAM start; S3 calls are refused with 503
meanwhile), and refuses a request that carries a session token (``X-Amz-Security-Token``)
with the static root keys: 500 InternalError "invalid token", as ``check_claims_from_token``
in ``rustfs/src/auth.rs`` answers. Volumes are ignored: state lives in memory.

``scylladb`` (scylladb/scylladb ``dist/docker/``, 6.2): binds Alternator to
``--alternator-address``, or when it is absent to ``--listen-address``, or to the
container's own address (``hostname -i``), as ``scyllasetup.py`` does, on
``--alternator-port``; refuses to start without ``--alternator-write-isolation`` as scylla
does once Alternator is enabled; answers ``GET /`` with 200 ``healthy: HOST`` like
``alternator/server.cc``. Other scylla flags are accepted and ignored.

PID 1 in a container ignores SIGTERM unless it installs a handler: this one exits at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Any
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# A stand-in has nothing to initialise; it stays "not ready" this long so that whoever waits
# on readiness really waits.
RUSTFS_READY_AFTER_S = 2.0
RUSTFS_DEFAULT_KEY = "rustfsadmin"  # rustfs/src/config/cli.rs
UNKNOWN_KEY = "The Access Key Id you provided does not exist in our records."
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def _answer(
    start_response: Callable[..., Any], status: str, body: str, content_type: str
) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def _s3_error(
    start_response: Callable[..., Any], status: str, code: str, message: str
) -> list[bytes]:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return _answer(start_response, status, xml, "application/xml")


def _query(environ: Mapping[str, Any]) -> dict[str, list[str]]:
    return parse_qs(environ.get("QUERY_STRING", ""))


def _access_key(environ: Mapping[str, Any]) -> str | None:
    """The access key of a header- or query-signed request (None: anonymous)."""
    match = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match:
        return match.group(1)
    credential = _query(environ).get("X-Amz-Credential", [""])[0]
    return credential.split("/")[0] or None


def _session_token(environ: Mapping[str, Any]) -> str:
    return (
        environ.get("HTTP_X_AMZ_SECURITY_TOKEN")
        or _query(environ).get("X-Amz-Security-Token", [""])[0]
    )


def rustfs_app(moto: Wsgi, env: Mapping[str, str], ready_at: float) -> Wsgi:
    """moto behind RustFS's health endpoints, readiness and credential checks."""
    root_key = env.get("RUSTFS_ACCESS_KEY") or RUSTFS_DEFAULT_KEY

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, is_ready = environ.get("PATH_INFO", ""), time.monotonic() >= ready_at
        if path == "/health":
            return _answer(
                start_response, "200 OK", json.dumps({"status": "ok"}), "application/json"
            )
        if path == "/health/ready":
            status = "200 OK" if is_ready else "503 Service Unavailable"
            body = json.dumps({"ready": is_ready})
            return _answer(start_response, status, body, "application/json")
        if not is_ready:
            return _s3_error(start_response, "503 Service Unavailable", "ServiceUnavailable",
                             "storage is not ready")  # fmt: skip
        if _session_token(environ):
            return _s3_error(start_response, "500 Internal Server Error", "InternalError",
                             "check claims failed: invalid token")  # fmt: skip
        key = _access_key(environ)
        if key is not None and key != root_key:
            return _s3_error(start_response, "403 Forbidden", "InvalidAccessKeyId", UNKNOWN_KEY)
        return moto(environ, start_response)

    return app


def alternator_app(moto: Wsgi, host: str) -> Wsgi:
    """moto behind Alternator's health check, ``GET /``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO") in ("", "/"):
            return _answer(start_response, "200 OK", f"healthy: {host}", "text/plain")
        return moto(environ, start_response)

    return app


def rustfs_address(env: Mapping[str, str]) -> tuple[str, int]:
    host, _, port = (env.get("RUSTFS_ADDRESS") or ":9000").rpartition(":")
    return host or "0.0.0.0", int(port)


def scylla_flags(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scylladb-standin", allow_abbrev=False)
    parser.add_argument("--alternator-port", type=int)
    parser.add_argument("--alternator-address")
    parser.add_argument("--listen-address")
    parser.add_argument("--alternator-write-isolation")
    flags, _ = parser.parse_known_args(argv)
    return flags


def alternator_address(flags: argparse.Namespace) -> str:
    """scyllasetup.py: Alternator binds to its own address flag, else the listen address,
    which defaults to the container's own address (`hostname -i`)."""
    return (
        flags.alternator_address
        or flags.listen_address
        or socket.gethostbyname(socket.gethostname())
    )


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("rustfs", "scylladb"):
        print("usage: moto_entry.py rustfs|scylladb [ARGS ...]", file=sys.stderr)
        return 2
    moto: Wsgi = DomainDispatcherApplication(create_backend_app)
    if argv[0] == "rustfs":
        host, port = rustfs_address(os.environ)
        app = rustfs_app(moto, os.environ, time.monotonic() + RUSTFS_READY_AFTER_S)
    else:
        flags = scylla_flags(argv[1:])
        if flags.alternator_port is None:
            print(
                "scylladb stand-in: only Alternator is served: give --alternator-port",
                file=sys.stderr,
            )
            return 2
        if not flags.alternator_write_isolation:
            print(
                "alternator_write_isolation must be set when Alternator is enabled", file=sys.stderr
            )
            return 1
        host, port = alternator_address(flags), flags.alternator_port
        app = alternator_app(moto, host)
    print(f"{argv[0]} stand-in (moto) on {host}:{port}", flush=True)
    run_simple(host, port, app, threaded=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit)
    sys.exit(main(sys.argv[1:]))
