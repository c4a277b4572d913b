"""Report of a harness run: markdown tables (per query min/median, geometric means, the ratios
BENCHMARKS.md lists) and a PNG chart of per-query ratios. `python report.py RESULTS.json` redoes
them from a saved run."""

from __future__ import annotations

import json
import math
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = Path(__file__).resolve().parent / "published"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

COLUMNS = ["meshql-flight", "meshql-cluster", "meshql-inproc", "duckdb", "datafusion-python", "roapi-flight",
           "meshql-inproc-delta", "meshql-inproc-policy"]

# (numerator, denominator, label): the ratios of issue 6 (a ratio < 1 means the first is faster)
RATIOS = [
    ("meshql-flight", "meshql-inproc", "meshql over Flight / meshql in-process (Flight SQL overhead)"),
    ("meshql-flight", "duckdb", "meshql over Flight / DuckDB in-process"),
    ("meshql-flight", "roapi-flight", "meshql over Flight / ROAPI over Flight"),
    ("meshql-inproc", "datafusion-python", "meshql in-process / datafusion-python"),
    ("meshql-inproc", "duckdb", "meshql in-process / DuckDB (the DataFusion-DuckDB gap)"),
    ("datafusion-python", "duckdb", "datafusion-python / DuckDB"),
    ("meshql-inproc-policy", "meshql-inproc", "policies on / off (row filter + mask on customers.customer; its 8 queries)"),
    ("meshql-inproc-delta", "meshql-inproc", "Delta / Parquet (in-process)"),
    ("meshql-cluster", "meshql-flight", "cluster (1 coordinator + 2 workers, one machine) / single node, both over Flight"),
]
CHART_RATIOS = RATIOS[:4]


def median(r):
    return statistics.median(r["times"]) if r.get("times") and ok(r) else None


def ok(r):
    return r is not None and not r.get("error") and not r.get("wrong")


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def per_query_ratios(doc, num, den):
    qs = doc["queries"]
    if num not in qs or den not in qs:
        return {}
    out = {}
    for q, r in qs[num].items():
        a, b = median(r), median(qs[den].get(q))
        if a and b:
            out[q] = a / b
    return out


def cell(r):
    if r is None:
        return ""
    if r.get("error"):
        return "error"
    if r.get("wrong"):
        return "**wrong**"
    if not r.get("times"):
        return "n/a"
    t = r["times"]
    return f"{min(t):.3f} / {statistics.median(t):.3f}"


