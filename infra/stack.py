"""What Chalice cannot declare, as a CloudFormation fragment merged into ``chalice package``.

``chalice package --merge-template`` deep-merges this into Chalice's SAM template: dicts merge
key by key, anything else (lists, strings) replaces Chalice's value. So this fragment both adds
resources (tables, queue, secret, $connect authorizer, alarms, dashboard) and overrides
Chalice's own: each role's policy, each function's name, log group and environment, the stream
trigger, the $connect route, and API Gateway throttling.

The fragment is built per stage (:func:`merge_template`) from .chalice/config.json, so the
table names the functions are configured with and the tables declared here cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalice.app import APIGateway

from . import api, iam, trigger

ROOT = Path(__file__).resolve().parent.parent
CONFIG_PATH = ROOT / ".chalice" / "config.json"

TTL_ATTRIBUTE = "expires_at"  # chalicelib/adapters/dynamodb/items.py TTL_ATTRIBUTE
FANOUT_EVENT = "FanoutRecordsDynamodbEventSource"  # Chalice's name for the stream trigger
ALARM_TOPIC = "AlarmTopic"
DASHBOARD = "Dashboard"

# The key schema of each table (the same as chalicelib.adapters.dynamodb.table_definitions).
KEYS: dict[str, list[tuple[str, str, str]]] = {
    iam.CHANNELS: [("pk", "S", "HASH")],
    iam.MESSAGES: [("pk", "S", "HASH"), ("seq", "N", "RANGE")],
    iam.CONNECTIONS: [("pk", "S", "HASH"), ("sk", "S", "RANGE")],
}
ENV_TABLE_VARS = {
    iam.CHANNELS: "SWITCHBOARD_CHANNELS_TABLE",
    iam.MESSAGES: "SWITCHBOARD_MESSAGES_TABLE",
    iam.CONNECTIONS: "SWITCHBOARD_CONNECTIONS_TABLE",
}
API_KEYS_ENV = "SWITCHBOARD_API_KEYS_SECRET_ID"  # chalicelib/settings.py api_keys_secret_id
AUTHORIZER = "WebsocketConnectAuthorizer"
# Refusing a connection is an error by API Gateway's contract (the authorizer raises
# "Unauthorized"), so the authorizer's Errors metric counts bad tokens: no errors alarm there.
NO_ERRORS_ALARM = {"ws_authorizer"}


@dataclass(frozen=True)
class StageProfile:
    """What differs between a stage you can throw away and one that holds users' data."""

    retain_data: bool  # deletion protection + Retain on tables and the API keys secret
    rest_rate: float  # API Gateway stage throttling, requests per second (steady)
    rest_burst: int
    ws_rate: float  # WebSocket route throttling ($connect and every inbound frame)
    ws_burst: int
    lambda_errors_threshold: int  # errors in 5 minutes before the alarm fires
    # Reserved concurrency (ReservedConcurrentExecutions) per function: the fan-out and the
    # authorizer always have this much, whatever else runs (delivery and new connections
    # cannot be starved by a flood of REST requests); for the REST function it is the most
    # it may run at once (it cannot take the account's whole pool either).
    reserved_concurrency: tuple[tuple[str, int], ...] = ()


PROFILES = {
    "dev": StageProfile(retain_data=False, rest_rate=50, rest_burst=100, ws_rate=50,
                        ws_burst=100, lambda_errors_threshold=1,
                        reserved_concurrency=(("fanout_records", 5), ("ws_authorizer", 5),
                                              ("api_handler", 50))),
    "prod": StageProfile(retain_data=True, rest_rate=1000, rest_burst=2000, ws_rate=1000,
                         ws_burst=2000, lambda_errors_threshold=5,
                         reserved_concurrency=(("fanout_records", 50), ("ws_authorizer", 30),
                                               ("api_handler", 300))),
}

# The stream trigger's settings live in infra/trigger.py (switchboard dev plays the same).
FANOUT_MAX_RETRIES = trigger.MAX_RETRY_ATTEMPTS
FANOUT_MAX_RECORD_AGE_S = trigger.MAX_RECORD_AGE_S
ITERATOR_AGE_ALARM_MS = 60_000


class ConfigError(ValueError):
    pass


