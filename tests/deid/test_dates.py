"""Whole-day shifts of DA and DT values."""

from __future__ import annotations

import pytest

from breastgpt.deid.dates import UnparseableDateError, shift_da, shift_dt, shift_value


def test_shift_da_exact() -> None:
    assert shift_da("20240301", -1) == "20240229"  # leap year
    assert shift_da("20230301", -1) == "20230228"
    assert shift_da("2023.03.01", -365) == "20220301"  # legacy ACR-NEMA form


def test_shift_dt_keeps_time_fraction_and_offset() -> None:
    assert shift_dt("20230915101530.25+0100", -10) == "20230905101530.25+0100"
    assert shift_dt("20230915", -15) == "20230831"
    assert shift_dt("202309", -40) == "202307"  # month precision stays month precision
    assert shift_dt("2023", -400) == "2021"


def test_multi_valued() -> None:
    assert shift_value("DA", "20230101\\20230102", -1) == "20221231\\20230101"


@pytest.mark.parametrize("value", ["2023-13-01", "20231301", "notadate", "20230230", "2023091"])
def test_unparseable_dates_raise(value: str) -> None:
    with pytest.raises(UnparseableDateError):
        shift_da(value, -1)


def test_unparseable_dt_raises() -> None:
    with pytest.raises(UnparseableDateError):
        shift_dt("20230915T1015", -1)
