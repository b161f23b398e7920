"""The two real implementations of :class:`schemas.clickhouse.engine.ClickHouse`."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote, urlparse

import orjson

from schemas.clickhouse.engine import TRANSIENT_CODES, ClickHouse, ClickHouseError, ClickHouseUnavailable

_PARAM = re.compile(r"\{(\w+):([^{}]+)\}")
# Every ClickHouse exception text starts with "Code: N." (chDB exposes no attribute).
_CODE = re.compile(r"Code: (\d+)\.")


def _chdb_error(err: Exception, what: str) -> Exception:
    """ClickHouseUnavailable for transient codes, ClickHouseError (with the code) otherwise."""
    m = _CODE.search(str(err))
    code = int(m.group(1)) if m else None
    if code in TRANSIENT_CODES:
        return ClickHouseUnavailable(f"chDB {what}: {err}")
    return ClickHouseError(f"chDB {what}: {err}", code)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat(sep=" ")
    raise TypeError(f"cannot send {type(value).__name__} to ClickHouse")


class _SharedChdb:
    """chDB runs one embedded server per process, bound to one path. Every engine on
    that path shares it (each with its own database); it closes with the last engine."""

    def __init__(self, path: str) -> None:
        from chdb import session

        self.path = path
        self.lock = threading.Lock()
        self.session = session.Session(path)
        self.users = 0


_CHDB: dict[str, _SharedChdb] = {}
_CHDB_LOCK = threading.Lock()


def _acquire_chdb(path: str) -> _SharedChdb:
    path = os.path.abspath(path)
    with _CHDB_LOCK:
        shared = _CHDB.get(path)
        if shared is None:
            if _CHDB:
                (other,) = _CHDB
                raise ValueError(f"this process already runs chDB on {other}; one process can own only one chDB path")
            shared = _CHDB[path] = _SharedChdb(path)
        shared.users += 1
        return shared


def _release_chdb(shared: _SharedChdb) -> None:
    with _CHDB_LOCK:
        shared.users -= 1
        if shared.users == 0:
            with shared.lock:
                shared.session.close()
            _CHDB.pop(shared.path, None)


class ChdbEngine:
    """chDB: the current ClickHouse engine in this process, on a data directory.

    One process owns a path; all access goes through one session guarded by a lock
    (chDB sessions are not safe for concurrent use from several threads).
    """

    def __init__(self, path: str, database: str = "learnpulse") -> None:
        self.database = database
        self.path = path
        self._shared = _acquire_chdb(path)
        self._lock = self._shared.lock
        self._session = self._shared.session
        self._closed = False

    def server_version(self) -> tuple[int, ...]:
        (row,) = self.query("SELECT version()")
        return tuple(int(x) for x in row[0].split(".")[:3])

    def _run(self, sql: str, params: Mapping[str, Any] | None, fmt: str):
        sql = sql.replace("{db}", self.database)
        with self._lock:
            try:
                return self._session.query(sql, fmt, params=_stringify(params) if params else None)
            except Exception as err:  # chDB raises plain RuntimeError/ChdbError for SQL errors
                raise _chdb_error(err, "query") from err

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(sql, params, "CSV")

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        res = self._run(sql, params, "JSONCompact")
        raw = res.bytes()
        if not raw:
            return []
        return [tuple(r) for r in orjson.loads(raw)["data"]]

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> int:
        if not data or not len(data[0]):
            return 0
        payload = orjson.dumps(list(data), default=_json_default)
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            "SETTINGS date_time_input_format='best_effort', input_format_null_as_default=0 "
            "FORMAT JSONCompactColumns "
        )
        with self._lock:
            try:
                self._session.query(sql + payload.decode(), "CSV")
            except Exception as err:
                raise _chdb_error(err, f"insert into {table}") from err
        return len(data[0])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release_chdb(self._shared)


def _literal(x: Any) -> str:
    """One array element in ClickHouse's text form: numbers bare, everything else quoted."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return repr(x)
    return "'" + str(x).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _stringify(params: Mapping[str, Any]) -> dict[str, str]:
    # chDB binds query parameters from their text form.
    out = {}
    for k, v in params.items():
        if isinstance(v, datetime):
            out[k] = v.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        elif isinstance(v, (list, tuple)):
            out[k] = "[" + ",".join(_literal(x) for x in v) + "]"
        else:
            out[k] = str(v)
    return out


