"""The dashboard's rollups get a shorter batch window than the other sinks, and the statements sink
measures its progress faster while it holds records (issue 16, freshness)."""

from __future__ import annotations

from learnpulse.pipeline import sink_parameters
from learnpulse.settings import Settings, SinkSettings
from sinks.specs import SPECS, batch_window_s, busy_progress_s


def _windows(settings: Settings) -> dict[str, float]:
    params = sink_parameters(settings)
    return {name: batch_window_s(spec, params) for name, spec in SPECS.items()}


def test_the_engagement_sink_writes_every_half_second_the_others_every_second(tmp_path):
    windows = _windows(Settings(home=tmp_path))
    assert windows.pop("engagement") == 0.5
    assert set(windows.values()) == {1.0}, windows


def test_the_rollup_window_follows_its_setting_and_is_never_longer_than_the_sinks(tmp_path):
    assert _windows(Settings(home=tmp_path, sink=SinkSettings(rollup_max_wait_s=0.2)))["engagement"] == 0.2
    shorter = _windows(Settings(home=tmp_path, sink=SinkSettings(max_wait_s=0.3)))
    assert shorter["engagement"] == 0.3 and shorter["statements"] == 0.3


def test_only_the_statements_sink_measures_its_progress_faster_while_it_holds_records(tmp_path):
    params = sink_parameters(Settings(home=tmp_path))
    busy = {name: busy_progress_s(spec, params) for name, spec in SPECS.items()}
    assert busy.pop("statements") == 0.25, "Consistent-Through follows the statements sink's batches"
    assert set(busy.values()) == {None}, busy
    slower = sink_parameters(Settings(home=tmp_path, sink=SinkSettings(consistent_progress_s=1.0)))
    assert busy_progress_s(SPECS["statements"], slower) == 1.0
