"""Operator accounts: Argon2id hashes in a 0600 file, roles, re-hash on sign-in, the CLI's password input."""

from __future__ import annotations

import json
import stat

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from learnpulse.cli import main
from learnpulse.errors import UserError
from learnpulse.operators import (
    OperatorAccounts,
    add_operator,
    list_operators,
    operators_path,
    parse_cohort,
    remove_operator,
    set_password,
)
from reporting.scope import Scope

PASSWORD = "correct horse battery staple"


def test_accounts_keep_an_argon2id_hash_never_the_password_in_a_private_file(tmp_path):
    path = operators_path(tmp_path)
    add_operator(path, "ann", "network", PASSWORD)
    text = path.read_text()
    assert PASSWORD not in text
    (entry,) = json.loads(text)["operators"]
    assert entry["password_hash"].startswith("$argon2id$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_verify_accepts_the_password_only(tmp_path):
    path = operators_path(tmp_path)
    add_operator(path, "ann", "school", PASSWORD, schools=("s1",))
    accounts = OperatorAccounts(path, reload_every_s=0)
    op = accounts.verify("ann", PASSWORD)
    assert op is not None and op.scope() == Scope.of_schools(["s1"])
    assert accounts.verify("ann", PASSWORD + "x") is None
    assert accounts.verify("ann", "") is None
    assert accounts.verify("nobody", PASSWORD) is None
    assert accounts.verify("ann", "x" * 5000) is None


@pytest.mark.parametrize(
    "role, schools, cohorts",
    [
        ("network", ("s1",), ()),
        ("school", (), ()),
        ("school", ("s1",), (("s1", "c", "k"),)),
        ("teacher", (), ()),
        ("teacher", ("s1",), (("s1", "c", "k"),)),
        ("admin", (), ()),
    ],
)
def test_a_role_needs_its_own_kind_of_scope(tmp_path, role, schools, cohorts):
    with pytest.raises(UserError):
        add_operator(operators_path(tmp_path), "ann", role, PASSWORD, schools, cohorts)
    assert list_operators(operators_path(tmp_path)) == []


def test_short_passwords_bad_names_and_duplicates_are_refused(tmp_path):
    path = operators_path(tmp_path)
    with pytest.raises(UserError, match="at least"):
        add_operator(path, "ann", "network", "short")
    with pytest.raises(UserError, match="invalid operator name"):
        add_operator(path, "../ann", "network", PASSWORD)
    add_operator(path, "ann", "network", PASSWORD)
    with pytest.raises(UserError, match="exists"):
        add_operator(path, "ann", "network", PASSWORD)


def test_teachers_scope_is_their_cohorts(tmp_path):
    path = operators_path(tmp_path)
    cohort = parse_cohort("s1|https://c.example/algebra|algebra/cohort-b")
    assert cohort == ("s1", "https://c.example/algebra", "algebra/cohort-b")
    add_operator(path, "tea", "teacher", PASSWORD, cohorts=(cohort,))
    op = OperatorAccounts(path, reload_every_s=0).verify("tea", PASSWORD)
    assert op.scope() == Scope.of_cohorts([cohort])
    with pytest.raises(UserError):
        parse_cohort("s1|course-only")


def test_passwd_and_remove_are_seen_by_a_running_reader(tmp_path):
    path = operators_path(tmp_path)
    add_operator(path, "ann", "network", PASSWORD)
    accounts = OperatorAccounts(path, reload_every_s=0)
    assert accounts.verify("ann", PASSWORD)
    set_password(path, "ann", "another long password")
    assert accounts.verify("ann", PASSWORD) is None
    assert accounts.verify("ann", "another long password")
    assert remove_operator(path, "ann") and not remove_operator(path, "ann")
    assert accounts.get("ann") is None and accounts.verify("ann", "another long password") is None


def test_a_hash_with_old_parameters_is_remade_at_sign_in(tmp_path):
    path = operators_path(tmp_path)
    add_operator(path, "ann", "network", PASSWORD)
    doc = json.loads(path.read_text())
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    doc["operators"][0]["password_hash"] = weak
    path.write_text(json.dumps(doc))
    accounts = OperatorAccounts(path, reload_every_s=0)
    assert accounts.verify("ann", PASSWORD)
    stored = json.loads(path.read_text())["operators"][0]["password_hash"]
    assert stored != weak and not PasswordHasher().check_needs_rehash(stored)
    assert accounts.verify("ann", PASSWORD)


def test_cli_reads_the_password_from_stdin_never_from_arguments(tmp_path):
    env = {"LEARNPULSE_HOME": str(tmp_path)}
    runner = CliRunner()
    added = runner.invoke(main, ["operators", "add", "ann", "--role", "school", "--school", "s1", "--password-stdin"],
                          input=PASSWORD + "\n", env=env)  # fmt: skip
    assert added.exit_code == 0, added.output
    assert OperatorAccounts(operators_path(tmp_path)).verify("ann", PASSWORD)
    argv = runner.invoke(main, ["operators", "add", "bob", "--role", "network", "--password", PASSWORD], env=env)
    assert argv.exit_code != 0  # there is no such option
    listed = runner.invoke(main, ["operators", "list"], env=env)
    assert listed.output.startswith("ann\tschool\ts1\t") and PASSWORD not in listed.output
    changed = runner.invoke(main, ["operators", "passwd", "ann", "--password-stdin"], input="a new long password\n",
                            env=env)  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert OperatorAccounts(operators_path(tmp_path)).verify("ann", "a new long password")
    assert runner.invoke(main, ["operators", "remove", "ann"], env=env).exit_code == 0
    assert runner.invoke(main, ["operators", "remove", "ann"], env=env).exit_code == 2