class ServerEngine:
    """A ClickHouse server over the native protocol (clickhouse-driver).

    ``{name:Type}`` parameters are bound server-side where the server supports it
    (>= 19.15) and escaped by the driver for older servers.
    """

    def __init__(self, host: str, port: int, user: str, password: str, database: str, connect_timeout: float = 5):
        from clickhouse_driver import Client

        self.database = database
        self._client = Client(
            host=host,
            port=port,
            user=user,
            password=password,
            # The pipeline's database, not "default": users limited to it (allow_databases,
            # grants) could not even connect otherwise. Falls back to "default" while it
            # does not exist yet (before the first migration creates it).
            database=database,
            connect_timeout=connect_timeout,
            send_receive_timeout=300,
            settings={"insert_block_size": 1_048_576},
        )
        self._lock = threading.Lock()
        self._version: tuple[int, ...] | None = None

    def server_version(self) -> tuple[int, ...]:
        if self._version is None:
            (row,) = self._call("SELECT version()", None)
            self._version = tuple(int(x) for x in row[0].split(".")[:3])
        return self._version

    def _call(self, sql: str, params: Mapping[str, Any] | None, **kw: Any):
        sql = sql.replace("{db}", self.database)
        if params:
            # %-style escaping by the driver; works on every server version.
            sql = _PARAM.sub(lambda m: f"%({m.group(1)})s", sql.replace("%", "%%"))
        with self._lock:
            try:
                return self._client.execute(sql, params or None, **kw)
            except Exception as err:
                classified = self._classify(err)
                if not (isinstance(classified, ClickHouseError) and classified.code == 81 and self._use_default()):
                    raise classified from err
            try:
                return self._client.execute(sql, params or None, **kw)
            except Exception as err:
                raise self._classify(err) from err

    def _use_default(self) -> bool:
        """Connect to "default" when our database does not exist yet; False if already there."""
        if self._client.connection.database == "default":
            return False
        self._client.disconnect()
        self._client.connection.database = "default"
        return True

    def _classify(self, err: Exception) -> Exception:
        """Transient failures (network, server busy/restarting) vs a wrong request."""
        from clickhouse_driver import errors as cherr

        if isinstance(err, (cherr.NetworkError, cherr.SocketTimeoutError, EOFError, ConnectionError, OSError)):
            # The connection is in an unknown state: reconnect on the next call.
            self._client.disconnect()
            return ClickHouseUnavailable(f"ClickHouse server not reachable: {err}")
        code = getattr(err, "code", None)
        if code in TRANSIENT_CODES:
            self._client.disconnect()
            return ClickHouseUnavailable(f"ClickHouse server busy (code {code}): {_first_line(err)}")
        if isinstance(err, cherr.Error):
            return ClickHouseError(f"ClickHouse: {_first_line(err)}", code)
        return err

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._call(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._call(sql, params)]

    def insert(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> int:
        if not data or not len(data[0]):
            return 0
        with self._lock:
            try:
                return self._client.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES", list(data), columnar=True
                )
            except Exception as err:
                classified = self._classify(err)
                if not (isinstance(classified, ClickHouseError) and classified.code == 81 and self._use_default()):
                    raise classified from err
            try:
                return self._client.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES", list(data), columnar=True
                )
            except Exception as err:
                raise self._classify(err) from err

    def close(self) -> None:
        self._client.disconnect()


def _first_line(err: Exception) -> str:
    # Old servers append a long stack trace to the message.
    return str(err).split("Stack trace", 1)[0].strip()


def engine_from_url(url: str) -> ClickHouse:
    """``chdb:///abs/path[?database=db]`` or ``clickhouse://user:pass@host:port/db``."""
    parsed = urlparse(url)
    if parsed.scheme == "chdb":
        path = unquote(parsed.path) or "./.learnpulse/chdb"
        db = dict(p.split("=", 1) for p in parsed.query.split("&") if "=" in p).get("database", "learnpulse")
        return ChdbEngine(path, db)
    if parsed.scheme == "clickhouse":
        return ServerEngine(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 9000,
            user=unquote(parsed.username or "default"),
            password=unquote(parsed.password or ""),
            database=(parsed.path or "/learnpulse").lstrip("/") or "learnpulse",
        )
    raise ValueError(
        f"unsupported ClickHouse URL scheme {parsed.scheme!r}: use chdb:///path or clickhouse://host:port/db"
    )
