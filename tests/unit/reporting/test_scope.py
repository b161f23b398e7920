"""What each kind of scope lets through, and the cohort keys its SQL compares."""

from __future__ import annotations

import pytest

from reporting.scope import EVERY_SCHOOL, Scope, cohort_key


def test_network_scope_sees_every_school_and_cohort():
    assert EVERY_SCHOOL.whole_school("any") and EVERY_SCHOOL.allows_cohort("any", "c", "k")
    assert EVERY_SCHOOL.params()["scope_all"] == 1


def test_school_scope_sees_its_schools_whole_and_nothing_else():
    s = Scope.of_schools(["a", "b"])
    assert s.whole_school("a") and s.touches_school("b") and s.allows_cohort("a", "any", "any")
    assert not s.touches_school("c") and not s.allows_cohort("c", "x", "y")
    assert s.params() == {"scope_all": 0, "scope_schools": ["a", "b"], "scope_cohorts": [], "scope_touched": ["a", "b"]}


def test_teacher_scope_sees_its_cohorts_only_never_the_whole_school():
    s = Scope.of_cohorts([("a", "https://c/1", "k1")])
    assert s.touches_school("a") and not s.whole_school("a")
    assert s.allows_cohort("a", "https://c/1", "k1")
    assert not s.allows_cohort("a", "https://c/1", "k2")  # another cohort of its course
    assert not s.allows_cohort("a", "https://c/2", "k1")  # the same cohort name in another course
    assert not s.allows_cohort("b", "https://c/1", "k1")  # ... or in another school
    assert not s.touches_school("b")
    assert s.params()["scope_cohorts"] == [cohort_key("a", "https://c/1", "k1")] and s.params()["scope_schools"] == []
    assert s.params()["scope_touched"] == ["a"]  # its schools, for the primary key


def test_an_empty_scope_sees_nothing():
    s = Scope()
    assert not s.touches_school("a") and not s.allows_cohort("a", "b", "c")
    assert s.params() == {"scope_all": 0, "scope_schools": [], "scope_cohorts": [], "scope_touched": []}


@pytest.mark.parametrize(
    "one, other",
    [
        (("a1:b", "c", "d"), ("a", "1:bc", "d")),
        (("ab", "c", "d"), ("a", "bc", "d")),
        (("a", "b", "cd"), ("a", "bc", "d")),
        (("é", "x", "y"), ("e", "x", "y")),
        (("", "ab", "c"), ("a", "b", "c")),
    ],
)
def test_different_cohorts_never_share_a_key(one, other):
    assert cohort_key(*one) != cohort_key(*other)


def test_the_key_counts_utf8_bytes_as_clickhouse_length_does():
    assert cohort_key("é", "c", "k") == "2:é1:ck"
