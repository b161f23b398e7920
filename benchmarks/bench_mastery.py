"""How much does the live mastery update cost? The log-odds state next to the saturating one.

Run as ``python -m benchmarks.bench_mastery`` (``--quick`` for fewer repeats). Prints ns per
observation for:

- ``update``: one BKT step on the state alone (``streams.mastery.logic.update`` on
  log-odds) next to the peer, the step on P(L) as a float that learnpulse used before the
  log-odds state (it saturates at 1.0; kept here only as the cost to match), with and
  without forgetting;
- ``observe``: what the learner stage calls per observation (update, kept history, counts)
  plus reading ``p_mastery`` for the record, on a realistic mix of right and wrong answers;
- ``observe + table encoding``: the same plus orjson-encoding and decoding the learner ×
  skill state, as the table and its changelog do once per batch (an upper bound: here once
  per observation).

Timings are the best of several repeats (the least disturbed by other load).
"""

from __future__ import annotations

import argparse
import random
import timeit

import orjson

from streams.mastery import logic as m


def _probability_update(p: float, correct: bool, b: m.BKTParams) -> float:
    """The previous state representation's step (P(L) as a float): the peer to match."""
    if correct:
        num = p * (1.0 - b.slip)
        den = num + (1.0 - p) * b.guess
    else:
        num = p * b.slip
        den = num + (1.0 - p) * (1.0 - b.guess)
    post = num / den if den > 0 else p
    return post * (1.0 - b.forget) + (1.0 - post) * b.learn


def _answers(n: int) -> list[bool]:
    rng = random.Random(7)
    return [rng.random() < 0.7 for _ in range(n)]


def _best_ns(fn, n: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeat)) / n * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, repeat = (20_000, 3) if args.quick else (100_000, 7)
    answers = _answers(n)
    shipped = m.load_model(m.DEFAULT_PARAMS_FILE, None).default
    forgetting = m.BKTParams(prior=0.2, learn=0.15, guess=0.2, slip=0.1, forget=0.05)
    rows: list[tuple[str, float, float]] = []

    for label, b in (("update, no forgetting", shipped), ("update, forgetting", forgetting)):
        def new(b=b) -> None:
            lo = m.log_odds(b.prior)
            upd = m.update
            for ok in answers:
                lo = upd(lo, ok, b)

        def old(b=b) -> None:
            p = b.prior
            for ok in answers:
                p = _probability_update(p, ok, b)

        rows.append((label, _best_ns(new, n, repeat), _best_ns(old, n, repeat)))

    def observe_new() -> None:
        skills: dict = {}
        for i, ok in enumerate(answers):
            sk = m.observe(skills, "s", "c", str(i), ok, i, shipped)
            round(m.p_mastery(sk), 9)

    def observe_old() -> None:
        # The same bookkeeping with the float state (history folding included).
        sk = {"p0": shipped.prior, "p": shipped.prior, "h": [], "n": 0, "c": 0, "v": 0, "ts": 0, "tf": 0}
        for i, ok in enumerate(answers):
            sk["p"] = _probability_update(sk["p"], ok, shipped)
            sk["h"].append([str(i), 1 if ok else 0, i])
            sk["n"] += 1
            sk["c"] += int(ok)
            sk["v"] += 1
            sk["ts"] = max(sk["ts"], i)
            if len(sk["h"]) > m.HISTORY:
                _sid, o, t = sk["h"].pop(0)
                sk["p0"] = _probability_update(sk["p0"], bool(o), shipped)
                sk["tf"] = max(sk["tf"], t)
            round(sk["p"], 9)

    rows.append(("observe + p_mastery", _best_ns(observe_new, n, repeat), _best_ns(observe_old, n, repeat)))

    small = answers[: n // 10]

    def encoded_new() -> None:
        skills: dict = {}
        for i, ok in enumerate(small):
            m.observe(skills, "s", "c", str(i), ok, i, shipped)
            skills = orjson.loads(orjson.dumps(skills))

    def encoded_old() -> None:
        skills = {"s": {"p0": shipped.prior, "p": shipped.prior, "h": [], "n": 0, "c": 0, "v": 0, "ts": 0, "tf": 0}}
        for i, ok in enumerate(small):
            sk = skills["s"]
            sk["p"] = _probability_update(sk["p"], ok, shipped)
            sk["h"].append([str(i), 1 if ok else 0, i])
            if len(sk["h"]) > m.HISTORY:
                _sid, o, _t = sk["h"].pop(0)
                sk["p0"] = _probability_update(sk["p0"], bool(o), shipped)
            skills = orjson.loads(orjson.dumps(skills))

    rows.append(("observe + table encoding", _best_ns(encoded_new, len(small), repeat),
                 _best_ns(encoded_old, len(small), repeat)))

    print(f"{'ns per observation':<28} {'log-odds (now)':>15} {'P(L) float (peer)':>18} {'ratio':>7}")
    for label, new_ns, old_ns in rows:
        print(f"{label:<28} {new_ns:>15.0f} {old_ns:>18.0f} {new_ns / old_ns:>7.2f}")


if __name__ == "__main__":
    main()
