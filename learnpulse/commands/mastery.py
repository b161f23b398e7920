"""Mastery model commands: fit BKT parameters, evaluate the model out of sample."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from ..settings import Settings

REPO = Path(__file__).resolve().parents[2]
PYBKT_PYTHON = Path(".venv-pybkt") / "bin" / "python"


def _pybkt_python(explicit: Path | None) -> Path | None:
    """pyBKT's interpreter: the given one, else ``.venv-pybkt`` here or in the source tree (None: not found)."""
    if explicit is not None:
        return explicit
    for base in (Path.cwd(), REPO):
        if (base / PYBKT_PYTHON).exists():
            return base / PYBKT_PYTHON
    return None


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.group()
    def mastery() -> None:
        """Bayesian Knowledge Tracing model: fit per-skill parameters, evaluate out of sample."""

    @mastery.command("fit")
    @click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Parameters file to write.")
    @click.option("--school", default=None, help="Only this school's history.")
    @click.option("--min-observations", type=int, default=200, show_default=True,
                  help="Skills with fewer observations keep the default parameters.")
    @click.pass_obj
    def mastery_fit(settings: Settings, out: Path, school: str | None, min_observations: int) -> None:
        """Fit BKT parameters per skill (EM) from the statements in ClickHouse and write them to --out.

        Per skill, standard BKT or BKT with forgetting, whichever predicts held-out learners
        better (recorded under "fit" in the file). Point settings.streams.mastery_file
        (LEARNPULSE_STREAMS__MASTERY_FILE) at the result.
        """
        from streams.mastery.fit import fit_from_clickhouse

        from ..pipeline import open_clickhouse

        ch = open_clickhouse(settings)
        try:
            report = fit_from_clickhouse(
                ch, settings.streams.skill_map_file, out, school=school, min_observations=min_observations,
                progress=lambda msg: click.echo(msg, err=True), params_file=settings.streams.mastery_file,
            )
        finally:
            ch.close()
        click.echo(report)

    @mastery.command("evaluate")
    @click.option("--csv", "csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                  help="Answers CSV with a header: learner, skill, correct (0/1), order (.gz ok).")
    @click.option("--statements", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                  help="xAPI statements, JSON Lines (.gz ok), e.g. from `simulate --out` or an LRS export.")
    @click.option("--clickhouse", "from_clickhouse", is_flag=True,
                  help="The scored statements in ClickHouse (LEARNPULSE_CLICKHOUSE__URL).")
    @click.option("--school", default=None, help="With --clickhouse: only this school's history.")
    @click.option("--test-share", type=float, default=0.2, show_default=True, help="Share of learners held out.")
    @click.option("--seed", type=int, default=1, show_default=True, help="Seed of the split by learner.")
    @click.option("--min-observations", type=int, default=50, show_default=True,
                  help="Skills with fewer training answers keep the configured parameters.")
    @click.option("--min-length", type=int, default=0, show_default=True,
                  help="Score only test learner x skill sequences with at least this many answers.")
    @click.option("--pybkt/--no-pybkt", default=True, show_default=True,
                  help="Also fit pyBKT when its virtualenv (.venv-pybkt) exists.")
    @click.option("--pybkt-python", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="pyBKT's interpreter (default: .venv-pybkt/bin/python here or in the source tree).")
    @click.pass_obj
    def mastery_evaluate(
        settings: Settings, csv_path: Path | None, statements: Path | None, from_clickhouse: bool,
        school: str | None, test_share: float, seed: int, min_observations: int, min_length: int, pybkt: bool,
        pybkt_python: Path | None,
    ) -> None:
        """Score the mastery model out of sample: split learners into train and test, fit on train,
        print AUC, RMSE and log-loss of next-answer predictions on test for standard BKT, BKT with
        forgetting, the per-skill choice `mastery fit` makes, the running-accuracy baseline and pyBKT.
        """
        from streams.mastery import evaluate as ev
        from streams.mastery.logic import DEFAULT_PARAMS_FILE, load_model

        if sum((csv_path is not None, statements is not None, from_clickhouse)) != 1:
            raise UserError("give exactly one of --csv, --statements, --clickhouse")
        if not 0 < test_share < 1:
            raise UserError("--test-share must be between 0 and 1")
        try:
            model = load_model(settings.streams.mastery_file or DEFAULT_PARAMS_FILE, settings.streams.skill_map_file)
            if csv_path is not None:
                history = ev.history_from_csv(csv_path)
            elif statements is not None:
                history = ev.history_from_statements_file(statements, model)
            else:
                history = _clickhouse_history(settings, model, school)
            python = _pybkt_python(pybkt_python) if pybkt else None
            result = ev.evaluate(
                history, model, test_share=test_share, seed=seed, min_observations=min_observations,
                min_length=min_length, pybkt_python=python, progress=lambda msg: click.echo(msg, err=True),
            )
        except (OSError, ValueError) as err:
            raise UserError(str(err)) from err
        if pybkt and python is None:
            result.notes.append("pyBKT skipped: no .venv-pybkt (make .venv-pybkt/.setup-done makes it)")
        click.echo(result.table())


def _clickhouse_history(settings: Settings, model, school: str | None):
    from streams.mastery.evaluate import history_from_clickhouse

    from ..pipeline import open_clickhouse

    ch = open_clickhouse(settings)
    try:
        return history_from_clickhouse(ch, model, school)
    finally:
        ch.close()
