"""The ConnectionSender for AWS: API Gateway's Management API (``@connections``).

Our own sender, not Chalice's ``app.websocket_api``: that one is configured only inside
WebSocket handlers and hard-codes https, so it can serve neither the stream fan-out Lambda nor
the local gateway. Clients are cached per endpoint (creating one costs ~50 ms) and are
thread-safe, so the fan-out can post to many connections at once.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ..ports import ConnectionGoneError, SendFailedError, SendThrottledError

_THROTTLED = {"LimitExceededException", "TooManyRequestsException", "ThrottlingException"}


class ApiGatewaySender:
    def __init__(self, session: boto3.session.Session | None = None, region: str | None = None,
                 max_pool_connections: int = 32) -> None:
        self._session = session or boto3.session.Session()
        self._region = region
        # We retry throttling ourselves (with backoff the tests can observe); botocore only
        # retries connection errors.
        self._config = Config(
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=max_pool_connections,
            connect_timeout=2,
            read_timeout=5,
        )
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client(self, endpoint: str) -> Any:
        client = self._clients.get(endpoint)
        if client is None:
            with self._lock:
                client = self._clients.get(endpoint)
                if client is None:
                    client = self._session.client(
                        "apigatewaymanagementapi",
                        endpoint_url=endpoint,
                        region_name=self._region,
                        config=self._config,
                    )
                    self._clients[endpoint] = client
        return client

    def send(self, endpoint: str, connection_id: str, data: str) -> None:
        client = self._client(endpoint)
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data.encode("utf-8"))
        # GoneException is a ClientError too: it must be caught first, or cleanup never runs.
        except client.exceptions.GoneException:
            raise ConnectionGoneError(connection_id) from None
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _THROTTLED or status == 429:
                raise SendThrottledError(code) from None
            raise SendFailedError(f"{code} ({status})") from None
        except Exception as error:  # connection reset, timeout: worth a retry
            raise SendFailedError(type(error).__name__) from None

    def close(self, endpoint: str, connection_id: str) -> None:
        client = self._client(endpoint)
        try:
            client.delete_connection(ConnectionId=connection_id)
        except client.exceptions.GoneException:
            raise ConnectionGoneError(connection_id) from None
        except ClientError as error:
            raise SendFailedError(error.response.get("Error", {}).get("Code", "")) from None
        except Exception as error:
            raise SendFailedError(type(error).__name__) from None
