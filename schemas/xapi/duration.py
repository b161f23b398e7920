"""ISO 8601 durations as xAPI uses them (``PT1H2M3.45S``, ``P1DT2H``, ``P2W``)."""

from __future__ import annotations

import re

from ..errors import InvalidStatement

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+(?:\.\d+)?)Y)?(?:(?P<months>\d+(?:\.\d+)?)M)?(?:(?P<weeks>\d+(?:\.\d+)?)W)?"
    r"(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
# Calendar units have no fixed length; for time-on-task we use the usual conventions.
_MS = {
    "years": 365 * 86_400_000,
    "months": 30 * 86_400_000,
    "weeks": 7 * 86_400_000,
    "days": 86_400_000,
    "hours": 3_600_000,
    "minutes": 60_000,
    "seconds": 1_000,
}


def duration_ms(value: str, path: str = "$.result.duration") -> int:
    """ISO 8601 duration → milliseconds (truncated below 1 ms)."""
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise InvalidStatement("result.duration", f"not an ISO 8601 duration: {value!r}", path)
    return int(sum(float(v) * _MS[k] for k, v in m.groupdict().items() if v is not None))
