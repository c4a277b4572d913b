"""The statement generator: a small typed SQL grammar over the demo mesh.

A generated statement is a template whose table references are left open, so the same query can
be rendered with the product names (what a principal sends) or with each product replaced by
the principal's view of it written out as a derived table (what admin must answer the same).

Two modes:
- `deterministic=True` (answers are compared across principals): only constructs whose answer
  is a function of the input rows as a multiset (no LIMIT without a total ORDER BY, no
  row_number/lag/lead, aggregates that ignore input order), and no expressions that fail on
  some rows only.
- otherwise anything goes: failing casts, order-dependent functions, odd types, deep nesting.
"""

from __future__ import annotations

import datetime as dt
import decimal
import random
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

from .mesh import JOIN_KEYS, Product

CATS = ("num", "str", "date", "ts", "bool")


@dataclass(frozen=True)
class TableRef:
    product: Product
    version: Optional[str] = None  # " VERSION AS OF 1", " TIMESTAMP AS OF '...'"

    def plain(self) -> str:
        return f"{self.product.qualified}{self.version or ''}"


@dataclass
class Statement:
    template: str
    tables: List[TableRef] = field(default_factory=list)
    params: List[object] = field(default_factory=list)
    kind: str = "query"

    def render(self, table: Callable[[TableRef], str] = TableRef.plain) -> str:
        sql = self.template
        for i, t in enumerate(self.tables):
            sql = sql.replace(f"\x00T{i}\x00", table(t))
        return sql

    @property
    def sql(self) -> str:
        return self.render()

    @property
    def products(self) -> List[Product]:
        """The products the statement reads (a table reference a generator dropped, e.g. a
        subquery replaced by a literal, is not read)."""
        return [t.product for i, t in enumerate(self.tables) if f"\x00T{i}\x00" in self.template]


def sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, decimal.Decimal):
        return f"{value}"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.replace(tzinfo=None).isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


STRINGS = ["EU", "NA", "APAC", "gold", "x", "", "O'Brien", "ü", "%", "_", "a%", "%e%", "NULL"]
NUMBERS = [0, 1, 2, 3, 7, 10, 100, 1000, -1, 12.5, 99.99, 2147483647]

# Functions by result category: (name, argument categories).
FUNCS = {
    "num": [
        ("abs", ["num"]),
        ("round", ["num"]),
        ("ceil", ["num"]),
        ("floor", ["num"]),
        ("character_length", ["str"]),
        ("octet_length", ["str"]),
        ("ascii", ["str"]),
        ("strpos", ["str", "str"]),
        ("greatest", ["num", "num"]),
        ("least", ["num", "num"]),
        ("signum", ["num"]),
    ],
    "str": [
        ("upper", ["str"]),
        ("lower", ["str"]),
        ("trim", ["str"]),
        ("reverse", ["str"]),
        ("initcap", ["str"]),
        ("md5", ["str"]),
        ("concat", ["str", "str"]),
        ("concat_ws", ["str", "str", "str"]),
        ("replace", ["str", "str", "str"]),
        ("lpad", ["str", "num_small", "str"]),
        ("left", ["str", "num_small"]),
        ("substr", ["str", "num_small", "num_small"]),
        ("split_part", ["str", "str", "num_small"]),
        ("to_hex", ["num_int"]),
    ],
    "date": [("make_date", ["num_year", "num_month", "num_month"])],
    "ts": [],
    "bool": [("starts_with", ["str", "str"]), ("ends_with", ["str", "str"])],
}

# Functions only in chaos mode (may fail on some rows, or depend on row order).
CHAOS_FUNCS = [
    "sqrt", "ln", "log10", "exp", "power", "atan2", "nanvl", "to_timestamp", "to_date",
    "date_bin", "regexp_replace", "regexp_match", "regexp_like", "array_length", "make_array",
    "arrow_typeof", "arrow_cast", "struct", "named_struct", "get_field", "nullif", "nvl2",
    "iszero", "factorial", "gcd", "lcm", "uuid", "random", "now", "current_date", "digest",
    "encode", "decode", "chr", "repeat", "translate", "overlay", "levenshtein", "substr_index",
    "find_in_set", "string_to_array", "array_agg", "unnest", "range", "generate_series",
    "date_part", "date_trunc", "from_unixtime", "to_char", "btrim", "version", "coalesce",
]

