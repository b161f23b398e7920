"""ISO 8601 durations as xAPI uses them (``PT1H2M3.45S``, ``P1DT2H``, ``P2W``).

xAPI 1.0.3 Data §4.6: the format-with-designators of ISO 8601:2004 §4.4.3.2; the
alternative format (``P0001-02-03T…``) MUST NOT be used; weeks cannot be combined with
other units (``P4W1D`` is invalid). Only the lowest-order unit may carry a decimal
fraction (ISO 8601 §4.4.3.2), written with ``.`` or ``,``. The spec's own example table
lists ``P16559.14S`` (seconds without ``T``), so that one form is accepted too.
"""

from __future__ import annotations

import re

from ..errors import InvalidStatement


# re.ASCII throughout: \d must not match non-ASCII digits.
# One component: an integer, or (on the lowest-order component only, ISO 8601
# §4.4.3.2) a decimal fraction, which the lookahead pins to the end of the string.
def _c(unit: str) -> str:
    return rf"(\d+(?:[.,]\d+(?={unit}\Z))?){unit}"


_DURATION = re.compile(
    rf"P(?=\d|T\d)(?:{_c('Y')})?(?:{_c('M')})?(?:{_c('D')})?"
    rf"(?:T(?=\d)(?:{_c('H')})?(?:{_c('M')})?(?:{_c('S')})?)?\Z"
    r"|P(\d+(?:[.,]\d+)?)W\Z"
    r"|P(\d+(?:[.,]\d+)?)S\Z",
    re.ASCII,
)
# Fast path for the usual time-only durations (PT1H2M3.45S); anything else takes _DURATION.
_TIME_ONLY = re.compile(r"PT(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?\Z", re.ASCII)
# Groups of _DURATION in order, with the milliseconds of one unit. Calendar units have
# no fixed length; for time-on-task we use the usual conventions.
_UNIT_MS = (
    365 * 86_400_000,  # years
    30 * 86_400_000,  # months
    86_400_000,  # days
    3_600_000,  # hours
    60_000,  # minutes
    1_000,  # seconds
    7 * 86_400_000,  # weeks
    1_000,  # seconds, the spec-example form P16559.14S
)


def is_duration(value: object) -> bool:
    """True if ``value`` is an xAPI Duration string (see the module docstring)."""
    if value.__class__ is not str:
        return False
    return _TIME_ONLY.match(value) is not None or _DURATION.match(value) is not None


def duration_ms(value: str, path: str = "$.result.duration") -> int:
    """ISO 8601 duration → milliseconds (truncated below 1 ms)."""
    m = _DURATION.match(value) if value.__class__ is str else None
    if m is None:
        raise InvalidStatement("result.duration", f"not an ISO 8601 duration: {value!r}", path)
    total = 0.0
    for part, unit in zip(m.groups(), _UNIT_MS):
        if part is not None:
            total += float(part.replace(",", ".")) * unit
    return int(total)
