"""The pure half of ``redis-stream`` triggers: configuration, redaction, and the
decisions the consumer takes (when to retry an entry, which entries a partial-batch
answer failed, how a batch is cut to the payload limit). No I/O; time comes in as
the idle times Redis reports. The consumer is :mod:`nimbus.triggers.redis_stream`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from nimbus.domain.trigger import Trigger
from nimbus.errors import InvalidTriggerError

KIND = "redis-stream"
EVENT_SOURCE = "nimbus:redis-stream"
DEAD_SUFFIX = ":dead"
REDACTED = "****"
SEAL_CONTEXT = "trigger/redis-stream"
CONFIG_KEYS = (
    "url",
    "stream",
    "group",
    "batch_size",
    "batch_window_ms",
    "start",
    "max_attempts",
)
STARTS = ("$", "0")
MAX_NAME_CHARS = 256

#: Delay before retry n (after attempt n failed): RETRY_BASE_S * 2^(n-1), at most the cap.
RETRY_BASE_S = 1.0
RETRY_CAP_S = 60.0
#: Another consumer's pending entry idle this long is taken over (its owner is gone).
ORPHAN_IDLE_S = 60.0


# ---- configuration (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where the stream lives; ``password`` only once opened from its sealed form."""

    scheme: str
    host: str
    port: int
    db: int
    username: str | None = None
    password: str | None = None

    def url(self, *, redact: bool = True) -> str:
        auth = ""
        if self.username is not None or self.password is not None:
            auth = quote(self.username or "", safe="")
            if self.password is not None:
                auth += ":" + (REDACTED if redact else quote(self.password, safe=""))
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}/{self.db}"

    def arn(self, stream: str) -> str:
        """``redis://host:port/db/stream``: the source, never with credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.db}/{stream}"


def parse_url(text: object) -> Endpoint:
    """``redis://[user[:password]@]host[:port][/db]`` (or ``rediss://`` for TLS). Errors
    never repeat the password."""
    if not isinstance(text, str) or not text:
        raise InvalidTriggerError(
            'a redis-stream trigger needs "url": "redis://[user:password@]host:port/db"'
        )
    try:
        parts = urlsplit(text)
        port = parts.port or 6379
    except ValueError as exc:
        raise InvalidTriggerError(
            f"the url is not a Redis URL ({_scrub(str(exc), text)}); write "
            "redis://[user:password@]host:port/db"
        ) from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise InvalidTriggerError(
            "the url must be redis://[user:password@]host[:port][/db] (rediss:// for TLS), "
            f"not {_redact_text(text)!r}"
        )
    if parts.query or parts.fragment:
        raise InvalidTriggerError(
            "the url takes no query or fragment: put the password in it "
            "(redis://:password@host:port/db) and the database number in its path"
        )
    path = parts.path.strip("/") or "0"
    if not path.isdigit() or int(path) > 1_000_000:
        raise InvalidTriggerError(
            f"the url's path is the database number (redis://host:port/0), not /{path}"
        )
    password = unquote(parts.password) if parts.password is not None else None
    username = unquote(parts.username) if parts.username else None
    return Endpoint(parts.scheme, parts.hostname, port, int(path), username, password or None)


def _redact_text(text: str) -> str:
    """The URL with anything between ``:`` and ``@`` of its authority replaced."""
    scheme, sep, rest = text.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return text
    auth, _at, tail = rest.partition("@")
    if ":" in auth:
        auth = auth.split(":", 1)[0] + ":" + REDACTED
    return f"{scheme}://{auth}@{tail}"


def _scrub(message: str, url: str) -> str:
    password = urlsplit(url).password if "@" in url else None
    return message.replace(password, REDACTED) if password else message


def _name(config: dict[str, Any], key: str, default: str | None) -> str | None:
    value = config.get(key, default)
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_NAME_CHARS
        or any(c.isspace() or not c.isprintable() for c in value)
    ):
        raise InvalidTriggerError(
            f'"{key}" must be 1-{MAX_NAME_CHARS} printable characters without spaces'
        )
    return value


def _int(config: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidTriggerError(f'"{key}" must be a whole number from {low} to {high}')
    return value


def validate_config(config: dict[str, Any], seal: Callable[[str], str]) -> dict[str, Any]:
    """The configuration to store: defaults filled in, the URL normalised with its password
    replaced by ``****``, the password itself sealed (``password_sealed``)."""
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise InvalidTriggerError(
            f"unknown redis-stream setting(s) {', '.join(unknown)}; it takes url, stream "
            "(required), group (default nimbus-<function>), batch_size (1-1000), "
            'batch_window_ms (0-10000), start ("$" or "0") and max_attempts (1-100)'
        )
    endpoint = parse_url(config.get("url"))
    if "stream" not in config:
        raise InvalidTriggerError('a redis-stream trigger needs "stream": the stream\'s key')
    stream = _name(config, "stream", None)
    start = config.get("start", "$")
    if start not in STARTS:
        raise InvalidTriggerError(
            '"start" is where a new group begins: "$" (entries added from now on, the '
            'default) or "0" (every entry already in the stream)'
        )
    clean: dict[str, Any] = {
        "url": endpoint.url(),
        "stream": stream,
        "group": _name(config, "group", None),
        "batch_size": _int(config, "batch_size", 10, 1, 1000),
        "batch_window_ms": _int(config, "batch_window_ms", 0, 0, 10_000),
        "start": start,
        "max_attempts": _int(config, "max_attempts", 5, 1, 100),
    }
    if endpoint.password is not None:
        clean["password_sealed"] = seal(endpoint.password)
    return clean


def public_config(trigger: Trigger) -> dict[str, Any]:
    """What the API shows: never the password, sealed or not; the effective group."""
    shown = {k: v for k, v in trigger.config.items() if k != "password_sealed"}
    shown["group"] = group_of(trigger)
    return shown


def group_of(trigger: Trigger) -> str:
    return str(trigger.config.get("group") or f"nimbus-{trigger.function}")


# ---- decisions (pure) ------------------------------------------------------------------


def retry_delay_s(attempt: int) -> float:
    """How long an entry whose attempt ``attempt`` failed waits before the next one."""
    return float(min(RETRY_CAP_S, RETRY_BASE_S * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class Pending:
    """One entry of the group's pending list (XPENDING's extended form)."""

    message_id: str
    consumer: str
    idle_ms: int
    delivered: int


def due_for_retry(entry: Pending, *, me: str, in_flight: set[str]) -> bool:
    """Whether to claim the entry now: one of ours (not running here) once its backoff
    has passed; another consumer's once it has been idle long enough to be orphaned."""
    if entry.message_id in in_flight:
        return False
    wait_s = retry_delay_s(entry.delivered)
    if entry.consumer != me:
        wait_s = max(wait_s, ORPHAN_IDLE_S)
    return entry.idle_ms >= wait_s * 1000