CAST_TYPES = [
    "TINYINT", "SMALLINT", "INT", "BIGINT", "TINYINT UNSIGNED", "DOUBLE", "REAL", "FLOAT",
    "DECIMAL(5,2)", "DECIMAL(38,10)", "DECIMAL(12,2)", "VARCHAR", "CHAR", "TEXT", "BOOLEAN",
    "DATE", "TIMESTAMP", "TIME", "INTERVAL", "BYTEA", "BINARY",
]
ARROW_TYPES = [
    "Utf8View", "LargeUtf8", "Int8", "UInt64", "Float16", "Decimal256(76, 10)",
    "Dictionary(Int32, Utf8)", "Timestamp(Second, None)", "Timestamp(Nanosecond, Some(\"+05:00\"))",
    "Duration(Millisecond)", "Binary", "BinaryView", "List(Int64)", "Null",
]


class Scope:
    """Columns in scope: (qualifier, column)."""

    def __init__(self, items: Sequence[Tuple[str, object]]):
        self.items = list(items)

    def cols(self, cat: str) -> List[str]:
        return [f"{q}.{c.name}" for q, c in self.items if c.cat == cat]


class Generator:
    def __init__(
        self,
        rng: random.Random,
        products: Sequence[Product],
        *,
        deterministic: bool = True,
        max_depth: int = 3,
        params: bool = True,
    ):
        self.rng = rng
        self.products = list(products)
        self.deterministic = deterministic
        self.max_depth = max_depth
        self.allow_params = params
        self.stmt = Statement("")
        self.aliases = 0

    # -- helpers -------------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, seq):
        return self.rng.choice(list(seq))

    def table(self, product: Product, version: bool = True) -> str:
        v = None
        if version and product.delta and product.versions and self.chance(0.25):
            v = f" VERSION AS OF {self.pick(product.versions)}"
        self.stmt.tables.append(TableRef(product, v))
        return f"\x00T{len(self.stmt.tables) - 1}\x00"

    def alias(self) -> str:
        self.aliases += 1
        return f"t{self.aliases}"

    def param(self, value: object) -> str:
        self.stmt.params.append(value)
        return f"${len(self.stmt.params)}"

    # -- literals ------------------------------------------------------------------------

    def literal(self, cat: str, scope: Optional[Scope] = None) -> str:
        sample = self.sample(cat)
        if sample is not None and self.chance(0.6):
            return sql_literal(sample)
        if cat == "num":
            return sql_literal(self.pick(NUMBERS))
        if cat == "str":
            return sql_literal(self.pick(STRINGS))
        if cat == "date":
            return f"DATE '2025-0{self.rng.randint(1, 9)}-{self.rng.randint(10, 28)}'"
        if cat == "ts":
            return f"TIMESTAMP '2025-0{self.rng.randint(1, 9)}-{self.rng.randint(10, 28)} 12:00:00'"
        return self.pick(["TRUE", "FALSE"])

    def sample(self, cat: str):
        cands = [
            (p, c) for p in self.products for c in p.columns if c.cat == cat and p.samples.get(c.name)
        ]
        if not cands:
            return None
        p, c = self.pick(cands)
        return self.pick(p.samples[c.name])

    # -- expressions ---------------------------------------------------------------------

    def expr(self, cat: str, scope: Scope, depth: int = 0) -> str:
        cols = scope.cols(cat)
        if depth >= self.max_depth or self.chance(0.35 + 0.15 * depth):
            if cols and self.chance(0.75):
                return self.pick(cols)
            return self.literal(cat)
        d = depth + 1
        return getattr(self, f"expr_{cat}")(scope, d)

    def expr_num(self, s: Scope, d: int) -> str:
        r = self.rng.random()
        if r < 0.3:
            op = self.pick(["+", "-", "*"])
            return f"({self.expr('num', s, d)} {op} {self.expr('num', s, d)})"
        if r < 0.4:
            # Division and modulo by a non-zero literal only (deterministic mode).
            if self.deterministic:
                return f"({self.expr('num', s, d)} {self.pick(['/', '%'])} {self.pick([2, 3, 7, 10])})"
            return f"({self.expr('num', s, d)} {self.pick(['/', '%'])} {self.expr('num', s, d)})"
        if r < 0.55:
            name, args = self.pick(FUNCS["num"])
            return f"{name}({', '.join(self.arg(a, s, d) for a in args)})"
        if r < 0.65:
            return self.case("num", s, d)
        if r < 0.72:
            return f"coalesce({self.expr('num', s, d)}, {self.expr('num', s, d)})"
        if r < 0.8:
            part = self.pick(["year", "month", "day", "dow", "quarter"])
            src = self.pick(["date", "ts"])
            return f"date_part('{part}', {self.expr(src, s, d)})"
        if r < 0.9:
            return f"CAST({self.expr('num', s, d)} AS {self.pick(['BIGINT', 'DOUBLE', 'DECIMAL(20,4)'])})"
        return f"(-{self.expr('num', s, d)})"

    def arg(self, cat: str, s: Scope, d: int) -> str:
        if cat == "num_small":
            return str(self.rng.randint(1, 6))
        if cat == "num_int":
            return f"CAST({self.expr('num', s, d)} AS BIGINT)"
        if cat == "num_year":
            return str(self.rng.randint(2020, 2026))
        if cat == "num_month":
            return str(self.rng.randint(1, 12))
        return self.expr(cat, s, d)

    def expr_str(self, s: Scope, d: int) -> str:
        r = self.rng.random()
        if r < 0.45:
            name, args = self.pick(FUNCS["str"])
            return f"{name}({', '.join(self.arg(a, s, d) for a in args)})"
        if r < 0.55:
            return f"({self.expr('str', s, d)} || {self.expr('str', s, d)})"
        if r < 0.7:
            src = self.pick(["num", "date", "ts", "bool"])
            return f"CAST({self.expr(src, s, d)} AS VARCHAR)"
        if r < 0.85:
            return self.case("str", s, d)
        return f"coalesce({self.expr('str', s, d)}, {self.literal('str')})"

    def expr_date(self, s: Scope, d: int) -> str:
        r = self.rng.random()
        if r < 0.4:
            return f"CAST({self.expr('ts', s, d)} AS DATE)"
        if r < 0.6:
            name, args = self.pick(FUNCS["date"])
            return f"{name}({', '.join(self.arg(a, s, d) for a in args)})"
        if r < 0.8:
            return f"({self.expr('date', s, d)} + INTERVAL '{self.rng.randint(1, 40)} days')"
        return self.case("date", s, d)

    def expr_ts(self, s: Scope, d: int) -> str:
        r = self.rng.random()
        if r < 0.4:
            unit = self.pick(["day", "month", "hour", "week", "year"])
            return f"date_trunc('{unit}', {self.expr('ts', s, d)})"
        if r < 0.6:
            return f"({self.expr('ts', s, d)} - INTERVAL '{self.rng.randint(1, 90)} hours')"
        if r < 0.8:
            return f"CAST({self.expr('date', s, d)} AS TIMESTAMP)"
        return self.case("ts", s, d)

    def expr_bool(self, s: Scope, d: int) -> str:
        r = self.rng.random()
        if r < 0.35:
            cat = self.pick(["num", "str", "date", "ts"])
            op = self.pick(["=", "<>", "<", "<=", ">", ">="])
            left = self.expr(cat, s, d)
            if self.allow_params and cat in ("num", "str") and self.chance(0.3):
                return f"{left} {op} {self.param(self.param_value(cat))}"
            return f"{left} {op} {self.expr(cat, s, d)}"
        if r < 0.5:
            op = self.pick(["AND", "OR"])
            return f"({self.expr('bool', s, d)} {op} {self.expr('bool', s, d)})"
        if r < 0.55:
            return f"(NOT {self.expr('bool', s, d)})"
        if r < 0.62:
            cat = self.pick(CATS)
            return f"({self.expr(cat, s, d)} IS {self.pick(['', 'NOT '])}NULL)"
        if r < 0.7:
            cat = self.pick(["num", "str"])
            items = ", ".join(self.literal(cat) for _ in range(self.rng.randint(1, 4)))
            return f"({self.expr(cat, s, d)} {self.pick(['', 'NOT '])}IN ({items}))"
        if r < 0.76:
            cat = self.pick(["num", "date", "ts"])
            lo, hi = sorted([self.literal(cat), self.literal(cat)])
            return f"({self.expr(cat, s, d)} BETWEEN {lo} AND {hi})"
        if r < 0.82:
            pattern = self.pick(["%a%", "E%", "%U", "_%", "%@%", "%o_"])
            return f"({self.expr('str', s, d)} {self.pick(['LIKE', 'NOT LIKE', 'ILIKE'])} '{pattern}')"
        if r < 0.9 and self.products:
            return self.subquery_predicate(s, d)
        if r < 0.95:
            name, args = self.pick(FUNCS["bool"])
            return f"{name}({', '.join(self.arg(a, s, d) for a in args)})"
        return self.case("bool", s, d)

    def param_value(self, cat: str):
        v = self.sample(cat)
        if cat == "num":
            return int(v) if isinstance(v, (int, decimal.Decimal)) and v == int(v) else self.rng.randint(0, 3000)
        return v if isinstance(v, str) else self.pick(STRINGS)

    def case(self, cat: str, s: Scope, d: int) -> str:
        whens = " ".join(
            f"WHEN {self.expr('bool', s, d)} THEN {self.expr(cat, s, d)}"
            for _ in range(self.rng.randint(1, 3))
        )
        other = f" ELSE {self.expr(cat, s, d)}" if self.chance(0.7) else ""
        return f"CASE {whens}{other} END"

    def subquery_predicate(self, s: Scope, d: int) -> str:
        """IN (SELECT ...), EXISTS (correlated), or a comparison with a scalar subquery."""
        p = self.pick(self.products)
        a = self.alias()
        inner = Scope([(a, c) for c in p.columns])
        t = self.table(p)
        r = self.rng.random()
        outer_keys = [(q, c) for q, c in s.items if c.name in JOIN_KEYS and p.column(c.name)]
        if r < 0.4 and outer_keys:
            q, c = self.pick(outer_keys)
            where = f" WHERE {self.expr('bool', inner, d + 1)}" if self.chance(0.5) else ""
            return f"({q}.{c.name} {self.pick(['', 'NOT '])}IN (SELECT {a}.{c.name} FROM {t} {a}{where}))"
        if r < 0.7 and outer_keys:
            q, c = self.pick(outer_keys)
            return (
                f"({self.pick(['', 'NOT '])}EXISTS (SELECT 1 FROM {t} {a} "
                f"WHERE {a}.{c.name} = {q}.{c.name} AND {self.expr('bool', inner, d + 1)}))"
            )
        cat = self.pick(["num", "str", "date", "ts"])
        cols = inner.cols(cat)
        if not cols:
            return self.pick(["TRUE", "FALSE"])
        agg = self.pick(["min", "max"] + (["count", "sum"] if cat == "num" else []))
        return f"({self.expr(cat, s, d)} {self.pick(['<', '>=', '='])} (SELECT {agg}({self.pick(cols)}) FROM {t} {a}))"

    # -- FROM ----------------------------------------------------------------------------

    def from_clause(self, max_tables: int = 3) -> Tuple[str, Scope]:
        first = self.pick(self.products)
        a = self.alias()
        sql = f"{self.table(first)} {a}"
        items = [(a, c) for c in first.columns]
        used = [(a, first)]
        for _ in range(self.rng.randint(0, max_tables - 1)):
            # Join a product sharing a key column with one already in the FROM clause.
            options = [
                (qa, qp, p, k)
                for qa, qp in used
                for p in self.products
                for k in JOIN_KEYS
                if qp.column(k) and p.column(k) and qp.column(k).cat == p.column(k).cat
                and (p.qualified != qp.qualified or self.chance(0.2))
            ]
            if not options:
                break
            qa, qp, p, k = self.pick(options)
            b = self.alias()
            join = self.pick(["JOIN", "JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"])
            cond = f"{qa}.{k} = {b}.{k}"
            if self.chance(0.2):
                cond += f" AND {self.expr('bool', Scope(items + [(b, c) for c in p.columns]), 2)}"
            sql += f" {join} {self.table(p)} {b} ON {cond}"
            items += [(b, c) for c in p.columns]
            used.append((b, p))
        return sql, Scope(items)

    # -- queries -------------------------------------------------------------------------

    def select_items(self, scope: Scope, n: int, cats: Optional[List[str]] = None) -> List[Tuple[str, str]]:
        out = []
        for i in range(n):
            cat = cats[i] if cats else self.pick(["num", "str", "str", "date", "ts", "bool"])
            out.append((cat, self.expr(cat, scope, 1 if self.chance(0.5) else 0)))
        return out

    def where(self, scope: Scope) -> str:
        return f" WHERE {self.expr('bool', scope)}" if self.chance(0.7) else ""

    def plain_select(self, cats: Optional[List[str]] = None) -> Tuple[str, List[str]]:
        frm, scope = self.from_clause()
        items = self.select_items(scope, len(cats) if cats else self.rng.randint(1, 4), cats)
        distinct = "DISTINCT " if self.chance(0.15) else ""
        cols = ", ".join(f"{e} AS c{i}" for i, (_, e) in enumerate(items))
        return f"SELECT {distinct}{cols} FROM {frm}{self.where(scope)}", [c for c, _ in items]

    def aggregate(self, scope: Scope) -> str:
        cat = self.pick(["num", "num", "str", "date", "ts", "bool", "any"])
        if cat == "any":
            return "count(*)"
        e = self.expr(cat, scope, 1)
        if cat == "num":
            f = self.pick(["sum", "avg", "min", "max", "count", "median", "stddev", "var_pop"])
            if self.chance(0.15):
                return f"count(DISTINCT {e})"
            return f"{f}({e})"
        if cat == "bool":
            return f"{self.pick(['bool_and', 'bool_or', 'count'])}({e})"
        if cat == "str" and self.chance(0.3):
            return f"string_agg({e}, ',' ORDER BY {e})"
        return f"{self.pick(['min', 'max', 'count', 'approx_distinct'])}({e})"

    def grouped(self) -> str:
        frm, scope = self.from_clause()
        keys = [self.expr(self.pick(["str", "num", "date", "bool"]), scope, 1) for _ in range(self.rng.randint(0, 2))]
        aggs = [self.aggregate(scope) for _ in range(self.rng.randint(1, 3))]
        items = [f"{k} AS k{i}" for i, k in enumerate(keys)] + [f"{a} AS a{i}" for i, a in enumerate(aggs)]
        sql = f"SELECT {', '.join(items)} FROM {frm}{self.where(scope)}"
        if keys:
            sql += " GROUP BY " + ", ".join(keys)
            if self.chance(0.3):
                sql += f" HAVING {self.aggregate(scope)} {self.pick(['>', '>=', '<>'])} {self.rng.randint(0, 5)}"
        return sql

    def windowed(self) -> str:
        frm, scope = self.from_clause(max_tables=2)
        items = [f"{e} AS c{i}" for i, (_, e) in enumerate(self.select_items(scope, self.rng.randint(1, 3)))]
        for i in range(self.rng.randint(1, 2)):
            part = self.expr(self.pick(["str", "num", "date"]), scope, 1)
            order = self.expr(self.pick(["num", "str", "ts"]), scope, 1)
            fns = [
                f"sum({self.expr('num', scope, 1)})",
                "count(*)",
                f"min({self.expr('str', scope, 1)})",
                f"max({self.expr('num', scope, 1)})",
                f"avg({self.expr('num', scope, 1)})",
                "rank()",
                "dense_rank()",
                "percent_rank()",
                "cume_dist()",
            ]
            if not self.deterministic:
                fns += [
                    "row_number()",
                    f"lag({self.expr('num', scope, 1)}, {self.rng.randint(1, 3)})",
                    f"lead({self.expr('str', scope, 1)})",
                    f"first_value({self.expr('ts', scope, 1)})",
                    f"ntile({self.rng.randint(1, 5)})",
                    f"nth_value({self.expr('num', scope, 1)}, 2)",
                ]
            fn = self.pick(fns)
            over = []
            if self.chance(0.8):
                over.append(f"PARTITION BY {part}")
            if self.chance(0.6) or fn.endswith("()"):
                over.append(f"ORDER BY {order}")
            if not self.deterministic and self.chance(0.3):
                over.append(self.pick(["ROWS BETWEEN 2 PRECEDING AND CURRENT ROW", "ROWS UNBOUNDED PRECEDING", "RANGE BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"]))
            items.append(f"{fn} OVER ({' '.join(over)}) AS w{i}")
        return f"SELECT {', '.join(items)} FROM {frm}{self.where(scope)}"

    def query(self) -> str:
        """One query (no trailing semicolon)."""
        r = self.rng.random()
        if r < 0.3:
            sql, _ = self.plain_select()
            if self.chance(0.3):
                n = len(_)
                order = ", ".join(f"c{i}{self.pick(['', ' DESC', ' NULLS FIRST'])}" for i in range(n))
                sql += f" ORDER BY {order} LIMIT {self.rng.randint(0, 20)}"
            return sql
        if r < 0.55:
            return self.grouped()
        if r < 0.7:
            return self.windowed()
        if r < 0.8:
            inner = self.pick([self.grouped, lambda: self.plain_select()[0]])()
            name = self.pick(["cte", "x", "recent"])
            outer = f"SELECT * FROM {name}"
            if self.chance(0.4):
                outer = f"SELECT count(*) AS n FROM {name}"
            return f"WITH {name} AS ({inner}) {outer}"
        if r < 0.9:
            first, cats = self.plain_select()
            second, _ = self.plain_select(cats)
            op = self.pick(["UNION ALL", "UNION", "INTERSECT", "EXCEPT"])
            return f"{first} {op} {second}"
        # Scalar subqueries in the select list.
        p = self.pick(self.products)
        a = self.alias()
        scope = Scope([(a, c) for c in p.columns])
        t = self.table(p)
        return f"SELECT (SELECT {self.aggregate(scope)} FROM {t} {a}{self.where(scope)}) AS s0, {self.literal('num')} AS s1"

    def statement(self) -> Statement:
        self.stmt = Statement("")
        self.stmt.template = self.query()
        return self.stmt


