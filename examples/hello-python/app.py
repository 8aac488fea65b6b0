"""A minimal Nimbus function: greets whoever the event names."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    name = event.get("name") or "world"
    print(f"greeting {name}")  # shows up in `nimbus logs hello`
    return {"message": f"Hello, {name}!", "request_id": context.aws_request_id}
