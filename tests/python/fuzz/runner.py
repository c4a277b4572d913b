"""Runs generated statements against a server as every demo principal and checks invariants.

Checks, per statement:
- **clean failure**: an error is a Flight status other than UNKNOWN and INTERNAL, carries no
  panic text, and is not a dropped connection (after any transport error, and every `batch`
  statements, the server process must be alive and answer `SELECT 1`);
- **same answer**: a principal's answer (as a multiset of rows) equals admin's answer to the
  same statement with every product replaced by the principal's view of it written out (row
  filter and masks, see mesh.py); for unrestricted products that is admin's plain answer;
- **hidden = missing**: a statement over a product the principal may not see fails exactly like
  the same statement over a product that does not exist (same code, same text up to the name);
- **no leaks**: nothing a non-admin principal receives (errors, EXPLAIN output, system tables)
  names a hidden product or domain (unless the statement itself does), quotes a policy (its name,
  predicate or mask), or holds a value that only hidden rows hold.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa

from . import grammar, mesh
from .grammar import Generator, Statement
from .mesh import PRINCIPALS, Product

# INTERNAL is a clean status (a bug reported as such, e.g. a DataFusion internal error); the
# report lists every distinct INTERNAL message so that they are looked at.
ALLOWED_CODES = {
    "INTERNAL",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "UNAVAILABLE",
    "RESOURCE_EXHAUSTED",
    "UNIMPLEMENTED",
    "FAILED_PRECONDITION",
    "OUT_OF_RANGE",
    "UNAUTHENTICATED",
}
PANIC_MARKERS = ("panicked at", "RUST_BACKTRACE", "overflowed its stack", "stack backtrace")
TRANSPORT_MARKERS = (
    "connection refused",
    "error reading from server",
    "transport is closing",
    "connection reset",
    "Socket closed",
    "EOF",
    "broken pipe",
    "connection error",
    "Stream removed",
)
POLICY_MARKERS = (
    "orders_own_region",
    "customers_own_region",
    "mask_pii",
    "regional_analysts",
    "pii_reader",
    "principal.region",
)

# Inputs and checks that fail today on bugs being fixed elsewhere (issue 9), enabled by
# MESHQL_FUZZ_PENDING=deep,slow,paths (see grammar.NEST_LIMITS):
# - deep:  operator chains and nesting that overflow the server's stack (point 2)
# - slow:  nesting that takes exponential planning time and stops the server answering (point 2)
# - paths: absolute bucket paths shown to non-admins (point 6)
PENDING = ("deep", "slow", "paths")


# Most rows the harness reads from one answer; larger answers are dropped unread.
MAX_ROWS = 200_000


@dataclass
class Outcome:
    ok: bool
    rows: Optional[List[tuple]] = None
    columns: Optional[List[str]] = None
    code: Optional[str] = None
    message: Optional[str] = None
    seconds: float = 0.0


@dataclass
class Violation:
    index: int
    principal: str
    kind: str
    problem: str
    sql: str
    params: list
    detail: str

    def describe(self, seed: str) -> str:
        return (
            f"[seed {seed} statement {self.index}] {self.problem} as {self.principal} "
            f"({self.kind})\n  SQL: {self.sql}\n  params: {self.params}\n  {self.detail}"
        )


@dataclass
class Report:
    seed: str
    statements: int = 0
    queries: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)  # (kind, code or "OK")
    principals: Counter = field(default_factory=Counter)
    compared: int = 0
    hidden_checks: int = 0
    alive_checks: int = 0
    violations: List[Violation] = field(default_factory=list)
    internal: Dict[str, str] = field(default_factory=dict)  # first line of message -> SQL

    def summary(self) -> str:
        lines = [
            f"seed {self.seed}: {self.statements} statements ({self.queries} queries) in "
            f"{self.seconds:.0f}s; {self.compared} answers compared with admin's rewrite, "
            f"{self.hidden_checks} hidden-vs-missing checks, {self.alive_checks} liveness checks, "
            f"{len(self.violations)} violations",
            "by principal: " + ", ".join(f"{p}={n}" for p, n in sorted(self.principals.items())),
        ]
        kinds: Dict[str, Counter] = {}
        for (kind, code), n in self.outcomes.items():
            kinds.setdefault(kind, Counter())[code] += n
        for kind, codes in sorted(kinds.items()):
            lines.append(f"  {kind}: " + ", ".join(f"{c}={n}" for c, n in codes.most_common()))
        for message, sql in self.internal.items():
            lines.append(f"  INTERNAL: {message}\n    {sql}")
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {
            "seed": self.seed,
            "statements": self.statements,
            "queries": self.queries,
            "seconds": round(self.seconds, 1),
            "compared": self.compared,
            "hidden_checks": self.hidden_checks,
            "alive_checks": self.alive_checks,
            "principals": dict(self.principals),
            "outcomes": {f"{k}/{c}": n for (k, c), n in sorted(self.outcomes.items())},
            "violations": [v.__dict__ for v in self.violations],
            "internal": self.internal,
        }


class Client:
    """An ADBC Flight SQL connection as one principal, reopened after transport errors."""

    def __init__(self, uri: str, user: str, timeout_s: int):
        self.uri, self.user, self.timeout_s = uri, user, timeout_s
        self.conn = None

    def connect(self):
        if self.conn is None:
            t = adbc_driver_flightsql.DatabaseOptions
            self.conn = flight_sql.connect(
                self.uri,
                db_kwargs={
                    "username": self.user,
                    "password": self.user,
                    t.TIMEOUT_FETCH.value: str(self.timeout_s),
                    t.TIMEOUT_QUERY.value: str(self.timeout_s),
                    t.TIMEOUT_UPDATE.value: str(self.timeout_s),
                },
                autocommit=True,
            )
        return self.conn

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def run(self, sql: str, params: Sequence[object] = ()) -> Outcome:
        start = time.monotonic()
        try:
            with self.connect().cursor() as cur:
                cur.execute(sql, list(params) if params else None)
                # Read at most MAX_ROWS: a generated cross join can have billions of rows, and
                # holding them in Python took the harness to 17 GB in a one-hour run.
                reader = cur.fetch_record_batch()
                batches, count = [], 0
                for batch in reader:
                    batches.append(batch)
                    count += batch.num_rows
                    if count > MAX_ROWS:
                        break
                if count > MAX_ROWS:
                    reader.close()
                    self.close()
                    return Outcome(
                        False,
                        code="CLIENT_TOO_LARGE",
                        message=f"more than {MAX_ROWS} rows: not compared",
                        seconds=time.monotonic() - start,
                    )
                table = pa.Table.from_batches(batches, schema=reader.schema)
            return Outcome(
                True,
                rows=[tuple(r.values()) for r in table.to_pylist()],
                columns=table.schema.names,
                seconds=time.monotonic() - start,
            )
        except Exception as e:  # every ADBC error: classified by the caller
            message = str(e)
            # No gRPC code: the client refused the call itself (e.g. ADBC's own checks).
            code = grpc_code(message) or "CLIENT_" + type(e).__name__
            if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED") or code.startswith("CLIENT_"):
                self.close()
            return Outcome(False, code=code, message=message, seconds=time.monotonic() - start)


def grpc_code(message: str) -> Optional[str]:
    """The gRPC status code of an ADBC Flight SQL error: its message ends with
    `(<CamelCaseCode>; <Method>)` (the leading word is ADBC's own status, not the gRPC code)."""
    m = re.search(r"\((\w+); [^;()]*\)(\. Vendor code: \d+)?\s*$", message)
    if not m:
        return None
    return re.sub(r"(?<!^)(?=[A-Z])", "_", m.group(1)).upper()


def normalize(value):
    if isinstance(value, float):
        if math.isnan(value):
            return ("float", "nan")
        return ("float", float(f"{value:.6g}"))
    if isinstance(value, decimal.Decimal):
        return ("num", value.normalize())
    if isinstance(value, (dict, list)):
        return repr(value)
    return value


def sort_key(row):
    """Sorts rows so that equal rows pair up across two answers: floats by value (rows whose
    floats differ only by summation-order noise stay next to each other), the rest by repr."""

    def key(v):
        if isinstance(v, float):
            return (False, "float", (math.isnan(v), 0.0 if math.isnan(v) else v))
        return (v is None, type(v).__name__, (False, repr(normalize(v))))

    return tuple(key(v) for v in row)


def same_rows(a: List[tuple], b: List[tuple]) -> Optional[str]:
    """None if `a` and `b` hold the same rows (any order; floats to ~1e-9 relative)."""
    if len(a) != len(b):
        return f"{len(a)} rows vs {len(b)} rows"
    for x, y in zip(sorted(a, key=sort_key), sorted(b, key=sort_key)):
        for u, v in zip(x, y):
            if isinstance(u, float) and isinstance(v, float):
                if (math.isnan(u) and math.isnan(v)) or math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9):
                    continue
            elif u == v:
                continue
            return f"row {x!r} vs {y!r}"
    return None


