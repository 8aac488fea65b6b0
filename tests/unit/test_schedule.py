"""Timer schedules and catch-up (pure: fixed datetimes stand in for the clock, nothing sleeps)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from nimbus.triggers.schedule import (
    MAX_CATCH_UP_TICKS,
    CatchUpPolicy,
    CronSchedule,
    InvalidScheduleError,
    RateSchedule,
    Schedule,
    due_ticks,
    parse_catch_up_policy,
    parse_schedule,
)

BERLIN = ZoneInfo("Europe/Berlin")
POLICIES: tuple[CatchUpPolicy, ...] = ("latest", "all", "none")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def forward(
    schedule: Schedule, start: datetime, end: datetime, anchor: datetime | None = None
) -> list[datetime]:
    """Ticks in ``(start, end]`` by repeated ``next_after``."""
    ticks = []
    tick = schedule.next_after(start, anchor=anchor)
    while tick <= end:
        ticks.append(tick)
        tick = schedule.next_after(tick, anchor=anchor)
    return ticks


def backward(
    schedule: Schedule, start: datetime, end: datetime, anchor: datetime | None = None
) -> list[datetime]:
    """Ticks in ``(start, end]`` by ``ticks_at_or_before``, oldest first."""
    newest_first = []
    for tick in schedule.ticks_at_or_before(end, anchor=anchor):
        if tick <= start:
            break
        newest_first.append(tick)
    return newest_first[::-1]


def berlin(schedule: Iterable[datetime]) -> list[str]:
    return [t.astimezone(BERLIN).strftime("%d %H:%M:%S%z") for t in schedule]


class FakeClock:
    """The scheduler loop's only state across restarts is ``last_fired``; time is given."""

    def __init__(self, schedule: Schedule, created: datetime, policy: CatchUpPolicy) -> None:
        self.schedule, self.created, self.policy = schedule, created, policy
        self.last_fired: datetime | None = None
        self.fired: list[datetime] = []

    def wake(self, now: datetime) -> list[datetime]:
        ticks = due_ticks(self.schedule, self.last_fired, now, self.created, self.policy)
        if ticks:
            self.last_fired = ticks[-1]  # persisted before the events are enqueued
        self.fired += ticks
        return ticks


# ---- cron ------------------------------------------------------------------------------


def test_every_second_cron() -> None:
    s = parse_schedule("* * * * * *")
    assert isinstance(s, CronSchedule) and s.with_seconds
    assert s.next_after(utc(2025, 6, 1, 10, 0, 0)) == utc(2025, 6, 1, 10, 0, 1)
    assert s.next_after(datetime(2025, 6, 1, 10, 0, 0, 500_000, tzinfo=UTC)) == utc(
        2025, 6, 1, 10, 0, 1
    )
    newest = list(
        islice(s.ticks_at_or_before(datetime(2025, 6, 1, 10, 0, 5, 700_000, tzinfo=UTC)), 3)
    )
    assert newest == [
        utc(2025, 6, 1, 10, 0, 5),
        utc(2025, 6, 1, 10, 0, 4),
        utc(2025, 6, 1, 10, 0, 3),
    ]


def test_six_fields_put_seconds_first() -> None:
    every_10s = parse_schedule("*/10 * * * * *")
    assert forward(every_10s, utc(2025, 6, 1, 10, 0, 0), utc(2025, 6, 1, 10, 0, 30)) == [
        utc(2025, 6, 1, 10, 0, 10),
        utc(2025, 6, 1, 10, 0, 20),
        utc(2025, 6, 1, 10, 0, 30),
    ]
    start, end = utc(2025, 6, 1), utc(2025, 6, 5)
    assert forward(parse_schedule("0 0 9 * * *"), start, end) == forward(
        parse_schedule("0 9 * * *"), start, end
    )


def test_five_field_cron() -> None:
    quarter = parse_schedule("*/15 * * * *")
    assert isinstance(quarter, CronSchedule) and not quarter.with_seconds
    assert quarter.next_after(utc(2025, 6, 1, 10, 0, 0)) == utc(2025, 6, 1, 10, 15)
    assert quarter.next_after(utc(2025, 6, 1, 10, 14, 59)) == utc(2025, 6, 1, 10, 15)
    assert next(quarter.ticks_at_or_before(utc(2025, 6, 1, 10, 15))) == utc(2025, 6, 1, 10, 15)
    # 2025-06-06 is a Friday: the next weekday 09:00 is Monday the 9th.
    weekdays = parse_schedule("0 9 * * MON-FRI")
    assert weekdays.next_after(utc(2025, 6, 6, 9, 0)) == utc(2025, 6, 9, 9, 0)