# -- chaos: statements that only have to fail cleanly (or succeed) -----------------------------


# Deepest nesting generated per kind: by default within what the server handles today;
# "deep" raises the kinds that overflow the stack, "slow" the kinds that take exponential time.
NEST_LIMITS = {
    # kind: (default, with "deep", with "slow")
    "chain": (120, 5000, 120),  # `1+1+...`, AND/OR/`||`/UNION ALL chains: stack overflow at ~250
    "paren": (80, 3000, 80),  # parentheses, function calls, CASE: the parser stops at 50
    "cast": (44, 44, 80),  # nested CAST: sqlparser takes exponential time from 48
    "subquery": (10, 10, 60),  # nested scalar subqueries: planning time doubles per level
}


def nest_limit(kind: str, flags) -> int:
    default, deep, slow = NEST_LIMITS[kind]
    return max(default, deep if "deep" in flags else 0, slow if "slow" in flags else 0)


def deep_nesting(rng: random.Random, flags) -> str:
    """Nesting of every kind, up to the limits above."""
    kind = rng.choice(["plus", "and", "or", "concat", "paren", "case", "func", "subquery", "union", "not", "in_list", "cast", "mixed"])

    def depth(limit_kind: str) -> int:
        top = nest_limit(limit_kind, flags)
        return rng.choice([2, 10, min(40, top), top // 2, top])

    chain = depth("chain")
    nest = depth("subquery" if kind == "subquery" else "cast" if kind == "cast" else "paren")
    if kind == "plus":
        return "SELECT " + "+".join(["1"] * chain)
    if kind == "and":
        return "SELECT " + " AND ".join(["TRUE"] * chain)
    if kind == "or":
        return "SELECT " + " OR ".join(["1 = 2"] * chain)
    if kind == "concat":
        return "SELECT " + " || ".join(["'a'"] * chain)
    if kind == "paren":
        return "SELECT " + "(" * nest + "1" + ")" * nest
    if kind == "case":
        return "SELECT " + "CASE WHEN TRUE THEN " * nest + "1" + " ELSE 0 END" * nest
    if kind == "func":
        return "SELECT " + "abs(" * nest + "-1" + ")" * nest
    if kind == "subquery":
        return "SELECT " + "(SELECT " * nest + "1" + ")" * nest
    if kind == "union":
        return " UNION ALL ".join(f"SELECT {i} AS x" for i in range(chain))
    if kind == "not":
        return "SELECT " + "NOT " * chain + "TRUE"
    if kind == "in_list":
        return "SELECT 1 IN (" + ", ".join(str(i) for i in range(chain * 10)) + ")"
    if kind == "cast":
        return "SELECT " + "CAST(" * nest + "1" + " AS BIGINT)" * nest
    parts = ["1"]
    for _ in range(chain):
        parts.append(rng.choice(["+", "*", "-", "%"]) + rng.choice(["1", "(2)", "abs(3)", "CASE WHEN TRUE THEN 4 END"]))
    return "SELECT " + "".join(parts)


WRITES = [
    "CREATE TABLE t AS SELECT 1 AS x",
    "CREATE VIEW v AS SELECT 1 AS x",
    "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/tmp/x.csv'",
    "CREATE SCHEMA s",
    "DROP TABLE sales.orders",
    "INSERT INTO sales.orders (order_id) VALUES (1)",
    "UPDATE sales.orders SET status = 'x'",
    "DELETE FROM sales.orders",
    "SET datafusion.execution.batch_size = 1",
    "RESET datafusion.execution.batch_size",
    "BEGIN",
    "COMMIT",
    "PREPARE p AS SELECT 1",
    "EXECUTE p",
    "DEALLOCATE p",
    "TRUNCATE sales.orders",
    "CREATE FUNCTION f() RETURNS INT RETURN 1",
]

JUNK_TOKENS = [
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "ORDER", "JOIN", "ON", "(", ")", ",", "*", "1",
    "'x'", "NULL", "AS", "sales.orders", "customers.customers", "marketing.leads", "meshql.audit",
    "VERSION", "OF", "UNION", "OVER", "PARTITION", "CAST", "::", "[", "]", "{", "}", ";", "--",
    "/*", "*/", "\"", "'", "$1", "?", "é", "\u00a0", "\U0001F600", "9" * 60, "-", "+", "LIMIT",
    "EXPLAIN", "ANALYZE", "WITH", "RECURSIVE", "LATERAL", "UNNEST", "INTERVAL", "TABLESAMPLE",
]

SYSTEM_TABLES = [
    "meshql.domains", "meshql.products", "meshql.columns", "meshql.audit",
    "information_schema.tables", "information_schema.columns", "information_schema.schemata",
    "information_schema.views", "information_schema.df_settings", "information_schema.routines",
    "information_schema.parameters",
]


def chaos(rng: random.Random, gen: Generator, hidden: Sequence[Product], flags: set) -> Statement:
    """A statement that must fail cleanly or succeed: no crash, no UNKNOWN, no leak."""
    r = rng.random()
    stmt = Statement("", kind="chaos")
    if r < 0.15:
        stmt.template = deep_nesting(rng, flags)
        stmt.kind = "deep"
        return stmt
    if r < 0.3 and gen.products:
        inner = gen.statement()
        form = rng.choice([
            "EXPLAIN", "EXPLAIN VERBOSE", "EXPLAIN ANALYZE", "EXPLAIN ANALYZE VERBOSE",
            "EXPLAIN FORMAT tree", "EXPLAIN FORMAT indent", "EXPLAIN FORMAT pgjson",
            "EXPLAIN FORMAT graphviz",
        ])
        inner.template = f"{form} {inner.template}"
        inner.kind = "explain"
        return inner
    if r < 0.42:
        table = rng.choice(SYSTEM_TABLES)
        stmt.kind = "system"
        shape = rng.random()
        if shape < 0.5:
            stmt.template = f"SELECT * FROM {table}"
        elif shape < 0.7:
            stmt.template = f"SELECT count(*) FROM {table}"
        elif shape < 0.8:
            stmt.template = rng.choice(["SHOW TABLES", "SHOW ALL", "SHOW SCHEMAS" ])
        else:
            products = list(gen.products) + list(hidden)
            if products:
                p = rng.choice(products).qualified
                stmt.template = rng.choice([
                    f"SHOW COLUMNS FROM {p}", f"DESCRIBE {p}",
                    f"SELECT * FROM information_schema.columns WHERE table_schema || '.' || table_name = '{p}'",
                    f"SELECT * FROM meshql.columns WHERE domain || '.' || product = '{p}'",
                ])
            else:
                stmt.template = f"SELECT * FROM {table} WHERE 1 = 0"
        return stmt
    if r < 0.5:
        w = rng.choice(WRITES)
        stmt.template = rng.choice([w, w, f"EXPLAIN {w}"])
        stmt.kind = "write"
        return stmt
    if r < 0.6:
        stmt.kind = "junk"
        tokens = [rng.choice(JUNK_TOKENS) for _ in range(rng.randint(1, 25))]
        stmt.template = " ".join(tokens)
        return stmt
    if r < 0.72:
        stmt.kind = "cast"
        value = rng.choice([
            "'abc'", "'2025-13-45'", "'12.5'", "'1e400'", "'-0'", "''", "NULL", "1e308 * 10",
            "9223372036854775807", "-9223372036854775808", "'2025-06-01T00:00:00Z'", "'1 day'",
            "'true'", "X'DEADBEEF'", "'NaN'", "'infinity'",
        ])
        if rng.random() < 0.3:
            stmt.template = f"SELECT arrow_cast({value}, '{rng.choice(ARROW_TYPES)}')"
        else:
            stmt.template = f"SELECT {rng.choice(['CAST', 'TRY_CAST'])}({value} AS {rng.choice(CAST_TYPES)})"
        if gen.products and rng.random() < 0.5:
            p = rng.choice(gen.products)
            c = rng.choice(p.columns)
            gen.stmt = stmt
            stmt.template = (
                f"SELECT CAST({c.name} AS {rng.choice(CAST_TYPES)}) FROM {gen.table(p)} "
                f"WHERE {c.name} IS NOT NULL"
            )
        return stmt
    if r < 0.82:
        stmt.kind = "function"
        fn = rng.choice(CHAOS_FUNCS)
        args = [rng.choice(["1", "'x'", "NULL", "-1", "0", "'2025-01-01'", "1.5", "[1,2]", "TRUE", "INTERVAL '1 day'"]) for _ in range(rng.randint(0, 3))]
        stmt.template = f"SELECT {fn}({', '.join(args)})"
        return stmt
    if r < 0.9:
        stmt.kind = "time_travel"
        deltas = [p for p in list(gen.products) + list(hidden) if p.delta]
        target = rng.choice(deltas or list(gen.products) + list(hidden)) if (deltas or gen.products or hidden) else None
        if target is None:
            stmt.template = "SELECT 1"
            return stmt
        clause = rng.choice([
            f"VERSION AS OF {rng.choice([0, 1, 2, 99, 18446744073709551615])}",
            "VERSION AS OF -1", "VERSION AS OF 'x'", "VERSION AS OF 1.5",
            "TIMESTAMP AS OF '2000-01-01T00:00:00Z'", "TIMESTAMP AS OF '2999-01-01T00:00:00Z'",
            "TIMESTAMP AS OF 'not a time'", "TIMESTAMP AS OF ''", "FOR SYSTEM_TIME AS OF '2025-01-01'",
        ])
        if rng.random() < 0.3:
            stmt.template = f'SELECT count(*) FROM {target.domain}."{target.name}@v{rng.choice([0, 1, 7])}"'
        else:
            stmt.template = f"SELECT count(*) FROM {target.qualified} {clause}"
        return stmt
    if r < 0.95:
        stmt.kind = "raw_path"
        stmt.template = rng.choice([
            "SELECT * FROM '/etc/passwd'", "SELECT * FROM 'file:///etc/hostname'",
            "SELECT * FROM read_parquet('/tmp/x.parquet')", "SELECT * FROM \"/etc/passwd\"",
            "SELECT * FROM 's3://bucket/key.parquet'", "SELECT * FROM mesh.sales.\"../customers/customers\"",
            "SELECT * FROM sales.\"orders/_delta_log\"", "SELECT * FROM datafusion.public.x",
        ])
        return stmt
    stmt.kind = "table_function"
    n = rng.choice([0, 1, 10, 1000, 100000])
    stmt.template = rng.choice([
        f"SELECT count(*) FROM generate_series(1, {n})", f"SELECT max(value) FROM range({n})",
        f"SELECT * FROM generate_series({n}, 1, -{max(1, n // 10)}) LIMIT 5",
        "SELECT * FROM generate_series(1, 10, 0)", "SELECT * FROM unnest([1, 2, NULL])",
    ])
    return stmt