def failed_items(payload: bytes | None, ids: Sequence[str]) -> tuple[set[str], str | None]:
    """Which entries a successful call failed, from Lambda's partial-batch answer.

    No ``batchItemFailures``: none failed. A list of ``{"itemIdentifier": id}``: those.
    Anything else in it (an id not in the batch, a malformed item): the whole batch
    failed, as Lambda does; the second value says why."""
    try:
        answer = json.loads(payload) if payload else None
    except ValueError:
        return set(), None
    if not isinstance(answer, dict) or answer.get("batchItemFailures") is None:
        return set(), None
    items = answer["batchItemFailures"]
    batch = set(ids)
    failed: set[str] = set()
    if isinstance(items, list):
        for item in items:
            ident = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not isinstance(ident, str) or ident not in batch:
                break
            failed.add(ident)
        else:
            return failed, None
    return batch, (
        "Function.InvalidBatchResponse: batchItemFailures must be a list of "
        '{"itemIdentifier": "<messageId of this batch>"}'
    )


@dataclass
class Message:
    id: str
    fields: dict[bytes, bytes]
    attempt: int

    def record(self, arn: str, stream: str, group: str) -> dict[str, Any]:
        return {
            "eventSource": EVENT_SOURCE,
            "eventSourceARN": arn,
            "stream": stream,
            "group": group,
            "messageId": self.id,
            "fields": {text_of(k): text_of(v) for k, v in self.fields.items()},
            "attempt": self.attempt,
        }


def chunks_by_size(
    records: Sequence[tuple[Message, bytes]], limit: int
) -> tuple[list[list[tuple[Message, bytes]]], list[Message]]:
    """Split encoded records into events of at most ``limit`` bytes (in order); records
    that alone exceed it come back separately (they cannot be delivered)."""
    chunks: list[list[tuple[Message, bytes]]] = []
    too_big: list[Message] = []
    current: list[tuple[Message, bytes]] = []
    size = len(b'{"Records": []}')
    for message, encoded in records:
        cost = len(encoded) + 2
        if len(b'{"Records": []}') + cost > limit:
            too_big.append(message)
            continue
        if current and size + cost > limit:
            chunks.append(current)
            current, size = [], len(b'{"Records": []}')
        current.append((message, encoded))
        size += cost
    if current:
        chunks.append(current)
    return chunks, too_big


def text_of(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
