"""Timer schedules: what a timer trigger's expression means, and which ticks fire.

A *tick* is an instant at which a timer trigger fires: a whole-second UTC time.

Expressions
-----------
``min hour dom mon dow``
    5-field cron, e.g. ``0 9 * * *`` (09:00 every day), ``*/15 * * * *``.
``sec min hour dom mon dow``
    6-field cron with the **seconds first**, e.g. ``*/10 * * * * *`` (every 10 s),
    ``0 0 9 * * *`` (the same as ``0 9 * * *``).
``rate(N unit)``
    A fixed interval, as in AWS and SCF: ``unit`` is ``second``, ``minute``,
    ``hour`` or ``day``, singular when N is 1 and plural otherwise:
    ``rate(1 minute)``, ``rate(5 minutes)``, ``rate(30 seconds)``, ``rate(1 day)``.
    At most 365 days.

Cron fields are standard cron: ``*``, lists ``1,15``, ranges ``1-5``, steps ``*/15``,
month and weekday names (``JAN``, ``MON``), Sunday as ``0`` or ``7``; when both the
day of month and the day of week are restricted, a day matching either fires.
Also accepted: ``?`` (same as ``*``, day fields only), ``L`` (last day of the
month), ``15W`` (weekday nearest the 15th), ``1#2`` (second Monday).
Not accepted: AWS ``cron(...)`` with its year field, 7-field cron, nicknames such
as ``@daily``, and hashed or random values (``H``, ``R``).

Time zones
----------
A cron expression is read on the wall clock of the trigger's IANA time zone
(``Asia/Shanghai``, ``Europe/Berlin``; default ``UTC``): ``0 9 * * *`` in
``Asia/Shanghai`` fires at 01:00 UTC. Where that zone changes its clocks:

* An expression whose hour field is ``*`` (every hour) follows elapsed time:
  nothing fires in the skipped hour (those wall-clock times do not exist), and
  both passes of a repeated hour fire (``*/30 * * * *`` still fires every 30 min).
* Any other expression (fixed hours, e.g. ``30 2 * * *``) follows the wall clock:
  a tick that falls in the skipped hour moves to the first instant after the gap
  (02:30 fires at 03:00 on the spring-forward night, once), and a tick in the
  repeated hour fires once, at its first occurrence (still on summer time).

``rate()`` ignores the time zone: its ticks are ``created + k * interval``
(k = 1, 2, ...), counted from the trigger's creation time rounded down to the
whole second, so the first tick comes one interval after creation.
``rate(1 day)`` is every 24 hours of elapsed time; across a clock change its
local time of day shifts by an hour.

Missed ticks (catch-up)
-----------------------
The platform remembers, per trigger, the last tick it fired (``last_fired``).
Whenever it looks (at every tick, and again after a restart or an outage), the
ticks that are *due* are those after ``last_fired`` (after the trigger's creation
if it never fired), no later than now, and no older than 24 hours
(``max_catch_up_age``); older ticks are dropped. The trigger's catch-up policy
decides which of them fire:

``latest`` (default)
    The newest due tick fires, once; it stands for all the ticks it replaces.
``all``
    Every due tick fires, oldest first, but at most the newest 100
    (``MAX_CATCH_UP_TICKS``); older ones are dropped.
``none``
    The newest due tick fires only if it is at most 60 seconds late
    (``on_time_grace``); otherwise nothing fires, and the trigger fires again at
    its next tick.

A tick fires at most once, across restarts too: after firing, the platform
stores the newest fired tick as ``last_fired``, and only later ticks are ever
due. While the platform keeps up (it looks within the grace of every tick and
before the next one), every policy fires every tick exactly once.

Everything here is pure: time is passed in, nothing sleeps or stores.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import ClassVar, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = [
    "DEFAULT_MAX_CATCH_UP_AGE",
    "DEFAULT_ON_TIME_GRACE",
    "MAX_CATCH_UP_TICKS",
    "MAX_RATE_INTERVAL",
    "CatchUpPolicy",
    "CronSchedule",
    "InvalidScheduleError",
    "RateSchedule",
    "Schedule",
    "due_ticks",
    "parse_catch_up_policy",
    "parse_schedule",
]

CatchUpPolicy = Literal["latest", "all", "none"]
"""What fires after missed ticks: see the module docstring."""

#: Policy ``all`` fires at most this many ticks at once (the newest ones).
MAX_CATCH_UP_TICKS: Final = 100
#: Ticks older than this (measured from now) never fire.
DEFAULT_MAX_CATCH_UP_AGE: Final = timedelta(hours=24)
#: Policy ``none`` still fires a tick this late; a later one counts as missed.
DEFAULT_ON_TIME_GRACE: Final = timedelta(seconds=60)
#: The longest ``rate()``; anything rarer is better said with a cron expression.
MAX_RATE_INTERVAL: Final = timedelta(days=365)

_POLICIES: Final[dict[str, CatchUpPolicy]] = {"latest": "latest", "all": "all", "none": "none"}
_FORMS: Final = (
    "Write a 5-field cron 'min hour dom mon dow' (e.g. '0 9 * * *'), "
    "a 6-field cron 'sec min hour dom mon dow' (e.g. '*/10 * * * * *') "
    "or 'rate(N unit)' with unit second, minute, hour or day (e.g. 'rate(5 minutes)')"
)
_NICKNAMES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_RATE_UNITS: Final = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE_RE: Final = re.compile(r"rate\(\s*(?P<value>\d+)\s+(?P<unit>[a-z]+)\s*\)", re.ASCII)
#: croniter's hashed (``H``) and random (``R``) values: random differs per parse.
_HASHED_RE: Final = re.compile(r"[hr](\(\d+-\d+\))?(/\d+)?", re.ASCII | re.IGNORECASE)
#: What an AWS cron year field looks like: a 6-field cron ending so was probably one.
_YEAR_RE: Final = re.compile(r"\*|\?|\d{4}(-\d{4})?(,\d{4})*", re.ASCII)
#: Zone keys that load but are not portable IANA names (host-dependent, leap seconds).
_NOT_IANA: Final = ("localtime", "posixrules", "Factory")
_NOT_IANA_PREFIXES: Final = ("posix/", "right/")
#: Index of the hour field in croniter's expansion (seconds move to the end).
_HOUR_FIELD: Final = 1
#: parse_schedule proves an expression fires at all by finding a tick after this.
_PROBE_FROM: Final = datetime(2000, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)
_MICROSECOND: Final = timedelta(microseconds=1)


class InvalidScheduleError(ValueError):
    """A schedule expression, time zone or catch-up policy a user wrote is not accepted.

    The message says what to write instead. At the API boundary it is a 400 with
    the code below.
    """

    code: ClassVar[str] = "Trigger.InvalidSchedule"
    status: ClassVar[int] = 400


class Schedule(ABC):
    """When a timer trigger fires. Build one with :func:`parse_schedule`.

    Every method takes and returns timezone-aware datetimes; ticks are whole-second
    UTC datetimes. ``anchor`` is the trigger's creation time: ``rate()`` counts its
    ticks from it (it is required there) and cron ignores it.
    """

    #: The expression, normalised (single spaces, ``rate(5 minutes)``).
    expression: str
    #: The IANA time zone the expression is read in.
    tz: str

    @abstractmethod
    def next_after(self, t: datetime, *, anchor: datetime | None = None) -> datetime:
        """The first tick strictly after ``t``."""

    @abstractmethod
    def ticks_at_or_before(
        self, t: datetime, *, anchor: datetime | None = None
    ) -> Iterator[datetime]:
        """Ticks at or before ``t``, newest first (lazily; stop when you have enough)."""

    def __str__(self) -> str:
        return self.expression if self.tz == "UTC" else f"{self.expression} ({self.tz})"


@dataclass(frozen=True)
class CronSchedule(Schedule):
    """A 5- or 6-field cron expression read on the wall clock of ``tz``.

    croniter does the calendar arithmetic. An expression whose hour field is ``*``
    uses croniter's own zone handling, which follows elapsed time across clock
    changes. Any other runs croniter on naive wall-clock times and maps each
    wall-clock tick to one instant here: a skipped time to the end of the gap, a
    repeated time to its first occurrence. Both rules are in the module docstring.
    """

    expression: str
    tz: str
    #: Six fields, the first one seconds.
    with_seconds: bool
    #: The hour field is ``*``: clock changes follow elapsed time.
    every_hour: bool

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def next_after(self, t: datetime, *, anchor: datetime | None = None) -> datetime:
        _require_aware(t, "t")
        if self.every_hour:
            return self._croniter(t.astimezone(self.zone)).get_next(datetime).astimezone(UTC)
        # Wall-clock times before the end of a repeated hour that holds t map to
        # instants before t: start after them.
        repeat = _repeated_pass(t, self.zone)
        start = t if repeat is None else repeat[1] - _MICROSECOND
        it = self._croniter(_wall(start, self.zone))
        while True:
            tick, _ = _instant(it.get_next(datetime), self.zone)
            if tick > t:
                return tick

    def ticks_at_or_before(
        self, t: datetime, *, anchor: datetime | None = None
    ) -> Iterator[datetime]:
        _require_aware(t, "t")
        # Ticks are whole seconds; croniter's get_prev is strictly before its start.
        t = t.astimezone(UTC).replace(microsecond=0)
        if self.every_hour:
            it = self._croniter((t + _SECOND).astimezone(self.zone))
            while True:
                yield it.get_prev(datetime).astimezone(UTC)
        # In a repeated hour, every wall-clock time of it has had its (first) tick.
        repeat = _repeated_pass(t, self.zone)
        start = t if repeat is None else repeat[1] - _SECOND
        it = self._croniter(_wall(start, self.zone) + _SECOND)
        newest: datetime | None = None
        while True:
            tick, moved = _instant(it.get_prev(datetime), self.zone)
            if tick <= t and (newest is None or tick < newest):
                newest = tick
                yield tick
            if moved:
                # The rest of the gap moves to the same instant: skip to before the gap.
                it = self._croniter(_wall(tick - _SECOND, self.zone) + _SECOND)

    def _croniter(self, start: datetime) -> croniter[datetime]:
        """Aware ``start``: croniter follows the zone. Naive: plain wall-clock times."""
        return croniter(
            self.expression, start, ret_type=datetime, second_at_beginning=self.with_seconds
        )


@dataclass(frozen=True)
class RateSchedule(Schedule):
    """``rate(N unit)``: every ``interval`` of elapsed time, counted from the anchor."""

    expression: str
    tz: str
    interval: timedelta

    def next_after(self, t: datetime, *, anchor: datetime | None = None) -> datetime:
        _require_aware(t, "t")
        start = self._anchor(anchor)
        k = max((t - start) // self.interval + 1, 1)
        return start + k * self.interval

    def ticks_at_or_before(
        self, t: datetime, *, anchor: datetime | None = None
    ) -> Iterator[datetime]:
        _require_aware(t, "t")
        start = self._anchor(anchor)
        for k in range((t - start) // self.interval, 0, -1):
            yield start + k * self.interval

    def _anchor(self, anchor: datetime | None) -> datetime:
        if anchor is None:
            raise ValueError(
                f"{self.expression} counts from the trigger's creation time: pass anchor="
            )
        _require_aware(anchor, "anchor")
        return anchor.astimezone(UTC).replace(microsecond=0)


def parse_schedule(expr: str, tz: str = "UTC") -> Schedule:
    """Parse a timer expression read in the IANA time zone ``tz``.

    Raises :class:`InvalidScheduleError` with a message that says what to write.
    """
    _load_zone(tz)
    text = expr.strip()
    lowered = text.lower()
    if not text:
        raise InvalidScheduleError(f"The schedule is empty. {_FORMS}.")
    if lowered.startswith("rate"):
        return _parse_rate(text, tz)
    if lowered.startswith("cron("):
        raise InvalidScheduleError(_aws_cron_message(text))
    if lowered in _NICKNAMES:
        raise InvalidScheduleError(
            f"Cron nicknames such as {text!r} are not accepted: write {_NICKNAMES[lowered]!r}."
        )
    return _parse_cron(text, tz)


def due_ticks(
    schedule: Schedule,
    last_fired: datetime | None,
    now: datetime,
    created: datetime,
    policy: CatchUpPolicy = "latest",
    *,
    max_catch_up_age: timedelta = DEFAULT_MAX_CATCH_UP_AGE,
    on_time_grace: timedelta = DEFAULT_ON_TIME_GRACE,
    max_ticks: int = MAX_CATCH_UP_TICKS,
) -> list[datetime]:
    """The ticks to fire now, oldest first; see the module docstring for the rules.

    ``last_fired`` is the newest tick fired so far (``None`` if none), ``created``
    when the trigger's schedule took effect: ``rate()`` counts from it, and no
    tick at or before it fires (pass the update time when a schedule changes).
    After firing, store the last returned tick as ``last_fired`` — before
    enqueueing for at-most-once, or in the same transaction as the enqueue.
    An empty list changes nothing.
    """
    _require_aware(now, "now")
    _require_aware(created, "created")
    if last_fired is not None:
        _require_aware(last_fired, "last_fired")
    if policy not in _POLICIES:
        raise ValueError(f"unknown catch-up policy {policy!r}; expected one of {list(_POLICIES)}")
    if max_catch_up_age < timedelta(0) or on_time_grace < timedelta(0) or max_ticks < 1:
        raise ValueError("max_catch_up_age and on_time_grace must be >= 0, max_ticks >= 1")

    after = created if last_fired is None else max(last_fired, created)
    oldest = now - max_catch_up_age
    limit = max_ticks if policy == "all" else 1
    newest_first: list[datetime] = []
    for tick in schedule.ticks_at_or_before(now, anchor=created):
        if tick <= after or tick < oldest:
            break
        newest_first.append(tick)
        if len(newest_first) == limit:
            break
    if policy == "none" and newest_first and now - newest_first[0] > on_time_grace:
        return []
    newest_first.reverse()
    return newest_first


def parse_catch_up_policy(value: str) -> CatchUpPolicy:
    """A catch-up policy a user wrote; raises :class:`InvalidScheduleError` if unknown."""
    try:
        return _POLICIES[value]
    except KeyError:
        raise InvalidScheduleError(
            f"Unknown catch-up policy {value!r}: use 'latest' (the default), 'all' or 'none'."
        ) from None


def _parse_rate(text: str, tz: str) -> RateSchedule:
    match = _RATE_RE.fullmatch(text)
    if match is None:
        if _RATE_RE.fullmatch(text.lower()):
            lowered = _parse_rate(text.lower(), tz)  # raises if wrong in more than case
            raise InvalidScheduleError(
                f"Invalid rate expression {text!r}: write it in lower case, {lowered.expression!r}."
            )
        raise InvalidScheduleError(
            f"Invalid rate expression {text!r}: write 'rate(N unit)' with N a whole number "
            "and unit second, minute, hour or day, e.g. 'rate(5 minutes)' or 'rate(1 hour)'."
        )
    value, unit = int(match["value"]), match["unit"]
    singular = unit.removesuffix("s")
    if singular not in _RATE_UNITS:
        raise InvalidScheduleError(
            f"Unknown unit {unit!r} in {text!r}: use second(s), minute(s), hour(s) or day(s), "
            "e.g. 'rate(5 minutes)'."
        )
    if value == 0:
        raise InvalidScheduleError(f"{text!r} never fires: N must be at least 1.")
    expected = singular if value == 1 else singular + "s"
    canonical = f"rate({value} {expected})"
    if unit != expected:
        raise InvalidScheduleError(
            f"Write {canonical!r}: the unit is singular for 1 and plural otherwise, as in AWS."
        )
    if value * _RATE_UNITS[singular] > MAX_RATE_INTERVAL.total_seconds():
        raise InvalidScheduleError(
            f"{text!r} is longer than 365 days: use a cron expression, e.g. '0 0 1 1 *' "
            "for once a year."
        )
    return RateSchedule(canonical, tz, timedelta(seconds=value * _RATE_UNITS[singular]))


def _parse_cron(text: str, tz: str) -> CronSchedule:
    fields = text.split()
    if len(fields) == 7:
        raise InvalidScheduleError(
            f"7-field cron {text!r} (with a year) is not accepted. {_FORMS}."
        )
    if len(fields) not in (5, 6):
        raise InvalidScheduleError(f"Invalid schedule {text!r} ({len(fields)} fields). {_FORMS}.")
    if any(_HASHED_RE.fullmatch(item) for field in fields for item in field.split(",")):
        raise InvalidScheduleError(
            f"Hashed or random cron values (H, R) in {text!r} are not accepted: "
            "write the values themselves, e.g. '17 * * * *'."
        )
    normalised = " ".join(fields)
    with_seconds = len(fields) == 6
    order = "sec min hour dom mon dow" if with_seconds else "min hour dom mon dow"
    try:
        expanded, _ = croniter.expand(normalised, second_at_beginning=with_seconds, strict=True)
    except CroniterError as exc:
        detail = str(exc).rstrip(".")
        message = f"Invalid cron expression {normalised!r} (fields: {order}): {detail}."
        if with_seconds and _YEAR_RE.fullmatch(fields[5]):
            aws = " ".join(fields[:5])
            message += f" If it is AWS's 'min hour dom mon dow year', drop the year: {aws!r}."
        raise InvalidScheduleError(f"{message} {_FORMS}.") from exc
    schedule = CronSchedule(
        normalised,
        tz,
        with_seconds=with_seconds,
        every_hour=expanded[_HOUR_FIELD] == ["*"],
    )
    try:
        schedule.next_after(_PROBE_FROM)
    except CroniterBadDateError:
        raise InvalidScheduleError(
            f"Cron expression {normalised!r} (fields: {order}) never fires: no date "
            "matches its day and month fields."
        ) from None
    return schedule


def _aws_cron_message(text: str) -> str:
    inner = text[len("cron(") :].removesuffix(")").split()
    message = f"AWS-style {text!r} is not accepted. {_FORMS}."
    if len(inner) == 6:
        suggestion = " ".join(inner[:5])
        year = "" if inner[5] in ("*", "?") else " (a year cannot be given)"
        message += f" Without the wrapper and the year field: {suggestion!r}{year}."
    return message


def _load_zone(tz: str) -> ZoneInfo:
    hint = "use an IANA time zone name such as 'UTC', 'Europe/Berlin' or 'Asia/Shanghai'"
    if tz in _NOT_IANA or tz.startswith(_NOT_IANA_PREFIXES):
        raise InvalidScheduleError(f"Time zone {tz!r} is not accepted: {hint}.")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidScheduleError(f"Unknown time zone {tz!r}: {hint}.") from None


def _wall(t: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock time in ``zone`` at instant ``t``."""
    return t.astimezone(zone).replace(tzinfo=None, fold=0)