def test_expression_is_normalised_and_ticks_are_whole_utc_seconds() -> None:
    s = parse_schedule("  0   9 * *  *  ")
    assert s.expression == "0 9 * * *" and str(s) == "0 9 * * *"
    assert str(parse_schedule("0 9 * * *", "Asia/Shanghai")) == "0 9 * * * (Asia/Shanghai)"
    tick = s.next_after(datetime(2025, 6, 1, 12, 0, 0, 123, tzinfo=ZoneInfo("America/New_York")))
    assert tick.tzinfo is UTC and tick.microsecond == 0


@pytest.mark.parametrize(
    "expr", ["0 9 L * *", "0 9 * * 1#2", "0 9 ? * MON", "0 9 15W * *", "0 0 29 2 *"]
)
def test_croniter_extensions_are_accepted(expr: str) -> None:
    parse_schedule(expr).next_after(utc(2025, 1, 1))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("* * * * *").next_after(datetime(2025, 6, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        due_ticks(parse_schedule("* * * * *"), None, datetime(2025, 6, 1), utc(2025, 1, 1))


# ---- rate() ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "canonical", "interval"),
    [
        ("rate(30 seconds)", "rate(30 seconds)", timedelta(seconds=30)),
        ("rate(1 second)", "rate(1 second)", timedelta(seconds=1)),
        ("rate(1 minute)", "rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", "rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", "rate(1 hour)", timedelta(hours=1)),
        ("rate(2 hours)", "rate(2 hours)", timedelta(hours=2)),
        ("rate(1 day)", "rate(1 day)", timedelta(days=1)),
        (" rate( 7  days ) ", "rate(7 days)", timedelta(days=7)),
        ("rate(05 minutes)", "rate(5 minutes)", timedelta(minutes=5)),
    ],
)
def test_rate_forms(expr: str, canonical: str, interval: timedelta) -> None:
    s = parse_schedule(expr)
    assert isinstance(s, RateSchedule)
    assert s.interval == interval and s.expression == canonical


def test_rate_counts_from_the_anchor_not_the_epoch() -> None:
    s = parse_schedule("rate(5 minutes)")
    created = datetime(2025, 6, 1, 10, 3, 20, 750_000, tzinfo=UTC)  # rounded down to :20
    assert s.next_after(created, anchor=created) == utc(2025, 6, 1, 10, 8, 20)
    assert s.next_after(utc(2025, 6, 1, 10, 8, 20), anchor=created) == utc(2025, 6, 1, 10, 13, 20)
    assert s.next_after(utc(2025, 6, 1, 10, 9), anchor=created) == utc(2025, 6, 1, 10, 13, 20)
    assert s.next_after(utc(2025, 5, 1), anchor=created) == utc(2025, 6, 1, 10, 8, 20)
    # Finite: nothing at or before the anchor itself.
    assert list(s.ticks_at_or_before(utc(2025, 6, 1, 10, 18, 20), anchor=created)) == [
        utc(2025, 6, 1, 10, 18, 20),
        utc(2025, 6, 1, 10, 13, 20),
        utc(2025, 6, 1, 10, 8, 20),
    ]
    assert list(s.ticks_at_or_before(utc(2025, 6, 1, 10, 8, 19), anchor=created)) == []
    with pytest.raises(ValueError, match="anchor"):
        s.next_after(created)


def test_rate_is_elapsed_time_whatever_the_zone() -> None:
    s = parse_schedule("rate(1 day)", "Europe/Berlin")
    created = utc(2025, 3, 29, 8)  # 09:00 CET
    ticks = forward(s, created, utc(2025, 4, 1, 12), anchor=created)
    assert [b - a for a, b in pairwise(ticks)] == [timedelta(days=1)] * 2
    assert berlin(ticks) == ["30 10:00:00+0200", "31 10:00:00+0200", "01 10:00:00+0200"]


# ---- time zones and daylight saving time -----------------------------------------------


def test_cron_reads_the_wall_clock_of_its_zone() -> None:
    s = parse_schedule("0 9 * * *", "Asia/Shanghai")
    assert s.tz == "Asia/Shanghai"
    assert forward(s, utc(2025, 6, 1), utc(2025, 6, 3)) == [utc(2025, 6, 1, 1), utc(2025, 6, 2, 1)]


def test_spring_forward_moves_fixed_hour_ticks_to_the_end_of_the_gap() -> None:
    # Europe/Berlin, 2025-03-30: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    for expr in ("30 2 * * *", "0 2 * * *", "* 2 * * *", "0 30 2 * * *", "*/10 * 2 * * *"):
        s = parse_schedule(expr, "Europe/Berlin")
        ticks = forward(s, utc(2025, 3, 29, 12), utc(2025, 3, 30, 12))
        assert berlin(ticks) == ["30 03:00:00+0200"], expr  # once, not per skipped time
        assert backward(s, utc(2025, 3, 29, 12), utc(2025, 3, 30, 12)) == ticks, expr
    daily = parse_schedule("30 2 * * *", "Europe/Berlin")
    assert daily.next_after(utc(2025, 3, 30, 1)) == utc(2025, 3, 31, 0, 30)


def test_spring_forward_skips_nothing_in_elapsed_time_for_every_hour_expressions() -> None:
    s = parse_schedule("*/30 * * * *", "Europe/Berlin")
    ticks = forward(s, utc(2025, 3, 29, 23), utc(2025, 3, 30, 2))
    assert ticks == [utc(2025, 3, 29, 23, 30) + timedelta(minutes=30 * i) for i in range(6)]
    assert berlin(ticks)[2:4] == ["30 01:30:00+0100", "30 03:00:00+0200"]
    assert backward(s, utc(2025, 3, 29, 23), utc(2025, 3, 30, 2)) == ticks


def test_fall_back_fires_fixed_hour_ticks_once() -> None:
    # Europe/Berlin, 2025-10-26: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:00-03:00 repeats.
    s = parse_schedule("30 2 * * *", "Europe/Berlin")
    ticks = forward(s, utc(2025, 10, 25, 12), utc(2025, 10, 27, 12))
    assert berlin(ticks) == ["26 02:30:00+0200", "27 02:30:00+0100"]
    assert backward(s, utc(2025, 10, 25, 12), utc(2025, 10, 27, 12)) == ticks
    # Asked from inside the second pass, the next tick is the next day's.
    assert s.next_after(utc(2025, 10, 26, 1, 15)) == utc(2025, 10, 27, 1, 30)
    assert next(s.ticks_at_or_before(utc(2025, 10, 26, 1, 45))) == utc(2025, 10, 26, 0, 30)

    every_10s_at_2 = parse_schedule("*/10 * 2 * * *", "Europe/Berlin")
    night = forward(every_10s_at_2, utc(2025, 10, 25, 12), utc(2025, 10, 26, 12))
    assert (
        len(night) == 360
        and night[0] == utc(2025, 10, 26, 0)
        and night[-1] == utc(2025, 10, 26, 0, 59, 50)
    )
    assert every_10s_at_2.next_after(utc(2025, 10, 26, 1, 30)) == utc(2025, 10, 27, 1)


def test_fall_back_fires_both_passes_for_every_hour_expressions() -> None:
    s = parse_schedule("*/30 * * * *", "Europe/Berlin")
    ticks = forward(s, utc(2025, 10, 25, 23, 45), utc(2025, 10, 26, 2))
    assert ticks == [utc(2025, 10, 26, 0) + timedelta(minutes=30 * i) for i in range(5)]
    assert berlin(ticks)[:4] == [
        "26 02:00:00+0200",
        "26 02:30:00+0200",
        "26 02:00:00+0100",
        "26 02:30:00+0100",
    ]
    assert backward(s, utc(2025, 10, 25, 23, 45), utc(2025, 10, 26, 2)) == ticks


def _documented_ticks(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """The module docstring's DST rules, minute by minute, from croniter's naive wall-clock ticks."""
    zone = ZoneInfo(tz)
    schedule = parse_schedule(expr, tz)
    assert isinstance(schedule, CronSchedule)
    walls: set[datetime] = set()
    wall = (start - timedelta(hours=3)).astimezone(zone).replace(tzinfo=None)
    limit = (end + timedelta(hours=3)).astimezone(zone).replace(tzinfo=None)
    it = croniter(expr, wall, ret_type=datetime)
    while (wall := it.get_next(datetime)) <= limit:
        walls.add(wall)
    ticks, minute, previous = [], start, None
    while minute <= end:
        local = minute.astimezone(zone)
        here = local.replace(tzinfo=None)
        second_pass = local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
        fires = here in walls and (schedule.every_hour or not second_pass)
        if (
            not schedule.every_hour
            and previous is not None
            and here - previous > timedelta(minutes=1)
        ):
            gap = previous + timedelta(minutes=1)
            fires = fires or any(gap <= w < here for w in walls)  # moved to the end of the gap
        if fires:
            ticks.append(minute)
        minute, previous = minute + timedelta(minutes=1), here
    return ticks


@pytest.mark.parametrize(
    "expr", ["30 2 * * *", "*/20 * * * *", "0 1-3 * * *", "*/7 2 * * *", "0 */2 * * *"]
)
@pytest.mark.parametrize("transition", [utc(2025, 3, 30, 1), utc(2025, 10, 26, 1)])
def test_dst_ticks_follow_the_documented_rules(expr: str, transition: datetime) -> None:
    start, end = transition - timedelta(hours=4), transition + timedelta(hours=4)
    expected = _documented_ticks(expr, "Europe/Berlin", start, end)
    s = parse_schedule(expr, "Europe/Berlin")
    assert forward(s, start - timedelta(seconds=1), end) == expected
    assert backward(s, start - timedelta(seconds=1), end) == expected


# ---- invalid input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("", "The schedule is empty"),
        ("rate(1 minutes)", "Write 'rate(1 minute)'"),
        ("rate(5 minute)", "Write 'rate(5 minutes)'"),
        ("rate(1 days)", "Write 'rate(1 day)'"),
        ("RATE(5 MINUTES)", "write it in lower case, 'rate(5 minutes)'"),
        ("rate(0 minutes)", "at least 1"),
        ("rate(5 weeks)", "use second(s), minute(s), hour(s) or day(s)"),
        ("rate(5min)", "write 'rate(N unit)'"),
        ("rate(-5 minutes)", "write 'rate(N unit)'"),
        ("rate(400 days)", "longer than 365 days"),
        ("cron(0 9 * * ? *)", "Without the wrapper and the year field: '0 9 * * ?'"),
        ("0 9 * * ? *", "drop the year: '0 9 * * ?'"),
        ("0 0 * * * * 2025", "7-field cron"),
        ("* * * *", "(4 fields)"),
        ("@daily", "write '0 0 * * *'"),
        ("H * * * *", "(H, R)"),
        ("R(0-5) * * * *", "(H, R)"),
        ("61 * * * *", "out of range"),
        ("0 0 31 2 *", "can never occur"),
        ("0 0 * FOO *", "fields: min hour dom mon dow"),
        ("60 * * * * *", "fields: sec min hour dom mon dow"),
    ],
)
def test_invalid_expressions_say_what_to_write(expr: str, says: str) -> None:
    with pytest.raises(InvalidScheduleError) as info:
        parse_schedule(expr)
    assert says in str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.code == "Trigger.InvalidSchedule" and info.value.status == 400


