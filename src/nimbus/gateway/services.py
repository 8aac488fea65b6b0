"""HTTP services: function URLs served by an unmodified WSGI or ASGI app.

A function whose handler has the ``module:app`` form is an HTTP service. Its URL,
``/fn/{namespace}/{name}[:qualifier]/...``, is not turned into payload 2.0
events: :class:`ServiceUrls`, an ASGI layer in front of the FastAPI app, relays
the request itself to one instance and the instance's answer back, as ASGI
messages, as they come:

1. The URL's function, at the version it names (an alias's weights pick one
   here, once), must be a service with an enabled http trigger; anything else
   goes on to the app (the payload 2.0 route answers it, errors included).
2. The trigger's auth applies (:func:`check_url_access`), as for any function URL.
3. The dispatcher leases an instance as for any call (rate quota, reserved
   concurrency, queueing and 429, scale-out, keep-alive, drain on update), and
   hands it the ASGI scope as its invocation; the runtime opens the request's
   channel (:mod:`nimbus.runtime_api.channel`) and the relay runs until the
   channel closes. The runtime then posts the invocation's response, which frees
   the instance.

Scope: ``root_path`` is ``/fn/{namespace}/{name}[:qualifier]`` and ``path`` the
full path (as uvicorn's ``--root-path`` gives it; ``path`` minus ``root_path`` is
at least ``/``). The ``Authorization`` header of a key-protected URL is the
caller's Nimbus key: it is removed before the app sees the request.

Failures: an app that fails before its response starts gets the client a 502
(``Function.Error``, naming the request id); after, the connection is cut. A
client that goes away is reported to the app (``http.disconnect``,
``websocket.disconnect``); the instance is free once the app returns. A
WebSocket session lasts at most the function's timeout: then the client gets
close code 1001 and the app ``websocket.disconnect``, and the instance is
stopped only if the app is still running :data:`WS_CLOSE_GRACE_S` later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nimbus.domain.function import NAME_RE, FunctionConfig
from nimbus.domain.invocation import InvocationResult
from nimbus.domain.trigger import Trigger
from nimbus.domain.version import Qualifier, parse_qualifier, split_name
from nimbus.errors import NimbusError
from nimbus.gateway.routes_triggers import check_url_access, forwarded_headers
from nimbus.pool.instance import CallOutcome, Instance
from nimbus.pool.pool import new_request_id
from nimbus.runtime_api.channel import Channel

if TYPE_CHECKING:
    from nimbus.app import Platform

log = logging.getLogger("nimbus.gateway")

#: How long a WebSocket app may take to end after its session reached the time limit.
WS_CLOSE_GRACE_S = 5
#: Close code sent to a WebSocket client when its session reaches the time limit.
WS_TIME_LIMIT_CODE = 1001
_HTTP_OUT = frozenset({"http.response.start", "http.response.body"})
_WS_OUT = frozenset(
    {
        "websocket.accept",
        "websocket.send",
        "websocket.close",
        "websocket.http.response.start",
        "websocket.http.response.body",
    }
)
_DENIAL = "websocket.http.response"


@dataclass(frozen=True)
class _Target:
    """A function URL whose function, at the version the URL names, is a service."""

    namespace: str
    name: str
    trigger: Trigger
    config: FunctionConfig
    root_path: str


class ServiceUrls:
    """ASGI middleware: HTTP and WebSocket requests to an HTTP service's URL."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        platform: Platform,
        on_error: Callable[[NimbusError], Response],
    ) -> None:
        self.app = app
        self._platform = platform
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith("/fn/"):
            target = await self._find(scope)
            if target is not None:
                await self._serve(target, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _find(self, scope: Scope) -> _Target | None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        parts = raw.split(b"/", 4)  # b"", b"fn", namespace, target, rest
        if len(parts) < 4:
            return None
        namespace = unquote(parts[2].decode("latin-1"))
        target = unquote(parts[3].decode("latin-1"))
        name, qualifier = split_name(target)
        if not (NAME_RE.match(namespace) and NAME_RE.match(name)):
            return None
        trigger = self._platform.triggers.http_trigger(namespace, name)
        if trigger is None:
            return None
        try:
            _head, config = await self._platform.directory.resolve(
                namespace, name, parse_qualifier(qualifier or trigger.qualifier)
            )
        except NimbusError:
            return None  # the route answers it, after the caller's key is checked
        if not config.is_service:
            return None
        return _Target(namespace, name, trigger, config, f"/fn/{namespace}/{target}")

    async def _serve(self, target: _Target, scope: Scope, receive: Receive, send: Send) -> None:
        relay = _Relay(target, scope, receive, send)
        config = target.config
        # The version picked here runs: an alias's weights are not drawn a second time.
        pinned = (
            Qualifier(latest=True)
            if config.version == "$LATEST"
            else Qualifier(version=int(config.version))
        )
        try:
            await check_url_access(self._platform, target.trigger, relay.authorization)
            result = await self._platform.dispatcher.invoke(
                target.namespace,
                target.name,
                b"",
                qualifier=pinned,
                request_id=relay.request_id,
                serve=relay.run,
            )
        except NimbusError as exc:
            await relay.refuse(self._on_error(exc))
            return
        except Exception:
            log.exception("unexpected error serving %s", target.root_path)
            if not relay.started:
                await relay.refuse(
                    _json_error(
                        500,
                        "Platform.InternalError",
                        "Nimbus hit an internal error; it was logged on the server",
                        relay.request_id,
                    )
                )
            return
        await relay.finish(result)


class _Relay:
    """One HTTP request or WebSocket session between its client and one instance."""

    def __init__(self, target: _Target, scope: Scope, receive: Receive, send: Send) -> None:
        self.target = target
        self.scope = scope
        self.receive = receive
        self.send = send
        self.request_id = new_request_id()
        self.websocket = scope["type"] == "websocket"
        self.authorization: str | None = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                self.authorization = value.decode("latin-1")
        #: The answer began: a response started, a WebSocket accepted or refused.
        self.started = False
        #: The answer ended: the response's last body, the WebSocket closed.
        self.completed = False
        self.client_gone = False
        self._allowed = _WS_OUT if self.websocket else _HTTP_OUT
        self._rid_header = (b"x-nimbus-request-id", self.request_id.encode())

    # ---- the instance side (called by the dispatcher with a leased instance) -----------
    async def run(self, instance: Instance, request_id: str, config: FunctionConfig) -> CallOutcome:
        payload = json.dumps(self._instance_scope()).encode()
        stream = instance.expect_stream(request_id)
        timeout_s = config.timeout_s + WS_CLOSE_GRACE_S if self.websocket else None
        outcome = instance.call(request_id, payload, False, timeout_s)
        await asyncio.wait((stream, outcome), return_when=asyncio.FIRST_COMPLETED)
        if not stream.done() or stream.cancelled():
            stream.cancel()  # the call ended without a channel: the app failed early
            return await outcome
        channel = stream.result()
        deadline = None
        if self.websocket:
            deadline = asyncio.get_running_loop().call_later(
                config.timeout_s, lambda: asyncio.ensure_future(self._time_limit(channel))
            )
        try:
            await self._pump(channel)
        except Exception:
            log.exception("relaying %s request %s failed", self.target.root_path, request_id)
        finally:
            if deadline is not None:
                deadline.cancel()
            channel.close()
        return await outcome

    def _instance_scope(self) -> dict[str, Any]:
        scope = self.scope
        root = self.target.root_path
        path: str = scope["path"]
        raw: bytes = scope.get("raw_path") or path.encode()
        if path == root or not path.startswith(root):
            path, raw = root + "/", raw + b"/"
        headers = [
            [name.decode("latin-1"), value.decode("latin-1")]
            for name, value in forwarded_headers(scope["headers"], self.target.trigger)
        ]
        client, server = scope.get("client"), scope.get("server")
        out: dict[str, Any] = {
            "type": scope["type"],
            "asgi": {"version": "3.0", "spec_version": "2.4" if self.websocket else "2.3"},
            "http_version": scope.get("http_version", "1.1"),
            "scheme": scope.get("scheme", "ws" if self.websocket else "http"),
            "path": path,
            "raw_path": raw.decode("latin-1"),
            "query_string": scope.get("query_string", b"").decode("latin-1"),
            "root_path": root,
            "headers": headers,
            "client": list(client) if client else None,
            "server": list(server) if server else None,
        }
        if self.websocket:
            out["subprotocols"] = list(scope.get("subprotocols") or ())
            if _DENIAL in (scope.get("extensions") or {}):
                out["extensions"] = {_DENIAL: {}}
        else:
            out["method"] = scope["method"]
        return out

    async def _pump(self, channel: Channel) -> None:
        """Relay both ways until the instance closes the channel."""
        inbound = asyncio.ensure_future(self._client_to_instance(channel))
        try:
            await self._instance_to_client(channel)
        finally:
            inbound.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await inbound

    async def _client_to_instance(self, channel: Channel) -> None:
        while not self.client_gone:
            message = await self.receive()
            if message["type"] in ("http.disconnect", "websocket.disconnect"):
                self.client_gone = True
            if not await channel.send(message):
                return

    async def _instance_to_client(self, channel: Channel) -> None:
        while (message := await channel.receive()) is not None:
            kind = message.get("type")
            if kind not in self._allowed:
                log.warning(
                    "%s request %s: the app sent %r; the connection is cut",
                    self.target.root_path,
                    self.request_id,
                    kind,
                )
                return
            if self.client_gone and not self.websocket:
                continue  # nobody reads it; the app learns from http.disconnect
            if kind in ("http.response.start", "websocket.accept"):
                message["headers"] = [*message.get("headers", ()), self._rid_header]
            try:
                await self.send(message)
            except OSError:  # the WebSocket client went away (ASGI 2.4)
                if not self.client_gone:
                    self.client_gone = True
                    await channel.send({"type": "websocket.disconnect", "code": 1006})
                continue
            except Exception as exc:  # uvicorn refused the message (a bad header...)
                log.warning(
                    "%s request %s: the app's %s was refused: %s",
                    self.target.root_path,
                    self.request_id,
                    kind,
                    exc,
                )
                return
            self._note(kind, message)
        if channel.error is not None:
            log.warning(
                "%s request %s: the app's channel broke: %s",
                self.target.root_path,
                self.request_id,
                channel.error,
            )

    def _note(self, kind: str, message: Message) -> None:
        if kind in ("http.response.start", "websocket.accept", "websocket.http.response.start"):
            self.started = True
        elif kind in ("http.response.body", "websocket.http.response.body"):
            if not message.get("more_body", False):
                self.completed = True
        elif kind == "websocket.close":
            self.started = self.completed = True

    async def _time_limit(self, channel: Channel) -> None:
        """A WebSocket session reached the function's timeout: end it."""
        if not self.completed and not self.client_gone:
            with contextlib.suppress(Exception):
                await self.send(
                    {"type": "websocket.close", "code": WS_TIME_LIMIT_CODE, "reason": "time limit"}
                )
            self.started = self.completed = True
        self.client_gone = True
        await channel.send({"type": "websocket.disconnect", "code": WS_TIME_LIMIT_CODE})

    # ---- the client side ---------------------------------------------------------------
    async def refuse(self, response: Response) -> None:
        """Answer without the app: an error of the platform's own."""
        if self.started:
            return
        if not self.websocket:
            await response(self.scope, self.receive, self.send)
            return
        if _DENIAL in (self.scope.get("extensions") or {}):
            await self.send(
                {
                    "type": "websocket.http.response.start",
                    "status": response.status_code,
                    "headers": response.raw_headers,
                }
            )
            await self.send({"type": "websocket.http.response.body", "body": response.body})
        else:
            await self.send({"type": "websocket.close", "code": 1008})

    async def finish(self, result: InvocationResult) -> None:
        """The app is done: end what it left open."""
        if not self.started:
            if result.error is not None:
                what = f"the function failed ({result.error.error_type})"
            else:
                what = "the app returned without answering"
            message = f"{what}; see `nimbus logs {self.target.name} --request-id {self.request_id}`"
            await self.refuse(_json_error(502, "Function.Error", message, self.request_id))
        elif self.websocket and not self.completed and not self.client_gone:
            code = 1000 if result.error is None else 1011
            with contextlib.suppress(Exception):
                await self.send({"type": "websocket.close", "code": code})
        # An HTTP response left unfinished is cut: returning without its last body makes
        # the server close the connection, so the client sees it incomplete.


def _json_error(status: int, code: str, message: str, request_id: str) -> Response:
    return Response(
        json.dumps({"error": {"code": code, "message": message}}),
        status_code=status,
        media_type="application/json",
        headers={"X-Nimbus-Request-Id": request_id},
    )
