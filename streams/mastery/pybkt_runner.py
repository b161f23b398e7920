"""Fit pyBKT on training answers, predict test answers (run with pyBKT's own virtualenv's python).

Usage: ``.venv-pybkt/bin/python streams/mastery/pybkt_runner.py TRAIN.csv TEST.csv OUT.json [--forgets]``

Used by ``learnpulse mastery evaluate`` (``streams.mastery.evaluate``). Standalone on
purpose: it imports only pandas and pyBKT (pyBKT 1.4.3 needs NumPy < 2 and scikit-learn <
1.6, which learnpulse's own environment does not have), never learnpulse.

Both CSVs have pyBKT's columns ``order_id,user_id,skill_name,correct``, rows in answer
order per learner × skill. pyBKT fits one model per skill (EM, ``num_fits=3``, seed 42),
then predicts each test answer from that learner's earlier test answers on the skill.
OUT.json: ``{"predictions": [P(correct) per test row, in row order], "fit_s": seconds}``.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from pyBKT.models import Model


def main(train: str, test: str, out: str, forgets: bool = False) -> None:
    dtypes = {"user_id": str, "skill_name": str}
    model = Model(seed=42, num_fits=3)
    t0 = time.perf_counter()
    model.fit(data=pd.read_csv(train, dtype=dtypes), forgets=forgets)
    fit_s = time.perf_counter() - t0
    predicted = model.predict(data=pd.read_csv(test, dtype=dtypes)).sort_values("order_id")
    with open(out, "w") as f:
        json.dump({"predictions": predicted["correct_predictions"].astype(float).tolist(), "fit_s": fit_s}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], "--forgets" in sys.argv[4:])
