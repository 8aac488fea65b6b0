"""Triggers: event sources connected to a function (or a version or alias of it).

Two kinds today:

- ``timer``: fires on a schedule (cron with optional seconds, or ``rate(...)``) in
  a time zone, with a JSON payload, as an asynchronous invocation; each tick fires
  once across restarts (see :mod:`nimbus.triggers.schedule` for the catch-up policy).
- ``http``: gives the function a URL, ``/fn/{namespace}/{name}[:qualifier]/...``,
  whose requests become payload 2.0 events (synchronous); ``auth`` is ``public``
  (anyone) or ``key`` (a Nimbus API key that may invoke in the namespace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TRIGGER_TYPES = ("timer", "http")
HTTP_AUTH = ("public", "key")
TRIGGER_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Trigger:
    namespace: str
    function: str
    name: str
    type: str
    #: ``$LATEST`` when None; else a version number or an alias.
    qualifier: str | None = None
    enabled: bool = True
    #: timer: schedule, timezone, payload, catch_up. http: auth.
    config: dict[str, Any] = field(default_factory=dict)
    #: timer: the newest tick fired (the only state a timer keeps).
    last_fired: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
