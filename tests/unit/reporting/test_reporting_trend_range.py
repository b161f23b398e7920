"""The trends' time range: what a request may ask for, and the rule named when it may not."""

from __future__ import annotations

from datetime import date

import pytest

from reporting.trends import MAX_DAYS, TrendRange, parse_range


def test_no_days_means_the_newest_week_of_days_or_the_newest_day_of_hours():
    assert parse_range({}) == TrendRange(None, None, "day")
    assert parse_range({}).ending_on(date(2026, 3, 9)) == TrendRange(date(2026, 3, 3), date(2026, 3, 9), "day")
    hours = parse_range({"grain": "hour"}).ending_on(date(2026, 3, 9))
    assert hours == TrendRange(date(2026, 3, 9), date(2026, 3, 9), "hour")


def test_bounds_cover_the_last_day_whole_in_utc():
    start, end = TrendRange(date(2026, 3, 1), date(2026, 3, 2), "hour").bounds()
    assert (start, end) == (1772323200, 1772323200 + 2 * 86400)


@pytest.mark.parametrize(
    "query, says",
    [
        ({"grain": "minute"}, "grain must be one of hour, day"),
        ({"from": "2026-03-01"}, "give both from and to"),
        ({"from": "2026-03-05", "to": "2026-03-01"}, "is before from"),
        ({"from": "2026-3-1", "to": "2026-03-02"}, "from must be a day as YYYY-MM-DD"),
        ({"from": "2026-03-01", "to": "2026-02-30"}, "to must be a day"),
        ({"from": "2026-01-01", "to": "2026-03-01", "grain": "hour"}, f"at most {MAX_DAYS['hour']} days"),
        ({"from": "2020-01-01", "to": "2026-03-01"}, f"at most {MAX_DAYS['day']} days"),
    ],
)
def test_a_range_it_cannot_answer_is_refused_naming_the_rule(query, says):
    with pytest.raises(ValueError) as err:
        parse_range(query)
    assert str(err.value).startswith("dashboard.range: ") and says in str(err.value)


def test_the_longest_ranges_are_accepted():
    assert parse_range({"from": "2026-01-01", "to": "2026-01-31", "grain": "hour"}).grain == "hour"
    assert parse_range({"from": "2025-03-02", "to": "2026-03-02"}).first == date(2025, 3, 2)
