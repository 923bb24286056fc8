"""The sandbox's spec and its Engine API create body, without an engine: hardening, limits,
labels and Lambda's environment. The expected values are literals on purpose, so a changed
constant in the code shows up here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest

from edgelambda.config import Settings
from edgelambda.containers import ContainerSpec, container_spec, runtime_token
from edgelambda.docker_backend import BackendLimits, engine_config
from edgelambda.errors import ConfigError
from edgelambda.images import CodeLimits
from edgelambda.routing import FunctionSpec
from tests.fakes import function_spec

INSTANCE = "0123456789abcdef0123456789abcdef"
RUNTIME_API = "10.0.0.1:9001"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "box-key",
    "AWS_SECRET_ACCESS_KEY": "box-secret=",  # an "=" in a value must survive Env
    "AWS_ENDPOINT_URL_S3": "http://rustfs:9000",
}


def spec_of(
    function: FunctionSpec | None = None,
    *,
    host_cpus: int = 8,
    aws_env: Mapping[str, str] | None = AWS_ENV,
) -> ContainerSpec:
    return container_spec(
        function or function_spec(),
        image="edgelambda/fn:abc",
        instance=INSTANCE,
        stack="stk",
        network="edgelambda-stk",
        runtime_api=RUNTIME_API,
        region="eu-west-1",
        host_cpus=host_cpus,
        aws_env=aws_env,
    )


def test_the_sandbox_is_unprivileged_read_only_and_limited() -> None:
    config = engine_config(spec_of(replace(function_spec(), memory_mb=192)))

    assert config["User"] == "993:990"  # Lambda's sbx_user1051, never root
    assert config["HostConfig"] == {
        "NetworkMode": "edgelambda-stk",
        "Memory": 192 * 1024 * 1024,
        "MemorySwap": 192 * 1024 * 1024,  # equal to Memory: no swap on top
        "NanoCpus": 1_000_000_000,
        "PidsLimit": 1024,
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "ReadonlyRootfs": True,
        "Tmpfs": {"/tmp": "rw,nosuid,nodev,size=512m"},
        # Rotated by the engine: a chatty function keeps at most 3 x 10 MB of output on disk.
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
        "ExtraHosts": [],
    }  # and nothing more: no Binds, no Privileged, no extra capabilities


def test_the_log_limits_come_from_the_settings() -> None:
    env = {"EDGELAMBDA_FUNCTION_LOG_MAX_MB": "25", "EDGELAMBDA_FUNCTION_LOG_MAX_FILES": "2"}
    env |= {"EDGELAMBDA_CODE_MAX_MB": "5", "EDGELAMBDA_CODE_MAX_FILES": "100"}
    limits = BackendLimits.from_settings(Settings.from_env(env))

    config = engine_config(spec_of(), limits.logs)

    assert config["HostConfig"]["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "25m", "max-file": "2"},
    }
    assert limits.code == CodeLimits(max_bytes=5 * 1024 * 1024, max_files=100)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EDGELAMBDA_FUNCTION_LOG_MAX_FILES", "1"),  # a follower would hang on rotation
        ("EDGELAMBDA_FUNCTION_LOG_MAX_MB", "0"),
        ("EDGELAMBDA_CODE_MAX_MB", "-1"),
        ("EDGELAMBDA_CODE_MAX_FILES", "many"),
    ],
)
def test_a_bad_limit_stops_start_up_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_limits_follow_the_spec() -> None:
    spec = replace(spec_of(), pids_limit=64, tmp_size_mb=10240, user="1000:1000")

    config = engine_config(spec)

    assert config["User"] == "1000:1000"
    assert config["HostConfig"]["PidsLimit"] == 64
    assert config["HostConfig"]["Tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=10240m"}


@pytest.mark.parametrize(
    ("memory_mb", "host_cpus", "cpus"),
    [
        (128, 8, 1.0),  # Lambda would give 0.07 vCPU; never less than one here
        (1769, 8, 1.0),
        (3538, 8, 2.0),  # one vCPU per 1,769 MB
        (10240, 8, 10240 / 1769),
        (10240, 4, 4.0),  # never more than the host has
        (128, 1, 1.0),
    ],
)
def test_cpus_follow_memory_as_on_lambda(memory_mb: int, host_cpus: int, cpus: float) -> None:
    spec = spec_of(replace(function_spec(), memory_mb=memory_mb), host_cpus=host_cpus)

    assert spec.memory_mb == memory_mb
    assert spec.cpus == pytest.approx(cpus)
    assert engine_config(spec)["HostConfig"]["NanoCpus"] == int(cpus * 1e9)


def test_the_container_is_named_and_labelled_for_its_stack_function_and_instance() -> None:
    spec = container_spec(
        replace(function_spec(), name="Resize"),
        image="edgelambda/resize:abc",
        instance="ABCDEF0123456789ABCDEF0123456789",
        stack="Prod",
        network="edgelambda-prod",
        runtime_api=RUNTIME_API,
        region="eu-west-1",
        host_cpus=8,
    )

    config = engine_config(spec)

    assert spec.name == "prod-resize-abcdef012345"
    assert config["Image"] == "edgelambda/resize:abc"
    assert config["Labels"] == {
        "edgelambda.function": "Resize",
        "edgelambda.instance": "ABCDEF0123456789ABCDEF0123456789",
        "edgelambda.stack": "Prod",
        "edgelambda.image": "edgelambda/resize:abc",
    }
    assert config["HostConfig"]["NetworkMode"] == "edgelambda-prod"


def test_the_environment_is_lambdas_with_the_stacks_credentials() -> None:
    function = replace(function_spec(timeout_s=30.0), environment={"TABLE": "orders"})

    env = spec_of(function).env

    assert env == {
        "AWS_ACCESS_KEY_ID": "box-key",
        "AWS_SECRET_ACCESS_KEY": "box-secret=",
        "AWS_ENDPOINT_URL_S3": "http://rustfs:9000",
        "TABLE": "orders",
        "AWS_LAMBDA_RUNTIME_API": "10.0.0.1:9001",
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "30",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"$LATEST/{INSTANCE}",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "_HANDLER": "app.handler",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "TZ": ":UTC",
    }
    assert "AWS_SESSION_TOKEN" not in env


def test_the_engine_gets_the_environment_as_key_value_strings() -> None:
    spec = spec_of()

    env = engine_config(spec)["Env"]

    assert env == [f"{key}={value}" for key, value in spec.env.items()]
    assert "AWS_LAMBDA_RUNTIME_API=10.0.0.1:9001" in env
    assert "AWS_SECRET_ACCESS_KEY=box-secret=" in env


def test_reserved_variables_win_and_the_function_may_override_the_stacks() -> None:
    environment = {
        "AWS_LAMBDA_RUNTIME_API": "evil:1",
        "AWS_REGION": "us-east-1",
        "_HANDLER": "other.handler",
        "AWS_ENDPOINT_URL_S3": "https://s3.example.com",
    }

    env = spec_of(replace(function_spec(), environment=environment)).env

    assert env["AWS_LAMBDA_RUNTIME_API"] == "10.0.0.1:9001"
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_ENDPOINT_URL_S3"] == "https://s3.example.com"
    assert env["AWS_ACCESS_KEY_ID"] == "box-key"


def test_without_an_aws_environment_no_credentials_are_passed() -> None:
    env = spec_of(aws_env=None).env

    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"} & set(env)
    assert env["AWS_LAMBDA_RUNTIME_API"] == "10.0.0.1:9001"


@pytest.mark.parametrize(("timeout_s", "variable"), [(0.2, "1"), (2.6, "3"), (900.0, "900")])
def test_the_timeout_variable_is_whole_seconds_at_least_one(
    timeout_s: float, variable: str
) -> None:
    env = spec_of(function_spec(timeout_s=timeout_s)).env

    assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == variable


def test_a_managed_runtime_gets_the_handler_as_its_command() -> None:
    config = engine_config(spec_of())

    assert config["Cmd"] == ["app.handler"]
    assert "Entrypoint" not in config  # the base image's runtime interface client


def test_an_image_that_names_its_own_handler_keeps_its_cmd() -> None:
    config = engine_config(spec_of(replace(function_spec(), handler="")))

    assert config["Cmd"] == []  # empty: the engine uses the image's CMD
    assert "Entrypoint" not in config


@pytest.mark.parametrize("runtime", ["provided", "provided.al2", "provided.al2023"])
def test_a_custom_runtime_runs_the_functions_bootstrap(runtime: str) -> None:
    spec = spec_of(replace(function_spec(), runtime=runtime))

    config = engine_config(spec)

    assert config["Entrypoint"] == ["/var/task/bootstrap"]
    assert config["Cmd"] == []  # the handler reaches bootstrap as _HANDLER, not as an argument
    assert spec.env["_HANDLER"] == "app.handler"


def test_a_sandbox_calls_the_runtime_api_by_a_name_carrying_its_token() -> None:
    token = "f" * 32
    spec = container_spec(
        function_spec(),
        image="fake:1",
        instance=INSTANCE,
        stack="stk",
        network="edgelambda-stk",
        runtime_api=RUNTIME_API,
        region="eu-west-1",
        host_cpus=2,
        token=token,
    )

    assert spec.env["AWS_LAMBDA_RUNTIME_API"] == f"runtime-{token}:9001"
    assert engine_config(spec)["HostConfig"]["ExtraHosts"] == [f"runtime-{token}:10.0.0.1"]
    assert runtime_token(spec.env["AWS_LAMBDA_RUNTIME_API"]) == token


@pytest.mark.parametrize("host", ["10.0.0.1:9001", "10.0.0.1", "runtimes:9001", ""])
def test_a_host_without_a_sandbox_name_carries_no_token(host: str) -> None:
    assert runtime_token(host) is None
