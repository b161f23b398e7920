"""Loopback ports for the servers that tests and benchmarks start, below the ephemeral range.

Outgoing connections take their local ports from the kernel's ephemeral range, so a server
port chosen there (as binding port 0 does) can be taken by some client before the server
binds it (seen in CI: "metrics port … is taken", a Kafka broker that exited at start-up).
Ports are drawn below that range instead, never twice from one process (a port handed out
to a server not started yet looks free), and under pytest-xdist each worker, and the
benchmarks its tests run as subprocesses, draws from a slice of its own.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_GIVEN_PORTS: dict[int, None] = {}  # insertion-ordered: the oldest are forgotten first
_GIVEN_PORTS_KEPT = 3_000  # a port handed out that long ago is bound by now, or was let go
_PORTS_FROM = 20_000  # above our own defaults (15432, 19100…)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_range() -> tuple[int, int]:
    """This process's share of the ports: under pytest-xdist (its environment, inherited by
    the subprocesses a test starts) each worker has a slice of its own."""
    low, top = _PORTS_FROM, max(_ephemeral_low(), _PORTS_FROM + 1000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", … under xdist
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return low, top
    width = (top - low) // count
    start = low + int(worker[2:]) % count * width
    return start, start + width


def free_port_block(n: int) -> int:
    """The first of ``n`` consecutive loopback ports that are free now and not handed out before."""
    low, top = _port_range()
    top -= n
    # Every start tried once, in random order: a long run leaves the ports it handed out
    # (single ones among the blocks) scattered over the slice, and a bounded number of random
    # draws then missed the free blocks that were left.
    starts = list(range(low, top))
    random.shuffle(starts)
    for base in starts:
        block = range(base, base + n)
        if not any(p in _GIVEN_PORTS for p in block) and all(_bindable(p) for p in block):
            _GIVEN_PORTS.update(dict.fromkeys(block))
            while len(_GIVEN_PORTS) > _GIVEN_PORTS_KEPT:
                del _GIVEN_PORTS[next(iter(_GIVEN_PORTS))]
            return base
    raise RuntimeError(f"no {n} free consecutive ports between {low} and {top}")


def free_port() -> int:
    return free_port_block(1)
