"""Answer cross-check: two results agree when they have the same shape and every value matches
(numbers within a small tolerance, so decimal vs double results of different engines agree;
strings exactly, trailing blanks ignored). Column names are not compared."""

from __future__ import annotations

import datetime
import decimal
import math

import pyarrow as pa

REL_TOL = 1e-4
ABS_TOL = 1e-4


def _value(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, str):
        return v.rstrip()
    return v


def rows(table: pa.Table, drop: tuple[str, ...] = ()) -> list[tuple]:
    keep = [i for i, name in enumerate(table.column_names) if name not in drop]
    cols = [[_value(v) for v in table.column(i).to_pylist()] for i in keep]
    return list(zip(*cols))


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not (
        isinstance(a, bool) or isinstance(b, bool)
    ):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


def _sort_key(row):
    return tuple((v is None, str(round(v, 2)) if isinstance(v, float) else str(v)) for v in row)


def diff(expected: pa.Table, actual: pa.Table, drop: tuple[str, ...] = ()) -> str | None:
    """None when the answers agree, else a short description of the first difference."""
    e, a = rows(expected, drop), rows(actual, drop)
    if expected.num_columns != actual.num_columns:
        return f"{actual.num_columns} columns, expected {expected.num_columns}"
    if len(e) != len(a):
        return f"{len(a)} rows, expected {len(e)}"

    def first_difference(x, y):
        for i, (rx, ry) in enumerate(zip(x, y)):
            if len(rx) != len(ry) or not all(_same(p, q) for p, q in zip(rx, ry)):
                return f"row {i}: {ry!r}, expected {rx!r}"
        return None

    problem = first_difference(e, a)
    if problem is None:
        return None
    # Rows tied on the ORDER BY keys may come in any order: compare as multisets too.
    if first_difference(sorted(e, key=_sort_key), sorted(a, key=_sort_key)) is None:
        return None
    return problem
