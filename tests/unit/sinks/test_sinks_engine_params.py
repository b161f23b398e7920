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


def test_a_server_url_names_other_replicas_as_alt_hosts_and_refuses_anything_else():
    from sinks.engines import engine_from_url

    engine = engine_from_url("clickhouse://u:p@127.0.0.1:9000/lp?alt_hosts=127.0.0.1:9001,replica-2:9000")
    hosts = list(engine._client.connection.hosts)
    assert hosts == [("127.0.0.1", 9000), ("127.0.0.1", 9001), ("replica-2", 9000)]
    assert list(engine_from_url("clickhouse://u:p@127.0.0.1:9000/lp")._client.connection.hosts) == [("127.0.0.1", 9000)]
    with pytest.raises(ValueError, match="alt_hosts: 127.0.0.1 is not host:port"):
        engine_from_url("clickhouse://u:p@127.0.0.1:9000/lp?alt_hosts=127.0.0.1")


SERVER_VALUES = [
    "plain",
    "it's a \\ back\nslash\t\0\a\b\f\v\r",
    "100% of %(other)s and {braces}",
    "é 😀",
    "",
    [str(uuid.uuid4()) for _ in range(20)],
    ["a'b", "c\\d", "50%"],
    ("tuple", "of", "it's"),
    [],
    [1, "mixed"],
    42,
    2.5,
]


@pytest.mark.parametrize("value", SERVER_VALUES)
def test_server_parameters_are_sent_as_the_driver_alone_would_send_them(value):
    from sinks.engines import _PARAM, engine_from_url

    engine = engine_from_url("clickhouse://u:p@127.0.0.1:9000/lp")
    client = engine._client
    sent: list[str] = []

    def as_sent(query, params=None, **kw):
        # What the driver puts on the wire: its own %-substitution of what it was given.
        sent.append(query if params is None else client.substitute_params(query, params, client.connection.context))
        return []

    engine._execute = as_sent
    sql = "SELECT 'x%y', {v:String} FROM {db}.t WHERE a IN {w:Array(String)} AND b = {n:UInt8}"
    params = {"v": value, "w": value, "n": 7}
    engine.query(sql, params)
    by_driver_alone = client.substitute_params(
        _PARAM.sub(lambda m: f"%({m.group(1)})s", sql.replace("{db}", "lp").replace("%", "%%")),
        params, client.connection.context,
    )  # fmt: skip
    assert sent == [by_driver_alone]