@pytest.mark.parametrize("expr", ["@daily", "* * * *", "cron(0 9 * * ? *)", "0 0 * FOO *", ""])
def test_refusals_name_the_accepted_forms(expr: str) -> None:
    with pytest.raises(
        InvalidScheduleError, match=r"5-field cron .*6-field cron .*rate\(N unit\)|write '"
    ):
        parse_schedule(expr)


@pytest.mark.parametrize(
    "tz",
    ["Mars/Base", "", "Europe", "../etc/passwd", "/etc/localtime", "utc", "localtime", "right/UTC"],
)
def test_unknown_time_zones_are_refused(tz: str) -> None:
    with pytest.raises(
        InvalidScheduleError, match="IANA time zone name such as 'UTC', 'Europe/Berlin'"
    ):
        parse_schedule("0 9 * * *", tz)
    with pytest.raises(InvalidScheduleError, match="time zone"):
        parse_schedule("rate(5 minutes)", tz)


# ---- catch-up -----------------------------------------------------------------------------

EVERY_5_MIN = parse_schedule("*/5 * * * *")
CREATED = utc(2025, 6, 1, 9, 0, 10)


def test_a_new_trigger_fires_from_its_creation_on() -> None:
    assert due_ticks(EVERY_5_MIN, None, utc(2025, 6, 1, 9, 3), CREATED) == []
    assert due_ticks(
        EVERY_5_MIN, None, datetime(2025, 6, 1, 9, 5, 0, 200_000, tzinfo=UTC), CREATED
    ) == [utc(2025, 6, 1, 9, 5)]
    # The 09:00 tick came before creation (09:00:10): it never fires, whatever the policy.
    for policy in POLICIES:
        assert due_ticks(EVERY_5_MIN, None, utc(2025, 6, 1, 9, 1), CREATED, policy) == []


