"""Settings in `.env` are read by make as compose reads them (quotes, `export`, spaces), the
environment first, so production mode from `.env` keeps the data services on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def env_value(name: str, env_file: Path, **environment: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != name} | environment
    result = subprocess.run(
        ["bash", "scripts/env-value.sh", name, str(env_file)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True, timeout=10,
    )  # fmt: skip
    return result.stdout.strip()


def make_variables(env_file: Path, *names: str) -> dict[str, str]:
    """Variables of the Makefile as `make` resolves them with this env file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGELAMBDA_")}
    env["EDGELAMBDA_ENV_FILE"] = str(env_file)
    result = subprocess.run(
        ["make", "-p", "-n", "help"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    values = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition(" := ")
        if sep and name in names:
            values[name] = value
    return values


@pytest.mark.parametrize(
    "line",
    ["AUTH_USER=alice", 'AUTH_USER="alice"', "AUTH_USER='alice'", "export AUTH_USER=alice",
     "  AUTH_USER = alice  "],
)  # fmt: skip
def test_a_line_of_the_env_file_is_read_as_compose_reads_it(tmp_path: Path, line: str) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"# AUTH_USER=commented\n{line}\n")

    assert env_value("AUTH_USER", env_file) == "alice"
    assert env_value("AUTH_USER", env_file, AUTH_USER="bob") == "bob"  # the environment wins
    assert env_value("AUTH_PASS", env_file) == ""


def test_production_from_the_env_file_keeps_the_data_services_on_loopback(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('export EDGELAMBDA_PRODUCTION = "true"\nEDGELAMBDA_BIND_ADDRESS=::\n')
    production = make_variables(env_file, "EDGELAMBDA_DATA_BIND_ADDRESS", "HEALTH_URL")
    env_file.write_text("EDGELAMBDA_BIND_ADDRESS=127.0.0.2\nEDGELAMBDA_STANDINS=1\n")
    development = make_variables(
        env_file, "EDGELAMBDA_DATA_BIND_ADDRESS", "EDGELAMBDA_STANDINS", "EDGELAMBDA_RUNTIME_IMAGES"
    )

    assert production == {
        "EDGELAMBDA_DATA_BIND_ADDRESS": "127.0.0.1",
        "HEALTH_URL": "http://127.0.0.1:8000/health",
    }
    assert development["EDGELAMBDA_DATA_BIND_ADDRESS"] == "127.0.0.2"
    assert development["EDGELAMBDA_STANDINS"] == "1"
    assert development["EDGELAMBDA_RUNTIME_IMAGES"].count("edgelambda/runtime-python:local") == 2
