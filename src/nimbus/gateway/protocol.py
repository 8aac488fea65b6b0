"""uvicorn's httptools protocol with deadlines for slow and silent clients.

uvicorn closes idle keep-alive connections, but a client that connects and
sends nothing, trickles its headers, or stops half-way through its body holds a
connection (a file descriptor and a request task) for as long as it likes. Here
every connection has ``client_timeout_s``:

- to send its first request line after connecting;
- to send all headers of a request once it has begun;
- between two pieces of a request body.

A client that misses a deadline is disconnected; nobody else notices. One timer
per connection, re-armed at those points, so the hot path pays a ``call_later``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    client_timeout_s: float = 30.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.client_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # An early answer (413...) may come before the body is all in: the deadline
        # stays for it. Otherwise uvicorn's keep-alive timer takes over until the
        # next request begins.
        if self.cycle is None or not self.cycle.more_body:
            self._disarm()


def guarded_protocol(client_timeout_s: float) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=`` with this server's deadline."""
    return type(
        "NimbusHttpProtocol", (GuardedHttpToolsProtocol,), {"client_timeout_s": client_timeout_s}
    )
