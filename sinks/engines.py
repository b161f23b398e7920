"""The two real implementations of :class:`schemas.clickhouse.engine.ClickHouse`."""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from itertools import chain
from math import isfinite
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import orjson

from schemas import metrics
from schemas.clickhouse.cluster import all_shards_database, local_database
from schemas.clickhouse.engine import (
    TRANSIENT_CODES,
    ClickHouse,
    ClickHouseError,
    ClickHouseUnavailable,
    LimitedResult,
    QueryCancelled,
    QueryLimits,
    ReadonlyRunner,
)

log = logging.getLogger("learnpulse.clickhouse")

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


# -- Arrow conversion (chDB inserts) ------------------------------------------------------
# Each converter takes a column of Python values and returns a pyarrow array holding
# exactly what the JSON path would store, or None when the values are not all of the
# one Python type the row builders use for that ClickHouse type (then JSON decides, as
# before: pyarrow would silently truncate 1.5 into an integer, or take bytes as text).


def _types_of(values: Sequence[Any]) -> set[type]:
    return set(map(type, values))


def _plain(arrow_type: Any, allowed: frozenset[type], nullable: bool) -> Any:
    def convert(values: Sequence[Any]) -> Any:
        import pyarrow as pa

        kinds = _types_of(values)
        if nullable:
            kinds.discard(type(None))
        if not kinds <= allowed:
            return None
        return pa.array(values, type=arrow_type(pa))

    return convert


def _floats(nullable: bool) -> Any:
    plain = _plain(lambda pa: pa.float64(), _FLOAT, nullable)

    def convert(values: Sequence[Any]) -> Any:
        # orjson writes NaN and infinities as null, which a Float64 column refuses.
        finite = [v for v in values if v is not None] if nullable else values
        if not all(map(isfinite, finite)):
            return None
        return plain(values)

    return convert


def _uuids(nullable: bool) -> Any:
    def convert(values: Sequence[Any]) -> Any:
        import pyarrow as pa

        kinds = _types_of(values)
        nulls = None
        if nullable and type(None) in kinds:
            kinds.discard(type(None))
            nulls = [v is not None for v in values]
        if not kinds <= {uuid.UUID}:
            return None
        # ClickHouse reads a 16-byte binary as the UUID's bytes in RFC 4122 (big-endian)
        # order; one buffer of them, not one Python bytes object per value.
        to_bytes = int.to_bytes
        if nulls is None:
            data = b"".join([to_bytes(v.int, 16, "big") for v in values])
            return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(values), [None, pa.py_buffer(data)])
        data = b"".join([_ZERO_UUID if v is None else to_bytes(v.int, 16, "big") for v in values])
        mask = pa.array(nulls, type=pa.bool_()).buffers()[1]
        return pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(16), len(values), [mask, pa.py_buffer(data)], null_count=nulls.count(False)
        )

    return convert


_ZERO_UUID = bytes(16)


def _string_arrays(values: Sequence[Any]) -> Any:
    import pyarrow as pa

    if not _types_of(values) <= {list, tuple} or not set(map(type, chain.from_iterable(values))) <= {str}:
        return None
    return pa.array(values, type=pa.list_(pa.string()))


_INT = frozenset({int})
_FLOAT = frozenset({int, float})
_STR = frozenset({str})
_TIME = frozenset({datetime})


def _arrow_converters() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for nullable in (False, True):

        def wrap(t: str, nullable: bool = nullable) -> str:
            return f"Nullable({t})" if nullable else t

        for name in ("UInt8", "UInt16", "UInt32", "UInt64", "Int8", "Int16", "Int32", "Int64"):
            out[wrap(name)] = _plain(lambda pa, n=name: getattr(pa, n.lower())(), _INT, nullable)
        out[wrap("Float64")] = _floats(nullable)
        out[wrap("String")] = _plain(lambda pa: pa.string(), _STR, nullable)
        out[wrap("UUID")] = _uuids(nullable)
        # Microseconds as Python has them: ClickHouse brings them to the column's scale,
        # as it does with the text form. Naive datetimes are UTC, as in the text form.
        for t in ("DateTime('UTC')", "DateTime64(3, 'UTC')"):
            out[wrap(t)] = _plain(lambda pa: pa.timestamp("us", tz="UTC"), _TIME, nullable)
    out["LowCardinality(String)"] = out["String"]
    out["LowCardinality(Nullable(String))"] = out["Nullable(String)"]
    out["Array(String)"] = _string_arrays
    # statements.violations (migration 0012): ClickHouse dictionary-encodes the strings itself.
    out["Array(LowCardinality(String))"] = _string_arrays
    return out