@pytest.mark.parametrize(
    ("policy", "fires"),
    [
        ("latest", [utc(2025, 6, 1, 10, 15)]),
        ("all", [utc(2025, 6, 1, 10, 5), utc(2025, 6, 1, 10, 10), utc(2025, 6, 1, 10, 15)]),
        ("none", []),
    ],
)
def test_catch_up_after_a_restart(policy: CatchUpPolicy, fires: list[datetime]) -> None:
    clock = FakeClock(EVERY_5_MIN, CREATED, policy)
    clock.last_fired = utc(2025, 6, 1, 9, 55)
    assert clock.wake(datetime(2025, 6, 1, 10, 0, 0, 300_000, tzinfo=UTC)) == [
        utc(2025, 6, 1, 10, 0)
    ]
    persisted = clock.last_fired
    # Down from 10:01 to 10:17: 10:05, 10:10 and 10:15 were missed. Only last_fired survives.
    restarted = FakeClock(EVERY_5_MIN, CREATED, policy)
    restarted.last_fired = persisted
    assert restarted.wake(utc(2025, 6, 1, 10, 17)) == fires
    assert restarted.wake(utc(2025, 6, 1, 10, 17, 30)) == []  # asking again fires nothing
    assert restarted.wake(datetime(2025, 6, 1, 10, 20, 0, 100_000, tzinfo=UTC)) == [
        utc(2025, 6, 1, 10, 20)
    ]
    assert restarted.wake(utc(2025, 6, 1, 10, 20, 1)) == []


