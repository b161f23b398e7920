"""chDB query parameters in text form: the one-join fast path for string arrays equals the general one."""

from __future__ import annotations

import uuid

import pytest

from sinks.engines import _literal, _stringify


@pytest.mark.parametrize(
    "values",
    [
        [str(uuid.uuid4()) for _ in range(50)],
        ["it's", "plain"],
        ["back\\slash", "x"],
        ["é", "😀", ""],
        [1, 2.5, "mixed"],
        [3, 4],
        [],
        ("tuple", "of", "strings"),
    ],
)
def test_sinks_chdb_array_parameter_text_is_the_same_on_every_path(values):
    general = "[" + ",".join(_literal(x) for x in values) + "]"
    assert _stringify({"p": values})["p"] == general


def test_sinks_chdb_array_parameter_escapes_quotes_and_backslashes():
    assert _stringify({"p": ["a'b", "c\\d"]})["p"] == "['a\\'b','c\\\\d']"
