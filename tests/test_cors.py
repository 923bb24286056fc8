"""CORS policy values and the headers they imply (pure; no HTTP layer)."""

from __future__ import annotations

import pytest

from edgelambda.cors import (
    DEFAULT_ALLOW_HEADERS,
    CorsPolicy,
    allowed_origin,
    is_preflight,
    normalize_origin,
    preflight_headers,
    response_headers,
)

APP = "https://app.example.com"
ANY = CorsPolicy(frozenset({"*"}))
LISTED = CorsPolicy(frozenset({APP, "http://localhost:3000"}))


def test_policy_defaults_are_api_gateways() -> None:
    assert ANY.allow_headers == DEFAULT_ALLOW_HEADERS
    assert "Authorization" in ANY.allow_headers
    assert ANY.max_age_s == 600
    assert ANY.is_any_origin
    assert not LISTED.is_any_origin


# --- allowed_origin ---------------------------------------------------------------------------


@pytest.mark.parametrize("origin", [APP, "https://evil.example", None])
def test_any_origin_policy_allows_star(origin: str | None) -> None:
    assert allowed_origin(ANY, origin) == "*"


def test_listed_policy_echoes_a_listed_origin() -> None:
    assert allowed_origin(LISTED, APP) == APP
    assert allowed_origin(LISTED, "http://localhost:3000") == "http://localhost:3000"


@pytest.mark.parametrize(
    "origin",
    [None, "", "null", "https://evil.example", "http://app.example.com", APP + ":8443", APP + "/"],
)
def test_listed_policy_refuses_other_origins(origin: str | None) -> None:
    assert allowed_origin(LISTED, origin) is None


# --- preflight_headers ------------------------------------------------------------------------


def test_preflight_for_any_origin() -> None:
    headers = preflight_headers(ANY, origin=APP, allowed_methods=frozenset({"POST", "GET"}))

    assert headers == (
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Methods", "GET, OPTIONS, POST"),
        ("Access-Control-Allow-Headers", ", ".join(DEFAULT_ALLOW_HEADERS)),
        ("Access-Control-Max-Age", "600"),
    )


def test_preflight_for_a_listed_origin_echoes_it_and_varies() -> None:
    headers = dict(
        preflight_headers(
            LISTED,
            origin=APP,
            allowed_methods=frozenset({"DELETE", "OPTIONS"}),
        )
    )

    assert headers["Access-Control-Allow-Origin"] == APP
    assert headers["Access-Control-Allow-Methods"] == "DELETE, OPTIONS"
    assert headers["Vary"] == "Origin"


@pytest.mark.parametrize("origin", [None, "https://evil.example"])
def test_preflight_from_a_refused_origin_is_empty(origin: str | None) -> None:
    assert preflight_headers(LISTED, origin=origin, allowed_methods=frozenset({"GET"})) == ()


def test_preflight_lists_the_policy_headers() -> None:
    policy = CorsPolicy(frozenset({"*"}), allow_headers=("Content-Type", "X-Trace"), max_age_s=5)

    headers = dict(preflight_headers(policy, origin=APP, allowed_methods=frozenset({"GET"})))

    assert headers["Access-Control-Allow-Headers"] == "Content-Type, X-Trace"
    assert headers["Access-Control-Max-Age"] == "5"


# --- response_headers -------------------------------------------------------------------------


def test_response_headers_for_any_origin() -> None:
    assert response_headers(ANY, APP) == (("Access-Control-Allow-Origin", "*"),)


def test_response_headers_for_a_listed_origin() -> None:
    assert response_headers(LISTED, APP) == (
        ("Access-Control-Allow-Origin", APP),
        ("Vary", "Origin"),
    )


@pytest.mark.parametrize("origin", [None, "https://evil.example"])
def test_response_headers_for_a_refused_origin_still_vary(origin: str | None) -> None:
    # A shared cache must not replay this answer to an origin the policy allows.
    assert response_headers(LISTED, origin) == (("Vary", "Origin"),)


# --- is_preflight -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "header", "expected"),
    [
        ("OPTIONS", "POST", True),
        ("options", "GET", True),
        ("OPTIONS", None, False),  # a plain OPTIONS request goes to an OPTIONS route
        ("OPTIONS", "", False),
        ("GET", "POST", False),
    ],
)
def test_is_preflight(method: str, header: str | None, expected: bool) -> None:
    assert is_preflight(method, header) is expected


# --- normalize_origin -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("HTTPS://App.Example.COM", "https://app.example.com"),
        (" http://localhost:3000 ", "http://localhost:3000"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("http://app.example.com:443", "http://app.example.com:443"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://10.0.0.7:8000", "http://10.0.0.7:8000"),
        ("capacitor://localhost", "capacitor://localhost"),
    ],
)
def test_normalize_origin_serializes_like_a_browser(text: str, expected: str) -> None:
    assert normalize_origin(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "app.example.com",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://app.example.com?q=1",
        "https://*.example.com",
        "https://user@app.example.com",
        "https://app.example.com:99999",
        "https://app.example.com:0",
        "https://",
        "null",
        "*",
        "",
    ],
)
def test_normalize_origin_refuses_what_is_not_an_origin(text: str) -> None:
    assert normalize_origin(text) is None
