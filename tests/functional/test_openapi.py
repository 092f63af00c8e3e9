"""The OpenAPI document stays true: it describes exactly the routes, and real responses
validate against its schemas."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from openapi_spec_validator import validate

import app as app_module
from chalicelib.openapi import document
from tests.functional.conftest import Harness


def schema(name: str) -> dict[str, Any]:
    doc = document()
    return {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}


def check(instance: Any, name: str) -> None:
    jsonschema.validate(instance, schema(name))


def test_the_document_is_valid_openapi() -> None:
    validate(document())  # type: ignore[arg-type]


def test_every_route_is_documented_and_nothing_else() -> None:
    routes = {
        (path, method.lower())
        for path, methods in app_module.app.routes.items()
        for method in methods
        if method != "OPTIONS"  # CORS preflights Chalice adds
        and path != "/{proxy+}"  # the contract's 404 for every path that is not a route
    }
    documented = {
        (path, method)
        for path, item in document()["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "head", "patch"}
    }
    assert routes == documented


def test_it_is_served(harness: Harness) -> None:
    response = harness.client.http.get("/v1/openapi.json")
    assert response.status_code == 200 and json.loads(response.body) == document()


def test_real_responses_match_the_schemas(harness: Harness) -> None:
    http = harness.client.http
    check(json.loads(http.get("/v1/health").body), "Health")
    one = harness.post("/v1/channels/runs:1/messages", {"data": {"a": 1}, "id": "x"})
    check(json.loads(one.body), "Ack")
    many = json.loads(harness.post("/v1/channels/runs:1/messages", [{"data": 2}]).body)
    for ack in many:
        check(ack, "Ack")
    check(json.loads(http.get("/v1/channels/runs:1/messages?limit=1").body), "History")
    check(json.loads(http.get("/v1/channels/runs:1").body), "ChannelInfo")
    check(json.loads(http.get("/v1/channels/nope").body), "Error")
    check(json.loads(harness.post("/v1/channels/runs:1/messages", "{bad").body), "Error")
    documented = document()["paths"]["/v1/channels/{channel}/messages"]["post"]["responses"]
    assert {"201", "200", "400", "413"} <= set(documented)
