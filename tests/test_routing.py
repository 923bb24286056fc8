"""Route matching: the most specific route wins, path parameters, 404 and 405, HEAD and ANY,
and the CORS preflight lookup."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgelambda.errors import MethodNotAllowed, RouteNotFound
from edgelambda.routing import (
    HTTP_METHODS,
    AuthMode,
    CorsPolicy,
    PayloadVersion,
    Route,
    RoutingTable,
    _bind,
    _method_rank,
    _split_request_path,
    compile_path,
)
from tests.routing_tables import CORS_FUNCTIONS, parse, table_of

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


_ORACLE_PATHS = ("/", "/a", "/a/b", "/a/{x}", "/{x}/b", "/{x}", "/{proxy+}", "/a/{proxy+}")
_ORACLE_REQUESTS = ("/", "//", "/a", "/a/", "/a//", "/a/b", "/a/b/", "/a/c", "/z/b", "/a/b/c", "/z")
_ORACLE_METHODS = (frozenset({"GET"}), frozenset({"POST"}), frozenset({"HEAD"}), frozenset({"ANY"}))


def _ranked_by_the_rules(routes: list[Route], method: str, path: str) -> Route | None:
    """Every route tried, none skipped: the most specific that fits the path (its segment
    kinds, left to right), then the one that takes the method best."""
    parts = _split_request_path(path)
    fitting = [
        ((tuple(s.kind.value for s in compile_path(r.path)), rank), index, r)
        for index, r in enumerate(routes)
        if parts is not None
        and _bind(compile_path(r.path), parts) is not None
        and (rank := _method_rank(r.methods, method)) is not None
    ]
    return min(fitting, key=lambda entry: entry[:2])[2] if fitting else None


@settings(max_examples=400, deadline=None)
@given(
    routes=st.lists(  # several methods to a route, and the same route twice, included
        st.tuples(
            st.lists(st.sampled_from(_ORACLE_METHODS), min_size=1, max_size=2),
            st.sampled_from(_ORACLE_PATHS),
        ),
        min_size=1,
        max_size=6,
    ),
    method=st.sampled_from(("GET", "POST", "HEAD", "DELETE")),
    path=st.sampled_from(_ORACLE_REQUESTS),
)
def test_the_route_matched_is_the_one_every_route_ranked_gives(
    routes: list[tuple[list[frozenset[str]], str]], method: str, path: str
) -> None:
    table_routes = [Route(p, frozenset().union(*methods), "f") for methods, p in routes]
    table = RoutingTable(functions={}, routes=tuple(table_routes))
    expected = _ranked_by_the_rules(table_routes, method, path)

    if expected is None:
        with pytest.raises((RouteNotFound, MethodNotAllowed)):
            table.match(method, path)
    else:
        assert table.match(method, path).route is expected


def test_a_table_can_be_built_directly() -> None:
    route = Route("/ping", frozenset({"GET"}), "f")
    table = RoutingTable(functions={}, routes=(route,))

    assert table.match("GET", "/ping").route is route
    assert (route.auth, route.payload) == (AuthMode.JWT, PayloadVersion.V1)


# --- CORS preflight ---------------------------------------------------------------------------


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


# --- the route index against a plain scan -----------------------------------------------------


def template(kinds: list[str], is_greedy: bool) -> str:
    """A route path from segment kinds: a literal as it is, "P" a parameter named by its
    position (names are unique in a path), then maybe {proxy+}."""
    segments = [f"{{p{i}}}" if kind == "P" else kind for i, kind in enumerate(kinds)]
    return "/" + "/".join([*segments, *(["{proxy+}"] if is_greedy else [])])


TEMPLATES = st.builds(
    template, st.lists(st.sampled_from(("a", "b", "P")), max_size=3), st.booleans()
)
REQUEST_PATHS = st.lists(st.sampled_from(("a", "b", "c", "")), max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)


def scanned(table: RoutingTable, method: str, path: str) -> tuple[str, dict[str, str]] | str:
    """What matching every route in turn gives (the matcher before the index): the route's
    path and its parameters, or the error's name."""
    parts = _split_request_path(path)
    candidates = [
        (route, params)
        for route in table.routes
        if parts is not None and (params := _bind(compile_path(route.path), parts)) is not None
    ]
    if not candidates:
        return "RouteNotFound"
    ranked = [
        ((tuple(s.kind.value for s in compile_path(route.path)), rank), route, params)
        for route, params in candidates
        if (rank := _method_rank(route.methods, method)) is not None
    ]
    if not ranked:
        return "MethodNotAllowed"
    _, route, params = min(ranked, key=lambda entry: entry[0])
    return route.path, params


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(("GET", "POST", "ANY")), TEMPLATES), max_size=8, unique=True
    ),
    st.sampled_from(("GET", "POST", "HEAD", "DELETE")),
    REQUEST_PATHS,
)
def test_the_route_index_matches_as_a_scan_of_every_route(
    routes: list[tuple[str, str]], method: str, path: str
) -> None:
    table = table_of(*(f"{m} {p}" for m, p in routes))
    expected = scanned(table, method, path)
    if isinstance(expected, str):
        with pytest.raises((RouteNotFound, MethodNotAllowed)) as caught:
            table.match(method, path)
        assert type(caught.value).__name__ == expected
    else:
        found = table.match(method, path)
        assert (found.route.path, dict(found.path_parameters)) == expected


def test_the_default_route_takes_what_no_other_route_does() -> None:
    table = table_of("GET /items/{id}", "ANY $default")

    assert table.match("GET", "/items/3").route.path == "/items/{id}"
    assert table.match("GET", "/").route.path == "$default"
    assert table.match("PUT", "/anything/at/all").route.path == "$default"
    # A path whose routes do not take the method goes to $default too, as on HTTP APIs,
    # where each route is one method and path.
    assert table.match("DELETE", "/items/3").route.path == "$default"
    assert table.match("DELETE", "/items/3").path_parameters == {}
