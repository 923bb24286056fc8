"""routing.yaml parsing, validation (file, line and key in every error) and route matching."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from edgelambda.errors import MethodNotAllowed, RouteNotFound, RoutingConfigError
from edgelambda.routing import (
    HTTP_METHODS,
    AuthMode,
    CorsPolicy,
    FunctionSpec,
    PayloadVersion,
    Route,
    RoutingTable,
)
from edgelambda.routing_file import load_routing, parse_routing

BASE_DIR = Path("/srv/app")


def parse(text: str) -> RoutingTable:
    return parse_routing(textwrap.dedent(text), source="routing.yaml", base_dir=BASE_DIR)


def table_of(*routes: str) -> RoutingTable:
    """A table with one function and ``routes`` given as "METHOD /path" (methods split by |)."""
    listed = "".join(
        f"  - {{path: '{path}', method: [{method.replace('|', ', ')}], function: f}}\n"
        for method, path in (route.split(" ", 1) for route in routes)
    )
    return parse(f"functions:\n  f: {{handler: app.handler}}\nroutes:\n{listed}")


# --- parsing and defaults ---------------------------------------------------------------------

DESIGN_EXAMPLE = """\
defaults:                      # merged into every function
  environment: {LOG_LEVEL: INFO}
  timeout: 30                  # seconds
  memory: 256                  # MB
functions:
  hello:
    handler: app.handler
    code: functions/hello
    runtime: python3.12
    environment: {GREETING: hi}
    max_concurrency: 4
    min_warm: 0
    idle_timeout: 300
    schedule: rate(5 minutes)
routes:
  - path: /hello/{name}
    method: GET
    function: hello
    auth: jwt
    payload: "1.0"