def _instant(wall: datetime, zone: ZoneInfo) -> tuple[datetime, bool]:
    """The UTC instant a wall-clock tick fires at, and whether it was moved.

    A repeated wall-clock time fires at its first occurrence; one skipped by a
    clock change fires when the gap ends (moved)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) == wall:
        return first, False
    # In a gap, fold=0 reads the time with the offset from before the change
    # (an instant after the gap) and fold=1 with the one after (before the gap).
    before_gap = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _offset_change(before_gap, first, zone), True


def _repeated_pass(t: datetime, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """The UTC span ``[start, end)`` of the second pass of a repeated local hour
    that holds instant ``t``, or ``None`` when its wall-clock time occurs once."""
    local = t.astimezone(zone)
    if not local.fold:
        return None
    delta = _utcoffset(local.replace(fold=0)) - _utcoffset(local)
    if delta <= timedelta(0):
        return None
    start = _offset_change(t - delta, t, zone)
    return start, start + delta


def _offset_change(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The instant in ``(low, high]`` when the UTC offset of ``zone`` changes
    (once) to the one at ``high``; zone transitions fall on whole seconds."""
    offset = _utcoffset(high.astimezone(zone))
    low_s, high_s = math.floor(low.timestamp()), math.floor(high.timestamp())
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if _utcoffset(datetime.fromtimestamp(middle, zone)) == offset:
            high_s = middle
        else:
            low_s = middle
    return datetime.fromtimestamp(high_s, UTC)


def _utcoffset(t: datetime) -> timedelta:
    offset = t.utcoffset()
    if offset is None:
        raise ValueError(f"{t!r} is not timezone-aware")
    return offset


def _require_aware(t: datetime, name: str) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {t!r}")
