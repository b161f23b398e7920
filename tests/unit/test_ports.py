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
