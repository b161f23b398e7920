"""Timestamps as xAPI writes them (ISO 8601 / RFC 3339) and as we store them (epoch ms, UTC).

One grammar serves both the validator and the readers downstream, so every timestamp
the validator accepts can be turned into epoch milliseconds (and nothing else can).

- xAPI 1.0.3 Data §4.5: a Timestamp MUST be ISO 8601 (extended or basic format, a
  combined date and time); RFC 3339 and a time zone are only SHOULD*. Without a zone we
  read it as UTC, as the LRS is asked to return UTC (§4.5.s1.b6).
- xAPI 2.0 (IEEE 9274.1.1): RFC 3339 with a mandatory offset.
- Both: ISO 8601 forbids the offset ``-00:00`` (RFC 3339's "unknown local offset").
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta

from ..errors import InvalidStatement

# All patterns are re.ASCII: \d must not match non-ASCII digits (ISO 8601 uses 0-9 only).
# The common case, and the whole of what xAPI 2.0 accepts: RFC 3339 date-time.
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)\Z", re.ASCII)
# ISO 8601 combined date and time, extended format; seconds, fraction and zone optional.
_ISO_EXTENDED = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?(Z|[+-]\d\d(?::\d\d)?)?\Z", re.ASCII
)
# ISO 8601 combined date and time, basic format (20150101T120000Z).
_ISO_BASIC = re.compile(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(?:(\d\d)(?:[.,](\d+))?)?(Z|[+-]\d\d(?:\d\d)?)?\Z", re.ASCII)

# Fast path for the validator: the usual RFC 3339 shape with every field in range and a
# day of month that exists in every month; anything else goes through the full check.
_RFC3339_SIMPLE = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])[Tt](?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:\.\d+)?"
    r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)\Z",
    re.ASCII,
)

_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Why a timestamp was refused, as (rule suffix, explanation); see ``timestamp_problem``.
FORMAT = "format"
TIMEZONE = "timezone.required"
NEGATIVE_ZERO = "offset.negative-zero"


def _match(value: str, rfc3339_only: bool) -> re.Match[str] | None:
    m = _RFC3339.match(value)
    if m is None and not rfc3339_only:
        m = _ISO_EXTENDED.match(value) or _ISO_BASIC.match(value)
    return m


def _calendar_ok(m: re.Match[str]) -> bool:
    """Month, day (leap years included), hour, minute, second and offset in range."""
    year, month, day, hour, minute, second, _frac, zone = m.groups()
    mo = int(month)
    d = int(day)
    if not 1 <= mo <= 12 or d < 1:
        return False
    if d > 28:
        limit = _DAYS_IN_MONTH[mo]
        if mo == 2:
            y = int(year)
            if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0):
                limit = 29
        if d > limit:
            return False
    # Leap second 60 is allowed by both ISO 8601 and RFC 3339.
    if int(hour) > 23 or int(minute) > 59 or (second is not None and int(second) > 60):
        return False
    return not (zone is not None and len(zone) > 1 and (int(zone[1:3]) > 23 or (len(zone) > 3 and int(zone[-2:]) > 59)))


def timestamp_problem(value: object, *, require_offset: bool) -> str | None:
    """``None`` if ``value`` is an acceptable xAPI Timestamp, else why not.

    ``require_offset`` selects the xAPI 2.0 grammar (RFC 3339 with offset); otherwise
    the xAPI 1.0.3 one (any ISO 8601 combined date and time). The answer is one of
    ``FORMAT``, ``TIMEZONE`` or ``NEGATIVE_ZERO``.
    """
    if not isinstance(value, str):
        return FORMAT
    m = _match(value, False)
    if m is None or not _calendar_ok(m):
        return FORMAT
    zone = m.group(8)
    if zone is None:
        return TIMEZONE if require_offset else None
    if require_offset and m.re is not _RFC3339:
        return FORMAT
    if zone[0] == "-" and int(zone[1:3]) == 0 and (len(zone) == 3 or int(zone[-2:]) == 0):
        return NEGATIVE_ZERO
    return None


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (integer arithmetic)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_ms(value: str, path: str = "$.timestamp") -> int:
    """ISO 8601 timestamp → epoch milliseconds (UTC).

    Accepts exactly what the xAPI 1.0.3 validator accepts. A timestamp without an offset
    is read as UTC (xAPI 1.0.3 §4.5). Sub-millisecond digits are truncated (ClickHouse
    keeps DateTime64(3)); a leap second counts as the next second's start.
    Raises ``InvalidStatement("timestamp.format", …, path)`` for anything else.
    """
    m = _match(value, False) if isinstance(value, str) else None
    if m is None or not _calendar_ok(m):
        raise InvalidStatement("timestamp.format", f"not an ISO 8601 timestamp: {value!r}", path)
    year, month, day, hour, minute, second, frac, zone = m.groups()
    seconds = (
        _days_from_civil(int(year), int(month), int(day)) * 86_400
        + int(hour) * 3_600
        + int(minute) * 60
        + (int(second) if second else 0)
    )
    if zone is not None and len(zone) > 1:
        offset = int(zone[1:3]) * 60 + (int(zone[-2:]) if len(zone) > 3 else 0)
        seconds -= offset * 60 if zone[0] == "+" else -offset * 60
    millis = int((frac or "")[:3].ljust(3, "0"))
    return seconds * 1000 + millis


@functools.lru_cache(maxsize=4096)
def format_ms(ms: int) -> str:
    """Epoch milliseconds → RFC 3339 UTC with millisecond precision (``...T12:00:00.123Z``).

    Cached: a request stamps the same ``stored`` time on every statement it carries, and
    strftime was a tenth of the gateway's CPU.
    """
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
