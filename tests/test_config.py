from __future__ import annotations

from pathlib import Path

import pytest

from edgelambda.config import DEFAULT_RUNTIME_IMAGES, Settings, default_stack
from edgelambda.errors import ConfigError


def test_defaults_match_the_original_system() -> None:
    settings = Settings.from_env({})

    assert settings.port == 8000
    assert settings.idle_timeout_s == 300
    assert settings.docker_network == "edgelambda_default"
    assert settings.auth_endpoint_path == "/user/auth/ver1.0"
    assert settings.jwt_expires_s == 3000
    assert settings.runtime_images["python3.12"] == "public.ecr.aws/lambda/python:3.12"


def test_idle_timeout_minutes_may_be_fractional() -> None:
    assert Settings.from_env({"IDLE_TIMEOUT_MINUTES": "0.05"}).idle_timeout_s == pytest.approx(3)


def test_runtime_images_override_only_the_named_runtimes() -> None:
    settings = Settings.from_env({"EDGELAMBDA_RUNTIME_IMAGES": "python3.12=local/py:1, x=y:2"})

    assert settings.base_image_for("python3.12") == "local/py:1"
    assert settings.base_image_for("x") == "y:2"
    assert settings.base_image_for("python3.11") == DEFAULT_RUNTIME_IMAGES["python3.11"]


def test_an_unknown_runtime_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"runtime 'ruby3.3' has no base image .*python3.12"):
        Settings.from_env({}).base_image_for("ruby3.3")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IDLE_TIMEOUT_MINUTES", "soon"),
        ("IDLE_TIMEOUT_MINUTES", "-1"),
        ("EDGELAMBDA_FREEZE_AFTER_S", "-1"),
        ("EDGELAMBDA_FREEZE_AFTER_S", "nan"),
        ("EDGELAMBDA_EVENT_LOOP", "tokio"),
        ("EDGELAMBDA_PORT", "70000"),
        ("JWT_EXPIRES_DELTA", "0"),
        ("EDGELAMBDA_PRODUCTION", "maybe"),
        ("AUTH_ENDPOINT_PATH", "user/auth"),
        ("EDGELAMBDA_RUNTIME_IMAGES", "python3.12"),
        ("EDGELAMBDA_STACK", "a b"),
        ("EDGELAMBDA_LOG_FORMAT", "xml"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}="):
        Settings.from_env({name: value})


PRODUCTION_SECRETS = {
    "JWT_SECRET_KEY": "s" * 32,
    "X_API_KEY": "k",
    "AUTH_PASS": "a-password",
    "EDGELAMBDA_AWS_ACCESS_KEY_ID": "box-key",
    "EDGELAMBDA_AWS_SECRET_ACCESS_KEY": "box-secret-key",
}


def test_production_refuses_the_default_secrets_naming_each() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"EDGELAMBDA_PRODUCTION": "true", "X_API_KEY": "k"})
    message = str(refused.value)
    for name in set(PRODUCTION_SECRETS) - {"X_API_KEY"}:
        assert name in message
    assert "X_API_KEY" not in message

    for name in PRODUCTION_SECRETS:  # any one default left is refused, by name
        env = {**PRODUCTION_SECRETS, "EDGELAMBDA_PRODUCTION": "true"}
        del env[name]
        with pytest.raises(ConfigError, match=f"^{name}: the development default is refused"):
            Settings.from_env(env)

    settings = Settings.from_env({**PRODUCTION_SECRETS, "EDGELAMBDA_PRODUCTION": "1"})
    assert settings.is_production
    assert settings.aws_credentials == {
        "AWS_ACCESS_KEY_ID": "box-key",
        "AWS_SECRET_ACCESS_KEY": "box-secret-key",
    }


def test_development_mode_accepts_the_defaults_and_says_which() -> None:
    settings = Settings.from_env({})

    assert not settings.is_production
    assert settings.default_secrets() == list(PRODUCTION_SECRETS)


@pytest.mark.parametrize(
    ("name", "value"),
    [("EDGELAMBDA_AWS_ACCESS_KEY_ID", "ab"), ("EDGELAMBDA_AWS_SECRET_ACCESS_KEY", "short")],
)
def test_box_keys_rustfs_would_refuse_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}="):
        Settings.from_env({name: value})


