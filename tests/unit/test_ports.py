"""Server ports for tests and benchmarks come from below the kernel's ephemeral range."""

from __future__ import annotations

from benchmarks import ports


def test_ports_are_drawn_below_the_ephemeral_range_and_never_twice():
    low = ports._ephemeral_low()
    drawn = [ports.free_port() for _ in range(200)]
    assert all(ports._PORTS_FROM <= p < low for p in drawn), [p for p in drawn if p >= low][:5]
    assert len(set(drawn)) == len(drawn)
    base = ports.free_port_block(6)
    assert not set(range(base, base + 6)) & set(drawn)


def test_each_xdist_worker_and_the_benchmarks_it_runs_draw_from_a_slice_of_their_own(monkeypatch):
    slices = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
        low, top = ports._port_range()
        slices.append(range(low, top))
        assert all(p in slices[-1] for p in (ports.free_port() for _ in range(50)))
    assert not set(slices[0]) & set(slices[1])


def test_a_block_is_found_however_fragmented_the_slice_is(monkeypatch):
    # A long test run leaves the last 3,000 ports handed out (single ports among the blocks)
    # scattered over its worker's slice; a block that is still free must be found, not missed
    # by a bounded number of random draws ("no 16 free consecutive ports" in a CI run).
    low, top = ports._port_range()
    free_base = low + (top - low) // 2
    monkeypatch.setattr(ports, "_GIVEN_PORTS", dict.fromkeys(p for p in range(low, top) if p % 8 == 0
                                                             and not free_base <= p < free_base + 16))  # fmt: skip
    monkeypatch.setattr(ports, "_bindable", lambda _p: True)
    monkeypatch.setattr(ports.random, "randrange", lambda a, b: a)  # draws that always meet a given port
    given_before = set(ports._GIVEN_PORTS)
    base = ports.free_port_block(16)
    assert not given_before & set(range(base, base + 16))
