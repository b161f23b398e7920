"""The research SQL checker: decides from the text alone, sending nothing to ClickHouse.

A query passes only if it is one SELECT (or WITH … SELECT) that reads allowed tables of the
pipeline's database and calls no function that reaches files, the network, dictionaries or
other tables by name. The text is split by a tokenizer that follows ClickHouse's lexer
(strings with backslash escapes and doubled quotes, quoted identifiers, ``--`` and
non-nested ``/* */`` comments); anything it cannot tokenize the way ClickHouse would is
refused rather than guessed. What is sent to the engine is the checked text with its
comments blanked out, so the engine sees exactly the tokens that were checked.

Every refusal names a rule (``sql.*``), listed in :data:`RULES`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_QUERY_CHARS = 20_000

RULES = {
    "sql.empty": "the query is empty",
    "sql.too_long": f"the query is longer than {MAX_QUERY_CHARS} characters",
    "sql.syntax": "the text cannot be tokenized safely",
    "sql.one_statement": "exactly one statement is allowed",
    "sql.select_only": "only SELECT (or WITH … SELECT) is allowed",
    "sql.keyword": "clauses that write files, change settings or format output are not allowed",
    "sql.function": "functions that reach files, the network, dictionaries or other tables are not allowed",
    "sql.table_function": "only the table functions numbers, zeros, generate_series and values are allowed",
    "sql.table": "only the research tables of the pipeline's database may be read",
}

# Table functions that only generate values in memory.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values"}
)
# Functions refused wherever they appear (lower case). Table functions are refused in table
# position by the allow-list above; they are listed here too because several also exist as
# scalar functions (``file``) or can appear after IN.
DENIED_FUNCTIONS = frozenset(
    {
        "url", "urlcluster", "remote", "remotesecure", "cluster", "clusterallreplicas", "mysql", "postgresql",
        "mongodb", "redis", "sqlite", "jdbc", "odbc", "file", "filecluster", "input", "executable", "hdfs",
        "hdfscluster", "s3", "s3cluster", "gcs", "oss", "cosn", "azureblobstorage", "azureblobstoragecluster",
        "iceberg", "deltalake", "hudi", "paimon", "merge", "mergetreeindex", "mergetreeprojection", "dictionary",
        "view", "viewifpermitted", "viewexplain", "loop", "arrowflight", "ytsaurus", "kafka", "fuzzjson",
        "fuzzquery", "prometheusquery", "prometheusqueryrange", "timeseriesdata", "timeseriestags",
        "timeseriesmetrics", "timeseriesselector", "joinget", "joingetornull", "dicthas", "dictisin",
        "catboostevaluate", "naivebayesclassifier", "hascolumnintable", "filesystemavailable",
        "filesystemcapacity", "filesystemunreserved", "getsetting", "getserversetting", "getmergetreesetting",
    }
)  # fmt: skip
# Families refused by prefix: dictGet*, s3*/hdfs*/azure*/iceberg*/deltaLake*/hudi* variants…
DENIED_PREFIXES = (
    "dictget", "s3", "hdfs", "azure", "iceberg", "deltalake", "hudi", "paimon", "remote", "cluster", "mysql",
    "postgres", "mongo", "redis", "jdbc", "odbc", "url", "file", "executable", "timeseries", "prometheus",
)  # fmt: skip
# …but these scalar functions only take apart a string (URL functions, fileName-like helpers do not exist).
ALLOWED_DESPITE_PREFIX = frozenset(
    {"urlhierarchy", "urlpathhierarchy", "urlencode", "urldecode"}
)
# The functional forms of IN read a table given as an argument.
_IN_FUNCTION = re.compile(r"(global)?(not)?(null)?(not)?in(ignoreset)?\Z")

# Unquoted words refused as keywords (not as function names, column parts or quoted names).
DENIED_KEYWORDS = frozenset(
    {
        "INTO", "OUTFILE", "FORMAT", "SETTINGS", "INSERT", "CREATE", "ALTER", "DROP", "TRUNCATE", "RENAME",
        "SYSTEM", "KILL", "GRANT", "REVOKE", "SET", "USE", "OPTIMIZE", "ATTACH", "DETACH", "EXCHANGE", "UNDROP",
        "BACKUP", "RESTORE", "PARALLEL", "DELETE", "UPDATE", "EXPLAIN", "DESCRIBE", "SHOW", "CHECK", "WATCH",
        "MOVE", "INFILE",
    }
)  # fmt: skip

# Clause keywords (upper case) after which a comma at the same depth starts another table.
_TABLE_LIST_CLAUSES = frozenset({"FROM", "JOIN", "ON", "USING"})
_CLAUSES = frozenset(
    {"SELECT", "WITH", "FROM", "JOIN", "ON", "USING", "WHERE", "PREWHERE", "GROUP", "HAVING", "ORDER", "LIMIT",
     "OFFSET", "UNION", "EXCEPT", "INTERSECT", "QUALIFY", "WINDOW", "BY"}
)  # fmt: skip


class QueryRefused(Exception):
    """The checker refused the text; ``rule`` is one of :data:`RULES`."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class Token:
    kind: str  # word, qident, string, number, op
    text: str  # as written
    value: str  # unquoted name for word/qident, else the text
    start: int
    end: int