def test_empty_values_mean_the_default() -> None:
    # Compose passes every setting, unset ones as empty strings.
    settings = Settings.from_env({"EDGELAMBDA_HOST": "", "ROUTING_CONFIG_PATH": ""})

    assert settings.host == "0.0.0.0"
    assert str(settings.routing_config_path) == "routing.yaml"


def test_the_code_root_is_an_existing_directory_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "project").mkdir()

    assert Settings.from_env({}).code_root is None  # the routing file's directory
    assert Settings.from_env({"EDGELAMBDA_CODE_ROOT": "project"}).code_root == (
        tmp_path / "project"
    )
    with pytest.raises(ConfigError, match=r"^EDGELAMBDA_CODE_ROOT='nowhere': must be an existing"):
        Settings.from_env({"EDGELAMBDA_CODE_ROOT": "nowhere"})


def test_a_short_jwt_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^JWT_SECRET_KEY=.*at least 32 bytes"):
        Settings.from_env({"JWT_SECRET_KEY": "short"})


# -- the stack id: which containers this gateway owns -----------------------------------------

# How each launcher starts a gateway on one engine: `make run` in a checkout (data/, :8000,
# the default network), the compose stack's gateway (/data in its container, :8000 inside, its
# stack's network), a second compose project on its own network, a second `make run` on
# another port, and the same `make run` from another checkout.
MAKE_RUN = {"EDGELAMBDA_DATA_DIR": "/srv/checkout/data"}
COMPOSE = {"EDGELAMBDA_DATA_DIR": "/data", "DOCKER_NETWORK": "edgelambda_default"}
LAUNCHERS = {
    "make run": MAKE_RUN,
    "make up": COMPOSE,
    "make up, another project": {**COMPOSE, "DOCKER_NETWORK": "other_default"},
    "make run, another port": {**MAKE_RUN, "EDGELAMBDA_PORT": "8001"},
    "make run, another checkout": {"EDGELAMBDA_DATA_DIR": "/srv/other/data"},
}


def test_each_gateway_on_an_engine_has_its_own_default_stack() -> None:
    stacks = {name: Settings.from_env(env).stack for name, env in LAUNCHERS.items()}

    assert len(set(stacks.values())) == len(LAUNCHERS), stacks
    assert all(stack.startswith("edgelambda-") for stack in stacks.values())


def test_the_default_stack_survives_a_restart_of_the_same_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative data directory is the checkout's

    first = Settings.from_env({"EDGELAMBDA_DATA_DIR": "data"}).stack
    again = Settings.from_env({"EDGELAMBDA_DATA_DIR": str(tmp_path / "data")}).stack

    assert first == again == default_stack(tmp_path / "data", 8000, "edgelambda_default")


def test_an_explicit_stack_wins() -> None:
    assert Settings.from_env({**MAKE_RUN, "EDGELAMBDA_STACK": "edgelambda"}).stack == "edgelambda"


def test_the_gateway_runs_on_uvloop_unless_told_otherwise() -> None:
    assert Settings.from_env({}).event_loop == "uvloop"  # a dependency, so installed
    assert Settings.from_env({"EDGELAMBDA_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"


def test_the_backend_is_docker_unless_swarm_is_named() -> None:
    assert Settings.from_env({}).backend == "docker"
    assert Settings.from_env({"EDGELAMBDA_BACKEND": "swarm"}).backend == "swarm"
    with pytest.raises(ConfigError, match="EDGELAMBDA_BACKEND='k8s': must be docker or swarm"):
        Settings.from_env({"EDGELAMBDA_BACKEND": "k8s"})


def test_the_registry_is_a_host_and_port() -> None:
    assert Settings.from_env({}).registry is None
    assert Settings.from_env({"EDGELAMBDA_REGISTRY": "127.0.0.1:5000"}).registry == "127.0.0.1:5000"
    with pytest.raises(ConfigError, match="EDGELAMBDA_REGISTRY='http://r:5000'"):
        Settings.from_env({"EDGELAMBDA_REGISTRY": "http://r:5000"})
