"""The systemd units in deploy/systemd: valid unit files, restarting, running real commands."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from learnpulse.cli import main

UNITS = sorted((Path(__file__).resolve().parents[2] / "deploy" / "systemd").glob("learnpulse-*.service"))


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(path)
    return parser


def test_there_is_a_unit_for_every_long_running_process():
    assert {p.stem.removeprefix("learnpulse-") for p in UNITS} == {"gateway", "sink", "worker", "serve", "notify"}


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.stem)
def test_unit_restarts_runs_unprivileged_and_starts_a_real_command(path):
    service = _unit(path)["Service"]
    assert service["Restart"] == "always" and float(service["RestartSec"]) <= 5
    assert service["User"] == "learnpulse" and service["NoNewPrivileges"] == "yes"
    args = shlex.split(service["ExecStart"].replace("%H", "host"))
    assert args[0].endswith("/bin/learnpulse")
    # The command and its options exist in this version of the CLI.
    result = CliRunner().invoke(main, [*args[1:], "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.stem)
def test_unit_file_passes_systemd_analyze(path, tmp_path):
    # verify checks that ExecStart's binary exists: point it at one that does.
    unit = tmp_path / path.name
    unit.write_text(path.read_text().replace("/opt/learnpulse/.venv/bin/learnpulse", shutil.which("true") or "/bin/true"))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)  # noqa: S603, S607
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if path.name in line and "EnvironmentFile" not in line]  # fmt: skip
    assert done.returncode == 0 or not problems, done.stdout + done.stderr
    assert not problems, problems


def test_sink_help_names_every_sink():
    from sinks.specs import SPECS

    out = " ".join(CliRunner().invoke(main, ["sink", "--help"]).output.split())
    assert all(name in out for name in SPECS), out