def markdown(doc, chart_path: str) -> str:
    qs = doc["queries"]
    cols = [c for c in COLUMNS if c in qs]
    m = doc["machine"]
    lines = [
        f"TPC-H **SF{doc['scale_factor']:g}** ({doc['parts']} files per large table), "
        f"{doc['warmup']} warm-up + {doc['iterations']} timed iteration(s), interleaved; "
        f"threads = {doc['threads']} for every engine. Machine: {m['cores']} cores, "
        f"{m['memory_gib']} GiB RAM, {m['cpu']}; {m['os']}. meshql commit {doc.get('git') or '?'}. "
        f"Answers checked against **{doc['reference']}**.",
        "",
    ]
    if doc.get("skipped"):
        for label, why in doc["skipped"].items():
            lines.append(f"- skipped `{label}`: {why.splitlines()[0]}")
        lines.append("")
    lines += ["### Per query: min / median seconds", ""]
    lines.append("| query | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    all_q = sorted({int(q) for c in cols for q in qs[c]})
    for q in all_q:
        lines.append(f"| Q{q} | " + " | ".join(cell(qs[c].get(str(q))) for c in cols) + " |")
    # geometric mean of medians over the queries every TPC-H-wide engine answered correctly
    wide = [c for c in cols if c != "meshql-inproc-policy"]
    common = [q for q in all_q if all(median(qs[c].get(str(q))) for c in wide)]
    geo = []
    for c in cols:
        subset = common if c != "meshql-inproc-policy" else [
            q for q in all_q if median(qs[c].get(str(q)))]
        g = geomean([median(qs[c].get(str(q))) for q in subset])
        geo.append(f"**{g:.3f}**" if g else "")
    lines.append(f"| geomean ({len(common)} q) | " + " | ".join(geo) + " |")
    lines += ["", "### Ratios (geometric mean of per-query median ratios; < 1 = first is faster)", ""]
    lines += ["| ratio | geomean | min | max | queries |", "|---|---:|---:|---:|---:|"]
    for num, den, label in RATIOS:
        r = per_query_ratios(doc, num, den)
        if r:
            lines.append(f"| {label} | **{geomean(r.values()):.2f}** | {min(r.values()):.2f} | "
                         f"{max(r.values()):.2f} | {len(r)} |")
    cluster = per_query_ratios(doc, "meshql-cluster", "meshql-flight")
    if cluster:
        lines += ["", "### Cluster overhead per query (median meshql-cluster / median meshql-flight; "
                  "> 1 = the cluster is slower)", "",
                  "| query | " + " | ".join(f"Q{q}" for q in sorted(cluster, key=int)) + " |",
                  "|---|" + "---:|" * len(cluster),
                  "| ratio | " + " | ".join(f"{cluster[q]:.2f}" for q in sorted(cluster, key=int)) + " |"]
    inproc = qs.get("meshql-inproc", {})
    shares = [statistics.median(r["plan_times"]) / statistics.median(r["times"])
              for r in inproc.values() if ok(r) and r.get("plan_times") and r.get("times")]
    plans = [statistics.median(r["plan_times"]) for r in inproc.values()
             if ok(r) and r.get("plan_times")]
    if plans:
        lines += ["", f"meshql in-process time to first stream (session, catalog resolution, "
                  f"policies, planning): median {statistics.median(plans) * 1e3:.1f} ms per query, "
                  f"max {max(plans) * 1e3:.1f} ms; median share of the query's time "
                  f"{statistics.median(shares):.0%}."]
    ex = doc.get("extras", {})
    s = ex.get("streaming", {})
    if s:
        lines += ["", "### Streaming `SELECT * FROM sales.lineitem` (best run)", "",
                  "| path | rows | Arrow GB | seconds | GB/s | Mrows/s |", "|---|---:|---:|---:|---:|---:|"]
        for label, v in s.items():
            if "error" in v:
                lines.append(f"| {label} | error: {v['error'][:80]} | | | | |")
            else:
                lines.append(f"| {label} | {v['rows']} | {v['bytes'] / 1e9:.2f} | {v['seconds']:.2f} | "
                             f"**{v['gb_per_s']:.2f}** | {v['rows_per_s'] / 1e6:.2f} |")
        f, i = s.get("meshql-flight", {}), s.get("meshql-inproc", {})
        if "gb_per_s" in f and "gb_per_s" in i:
            lines += ["", f"Flight SQL delivers {f['gb_per_s'] / i['gb_per_s']:.0%} of the in-process rate."]
        shares = [f"{s[m]['gb_per_s'] / s[c]['gb_per_s']:.0%} of the ceiling over {client}"
                  for m, c, client in (("meshql-flight", "ceiling-adbc", "ADBC"),
                                       ("meshql-flight-pyarrow", "ceiling-pyarrow", "pyarrow.flight"))
                  if "gb_per_s" in s.get(m, {}) and "gb_per_s" in s.get(c, {})]
        if shares:
            lines += ["", "The ceiling is a Flight SQL server that does no work: it sends the batches "
                      "meshql sent (at most 1.2 GB of them), from memory (`benches/tpch/ceiling.py`). "
                      f"meshql streams at {' and '.join(shares)}."]
    d, dc = ex.get("dashboard", {}), ex.get("dashboard_cached", {})
    if d:
        lines += ["", "### Dashboard load: small cross-domain aggregation, concurrent ADBC clients", "",
                  "| clients | queries | seconds | queries/s, result cache off | queries/s, cache on |",
                  "|---:|---:|---:|---:|---:|"]
        for n, v in d.items():
            c = dc.get(n, {})
            on = f"**{c['qps']:.1f}**" if "qps" in c else "–"
            lines.append(f"| {n} | {v['queries']} | {v['seconds']:.1f} | **{v['qps']:.1f}** | {on} |")
    fb = ex.get("first_batch", {})
    if fb:
        lines += ["", "### Time to first batch, repeated dashboard query (ADBC, one connection)", "",
                  "| server | median ms | best ms | runs |", "|---|---:|---:|---:|"]
        for label, v in fb.items():
            lines.append(f"| {label} | **{v['median_ms']:.1f}** | {v['best_ms']:.1f} | {v['runs']} |")
        if "ceiling" in fb:
            lines += ["", "`ceiling`: the same result from a server that does no work, the client's and "
                      "the transport's share of the time."]
    if chart_path:
        lines += ["", f"![per-query ratios]({chart_path})"]
    v = {k: x for k, x in doc.get("versions", {}).items() if x}
    if v:
        lines += ["", "Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + "."]
    return "\n".join(lines) + "\n"


def chart(doc, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series = [(label, per_query_ratios(doc, n, d)) for n, d, label in CHART_RATIOS]
    series = [(label, r) for label, r in series if r]
    if not series:
        return False
    qs = sorted({int(q) for _, r in series for q in r})
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(14, 5))
    for i, (label, r) in enumerate(series):
        xs = [j + i * width - 0.4 + width / 2 for j, q in enumerate(qs) if str(q) in r]
        ys = [r[str(q)] for q in qs if str(q) in r]
        ax.bar(xs, ys, width, label=f"{label.split(' (')[0]} (geomean {geomean(ys):.2f})")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(qs)), [f"Q{q}" for q in qs])
    ax.set_ylabel("ratio of median times (log; < 1 = first is faster)")
    ax.set_title(f"TPC-H SF{doc['scale_factor']:g}, {doc['threads']} threads: per-query ratios")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(doc, out: Path, publish: bool = False) -> None:
    has_chart = chart(doc, out / "chart.png")
    (out / "report.md").write_text(markdown(doc, "chart.png" if has_chart else ""))
    if not publish:
        return
    PUBLISHED.mkdir(exist_ok=True)
    sf = f"sf{doc['scale_factor']:g}"
    rel = ""
    if has_chart:
        shutil.copy(out / "chart.png", PUBLISHED / f"chart-{sf}.png")
        rel = f"benches/tpch/published/chart-{sf}.png"
    (PUBLISHED / f"results-{sf}.json").write_text(json.dumps(doc, indent=2))
    begin, end = markers(doc["scale_factor"])
    section = f"{begin}\n{markdown(doc, rel)}{end}"
    md = REPO / "BENCHMARKS.md"
    text = md.read_text() if md.exists() else "# Benchmarks\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    elif END in text:
        # Another scale factor goes beside the SF1 results, after them.
        head, rest = text.split(END, 1)
        text = head + END + "\n\n" + section + rest
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    md.write_text(text)


def markers(scale_factor: float) -> tuple[str, str]:
    """The markers around one scale factor's published results: SF1 keeps the original ones,
    every other scale factor has its own section, so publishing SF10 leaves SF1 in place."""
    if scale_factor == 1:
        return BEGIN, END
    sf = f"sf{scale_factor:g}"
    return f"<!-- results:{sf}:begin -->", f"<!-- results:{sf}:end -->"


if __name__ == "__main__":
    results = Path(sys.argv[1])
    write(json.loads(results.read_text()), results.parent, publish="--publish" in sys.argv)
