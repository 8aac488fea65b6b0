"""Object storage for functions, through their own Runtime API endpoint.

A function reaches its namespace's buckets the way a Lambda function reaches S3
through its role: without credentials in its code or environment. The
instance's Runtime API socket (bind-mounted into its sandbox, owned by its uid,
one per instance) already says who is calling; a connection on it whose first
request is for ``/s3`` or ``/s3/...`` is handed to the S3 API's
:class:`~nimbus.objects.s3_api.InstanceS3App`, served by uvicorn's HTTP/1.1
protocol on that connection (keep-alive, streaming bodies both ways). The
instance acts in its function's namespace, read-write, on that namespace's
buckets only, and every write is attributed to the invocation the instance is
running, so object events it causes carry the next chain depth (see
:mod:`nimbus.objects.service`).

Inside the sandbox, boto3 needs TCP: ``AWS_ENDPOINT_URL_S3`` is
``http://127.0.0.1:9001/s3``, which custom runtimes' init and the Python
runtime relay to the socket. A connection is claimed by its first bytes (the
request line); Runtime API connections never start with ``/s3``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from nimbus.objects.operations import S3Operations
from nimbus.objects.s3_api import CALLER_STATE, InstanceS3App
from nimbus.objects.service import Caller

_METHODS = (b"GET ", b"HEAD ", b"PUT ", b"POST ", b"DELETE ")


def is_storage_request(data: bytes) -> bool:
    """Whether ``data`` starts with the request line of a request for ``/s3...``."""
    for method in _METHODS:
        if data.startswith(method):
            target = data[len(method) : len(method) + 4]
            return target in (b"/s3/", b"/s3 ", b"/s3?")
    return False


class StorageGate:
    """One per node: serves the storage requests of every instance."""

    def __init__(self, ops: S3Operations, *, keep_alive_s: int = 30) -> None:
        self._config = uvicorn.Config(
            InstanceS3App(ops),
            lifespan="off",
            ws="none",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            timeout_keep_alive=keep_alive_s,
        )
        self._config.load()
        self._state = ServerState()

    def for_instance(
        self, namespace: str, function: str, running: Callable[[], str | None]
    ) -> InstanceStorage:
        """The door of one instance. ``running``: the request id of the invocation it runs
        (or ran last), the cause of the events its writes send."""
        return InstanceStorage(self, namespace, function, running)

    def claim(
        self, transport: asyncio.BaseTransport, data: bytes, caller: Callable[[str], Caller]
    ) -> bool:
        """Serve the connection if ``data``, its first bytes, ask for storage."""
        if not is_storage_request(data):
            return False
        protocol = HttpToolsProtocol(
            config=self._config, server_state=self._state, app_state={CALLER_STATE: caller}
        )
        transport.set_protocol(protocol)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(data)
        return True


@dataclass(frozen=True)
class InstanceStorage:
    gate: StorageGate
    namespace: str
    function: str
    running: Callable[[], str | None]

    def claim(self, transport: asyncio.BaseTransport | None, data: bytes) -> bool:
        """Take over a connection whose first bytes (``data``) ask for storage; True when
        taken (its transport then belongs to the storage server)."""
        if transport is None:
            return False
        return self.gate.claim(transport, data, self._caller)

    def _caller(self, request_id: str) -> Caller:
        return Caller(
            namespace=self.namespace,
            writes=True,
            principal=f"nimbus:function:{self.namespace}/{self.function}",
            request_id=request_id,
            cause=self.running(),
            function=f"{self.namespace}/{self.function}",
        )
