"""The emulated API Gateway itself: Management API, REST proxying, startup and shutdown."""

from __future__ import annotations

import asyncio
import signal

import boto3
import httpx
import pytest
import websockets
from botocore.config import Config

from .conftest import DevServerProcess, WsClient, kill_quietly, moto_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def management(server: DevServerProcess) -> object:
    """The production sender's client: boto3 ``apigatewaymanagementapi`` at our endpoint."""
    return boto3.session.Session().client(
        "apigatewaymanagementapi", endpoint_url=server.http, region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


async def _connection_id(server: DevServerProcess, tag: str) -> str:
    async with httpx.AsyncClient(base_url=server.http) as http:
        listing = (await http.get("/_dev/connections")).json()
    (found,) = [c["connectionId"] for c in listing if c["query"].get("client") == tag]
    assert "/" not in found and "+" not in found  # URL-safe, like the notes require
    return str(found)


async def test_management_api_behaves_like_api_gateway(dev_server: DevServerProcess) -> None:
    client = await WsClient.connect(f"{dev_server.ws}?client=mgmt&client=mgmt")
    api = management(dev_server)
    try:
        connection_id = await _connection_id(dev_server, "mgmt")
        info = await asyncio.to_thread(api.get_connection, ConnectionId=connection_id)  # type: ignore[attr-defined]
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
        assert {"ConnectedAt", "LastActiveAt"} <= set(info)

        await asyncio.to_thread(
            api.post_to_connection,  # type: ignore[attr-defined]
            ConnectionId=connection_id, Data=b'{"type":"message","seq":1}',
        )
        await client.wait_messages(1)
        assert client.messages == [{"type": "message", "seq": 1}]

        too_big = b"x" * (128 * 1024 + 1)
        with pytest.raises(api.exceptions.PayloadTooLargeException):  # type: ignore[attr-defined]
            await asyncio.to_thread(
                api.post_to_connection, ConnectionId=connection_id, Data=too_big  # type: ignore[attr-defined]
            )

        await asyncio.to_thread(api.delete_connection, ConnectionId=connection_id)  # type: ignore[attr-defined]
        await asyncio.wait_for(client.connection.wait_closed(), 5)
        assert client.connection.close_code == 1000
        with pytest.raises(api.exceptions.GoneException):  # type: ignore[attr-defined]
            await asyncio.to_thread(
                api.post_to_connection, ConnectionId=connection_id, Data=b"late"  # type: ignore[attr-defined]
            )
        # DELETE fired $disconnect: the handler removed the connection record.
        dynamodb = moto_client(dev_server)
        table = next(n for n in dynamodb.list_tables()["TableNames"] if n.endswith("connections"))
        key = {"pk": {"S": f"conn#{connection_id}"}, "sk": {"S": "conn"}}
        for _ in range(50):
            if "Item" not in dynamodb.get_item(TableName=table, Key=key):
                break
            await asyncio.sleep(0.1)
        assert "Item" not in dynamodb.get_item(TableName=table, Key=key)
        dev_server.wait_for_line(rf"WS disconnect {connection_id} 1000")
    finally:
        await client.close()


async def test_rest_proxy_passes_queries_and_answers_unknown_routes_with_the_contract(
    dev_server: DevServerProcess, unique_channel: str
) -> None:
    async with httpx.AsyncClient(base_url=dev_server.http) as http:
        assert (await http.get("/v1/health")).status_code == 200
        # The app's greedy route answers every other path (not API Gateway's own 403).
        missing = await http.get("/no/such/route")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        for n in range(3):
            await http.post(f"/v1/channels/{unique_channel}/messages", json={"data": n})
        page = await http.get(
            f"/v1/channels/{unique_channel}/messages", params={"from": "-1", "limit": "2"}
        )
        assert page.status_code == 200
        assert [m["data"] for m in page.json()["messages"]] == [0, 1]
        index = await http.get("/")
        assert index.status_code == 200
        if index.headers["content-type"].startswith("text/html"):  # the console page
            assert (await http.get("/web/index.html")).text == index.text
        else:  # the endpoint description, until a console page exists
            assert index.json()["endpoints"]["websocket"].endswith("/ws")
        assert (await http.get("/web/no-such-file.js")).status_code == 404


async def test_websocket_frames_over_128_kb_are_refused(dev_server: DevServerProcess) -> None:
    async with websockets.connect(dev_server.ws, max_size=None) as ws:
        await ws.send("x" * (128 * 1024 + 1))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1009  # message too big, as API Gateway closes it


def test_busy_port_gives_one_clear_error(dev_server: DevServerProcess) -> None:
    port = dev_server.http.rsplit(":", 1)[1]
    second = DevServerProcess.start("--port", port, wait=False)
    try:
        assert second.process.wait(60) != 0
        second.stop()
        errors = [line for line in second.lines if line.startswith("switchboard dev:")]
        assert len(errors) == 1, second.output()
        assert "already in use" in errors[0] and "--port 0" in errors[0]
        assert "Traceback" not in second.output()
    finally:
        kill_quietly(second)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stops_cleanly_on_signals(sig: signal.Signals) -> None:
    server = DevServerProcess.start("--port", "0", "--stream-poll-ms", "20", "--no-auth",
                                    "--no-agent")
    try:

        async def connected_client() -> None:
            async with websockets.connect(server.ws) as ws:
                code = server.stop(sig)
                assert code == 0, server.output()
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)

        asyncio.run(connected_client())
        assert "Traceback" not in server.output()
        assert any(line.endswith("stopped") for line in server.lines), server.output()
        ready = [line for line in server.lines if line.startswith("Switchboard dev server ready:")]
        assert len(ready) == 1
        assert server.http.startswith("http://127.0.0.1:")
        assert server.ws == server.http.replace("http://", "ws://") + "/ws"
    finally:
        kill_quietly(server)


def test_rejects_a_bad_poll_interval() -> None:
    server = DevServerProcess.start("--port", "0", "--stream-poll-ms", "0", wait=False)
    try:
        assert server.process.wait(60) != 0
        server.stop()
        assert any("--stream-poll-ms" in line for line in server.lines), server.output()
    finally:
        kill_quietly(server)