def text_of(outcome: Outcome) -> str:
    if not outcome.ok:
        return outcome.message or ""
    return "\n".join(" | ".join(str(v) for v in row) for row in outcome.rows or [])


RUNTIME_FILTER = re.compile(r"(filter=\[|DynamicFilter \[)[^\]]*\]")
ABS_PATH = re.compile(r"(file://|s3://|gs://|az://|abfss?://|(?<![\w.])/(tmp|home|root|var|work|Users)/)")


class Fuzzer:
    def __init__(
        self,
        uri: str,
        seed: str,
        *,
        is_alive: Callable[[], bool] = lambda: True,
        pending: Sequence[str] = (),
        timeout_s: int = 60,
        batch: int = 25,
        log: Callable[[str], None] = lambda s: None,
        verbose: bool = False,
    ):
        self.verbose = verbose
        self.uri = uri
        self.seed = str(seed)
        self.is_alive = is_alive
        self.pending = set(pending)
        self.batch = batch
        self.log = log
        self.clients = {p: Client(uri, p, timeout_s) for p in PRINCIPALS}
        admin = self.clients["admin"]

        def admin_query(sql: str):
            out = admin.run(sql)
            if not out.ok:
                raise RuntimeError(f"admin could not run {sql!r}: {out.message}")
            return out.rows

        self.products: List[Product] = mesh.load_products(admin_query)
        self.by_name = {p.qualified: p for p in self.products}
        missing = set(mesh.ALL_PRODUCTS) - set(self.by_name)
        if missing:
            raise RuntimeError(f"the demo mesh lacks {sorted(missing)}")
        self.hidden_values = {p: mesh.hidden_strings(admin_query, p, self.products) for p in PRINCIPALS}
        self.report = Report(self.seed)
        self.last_query = ("", "", "")

    # -- running -------------------------------------------------------------------------

    def close(self):
        for c in self.clients.values():
            c.close()

    def visible(self, principal: str) -> List[Product]:
        return [p for p in self.products if p.qualified in mesh.VISIBLE[principal]]

    def hidden(self, principal: str) -> List[Product]:
        return [p for p in self.products if p.qualified not in mesh.VISIBLE[principal]]

    def generator(self, rng: random.Random, products, deterministic: bool) -> Generator:
        return Generator(rng, products, deterministic=deterministic)

    def run(self, count: int, seconds: float, start: int = 0) -> Report:
        began = time.monotonic()
        i = start
        while i < start + count and time.monotonic() - began < seconds:
            self.one(i)
            if not self.is_alive():
                principal, kind, sql = self.last_query
                self.violation(i, principal, kind, "the server process died", sql, [], "")
                raise ServerDown(f"the server process died (statement {i})")
            i += 1
            if (i - start) % self.batch == 0:
                self.check_alive(i - 1, "after a batch")
        self.check_alive(i - 1, "at the end")
        self.report.seconds += time.monotonic() - began
        return self.report

    def query(self, principal: str, sql: str, params=(), kind: str = "query") -> Outcome:
        self.last_query = (principal, kind, sql)
        out = self.clients[principal].run(sql, params)
        self.report.queries += 1
        self.report.outcomes[(kind, "OK" if out.ok else out.code)] += 1
        if not out.ok and out.code == "INTERNAL" and len(self.report.internal) < 50:
            self.report.internal.setdefault((out.message or "")[:300], sql[:1000])
        if self.verbose:
            self.log(f"{principal} {kind} {'OK' if out.ok else out.message}\n    {sql}")
        return out

    def violation(self, index, principal, stmt_kind, problem, sql, params, detail):
        v = Violation(index, principal, stmt_kind, problem, sql, list(params), detail[:2000])
        self.report.violations.append(v)
        self.log(v.describe(self.seed))

    def check_alive(self, index: int, when: str) -> bool:
        self.report.alive_checks += 1
        alive = self.is_alive()
        answer = None
        if alive:
            probe = Client(self.uri, "guest", 60)
            try:
                answer = probe.run("SELECT 1")
            finally:
                probe.close()
        if not alive or not answer.ok or answer.rows != [(1,)]:
            self.violation(
                index, "guest", "liveness", "server down", "SELECT 1", [],
                f"{when}: process alive={alive}, answer={answer}",
            )
            raise ServerDown(f"the server stopped answering ({when}, statement {index})")
        return True

    # -- one statement -------------------------------------------------------------------

    def one(self, index: int) -> None:
        rng = random.Random(f"{self.seed}:{index}")
        principal = PRINCIPALS[index % len(PRINCIPALS)]
        self.report.statements += 1
        self.report.principals[principal] += 1
        visible, hidden = self.visible(principal), self.hidden(principal)
        r = rng.random()
        if r < 0.55 and visible:
            stmt = self.generator(rng, visible, True).statement()
            self.same_answer(index, principal, stmt)
        elif r < 0.7 and hidden:
            self.hidden_like_missing(index, principal, rng, visible, hidden)
        else:
            gen = self.generator(rng, visible, False)
            stmt = grammar.chaos(rng, gen, hidden, self.pending)
            out = self.query(principal, stmt.sql, stmt.params, stmt.kind)
            self.check_clean(index, principal, stmt, out)
            if stmt.kind == "write" and out.ok and not stmt.sql.startswith("EXPLAIN "):
                self.violation(index, principal, stmt.kind, "a write was accepted", stmt.sql, [], "")

    def check_clean(self, index: int, principal: str, stmt: Statement, out: Outcome, sql: Optional[str] = None) -> None:
        sql = sql if sql is not None else stmt.sql
        if not out.ok:
            msg = out.message or ""
            if any(m in msg for m in PANIC_MARKERS):
                self.violation(index, principal, stmt.kind, "panic text in the error", sql, stmt.params, msg)
            if out.code == "UNAVAILABLE" and any(m in msg for m in TRANSPORT_MARKERS):
                self.violation(index, principal, stmt.kind, "connection dropped", sql, stmt.params, msg)
                self.check_alive(index, "after a dropped connection")
            elif out.code == "DEADLINE_EXCEEDED":
                self.violation(index, principal, stmt.kind, "no answer within the client timeout", sql, stmt.params, msg)
                self.check_alive(index, "after a timeout")
            elif out.code not in ALLOWED_CODES and not out.code.startswith("CLIENT_"):
                self.violation(index, principal, stmt.kind, f"status {out.code}", sql, stmt.params, msg)
        if principal != "admin":
            self.check_leaks(index, principal, stmt, out, sql)

    def check_leaks(self, index: int, principal: str, stmt: Statement, out: Outcome, sql: str) -> None:
        text = text_of(out)
        lowered_sql = sql.lower()
        # No hidden product or domain named, unless the SQL names it (an error may echo it).
        # (Results are not searched for names: a visible product's description may mention
        # another product; system tables are checked cell by cell below.)
        if "meshql.audit" not in lowered_sql and (not out.ok or stmt.kind == "explain"):
            for p in self.hidden(principal):
                if p.name.lower() in lowered_sql:
                    continue
                if p.qualified in text or f"{p.domain}/{p.name}" in text:
                    self.violation(index, principal, stmt.kind, f"hidden product {p.qualified} named", sql, stmt.params, text)
                    return
        if "meshql.audit" not in lowered_sql and stmt.kind == "system" and out.ok:
            vis = self.visible(principal)
            shown = {p.name for p in vis} | {p.domain for p in vis}
            secret = {p.name for p in self.hidden(principal)} | {p.domain for p in self.hidden(principal)}
            cells = {str(v) for row in out.rows or [] for v in row}
            leaked = (secret - shown) & cells
            if leaked:
                self.violation(index, principal, stmt.kind, f"hidden names {sorted(leaked)} listed", sql, stmt.params, text)
                return
        if not out.ok or stmt.kind == "explain":
            for m in POLICY_MARKERS:
                if m in text:
                    self.violation(index, principal, stmt.kind, f"policy text `{m}` shown", sql, stmt.params, text)
                    return
        # EXPLAIN shows predicates and projections: not the policies' (an error may quote a
        # visible value such as 'EU' or the mask's '***', which is fine).
        # EXPLAIN ANALYZE also shows runtime filters (TopK thresholds, join key bounds): values
        # of visible rows, such as a masked '***', which are left out of this check.
        if out.ok and stmt.kind == "explain":
            plan = RUNTIME_FILTER.sub("", text)
            if principal == "eu_analyst" and "eu" not in lowered_sql and re.search(r"""["']EU["']""", plan):
                self.violation(index, principal, stmt.kind, "row filter value shown", sql, stmt.params, text)
            if "***" in plan and "***" not in sql:
                self.violation(index, principal, stmt.kind, "mask expression shown", sql, stmt.params, text)
        # (meshql.audit shows the caller's own statements, which may quote any value.)
        for value in self.hidden_values.get(principal, ()) if "meshql.audit" not in lowered_sql else ():
            if value in text and value not in sql:
                self.violation(index, principal, stmt.kind, "a value of a hidden row shown", sql, stmt.params, f"{value!r} in: {text[:1500]}")
                break
        if "paths" in self.pending and ABS_PATH.search(text) and not ABS_PATH.search(sql):
            self.violation(index, principal, stmt.kind, "an absolute path or bucket URL shown", sql, stmt.params, text)

    def same_answer(self, index: int, principal: str, stmt: Statement) -> None:
        sql = stmt.sql
        out = self.query(principal, sql, stmt.params, "compare")
        self.check_clean(index, principal, stmt, out)
        if principal == "admin":
            return
        reference = stmt.render(lambda t: mesh.rewrite(principal, t.product, t.version or ""))
        ref = self.query("admin", reference, stmt.params, "reference")
        self.check_clean(index, "admin", stmt, ref, reference)
        self.report.compared += 1
        if out.ok and ref.ok:
            diff = same_rows(out.rows, ref.rows)
            if diff:
                self.violation(
                    index, principal, stmt.kind, "answer differs from admin's rewrite", sql, stmt.params,
                    f"admin's rewrite: {reference}\n  difference: {diff}",
                )
        elif out.ok != ref.ok:
            # The rewrite may fail where the principal's query does not: admin's plan is free
            # to evaluate a user expression before the written-out filter. The other way round
            # means the principal's query saw rows its policies hide.
            if not out.ok:
                self.violation(
                    index, principal, stmt.kind, "fails where admin's rewrite succeeds", sql, stmt.params,
                    f"admin's rewrite: {reference}\n  error: {out.message}",
                )

    def hidden_like_missing(self, index, principal, rng, visible, hidden) -> None:
        target = rng.choice(hidden)
        others = [p for p in visible if p.qualified != target.qualified]
        products = [target] + ([rng.choice(others)] if others and rng.random() < 0.4 else [])
        gen = self.generator(rng, products, rng.random() < 0.5)
        for _ in range(10):
            stmt = gen.statement()
            if any(p.qualified == target.qualified for p in stmt.products):
                break
        else:
            gen = self.generator(rng, [target], True)
            stmt = gen.statement()
        if rng.random() < 0.2:
            stmt.template = f"EXPLAIN {stmt.template}"
        missing_product = f"{target.domain}.zz_{target.name}"
        missing_domain = f"zz_{target.domain}.{target.name}"
        # A hidden product may sit in a domain the principal sees, or in a hidden domain.
        substitute = missing_product if rng.random() < 0.5 else missing_domain

        def render(name: str) -> str:
            return stmt.render(
                lambda t: (name + (t.version or "")) if t.product.qualified == target.qualified else t.plain()
            )

        real, fake = render(target.qualified), render(substitute)
        a = self.query(principal, real, stmt.params, "hidden")
        b = self.query(principal, fake, stmt.params, "missing")
        self.check_clean(index, principal, stmt, a, real)
        self.report.hidden_checks += 1
        if a.ok:
            self.violation(index, principal, "hidden", "a hidden product answered", real, stmt.params, text_of(a)[:500])
            return
        if b.ok:
            self.violation(index, principal, "hidden", "a missing product answered", fake, stmt.params, text_of(b)[:500])
            return
        norm_a = (a.message or "").replace(target.qualified, "<P>")
        norm_b = (b.message or "").replace(substitute, "<P>")
        # Names may also appear split, e.g. `table 'mesh.marketing.leads' not found`.
        norm_a = norm_a.replace(f"{target.domain}.{target.name}", "<P>")
        if a.code != b.code or norm_a != norm_b:
            self.violation(
                index, principal, "hidden", "a hidden product fails unlike a missing one", real, stmt.params,
                f"hidden:  {a.code}: {a.message}\n  missing: {b.code}: {b.message} (for {fake})",
            )


class ServerDown(RuntimeError):
    pass
