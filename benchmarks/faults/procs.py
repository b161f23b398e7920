"""One process of the pipeline under test: start it, SIGKILL it, restart it, see it die.

``Command`` is a ``learnpulse`` subcommand this benchmark starts itself; ``StackService``
a server started by ``learnpulse stack up`` (Kafka, clickhouse-server), known by its pid
file; ``External`` a process of an operator's deployment, known by pid (or pid file) and a
shell command that starts it again.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path

from benchmarks.ports import free_port, free_port_block  # noqa: F401 - the benchmarks take them from here
from learnpulse.stack import pid_alive

REPO = Path(__file__).resolve().parents[2]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(condition, timeout: float, what: str, step: float = 0.5) -> float:
    """Seconds it took ``condition()`` to hold; TimeoutError naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(step)
    return time.monotonic() - started


class Process(ABC):
    """A process the scenarios can kill and start again."""

    name: str
    #: TCP port that answers once the process is ready (None: alive is ready).
    port: int | None = None

    @abstractmethod
    def pid(self) -> int | None:
        """Its pid while it runs, else None."""

    @abstractmethod
    def start(self) -> None:
        """Start it (returns without waiting for it to be ready)."""

    def alive(self) -> bool:
        return pid_alive(self.pid())

    def ready(self) -> bool:
        return self.alive() and (self.port is None or port_open(self.port))

    def kill(self) -> None:
        """SIGKILL, as a crash, power loss or the OOM killer would."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), 30, f"{self.name} pid {pid} to die after SIGKILL", 0.1)
            self._reap()

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM (a clean stop), SIGKILL after ``timeout``."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        try:
            wait_until(lambda: not pid_alive(pid), timeout, f"{self.name} to stop", 0.2)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        """Collect the exit status of a child of ours (no zombie left)."""

    def restart(self, timeout: float = 180) -> float:
        """Start it and wait until it is ready; seconds taken."""
        started = time.monotonic()
        self.start()
        wait_until(self.ready, timeout, f"{self.name} ready")
        return time.monotonic() - started


class Command(Process):
    """``python -m learnpulse ARGS`` with the pipeline's environment, output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logdir: Path, port: int | None = None):
        self.name = name
        self.args = args
        self.env = env
        self.port = port
        self.log = logdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.exits: list[int] = []  # exit codes of runs that ended, whoever ended them

    def pid(self) -> int | None:
        if self.popen is None or self.popen.poll() is not None:
            return None
        return self.popen.pid

    def start(self) -> None:
        self._reap()
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "learnpulse", *self.args], cwd=REPO, env=self.env,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def _reap(self) -> None:
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                code = self.popen.wait(30)
            self.exits.append(code)
            self.popen = None

    def died(self) -> bool:
        """It was started and has exited without being asked to (a crash)."""
        return self.popen is not None and self.popen.poll() is not None

    def tail(self, n: int = 5) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return " | ".join(lines[-n:])


class StackService(Process):
    """A server of ``learnpulse stack up``: killed by the pid in its pid file, restarted by ``stack up``."""

    def __init__(self, name: str, pidfile: Path, up: Command, port: int):
        self.name = name
        self.pidfile = pidfile
        self.up = up
        self.port = port

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self) -> None:
        # `stack up` returns once the server answers; it also leaves it running when it exits.
        self.up.start()
        self.up.popen.wait(240)
        self.up._reap()


class External(Process):
    """A process of an operator's deployment: its pid (or pid file) and the command that starts it."""

    def __init__(self, name: str, pid_or_file: str, restart_command: str | None, port: int | None = None):
        self.name = name
        self.pid_or_file = pid_or_file
        self.restart_command = restart_command
        self.port = port

    def pid(self) -> int | None:
        if self.pid_or_file.startswith("@"):
            try:
                pid = int(Path(self.pid_or_file[1:]).read_text().strip())
            except (OSError, ValueError):
                return None
        else:
            pid = int(self.pid_or_file)
        return pid if pid_alive(pid) else None

    def start(self) -> None:
        if not self.restart_command:
            raise RuntimeError(f"no restart command for {self.name} (--restart {self.name}=CMD)")
        subprocess.run(shlex.split(self.restart_command), check=True, timeout=240)  # noqa: S603 - the operator's own


def elapsed_echo():
    """A progress printer: each line to stderr with the seconds since it was made."""
    t0 = time.monotonic()

    def echo(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)

    return echo
