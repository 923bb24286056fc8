"""routing.yaml validation: every error names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgelambda.errors import RoutingConfigError
from edgelambda.routing_file import load_routing, parse_routing
from tests.routing_tables import BASE_DIR, CORS_FUNCTIONS, parse, table_of

# --- validation: each error names file, line and key ------------------------------------------

INVALID = [
    pytest.param(
        "functions:\n  f: {handler: a.b}\n  g:\n    handler: a.b\n    can_invoke: [f, h]\n",
        5, "functions.g.can_invoke", "no function named 'h'", id="can-invoke-unknown",
    ),
    pytest.param("functions:\n  f: {handler: a.b\n", 3, "(syntax)", "", id="yaml-syntax"),
    pytest.param("- a\n- b\n", 1, "(top level)", "must be a mapping", id="top-level-list"),
    pytest.param("functions: {}\nfunction: {}\n", 2, "function", "unknown key", id="top-key"),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    timout: 3\n",
        4, "functions.f.timout", "unknown key", id="function-key",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    freeze_after: -1\n",
        4, "functions.f.freeze_after", "must be a number, 0 or more", id="freeze-after-negative",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    timeout: true\n",
        4, "functions.f.timeout", "must be a positive number", id="timeout-bool",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    timeout: -1\n",
        4, "functions.f.timeout", "must be a positive number", id="timeout-negative",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    timeout: '30'\n",
        4, "functions.f.timeout", "must be a positive number", id="timeout-string",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    memory: 256.5\n",
        4, "functions.f.memory", "must be a positive integer", id="memory-float",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    memory: 0\n",
        4, "functions.f.memory", "must be a positive integer", id="memory-zero",
    ),
    pytest.param(
        "defaults:\n  memory: yes\nfunctions: {}\n",
        2, "defaults.memory", "must be a positive integer", id="defaults-memory-bool",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    max_concurrency: 0\n",
        4, "functions.f.max_concurrency", "must be a positive integer", id="concurrency-zero",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    max_concurrency: 2\n    min_warm: 3\n",
        5, "functions.f.min_warm", "must not exceed max_concurrency (2)", id="min-warm",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    min_warm: -1\n",
        4, "functions.f.min_warm", "must be an integer >= 0", id="min-warm-negative",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n  g: {handler: c.d}\n  f:\n    handler: x.y\n",
        5, "functions.f", "duplicate key (first defined on line 2)", id="duplicate-function",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    handler: c.d\n",
        4, "functions.f.handler", "duplicate key (first defined on line 3)", id="duplicate-key",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: handler\n",
        3, "functions.f.handler", "is not module.function", id="handler-no-dot",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: app.\n",
        3, "functions.f.handler", "is not module.function", id="handler-empty-function",
    ),
    pytest.param(
        "functions:\n  f:\n    runtime: python3.12\n",
        2, "functions.f", "needs a handler", id="handler-missing",
    ),
    pytest.param(
        "functions:\n  bad name: {handler: a.b}\n",
        2, "functions.bad name", "name must be", id="function-name",
    ),
    pytest.param(
        "functions:\n  yes: {handler: a.b}\n",
        2, "functions", "key True must be a string", id="function-name-bool",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    environment:\n      AWS_LAMBDA_RUNTIME_API: x\n",
        5, "functions.f.environment.AWS_LAMBDA_RUNTIME_API", "reserved", id="env-reserved",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    environment:\n      LIST: [1, 2]\n",
        5, "functions.f.environment.LIST", "must be a string, number or boolean", id="env-list",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    environment:\n      1ABC: x\n",
        5, "functions.f.environment.1ABC", "letters, digits", id="env-name",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    schedule: rate(1 minutes)\n",
        4, "functions.f.schedule", "singular unit for 1", id="rate-plural-for-one",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    schedule: rate(5 minute)\n",
        4, "functions.f.schedule", "plural unit otherwise", id="rate-singular-for-many",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    schedule: rate(0 minutes)\n",
        4, "functions.f.schedule", "at least 1", id="rate-zero",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    schedule: rate(5 seconds)\n",
        4, "functions.f.schedule", "unit: 'seconds' is not one of", id="rate-unit",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    schedule:\n      - rate(5 minutes)\n"
        "      - cron(0 12 * * ?)\n",
        6, "functions.f.schedule", "cron(minutes hours", id="cron-five-fields",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    schedule: cron(0 12 * * * *)\n",
        4, "functions.f.schedule", "exactly one must be '?'", id="cron-no-question-mark",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    schedule: every 5 minutes\n",
        4, "functions.f.schedule", "must be rate(value unit) or cron(", id="schedule-text",
    ),
    pytest.param(
        "functions: {}\nroutes:\n  path: /x\n",
        3, "routes", "must be a list", id="routes-not-list",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - path: /x\n    method: GET\n"
        "    function: g\n",
        6, "routes[0].function", "no function named 'g'", id="undefined-function",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - path: /x\n    function: f\n",
        4, "routes[0].method", "is required", id="method-missing",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - {path: /x, method: GET, function: f,"
        " timeout: 3}\n",
        4, "routes[0].timeout", "unknown key", id="route-key",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - {path: x, method: GET, function: f}\n",
        4, "routes[0].path", 'must start with "/"', id="path-no-slash",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - {path: '/a/{b', method: GET,"
        " function: f}\n",
        4, "routes[0].path", "bad parameter syntax", id="param-unclosed",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - {path: '/a/x{b}', method: GET,"
        " function: f}\n",
        4, "routes[0].path", "bad parameter syntax", id="param-partial-segment",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - {path: '/a/{p+}/b', method: GET,"
        " function: f}\n",
        4, "routes[0].path", "must be the last segment", id="proxy-not-last",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - {path: '/a/{x}/{x}', method: GET,"
        " function: f}\n",
        4, "routes[0].path", "appears twice", id="param-twice",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - {path: '/a/', method: GET, function: f}\n",
        4, "routes[0].path", "empty segment", id="trailing-slash",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - path: /a\n    method: [GET, FETCH]\n"
        "    function: f\n",
        5, "routes[0].method", "'FETCH' is not one of", id="bad-method",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - {path: /a, method: [ANY, GET],"
        " function: f}\n",
        4, "routes[0].method", "list it alone", id="any-with-others",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - {path: /a, method: GET, function: f,"
        " payload: '3.0'}\n",
        4, "routes[0].payload", 'must be "1.0" or "2.0"', id="bad-payload",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - {path: /a, method: GET, function: f,"
        " auth: basic}\n",
        4, "routes[0].auth", 'must be "jwt" or "none"', id="bad-auth",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n"
        "  - {path: '/a/{x}', method: GET, function: f}\n"
        "  - {path: /b, method: GET, function: f}\n"
        "  - {path: '/a/{y}', method: [POST, GET], function: f}\n",
        6, "routes[2].path", "conflicts with '/a/{x}' (routes[0].path, line 4)", id="conflict",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n"
        "  - {path: '/p/{proxy+}', method: ANY, function: f}\n"
        "  - {path: '/p/{rest+}', method: any, function: f}\n",
        5, "routes[1].path", "'/p/{rest+}' ANY conflicts", id="conflict-any",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n"
        "  - {path: $default, method: GET, function: f}\n",
        4, "routes[0].method", "$default takes ANY", id="default-with-a-method",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n"
        "  - {path: $default, method: ANY, function: f}\n"
        "  - {path: $default, method: ANY, function: f}\n",
        5, "routes[1].path", "'$default' ANY conflicts with '$default'", id="default-twice",
    ),
    pytest.param(
        "functions:\n  f: {handler: a.b}\nroutes:\n  - {path: $other, method: ANY, function: f}\n",
        4, "routes[0].path", "'$other' must start with \"/\"", id="dollar-path",
    ),
    pytest.param(
        "resources: [a, b]\n", 1, "resources", "must be a mapping", id="resources-list",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    code: /etc\n",
        4, "functions.f.code", "'/etc' must be inside the routing file's directory (/srv/app)",
        id="code-absolute-elsewhere",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    code: ../other/f\n",
        4, "functions.f.code", "must be inside the routing file's directory",
        id="code-dot-dot",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    code: functions/../../app-old/f\n",
        4, "functions.f.code", "must be inside the routing file's directory",
        id="code-dot-dot-inside-the-path",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    code: /srv/app-other/f\n",
        4, "functions.f.code", "must be inside", id="code-sibling-with-the-same-prefix",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "key", "problem"), INVALID)
def test_invalid_file_names_line_and_key(text: str, line: int, key: str, problem: str) -> None:
    with pytest.raises(RoutingConfigError) as caught:
        parse_routing(text, source="routing.yaml", base_dir=BASE_DIR)

    error = caught.value
    assert (error.source, error.line, error.key) == ("routing.yaml", line, key)
    assert str(error).startswith(f"routing.yaml:{line}: {key}: ")
    assert problem in error.problem


def test_same_shape_with_disjoint_methods_is_allowed() -> None:
    table = table_of("GET /a/{x}", "POST /a/{y}", "HEAD /a/{z}")

    assert table.match("POST", "/a/1").path_parameters == {"y": "1"}


# --- CORS origins -----------------------------------------------------------------------------

CORS_INVALID = [
    pytest.param("cors: 1", 7, "must be true, false, or an origin", id="number"),
    pytest.param("cors:", 7, "must be true, false, or an origin", id="null"),
    pytest.param("cors: {origins: '*'}", 7, "must be true, false, or an origin", id="mapping"),
    pytest.param("cors: []", 7, "must not be an empty list; use false", id="empty-list"),
    pytest.param(
        "cors:\n      - https://ok.example\n      - https://app.example.com/",
        9, "'https://app.example.com/' is not an origin", id="path",
    ),
    pytest.param(
        "cors:\n      - https://ok.example\n      - true",
        9, "must be true, false", id="bool-in-list",
    ),
    pytest.param("cors: app.example.com", 7, "is not an origin", id="no-scheme"),
    pytest.param("cors: 'https://*.example.com'", 7, "is not an origin", id="wildcard-host"),
    pytest.param(
        "cors: ['*', 'https://app.example.com']", 7, "list it alone", id="star-with-origins",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("cors", "line", "problem"), CORS_INVALID)
def test_invalid_cors_names_line_and_key(cors: str, line: int, problem: str) -> None:
    text = f"{CORS_FUNCTIONS}  - path: /a\n    method: GET\n    function: f\n    {cors}\n"

    with pytest.raises(RoutingConfigError) as caught:
        parse_routing(text, source="routing.yaml", base_dir=BASE_DIR)

    error = caught.value
    assert (error.line, error.key) == (line, "routes[0].cors")
    assert str(error).startswith(f"routing.yaml:{line}: routes[0].cors: ")
    assert problem in error.problem


# --- resources --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("resources:\n  buckets: [Not_A_Bucket]\n", 2, "resources.buckets"),
        ("resources:\n  queues: [a]\n", 2, "resources.queues"),
        (
            "resources:\n  tables:\n    orders:\n      BillingMode: PAY_PER_REQUEST\n",
            4,
            "resources.tables.orders.KeySchema",
        ),
        (
            "resources:\n  tables:\n    orders:\n      KeySchema: []\n"
            "      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]\n",
            4,
            "resources.tables.orders.KeySchema",
        ),
        ("resources:\n  tables:\n    orders:\n      Keys: []\n", 4, "resources.tables.orders.Keys"),
    ],
    ids=["bucket-name", "unknown-kind", "no-key-schema", "empty-key-schema", "unknown-property"],
)
def test_invalid_resources_name_line_and_key(text: str, line: int, key: str) -> None:
    with pytest.raises(RoutingConfigError) as caught:
        parse(text)

    assert (caught.value.line, caught.value.key) == (line, key)


# --- code directories through symlinks (a real directory tree) ---------------------------------


def _app(tmp_path: Path, code: str | None) -> Path:
    """A routing file in tmp_path/app for one function `f`, with ``code`` when given."""
    app = tmp_path / "app"
    (app / "functions").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    line = f"    code: {code}\n" if code is not None else ""
    (app / "routing.yaml").write_text(f"functions:\n  f:\n    handler: a.b\n{line}")
    return app


def test_a_code_symlink_leaving_the_directory_names_its_line(tmp_path: Path) -> None:
    app = _app(tmp_path, "functions/f")
    (app / "functions" / "f").symlink_to(tmp_path / "elsewhere")

    with pytest.raises(RoutingConfigError) as caught:
        load_routing(app / "routing.yaml")

    error = caught.value
    assert (error.line, error.key) == (4, "functions.f.code")
    assert f"resolves through a symlink to {tmp_path / 'elsewhere'}" in error.problem


def test_the_default_code_directory_may_not_leave_through_a_symlink(tmp_path: Path) -> None:
    app = _app(tmp_path, None)
    (app / "functions" / "f").symlink_to(tmp_path / "elsewhere")

    with pytest.raises(RoutingConfigError) as caught:
        load_routing(app / "routing.yaml")

    assert (caught.value.line, caught.value.key) == (2, "functions.f.code")
    assert "'functions/f' resolves through a symlink" in caught.value.problem


def test_code_inside_the_directory_may_be_absolute_or_a_symlink_within(tmp_path: Path) -> None:
    app = _app(tmp_path, None)
    (app / "src").mkdir()
    (app / "functions" / "f").symlink_to(app / "src")
    (app / "routing.yaml").write_text(
        f"functions:\n  f: {{handler: a.b}}\n  g: {{handler: a.b, code: {app / 'src'}}}\n"
    )

    table = load_routing(app / "routing.yaml")

    assert table.functions["f"].code_dir == app / "functions" / "f"
    assert table.functions["g"].code_dir == app / "src"
