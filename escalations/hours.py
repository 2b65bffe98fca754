"""Business hours of the human team: "mon-fri 08:00-20:00, sat 09:00-17:00", holidays, a time zone.

Pure Python (no Django import) so settings.py can validate the value at start-up.
Every function takes ``now`` explicitly, which keeps tests free of clock mocking.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = ("24/7", "always")
_ITEM = re.compile(r"^([a-z]{3})(?:-([a-z]{3}))?\s+(\d{1,2}:\d{2})-(\d{1,2}:\d{2})$")
_SEARCH_DAYS = 15  # long enough to cross a holiday week

Windows = dict[int, tuple[tuple[time, time], ...]]


def _clock(text: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours == 24 and minutes == 0:
        return time.max
    return time(hours, minutes)  # ValueError for 25:00 or 10:75


def _days(first: str, last: str | None) -> list[int]:
    if first not in DAYS or (last is not None and last not in DAYS):
        raise ValueError(f"unknown day in {first}-{last}")
    start, end = DAYS.index(first), DAYS.index(last or first)
    if end < start:
        raise ValueError(f"day range {first}-{last} runs backwards")
    return list(range(start, end + 1))


@functools.lru_cache(maxsize=16)
def parse_hours(spec: str) -> Windows:
    """Weekday (0 = Monday) → opening windows; "24/7" opens every day all day."""
    spec = spec.strip().lower()
    if spec in ALWAYS:
        return {day: ((time.min, time.max),) for day in range(7)}
    windows: dict[int, list[tuple[time, time]]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        match = _ITEM.match(item)
        if not match:
            raise ValueError(f"cannot read {item!r}")
        opens, closes = _clock(match.group(3)), _clock(match.group(4))
        if closes <= opens:
            raise ValueError(f"{item!r} closes before it opens")
        for day in _days(match.group(1), match.group(2)):
            windows.setdefault(day, []).append((opens, closes))
    if not windows:
        raise ValueError("no opening hours")
    return {day: tuple(sorted(spans)) for day, spans in windows.items()}


@dataclass(frozen=True)
class BusinessHours:
    spec: str
    tz: str
    holidays: frozenset[date]

    @classmethod
    def of(cls, spec: str, tz: str, holidays: Iterable[str | date] = ()) -> BusinessHours:
        days = frozenset(d if isinstance(d, date) else date.fromisoformat(d) for d in holidays)
        parse_hours(spec)
        return cls(spec=spec, tz=tz, holidays=days)

    def _windows_on(self, day: date) -> tuple[tuple[time, time], ...]:
        if day in self.holidays:
            return ()
        return parse_hours(self.spec).get(day.weekday(), ())

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.tz))
        return any(opens <= local.time() < closes for opens, closes in self._windows_on(local.date()))

    def next_opening(self, now: datetime) -> datetime | None:
        """When humans are next at work (``now`` itself while open); None if never within two weeks."""
        if self.is_open(now):
            return now
        zone = ZoneInfo(self.tz)
        local = now.astimezone(zone)
        for offset in range(_SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            for opens, _closes in self._windows_on(day):
                start = datetime.combine(day, opens, tzinfo=zone)
                if start > local:
                    return start
        return None


def describe_opening(opening: datetime, now: datetime, tz: str) -> str:
    """ "today at 08:00", "tomorrow at 09:00" or "on Monday 5 January at 08:00" in the team's zone."""
    zone = ZoneInfo(tz)
    local, today = opening.astimezone(zone), now.astimezone(zone).date()
    clock = local.strftime("%H:%M")
    if local.date() == today:
        return f"today at {clock}"
    if local.date() == today + timedelta(days=1):
        return f"tomorrow at {clock}"
    return f"on {local.strftime('%A')} {local.day} {local.strftime('%B')} at {clock}"
