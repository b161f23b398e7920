"""How fast is statement validation? Ours next to Ralph's ``LaxStatement``.

Run as ``python -m benchmarks.bench_validation`` (``--no-ralph`` to skip the comparison,
``--quick`` for fewer repeats). Prints µs per statement for three workloads:

- ``valid typical``: one cmi5-like statement (account actor, verb, activity with
  definition, registration, contextActivities, scored result with duration);
- ``valid corpus mix``: every statement of ``shared/xapi-corpus/valid.jsonl``;
- ``invalid input``: statements with one defect each, at every depth, plus the
  corpus's ``invalid.jsonl``;
- ``openedx defects``: the typical statement with each defect Open edX sends
  ("GroupActivity", bare-GUID grouping id, object without id, score min = max = 0).

Column ``tolerant µs``: the same statements under a tolerant policy (the ``openedx``
preset, ``validate_statement_tolerant``), measured in the same run; ``tol/strict`` is
its cost over strict validation's (issue 14: tolerant mode costs no more than strict on
what strict accepts; on what it refuses it walks on to find every violation).

Ralph (openfun/ralph, ``ralph-malph[lrs,cli]``, plus ``requests`` which its API
package imports) is installed into its own virtualenv
under ``.learnpulse/bench/ralph-venv`` so it never touches this project's environment,
and measured there in a subprocess on the same statements. Timings are the best of
many short repeats (the least disturbed by other load on the machine). Ralph's
``LaxStatement`` (what its LRS checks on POST) checks far less than we do (actor,
``id``, ``object.id``, ``verb.id``); its full model ``BaseXapiStatement`` is shown too.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.errors import InvalidStatement
from schemas.policy import OPENEDX_RULES
from schemas.xapi.validate import parse_statements_json, validate_statement, validate_statement_tolerant

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / ".." / "shared" / "xapi-corpus"
RALPH_VENV = REPO / ".learnpulse" / "bench" / "ralph-venv"
# ralph.api imports requests (for OIDC) without declaring it in the lrs extra.
RALPH_REQUIREMENTS = ("ralph-malph[lrs,cli]", "requests")
BUDGET_US = 10.0
JSON_ROW = "typical, raw JSON"

TYPICAL: dict[str, Any] = {
    "id": "2c738870-7852-4d2b-a5c4-c3999373838e",
    "timestamp": "2024-03-05T15:09:47.253Z",
    "actor": {
        "objectType": "Agent",
        "name": "Learner",
        "account": {"homePage": "https://lms.example.org", "name": "4711"},
    },
    "verb": {"id": "http://adlnet.gov/expapi/verbs/passed", "display": {"en-US": "passed"}},
    "object": {
        "objectType": "Activity",
        "id": "https://example.org/course/geo/au/4c07",
        "definition": {
            "name": {"en-US": "Introduction to Geology"},
            "description": {"en-US": "Plate tectonics"},
            "type": "http://adlnet.gov/expapi/activities/lesson",
        },
    },
    "result": {
        "score": {"scaled": 0.82, "raw": 82, "min": 0, "max": 100},
        "success": True,
        "completion": True,
        "duration": "PT12M31.5S",
    },
    "context": {
        "registration": "839b7078-b3f2-499f-8628-d1a83039a375",
        "contextActivities": {
            "parent": [
                {
                    "id": "https://example.org/course/geo",
                    "objectType": "Activity",
                    "definition": {"type": "http://adlnet.gov/expapi/activities/course"},
                }
            ],
            "category": [{"id": "https://w3id.org/xapi/cmi5/context/categories/cmi5", "objectType": "Activity"}],
            "grouping": [{"id": "https://example.org/course/geo/block/1"}],
        },
        "extensions": {
            "https://w3id.org/xapi/cmi5/context/extensions/sessionid": "48be2ad6-6e3a-4b8a-803a-961b9daabc89"
        },
    },
}

# One defect each, from the top of the statement to deep inside it.
_DEFECTS: list[Callable[[dict[str, Any]], Any]] = [
    lambda s: s.pop("actor"),
    lambda s: s.update(id="not-a-uuid"),
    lambda s: s["actor"].update(mbox="mailto:x@example.com"),
    lambda s: s["verb"].update(id="passed"),
    lambda s: s["object"]["definition"].update(type="lesson"),
    lambda s: s["result"]["score"].update(scaled=82),
    lambda s: s["result"].update(duration="12:31"),
    lambda s: s["context"]["contextActivities"]["parent"][0].update(id="course/geo"),
    lambda s: s["context"].update(registration=None),
    lambda s: s.update(timestamp="05/03/2024 15:09"),
]


# What Open edX sends that strict validation refuses (issue 14), on the typical statement.
_OPENEDX_DEFECTS: list[Callable[[dict[str, Any]], Any]] = [
    lambda s: s["object"].update(objectType="GroupActivity"),
    lambda s: s["context"]["contextActivities"]["grouping"][0].update(id="c4f2a7d0-3b9e-4c1a-8e6f-5d2b0a9c7e31"),
    lambda s: s["object"].pop("id"),
    lambda s: s["result"].update(score={"scaled": 0, "raw": 0, "min": 0, "max": 0}),
]


def _jsonl(name: str, key: str = "statement") -> list[Any]:
    path = CORPUS / name
    if not path.is_file():
        return []
    return [json.loads(line)[key] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def workloads() -> dict[str, list[Any]]:
    """Name → statements, in the order the table prints them."""
    invalid = []
    for defect in _DEFECTS:
        doc = copy.deepcopy(TYPICAL)
        defect(doc)
        invalid.append(doc)
    invalid += _jsonl("invalid.jsonl")
    openedx = []
    for defect in _OPENEDX_DEFECTS:
        doc = copy.deepcopy(TYPICAL)
        defect(doc)
        openedx.append(doc)
    loads = {
        "valid typical": [TYPICAL],
        "valid corpus mix": _jsonl("valid.jsonl"),
        "invalid input": invalid,
        "openedx defects": openedx,
        # Raw request bytes (as text): JSON parsing included, as in the gateway.
        JSON_ROW: [json.dumps(TYPICAL)],
    }
    return {name: docs for name, docs in loads.items() if docs}


def _best_us(run: Callable[[], None], per_call: int, repeat: int) -> float:
    """Best µs per statement over ``repeat`` timings of about 20 ms each.

    Many short runs: on a shared machine the best of them is the undisturbed cost.
    """
    number = max(1, int(0.02 / max(timeit.timeit(run, number=1), 1e-7)))
    best = min(timeit.repeat(run, number=number, repeat=repeat))
    return best / (number * per_call) * 1e6


def _tolerant(doc: Any) -> Any:
    return validate_statement_tolerant(doc, tolerate=OPENEDX_RULES)


def measure_ours(docs: list[Any], repeat: int, raw: bool = False, tolerant: bool = False) -> tuple[float, int]:
    """µs per statement and how many statements were rejected (``raw``: docs are JSON text)."""
    check: Callable[[Any], Any] = (
        (lambda text: parse_statements_json(text.encode())) if raw else _tolerant if tolerant else validate_statement
    )

    def run() -> None:
        for doc in docs:
            try:
                check(doc)
            except InvalidStatement:
                pass

    rejected = 0
    for doc in docs:
        try:
            check(doc)
        except InvalidStatement:
            rejected += 1
    return _best_us(run, len(docs), repeat), rejected


# Runs inside Ralph's virtualenv, same timing method: LaxStatement (what Ralph's LRS
# checks on POST) and BaseXapiStatement (its full xAPI model, nearer to "every rule").
_RALPH_SCRIPT = r"""
import json, sys, timeit
from pydantic import ValidationError
from ralph.api.models import LaxStatement
from ralph.models.xapi.base.statements import BaseXapiStatement

