"""Business hours: parsing the weekly spec, holidays, time zones, and when the team is next in."""
from __future__ import annotations

from datetime import date, datetime, time, timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest

from escalations.hours import BusinessHours, describe_opening, parse_hours

SPEC = "mon-fri 08:00-20:00, sat 09:00-17:00"
BERLIN = ZoneInfo("Europe/Berlin")


def at(y: int, m: int, d: int, hh: int, mm: int = 0, tz=BERLIN) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=tz)


def test_the_weekly_spec_becomes_windows_per_weekday() -> None:
    windows = parse_hours(SPEC)
    assert windows[0] == windows[4] == ((time(8), time(20)),)
    assert windows[5] == ((time(9), time(17)),)
    assert 6 not in windows


def test_24_7_is_open_every_day_all_day() -> None:
    hours = BusinessHours.of("24/7", "UTC")
    assert all(hours.is_open(datetime(2026, 3, d, h, tzinfo=dt_timezone.utc)) for d in range(1, 8) for h in (0, 12, 23))


@pytest.mark.parametrize("spec", ["", "mon-fri", "mon-fri 8-20", "fri-mon 08:00-20:00", "mon 20:00-08:00",
                                  "xyz 08:00-10:00", "mon 25:00-26:00"])
def test_unreadable_specs_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_hours(spec)


def test_it_is_open_inside_the_hours_and_closed_outside_in_the_team_time_zone() -> None:
    hours = BusinessHours.of(SPEC, "Europe/Berlin")
    assert hours.is_open(at(2026, 3, 4, 8, 0))  # Wednesday 08:00 Berlin
    assert not hours.is_open(at(2026, 3, 4, 7, 59))
    assert not hours.is_open(at(2026, 3, 4, 20, 0))
    # 07:30 UTC is 08:30 in Berlin (winter time): open.
    assert hours.is_open(datetime(2026, 3, 4, 7, 30, tzinfo=dt_timezone.utc))
    assert not hours.is_open(at(2026, 3, 8, 12))  # Sunday


def test_a_holiday_is_closed_all_day() -> None:
    hours = BusinessHours.of(SPEC, "Europe/Berlin", ["2026-03-04"])
    assert not hours.is_open(at(2026, 3, 4, 12))
    assert hours.holidays == frozenset({date(2026, 3, 4)})


def test_next_opening_skips_the_weekend_and_holidays() -> None:
    hours = BusinessHours.of(SPEC, "Europe/Berlin", ["2026-03-09"])  # Monday is a holiday
    saturday_evening = at(2026, 3, 7, 18)
    assert hours.next_opening(saturday_evening) == at(2026, 3, 10, 8)  # Tuesday 08:00
    assert hours.next_opening(at(2026, 3, 4, 6)) == at(2026, 3, 4, 8)  # later the same day
    inside = at(2026, 3, 4, 12)
    assert hours.next_opening(inside) == inside


def test_the_opening_is_described_relative_to_now() -> None:
    now = at(2026, 3, 4, 21)
    assert describe_opening(at(2026, 3, 5, 8), now, "Europe/Berlin") == "tomorrow at 08:00"
    assert describe_opening(at(2026, 3, 4, 22), now, "Europe/Berlin") == "today at 22:00"
    assert describe_opening(at(2026, 3, 10, 8), now, "Europe/Berlin") == "on Tuesday 10 March at 08:00"
