"""The researcher's guide names exactly the tables the research role may read."""

from __future__ import annotations

import re
from pathlib import Path

from schemas.clickhouse.tables import RESEARCH_TABLES

README = Path(__file__).resolve().parents[3] / "reporting" / "README.md"


def _research_list() -> set[str]:
    text = README.read_text()
    found = re.search(r'"researchers: yes" below \((.*?)\), never', text, re.S)
    assert found, "reporting/README.md no longer lists the research tables"
    listed = found.group(1).split(":")[0]
    return set(re.findall(r"`([a-z_]+)`", listed))


def test_readme_lists_every_research_table_and_no_other():
    assert _research_list() == set(RESEARCH_TABLES)