_ARROW = _arrow_converters()


def _ipc_stream(arrays: list[Any], names: Sequence[str]) -> bytes:
    import pyarrow as pa
    from pyarrow import ipc

    batch = pa.RecordBatch.from_arrays(arrays, names=list(names))
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


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


def close_every_chdb() -> int:
    """Close the embedded engine whatever still holds it; the number closed.

    For the end of a process that opened chDB in many places (the test session): an engine
    still open when the interpreter exits can crash in chDB's own shutdown.
    """
    with _CHDB_LOCK:
        shared_all = list(_CHDB.values())
        _CHDB.clear()
    for shared in shared_all:
        with shared.lock:
            shared.session.close()
    return len(shared_all)


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
        # "db.table" -> {column: ClickHouse type}, for the Arrow insert path.
        self._types: dict[str, dict[str, str]] = {}
        # How many inserts went each way ("arrow", "json"): shows when rows miss the fast path.
        self.insert_formats: Counter[str] = Counter()

    def server_version(self) -> tuple[int, ...]:
        (row,) = self.query("SELECT version()")
        return tuple(int(x) for x in row[0].split(".")[:3])

    def _run(self, sql: str, params: Mapping[str, Any] | None, fmt: str) -> bytes:
        """The query's output as bytes. The chDB result object is read *and freed* under the
        lock: its memory belongs to the engine, and reading or releasing it while another
        thread runs a query on the same connection is a data race in native code (issue 12:
        a segmentation fault of `serve`), so no chDB object outlives the lock."""
        sql = sql.replace("{db}", self.database)
        with self._lock:
            try:
                res = self._session.query(sql, fmt, params=_stringify(params) if params else None)
            except Exception as err:  # chDB raises plain RuntimeError/ChdbError for SQL errors
                raise _chdb_error(err, "query") from err
            try:
                return res.bytes()
            finally:
                del res

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(sql, params, "CSV")

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raw = self._run(sql, params, "JSONCompact")
        if not raw:
            return []
        return [tuple(r) for r in orjson.loads(raw)["data"]]

    def insert(
        self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]], dedup_token: str | None = None
    ) -> int:
        """Columnar insert: as Arrow when every column's values fit its type exactly, else as JSON.

        Arrow (one IPC stream, read by ClickHouse without parsing text) costs the embedded
        engine about half the CPU of JSONCompactColumns, which it spent mostly parsing the
        JSON (the raw statement column above all). Both paths store the same values; a
        column of a type or with values Arrow does not cover exactly goes the JSON way, and
        so does a batch whose Arrow insert failed, so every error is the JSON path's own.
        """
        if not data or not len(data[0]):
            return 0
        # The same token on both paths: an Arrow insert that failed after writing is not
        # written again by the JSON one.
        token = f", insert_deduplication_token={_literal(dedup_token)}" if dedup_token else ""
        payload = self._arrow_payload(table, columns, data)
        if payload is not None:
            sql = f"INSERT INTO {table} ({', '.join(columns)}) SETTINGS input_format_null_as_default=0{token}"
            with self._lock:
                inserter = None
                try:
                    inserter = self._session.send_insert(sql, "ArrowStream")
                    inserter.append(payload)
                    inserter.finish()
                    inserter = None  # released under the lock, like every chDB object
                    self.insert_formats["arrow"] += 1
                    return len(data[0])
                except Exception as err:  # noqa: BLE001 - retried below as JSON, which reports its own error
                    log.debug("Arrow insert into %s failed (%s); inserting as JSON", table, err)
                    if inserter is not None:
                        try:
                            inserter.cancel()
                        except Exception:  # noqa: BLE001, S110 - already failed; the JSON insert follows
                            pass
                    self._types.pop(table, None)  # the table may have changed: look its types up again
                    inserter = None
        return self._insert_json(table, columns, data, token)

    def _column_types(self, table: str) -> dict[str, str]:
        found = self._types.get(table)
        if found is None:
            db, _, name = table.rpartition(".")
            rows = self.query(
                "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
                {"db": db.strip("`") or self.database, "t": name.strip("`")},
            )
            found = self._types[table] = {str(n): str(t) for n, t in rows}
        return found

    def _arrow_payload(self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> bytes | None:
        """The columns as an Arrow IPC stream, or None if some column cannot go exactly."""
        try:
            types = self._column_types(table)
        except ClickHouseError:
            return None
        arrays = []
        for name, values in zip(columns, data, strict=True):
            ch_type = types.get(name)
            convert = _ARROW.get(ch_type) if ch_type is not None else None
            if convert is None:
                return None
            try:
                array = convert(values)
            except (TypeError, ValueError, OverflowError, AttributeError, ArithmeticError):
                return None
            except Exception as err:  # noqa: BLE001 - pyarrow's own errors (ArrowInvalid …): JSON path decides
                log.debug("no Arrow for %s.%s: %r", table, name, err)
                return None
            if array is None:
                return None
            arrays.append(array)
        return _ipc_stream(arrays, columns)

    def _insert_json(
        self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]], token: str = ""
    ) -> int:
        self.insert_formats["json"] += 1
        payload = orjson.dumps(list(data), default=_json_default)
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"SETTINGS date_time_input_format='best_effort', input_format_null_as_default=0{token} "
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