@dataclass(frozen=True)
class CheckedQuery:
    """A query that passed: ``sql`` is what goes to the engine (comments blanked)."""

    sql: str
    tables: tuple[str, ...]


_WS = " \t\n\r\f\v"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+(?![0-9A-Za-z_])|0[bB][01]+(?![0-9A-Za-z_])"
    r"|(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?(?![A-Za-z_])"
)
_OPERATORS = ("::", "->", "<=", ">=", "!=", "<>", "==", "||", "(", ")", "[", "]", ",", ";", ".", "+", "-", "*",
              "/", "%", "=", "<", ">", "?", ":", "^")  # fmt: skip


def tokenize(text: str) -> tuple[list[Token], str]:
    """Tokens of ``text`` and the text with every comment replaced by spaces."""
    tokens: list[Token] = []
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WS:
            i += 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise QueryRefused("sql.syntax", "unterminated /* comment")
            if "/*" in text[i + 2 : j]:
                raise QueryRefused("sql.syntax", "nested /* comments are not allowed")
            out[i : j + 2] = " " * (j + 2 - i)
            i = j + 2
        elif c in "'`\"":
            j = _quoted_end(text, i)
            raw = text[i:j]
            kind = "string" if c == "'" else "qident"
            tokens.append(Token(kind, raw, _unquote(raw), i, j))
            i = j
        elif c.isascii() and (c.isalpha() or c == "_"):
            m = _WORD.match(text, i)
            assert m is not None
            if m.end() < n and not text[m.end()].isascii():
                raise QueryRefused("sql.syntax", f"non-ASCII character after {m.group()!r}; quote the name")
            tokens.append(Token("word", m.group(), m.group(), i, m.end()))
            i = m.end()
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit() and not _glues(tokens, i)):
            m = _NUMBER.match(text, i)
            if m is None:
                raise QueryRefused("sql.syntax", f"malformed number at character {i}")
            tokens.append(Token("number", m.group(), m.group(), i, m.end()))
            i = m.end()
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
            if op is None:
                what = {"{": "query parameters ({name:Type})", "$": "heredoc strings ($$…$$)", "#": "# comments"}
                raise QueryRefused(
                    "sql.syntax", f"{what.get(c, repr(c))} not allowed here (character {i})"
                )
            tokens.append(Token("op", op, op, i, i + len(op)))
            i += len(op)
    return tokens, "".join(out)


def _glues(tokens: list[Token], at: int) -> bool:
    # `t.1` (tuple element) or `x).2`: a dot right after a name or bracket is an accessor.
    if not tokens:
        return False
    last = tokens[-1]
    return last.end == at and (last.kind in ("word", "qident") or last.text in (")", "]"))


def _quoted_end(text: str, i: int) -> int:
    q = text[i]
    j = i + 1
    n = len(text)
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == q:
            if j + 1 < n and text[j + 1] == q:  # doubled quote
                j += 2
                continue
            return j + 1
        j += 1
    raise QueryRefused("sql.syntax", f"unterminated {q}-quoted text starting at character {i}")


