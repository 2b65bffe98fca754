"""Escalation settings are validated at start-up with one line naming the variable."""
from __future__ import annotations

import pytest

from supportdesk.tests.test_settings import run_manage


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ESCALATION_BUSINESS_HOURS", "mon-fri 8-20", "ESCALATION_BUSINESS_HOURS: expected weekly hours"),
        ("ESCALATION_HOLIDAYS", "2026-13-01", "ESCALATION_HOLIDAYS: expected comma-separated dates"),
        ("ESCALATION_TIME_ZONE", "Mars/Olympus", "ESCALATION_TIME_ZONE: expected an IANA time zone"),
        ("ESCALATION_RESOLVE_STATE", "gone", "ESCALATION_RESOLVE_STATE: expected one of bot, closed"),
        ("ESCALATION_WEBHOOK_URL", "http://hooks.example.com/x",
         "ESCALATION_WEBHOOK_SECRET: expected a signing secret when ESCALATION_WEBHOOK_URL is set"),
    ],
)
def test_a_bad_escalation_setting_stops_start_up_with_one_line(variable: str, value: str, expected: str) -> None:
    result = run_manage("check", **{variable: value, "ESCALATION_WEBHOOK_SECRET": ""})
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