def _array_literal(values: Sequence[Any]) -> str:
    # Statement ids by the thousand (the gateway's conflict look-ups): plain strings with
    # nothing to escape are quoted in one join; anything else element by element.
    if values and set(map(type, values)) == {str}:
        joined = "".join(values)
        if "'" not in joined and "\\" not in joined:
            return "['" + "','".join(values) + "']"
    return "[" + ",".join(_literal(x) for x in values) + "]"


def _stringify(params: Mapping[str, Any]) -> dict[str, str]:
    # chDB binds query parameters from their text form.
    out = {}
    for k, v in params.items():
        if isinstance(v, datetime):
            out[k] = v.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        elif isinstance(v, (list, tuple)):
            out[k] = _array_literal(v)
        else:
            out[k] = str(v)
    return out


# The driver's escapes (clickhouse_driver.util.escape.escape_chars_map) as one table: the
# driver escapes text a character at a time in Python, ~7 % of the statements sink's CPU on
# the server path (the ids of its look-ups, 185 KB a query), where str.translate is one C loop.
_ESCAPES = str.maketrans(
    {"\b": "\\b", "\f": "\\f", "\r": "\\r", "\n": "\\n", "\t": "\\t", "\0": "\\0", "\a": "\\a",
     "\v": "\\v", "\\": "\\\\", "'": "\\'"}
)  # fmt: skip


def _text_literal(value: Any) -> str | None:
    """The driver's literal of a str, or of a list/tuple of str (``['a', 'b']``, ``('a', 'b')``);
    None for any other value (the driver escapes it)."""
    if type(value) is str:
        return "'" + value.translate(_ESCAPES) + "'"
    if type(value) in (list, tuple) and all(type(v) is str for v in value):
        items = ", ".join(["'" + v.translate(_ESCAPES) + "'" for v in value])
        return f"[{items}]" if type(value) is list else f"({items})"
    return None


def _inline(name: str, params: Mapping[str, Any], driver_params: dict[str, Any]) -> str:
    """Parameter ``name``'s place in a query that goes through the driver's %-substitution."""
    literal = _text_literal(params[name])
    if literal is None:
        driver_params[name] = params[name]
        return f"%({name})s"
    return literal.replace("%", "%%")


_DEDUP_TOKENS_FROM = (22, 2)
ACROSS_SHARDS_SETTINGS = {"insert_distributed_sync": 1, "distributed_product_mode": "global"}