def _unquote(raw: str) -> str:
    q = raw[0]
    body = raw[1:-1]
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
        elif c == q and i + 1 < len(body) and body[i + 1] == q:
            out.append(q)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _is_name(t: Token) -> bool:
    return t.kind in ("word", "qident")


# Words that stay keywords before '(' (never function names in ClickHouse's grammar).
_STRUCTURAL = frozenset(
    {"FROM", "JOIN", "SELECT", "WITH", "WHERE", "PREWHERE", "ON", "USING", "AS", "HAVING", "BY", "UNION", "ALL",
     "EXCEPT", "INTERSECT", "DISTINCT", "LIMIT", "OFFSET", "QUALIFY", "WINDOW", "OVER", "FINAL", "SAMPLE", "THEN",
     "ELSE", "WHEN", "CASE", "GLOBAL", "ANY", "INNER", "LEFT", "RIGHT", "FULL", "CROSS", "OUTER", "SEMI", "ANTI",
     "ASOF", "PASTE", "BETWEEN", "LIKE", "ILIKE", "IS", "RECURSIVE", "FILL", "STEP", "TO", "INTERPOLATE"}
)  # fmt: skip


def _ends_operand(t: Token) -> bool:
    if t.kind == "word":
        return t.value.upper() not in _STRUCTURAL | {"AND", "OR", "NOT", "XOR"}
    return t.kind in ("qident", "string", "number") or t.text in (")", "]")


def _keyword(tokens: list[Token], k: int) -> str | None:
    """The upper-cased word at ``k`` if it stands as a keyword (not a call, not part of a.b)."""
    t = tokens[k]
    if t.kind != "word":
        return None
    if k > 0 and tokens[k - 1].text == ".":
        return None
    nxt = tokens[k + 1].text if k + 1 < len(tokens) else ""
    if nxt == ".":
        return None
    word = t.value.upper()
    if nxt != "(" or word in _STRUCTURAL:
        return word
    if word == "IN":
        # `x IN (…)` / `x NOT IN (…)` is the operator; `in(x, t)` at the start of an operand is the function.
        j = k - 1
        while j >= 0 and tokens[j].kind == "word" and tokens[j].value.upper() in ("NOT", "GLOBAL"):
            j -= 1
        if j >= 0 and _ends_operand(tokens[j]) and tokens[j].value.upper() not in ("NOT", "GLOBAL"):
            return word
    return None