def load_config(path: Path = CONFIG_PATH) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def stage_table_names(config: dict[str, Any], stage: str) -> dict[str, str]:
    """The table names .chalice/config.json gives the functions of ``stage``."""
    stages = config.get("stages", {})
    if stage not in stages:
        raise ConfigError(
            f"Stage {stage!r} is not in .chalice/config.json (stages: {', '.join(stages)})."
        )
    env = {**config.get("environment_variables", {}),
           **stages[stage].get("environment_variables", {})}
    names = {}
    for table, var in ENV_TABLE_VARS.items():
        expected = iam.table_name(config["app_name"], stage, table)
        if env.get(var) != expected:
            raise ConfigError(
                f"{var} for stage {stage!r} is {env.get(var)!r}; the stack names the table "
                f"{expected!r}. Set it to that in .chalice/config.json."
            )
        names[table] = expected
    return names


def _table(name: str, table: str, profile: StageProfile) -> dict[str, Any]:
    keys = KEYS[table]
    properties: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": n, "KeyType": k} for n, _, k in keys],
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t, _ in keys],
        "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "DeletionProtectionEnabled": profile.retain_data,
    }
    if table == iam.MESSAGES:
        # The fan-out reads only the new item; OLD_IMAGE would double the stream's size.
        properties["StreamSpecification"] = {"StreamViewType": "NEW_IMAGE"}
    policy = "Retain" if profile.retain_data else "Delete"
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": policy,
        "UpdateReplacePolicy": policy,
        "Properties": properties,
    }


def _alarm(name: str, description: str, metric: dict[str, Any], threshold: float,
           periods: int = 1) -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": name,
            "AlarmDescription": description,
            **metric,
            "EvaluationPeriods": periods,
            "DatapointsToAlarm": periods,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": ALARM_TOPIC}],
            "OKActions": [{"Ref": ALARM_TOPIC}],
        },
    }


def _metric(namespace: str, name: str, dimensions: dict[str, Any], statistic: str,
            period: int) -> dict[str, Any]:
    return {
        "Namespace": namespace,
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
        "Statistic": statistic,
        "Period": period,
    }


def _alarms(prefix: str, profile: StageProfile) -> dict[str, Any]:
    alarms: dict[str, Any] = {
        "FanoutIteratorAgeAlarm": _alarm(
            f"{prefix}-fanout-iterator-age",
            "The fan-out is falling behind the messages stream (live delivery is late).",
            _metric("AWS/Lambda", "IteratorAge",
                    {"FunctionName": {"Ref": iam.FUNCTION_LOGICAL_IDS["fanout_records"]}},
                    "Maximum", 60),
            ITERATOR_AGE_ALARM_MS, periods=5,
        ),
        "FanoutDeadLetterAlarm": _alarm(
            f"{prefix}-fanout-dlq-depth",
            "Stream batches were set aside after failing; see docs/deploy.md, 'Dead letters'.",
            _metric("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                    {"QueueName": {"Fn::GetAtt": [iam.DLQ_LOGICAL_ID, "QueueName"]}},
                    "Maximum", 300),
            0,
        ),
    }
    for function, logical_id in iam.FUNCTION_LOGICAL_IDS.items():
        short = iam.FUNCTION_NAMES[function]
        dims = {"FunctionName": {"Ref": logical_id}}
        if function not in NO_ERRORS_ALARM:
            alarms[f"{logical_id}ErrorsAlarm"] = _alarm(
                f"{prefix}-{short}-errors", f"The {short} function failed (crash or timeout).",
                _metric("AWS/Lambda", "Errors", dims, "Sum", 300),
                profile.lambda_errors_threshold - 1,
            )
        alarms[f"{logical_id}ThrottlesAlarm"] = _alarm(
            f"{prefix}-{short}-throttles",
            f"Invocations of {short} were throttled (account or reserved concurrency).",
            _metric("AWS/Lambda", "Throttles", dims, "Sum", 300), 0,
        )
    for table, logical_id in iam.TABLE_LOGICAL_IDS.items():
        def throttle_metric(metric: str, table_id: str = logical_id) -> dict[str, Any]:
            return {
                "Id": metric[:1].lower(),
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/DynamoDB",
                        "MetricName": metric,
                        "Dimensions": [{"Name": "TableName", "Value": {"Ref": table_id}}],
                    },
                    "Period": 300,
                    "Stat": "Sum",
                },
            }

        alarms[f"{logical_id}ThrottlesAlarm"] = _alarm(
            f"{prefix}-{table}-throttles",
            f"Requests to the {table} table were throttled (on-demand burst or hot partition).",
            {"Metrics": [
                throttle_metric("ReadThrottleEvents"),
                throttle_metric("WriteThrottleEvents"),
                {"Id": "total", "Expression": "r + w", "Label": "Throttle events",
                 "ReturnData": True},
            ]},
            0,
        )
    return alarms


