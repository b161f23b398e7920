"""Fit pyBKT on answer sequences and print its next-answer predictions (run in .venv-pybkt).

Usage: ``.venv-pybkt/bin/python tests/integration/pybkt_compare.py ANSWERS.csv PREDICTIONS.json``

ANSWERS.csv has the columns pyBKT reads (``order_id,user_id,skill_name,correct``), rows in
answer order. pyBKT fits one model per skill (EM, no forgetting: like ``mastery fit``) and
predicts each answer from the answers before it; the predictions are written in the input
row order, with the fitted parameters.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
from pyBKT.models import Model


def main(answers: str, out: str) -> None:
    data = pd.read_csv(answers, dtype={"user_id": str, "skill_name": str})
    model = Model(seed=42, num_fits=3)
    model.fit(data=data)
    predicted = model.predict(data=data).sort_values("order_id")
    params = {
        f"{skill}/{param}": float(value)
        for (skill, param, _cls), value in model.params()["value"].items()
    }
    with open(out, "w") as f:
        json.dump({"predictions": predicted["correct_predictions"].astype(float).tolist(), "params": params}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
