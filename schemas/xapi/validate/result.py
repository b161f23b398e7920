"""The Result and its Score (xAPI 1.0.3 Data §2.4.5)."""

from __future__ import annotations

import math
from typing import NoReturn

from ..duration import is_duration
from .values import check_extensions
from .violations import DATA, HardViolation, Violation, bad_type, fail, format_error, show, unknown_properties

_isfinite = math.isfinite
_RESULT_KEYS = frozenset({"score", "success", "completion", "response", "duration", "extensions"})
_SCORE_KEYS = frozenset({"scaled", "raw", "min", "max"})


def number_error(value: object, rule: str, what: str, key: str) -> NoReturn:
    if value.__class__ is float:
        raise HardViolation(rule, f"{DATA}2.4.5.1: {what} must be a finite number, found {value!r}", key)
    extra = " (a string is rejected even if it contains a number, §2.2)" if value.__class__ is str else ""
    bad_type(rule, DATA + "2.4.5.1", what, "a number" + extra, value, key)


def check_score(score: object) -> None:
    if score.__class__ is not dict:
        bad_type("result.score.type", DATA + "2.4.5.1", "result.score", "an object", score)
    if not _SCORE_KEYS.issuperset(score):
        unknown_properties(score, _SCORE_KEYS, "a Score")
    # Numbers: int, or a finite float; bool is excluded by testing the exact class.
    scaled = score.get("scaled", 0)
    cls = scaled.__class__
    if cls is not int and (cls is not float or not _isfinite(scaled)):
        number_error(scaled, "result.score.scaled.type", "score.scaled", ".scaled")
    if not -1 <= scaled <= 1:
        fail(
            "result.score.scaled.range",
            DATA + "2.4.5.1",
            f"score.scaled MUST be a decimal number between -1 and 1 inclusive, found {scaled!r}",
            ".scaled",
        )
    lo = score.get("min")
    if lo is not None:
        cls = lo.__class__
        if cls is not int and (cls is not float or not _isfinite(lo)):
            number_error(lo, "result.score.min.type", "score.min", ".min")
    hi = score.get("max")
    if hi is not None:
        cls = hi.__class__
        if cls is not int and (cls is not float or not _isfinite(hi)):
            number_error(hi, "result.score.max.type", "score.max", ".max")
        if lo is not None and not lo < hi:
            if lo == hi:
                # Its own rule: zero-weight problems send min = max = 0, and a credential may
                # tolerate exactly that without tolerating a reversed range.
                fail(
                    "result.score.min-max.equal",
                    DATA + "2.4.5.1",
                    f"score.min MUST be less than score.max, found them equal ({lo!r})",
                    ".min",
                )
            else:
                fail(
                    "result.score.min-max",
                    DATA + "2.4.5.1",
                    f"score.min MUST be less than score.max, found min {lo!r} greater than max {hi!r}",
                    ".min",
                )
    raw = score.get("raw")
    if raw is not None:
        cls = raw.__class__
        if cls is not int and (cls is not float or not _isfinite(raw)):
            number_error(raw, "result.score.raw.type", "score.raw", ".raw")
        if (lo is not None and raw < lo) or (hi is not None and raw > hi):
            fail(
                "result.score.raw.range",
                DATA + "2.4.5.1",
                f"score.raw MUST lie between min and max inclusive, found raw {raw!r} (min {lo!r}, max {hi!r})",
                ".raw",
            )
    if len(score) > (lo is not None) + (hi is not None) + (raw is not None) + ("scaled" in score):
        for name in ("min", "max", "raw"):
            if name in score and score[name] is None:
                bad_type(f"result.score.{name}.type", DATA + "2.4.5.1", f"score.{name}", "a number", None, f".{name}")


def check_result(res: object) -> None:
    if res.__class__ is not dict:
        bad_type("result.type", DATA + "2.4.5", "result", "an object", res)
    if not _RESULT_KEYS.issuperset(res):
        unknown_properties(res, _RESULT_KEYS, "a Result")
    if "score" in res:
        try:
            check_score(res["score"])
        except Violation as e:
            e.keys.append(".score")
            raise
    if "success" in res and res["success"].__class__ is not bool:
        boolean_error(res["success"], "success")
    if "completion" in res and res["completion"].__class__ is not bool:
        boolean_error(res["completion"], "completion")
    if "response" in res and res["response"].__class__ is not str:
        bad_type("result.response.type", DATA + "2.4.5", "result.response", "a string", res["response"], ".response")
    if "duration" in res and not is_duration(res["duration"]):
        duration = res["duration"]
        format_error(
            "result.duration.format",
            DATA + "4.6",
            "result.duration",
            "an ISO 8601 duration string",
            duration,
            f"a Duration MUST use the ISO 8601:2004 §4.4.3.2 format (e.g. PT1H2M3.45S, P2W); found {show(duration)}",
            ".duration",
        )
    if "extensions" in res:
        try:
            check_extensions(res["extensions"])
        except Violation as e:
            e.keys.append(".extensions")
            raise


def boolean_error(value: object, name: str) -> NoReturn:
    extra = " (a string is rejected even if it contains a boolean, §2.2)" if value.__class__ is str else ""
    bad_type(f"result.{name}.type", DATA + "2.4.5", f"result.{name}", "a boolean" + extra, value, f".{name}")
