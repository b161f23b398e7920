"""Operator accounts for the dashboard: `learnpulse operators add|list|remove|passwd`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import UserError
from ..settings import Settings


def accounts_path(settings: Settings) -> Path:
    from ..operators import operators_path

    return settings.operators.accounts_file or operators_path(settings.home)


def read_password(from_stdin: bool) -> str:
    """From stdin (first line) or a hidden prompt typed twice; never from the command line."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UserError("--password-stdin: nothing on stdin")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask for the password: pipe it with --password-stdin")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


def register(main: click.Group) -> None:
    """Add this area's subcommands to ``main``."""

    @main.group()
    def operators() -> None:
        """Operator accounts of the dashboard (roles: network, school, teacher; Argon2id-hashed passwords)."""

    @operators.command("add")
    @click.argument("name")
    @click.option("--role", type=click.Choice(["network", "school", "teacher"]), required=True)
    @click.option("--school", "schools", multiple=True, help="A school the school role sees (repeat for more).")
    @click.option("--cohort", "cohorts", multiple=True, metavar="SCHOOL|COURSE|COHORT",
                  help="A cohort the teacher role sees (repeat for more).")  # fmt: skip
    @click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line (no prompt).")
    @click.pass_obj
    def operators_add(settings: Settings, name: str, role: str, schools: tuple[str, ...], cohorts: tuple[str, ...],
                      password_stdin: bool) -> None:  # fmt: skip
        """Create the account NAME (the password is asked for, never given as an argument)."""
        from ..operators import add_operator, check_password, parse_cohort

        triples = tuple(parse_cohort(c) for c in cohorts)
        password = read_password(password_stdin)
        check_password(password)
        op = add_operator(accounts_path(settings), name, role, password, schools, triples)
        click.echo(f"operator {op.name}: {op.role} ({op.describe()})")

    @operators.command("list")
    @click.pass_obj
    def operators_list(settings: Settings) -> None:
        """Accounts with their role and scope (passwords are stored as hashes only)."""
        from ..operators import list_operators

        for op in list_operators(accounts_path(settings)):
            click.echo(f"{op.name}\t{op.role}\t{op.describe()}\t{op.created}")

    @operators.command("remove")
    @click.argument("name")
    @click.pass_obj
    def operators_remove(settings: Settings, name: str) -> None:
        """Delete NAME's account; its open sessions end at their next request."""
        from ..operators import remove_operator

        if not remove_operator(accounts_path(settings), name):
            raise UserError(f"no operator {name!r}")
        click.echo(f"removed {name}")

    @operators.command("passwd")
    @click.argument("name")
    @click.option("--password-stdin", is_flag=True, help="Read the new password from stdin's first line.")
    @click.pass_obj
    def operators_passwd(settings: Settings, name: str, password_stdin: bool) -> None:
        """Set NAME's password; its open sessions end at their next request."""
        from ..operators import set_password

        set_password(accounts_path(settings), name, read_password(password_stdin))
        click.echo(f"password of {name} changed")
