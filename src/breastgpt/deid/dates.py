"""Shift DICOM DA and DT values by a whole number of days.

Whole-day shifts leave times of day, time-zone offsets and the intervals between a patient's events unchanged,
which is what the Retain Longitudinal Temporal Information with Modified Dates option asks for.
"""

from __future__ import annotations

import datetime as dt
import re

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DA_LEGACY = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$")  # ACR-NEMA style still found in old archives
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")


class UnparseableDateError(ValueError):
    """A DA/DT value that is not a date; callers blank it instead of guessing."""


def shift_da(value: str, days: int) -> str:
    """Shift one DA value (YYYYMMDD, or legacy YYYY.MM.DD) by `days`; returns YYYYMMDD."""
    text = value.strip()
    match = _DA.match(text) or _DA_LEGACY.match(text)
    if not match:
        raise UnparseableDateError("not a DA value (expected YYYYMMDD)")
    return _shift(*(int(part) for part in match.groups()), days=days).strftime("%Y%m%d")


def shift_dt(value: str, days: int) -> str:
    """Shift one DT value (YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]); the time part and offset are kept.

    A DT with only a year or year+month has no day to shift; the shift is applied to its first day and the
    result truncated to the same precision, so the value stays as coarse as it was.
    """
    text = value.strip()
    match = _DT.match(text)
    if not match or (match.group(4) and not match.group(3)):
        raise UnparseableDateError("not a DT value (expected YYYYMMDD...)")
    year, month, day, rest = match.groups()
    if rest and not re.fullmatch(r"[0-9]{0,6}(\.[0-9]{1,6})?([+-][0-9]{4})?", rest):
        raise UnparseableDateError("not a DT value (bad time part)")
    shifted = _shift(int(year), int(month or 1), int(day or 1), days=days)
    if day:
        return shifted.strftime("%Y%m%d") + rest
    if month:
        return shifted.strftime("%Y%m")
    return shifted.strftime("%Y")


def shift_value(vr: str, value: str, days: int) -> str:
    """Shift a (possibly multi-valued, backslash-separated) DA or DT string."""
    shift_one = shift_da if vr == "DA" else shift_dt
    return "\\".join(shift_one(part, days) if part.strip() else "" for part in value.split("\\"))


def _shift(year: int, month: int, day: int, *, days: int) -> dt.date:
    try:
        return dt.date(year, month, day) + dt.timedelta(days=days)
    except (ValueError, OverflowError) as exc:
        raise UnparseableDateError(f"not a valid calendar date ({exc})") from exc
