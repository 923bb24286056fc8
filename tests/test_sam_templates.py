"""The eight real SAM templates of ``../shared/sam-templates`` convert to what its SOURCES.md
lists: functions, routes (method, path, payload), schedules, tables, buckets, warnings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from edgelambda.cfn_yaml import load_template
from edgelambda.errors import RouteNotFound
from edgelambda.routing_file import parse_routing
from edgelambda.sam_import import Conversion, ImportOptions, convert, render

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = Path(
    os.environ.get("EDGELAMBDA_SAM_TEMPLATES_DIR") or REPO.parent / "shared" / "sam-templates"
)
pytestmark = pytest.mark.skipif(
    not TEMPLATES.is_dir(),
    reason=f"the SAM templates are not at {TEMPLATES} (EDGELAMBDA_SAM_TEMPLATES_DIR)",
)
ACCOUNT = "123456789012"


def converted(name: str, **overrides: str) -> Conversion:
    path = TEMPLATES / name / "template.yaml"
    if not path.exists():
        path = TEMPLATES / name / "sam" / "template.yaml"
    template = load_template(path.read_text(), str(path))
    options = ImportOptions(stack="sam-app", account_id=ACCOUNT, parameter_overrides=overrides)
    return convert(
        template, source=str(path), template_dir=path.parent, base_dir=path.parent, options=options
    )


def routes(conversion: Conversion) -> set[tuple[str, str, str, str]]:
    """(method, path, function, payload) of each route."""
    return {
        (r["method"], r["path"], r["function"], r["payload"]) for r in conversion.document["routes"]
    }


def function(conversion: Conversion, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = conversion.document["functions"][name]
    return spec


def tables(conversion: Conversion) -> dict[str, Any]:
    found: dict[str, Any] = conversion.document.get("resources", {}).get("tables", {})
    return found


def buckets(conversion: Conversion) -> list[str]:
    found: list[str] = conversion.document.get("resources", {}).get("buckets", [])
    return found


def warnings_about(conversion: Conversion, key_start: str) -> list[str]:
    return [w for w in conversion.warnings if w.startswith(key_start)]


def hash_key(table: dict[str, Any]) -> tuple[str, str]:
    (name,) = [k["AttributeName"] for k in table["KeySchema"] if k["KeyType"] == "HASH"]
    (kind,) = [
        a["AttributeType"] for a in table["AttributeDefinitions"] if a["AttributeName"] == name
    ]
    return name, kind


def test_web_backend_with_connectors() -> None:
    result = converted("aws-sam-web-conn")
    assert set(result.document["functions"]) == {
        "getAllItemsFunction",
        "getByIdFunction",
        "putItemFunction",
    }
    get_all = function(result, "getAllItemsFunction")
    assert get_all["handler"] == "src/handlers/get_all_items.getAllItemsHandler"
    assert get_all["code"] == "."  # no CodeUri: the template's directory
    assert (get_all["runtime"], get_all["memory"], get_all["timeout"]) == ("python3.12", 128, 100)
    assert get_all["environment"] == {"SAMPLE_TABLE": "sam-app-SampleTable"}
    for name, handler in (
        ("getByIdFunction", "src/handlers/get_by_id.getByIdHandler"),
        ("putItemFunction", "src/handlers/put_item.putItemHandler"),
    ):
        assert function(result, name) == {**get_all, "handler": handler}
    assert routes(result) == {
        ("GET", "/", "getAllItemsFunction", "1.0"),
        ("GET", "/{id}", "getByIdFunction", "1.0"),
        ("POST", "/", "putItemFunction", "1.0"),
    }
    assert {r["auth"] for r in result.document["routes"]} == {"none"}  # no authorizer
    assert set(tables(result)) == {"sam-app-SampleTable"}
    assert hash_key(tables(result)["sam-app-SampleTable"]) == ("id", "S")
    assert buckets(result) == []
    assert "schedule" not in get_all
    # Only the three connectors (IAM wiring) are reported.
    assert len(result.warnings) == 3
    assert all("AWS::Serverless::Connector" in w for w in result.warnings)


def test_powertools_rest_proxy() -> None:
    result = converted("powertools-rest-proxy")
    api = function(result, "ApiFunction")
    assert api["handler"] == "getting_started_rest_api_resolver.lambda_handler"
    assert api["code"] == "../src"  # beside the template's directory, as CodeUri says
    assert (api["runtime"], api["timeout"], api["memory"]) == ("python3.12", 5, 128)
    assert api["environment"] == {
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_LOGGER_SAMPLE_RATE": "0.1",  # a YAML float, as text
        "POWERTOOLS_LOGGER_LOG_EVENT": "true",  # a YAML bool, as CloudFormation writes it
        "POWERTOOLS_SERVICE_NAME": "example",
    }
    assert routes(result) == {("ANY", "/{proxy+}", "ApiFunction", "1.0")}
    (route,) = result.document["routes"]
    assert route["cors"] == ["https://example.com"]  # Globals.Api.Cors, quotes removed
    assert warnings_about(result, "Resources.ServerlessRestApi.Properties.BinaryMediaTypes")
    (cors,) = warnings_about(result, "Resources.ServerlessRestApi.Properties.Cors")
    assert "AllowHeaders, MaxAge" in cors
    template_dir = TEMPLATES / "powertools-rest-proxy" / "sam"
    table = parse_routing(
        render(result, source="template.yaml"),
        source="routing.yaml",
        base_dir=template_dir,
        code_root=template_dir.parent,
    )
    # The preflight is answered with the configured origin; the greedy path does not take /.
    preflight = table.preflight("/todos", "GET")
    assert preflight is not None
    assert preflight[0].origins == frozenset({"https://example.com"})
    assert table.match("GET", "/todos/1").route.function == "ApiFunction"
    with pytest.raises(RouteNotFound):
        table.match("GET", "/")
    assert tables(result) == {}
    assert buckets(result) == []


def test_lambda_mock() -> None:
    result = converted("lambda-mock")
    sample = function(result, "SampleLambda")
    assert sample["handler"] == "app.lambda_handler"
    assert sample["code"] == "src/sample_lambda"
    assert (sample["runtime"], sample["memory"], sample["timeout"]) == ("python3.9", 256, 3)
    assert sample["max_concurrency"] == 1  # ReservedConcurrentExecutions
    assert sample["environment"] == {
        "DYNAMODB_TABLE_NAME": "sam-app-SampleTable",
        "S3_BUCKET_NAME": f"sam-app-{ACCOUNT}",
    }
    assert routes(result) == {
        ("POST", "/SampleLambda/{docType}/{customerId}", "SampleLambda", "1.0")
    }
    assert hash_key(tables(result)["sam-app-SampleTable"]) == ("PK", "S")
    assert buckets(result) == [f"sam-app-{ACCOUNT}"]
    assert warnings_about(result, "Resources.SampleLambda.Properties.Architectures")


def test_api_with_two_local_layers() -> None:
    result = converted("apigw-lambda-layer")
    demo = function(result, "PythonTestDemo")
    assert demo["code"] == "src/sampleLambda"
    assert (demo["runtime"], demo["timeout"]) == ("python3.9", 30)
    assert demo["layers"] == ["src/sampleCodeLayer", "src/sampleSchemaLayer"]  # in order
    assert routes(result) == {("GET", "/hello/lambda/layers", "PythonTestDemo", "1.0")}
    assert tables(result) == {}
    assert buckets(result) == []
    assert result.warnings == (
        "Resources.PythonTestDemo.Properties.Architectures: arm64: functions run on this "
        "machine's x86_64",
    )


def test_http_api_with_an_authorizer_and_three_tables() -> None:
    result = converted("serverless-rest-api-http")
    assert set(result.document["functions"]) == {
        "LocationsFunction",
        "ResourcesFunction",
        "BookingsFunction",
        "AuthorizerFunction",
    }
    locations = function(result, "LocationsFunction")
    assert locations["handler"] == "src/api/locations.lambda_handler"
    assert (locations["runtime"], locations["memory"], locations["timeout"]) == (
        "python3.12",
        128,
        100,
    )
    assert locations["environment"] == {
        "LOCATIONS_TABLE": "sam-app-LocationsTable",
        "AWS_EMF_NAMESPACE": "sam-app",
        "AWS_XRAY_TRACING_NAME": "sam-app",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    }
    authorizer = function(result, "AuthorizerFunction")
    assert authorizer["environment"] == {
        "AWS_XRAY_TRACING_NAME": "sam-app",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    }
    for unresolvable in ("USER_POOL_ID", "APPLICATION_CLIENT_ID", "ADMIN_GROUP_NAME"):
        assert unresolvable not in authorizer["environment"]
        (warning,) = warnings_about(
            result, f"Resources.AuthorizerFunction.Properties.Environment.Variables.{unresolvable}"
        )
        assert "Fn::ImportValue" in warning
        assert "left unset" in warning
    expected = {
        ("GET", "/locations", "LocationsFunction"),
        ("PUT", "/locations", "LocationsFunction"),
        ("GET", "/locations/{locationid}", "LocationsFunction"),
        ("DELETE", "/locations/{locationid}", "LocationsFunction"),
        ("GET", "/locations/{locationid}/resources", "ResourcesFunction"),
        ("PUT", "/locations/{locationid}/resources", "ResourcesFunction"),
        ("GET", "/locations/{locationid}/resources/{resourceid}", "ResourcesFunction"),
        ("DELETE", "/locations/{locationid}/resources/{resourceid}", "ResourcesFunction"),
        ("GET", "/locations/{locationid}/resources/{resourceid}/bookings", "BookingsFunction"),
        ("GET", "/users/{userid}/bookings", "BookingsFunction"),
        ("PUT", "/users/{userid}/bookings", "BookingsFunction"),
        ("GET", "/users/{userid}/bookings/{bookingid}", "BookingsFunction"),
        ("DELETE", "/users/{userid}/bookings/{bookingid}", "BookingsFunction"),
    }
    assert routes(result) == {(*route, "2.0") for route in expected}
    # The API's default Lambda authorizer cannot run here: every route asks for the box's
    # login instead, never opened up.
    assert {r["auth"] for r in result.document["routes"]} == {"jwt"}
    (auth,) = warnings_about(result, "Resources.HttpApi.Properties.Auth")
    assert "authorizer LambdaAuthorizer" in auth
    assert {r["cors"][0] for r in result.document["routes"]} == {"*"}
    assert set(tables(result)) == {
        "sam-app-LocationsTable",
        "sam-app-ResourcesTable",
        "sam-app-BookingsTable",
    }
    assert hash_key(tables(result)["sam-app-LocationsTable"]) == ("locationid", "S")
    assert hash_key(tables(result)["sam-app-ResourcesTable"]) == ("resourceid", "S")
    (by_location,) = tables(result)["sam-app-ResourcesTable"]["GlobalSecondaryIndexes"]
    assert by_location["IndexName"] == "locationidGSI"
    bookings = tables(result)["sam-app-BookingsTable"]
    assert hash_key(bookings) == ("bookingid", "S")
    assert {"AttributeName": "starttimeepochtime", "AttributeType": "N"} in bookings[
        "AttributeDefinitions"
    ]
    ranges = [
        key["AttributeName"]
        for index in bookings["GlobalSecondaryIndexes"]
        for key in index["KeySchema"]
        if key["KeyType"] == "RANGE"
    ]
    assert "starttimeepochtime" in ranges
    assert {index["IndexName"] for index in bookings["GlobalSecondaryIndexes"]} == {
        "useridGSI",
        "bookingsByUserByTimeGSI",
        "bookingsByResourceByTimeGSI",
    }
    assert buckets(result) == []
    assert len([w for w in result.warnings if "AWS::CloudWatch::Alarm" in w]) == 12
    for ignored in ("AlarmsKMSKey", "AlarmsTopic", "ApplicationDashboard", "AccessLogs"):
        assert warnings_about(result, f"Resources.{ignored}: ")
    assert warnings_about(result, "Resources.AuthorizerFunctionExecutionRole: AWS::IAM::Role")


MONETIZATION_PARAMETERS = {
    "ProjectName": "demo",
    "AccessLogsBucketName": "demo-access-logs",
    "GlueDatabaseName": "demo_glue",
}


def test_monetization_with_its_parameters_supplied() -> None:
    result = converted("apigw-monetization", **MONETIZATION_PARAMETERS)
    names = [
        "QueryUsageFunction",
        "GenerateReportFunction",
        "CompileReportFunction",
        "ManagePricingFunction",
        "GetReportsFunction",
    ]
    assert list(result.document["functions"]) == names
    for name in names:
        spec = function(result, name)
        assert (spec["runtime"], spec["memory"], spec["timeout"]) == ("python3.13", 256, 300)
        assert spec["code"] == "src"
        assert spec["environment"] == {
            "PRICING_TABLE": "demo-pricing-plans",
            "REPORTS_TABLE": "demo-reports",
            "REPORTS_BUCKET": f"demo-reports-{ACCOUNT}",
            "GLUE_DATABASE": "demo_glue",
            "ACCESS_LOGS_BUCKET": "demo-access-logs",
            "PROJECT_NAME": "demo",
        }
        assert "schedule" not in spec  # the state machine's schedule is nobody's
    assert function(result, "QueryUsageFunction")["handler"] == "query_usage.handler"
    assert routes(result) == {
        ("GET", "/pricing", "ManagePricingFunction", "1.0"),
        ("POST", "/pricing", "ManagePricingFunction", "1.0"),
        ("GET", "/pricing/{planId}", "ManagePricingFunction", "1.0"),
        ("PUT", "/pricing/{planId}", "ManagePricingFunction", "1.0"),
        ("DELETE", "/pricing/{planId}", "ManagePricingFunction", "1.0"),
        ("GET", "/reports", "GetReportsFunction", "1.0"),
        ("GET", "/reports/{reportId}", "GetReportsFunction", "1.0"),
    }
    assert set(tables(result)) == {"demo-pricing-plans", "demo-reports"}
    assert hash_key(tables(result)["demo-pricing-plans"]) == ("planId", "S")
    (index,) = tables(result)["demo-reports"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "customer-period-index"
    assert buckets(result) == [f"demo-reports-{ACCOUNT}", f"demo-athena-results-{ACCOUNT}"]
    (machine,) = warnings_about(result, "Resources.ReportWorkflow")
    assert "AWS::Serverless::StateMachine" in machine
    assert "Schedule" in machine
    assert warnings_about(result, "Resources.QueryUsageFunction.Properties.Policies")
    assert not warnings_about(result, "Parameters.")


def test_monetization_without_its_parameters_warns_and_leaves_names_unset() -> None:
    result = converted("apigw-monetization")
    for parameter in MONETIZATION_PARAMETERS:
        assert warnings_about(result, f"Parameters.{parameter}: no value")
    # Tables and buckets named after ProjectName cannot be named; the functions still serve.
    assert tables(result) == {}
    assert buckets(result) == []
    assert function(result, "GetReportsFunction").get("environment", {}) == {}
    assert warnings_about(result, "Globals.Function.Environment.Variables.PROJECT_NAME")
    assert len(routes(result)) == 7


def test_rss_feed_schedule_and_what_cannot_be_served() -> None:
    result = converted("rss-filtered-feed-gen")
    lister = function(result, "ListSourcesFunction")
    assert (lister["handler"], lister["code"]) == ("index.handler", "lambda/list-sources")
    assert (lister["runtime"], lister["memory"], lister["timeout"]) == ("python3.11", 256, 60)
    assert lister["schedule"] == ["rate(1 hour)"]  # from the ScheduleExpression parameter
    assert lister["environment"] == {"DYNAMO_TABLE": "sam-app-SourcesTable"}  # no QUEUE_URL
    processor = function(result, "ProcessSourceFunction")
    assert (processor["memory"], processor["timeout"]) == (512, 60)
    assert "schedule" not in processor
    (bucket,) = buckets(result)
    assert processor["environment"] == {"S3_BUCKET": bucket}  # a name picked for it
    assert result.document["routes"] == []
    sources = tables(result)["sam-app-SourcesTable"]
    assert sources["KeySchema"] == [
        {"AttributeName": "source", "KeyType": "HASH"},
        {"AttributeName": "newfeedname", "KeyType": "RANGE"},
    ]
    assert sources["BillingMode"] == "PAY_PER_REQUEST"
    for unserved in (
        "ChannelQueue",
        "CloudFrontDistribution",
        "CloudFrontCachePolicy",
        "RssFeedOriginAccessControl",
        "CFHostnameCertificate",
        "R53CFCustomHostnameAlias",
        "RSSFeedS3BucketPolicy",
    ):
        assert len(warnings_about(result, f"Resources.{unserved}: ")) == 1, unserved
    assert warnings_about(result, "Resources.ProcessSourceFunction.Properties.Events.SQSEvent")
    for name in ("QUEUE_URL", "CHANNEL_QUEUE_URL"):
        assert any(f"Variables.{name}:" in w and "SQS" in w for w in result.warnings)
    for parameter in ("CloudFrontHostname", "R53HostedZoneId"):
        assert warnings_about(result, f"Parameters.{parameter}")


def test_http_api_default_route_and_inline_code() -> None:
    result = converted("http-api-inline-default")
    api = function(result, "ApiFunction")
    assert (api["handler"], api["runtime"]) == ("index.handler", "python3.9")
    assert (api["timeout"], api["memory"]) == (3, 128)  # Lambda's defaults
    assert "Hello World! This is the HTTP API" in api["inline_code"]
    assert "code" not in api
    assert routes(result) == {("ANY", "$default", "ApiFunction", "2.0")}
    assert result.warnings == ()
    table = parse_routing(
        render(result, source="template.yaml"), source="routing.yaml", base_dir=TEMPLATES
    )
    for method, path in (("GET", "/"), ("DELETE", "/any/path"), ("POST", "/a/b/c")):
        assert table.match(method, path).route.function == "ApiFunction"


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("aws-sam-web-conn", {}),
        ("powertools-rest-proxy", {}),
        ("lambda-mock", {}),
        ("apigw-lambda-layer", {}),
        ("serverless-rest-api-http", {}),
        ("apigw-monetization", MONETIZATION_PARAMETERS),
        ("apigw-monetization", {}),
        ("rss-filtered-feed-gen", {}),
        ("http-api-inline-default", {}),
    ],
)
def test_each_conversion_is_a_valid_routing_file(name: str, overrides: dict[str, str]) -> None:
    """What `import-sam` writes is read back by the routing file's own parser."""
    result = converted(name, **overrides)
    text = render(result, source=f"{name}/template.yaml")
    assert text.startswith(f"# Converted from the SAM template {name}/template.yaml")
    template_dir = (TEMPLATES / name).resolve()
    if name == "powertools-rest-proxy":
        template_dir = template_dir / "sam"
    table = parse_routing(
        text, source="routing.yaml", base_dir=template_dir, code_root=template_dir.parent
    )
    assert set(table.functions) == set(result.document["functions"])
    assert len(table.routes) == len(result.document["routes"])
    assert len(table.resources.tables) == len(tables(result))