class ServerEngine:
    """A ClickHouse server over the native protocol (clickhouse-driver).

    ``{name:Type}`` parameters are bound server-side where the server supports it
    (>= 19.15) and escaped by the driver for older servers.
    """

    def __init__(self, host: str, port: int, user: str, password: str, database: str, connect_timeout: float = 5,
                 alt_hosts: str = "", session_settings: Mapping[str, Any] | None = None):  # fmt: skip
        """``alt_hosts``: other replicas (``host:port,…``) to connect to when this one does not
        answer; a retried insert then reaches one of them (replicated tables drop it there if
        the first attempt was written: deploy/CLUSTER.md). ``session_settings``: ClickHouse
        settings of every query (:meth:`across_shards`)."""
        from clickhouse_driver import Client

        self.database = database
        self.session_settings = dict(session_settings or {})
        self._alt_hosts = alt_hosts
        self._connect_timeout = connect_timeout
        self._connection_args = {"host": host, "port": port, "user": user, "password": password}
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
            alt_hosts=alt_hosts or None,
            send_receive_timeout=300,
            settings={"insert_block_size": 1_048_576, **self.session_settings},
        )
        self._lock = threading.Lock()
        self._version: tuple[int, ...] | None = None
        # (host, port) of the replica that answered last.
        self._replica: tuple[str, int] | None = None

    def connection_args(self) -> dict[str, Any]:
        """Host, port, user and password of this connection (for a second one)."""
        return dict(self._connection_args)

    def sibling(self) -> ServerEngine:
        """Another connection to the same server(s), database and settings, for a thread that
        must not wait for this one's queries (one connection runs one query at a time)."""
        other = self._like(self.database, self.session_settings)
        other._version = self._version
        return other

    def _like(self, database: str, session_settings: Mapping[str, Any] | None) -> ServerEngine:
        """A new connection with this one's servers, credentials and timeouts."""
        return ServerEngine(**self._connection_args, database=database, connect_timeout=self._connect_timeout,
                            alt_hosts=self._alt_hosts, session_settings=session_settings)  # fmt: skip

    def at(self, host: str, port: int) -> ServerEngine:
        """A connection to another server of our cluster (``host``:``port``, native protocol) with
        this one's credentials, timeouts and database (the local one: an all-shards database's
        tables are Distributed, and DDL run once per shard is for the tables behind them)."""
        a = self._connection_args
        return ServerEngine(host, port, a["user"], a["password"], local_database(self.database),
                            connect_timeout=self._connect_timeout)  # fmt: skip

    def answers_at(self, host: str, port: int, timeout: float = 3) -> bool:
        """Whether the server at ``host``:``port`` (another replica of our cluster) takes this
        connection's credentials and answers ``SELECT 1`` within ``timeout`` seconds."""
        from clickhouse_driver import Client

        a = self._connection_args
        client = Client(host=host, port=port, user=a["user"], password=a["password"], database="default",
                        connect_timeout=timeout, send_receive_timeout=timeout, sync_request_timeout=timeout)  # fmt: skip
        try:
            return client.execute("SELECT 1") == [(1,)]
        except Exception:  # noqa: BLE001 - any failure means it does not answer; the caller names it
            return False
        finally:
            client.disconnect()

    def across_shards(self) -> ServerEngine:
        """A connection to the same server(s) whose ``{db}`` is the all-shards database of this
        one's (``schemas/clickhouse/cluster.py``): its tables have the local names and are
        Distributed over every shard, so every query and insert of the pipeline works unchanged.

        Inserts are synchronous (``insert_distributed_sync``; ``distributed_foreground_insert``
        is its current name, the old one an alias): an acknowledged block is on its shard's
        replicated table, which drops the same block inserted again (a retried batch).
        Subqueries over Distributed tables (``IN (SELECT …)``, ``JOIN``) are computed once over
        every shard and sent to each (``distributed_product_mode = 'global'``), so a global max
        or id set is not a per-shard one.
        """
        return self._like(all_shards_database(local_database(self.database)), ACROSS_SHARDS_SETTINGS)

    def server_version(self) -> tuple[int, ...]:
        if self._version is None:
            (row,) = self._call("SELECT version()", None)
            self._version = tuple(int(x) for x in row[0].split(".")[:3])
        return self._version

    def _call(self, sql: str, params: Mapping[str, Any] | None, **kw: Any):
        sql = sql.replace("{db}", self.database)
        driver_params: dict[str, Any] | None = None
        if params:
            # Inlined as literals, escaped as the driver escapes them (works on every server
            # version): text and lists of text here (_text_literal), the rest by the driver's
            # %-style substitution, which then also turns every %% back into %.
            driver_params = {}
            sql = _PARAM.sub(lambda m: _inline(m.group(1), params, driver_params), sql.replace("%", "%%"))
        with self._lock:
            try:
                return self._execute(sql, driver_params, **kw)
            except Exception as err:
                classified = self._classify(err)
                if not (isinstance(classified, ClickHouseError) and classified.code == 81 and self._use_default()):
                    raise classified from err
            try:
                return self._execute(sql, driver_params, **kw)
            except Exception as err:
                raise self._classify(err) from err

    def _execute(self, *args: Any, **kw: Any) -> Any:
        """``Client.execute``, then note which replica answered (the driver connects to the
        first of host and ``alt_hosts`` that answers)."""
        result = self._client.execute(*args, **kw)
        host, port = self._client.connection.hosts[0]
        if (host, port) != self._replica:
            if self._replica is not None:
                log.warning("ClickHouse: now connected to %s:%s (%s:%s did not answer)", host, port, *self._replica)
                metrics.CLICKHOUSE_REPLICA_SWITCHES.inc()
            self._replica = (host, port)
        return result

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

    def insert(
        self, table: str, columns: Sequence[str], data: Sequence[Sequence[Any]], dedup_token: str | None = None
    ) -> int:
        if not data or not len(data[0]):
            return 0
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES"
        settings = {"insert_deduplication_token": dedup_token} if dedup_token and self._knows_tokens() else None
        with self._lock:
            try:
                return self._execute(sql, list(data), columnar=True, settings=settings)
            except Exception as err:
                classified = self._classify(err)
                if not (isinstance(classified, ClickHouseError) and classified.code == 81 and self._use_default()):
                    raise classified from err
            try:
                return self._execute(sql, list(data), columnar=True, settings=settings)
            except Exception as err:
                raise self._classify(err) from err

    def _knows_tokens(self) -> bool:
        # insert_deduplication_token exists from 22.2; older servers refuse unknown settings.
        try:
            return self.server_version() >= _DEDUP_TOKENS_FROM
        except Exception:  # noqa: BLE001 - version unknown (server down): the insert reports that itself
            return False

    def close(self) -> None:
        self._client.disconnect()


