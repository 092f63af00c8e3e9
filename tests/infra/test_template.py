"""The packaged stack of each stage has what production needs and Chalice alone cannot set."""

from __future__ import annotations

import copy
import json
import re
import sys
from typing import Any

import pytest

from chalicelib.adapters.dynamodb import table_definitions
from infra import iam
from infra.package import Packaged, PackageError, cfn_lint, stale_policies
from infra.stack import ConfigError, load_config, merge_template, stage_table_names

pytestmark = pytest.mark.infra

STAGES = ("dev", "prod")
FUNCTIONS = {
    "APIHandler": "rest",
    "WsAuthorizer": "ws-authorizer",
    "WebsocketConnect": "ws-connect",
    "WebsocketMessage": "ws-message",
    "WebsocketDisconnect": "ws-disconnect",
    "FanoutRecords": "fanout",
    "PresenceSweeper": "presence-sweeper",
    "WakeRecords": "wake-records",
    "WakeJobs": "wake-jobs",
}
_WAKES = {"GetItem", "PutItem", "UpdateItem", "ConditionCheckItem", "BatchGetItem", "Query"}

# The IAM each function needs, stated here independently of infra/iam.py: change both
# consciously. (table -> actions; TransactWriteItems is authorised per item.)
_CHANNEL_SERVICE = {
    "ChannelsTable": {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem"},
    "MessagesTable": {"GetItem", "PutItem", "Query"},
}
# A member leaving presence: its item, its connection's link, the presence log (above).
_LEAVE = {"GetItem", "UpdateItem", "DeleteItem", "Query"}
EXPECTED_TABLE_ACTIONS: dict[str, dict[str, set[str]]] = {
    "APIHandler": {
        **_CHANNEL_SERVICE,
        "ChannelsTable": _CHANNEL_SERVICE["ChannelsTable"] | {"ConditionCheckItem"},
        "ConnectionsTable": {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"},
        "WakesTable": _WAKES | {"DeleteItem", "BatchWriteItem"},
    },
    "WsAuthorizer": {},
    "WebsocketConnect": {"ConnectionsTable": {"PutItem"}},
    "WebsocketMessage": {
        "ChannelsTable": {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem",
                          "ConditionCheckItem"},
        "MessagesTable": {"GetItem", "PutItem", "Query"},
        "ConnectionsTable": {"GetItem", "PutItem", "UpdateItem", "DeleteItem",
                             "BatchWriteItem", "Query"},
    },
    "WebsocketDisconnect": {**_CHANNEL_SERVICE,
                            "ConnectionsTable": {"BatchWriteItem", *_LEAVE}},
    "FanoutRecords": {
        **_CHANNEL_SERVICE,
        "ConnectionsTable": {"Query", "GetItem", "UpdateItem", "DeleteItem", "BatchWriteItem"},
    },
    "PresenceSweeper": {**_CHANNEL_SERVICE, "ConnectionsTable": {"BatchGetItem", *_LEAVE}},
    "WakeRecords": {"WakesTable": _WAKES},
    "WakeJobs": {
        "ChannelsTable": {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem"},
        "MessagesTable": {"GetItem", "PutItem", "Query"},
        "WakesTable": _WAKES,
    },
}
POSTS_TO_CONNECTIONS = {"WebsocketMessage", "FanoutRecords"}
# Whoever checks API keys or verifies or signs tokens ($connect gets claims from the
# authorizer), and the frames that re-check the key behind their connection.
READS_API_KEYS = {"APIHandler", "WsAuthorizer", "WebsocketMessage"}
# Durable Streams subscriptions: who queues wake jobs, and who reads the signing secret.
SENDS_WAKE_JOBS = {"APIHandler", "WakeRecords", "WakeJobs"}
READS_SIGNING_KEY = {"APIHandler", "WakeJobs"}
STREAM_CONSUMERS = {"FanoutRecords": "FanoutDeadLetterQueue",
                    "WakeRecords": "WakeDeadLetterQueue"}


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def role_statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    role_ref = template["Resources"][function]["Properties"]["Role"]
    role = template["Resources"][role_ref["Fn::GetAtt"][0]]
    assert role["Type"] == "AWS::IAM::Role"
    assert "ManagedPolicyArns" not in role["Properties"]
    (policy,) = role["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_packages_and_passes_cfn_lint(packaged: dict[str, Packaged],
                                                   stage: str) -> None:
    result = packaged[stage]
    assert result.template.is_file()
    # The whole Lambda bundle (app + Powertools + pydantic-settings + PyNaCl for the webhook
    # signatures, arm64 wheels, with bytecode): 8.0 MB when measured (11.5 MB while it carried
    # cryptography), far under Lambda's 50 MB; a jump past 11 MB is a dependency someone
    # should look at.
    assert 0 < result.zip.stat().st_size < 11 * 1024 * 1024


def test_cfn_lint_rejects_a_broken_template(packaged: dict[str, Packaged], tmp_path: Any) -> None:
    template = copy.deepcopy(packaged["dev"].load())
    template["Resources"]["MessagesTable"]["Properties"]["StreamSpecification"] = {
        "StreamViewType": "NEW_IMAGES"
    }
    broken = tmp_path / "sam.json"
    broken.write_text(json.dumps(template))
    with pytest.raises(PackageError, match="E3030"):
        cfn_lint(broken)


@pytest.mark.parametrize("stage", STAGES)
def test_functions_run_python_312_or_later_on_arm64_with_stage_names(
    templates: dict[str, Any], stage: str
) -> None:
    functions = resources(templates[stage], "AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS)
    for logical_id, short in FUNCTIONS.items():
        props = functions[logical_id]["Properties"]
        major, minor = map(int, re.fullmatch(r"python(\d+)\.(\d+)", props["Runtime"]).groups())
        assert (major, minor) >= (3, 12)
        assert props["Architectures"] == ["arm64"]
        assert props["FunctionName"] == f"switchboard-{stage}-{short}"
        log_group = templates[stage]["Resources"][f"{logical_id}LogGroup".replace(
            "APIHandler", "ApiHandler")]
        assert log_group["Properties"]["LogGroupName"] == f"/aws/lambda/switchboard-{stage}-{short}"
        assert log_group["Properties"]["RetentionInDays"] > 0


@pytest.mark.parametrize("stage", STAGES)
def test_tables_match_the_adapter_with_ttl_pitr_on_demand(
    templates: dict[str, Any], stage: str
) -> None:
    tables = resources(templates[stage], "AWS::DynamoDB::Table")
    assert set(tables) == {"ChannelsTable", "MessagesTable", "ConnectionsTable", "WakesTable"}
    names = {t: f"switchboard-{stage}-{t.removesuffix('Table').lower()}" for t in tables}
    # What the code creates locally (switchboard dev, tests) is what AWS gets.
    expected = {d["TableName"]: d for d in table_definitions(
        names["ChannelsTable"], names["MessagesTable"], names["ConnectionsTable"],
        names["WakesTable"])}
    retain = stage == "prod"
    for logical_id, table in tables.items():
        props = table["Properties"]
        definition = expected[props["TableName"]]
        assert props["TableName"] == names[logical_id]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["KeySchema"] == definition["KeySchema"]
        assert props["AttributeDefinitions"] == definition["AttributeDefinitions"]
        assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["DeletionProtectionEnabled"] is retain
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == (
            "Retain" if retain else "Delete")
        stream = definition.get("StreamSpecification")
        if stream:
            assert props["StreamSpecification"] == {"StreamViewType": stream["StreamViewType"]}
        else:
            assert "StreamSpecification" not in props
    assert "StreamSpecification" in tables["MessagesTable"]["Properties"]


@pytest.mark.parametrize("stage", STAGES)
def test_functions_get_table_names_by_reference(templates: dict[str, Any], stage: str) -> None:
    for logical_id in FUNCTIONS:
        env = templates[stage]["Resources"][logical_id]["Properties"]["Environment"]["Variables"]
        assert env["SWITCHBOARD_CHANNELS_TABLE"] == {"Ref": "ChannelsTable"}
        assert env["SWITCHBOARD_MESSAGES_TABLE"] == {"Ref": "MessagesTable"}
        assert env["SWITCHBOARD_CONNECTIONS_TABLE"] == {"Ref": "ConnectionsTable"}
        assert env["SWITCHBOARD_WAKES_TABLE"] == {"Ref": "WakesTable"}
        assert (env.get("SWITCHBOARD_WAKE_QUEUE_URL") == {"Ref": "WakeJobsQueue"}) is (
            logical_id in SENDS_WAKE_JOBS)
        assert (env.get("SWITCHBOARD_WEBHOOK_SIGNING_SECRET_ID") == {
            "Ref": "WebhookSigningSecret"}) is (logical_id in READS_SIGNING_KEY)
        if logical_id in READS_API_KEYS:
            assert env["SWITCHBOARD_API_KEYS_SECRET_ID"] == {"Ref": "ApiKeysSecret"}
        else:
            assert "SWITCHBOARD_API_KEYS_SECRET_ID" not in env


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("function", list(STREAM_CONSUMERS))
def test_stream_trigger_cannot_jam_the_shard(templates: dict[str, Any], stage: str,
                                             function: str) -> None:
    template = templates[stage]
    events = template["Resources"][function]["Properties"]["Events"]
    (event,) = events.values()
    assert event["Type"] == "DynamoDB"
    props = event["Properties"]
    assert props["Stream"] == {"Fn::GetAtt": ["MessagesTable", "StreamArn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    assert 0 <= props["MaximumRetryAttempts"] <= 10
    assert 60 <= props["MaximumRecordAgeInSeconds"] <= 3600
    assert props["StartingPosition"] == "LATEST"
    assert props["BatchSize"] == 100
    dlq = STREAM_CONSUMERS[function]
    on_failure = props["DestinationConfig"]["OnFailure"]
    assert on_failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": [dlq, "Arn"]}}
    (pattern,) = props["FilterCriteria"]["Filters"]
    assert json.loads(pattern["Pattern"]) == {"eventName": ["INSERT"]}
    queue = template["Resources"][dlq]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["QueueName"] == (
        f"switchboard-{stage}-{'fanout' if function == 'FanoutRecords' else 'wake'}-dlq")


@pytest.mark.parametrize("stage", STAGES)
def test_wake_jobs_queue_survives_a_lambda_ending(templates: dict[str, Any], stage: str) -> None:
    template = templates[stage]
    (event,) = template["Resources"]["WakeJobs"]["Properties"]["Events"].values()
    assert event["Type"] == "SQS"
    props = event["Properties"]
    assert props["Queue"] == {"Fn::GetAtt": ["WakeJobsQueue", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = template["Resources"]["WakeJobsQueue"]["Properties"]
    assert queue["QueueName"] == f"switchboard-{stage}-wake-jobs"
    timeout = template["Resources"]["WakeJobs"]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout  # a job in flight is not run twice at once
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["WakeDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5}
    secret = template["Resources"]["WebhookSigningSecret"]
    assert secret["Properties"]["Name"] == f"switchboard/{stage}/webhook-signing"
    generated = secret["Properties"]["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "seed" and generated["PasswordLength"] >= 32
    assert "SecretString" not in secret["Properties"]  # no key material in the template


@pytest.mark.parametrize("stage", STAGES)
def test_each_function_has_its_own_least_privilege_role(
    templates: dict[str, Any], stage: str
) -> None:
    template = templates[stage]
    assert "DefaultRole" not in template["Resources"]
    roles = {template["Resources"][f]["Properties"]["Role"]["Fn::GetAtt"][0] for f in FUNCTIONS}
    assert len(roles) == len(FUNCTIONS)
    for function in FUNCTIONS:
        statements = role_statements(template, function)
        granted: dict[str, set[str]] = {}
        other_actions: set[str] = set()
        for statement in statements:
            assert statement["Effect"] == "Allow"
            actions = as_list(statement["Action"])
            for action in actions:
                assert "*" not in action, f"{function}: wildcard action {action}"
                assert action != "dynamodb:Scan", f"{function} may Scan"
            resources_ = as_list(statement["Resource"])
            if resources_ == ["*"]:
                # The only grant IAM cannot scope: listing stream ARNs, for the triggers.
                assert actions == ["dynamodb:ListStreams"] and function in STREAM_CONSUMERS
            for resource in resources_:
                if isinstance(resource, dict) and resource.get("Fn::GetAtt", [""])[1:] == ["Arn"]:
                    target = resource["Fn::GetAtt"][0]
                    if target.endswith("Table"):
                        granted.setdefault(target, set()).update(
                            a.removeprefix("dynamodb:") for a in actions)
                        continue
                other_actions.update(f"{a} on {json.dumps(resource)}" for a in actions)
        assert granted == EXPECTED_TABLE_ACTIONS[function], function
        # Logs go to the function's own log group only.
        log_statements = [s for s in statements if s["Action"][0].startswith("logs:")]
        (log_statement,) = log_statements
        assert set(log_statement["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
        short = FUNCTIONS[function]
        assert as_list(log_statement["Resource"])[0]["Fn::Sub"].endswith(
            f":log-group:/aws/lambda/switchboard-{stage}-{short}:*")
        manage = [s for s in statements if "execute-api:ManageConnections" in s["Action"]]
        if function in POSTS_TO_CONNECTIONS:
            (statement,) = manage
            (resource,) = as_list(statement["Resource"])
            assert resource["Fn::Sub"].endswith(":${WebsocketAPI}/api/POST/@connections/*")
            assert "${AWS::AccountId}" in resource["Fn::Sub"]
        else:
            assert not manage, f"{function} must not post to connections"
        secret = [s["Resource"] for s in statements
                  if "secretsmanager:GetSecretValue" in s["Action"]]
        expected_secrets = ([[{"Ref": "ApiKeysSecret"}]] if function in READS_API_KEYS else []) \
            + ([[{"Ref": "WebhookSigningSecret"}]] if function in READS_SIGNING_KEY else [])
        assert sorted(map(json.dumps, secret)) == sorted(map(json.dumps, expected_secrets))
        stream = [s for s in statements if "dynamodb:GetRecords" in s["Action"]]
        sends = sorted(json.dumps(s["Resource"]) for s in statements
                       if "sqs:SendMessage" in s["Action"])
        expected_sends = []
        if function in STREAM_CONSUMERS:
            (read,) = stream
            assert set(read["Action"]) == {"dynamodb:DescribeStream", "dynamodb:GetRecords",
                                           "dynamodb:GetShardIterator"}
            assert read["Resource"] == [{"Fn::GetAtt": ["MessagesTable", "StreamArn"]}]
            expected_sends.append([{"Fn::GetAtt": [STREAM_CONSUMERS[function], "Arn"]}])
        else:
            assert not stream
        if function in SENDS_WAKE_JOBS:
            expected_sends.append([{"Fn::GetAtt": ["WakeJobsQueue", "Arn"]}])
        assert sends == sorted(map(json.dumps, expected_sends)), function
        receives = [s for s in statements if "sqs:ReceiveMessage" in s["Action"]]
        if function == "WakeJobs":
            (consume,) = receives
            assert consume["Resource"] == [{"Fn::GetAtt": ["WakeJobsQueue", "Arn"]}]
        else:
            assert not receives


@pytest.mark.parametrize("stage", STAGES)
def test_alarms_cover_stream_dlq_lambda_and_dynamodb(templates: dict[str, Any],
                                                      stage: str) -> None:
    template = templates[stage]
    alarms = resources(template, "AWS::CloudWatch::Alarm")

    def watching(namespace: str, metric: str) -> list[dict[str, Any]]:
        found = []
        for alarm in alarms.values():
            props = alarm["Properties"]
            metrics = [props] + [m["MetricStat"]["Metric"] for m in props.get("Metrics", [])
                                 if "MetricStat" in m]
            if any(m.get("Namespace") == namespace and m.get("MetricName") == metric
                   for m in metrics):
                found.append(props)
        return found

    def dimension(props: dict[str, Any], name: str) -> Any:
        return next(d["Value"] for d in props["Dimensions"] if d["Name"] == name)

    ages = {dimension(a, "FunctionName")["Ref"] for a in watching("AWS/Lambda", "IteratorAge")}
    assert ages == set(STREAM_CONSUMERS)
    dlqs = watching("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert {dimension(d, "QueueName")["Fn::GetAtt"][0] for d in dlqs} == set(
        STREAM_CONSUMERS.values())
    for dlq in dlqs:
        assert dlq["Threshold"] == 0 and dlq["ComparisonOperator"] == "GreaterThanThreshold"
    (queue_age,) = watching("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert dimension(queue_age, "QueueName") == {"Fn::GetAtt": ["WakeJobsQueue", "QueueName"]}
    # Failing webhooks: the deliveries the wake jobs count as failed.
    (webhooks,) = watching("Switchboard", "WakeDeliveryFailures")
    assert webhooks["Statistic"] == "Sum" and webhooks["Threshold"] > 0
    throttles = {dimension(a, "FunctionName")["Ref"] for a in watching("AWS/Lambda", "Throttles")}
    assert throttles == set(FUNCTIONS)
    # A refused connection is an authorizer "error" by API Gateway's contract: not alarmed.
    errors = {dimension(a, "FunctionName")["Ref"] for a in watching("AWS/Lambda", "Errors")}
    assert errors == set(FUNCTIONS) - {"WsAuthorizer"}
    throttled = watching("AWS/DynamoDB", "WriteThrottleEvents")
    assert len(throttled) == 4
    assert len(watching("AWS/DynamoDB", "ReadThrottleEvents")) == 4
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert props["AlarmName"].startswith(f"switchboard-{stage}-")
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]


@pytest.mark.parametrize("stage", STAGES)
def test_dashboard_references_only_resources_of_the_stack(templates: dict[str, Any],
                                                           stage: str) -> None:
    template = templates[stage]
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    refs = set(re.findall(r"\$\{([^}]+)\}", body))
    for ref in refs:
        assert ref.startswith("AWS::") or ref.split(".")[0] in template["Resources"], ref
    widgets = json.loads(body)["widgets"]
    assert len(widgets) >= 6


@pytest.mark.parametrize("stage", STAGES)
def test_api_gateway_stages_are_throttled(templates: dict[str, Any], stage: str) -> None:
    resources_ = templates[stage]["Resources"]
    (rest,) = resources_["RestAPI"]["Properties"]["MethodSettings"]
    assert rest["ResourcePath"] == "/*" and rest["HttpMethod"] == "*"
    assert rest["ThrottlingRateLimit"] > 0 and rest["ThrottlingBurstLimit"] > 0
    ws = resources_["WebsocketAPIStage"]["Properties"]["DefaultRouteSettings"]
    assert ws["ThrottlingRateLimit"] > 0 and ws["ThrottlingBurstLimit"] > 0


@pytest.mark.parametrize("stage", STAGES)
def test_delivery_and_connects_have_reserved_concurrency_and_rest_a_maximum(
    templates: dict[str, Any], stage: str
) -> None:
    resources_ = templates[stage]["Resources"]

    def reserved(function: str) -> Any:
        return resources_[function]["Properties"].get("ReservedConcurrentExecutions")

    fanout, authorizer, rest = (reserved(f) for f in ("FanoutRecords", "WsAuthorizer",
                                                      "APIHandler"))
    assert isinstance(fanout, int) and fanout >= 1
    assert isinstance(authorizer, int) and authorizer >= 1
    # A REST flood can take at most its maximum, and the rest of the account's pool
    # (AWS keeps at least 100 unreserved) still serves the WebSocket functions.
    assert isinstance(rest, int) and rest > fanout
    assert fanout + authorizer + rest <= 1000 - 100
    for function in ("WebsocketConnect", "WebsocketMessage", "WebsocketDisconnect"):
        assert reserved(function) is None


@pytest.mark.parametrize("stage", STAGES)
def test_api_keys_secret_starts_empty(templates: dict[str, Any], stage: str) -> None:
    secret = templates[stage]["Resources"]["ApiKeysSecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["Properties"]["Name"] == f"switchboard/{stage}/api-keys"
    # No key in the template: nobody gets in until the operator adds one.
    assert json.loads(secret["Properties"]["SecretString"]) == {"keys": []}
    assert secret["DeletionPolicy"] == ("Retain" if stage == "prod" else "Delete")


@pytest.mark.parametrize("stage", STAGES)
def test_connect_route_is_guarded_by_the_authorizer(templates: dict[str, Any],
                                                     stage: str) -> None:
    resources_ = templates[stage]["Resources"]
    route = resources_["WebsocketConnectRoute"]["Properties"]
    assert route["RouteKey"] == "$connect"
    assert route["AuthorizationType"] == "CUSTOM"
    authorizer = resources_[route["AuthorizerId"]["Ref"]]
    assert authorizer["Type"] == "AWS::ApiGatewayV2::Authorizer"
    props = authorizer["Properties"]
    assert props["AuthorizerType"] == "REQUEST"
    assert props["IdentitySource"] == ["route.request.querystring.token"]
    assert "${WsAuthorizer.Arn}" in props["AuthorizerUri"]["Fn::Sub"]
    permissions = [r["Properties"] for r in resources_.values()
                   if r["Type"] == "AWS::Lambda::Permission"
                   and r["Properties"]["FunctionName"] == {"Ref": "WsAuthorizer"}]
    (permission,) = permissions
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["SourceArn"]["Fn::Sub"].endswith(
        "${WebsocketAPI}/authorizers/${WebsocketConnectAuthorizer}")
    for other in ("WebsocketMessageRoute", "WebsocketDisconnectRoute"):
        assert resources_[other]["Properties"].get("AuthorizationType", "NONE") == "NONE"


def test_chalice_policy_files_match_infra() -> None:
    assert stale_policies() == []
    for stage in STAGES:
        for function in iam.FUNCTIONS:
            text = json.dumps(iam.chalice_policy("switchboard", stage, "api", function))
            assert "dynamodb:Scan" not in text and '"dynamodb:*"' not in text


def test_table_names_must_agree_with_chalice_config() -> None:
    config = load_config()
    broken = copy.deepcopy(config)
    broken["stages"]["prod"]["environment_variables"]["SWITCHBOARD_MESSAGES_TABLE"] = "msgs"
    with pytest.raises(ConfigError, match="switchboard-prod-messages"):
        merge_template("prod", broken)
    with pytest.raises(ConfigError, match=r"not in \.chalice/config\.json"):
        stage_table_names(config, "staging")


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_every_accept_header_gets_a_byte_streams_bytes(templates: dict[str, Any],
                                                       stage: str) -> None:
    body = templates[stage]["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    types = body["x-amazon-apigateway-binary-media-types"]
    # API Gateway matches the first Accept value; "*/*" is every HTTP client's default.
    assert "*/*" in types and "application/octet-stream" in types
    # The routes Chalice generated are still there (the merge added, replaced nothing).
    assert "/v1/stream/{channel}" in body["paths"]


def test_the_zip_carries_bytecode_the_runtime_uses_as_it_is(packaged: dict[str, Packaged]) -> None:
    import importlib.util
    import zipfile

    with zipfile.ZipFile(packaged["dev"].zip) as archive:
        names = set(archive.namelist())
        tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
        for module in ("app", "chalicelib/services/appends", "chalicelib/handlers/websocket"):
            parent, _, leaf = module.rpartition("/")
            pyc = f"{parent + '/' if parent else ''}__pycache__/{leaf}.{tag}.pyc"
            assert pyc in names, pyc
            header = archive.read(pyc)[:16]
            assert header[:4] == importlib.util.MAGIC_NUMBER
            # PEP 552 flags 0b01: hash-based, not checked against the source (valid whatever
            # the zip's file times).
            assert int.from_bytes(header[4:8], "little") == 0b01