def _dashboard(prefix: str) -> dict[str, Any]:
    """Seven widgets: traffic in, Lambda health, the stream, the DLQ, DynamoDB."""
    fns = list(iam.FUNCTION_LOGICAL_IDS.values())
    region = "${AWS::Region}"

    def widget(title: str, metrics: list[list[Any]], stat: str = "Sum",
               x: int = 0, y: int = 0) -> dict[str, Any]:
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
                "properties": {"title": title, "region": region, "stat": stat,
                               "period": 60, "view": "timeSeries", "metrics": metrics}}

    tables = list(iam.TABLE_LOGICAL_IDS.values())
    widgets = [
        widget("REST requests and errors", [
            ["AWS/ApiGateway", "Count", "ApiName", "switchboard"],
            [".", "4XXError", ".", "."], [".", "5XXError", ".", "."]]),
        widget("WebSocket connects and frames", [
            ["AWS/ApiGateway", "ConnectCount", "ApiId", "${WebsocketAPI}"],
            [".", "MessageCount", ".", "."], [".", "ClientError", ".", "."],
            [".", "ExecutionError", ".", "."]], x=12),
        widget("Lambda errors", [["AWS/Lambda", "Errors", "FunctionName", f"${{{f}}}"]
                                 for f in fns], y=6),
        widget("Lambda duration p99 (ms)",
               [["AWS/Lambda", "Duration", "FunctionName", f"${{{f}}}"] for f in fns],
               stat="p99", x=12, y=6),
        widget("Fan-out iterator age (ms)", [
            ["AWS/Lambda", "IteratorAge", "FunctionName", "${FanoutRecords}"]],
            stat="Maximum", y=12),
        widget("Fan-out DLQ depth", [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
             f"${{{iam.DLQ_LOGICAL_ID}.QueueName}}"]], stat="Maximum", x=12, y=12),
        widget("DynamoDB consumed capacity and throttles", [
            *[["AWS/DynamoDB", m, "TableName", f"${{{t}}}"]
              for t in tables for m in ("ConsumedWriteCapacityUnits",
                                        "ConsumedReadCapacityUnits")],
            *[["AWS/DynamoDB", "WriteThrottleEvents", "TableName", f"${{{t}}}"]
              for t in tables]], y=18),
    ]
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardName": prefix,
            "DashboardBody": {"Fn::Sub": json.dumps({"widgets": widgets})},
        },
    }


def _connect_authorizer(app: str, stage: str) -> dict[str, Any]:
    """Put ``ws_authorizer`` in front of ``$connect`` (Chalice declares the function only).

    The token travels in the ``token`` query parameter (browsers cannot set headers on the
    upgrade); without one API Gateway answers 401 before invoking anything.
    """
    function = iam.FUNCTION_LOGICAL_IDS["ws_authorizer"]
    return {
        AUTHORIZER: {
            "Type": "AWS::ApiGatewayV2::Authorizer",
            "Properties": {
                "ApiId": {"Ref": iam.WEBSOCKET_API_LOGICAL_ID},
                "Name": f"{app}-{stage}-connect",
                "AuthorizerType": "REQUEST",
                "AuthorizerUri": {"Fn::Sub": (
                    "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/"
                    f"functions/${{{function}.Arn}}/invocations"
                )},
                "IdentitySource": ["route.request.querystring.token"],
            },
        },
        f"{AUTHORIZER}InvokePermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": function},
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {"Fn::Sub": (
                    "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                    f"${{{iam.WEBSOCKET_API_LOGICAL_ID}}}/authorizers/${{{AUTHORIZER}}}"
                )},
            },
        },
        "WebsocketConnectRoute": {"Properties": {
            "AuthorizationType": "CUSTOM",
            "AuthorizerId": {"Ref": AUTHORIZER},
        }},
    }


