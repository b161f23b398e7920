"""What one reader of the dashboard may see: every school, some schools, or some cohorts.

The dashboard's queries filter on the server, in SQL, with the scope bound as query
parameters (:meth:`Scope.params`); the SQL text never holds a value a user chose. Three
kinds, as the operators' roles (``learnpulse operators``):

- every school (the network role);
- whole schools (the school role): every course and cohort of the listed schools;
- cohorts (the teacher role): listed (school, course, cohort) triples only. School-wide
  figures (refused statements, school totals) count the teacher's cohorts only, and tables
  without a cohort column (``mastery``) are cut to the learners seen in those cohorts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# A row of a table with school, course and cohort columns is in scope. A cohort goes as one
# string, its three names each after its length in bytes (no two triples give one key): the
# oldest supported servers lack arrayZip, tuple parameters and lambdas over columns. They get
# parameters as literals, so an empty array is typed by the CAST.
COHORT_KEY = "concat(toString(length(school)), ':', school, toString(length(course)), ':', course, cohort)"
_ANY_COHORT = f"has(CAST({{scope_cohorts:Array(String)}} AS Array(String)), {COHORT_KEY})"
_ANY_SCHOOL = "has(CAST({scope_schools:Array(String)} AS Array(String)), school)"
# The schools the scope touches (whole or through a cohort), as a condition the primary key of
# a table sorted by school (or by grain, school) can use: the OR above cannot skip any range,
# this one reads only those schools' ranges. Implied by the rest (a cohort key holds its
# school), so adding it changes no answer.
_TOUCHED_SCHOOL = "({scope_all:UInt8} = 1 OR has(CAST({scope_touched:Array(String)} AS Array(String)), school))"
IN_SCOPE = f"({_TOUCHED_SCHOOL} AND ({{scope_all:UInt8}} = 1 OR {_ANY_SCHOOL} OR {_ANY_COHORT}))"
# A row of a table with school, course and learner (no cohort) is in scope: the learner was
# seen in one of the scope's cohorts of that course (engagement rollup).
LEARNER_IN_SCOPE = (
    f"({{scope_all:UInt8}} = 1 OR {_ANY_SCHOOL} OR (school, course, learner) IN "
    f"(SELECT school, course, learner FROM {{db}}.engagement WHERE grain = 'day' AND {_ANY_COHORT}))"
)
# LEARNER_IN_SCOPE for a query whose WHERE pins ``school = {school:String} AND course =
# {course:String}``: then the row's school and course are those, and the learner alone is looked
# up among that course's learners in the scope's cohorts. The same rows, a set of one String
# where the tuple of three cost chDB about 25 of 30 ms on a course's 250,000 history rows at 10M.
LEARNER_OF_COURSE_IN_SCOPE = (
    f"({{scope_all:UInt8}} = 1 OR {_ANY_SCHOOL} OR learner IN (SELECT learner FROM {{db}}.engagement"
    f" WHERE school = {{school:String}} AND course = {{course:String}} AND grain = 'day' AND {_ANY_COHORT}))"
)
# A row of the names directory (school, learner; no course or cohort) is in scope: the whole
# school, or the learner was seen in one of the scope's cohorts (a teacher sees the names
# of its cohorts' learners only).
NAME_IN_SCOPE = (
    f"({{scope_all:UInt8}} = 1 OR {_ANY_SCHOOL} OR (school, learner) IN "
    f"(SELECT school, learner FROM {{db}}.engagement WHERE grain = 'day' AND {_ANY_COHORT}))"
)
# A row of a table with a school column only is in scope (whole schools; never for cohorts).
SCHOOL_IN_SCOPE = f"({{scope_all:UInt8}} = 1 OR {_ANY_SCHOOL})"


def cohort_key(school: str, course: str, cohort: str) -> str:
    """:data:`COHORT_KEY` of one cohort, as ClickHouse computes it (lengths in UTF-8 bytes)."""
    return f"{len(school.encode())}:{school}{len(course.encode())}:{course}{cohort}"


@dataclass(frozen=True)
class Scope:
    every_school: bool = False
    schools: frozenset[str] = frozenset()
    cohorts: frozenset[tuple[str, str, str]] = field(default_factory=frozenset)  # (school, course, cohort)

    @classmethod
    def network(cls) -> Scope:
        return cls(every_school=True)

    @classmethod
    def of_schools(cls, schools: Iterable[str]) -> Scope:
        return cls(schools=frozenset(schools))

    @classmethod
    def of_cohorts(cls, cohorts: Iterable[tuple[str, str, str]]) -> Scope:
        return cls(cohorts=frozenset(tuple(c) for c in cohorts))

    def whole_school(self, school: str) -> bool:
        """May see everything of ``school`` (its school-wide figures too)."""
        return self.every_school or school in self.schools

    def touches_school(self, school: str) -> bool:
        """May see some of ``school`` (a teacher: its cohorts there)."""
        return self.whole_school(school) or any(c[0] == school for c in self.cohorts)

    def allows_cohort(self, school: str, course: str, cohort: str) -> bool:
        return self.whole_school(school) or (school, course, cohort) in self.cohorts

    def params(self) -> dict[str, Any]:
        """The query parameters :data:`IN_SCOPE`, :data:`LEARNER_IN_SCOPE`, :data:`NAME_IN_SCOPE` and
        :data:`SCHOOL_IN_SCOPE` read."""
        return {
            "scope_all": 1 if self.every_school else 0,
            "scope_schools": sorted(self.schools),
            "scope_cohorts": sorted(cohort_key(*c) for c in self.cohorts),
            "scope_touched": sorted(self.schools | {c[0] for c in self.cohorts}),
        }


EVERY_SCHOOL = Scope.network()

# Where the web app's sign-in (learnpulse/signin.py) leaves who is asking on each request:
# the reader's Scope, and a dict describing them for the page ({"name", "role", "csrf"}).
# A request without them is unauthenticated: the dashboard answers 401 (API) or sends the
# browser to the sign-in page.
try:
    from aiohttp.web import RequestKey  # aiohttp >= 3.12: typed request storage
except ImportError:  # pragma: no cover - older aiohttp: plain string keys
    SCOPE_KEY: Any = "learnpulse.scope"
    VIEWER_KEY: Any = "learnpulse.viewer"
else:
    SCOPE_KEY = RequestKey("learnpulse.scope", Scope)
    VIEWER_KEY = RequestKey("learnpulse.viewer", dict)
