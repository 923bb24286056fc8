"""The command line's start-up failures: a bad setting or routing file stops `serve` with
exit code 3 and a message naming the problem, before any engine is touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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
