"""CSV exports of the dashboard's tables: RFC 4180 quoting, no formulas for spreadsheets."""

from __future__ import annotations

import csv
import io

from reporting.dashboard import to_csv


def test_csv_quotes_commas_quotes_and_newlines_and_reads_back():
    rows = [{"a": 'x,"y"', "b": "line\nbreak"}, {"a": None, "b": 3}]
    text = to_csv(("a", "b"), rows)
    assert list(csv.reader(io.StringIO(text))) == [["a", "b"], ['x,"y"', "line\nbreak"], ["", "3"]]


def test_cells_a_spreadsheet_would_run_get_a_quote_mark_numbers_do_not():
    rows = [{"a": "=HYPERLINK(\"http://evil\")"}, {"a": "+1+1"}, {"a": "@SUM(A1)"}, {"a": "-3.5"}, {"a": "-"}]
    got = [r[0] for r in csv.reader(io.StringIO(to_csv(("a",), rows)))][1:]
    assert got == ["'=HYPERLINK(\"http://evil\")", "'+1+1", "'@SUM(A1)", "-3.5", "'-"]