loads = json.load(open(sys.argv[1]))
repeat = int(sys.argv[2])
raw_row = sys.argv[3]
out = {}
for name, docs in loads.items():
    out[name] = {}
    if name == raw_row:
        docs = [d.encode() for d in docs]
    for label, model in (("lax", LaxStatement), ("strict", BaseXapiStatement)):
        check = model.model_validate_json if name == raw_row else model.model_validate
        def run():
            for doc in docs:
                try:
                    check(doc)
                except ValidationError:
                    pass
        rejected = 0
        for doc in docs:
            try:
                check(doc)
            except ValidationError:
                rejected += 1
        number = max(1, int(0.02 / max(timeit.timeit(run, number=1), 1e-7)))
        best = min(timeit.repeat(run, number=number, repeat=repeat))
        out[name][label] = [best / (number * len(docs)) * 1e6, rejected]
print(json.dumps(out))
"""


# Importing ralph.api builds its LRS router, which wants a configured backend; the
# file-system one needs no server.
_RALPH_ENV = {**os.environ, "RALPH_RUNSERVER_BACKEND": "fs", "RALPH_APP_DIR": str(RALPH_VENV / "app")}


def _venv_python() -> Path:
    return RALPH_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_ralph() -> tuple[Path | None, str]:
    """Create the Ralph virtualenv and install Ralph if needed; (python, note) or (None, why not)."""
    python = _venv_python()
    probe = [str(python), "-c", "import ralph.api.models"]
    if python.exists() and subprocess.run(probe, check=False, capture_output=True, env=_RALPH_ENV).returncode == 0:
        return python, "already installed"
    try:
        RALPH_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(RALPH_VENV)], check=True, capture_output=True, text=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *RALPH_REQUIREMENTS],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
        subprocess.run(probe, check=True, capture_output=True, text=True, env=_RALPH_ENV)
    except subprocess.CalledProcessError as err:
        tail = (err.stderr or err.stdout or "").strip().splitlines()[-3:]
        return None, f"{' '.join(map(str, err.cmd[:4]))}… failed: {' | '.join(tail) or err}"
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"could not set up {RALPH_VENV}: {err}"
    return python, "installed now"


def measure_ralph(python: Path, loads: dict[str, list[Any]], repeat: int) -> dict[str, dict[str, list[float]]]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(loads, fh)
        data = fh.name
    try:
        done = subprocess.run(
            [str(python), "-c", _RALPH_SCRIPT, data, str(repeat), JSON_ROW],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
            env=_RALPH_ENV,
        )
    finally:
        os.unlink(data)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-ralph", action="store_true", help="measure only our validator")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    args = parser.parse_args(argv)
    repeat = 7 if args.quick else 40

    loads = workloads()
    if "valid corpus mix" not in loads:
        print(f"note: corpus not found at {CORPUS.resolve()}; corpus rows skipped")
    # Strict and tolerant alternate in rounds (best of all rounds each), so that load from
    # elsewhere on the machine falls on both alike.
    ours: dict[str, tuple[float, int]] = {}
    tolerant: dict[str, tuple[float, int]] = {}
    rounds = 5
    for _ in range(rounds):
        for name, docs in loads.items():
            got = measure_ours(docs, max(1, repeat // rounds), raw=name == JSON_ROW)
            ours[name] = min(ours.get(name, got), got)
            if name != JSON_ROW:
                got = measure_ours(docs, max(1, repeat // rounds), tolerant=True)
                tolerant[name] = min(tolerant.get(name, got), got)

    ralph: dict[str, dict[str, list[float]]] = {}
    if args.no_ralph:
        print("note: Ralph comparison skipped (--no-ralph)")
    else:
        python, note = ensure_ralph()
        if python is None:
            print(f"note: Ralph not measured: {note}")
        else:
            try:
                ralph = measure_ralph(python, loads, repeat)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError) as err:
                detail = getattr(err, "stderr", "") or str(err)
                print(f"note: Ralph measurement failed: {detail.strip().splitlines()[-1:]}")

    header = f"{'workload':<19} {'n':>4}  {'ours µs':>8} {'rej':>4}  {'tolerant µs':>11} {'rej':>4} {'tol/strict':>10}"
    if ralph:
        header += f"  {'Ralph Lax µs':>12} {'rej':>4} {'ratio':>6}  {'Ralph strict µs':>15} {'rej':>4} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name, docs in loads.items():
        us, rejected = ours[name]
        line = f"{name:<19} {len(docs):>4}  {us:>8.2f} {rejected:>4}"
        if name in tolerant:
            t_us, t_rej = tolerant[name]
            line += f"  {t_us:>11.2f} {t_rej:>4} {t_us / us:>9.2f}x"
        else:
            line += " " * 29
        if name in ralph:
            lax_us, lax_rej = ralph[name]["lax"]
            strict_us, strict_rej = ralph[name]["strict"]
            line += f"  {lax_us:>12.2f} {int(lax_rej):>4} {lax_us / us:>5.1f}x"
            line += f"  {strict_us:>15.2f} {int(strict_rej):>4} {strict_us / us:>5.1f}x"
        print(line)
    print("(tolerant: the openedx preset; tol/strict: tolerant µs / strict µs of the same statements, same run)")
    if ralph:
        print("(rej: statements rejected; ratio: Ralph µs / ours µs; strict = ralph BaseXapiStatement)")
    typical = ours.get("valid typical", (0.0, 0))[0]
    verdict = "within" if typical <= BUDGET_US else "OVER"
    print(f"\ntypical statement: {typical:.2f} µs, {verdict} the {BUDGET_US:.0f} µs budget (every rule checked)")
    print_json_guard(loads, ours, repeat)
    return 0


def print_json_guard(loads: dict[str, list[Any]], ours: dict[str, tuple[float, int]], repeat: int) -> None:
    """What the gateway's nesting and duplicate-key checks (producers.gateway.jsonguard) add
    to parsing and validating the same statements (both measured here, same method)."""
    import orjson

    from producers.gateway.jsonguard import check_depth, check_unique_keys

    print(f"\n{'JSON guard':<19} {'n':>4}  {'guard µs':>8}  {'parse+validate µs':>17}  {'guard/parse+validate':>20}")
    for name in ("valid typical", "valid corpus mix"):
        docs = [orjson.dumps(d) for d in loads.get(name, [])]
        if not docs:
            continue
        parsed = [orjson.loads(d) for d in docs]

        def guard(docs=docs, parsed=parsed) -> None:
            for raw, value in zip(docs, parsed):
                check_depth(raw)
                check_unique_keys(raw, value)

        def parse_validate(docs=docs) -> None:
            for raw in docs:
                try:
                    validate_statement(orjson.loads(raw))
                except InvalidStatement:
                    pass

        g = _best_us(guard, len(docs), repeat)
        base = _best_us(parse_validate, len(docs), repeat)
        print(f"{name:<19} {len(docs):>4}  {g:>8.2f}  {base:>17.2f}  {g / base:>19.0%}")


if __name__ == "__main__":
    raise SystemExit(main())
