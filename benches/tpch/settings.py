"""DataFusion settings study with datafusion-python (same DataFusion major as meshql) over the
TPC-H mesh's Parquet files: each variant is a SessionConfig; runs are interleaved and every
variant's answers are checked against the baseline's. Prints per-query medians and geometric
mean ratios vs the baseline.

    python benches/tpch/settings.py --data bench-data/tpch-sf1/parquet --iterations 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import diff  # noqa: E402
from engines import THREADS, table_dirs  # noqa: E402
from queries import QUERIES, unqualified  # noqa: E402

P = "datafusion.execution.parquet."
VARIANTS = {
    "default": {},
    "pushdown_filters": {P + "pushdown_filters": "true"},
    "pushdown+reorder": {P + "pushdown_filters": "true", P + "reorder_filters": "true"},
    "batch_size=32768": {"datafusion.execution.batch_size": "32768"},
    f"target_partitions={THREADS * 2}": {"datafusion.execution.target_partitions": str(THREADS * 2)},
    "no_page_index": {P + "enable_page_index": "false"},
}


def context(settings: dict, root: Path):
    from datafusion import SessionConfig, SessionContext

    config = SessionConfig().with_target_partitions(THREADS)
    for k, v in settings.items():
        config = config.set(k, v)
    ctx = SessionContext(config)
    for table, d in table_dirs(root).items():
        ctx.register_parquet(table, f"{d}/")
    return ctx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="a mesh variant dir (…/parquet)")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    a = ap.parse_args()
    names = a.variants.split(",")
    ctxs = {n: context(VARIANTS[n], a.data) for n in names}
    times = {n: {q: [] for q in QUERIES} for n in names}
    answers = {n: {} for n in names}
    for it in range(a.iterations + 1):
        order = names[it % len(names):] + names[: it % len(names)]
        for q, sql in QUERIES.items():
            for n in order:
                start = time.perf_counter()
                table = ctxs[n].sql(unqualified(sql)).to_arrow_table()
                seconds = time.perf_counter() - start
                if it == 0:
                    answers[n][q] = table
                else:
                    times[n][q].append(seconds)
        print(f"iteration {it} done", file=sys.stderr, flush=True)
    base = names[0]
    for n in names[1:]:
        for q in QUERIES:
            problem = diff(answers[base][q], answers[n][q])
            if problem:
                print(f"WRONG: {n} Q{q}: {problem}")
    med = {n: {q: statistics.median(times[n][q]) for q in QUERIES} for n in names}
    print("| query | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for q in QUERIES:
        print(f"| Q{q} | " + " | ".join(f"{med[n][q]:.3f}" for n in names) + " |")
    geo = {n: math.exp(statistics.mean(math.log(med[n][q]) for q in QUERIES)) for n in names}
    print("| geomean | " + " | ".join(f"**{geo[n]:.3f}**" for n in names) + " |")
    print("| vs " + base + " | " + " | ".join(f"{geo[n] / geo[base]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