"""


def test_design_example_parses() -> None:
    table = parse(DESIGN_EXAMPLE)

    assert table.functions == {
        "hello": FunctionSpec(
            name="hello",
            handler="app.handler",
            code_dir=BASE_DIR / "functions/hello",
            runtime="python3.12",
            image=None,
            environment={"LOG_LEVEL": "INFO", "GREETING": "hi"},
            timeout_s=30.0,
            memory_mb=256,
            max_concurrency=4,
            min_warm=0,
            idle_timeout_s=300.0,
            schedules=("rate(5 minutes)",),
        )
    }
    assert table.routes == (
        Route("/hello/{name}", frozenset({"GET"}), "hello", AuthMode.JWT, PayloadVersion.V1),
    )


def test_builtin_defaults_apply_to_a_minimal_function() -> None:
    table = parse("""\
        functions:
          tiny: {handler: main.run}
        routes:
          - {path: /tiny, method: post, function: tiny}
        """)

    spec = table.functions["tiny"]
    assert spec.code_dir == BASE_DIR / "functions" / "tiny"
    assert (spec.runtime, spec.image, spec.environment) == ("python3.12", None, {})
    assert (spec.timeout_s, spec.memory_mb) == (30.0, 256)
    assert (spec.max_concurrency, spec.min_warm, spec.idle_timeout_s) == (10, 0, None)
    assert spec.schedules == ()
    route = table.routes[0]
    assert (route.methods, route.auth, route.payload) == (
        frozenset({"POST"}),
        AuthMode.JWT,
        PayloadVersion.V1,
    )


def test_defaults_merge_and_the_function_wins() -> None:
    table = parse("""\
        defaults:
          environment: {LOG_LEVEL: INFO, SHARED: from-defaults}
          timeout: 10
          memory: 512
          runtime: python3.11
          max_concurrency: 2
          idle_timeout: 60
        functions:
          a:
            handler: a.handler
            environment: {SHARED: from-function, PORT: 8080, DEBUG: true, RATIO: 0.5}
            timeout: 2.5
          b:
            handler: b.handler
            memory: 128
        """)

    a, b = table.functions["a"], table.functions["b"]
    assert a.environment == {
        "LOG_LEVEL": "INFO",
        "SHARED": "from-function",
        "PORT": "8080",  # YAML ints and booleans become strings, as in AWS
        "DEBUG": "true",
        "RATIO": "0.5",
    }
    assert (a.timeout_s, a.memory_mb, a.runtime) == (2.5, 512, "python3.11")
    assert (b.timeout_s, b.memory_mb, b.max_concurrency, b.idle_timeout_s) == (10.0, 128, 2, 60.0)
    assert b.environment == {"LOG_LEVEL": "INFO", "SHARED": "from-defaults"}


def test_code_paths_resolve_against_base_dir_unless_absolute() -> None:
    table = parse("""\
        functions:
          rel: {handler: app.handler, code: src/rel}
          abs: {handler: app.handler, code: /opt/code/abs}
        """)

    assert table.functions["rel"].code_dir == Path("/srv/app/src/rel")
    assert table.functions["abs"].code_dir == Path("/opt/code/abs")


def test_an_image_function_needs_no_handler() -> None:
    table = parse("""\
        functions:
          img: {image: "my/image:1.0"}
        """)

    assert table.functions["img"].image == "my/image:1.0"
    assert table.functions["img"].handler == ""


def test_handler_may_name_a_package_path() -> None:
    table = parse("""\
        functions:
          a: {handler: pkg/sub.module.handler_fn}
        """)

    assert table.functions["a"].handler == "pkg/sub.module.handler_fn"


def test_schedules_one_or_a_list() -> None:
    table = parse("""\
        functions:
          one: {handler: a.b, schedule: rate(1 minute)}
          many:
            handler: a.b
            schedule:
              - rate(2 hours)
              - rate(1 day)
              - cron(0 12 * * ? *)
              - cron(15 10 ? * MON-FRI 2030)
        """)

    assert table.functions["one"].schedules == ("rate(1 minute)",)
    assert table.functions["many"].schedules == (
        "rate(2 hours)",
        "rate(1 day)",
        "cron(0 12 * * ? *)",
        "cron(15 10 ? * MON-FRI 2030)",
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# nothing yet\n",
        "functions: {}\nroutes: []\n",
        "functions:\nroutes:\n",
        "resources: {}\n",
    ],
)
def test_empty_sections_make_an_empty_table(text: str) -> None:
    table = parse(text)

    assert table.functions == {}
    assert table.routes == ()


@pytest.mark.parametrize(
    ("written", "expected"),
    [('"1.0"', PayloadVersion.V1), ("1.0", PayloadVersion.V1), ('"2.0"', PayloadVersion.V2),
     ("2.0", PayloadVersion.V2)],
)  # fmt: skip
def test_payload_versions_quoted_or_not(written: str, expected: PayloadVersion) -> None:
    table = parse(f"""\
        functions:
          f: {{handler: a.b}}
        routes:
          - {{path: /x, method: GET, function: f, payload: {written}}}
        """)

    assert table.routes[0].payload is expected


def test_auth_none_and_method_lists() -> None:
    table = parse("""\
        functions:
          f: {handler: a.b}
        routes:
          - path: /open
            method: [get, Post]
            function: f
            auth: none
          - {path: /any, method: any, function: f}
        """)

    assert table.routes[0].auth is AuthMode.NONE
    assert table.routes[0].methods == frozenset({"GET", "POST"})
    assert table.routes[1].methods == frozenset({"ANY"})


def test_load_routing_reads_the_file_relative_to_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(DESIGN_EXAMPLE, encoding="utf-8")

    table = load_routing(path)

    assert table.functions["hello"].code_dir == tmp_path / "functions" / "hello"


def test_load_routing_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("functions:\n  f: {handler: nodot}\n", encoding="utf-8")

    with pytest.raises(RoutingConfigError) as caught:
        load_routing(path)

    assert str(caught.value).startswith(f"{path}:2: functions.f.handler: ")


def test_load_routing_wraps_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"

    with pytest.raises(RoutingConfigError) as caught:
        load_routing(missing)

    assert caught.value.source == str(missing)
    assert caught.value.line is None


# --- validation: each error names file, line and key ------------------------------------------

INVALID = [
    pytest.param("functions:\n  f: {handler: a.b\n", 3, "(syntax)", "", id="yaml-syntax"),
    pytest.param("- a\n- b\n", 1, "(top level)", "must be a mapping", id="top-level-list"),
    pytest.param("functions: {}\nfunction: {}\n", 2, "function", "unknown key", id="top-key"),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    timout: 3\n",
        4, "functions.f.timout", "unknown key", id="function-key",
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
        "resources: [a, b]\n", 1, "resources", "must be a mapping", id="resources-list",
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


# --- matching ---------------------------------------------------------------------------------

PRECEDENCE_ROUTES = ("GET /users/me", "GET /users/{id}", "GET /users/{proxy+}", "GET /{proxy+}")


@pytest.mark.parametrize("order", list(itertools.permutations(PRECEDENCE_ROUTES)))
def test_most_specific_route_wins_whatever_the_file_order(order: tuple[str, ...]) -> None:
    table = table_of(*order)

    assert table.match("GET", "/users/me").route.path == "/users/me"
    assert table.match("GET", "/users/42").route.path == "/users/{id}"
    assert table.match("GET", "/users/42/posts").route.path == "/users/{proxy+}"
    assert table.match("GET", "/orders/7").route.path == "/{proxy+}"


def test_leftmost_segment_decides_specificity() -> None:
    table = table_of("GET /{a}/b/c", "GET /x/{b}/{c}")

    assert table.match("GET", "/x/b/c").route.path == "/x/{b}/{c}"


def test_path_parameters_are_bound() -> None:
    table = table_of("GET /hello/{name}", "GET /repos/{owner}/{repo}/issues")

    assert table.match("GET", "/hello/world").path_parameters == {"name": "world"}
    assert table.match("GET", "/repos/me/edge/issues").path_parameters == {
        "owner": "me",
        "repo": "edge",
    }


def test_path_parameters_keep_decoded_characters() -> None:
    table = table_of("GET /hello/{name}")

    assert table.match("GET", "/hello/été ok").path_parameters == {"name": "été ok"}


def test_greedy_parameter_captures_the_rest_without_leading_slash() -> None:
    table = table_of("ANY /files/{proxy+}")

    match = table.match("PUT", "/files/a/b/c.txt")

    assert match.path_parameters == {"proxy": "a/b/c.txt"}


def test_greedy_parameter_needs_at_least_one_segment() -> None:
    table = table_of("GET /files/{proxy+}")

    with pytest.raises(RouteNotFound):
        table.match("GET", "/files")
    with pytest.raises(RouteNotFound):
        table.match("GET", "/files/")


def test_a_trailing_slash_in_the_request_is_ignored() -> None:
    table = table_of("GET /hello/{name}", "GET /files/{proxy+}")

    assert table.match("GET", "/hello/world/").path_parameters == {"name": "world"}
    assert table.match("GET", "/files/a/b/").path_parameters == {"proxy": "a/b"}


def test_root_route() -> None:
    table = table_of("GET /", "GET /{proxy+}")

    assert table.match("GET", "/").route.path == "/"
    assert table.match("GET", "/x").route.path == "/{proxy+}"


@pytest.mark.parametrize("path", ["/nope", "/hello", "/hello/a/b", "hello/world", "", "/hello//"])
def test_unknown_path_is_404(path: str) -> None:
    table = table_of("GET /hello/{name}")

    with pytest.raises(RouteNotFound) as caught:
        table.match("GET", path)

    assert caught.value.status == 404


def test_known_path_with_another_method_is_405_with_allow() -> None:
    table = table_of("GET /items/{id}", "PUT|DELETE /items/{key}", "POST /items")

    with pytest.raises(MethodNotAllowed) as caught:
        table.match("PATCH", "/items/3")

    assert caught.value.status == 405
    assert caught.value.allowed == frozenset({"GET", "HEAD", "PUT", "DELETE"})
    assert caught.value.headers == {"Allow": "DELETE, GET, HEAD, PUT"}


def test_allow_without_get_has_no_head() -> None:
    table = table_of("POST /items")

    with pytest.raises(MethodNotAllowed) as caught:
        table.match("GET", "/items")

    assert caught.value.allowed == frozenset({"POST"})


def test_head_is_served_by_get_routes() -> None:
    table = table_of("GET /hello/{name}")

    assert table.match("HEAD", "/hello/x").route.methods == frozenset({"GET"})


def test_an_explicit_head_route_beats_the_get_route() -> None:
    table = table_of("GET /a", "HEAD /a")

    assert table.match("HEAD", "/a").route.methods == frozenset({"HEAD"})


def test_any_accepts_every_method_and_an_exact_method_beats_it() -> None:
    table = table_of("ANY /{proxy+}", "POST /{rest+}")

    assert table.match("OPTIONS", "/x").route.methods == frozenset({"ANY"})
    assert table.match("POST", "/x").route.path == "/{rest+}"


def test_a_less_specific_route_serves_a_method_the_specific_one_lacks() -> None:
    table = table_of("GET /users/{id}", "ANY /{proxy+}")

    assert table.match("DELETE", "/users/7").route.path == "/{proxy+}"


def test_method_is_case_insensitive() -> None:
    table = table_of("GET /a")

    assert table.match("get", "/a").route.path == "/a"


def test_a_table_can_be_built_directly() -> None:
    route = Route("/ping", frozenset({"GET"}), "f")
    table = RoutingTable(functions={}, routes=(route,))

    assert table.match("GET", "/ping").route is route
    assert (route.auth, route.payload) == (AuthMode.JWT, PayloadVersion.V1)


# --- CORS -------------------------------------------------------------------------------------

CORS_FUNCTIONS = "functions:\n  f: {handler: a.b}\nroutes:\n"


def cors_route(cors: str) -> Route:
    table = parse(f"{CORS_FUNCTIONS}  - {{path: /a, method: GET, function: f, cors: {cors}}}\n")
    return table.routes[0]


def test_cors_is_off_unless_asked() -> None:
    assert table_of("GET /a").routes[0].cors is None
    assert cors_route("false").cors is None
    assert Route("/a", frozenset({"GET"}), "f").cors is None


@pytest.mark.parametrize("written", ["true", "yes", "'*'", "['*']"])
def test_cors_true_allows_any_origin(written: str) -> None:
    assert cors_route(written).cors == CorsPolicy(frozenset({"*"}))


def test_cors_lists_origins_as_browsers_send_them() -> None:
    table = parse("""\
        functions:
          f: {handler: a.b}
        routes:
          - path: /a
            method: GET
            function: f
            cors:
              - https://app.example.com
              - HTTP://LocalHost:3000
              - https://admin.example.com:443
          - {path: /b, method: GET, function: f, cors: 'https://one.example'}
        """)

    assert table.routes[0].cors == CorsPolicy(
        frozenset({"https://app.example.com", "http://localhost:3000", "https://admin.example.com"})
    )
    assert table.routes[1].cors == CorsPolicy(frozenset({"https://one.example"}))


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


def cors_table(*routes: str) -> RoutingTable:
    """Like :func:`table_of`, with "METHOD /path cors" entries (cors is YAML, or "-" for none)."""
    listed = ""
    for entry in routes:
        method, path, cors = entry.split(" ", 2)
        cors_key = "" if cors == "-" else f", cors: {cors}"
        methods = method.replace("|", ", ")
        listed += f"  - {{path: '{path}', method: [{methods}], function: f{cors_key}}}\n"
    return parse(f"{CORS_FUNCTIONS}{listed}")


ANY_ORIGIN_POLICY = CorsPolicy(frozenset({"*"}))
APP_POLICY = CorsPolicy(frozenset({"https://app.example.com"}))


def test_preflight_finds_the_policy_and_the_methods_of_the_path() -> None:
    table = cors_table("GET /items/{id} true", "PUT|DELETE /items/{key} true", "POST /items -")

    assert table.preflight("/items/3", "PUT") == (
        ANY_ORIGIN_POLICY,
        frozenset({"GET", "HEAD", "PUT", "DELETE"}),
    )
    assert table.preflight("/items/3/", "delete") is not None  # same matching as match()


def test_preflight_expands_any_to_the_standard_methods() -> None:
    table = cors_table("ANY /files/{proxy+} ['https://app.example.com']")

    assert table.preflight("/files/a/b", "PATCH") == (APP_POLICY, HTTP_METHODS)


def test_preflight_for_a_route_without_cors_is_none() -> None:
    table = cors_table("GET /open true", "POST /open -", "GET /closed -")

    assert table.preflight("/closed", "GET") is None
    assert table.preflight("/open", "POST") is None


def test_preflight_for_an_unknown_path_or_an_unserved_method_is_none() -> None:
    table = cors_table("GET /a true")

    assert table.preflight("/nope", "GET") is None
    assert table.preflight("/a", "DELETE") is None
    assert table.preflight("/a", "BREW") is None


def test_preflight_advertises_only_methods_served_under_the_same_policy() -> None:
    # The specific route serves GET with another policy; the catch-all has no CORS at all.
    table = cors_table(
        "GET|POST /users/{id} ['https://app.example.com']",
        "DELETE /users/{id} true",
        "ANY /{proxy+} -",
    )

    assert table.preflight("/users/7", "POST") == (
        APP_POLICY,
        frozenset({"GET", "HEAD", "POST"}),
    )
    assert table.preflight("/users/7", "DELETE") == (ANY_ORIGIN_POLICY, frozenset({"DELETE"}))
    assert table.preflight("/users/7", "PUT") is None


def test_match_still_routes_plain_options_requests() -> None:
    table = cors_table("OPTIONS|GET /a true")

    assert table.match("OPTIONS", "/a").route.methods == frozenset({"OPTIONS", "GET"})
    assert table.preflight("/a", "GET") == (
        ANY_ORIGIN_POLICY,
        frozenset({"GET", "HEAD", "OPTIONS"}),
    )


# --- resources --------------------------------------------------------------------------------


def test_resources_declare_buckets_and_tables() -> None:
    table = parse(
        """
        resources:
          buckets: [uploads, reports.2026]
          tables:
            orders:
              KeySchema: [{AttributeName: id, KeyType: HASH}]
              AttributeDefinitions:
                - {AttributeName: id, AttributeType: S}
                - {AttributeName: user, AttributeType: S}
              GlobalSecondaryIndexes:
                - IndexName: by-user
                  KeySchema: [{AttributeName: user, KeyType: HASH}]
                  Projection: {ProjectionType: ALL}
        """
    )

    assert table.resources.buckets == ("uploads", "reports.2026")
    (orders,) = table.resources.tables
    assert orders.name == "orders"
    assert orders.properties["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    gsis = orders.properties["GlobalSecondaryIndexes"]
    assert isinstance(gsis, list)
    assert gsis[0]["IndexName"] == "by-user"


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
