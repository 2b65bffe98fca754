"""Small typed readers for environment variables.

Each reader raises `EnvError` with one line that names the variable and what it
expects, so start-up can print that line and exit without a traceback.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class EnvError(Exception):
    """A configuration value is missing or malformed."""

    def __init__(self, name: str, expected: str, value: str | None = None) -> None:
        got = "it is unset" if value is None else f"got {value!r}"
        super().__init__(f"{name}: expected {expected}; {got}")
        self.name = name


def raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None or value.strip() == "" else value.strip()


def env_str(name: str, default: str = "") -> str:
    value = raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise EnvError(name, "a boolean (true/false, 1/0, yes/no)", value)


def _number(name: str, default: T, cast: Callable[[str], T], low: float, high: float) -> T:
    value = raw(name)
    if value is None:
        return default
    kind = "an integer" if cast is int else "a number"
    try:
        number = cast(value)
    except ValueError:
        raise EnvError(name, f"{kind} between {low:g} and {high:g}", value) from None
    if not low <= number <= high:  # type: ignore[operator]
        raise EnvError(name, f"{kind} between {low:g} and {high:g}", value)
    return number


def env_int(name: str, default: int, *, low: int = 0, high: int = 2**31) -> int:
    return _number(name, default, int, low, high)


def env_float(name: str, default: float, *, low: float = 0.0, high: float = 1e9) -> float:
    return _number(name, default, float, low, high)


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = raw(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(name: str, schemes: tuple[str, ...], default: str | None = None) -> str | None:
    """A URL whose scheme is one of `schemes`; None (or default) when unset."""
    value = raw(name)
    if value is None:
        return default
    expected = f"a URL starting with {' or '.join(s + '://' for s in schemes)}"
    try:
        parsed = urlparse(value)
    except ValueError:
        raise EnvError(name, expected, value) from None
    if parsed.scheme not in schemes:
        raise EnvError(name, expected, value)
    needs_host = parsed.scheme not in ("unix",) and "host=" not in (parsed.query or "")
    if needs_host and not parsed.hostname:
        raise EnvError(name, expected + " with a host", value)
    return value


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = raw(name)
    if value is None:
        return default
    if value not in choices:
        raise EnvError(name, "one of " + ", ".join(choices), value)
    return value
