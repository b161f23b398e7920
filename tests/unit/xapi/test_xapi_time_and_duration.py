"""Timestamps ↔ epoch milliseconds, and durations → milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.errors import InvalidStatement
from schemas.xapi.duration import duration_ms, is_duration
from schemas.xapi.timefmt import format_ms, parse_ms, timestamp_problem


def _ms(*args: int, micro: int = 0) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1000 + micro // 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-05T15:09:47.253Z", _ms(2024, 3, 5, 15, 9, 47, micro=253_000)),
        ("2024-03-05T15:09:47.2539Z", _ms(2024, 3, 5, 15, 9, 47, micro=253_000)),  # truncated, not rounded
        ("2024-03-05T16:09:47.253+01:00", _ms(2024, 3, 5, 15, 9, 47, micro=253_000)),
        ("2014-07-23T12:34:02-05:00", _ms(2014, 7, 23, 17, 34, 2)),
        ("2015-11-18T12:17:00", _ms(2015, 11, 18, 12, 17)),  # no zone: UTC (§4.5)
        ("20151118T121700Z", _ms(2015, 11, 18, 12, 17)),
        ("20151118T174700.5+0530", _ms(2015, 11, 18, 12, 17, micro=500_000)),
        ("2015-11-18T12:17Z", _ms(2015, 11, 18, 12, 17)),
        ("2015-11-18T12:17:00,75Z", _ms(2015, 11, 18, 12, 17, micro=750_000)),
        ("2016-12-31T23:59:60Z", _ms(2017, 1, 1)),  # leap second: the next second's start
        ("1969-12-31T23:59:59.999Z", -1),
        ("2000-02-29T00:00:00Z", _ms(2000, 2, 29)),
    ],
)
def test_xapi_1_0_3_data_4_5_parse_ms(text: str, expected: int) -> None:
    assert parse_ms(text) == expected


@pytest.mark.parametrize(
    "text", ["", "2015-11-18", "2015-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "yesterday", None, 5]
)
def test_xapi_1_0_3_data_4_5_parse_ms_rejects_what_the_validator_rejects(text) -> None:
    with pytest.raises(InvalidStatement) as err:
        parse_ms(text, "$.x")
    assert (err.value.rule, err.value.path) == ("timestamp.format", "$.x")


@pytest.mark.parametrize("ms", [0, 1, 999, 1_709_651_387_253, -1, -86_400_001, 253_402_300_799_999])
def test_format_ms_round_trips_through_parse_ms(ms: int) -> None:
    text = format_ms(ms)
    assert text.endswith("Z") and len(text) == 24
    assert parse_ms(text) == ms


def test_format_ms_is_exact_millisecond_rfc_3339_utc() -> None:
    assert format_ms(1_709_651_387_253) == "2024-03-05T15:09:47.253Z"
    assert format_ms(0) == "1970-01-01T00:00:00.000Z"
    assert timestamp_problem(format_ms(123), require_offset=True) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT1H2M3.45S", 3_723_450),
        ("PT12M31.5S", 751_500),
        ("P1DT2H", 93_600_000),
        ("P2W", 14 * 86_400_000),
        ("PT1234S", 1_234_000),
        ("P16559.14S", 16_559_140),
        ("PT1,5S", 1_500),
        ("PT0.0001S", 0),
        ("P1Y", 365 * 86_400_000),
        ("P1M", 30 * 86_400_000),
        ("PT0.5H", 1_800_000),
    ],
)
def test_xapi_1_0_3_data_4_6_duration_ms(text: str, expected: int) -> None:
    assert is_duration(text)
    assert duration_ms(text) == expected


@pytest.mark.parametrize("text", ["P4W1D", "PT", "1H", "PT1.5H30M", None, 3])
def test_xapi_1_0_3_data_4_6_duration_ms_rejects_invalid(text) -> None:
    assert not is_duration(text)
    with pytest.raises(InvalidStatement) as err:
        duration_ms(text)
    assert (err.value.rule, err.value.path) == ("result.duration", "$.result.duration")