def merge_template(stage: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CloudFormation fragment for ``chalice package --stage <stage> --merge-template``."""
    config = config if config is not None else load_config()
    if stage not in PROFILES:
        raise ConfigError(f"No infra profile for stage {stage!r}; known: {', '.join(PROFILES)}.")
    profile = PROFILES[stage]
    app = config["app_name"]
    api_stage = config.get("api_gateway_stage", "api")
    names = stage_table_names(config, stage)
    prefix = f"{app}-{stage}"
    data_policy = "Retain" if profile.retain_data else "Delete"

    resources: dict[str, Any] = {
        iam.TABLE_LOGICAL_IDS[t]: _table(names[t], t, profile) for t in iam.TABLES
    }
    resources[iam.DLQ_LOGICAL_ID] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "QueueName": f"{prefix}-fanout-dlq",
            "MessageRetentionPeriod": 14 * 24 * 3600,  # the maximum: time to investigate
            "SqsManagedSseEnabled": True,
        },
    }
    resources[iam.SECRET_LOGICAL_ID] = {
        "Type": "AWS::SecretsManager::Secret",
        "DeletionPolicy": data_policy,
        "UpdateReplacePolicy": data_policy,
        "Properties": {
            "Name": f"{app}/{stage}/api-keys",
            "Description": "Switchboard API keys (chalicelib/adapters/keys.py); they also sign "
                           "tokens. Add keys with put-secret-value: see docs/deploy.md.",
            # Empty: nobody gets in until the operator adds a key, and no secret ever sits in
            # the template. CloudFormation leaves later put-secret-value changes alone.
            "SecretString": json.dumps({"keys": []}),
        },
    }
    resources[ALARM_TOPIC] = {
        "Type": "AWS::SNS::Topic",
        "Properties": {"TopicName": f"{prefix}-alarms", "DisplayName": f"Switchboard {stage}"},
    }
    resources.update(_alarms(prefix, profile))
    resources[DASHBOARD] = _dashboard(prefix)

    table_env = {ENV_TABLE_VARS[t]: {"Ref": iam.TABLE_LOGICAL_IDS[t]} for t in iam.TABLES}
    for function, logical_id in iam.FUNCTION_LOGICAL_IDS.items():
        grants = iam.FUNCTIONS[function]
        env: dict[str, Any] = dict(table_env)
        if grants.read_api_keys:
            env[API_KEYS_ENV] = {"Ref": iam.SECRET_LOGICAL_ID}
        name = iam.function_name(app, stage, function)
        log_group = iam.LOG_GROUP_LOGICAL_IDS[function]
        properties: dict[str, Any] = {"FunctionName": name, "Environment": {"Variables": env}}
        reserved = dict(profile.reserved_concurrency).get(function)
        if reserved is not None:
            properties["ReservedConcurrentExecutions"] = reserved
        resources[logical_id] = {
            # Logs are written only once the group (with its retention) exists: the roles
            # cannot create log groups.
            "DependsOn": [log_group],
            "Properties": properties,
        }
        # Chalice names the REST handler's group after "${ApiHandler}", a resource that does
        # not exist (it is "APIHandler"); naming every group literally fixes that and matches
        # the log ARN in the role policy.
        resources[log_group] = {"Properties": {"LogGroupName": f"/aws/lambda/{name}"}}
        role = iam.ROLE_LOGICAL_IDS[function]
        resources[role] = {"Properties": {"Policies": [{
            "PolicyName": f"{role}Policy",
            "PolicyDocument": iam.cloudformation_policy(app, stage, api_stage, function),
        }]}}

    fanout = iam.FUNCTION_LOGICAL_IDS["fanout_records"]
    resources[fanout]["Properties"]["Events"] = {FANOUT_EVENT: {"Properties": (
        trigger.event_properties(
            stream_arn={"Fn::GetAtt": [iam.TABLE_LOGICAL_IDS[iam.MESSAGES], "StreamArn"]},
            on_failure_arn={"Fn::GetAtt": [iam.DLQ_LOGICAL_ID, "Arn"]},
        )
    )}}

    resources.update(_connect_authorizer(app, stage))

    resources["RestAPI"] = {"Properties": {
        "MethodSettings": [{
            "ResourcePath": "/*", "HttpMethod": "*",
            "ThrottlingRateLimit": profile.rest_rate,
            "ThrottlingBurstLimit": profile.rest_burst,
        }],
        # Accept: */* (every HTTP client's default) must get a byte stream's bytes: api.py.
        "DefinitionBody": {"x-amazon-apigateway-binary-media-types": (
            api.deployed_binary_media_types(list(APIGateway().binary_types))
        )},
    }}
    resources["WebsocketAPIStage"] = {"Properties": {"DefaultRouteSettings": {
        "ThrottlingRateLimit": profile.ws_rate,
        "ThrottlingBurstLimit": profile.ws_burst,
    }}}

    outputs = {
        f"{t.capitalize()}TableName": {"Value": {"Ref": iam.TABLE_LOGICAL_IDS[t]}}
        for t in iam.TABLES
    }
    outputs.update({
        "FanoutDeadLetterQueueUrl": {"Value": {"Ref": iam.DLQ_LOGICAL_ID}},
        "ApiKeysSecretArn": {"Value": {"Ref": iam.SECRET_LOGICAL_ID}},
        "AlarmTopicArn": {"Value": {"Ref": ALARM_TOPIC}},
        "DashboardName": {"Value": {"Ref": DASHBOARD}},
    })
    return {"Resources": resources, "Outputs": outputs}
