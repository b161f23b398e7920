"""Debian's PostgreSQL 15 as a local service: the LRS store for several gateway processes.

``learnpulse stack up --postgres`` (and the test fixtures) run it like the other stack
services: a cluster made with ``initdb`` under ``LEARNPULSE_HOME/postgres``, listening on
127.0.0.1 only (no Unix socket), password authentication (SCRAM) for one role
``learnpulse`` whose generated password is kept in a libpq passfile (mode 0600). The URL
names that passfile, so it never carries the secret itself::

    postgresql://learnpulse@127.0.0.1:15432/learnpulse?passfile=<home>/postgres/pgpass

PostgreSQL refuses to run as root: when we are root, the cluster belongs to (and the
server runs as) Debian's ``postgres`` user, which must be able to reach the directory.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

from .errors import UserError
from .settings import Settings
from .stack import Service, port_open

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ROLE = "learnpulse"
DATABASE = "learnpulse"
# Used only when we are root (PostgreSQL will not run as root).
SERVICE_USER = "postgres"


class PostgresServer(Service):
    """A private PostgreSQL cluster on a loopback port."""

    # Fast shutdown: SIGTERM ("smart") would wait for every client to disconnect.
    stop_signal = signal.SIGINT

    def __init__(self, settings: Settings) -> None:
        port = settings.lrs_store.postgres_port
        super().__init__("postgres", settings.home.resolve() / "postgres", "127.0.0.1", (port,))
        self.port = port

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def passfile(self) -> Path:
        return self.dir / "pgpass"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}?passfile={self.passfile}"

    def _user(self) -> str | None:
        """The account the cluster runs as: ours, or ``postgres`` when we are root."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise UserError("PostgreSQL will not run as root and there is no `postgres` user: "
                            "apt-get install postgresql, or run as another user") from None  # fmt: skip
        return SERVICE_USER

    def _initdb(self, user: str | None) -> None:
        """A new cluster with the ``learnpulse`` role, its password generated here."""
        password = secrets.token_urlsafe(24)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        pwfile = self.dir / ".initdb-password"
        old = os.umask(0o077)
        try:
            pwfile.write_text(password + "\n")
            # host:port:database:user:password; libpq ignores a passfile readable by others.
            self.passfile.write_text(f"127.0.0.1:*:*:{ROLE}:{password}\n")
        finally:
            os.umask(old)
        if user is not None:
            shutil.chown(self.dir, user)
            shutil.chown(self.dir / "logs", user)
            shutil.chown(pwfile, user)
        try:
            res = subprocess.run(
                [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", ROLE, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
                capture_output=True, text=True, user=user, cwd=self.dir,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            hint = f" (as {user}: can it reach {self.dir}?)" if user else ""
            raise UserError(f"initdb failed{hint}: {(res.stdout + res.stderr).strip()[-400:]}")

    def up(self, timeout: float = 60) -> str:
        if self.pid() is not None:
            self._wait_ready(self.ready, timeout)
            return "already running"
        if not (PG_BIN / "postgres").exists():
            raise UserError(f"{PG_BIN / 'postgres'} not found: apt-get install postgresql-15 (or run `make setup`)")
        self.pidfile.unlink(missing_ok=True)
        self._check_ports_free()
        user = self._user()
        if not (self.data / "PG_VERSION").exists():
            self._initdb(user)
        self._spawn(
            [str(PG_BIN / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
             "-p", str(self.port), "-c", "unix_socket_directories=", "-c", "max_connections=200",
             "-c", "logging_collector=off"],
            user=user,
        )  # fmt: skip
        self._wait_ready(self.ready, timeout)
        self._ensure_database(DATABASE)
        return "started"

    def _connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=3)

    def ready(self) -> bool:
        if not port_open("127.0.0.1", self.port):
            return False
        try:
            with self._connect() as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:  # any failure means "not ready yet" (starting up, recovering)
            return False

    def _ensure_database(self, name: str) -> None:
        with self._connect() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')

    def create_database(self, name: str) -> str:
        """A new empty database (tests: one per test); its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be alphanumeric with underscores: {name!r}")
        self._ensure_database(name)
        return self.url(name)