def connection_of_its_own(engine: ClickHouse) -> tuple[ClickHouse, bool]:
    """``engine`` for a thread of its own: (the engine, whether the caller owns it and closes it).

    A server: a new connection, so that this thread's queries run beside other threads'
    instead of after them. chDB: the same engine (one session per process, serialized anyway).
    """
    if isinstance(engine, ServerEngine):
        return engine.sibling(), True
    return engine, False


def more_connections(engine: ClickHouse, n: int) -> tuple[ClickHouse, ...]:
    """``n`` more connections to ``engine``'s server, for work side by side (the caller closes
    them). chDB: none (one session per process, serialized anyway)."""
    return tuple(engine.sibling() for _ in range(n)) if isinstance(engine, ServerEngine) else ()


def _first_line(err: Exception) -> str:
    # Old servers append a long stack trace to the message.
    return str(err).split("Stack trace", 1)[0].strip()


# -- research queries on a connection of their own --------------------------------------
def _code_of(err: BaseException) -> int | None:
    code = getattr(err, "code", None)
    if isinstance(code, int):
        return code
    m = _CODE.search(str(err))
    return int(m.group(1)) if m else None


def _setting_literal(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


class ChdbReadonlyRunner:
    """Research queries on a second chDB handle of the same embedded engine.

    chDB (4.x) runs queries of different handles of one engine in parallel, so the sinks'
    handle is never waiting for a research query. This handle's session is set read-only
    with the limits once (``SET …``, ``readonly`` last: nothing can change them after),
    queries stream in blocks so the bytes are counted and a cancel stops between blocks,
    and after any failure the handle is replaced by a fresh one.
    """

    def __init__(self, engine: ChdbEngine, limits: QueryLimits) -> None:
        self.limits = limits
        self._engine = engine
        self._shared = _acquire_chdb(engine.path)  # keeps the engine up while this handle lives
        self._lock = threading.Lock()  # one query at a time on this handle
        self._session: Any = None
        self._closed = False

    def _open(self) -> Any:
        if self._session is None:
            from chdb import session

            handle = session.Session(self._shared.path)
            try:
                for name, value in self.limits.settings().items():
                    handle.query(f"SET {name} = {_setting_literal(value)}")
            except Exception:
                handle.close()
                raise
            self._session = handle
        return self._session

    def _discard(self) -> None:
        if self._session is not None:
            try:
                self._session.close()
            except Exception:  # noqa: BLE001 - replaced anyway
                log.debug("closing a research chDB handle failed", exc_info=True)
            self._session = None

    def run(self, sql: str, cancel: Any) -> LimitedResult:
        with self._lock:
            if self._closed:
                raise ClickHouseUnavailable("the research connection is closed")
            try:
                return self._stream(self._open(), sql, cancel)
            except QueryCancelled:
                self._discard()
                raise
            except Exception as err:
                self._discard()
                # Codes as they are (159 time, 241 memory …): for a research query they are
                # its own answer, not a reason to retry.
                raise ClickHouseError(f"chDB: {_first_line(err)}", _code_of(err)) from err

    def _stream(self, handle: Any, sql: str, cancel: Any) -> LimitedResult:
        limits = self.limits
        stream = handle.send_query(sql, "JSONCompactEachRowWithNamesAndTypes")
        header: list[list[str]] = []
        rows: list[tuple[Any, ...]] = []
        size = 0
        cut: str | None = None
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    raise QueryCancelled("cancelled by the caller")
                chunk = stream.fetch()
                if chunk is None:
                    break
                data = chunk.bytes()
                for line in data.splitlines():
                    if not line:
                        continue
                    if len(header) < 2:
                        header.append(orjson.loads(line))
                        continue
                    size += len(line) + 1
                    if len(rows) >= limits.max_result_rows:
                        cut = "rows"
                        break
                    if size > limits.max_result_bytes:
                        cut = "bytes"
                        break
                    rows.append(tuple(orjson.loads(line)))
                if cut is not None:
                    break
        finally:
            if cut is not None or (cancel is not None and cancel.is_set()):
                try:
                    stream.cancel()
                except Exception:  # noqa: BLE001 - the handle is replaced below
                    pass
        if cut is not None:
            self._discard()  # a cancelled stream leaves the handle in an unknown state
        if len(header) < 2:  # no rows at all: the columns come from DESCRIBE of the checked text
            described = self._open().query(f"DESCRIBE ({sql}\n)", "JSONCompact").bytes()
            meta = orjson.loads(described)["data"] if described else []
            header = [[str(r[0]) for r in meta], [str(r[1]) for r in meta]]
        return LimitedResult([str(c) for c in header[0]], [str(t) for t in header[1]], rows, cut)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._discard()
                _release_chdb(self._shared)


class ServerReadonlyRunner:
    """Research queries on a clickhouse-driver connection of their own.

    Every query carries the limits as settings (``readonly=1`` among them); ``user`` may be
    a read-only user (e.g. with the ``learnpulse_researcher`` role). A cancel closes the
    connection, which makes the server stop the query.
    """

    def __init__(self, host: str, port: int, user: str, password: str, database: str, limits: QueryLimits,
                 connect_timeout: float = 5, session_settings: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        """``session_settings``: set before the limits (``readonly`` forbids any after it)."""
        from clickhouse_driver import Client

        self.session_settings = dict(session_settings or {})
        self.limits = limits
        self.database = database
        self._client = Client(
            host=host, port=port, user=user, password=password, database=database,
            connect_timeout=connect_timeout, send_receive_timeout=limits.max_execution_s + 30,
        )  # fmt: skip
        self._lock = threading.Lock()

    def run(self, sql: str, cancel: Any) -> LimitedResult:
        limits = self.limits
        with self._lock:
            stop_watch = threading.Event()
            watcher = None
            if cancel is not None:
                watcher = threading.Thread(target=self._watch, args=(cancel, stop_watch), daemon=True)
                watcher.start()
            rows: list[tuple[Any, ...]] = []
            cut: str | None = None
            try:
                settings = {**self.session_settings, **limits.settings()}
                it = self._client.execute_iter(sql, settings=settings, with_column_types=True)
                meta = next(it, [])
                size = 0
                for row in it:
                    if len(rows) >= limits.max_result_rows:
                        cut = "rows"
                        break
                    size += len(orjson.dumps(row, default=str)) + 1
                    if size > limits.max_result_bytes:
                        cut = "bytes"
                        break
                    rows.append(tuple(row))
                if cut is not None:
                    self._client.disconnect()  # stops the rest of the answer
            except Exception as err:
                self._client.disconnect()
                if cancel is not None and cancel.is_set():
                    raise QueryCancelled("cancelled by the caller") from err
                code = _code_of(err)
                from clickhouse_driver import errors as cherr

                if isinstance(err, (cherr.NetworkError, cherr.SocketTimeoutError, EOFError, OSError)):
                    raise ClickHouseUnavailable(f"ClickHouse server not reachable: {err}") from err
                raise ClickHouseError(f"ClickHouse: {_first_line(err)}", code) from err
            finally:
                stop_watch.set()
            if cancel is not None and cancel.is_set():
                raise QueryCancelled("cancelled by the caller")
            return LimitedResult([str(m[0]) for m in meta], [str(m[1]) for m in meta], rows, cut)

    def _watch(self, cancel: Any, done: threading.Event) -> None:
        while not done.is_set():
            if cancel.wait(0.2):
                if not done.is_set():
                    self._client.disconnect()
                return

    def close(self) -> None:
        self._client.disconnect()


def readonly_runner(engine: ClickHouse, limits: QueryLimits, url: str | None = None) -> ReadonlyRunner:
    """A :class:`ReadonlyRunner` beside ``engine``: same chDB engine (another handle), or a
    new connection to the server (``url``: another user, e.g. a read-only researcher)."""
    if isinstance(engine, ChdbEngine):
        return ChdbReadonlyRunner(engine, limits)
    if isinstance(engine, ServerEngine):
        parsed = urlparse(url) if url else None
        conn = engine.connection_args()
        if parsed is not None:
            conn.update(
                host=parsed.hostname or conn["host"], port=parsed.port or conn["port"],
                user=unquote(parsed.username or "default"), password=unquote(parsed.password or ""),
            )  # fmt: skip
        return ServerReadonlyRunner(**conn, database=engine.database, limits=limits,
                                    session_settings=engine.session_settings)  # fmt: skip
    raise TypeError(f"no read-only runner for {type(engine).__name__}")


_HOST_PORT = re.compile(r"[A-Za-z0-9._-]+:\d{1,5}")


def _alt_hosts(query: str) -> str:
    """``alt_hosts=h2:9000,h3:9000`` of a server URL: the other replicas, checked."""
    value = parse_qs(query).get("alt_hosts", [""])[-1]
    hosts = [h for h in value.split(",") if h]
    bad = [h for h in hosts if not _HOST_PORT.fullmatch(h)]
    if bad:
        raise ValueError(f"alt_hosts: {', '.join(bad)} is not host:port")
    return ",".join(hosts)


def engine_from_url(url: str) -> ClickHouse:
    """``chdb:///abs/path[?database=db]`` or ``clickhouse://user:pass@host:port/db[?alt_hosts=host:port,…]``."""
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
            alt_hosts=_alt_hosts(parsed.query),
        )
    raise ValueError(
        f"unsupported ClickHouse URL scheme {parsed.scheme!r}: use chdb:///path or clickhouse://host:port/db"
    )
