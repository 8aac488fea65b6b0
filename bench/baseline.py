"""The baseline: bare uvicorn calling the hello handler in-process.

``python bench/baseline.py --port N`` serves one route (any path, any method):
read the JSON body, call ``handler(event, context)`` from ``bench/hello/app.py``
and answer its result as JSON. uvicorn runs with uvloop + httptools, one
worker, no access log: the cheapest honest way to run the same handler over
HTTP from Python, so Nimbus's figures can be read as overhead above it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import uvicorn

HELLO = Path(__file__).resolve().parent / "hello" / "app.py"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def load_handler(path: Path = HELLO) -> Callable[[Any, Any], Any]:
    spec = importlib.util.spec_from_file_location("hello_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Callable[[Any, Any], Any] = module.handler
    return handler


def make_app(
    handler: Callable[[Any, Any], Any],
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    context = SimpleNamespace(function_name="hello", aws_request_id="baseline")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        event = json.loads(body) if body.strip() else {}
        result = json.dumps(handler(event, context)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(result)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": result})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        make_app(load_handler()),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        workers=None,
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
