"""A SAM function's events: ``Api`` and ``HttpApi`` events as routes of the API they belong
to (its auth and CORS), ``Schedule`` and ``ScheduleV2`` events as schedules; every other event
source a warning (pure).

Where AWS would guard a route (an authorizer, an API key, a resource policy, an OpenAPI
definition the box does not read), the route takes the box's own JWT login: an import never
opens up a route. Sources: AWS SAM's ``Api``, ``HttpApi``, ``ApiFunctionAuth`` and
``Schedule``/``ScheduleV2`` event specifications, and ``AWS::Serverless::Api``/``HttpApi``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgelambda.cfn_intrinsics import is_intrinsic
from edgelambda.errors import ScheduleError
from edgelambda.routing import ANY_METHOD, DEFAULT_ROUTE, HTTP_METHODS, route_shape
from edgelambda.sam_values import TemplateValues, mapping, merge_globals
from edgelambda.schedule import parse_schedule

__all__ = ["IMPLICIT_APIS", "EventReader"]

# The API an event without RestApiId / ApiId belongs to, which SAM creates.
IMPLICIT_APIS = {"Api": "ServerlessRestApi", "HttpApi": "ServerlessHttpApi"}
_PAYLOADS = {"Api": "1.0", "HttpApi": "2.0"}
_SCHEDULE_KEYS = {"Schedule": "Schedule", "ScheduleV2": "ScheduleExpression"}
# API properties with no local meaning that need no warning.
_QUIET_API_KEYS = frozenset(
    {
        "StageName", "Name", "Description", "TracingEnabled", "OpenApiVersion", "Tags",
        "EndpointConfiguration", "MethodSettings", "AccessLogSetting", "AccessLogSettings",
        "CacheClusterEnabled", "CacheClusterSize", "CanarySetting", "FailOnWarnings",
        "DefaultRouteSettings", "RouteSettings", "StageVariables", "Variables",
        "PropagateTags", "MinimumCompressionSize", "Mode", "AlwaysDeploy",
        "DisableExecuteApiEndpoint",
    }
)  # fmt: skip
_DEFINITION_KEYS = frozenset({"DefinitionBody", "DefinitionUri"})
_JWT_INSTEAD = "takes the box's JWT login instead"
# What in an Auth decides whether AWS guards a route (the rest is how: no local meaning).
_GUARD_KEYS = frozenset({"Authorizer", "DefaultAuthorizer", "ApiKeyRequired", "ResourcePolicy"})


@dataclass(frozen=True)
class _Api:
    """What an API gives its routes: what guards them on AWS, the CORS origins, the payload."""

    guards: frozenset[str]  # "authorizer", "api key", "resource policy", "definition"
    cors: tuple[str, ...] | None
    payload: str


@dataclass
class EventReader:
    """Reads functions' events; keeps the routes (first come, first served) and the APIs."""

    values: TemplateValues
    api_resources: Mapping[str, tuple[str, dict[str, Any]]]  # name -> (event type, properties)
    globals: Mapping[str, Any]
    routes: list[dict[str, Any]] = field(default_factory=list)
    _apis: dict[str, _Api] = field(default_factory=dict)
    _claimed: list[tuple[tuple[object, ...], frozenset[str], str]] = field(default_factory=list)

    def read(self, function: str, key: str, events: Any) -> list[str]:
        """Add ``function``'s routes; its schedules, returned."""
        if events is not None and not isinstance(events, dict):
            self.values.warn(key, "must be a mapping of events; ignored")
            return []
        schedules = []
        for name, event in mapping(events).items():
            event_type = mapping(event).get("Type")
            raw = mapping(mapping(event).get("Properties"))
            if event_type in _PAYLOADS:
                self._route(function, f"{key}.{name}", str(event_type), raw)
            elif event_type in _SCHEDULE_KEYS:
                schedules.extend(self._schedule(f"{key}.{name}", str(event_type), raw))
            else:
                self.values.warn(
                    f"{key}.{name}",
                    f"{event_type} events are not served locally; the function stays invokable",
                )
        return schedules

    # -- routes ----------------------------------------------------------------------------

    def _route(self, function: str, key: str, event_type: str, raw: dict[str, Any]) -> None:
        raw = dict(raw)
        # The API is named by its logical id; a Ref to it has no local value.
        api = self._api_of(event_type, raw.pop("RestApiId", None) or raw.pop("ApiId", None))
        properties = self.values.resolved(f"{key}.Properties", raw)
        if any(name in raw and name not in properties for name in ("Path", "Method")):
            self.values.warn(key, "its Path or Method has no local value; the route is skipped")
            return
        path, method = properties.get("Path"), properties.get("Method")
        if event_type == "HttpApi" and path is None and method is None:
            path, method = DEFAULT_ROUTE, ANY_METHOD
        if path is None or method is None:
            self.values.warn(key, "a route needs Path and Method; skipped")
            return
        route: dict[str, Any] = {
            "path": str(path),
            "method": _method(str(method)),
            "function": function,
            "auth": self._auth(key, api, raw.get("Auth")),
            "payload": str(properties.get("PayloadFormatVersion", api.payload)),
        }
        if api.cors:
            route["cors"] = list(api.cors)
        if self._claim(key, route):
            self.routes.append(route)

    def _auth(self, key: str, api: _Api, raw_auth: Any) -> str:
        """``jwt`` where AWS would guard the route (its API's guards, less an authorizer the
        route turns off, plus its own), else ``none``."""
        if raw_auth is None:
            return "jwt" if api.guards else "none"
        auth = self._auth_values(f"{key}.Properties.Auth", raw_auth, f"the route {_JWT_INSTEAD}")
        if auth is None:
            return "jwt"
        guards = set(api.guards)
        authorizer = auth.get("Authorizer")
        if authorizer == "NONE":
            guards.discard("authorizer")
        elif authorizer is not None:
            guards.add("authorizer")
        if "ApiKeyRequired" in auth:
            guards = (guards | {"api key"}) if auth["ApiKeyRequired"] is True else guards
        if "ResourcePolicy" in auth:
            guards.add("resource policy")
        new = guards - api.guards
        if new:
            what = ", ".join(sorted(new)).replace("authorizer", f"authorizer {authorizer}")
            self.values.warn(
                f"{key}.Properties.Auth", f"{what} not applied locally: the route {_JWT_INSTEAD}"
            )
        return "jwt" if guards else "none"

    def _claim(self, key: str, route: Mapping[str, Any]) -> bool:
        """Whether ``route`` is valid and no earlier route serves its path and methods."""
        methods = frozenset({route["method"]})
        if route["method"] not in HTTP_METHODS | {ANY_METHOD}:
            self.values.warn(key, f"method {route['method']} is not served; the route is skipped")
            return False
        try:
            shape = route_shape(route["path"])
        except ValueError as exc:
            self.values.warn(key, f"{route['path']!r} {exc}; the route is skipped")
            return False
        for other_shape, other_methods, other_key in self._claimed:
            if other_shape == shape and methods & other_methods:
                self.values.warn(
                    key,
                    f"{route['method']} {route['path']} is already served by {other_key}; skipped",
                )
                return False
        self._claimed.append((shape, methods, key))
        return True

    # -- APIs ------------------------------------------------------------------------------

    def _api_of(self, event_type: str, reference: Any) -> _Api:
        """The API an event names (its implicit one when none), read once."""
        name = reference.get("Ref") if isinstance(reference, dict) else reference
        name = str(name) if name is not None else IMPLICIT_APIS[event_type]
        if name not in self._apis:
            declared_type, own = self.api_resources.get(name, (event_type, {}))
            self._apis[name] = self._api(name, declared_type, own)
        return self._apis[name]

    def _api(self, name: str, event_type: str, own: Mapping[str, Any]) -> _Api:
        key = f"Resources.{name}.Properties"
        merged = merge_globals(self.globals.get(event_type), own)
        cors_key = "Cors" if event_type == "Api" else "CorsConfiguration"
        for unknown in sorted(merged.keys() - _QUIET_API_KEYS - {"Auth", cors_key}):
            problem = "routes only come from function events" if unknown in _DEFINITION_KEYS else ""
            self.values.warn(f"{key}.{unknown}", problem or "not applied locally")
        guards = self._guards(f"{key}.Auth", merged.get("Auth"))
        if merged.keys() & _DEFINITION_KEYS:
            guards |= {"definition"}  # its OpenAPI definition may guard routes: stay closed
        cors = self._cors(f"{key}.{cors_key}", event_type, merged.get(cors_key))
        return _Api(frozenset(guards), cors, _PAYLOADS[event_type])

    def _guards(self, key: str, raw_auth: Any) -> set[str]:
        """What guards an API's routes on AWS, each warned about once."""
        if raw_auth is None:
            return set()
        auth = self._auth_values(key, raw_auth, f"each of its routes {_JWT_INSTEAD}")
        if auth is None:
            return {"auth"}
        found = {
            "authorizer": auth.get("DefaultAuthorizer") not in (None, "NONE"),
            "api key": auth.get("ApiKeyRequired") is True,
            "resource policy": bool(auth.get("ResourcePolicy")),
        }
        guards = {guard for guard, is_set in found.items() if is_set}
        if guards:
            named = f"authorizer {auth.get('DefaultAuthorizer')}" if found["authorizer"] else ""
            what = ", ".join(sorted(guards - {"authorizer"} | ({named} if named else set())))
            self.values.warn(key, f"{what} not applied locally: each route {_JWT_INSTEAD}")
        return guards

    def _auth_values(self, key: str, raw_auth: Any, outcome: str) -> dict[str, Any] | None:
        """The entries of an ``Auth`` that decide whether a route is guarded, resolved; None
        (warned) when one of them, or the whole, has no local value: then it is guarded."""
        if is_intrinsic(raw_auth):
            resolved = self.values.value(key, raw_auth, outcome)
            return resolved if isinstance(resolved, dict) else None
        auth = {}
        for name in _GUARD_KEYS & mapping(raw_auth).keys():
            value = self.values.value(f"{key}.{name}", raw_auth[name], outcome)
            if value is None:
                return None
            auth[name] = value
        return auth

    def _cors(self, key: str, event_type: str, raw: Any) -> tuple[str, ...] | None:
        """The allowed origins: a REST API's ``Cors`` (SAM writes the origin in single
        quotes) or an HTTP API's ``CorsConfiguration`` (true: any origin)."""
        cors = self.values.value(key, raw)
        if cors is None or cors is False:
            return None
        if cors is True and event_type == "HttpApi":
            return ("*",)
        origin_key = "AllowOrigin" if event_type == "Api" else "AllowOrigins"
        origins = cors.get(origin_key) if isinstance(cors, dict) else cors
        if isinstance(origins, str):
            origins = [origins]
        if not isinstance(origins, list) or not origins:
            self.values.warn(key, "no origins the box can read; no CORS")
            return None
        extras = sorted(set(mapping(cors)) - {origin_key, "AllowMethods"})
        if extras:
            self.values.warn(
                key, f"only the origins are applied; {', '.join(extras)} take the box's defaults"
            )
        return tuple(str(origin).strip().strip("'") for origin in origins)

    # -- schedules -------------------------------------------------------------------------

    def _schedule(self, key: str, event_type: str, raw: dict[str, Any]) -> list[str]:
        values = self.values
        expression_key = f"{key}.Properties.{_SCHEDULE_KEYS[event_type]}"
        expression = values.value(
            expression_key, raw.get(_SCHEDULE_KEYS[event_type]), "not scheduled"
        )
        if expression is None:
            return []
        state = values.value(f"{key}.Properties.State", raw.get("State", "ENABLED"))
        enabled = values.flag(f"{key}.Properties.Enabled", raw.get("Enabled", True), default=True)
        if not enabled or str(state).upper() == "DISABLED":
            values.warn(key, "the schedule is disabled; not scheduled")
            return []
        if "Input" in raw:
            values.warn(
                f"{key}.Properties.Input",
                "not passed locally; the function gets the Scheduled Event",
            )
        zone = values.value(
            f"{key}.Properties.ScheduleExpressionTimezone", raw.get("ScheduleExpressionTimezone")
        )
        if zone not in (None, "UTC", "Etc/UTC"):
            values.warn(
                f"{key}.Properties.ScheduleExpressionTimezone",
                f"{zone}: schedules run in UTC locally",
            )
        try:
            parse_schedule(str(expression).strip())
        except ScheduleError as exc:
            values.warn(key, f"{expression!r} is not served locally ({exc}); not scheduled")
            return []
        return [str(expression).strip()]


def _method(method: str) -> str:
    method = method.strip().upper()
    return ANY_METHOD if method in {"ANY", "*", "X-AMAZON-APIGATEWAY-ANY-METHOD"} else method
