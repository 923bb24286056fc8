"""Reading routing.yaml: what each key means, the defaults, CORS origins and resources.
The errors a bad file gets are in `test_routing_file_validation`."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgelambda.errors import RoutingConfigError
from edgelambda.routing import AuthMode, CorsPolicy, FunctionSpec, PayloadVersion, Route
from edgelambda.routing_file import load_routing
from tests.routing_tables import BASE_DIR, CORS_FUNCTIONS, parse, table_of

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


def test_freeze_after_comes_from_the_function_then_defaults_and_may_be_zero() -> None:
    table = parse("""\
        defaults:
          freeze_after: 2
        functions:
          a: {handler: a.handler, freeze_after: 0}
          b: {handler: b.handler, freeze_after: 0.5}
          c: {handler: c.handler}
        routes: []
        """)
    assert table.functions["a"].freeze_after_s == 0.0  # never frozen
    assert table.functions["b"].freeze_after_s == 0.5
    assert table.functions["c"].freeze_after_s == 2.0
    assert parse("functions:\n  d: {handler: d.handler}\n").functions["d"].freeze_after_s is None


def test_code_paths_resolve_against_base_dir_unless_absolute() -> None:
    # An absolute path must still be inside base_dir (test_routing_file_validation).
    table = parse("""\
        functions:
          rel: {handler: app.handler, code: src/rel}
          abs: {handler: app.handler, code: /srv/app/code/abs}
        """)

    assert table.functions["rel"].code_dir == Path("/srv/app/src/rel")
    assert table.functions["abs"].code_dir == Path("/srv/app/code/abs")


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


# --- CORS -------------------------------------------------------------------------------------


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


def test_can_invoke_lists_the_functions_a_function_may_call() -> None:
    table = parse(
        """
        functions:
          orders: {handler: app.handler, can_invoke: [billing, orders]}
          billing: {handler: app.handler, can_invoke: []}
          reports: {handler: app.handler}
        """
    )

    assert table.functions["orders"].can_invoke == frozenset({"billing", "orders"})
    assert table.functions["billing"].can_invoke == frozenset()  # explicitly none
    assert table.functions["reports"].can_invoke is None  # not set: the mode decides
