"""Fast path for the timestamps canonical statements carry (``YYYY-MM-DDTHH:MM:SS.mmmZ``).

Anything else goes through ``schemas.xapi.timefmt.parse_ms`` (the one grammar of record);
the fast path gives the same milliseconds for the strings it accepts.
"""

from __future__ import annotations

from schemas.xapi.timefmt import parse_ms

_DAY_MS: dict[str, int] = {}


def timestamp_ms(value: str, path: str = "$.timestamp") -> int:
    if (
        len(value) == 24
        and value[23] == "Z"
        and value[10] == "T"
        and value[13] == ":"
        and value[16] == ":"
        and value[19] == "."
    ):
        date = value[:10]
        day = _DAY_MS.get(date)
        if day is None:
            day = parse_ms(date + "T00:00:00Z", path)
            if len(_DAY_MS) < 100_000:
                _DAY_MS[date] = day
        try:
            hh, mm, ss, ms = int(value[11:13]), int(value[14:16]), int(value[17:19]), int(value[20:23])
        except ValueError:
            return parse_ms(value, path)
        if hh < 24 and mm < 60 and ss < 60 and value[11:23].replace(":", "").replace(".", "").isdigit():
            return day + hh * 3_600_000 + mm * 60_000 + ss * 1000 + ms
    return parse_ms(value, path)