def check_query(text: str, database: str, allowed_tables: Iterable[str]) -> CheckedQuery:
    """Check ``text`` (``{db}`` names ``database``); raise :class:`QueryRefused` or return what to run."""
    allowed = frozenset(allowed_tables)
    if len(text) > MAX_QUERY_CHARS:
        raise QueryRefused("sql.too_long", f"{len(text)} characters (at most {MAX_QUERY_CHARS})")
    text = text.replace("{db}", f"`{database}`")
    tokens, cleaned = tokenize(text)
    while tokens and tokens[-1].text == ";":
        cleaned = cleaned[: tokens[-1].start] + " " * (tokens[-1].end - tokens[-1].start) + cleaned[tokens[-1].end :]
        tokens.pop()
    if not tokens:
        raise QueryRefused("sql.empty", "no statement")
    if any(t.text == ";" for t in tokens):
        raise QueryRefused("sql.one_statement", "';' inside the query: send one statement")
    first = next((t for t in tokens if t.text != "("), None)
    if first is None or first.kind != "word" or first.value.upper() not in ("SELECT", "WITH"):
        shown = first.text if first is not None else "("
        raise QueryRefused("sql.select_only", f"the query starts with {shown!r}")
    ctes = {tokens[k].value for k in range(len(tokens) - 2)
            if _is_name(tokens[k]) and tokens[k + 1].kind == "word" and tokens[k + 1].value.upper() == "AS"
            and tokens[k + 2].text == "("}  # fmt: skip
    read: list[str] = []

    # Per parenthesis depth: the current clause, whether the paren is a call's, whether a
    # SELECT appeared directly inside it.
    clause: list[str] = [""]
    is_call: list[bool] = [False]
    has_select: list[bool] = [False]
    expect_table = False
    k = 0
    while k < len(tokens):
        t = tokens[k]
        kw = _keyword(tokens, k)
        if expect_table:
            expect_table = False
            k = _check_table(tokens, k, database, allowed, ctes, read)
            continue
        if t.text == "(":
            call = k > 0 and _is_name(tokens[k - 1]) and _keyword(tokens, k - 1) is None
            clause.append("")
            is_call.append(call)
            has_select.append(False)
        elif t.text == ")":
            if len(clause) == 1:
                raise QueryRefused("sql.syntax", f"unbalanced ')' at character {t.start}")
            clause.pop()
            is_call.pop()
            has_select.pop()
        elif t.text == ",":
            if clause[-1] in _TABLE_LIST_CLAUSES:
                expect_table = True
        elif _is_name(t) and k + 1 < len(tokens) and tokens[k + 1].text == "(" and kw is None:
            _check_function(t)
        elif kw in DENIED_KEYWORDS:
            raise QueryRefused("sql.keyword", f"{t.value} is not allowed")
        elif kw is not None and kw in _CLAUSES:
            if kw in ("SELECT", "WITH"):
                has_select[-1] = True
            if kw == "JOIN" and k > 0 and _keyword(tokens, k - 1) == "ARRAY":
                clause[-1] = "ARRAY JOIN"
            elif kw in ("FROM", "JOIN") and is_call[-1] and not has_select[-1]:
                clause[-1] = "ARGUMENT"  # extract(DAY FROM t), trim(BOTH ' ' FROM s)
            else:
                clause[-1] = kw
                expect_table = kw in ("FROM", "JOIN")
        elif kw == "IN":
            j = k + 1
            while j < len(tokens) and _keyword(tokens, j) in ("GLOBAL", "NOT"):
                j += 1
            if j < len(tokens) and _is_name(tokens[j]) and not (j + 1 < len(tokens) and tokens[j + 1].text == "("):
                k = _check_table(tokens, j, database, allowed, ctes, read)
                continue
        k += 1
    if expect_table:
        raise QueryRefused("sql.syntax", "a table is missing at the end of the query")
    if len(clause) != 1:
        raise QueryRefused("sql.syntax", "unbalanced '('")
    return CheckedQuery(cleaned.strip(), tuple(read))


def _check_function(t: Token) -> None:
    name = t.value.lower()
    if name in DENIED_FUNCTIONS or _IN_FUNCTION.match(name) or (
        name.startswith(DENIED_PREFIXES) and name not in ALLOWED_DESPITE_PREFIX
    ):
        raise QueryRefused("sql.function", f"{t.value}() is not allowed")


def _check_table(tokens: list[Token], k: int, database: str, allowed: frozenset[str], ctes: set[str],
                 read: list[str]) -> int:  # fmt: skip
    """Check the table expression starting at ``k``; return the index after its name."""
    t = tokens[k]
    if t.text == "(":
        return k  # a subquery: its own FROM is checked as the loop reaches it
    if not _is_name(t):
        raise QueryRefused("sql.syntax", f"a table was expected at character {t.start}, found {t.text!r}")
    parts = [t]
    j = k + 1
    while j + 1 < len(tokens) and tokens[j].text == "." and _is_name(tokens[j + 1]):
        parts.append(tokens[j + 1])
        j += 2
    if j < len(tokens) and tokens[j].text == "(":
        name = ".".join(p.value for p in parts)
        if len(parts) != 1 or name.lower() not in ALLOWED_TABLE_FUNCTIONS:
            rule = "sql.function" if name.lower() in DENIED_FUNCTIONS else "sql.table_function"
            raise QueryRefused(rule, f"table function {name}() is not allowed")
        return j  # the loop checks its arguments (a denied call inside is still refused)
    names = [p.value for p in parts]
    if len(names) == 1 and names[0] in ctes:
        return j
    if len(names) == 1 and names[0] in allowed:
        read.append(names[0])
        return j
    if len(names) == 2 and names[0] == database and names[1] in allowed:
        read.append(names[1])
        return j
    raise QueryRefused(
        "sql.table", f"{'.'.join(names)} may not be read (allowed: {', '.join(sorted(allowed))} in {database})"
    )
