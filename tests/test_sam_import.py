"""SAM import without the real templates: CloudFormation's YAML, its intrinsic functions, and
each rule of the conversion on small templates written here."""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path
from typing import Any

import pytest

from edgelambda.cfn_intrinsics import Scope, pseudo_parameters, resolve
from edgelambda.cfn_yaml import load_template
from edgelambda.errors import RoutingConfigError, Unresolvable
from edgelambda.sam_import import Conversion, ImportOptions, convert, is_sam_text, parse_overrides

BASE = Path("/project")


def sam(text: str, **options: Any) -> Conversion:
    template = load_template(textwrap.dedent(text), "template.yaml")
    return convert(
        template,
        source="template.yaml",
        template_dir=BASE,
        base_dir=BASE,
        options=ImportOptions(**options),
    )


FUNCTION = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      Runtime: python3.12
"""


def function_with(properties: str, *, beside: str = "") -> str:
    """FUNCTION with more ``properties``, and more resources ``beside`` it."""
    return (
        FUNCTION
        + textwrap.indent(textwrap.dedent(properties), " " * 6)
        + textwrap.indent(textwrap.dedent(beside), " " * 2)
    )


# --- CloudFormation's YAML ------------------------------------------------------------------


def test_short_forms_read_as_long_forms_and_dates_stay_text() -> None:
    template = load_template(
        textwrap.dedent(
            """
            AWSTemplateFormatVersion: 2010-09-09
            Transform: [AWS::Serverless-2016-10-31]
            Outputs:
              A: !Ref Thing
              B: !GetAtt Table.Arn
              C: !Sub "${AWS::StackName}-x"
              D: !Join ["-", [a, !Ref B]]
              E: !If [IsProd, 1, 2]
              F: {"Fn::GetAtt": [Table, StreamArn]}
              Off: True
              On: yes
            """
        ),
        "t.yaml",
    )
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert template["Transform"] == ["AWS::Serverless-2016-10-31"]
    outputs = template["Outputs"]
    assert outputs["A"] == {"Ref": "Thing"}
    assert outputs["B"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert outputs["C"] == {"Fn::Sub": "${AWS::StackName}-x"}
    assert outputs["D"] == {"Fn::Join": ["-", ["a", {"Ref": "B"}]]}
    assert outputs["E"] == {"Fn::If": ["IsProd", 1, 2]}
    assert outputs["F"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert outputs["Off"] is True  # YAML 1.2 booleans: true/false, not on/off/yes/no
    assert outputs["On"] == "yes"


def test_broken_yaml_names_the_line() -> None:
    with pytest.raises(RoutingConfigError, match=r"t.yaml:3: \(syntax\)"):
        load_template("Resources:\n  A: 1\n B: [\n", "t.yaml")


# --- intrinsic functions --------------------------------------------------------------------

SCOPE = Scope(
    values={**pseudo_parameters(stack="app", region="eu-west-1", account_id="1"), "Env": "prod"},
    refs={"Table": "app-Table"},
    attributes={("Table", "Arn"): "arn:table"},
    unknown={"Queue": "Queue is an AWS::SQS::Queue"},
    conditions={"IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]}},
    mappings={"Sizes": {"prod": {"Memory": 512}}},
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"Fn::Sub": "${AWS::StackName}-${Env}-${Table}"}, "app-prod-app-Table"),
        ({"Fn::Sub": "${Table.Arn}/${!Literal}"}, "arn:table/${Literal}"),
        ({"Fn::Sub": ["${x}-${AWS::Region}", {"x": {"Ref": "Env"}}]}, "prod-eu-west-1"),
        ({"Fn::Join": [":", ["a", {"Ref": "Env"}]]}, "a:prod"),
        ({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}, "b"),
        ({"Fn::If": ["IsProd", "big", "small"]}, "big"),
        ({"Fn::Not": [{"Condition": "IsProd"}]}, False),
        ({"Fn::FindInMap": ["Sizes", {"Ref": "Env"}, "Memory"]}, 512),
        ({"Fn::Base64": "hi"}, "aGk="),
        ({"A": {"Ref": "AWS::NoValue"}, "B": 1}, {"B": 1}),
        ([{"Fn::If": ["IsProd", {"Ref": "AWS::NoValue"}, 1]}, 2], [2]),
    ],
)
def test_resolve(value: object, expected: object) -> None:
    assert resolve(value, SCOPE) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"Fn::ImportValue": "other-stack-Export"}, "other-stack-Export"),
        ({"Ref": "Queue"}, "AWS::SQS::Queue"),
        ({"Ref": "Nothing"}, "Nothing is not a parameter or resource"),
        ({"Fn::Sub": "${Queue}"}, "AWS::SQS::Queue"),
        ({"Fn::GetAtt": ["Table", "StreamArn"]}, "Table.StreamArn has no local value"),
        ({"Fn::If": ["Missing", 1, 2]}, "no condition named Missing"),
    ],
)
def test_what_has_no_local_value_is_unresolvable(value: object, problem: str) -> None:
    with pytest.raises(Unresolvable, match=problem):
        resolve(value, SCOPE)


# --- functions ----------------------------------------------------------------------------------


def test_lambda_defaults_and_the_template_directory_as_code() -> None:
    result = sam(FUNCTION)
    assert result.document["functions"]["Fn"] == {
        "handler": "app.handler",
        "runtime": "python3.12",
        "code": ".",
        "timeout": 3,
        "memory": 128,
    }
    assert result.document["routes"] == []
    assert result.warnings == ()


def test_code_paths_are_relative_to_where_the_routing_file_goes() -> None:
    template = load_template(function_with("CodeUri: src/fn\n"), "template.yaml")
    result = convert(
        template,
        source="template.yaml",
        template_dir=BASE / "sam",
        base_dir=BASE / "out",
        options=ImportOptions(),
    )
    assert result.document["functions"]["Fn"]["code"] == "../sam/src/fn"


def test_globals_primitives_yield_maps_merge_lists_add_up() -> None:
    result = sam(
        """
        Globals:
          Function:
            Runtime: python3.11
            Timeout: 10
            Environment:
              Variables: {SHARED: "1", OVERRIDDEN: global}
            Layers: [!Ref First]
        Resources:
          First:
            Type: AWS::Serverless::LayerVersion
            Properties: {ContentUri: layers/first}
          Second:
            Type: AWS::Serverless::LayerVersion
            Properties: {ContentUri: layers/second.zip}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              Handler: app.handler
              Timeout: 20
              Environment:
                Variables: {OVERRIDDEN: own, OWN: 2}
              Layers: [!Ref Second]
        """
    )
    spec = result.document["functions"]["Fn"]
    assert (spec["runtime"], spec["timeout"]) == ("python3.11", 20)
    assert spec["environment"] == {"SHARED": "1", "OVERRIDDEN": "own", "OWN": "2"}
    assert spec["layers"] == ["layers/first", "layers/second.zip"]


def test_an_own_variable_without_a_local_value_hides_the_global_one() -> None:
    result = sam(
        """
        Globals:
          Function:
            Environment: {Variables: {TOKEN: global}}
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              Handler: app.handler
              Runtime: python3.12
              Environment:
                Variables: {TOKEN: !ImportValue shared-token}
        """
    )
    assert "environment" not in result.document["functions"]["Fn"]
    (warning,) = result.warnings
    assert warning.startswith("Resources.Fn.Properties.Environment.Variables.TOKEN:")
    assert "left unset" in warning


def test_concurrency_memory_and_provisioned_warm_containers() -> None:
    result = sam(
        function_with(
            """
            MemorySize: 512
            ReservedConcurrentExecutions: 4
            ProvisionedConcurrencyConfig: {ProvisionedConcurrentExecutions: 2}
            """
        )
    )
    spec = result.document["functions"]["Fn"]
    assert (spec["memory"], spec["max_concurrency"], spec["min_warm"]) == (512, 4, 2)


def test_inline_code_and_remote_code() -> None:
    result = sam(
        """
        Resources:
          Inline:
            Type: AWS::Serverless::Function
            Properties:
              Handler: index.handler
              Runtime: python3.12
              InlineCode: "def handler(event, context):\\n    return 1\\n"
          Remote:
            Type: AWS::Serverless::Function
            Properties:
              Handler: app.handler
              Runtime: python3.12
              CodeUri: s3://bucket/code.zip
        """
    )
    assert result.document["functions"]["Inline"]["inline_code"].startswith("def handler")
    assert "Remote" not in result.document["functions"]
    assert result.warnings == (
        "Resources.Remote.Properties.CodeUri: not a local directory; the function is skipped",
    )


def test_container_image_functions() -> None:
    result = sam(
        """
        Resources:
          Built:
            Type: AWS::Serverless::Function
            Properties:
              PackageType: Image
              ImageConfig: {Command: ["app.handler"]}
            Metadata:
              DockerContext: ./images/hello
              Dockerfile: Dockerfile.lambda
          Pulled:
            Type: AWS::Serverless::Function
            Properties:
              PackageType: Image
              ImageUri: registry.example/hello:1
        """
    )
    functions = result.document["functions"]
    assert functions["Built"]["image"] == "./images/hello"
    assert functions["Built"]["dockerfile"] == "Dockerfile.lambda"
    assert functions["Built"]["handler"] == "app.handler"
    assert functions["Pulled"]["image"] == "registry.example/hello:1"
    assert "handler" not in functions["Pulled"]  # the image's own CMD names it


def test_a_function_without_handler_is_an_error() -> None:
    with pytest.raises(RoutingConfigError, match=r"Resources.Fn.Properties: .*Handler"):
        sam(
            """
            Resources:
              Fn:
                Type: AWS::Serverless::Function
                Properties: {Runtime: python3.12}
            """
        )


def test_a_layer_from_another_account_is_skipped_with_a_warning() -> None:
    result = sam(function_with("Layers: [arn:aws:lambda:us-east-1:1:layer:shared:3]\n"))
    assert "layers" not in result.document["functions"]["Fn"]
    (warning,) = result.warnings
    assert "layer:shared:3 is not a layer of this template; skipped" in warning


# --- events -----------------------------------------------------------------------------------


def events(text: str, beside: str = "") -> Conversion:
    """FUNCTION with the ``Events`` in ``text``, and more resources ``beside`` it."""
    listed = "Events:\n" + textwrap.indent(textwrap.dedent(text), " " * 2)
    return sam(function_with(listed, beside=beside))


def test_rest_and_http_api_routes() -> None:
    result = events(
        """
        Rest:
          Type: Api
          Properties: {Path: "/items/{id}", Method: get}
        Http:
          Type: HttpApi
          Properties: {Path: /things, Method: post}
        HttpV1:
          Type: HttpApi
          Properties: {Path: /old, Method: any, PayloadFormatVersion: "1.0"}
        Catchall:
          Type: HttpApi
        """
    )
    assert result.document["routes"] == [
        {
            "path": "/items/{id}",
            "method": "GET",
            "function": "Fn",
            "auth": "none",
            "payload": "1.0",
        },
        {"path": "/things", "method": "POST", "function": "Fn", "auth": "none", "payload": "2.0"},
        {"path": "/old", "method": "ANY", "function": "Fn", "auth": "none", "payload": "1.0"},
        {"path": "$default", "method": "ANY", "function": "Fn", "auth": "none", "payload": "2.0"},
    ]


def test_a_route_served_twice_keeps_the_first() -> None:
    result = events(
        """
        One:
          Type: Api
          Properties: {Path: "/a/{x}", Method: GET}
        Two:
          Type: HttpApi
          Properties: {Path: "/a/{y}", Method: get}
        Rest:
          Type: Api
          Properties: {Path: "/a/{z}", Method: ANY}
        """
    )
    # ANY beside GET is no clash: as on API Gateway, GET goes to its own route.
    assert [route["path"] for route in result.document["routes"]] == ["/a/{x}", "/a/{z}"]
    (warning,) = result.warnings
    assert "GET /a/{y} is already served by Resources.Fn.Properties.Events.One" in warning


def test_authorizers_become_the_box_login_unless_a_route_opts_out() -> None:
    result = events(
        """
        Protected:
          Type: Api
          Properties: {Path: /private, Method: GET, RestApiId: !Ref Api}
        Open:
          Type: Api
          Properties: {Path: /public, Method: GET, RestApiId: !Ref Api, Auth: {Authorizer: NONE}}
        """,
        beside="""
          Api:
            Type: AWS::Serverless::Api
            Properties:
              StageName: prod
              Cors: "'*'"
              Auth:
                DefaultAuthorizer: Cognito
                Authorizers: {Cognito: {UserPoolArn: arn:pool}}
        """,
    )
    by_path = {route["path"]: route for route in result.document["routes"]}
    assert by_path["/private"]["auth"] == "jwt"
    assert by_path["/public"]["auth"] == "none"
    assert by_path["/private"]["cors"] == ["*"]
    (warning,) = result.warnings
    assert warning.startswith("Resources.Api.Properties.Auth: authorizer Cognito not applied")


def test_schedules_rate_cron_v2_and_disabled() -> None:
    result = events(
        """
        Hourly:
          Type: Schedule
          Properties: {Schedule: rate(1 hour)}
        Nightly:
          Type: ScheduleV2
          Properties: {ScheduleExpression: "cron(0 2 * * ? *)", ScheduleExpressionTimezone: UTC}
        Off:
          Type: Schedule
          Properties: {Schedule: rate(5 minutes), Enabled: false}
        OffV2:
          Type: ScheduleV2
          Properties: {ScheduleExpression: rate(5 minutes), State: DISABLED}
        WithInput:
          Type: Schedule
          Properties: {Schedule: rate(2 hours), Input: '{"a": 1}'}
        Once:
          Type: ScheduleV2
          Properties: {ScheduleExpression: "at(2030-01-01T00:00:00)"}
        """
    )
    spec = result.document["functions"]["Fn"]
    assert spec["schedule"] == ["rate(1 hour)", "cron(0 2 * * ? *)", "rate(2 hours)"]
    keys = [warning.partition(": ")[0] for warning in result.warnings]
    events_key = "Resources.Fn.Properties.Events"
    assert keys == [
        f"{events_key}.Off",
        f"{events_key}.OffV2",
        f"{events_key}.WithInput.Properties.Input",
        f"{events_key}.Once",
    ]


def test_other_event_sources_are_warned_about_once_each() -> None:
    result = events(
        """
        Queue:
          Type: SQS
          Properties: {Queue: !GetAtt Jobs.Arn}
        Upload:
          Type: S3
          Properties: {Bucket: !Ref Uploads, Events: s3:ObjectCreated:*}
        """,
        beside="""
          Jobs:
            Type: AWS::SQS::Queue
          Uploads:
            Type: AWS::S3::Bucket
        """,
    )
    assert result.warnings == (
        "Resources.Fn.Properties.Events.Queue: SQS events are not served locally; "
        "the function stays invokable",
        "Resources.Fn.Properties.Events.Upload: S3 events are not served locally; "
        "the function stays invokable",
        "Resources.Jobs: AWS::SQS::Queue is not served locally; skipped",
    )
    assert result.document["resources"] == {"buckets": ["sam-app-uploads"]}


# --- parameters, conditions, tables, buckets --------------------------------------------------


def test_parameters_overrides_and_conditions() -> None:
    text = """
        Parameters:
          Stage: {Type: String, Default: dev}
          Names: {Type: CommaDelimitedList, Default: "a,b"}
        Conditions:
          IsProd: !Equals [!Ref Stage, prod]
        Resources:
          Prod:
            Type: AWS::S3::Bucket
            Condition: IsProd
            Properties: {BucketName: !Sub "prod-${AWS::AccountId}"}
          Table:
            Type: AWS::Serverless::SimpleTable
            Properties:
              TableName: !Sub "${Stage}-${AWS::StackName}-things"
              PrimaryKey: {Name: pk, Type: Number}
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              Handler: app.handler
              Runtime: python3.12
              MemorySize: !If [IsProd, 1024, 256]
              Environment:
                Variables:
                  TABLE: !Ref Table
                  SECOND: !Select [1, !Ref Names]
        """
    dev = sam(text, stack="shop")
    assert dev.document["functions"]["Fn"]["memory"] == 256
    assert dev.document["functions"]["Fn"]["environment"] == {
        "TABLE": "dev-shop-things",
        "SECOND": "b",
    }
    table = dev.document["resources"]["tables"]["dev-shop-things"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "N"}]
    assert "buckets" not in dev.document["resources"]  # its condition does not hold
    prod = sam(text, parameter_overrides={"Stage": "prod", "Typo": "x"}, account_id="42")
    assert prod.document["functions"]["Fn"]["memory"] == 1024
    assert prod.document["resources"]["buckets"] == ["prod-42"]
    assert prod.warnings == (
        "parameter override Typo: the template has no such parameter; ignored",
    )


def test_dynamodb_tables_keep_what_create_table_takes() -> None:
    result = sam(
        """
        Resources:
          Orders:
            Type: AWS::DynamoDB::Table
            Properties:
              TableName: orders
              BillingMode: PAY_PER_REQUEST
              AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
              KeySchema: [{AttributeName: id, KeyType: HASH}]
              GlobalSecondaryIndexes:
                - IndexName: by-id
                  KeySchema: [{AttributeName: id, KeyType: HASH}]
                  Projection: {ProjectionType: ALL}
                  ContributorInsightsSpecification: {Enabled: true}
              PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}
              StreamSpecification: {StreamViewType: NEW_IMAGE}
          Files:
            Type: AWS::S3::Bucket
            Properties: {BucketName: Not_A_Bucket}
        """
    )
    table = result.document["resources"]["tables"]["orders"]
    assert set(table) == {
        "BillingMode",
        "AttributeDefinitions",
        "KeySchema",
        "GlobalSecondaryIndexes",
    }
    assert set(table["GlobalSecondaryIndexes"][0]) == {"IndexName", "KeySchema", "Projection"}
    assert result.warnings == (
        "Resources.Orders.Properties.StreamSpecification: table streams are not served "
        "locally; ignored",
        "Resources.Files: 'Not_A_Bucket' is not an S3 bucket name; skipped",
    )


def test_a_template_without_resources_is_an_error() -> None:
    with pytest.raises(RoutingConfigError, match="Resources: a template needs resources"):
        sam("AWSTemplateFormatVersion: '2010-09-09'\n")


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["A=1", "B=x=y"], {"A": "1", "B": "x=y"}),
        (["ParameterKey=Stage,ParameterValue=prod"], {"Stage": "prod"}),
        (["Empty="], {"Empty": ""}),
    ],
)
def test_parameter_overrides(items: list[str], expected: dict[str, str]) -> None:
    assert parse_overrides(items) == expected


def test_a_parameter_override_without_equals_is_refused() -> None:
    with pytest.raises(ValueError, match="'Stage' is not KEY=VALUE"):
        parse_overrides(["Stage"])


# --- what must never open a route or crash ----------------------------------------------------


@pytest.mark.parametrize(
    ("event_auth", "api_auth"),
    [
        ("{ApiKeyRequired: true}", "{}"),
        ("{Authorizer: NONE}", "{ApiKeyRequired: true}"),
        ("{Authorizer: NONE}", "{ResourcePolicy: {IpRangeWhitelist: [10.0.0.0/8]}}"),
        ("{}", "!If [IsProd, {DefaultAuthorizer: AWS_IAM}, !Ref AWS::NoValue]"),
        ("{AuthorizationScopes: [!ImportValue scopes]}", "{DefaultAuthorizer: Cognito}"),
    ],
)
def test_what_aws_would_guard_takes_the_box_login(event_auth: str, api_auth: str) -> None:
    result = events(
        f"""
        Get:
          Type: Api
          Properties: {{Path: /private, Method: GET, RestApiId: !Ref Api, Auth: {event_auth}}}
        """,
        beside=f"""
          Api:
            Type: AWS::Serverless::Api
            Properties:
              StageName: prod
              Auth: {api_auth}
        """,
    ).document["routes"]
    assert [route["auth"] for route in result] == ["jwt"]


def test_an_http_route_whose_path_has_no_local_value_is_skipped_not_a_catch_all() -> None:
    result = events(
        """
        Get:
          Type: HttpApi
          Properties: {Path: !ImportValue shared-path, Method: GET}
        """
    )
    assert result.document["routes"] == []
    assert any("Events.Get" in warning for warning in result.warnings)


@pytest.mark.parametrize(
    "text",
    [
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        "      Handler: a.b\n      Runtime: python3.12\n"
        "      Events: {E: {Type: Api, Properties: x}}\n",
        "Globals: {Function: 3}\n" + FUNCTION,
        "Globals: [1]\n" + FUNCTION,
        FUNCTION + "      Environment: [a]\n",
        function_with("ProvisionedConcurrencyConfig: {ProvisionedConcurrentExecutions: abc}\n"),
        "Resources:\n  T:\n    Type: AWS::Serverless::SimpleTable\n"
        "    Properties: {PrimaryKey: [x]}\n",
        "Resources:\n  L:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n"
        "      ContentUri: layer\n      LayerName: !ImportValue name\n",
        "Outputs: {A: {Fn::GetAtt: T.Arn}}\n" + FUNCTION + "      MemorySize: !Select [a, [1]]\n",
        FUNCTION + "      Environment: {Variables: {A: !Sub [x, [1]]}}\n",
        "Conditions: {A: !Condition A}\n" + FUNCTION + "      MemorySize: !If [A, 1, 2]\n",
        "Resources:\n  Fn: [not, a, resource]\n",
        FUNCTION + "      Events: [a, b]\n",
    ],
)
def test_odd_templates_give_warnings_or_a_clear_error_never_a_crash(text: str) -> None:
    """Each is either converted (with warnings) or refused naming the template: never a
    Python error out of the converter."""
    with contextlib.suppress(RoutingConfigError):
        sam(text)


def test_number_parameters_are_numbers() -> None:
    result = sam(
        "Parameters:\n  T: {Type: Number, Default: 30}\n  R: {Type: Number, Default: 2}\n"
        + function_with("Timeout: !Ref T\nReservedConcurrentExecutions: !Ref R\n")
    )
    spec = result.document["functions"]["Fn"]
    assert (spec["timeout"], spec["max_concurrency"]) == (30, 2)


def test_a_schedule_disabled_through_a_parameter_is_not_scheduled() -> None:
    result = sam(
        "Parameters:\n  On: {Type: String, Default: 'false'}\n"
        + function_with(
            "Events:\n  Tick:\n    Type: Schedule\n"
            "    Properties: {Schedule: rate(1 hour), Enabled: !Ref On}\n"
        )
    )
    assert "schedule" not in result.document["functions"]["Fn"]


def test_an_image_built_from_the_template_s_own_directory() -> None:
    result = sam(
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {PackageType: Image}\n    Metadata: {DockerContext: .}\n"
    )
    assert result.document["functions"]["Fn"]["image"] == "./"


def test_cors_origins_given_as_one_string() -> None:
    result = events(
        """
        Get:
          Type: HttpApi
          Properties: {Path: /a, Method: GET}
        """,
        beside="""
          ServerlessHttpApi:
            Type: AWS::Serverless::HttpApi
            Properties: {CorsConfiguration: {AllowOrigins: "https://a.example"}}
        """,
    )
    assert result.document["routes"][0]["cors"] == ["https://a.example"]


def test_inline_code_is_index_as_cloudformation_writes_it() -> None:
    result = sam(
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        "      Handler: app.handler\n      Runtime: python3.12\n      InlineCode: x = 1\n"
    )
    assert "Fn" not in result.document["functions"]
    assert "index" in result.warnings[0]


def test_a_json_template_is_a_template() -> None:
    assert is_sam_text('{"AWSTemplateFormatVersion": "2010-09-09", "Resources": {}}')
    assert not is_sam_text('{"functions": {}, "routes": []}')


def test_yaml_1_1_sexagesimal_and_octal_numbers_stay_text() -> None:
    template = load_template("A: 12:30\nB: 0755\nC: 10\nD: 1.5\nE: 0x1F\n", "t.yaml")
    assert template == {"A": "12:30", "B": "0755", "C": 10, "D": 1.5, "E": 31}


def test_a_handler_that_is_not_text_is_an_error() -> None:
    with pytest.raises(RoutingConfigError, match=r"Resources.Fn.Properties.Handler: must be text"):
        sam(FUNCTION.replace("Handler: app.handler", "Handler: [app, handler]"))