def test_none_still_fires_a_tick_within_the_grace() -> None:
    last = utc(2025, 6, 1, 10, 0)
    assert due_ticks(EVERY_5_MIN, last, utc(2025, 6, 1, 10, 15, 59), CREATED, "none") == [
        utc(2025, 6, 1, 10, 15)
    ]
    assert due_ticks(EVERY_5_MIN, last, utc(2025, 6, 1, 10, 16, 1), CREATED, "none") == []
    late = utc(2025, 6, 1, 10, 15, 30)
    assert (
        due_ticks(EVERY_5_MIN, last, late, CREATED, "none", on_time_grace=timedelta(seconds=10))
        == []
    )


def test_ticks_older_than_max_catch_up_age_are_dropped() -> None:
    hourly = parse_schedule("0 * * * *")
    created, last = utc(2025, 5, 1), utc(2025, 5, 30, 12)  # down for two days
    now = utc(2025, 6, 1, 12)
    all_ticks = due_ticks(hourly, last, now, created, "all")
    assert (
        all_ticks[0] == utc(2025, 5, 31, 12) and all_ticks[-1] == now
    )  # exactly 24 h old still fires
    assert len(all_ticks) == 25
    assert due_ticks(hourly, last, now, created, "latest") == [now]
    daily = parse_schedule("0 9 * * *")
    day_after = utc(2025, 6, 1, 12)
    assert due_ticks(daily, utc(2025, 5, 31, 9), day_after, created, "latest") == [
        utc(2025, 6, 1, 9)
    ]
    one_hour = timedelta(hours=1)
    assert (
        due_ticks(daily, utc(2025, 5, 31, 9), day_after, created, max_catch_up_age=one_hour) == []
    )


def test_all_fires_at_most_the_newest_hundred() -> None:
    every_second = parse_schedule("* * * * * *")
    now = datetime(2025, 6, 1, 12, 0, 0, 400_000, tzinfo=UTC)
    ticks = due_ticks(every_second, now - timedelta(minutes=10), now, CREATED, "all")
    assert len(ticks) == MAX_CATCH_UP_TICKS == 100
    assert ticks[-1] == utc(2025, 6, 1, 12) and ticks[0] == utc(2025, 6, 1, 11, 58, 21)
    assert ticks == sorted(set(ticks))
    assert (
        len(due_ticks(every_second, now - timedelta(minutes=10), now, CREATED, "all", max_ticks=7))
        == 7
    )


