"""deploy/CLUSTER.md shows the cluster DDL exactly as ``learnpulse db ddl --cluster`` prints it."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from learnpulse.cli import main
from learnpulse.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "deploy" / "CLUSTER.md"


def _printed(*args: str) -> str:
    result = CliRunner().invoke(main, ["db", "ddl", *args], obj=Settings(), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_sql_excerpt_of_the_cluster_guide_is_in_the_generated_script():
    script = _printed("--cluster", "learnpulse", "--database", "learnpulse", "--server-version", "26.9")
    excerpts = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)
    assert len(excerpts) >= 3
    for excerpt in excerpts:
        assert excerpt in script, excerpt[:200]


def test_db_ddl_prints_the_single_node_form_without_a_cluster_and_the_old_forms_for_18_16():
    single = _printed("--database", "lp", "--server-version", "26.9")
    assert "CREATE TABLE IF NOT EXISTS lp.statements (" in single and "ON CLUSTER" not in single
    old = _printed("--cluster", "lp_c", "--database", "lp", "--server-version", "18.16")
    assert "DateTime64" not in old and "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/lp/statements'" in old
    refused = CliRunner().invoke(main, ["db", "ddl", "--database", "lp;DROP"], obj=Settings())
    assert refused.exit_code != 0 and "letters, digits and _ only" in refused.output
