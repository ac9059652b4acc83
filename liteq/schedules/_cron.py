"""Parsing crontab fields: Celery's syntax (lists, ranges, steps, names)."""

from __future__ import annotations

import re
from collections.abc import Iterable

_DAY_FULL = "sunday monday tuesday wednesday thursday friday saturday".split()
_MONTH_FULL = (
    "january february march april may june july august september october november december"
).split()
# Names are accepted in full or as their first three letters.
_NAMES: dict[str, dict[str, int]] = {
    "day_of_week": {k: i for i, n in enumerate(_DAY_FULL) for k in (n, n[:3])},
    "month_of_year": {k: i for i, n in enumerate(_MONTH_FULL, 1) for k in (n, n[:3])},
}
# (lowest, highest accepted, highest produced); day_of_week accepts 7 = Sunday.
_BOUNDS: dict[str, tuple[int, int, int]] = {
    "minute": (0, 59, 59),
    "hour": (0, 23, 23),
    "day_of_week": (0, 7, 6),
    "day_of_month": (1, 31, 31),
    "month_of_year": (1, 12, 12),
}
_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DIGITS = re.compile(r"\d+", re.ASCII)


def _check_range(field: str, value: int) -> int:
    low, high, _ = _BOUNDS[field]
    if not low <= value <= high:
        raise ValueError(f"crontab: {field}: {value} is out of range {low}-{high}")
    return value


def _cron_number(field: str, token: str) -> int:
    text = token.strip().lower()
    if _DIGITS.fullmatch(text):
        return _check_range(field, int(text))
    if text in _NAMES.get(field, {}):
        return _NAMES[field][text]
    raise ValueError(f"crontab: {field}: invalid value {token!r}")


def _expand_part(field: str, part: str) -> set[int]:
    low, _, top = _BOUNDS[field]
    dow = field == "day_of_week"
    base, slash, step_text = part.strip().partition("/")
    step = 1
    if slash:
        if not _DIGITS.fullmatch(step_text.strip()) or int(step_text) == 0:
            raise ValueError(f"crontab: {field}: invalid step in {part!r}")
        step = int(step_text)
    base = base.strip()
    if base == "*":
        values = list(range(low, top + 1))
    elif "-" in base:
        first_text, _, last_text = base.partition("-")
        first = _cron_number(field, first_text)
        last = _cron_number(field, last_text)
        if dow and first == 7:  # "7-2" starts on Sunday; "7-7" is Sunday alone
            first, last = 0, last % 7
        if last >= first:
            values = list(range(first, last + 1))
        else:  # wraps round the end of the cycle, as in Celery ("fri-mon")
            values = list(range(first, top + 1)) + list(range(low, last + 1))
    else:
        first = _cron_number(field, base)
        first = first % 7 if dow else first
        values = list(range(first, top + 1)) if slash else [first]
    return {v % 7 if dow else v for v in values[::step]}


def _expand_spec(field: str, spec: object) -> set[int]:
    if isinstance(spec, bool):
        raise TypeError(f"crontab: {field}: expected int, str or iterable, got bool")
    if isinstance(spec, int):
        value = _check_range(field, spec)
        return {value % 7 if field == "day_of_week" else value}
    result: set[int] = set()
    if isinstance(spec, str):
        for part in spec.split(","):
            result |= _expand_part(field, part)
        return result
    if isinstance(spec, Iterable):
        for item in spec:
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise TypeError(
                    f"crontab: {field}: expected int or str items, got {type(item).__name__}"
                )
            result |= _expand_spec(field, item)
        if not result:
            raise ValueError(f"crontab: {field}: no values given")
        return result
    raise TypeError(
        f"crontab: {field}: expected int, str or iterable, got {type(spec).__name__}"
    )


def _spec_text(spec: object, values: set[int]) -> str:
    if isinstance(spec, str):
        return spec.strip()
    if isinstance(spec, int):
        return str(spec)
    return ",".join(str(v) for v in sorted(values))