def test_rate_catch_up_counts_from_creation() -> None:
    s = parse_schedule("rate(5 minutes)")
    created = utc(2025, 6, 1, 10, 3, 20)
    assert due_ticks(s, None, utc(2025, 6, 1, 10, 8), created) == []
    assert due_ticks(s, None, utc(2025, 6, 1, 10, 9), created) == [utc(2025, 6, 1, 10, 8, 20)]
    assert due_ticks(s, utc(2025, 6, 1, 10, 8, 20), utc(2025, 6, 1, 10, 24), created, "all") == [
        utc(2025, 6, 1, 10, 13, 20),
        utc(2025, 6, 1, 10, 18, 20),
        utc(2025, 6, 1, 10, 23, 20),
    ]


def test_a_changed_schedule_fires_nothing_from_before_the_change() -> None:
    # Fired 09:00 daily; at 15:00 the schedule becomes 12:00 daily, effective from 15:00.
    noon = parse_schedule("0 12 * * *")
    assert due_ticks(noon, utc(2025, 6, 1, 9), utc(2025, 6, 1, 15), utc(2025, 6, 1, 15)) == []
    assert due_ticks(noon, utc(2025, 6, 1, 9), utc(2025, 6, 2, 12), utc(2025, 6, 1, 15)) == [
        utc(2025, 6, 2, 12)
    ]


def test_a_clock_that_steps_back_fires_nothing() -> None:
    assert (
        due_ticks(EVERY_5_MIN, utc(2025, 6, 1, 10, 0), utc(2025, 6, 1, 9, 50), CREATED, "all") == []
    )


def test_policies_are_checked() -> None:
    assert [parse_catch_up_policy(p) for p in POLICIES] == list(POLICIES)
    with pytest.raises(
        InvalidScheduleError, match="use 'latest' \\(the default\\), 'all' or 'none'"
    ):
        parse_catch_up_policy("every")
    with pytest.raises(ValueError, match="unknown catch-up policy"):
        due_ticks(EVERY_5_MIN, None, utc(2025, 6, 1), CREATED, "every")  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", POLICIES)
def test_a_loop_that_keeps_up_fires_every_tick_once(policy: CatchUpPolicy) -> None:
    # Berlin's fall-back night, with every-hour and fixed-hour expressions.
    start, end = utc(2025, 10, 25, 20), utc(2025, 10, 26, 6)
    lateness = random.Random(7)
    for expr in ("*/20 * * * *", "*/10 2 * * *", "rate(7 minutes)"):
        s = parse_schedule(expr, "Europe/Berlin")
        expected = forward(s, start, end, anchor=start)
        clock = FakeClock(s, start, policy)
        for tick in expected:  # the loop sleeps until the next tick and wakes a little late
            wake_at = s.next_after(clock.last_fired or start, anchor=start)
            assert wake_at == tick
            assert clock.wake(wake_at + timedelta(seconds=lateness.uniform(0, 5))) == [tick]
        assert clock.fired == expected, (expr, policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_no_tick_fires_twice_across_outages_and_restarts(policy: CatchUpPolicy) -> None:
    rng = random.Random(2025)
    created = utc(2025, 3, 29)
    for expr in ("*/5 * * * *", "30 2 * * *", "rate(45 seconds)", "*/30 * * * * *"):
        s = parse_schedule(expr, "Europe/Berlin")
        clock = FakeClock(s, created, policy)
        now = created
        while now < utc(2025, 3, 31):
            # Irregular wake-ups, and now and then an outage of up to two hours.
            now += timedelta(seconds=rng.choice([1, 7, 30, 61, 299, 3600, 7200]))
            clock.wake(now)
            clock.wake(now)  # a second look at the same time fires nothing new
        assert clock.fired == sorted(set(clock.fired)), (expr, policy)
        assert all(t > created for t in clock.fired)
        if policy == "all" and expr == "*/5 * * * *":  # outages shorter than 100 ticks lose nothing
            assert clock.fired == forward(s, created, clock.fired[-1])
