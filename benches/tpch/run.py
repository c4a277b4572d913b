"""The TPC-H-over-the-mesh harness: one command, all engines, interleaved, answers cross-checked.

    benches/tpch/bench.sh                       # SF1, release build, writes BENCHMARKS.md's results
    python benches/tpch/run.py --sf 1 --meshql target/release/meshql \
        --inprocess target/release/tpch_inprocess --out benches/results/sf1
    python benches/tpch/run.py --smoke ...      # SF 0.01, one iteration: the test command's check

Engines (each skipped with a message when not installed / not startable):
  meshql-flight        `meshql serve` over Flight SQL, ADBC Python client (a notebook's view)
  meshql-cluster       `meshql serve` coordinating 2 `meshql worker`s on this machine, over Flight
                       SQL (docs/cluster.md): the overhead of distribution, not a speed-up
  meshql-inproc        meshql's engine in-process (benches/src/bin/tpch_inprocess.rs)
  duckdb               DuckDB over the same Parquet files
  datafusion-python    datafusion-python over the same Parquet files
  roapi-flight         ROAPI over Flight SQL, in-memory table mode off
  meshql-inproc-delta  in-process over the Delta variant of the mesh           (Delta vs Parquet)
  meshql-inproc-policy in-process as a user with a row filter + mask on customers.customer
                       (only the queries that read customers.customer)         (policies on/off)

Every iteration runs each query on every engine before the next query, in an order rotated per
iteration; the first `--warmup` iterations are not timed. All engines use threads = cores.
Answers (from the first run of each query) are checked against DuckDB's (or, without DuckDB,
meshql-inproc's): a meshql answer that differs, or a meshql error, makes the run fail (exit 1);
a peer's error or difference is reported. Timings are never asserted.

Extras: streaming `SELECT * FROM sales.lineitem` (GB/s of Arrow data, Flight vs in-process) and
dashboard load (queries/s of a small cross-domain aggregation at 1, 2, 4, 8 ADBC clients, each
for a bounded time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ceiling as C  # noqa: E402
import engines as E  # noqa: E402
from compare import diff  # noqa: E402
from gen import generate  # noqa: E402
from queries import CUSTOMER_QUERIES, DASHBOARD, QUERIES  # noqa: E402

MESHQL_ENGINES = ("meshql-flight", "meshql-cluster", "meshql-inproc", "meshql-inproc-delta",
                  "meshql-inproc-policy")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict:
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def start_engines(args, base: Path, workdir: Path) -> tuple[dict, dict]:
    wanted = set(args.engines.split(",")) if args.engines != "all" else None
    pq_root, delta_root = base / "parquet", base / "delta"
    factories = [
        ("meshql-flight", lambda: E.MeshqlFlight(args.meshql, pq_root / "meshql.toml")),
        # The smoke run's data is tiny: spread every scan over both workers so it distributes.
        ("meshql-cluster", lambda: E.MeshqlCluster(
            args.meshql, pq_root / "meshql.toml", scan_bytes=1 if args.smoke else None)),
        ("meshql-inproc", lambda: E.MeshqlInProcess(args.inprocess, pq_root / "meshql.toml")),
        ("duckdb", lambda: E.DuckDBEngine(pq_root)),
        ("datafusion-python", lambda: E.DataFusionPython(pq_root)),
        ("roapi-flight", lambda: E.Roapi(pq_root, workdir / "roapi")),
        ("meshql-inproc-delta", lambda: E.MeshqlInProcess(
            args.inprocess, delta_root / "meshql.toml", label="meshql-inproc-delta")),
        ("meshql-inproc-policy", lambda: E.MeshqlInProcess(
            args.inprocess, pq_root / "meshql.toml", label="meshql-inproc-policy", user="policy")),
    ]
    started, skipped = {}, {}
    for label, make in factories:
        if wanted is not None and label not in wanted:
            continue
        try:
            started[label] = make()
            log(f"engine {label}: ready")
        except E.EngineUnavailable as e:
            skipped[label] = str(e)
            log(f"engine {label}: SKIPPED: {e}")
        except Exception as e:  # noqa: BLE001 - an engine that cannot start is reported, not fatal
            skipped[label] = f"{type(e).__name__}: {e}"
            log(f"engine {label}: SKIPPED: {type(e).__name__}: {e}")
    return started, skipped


def run_queries(args, engines: dict, queries: list[int]) -> dict:
    """Interleaved runs. Returns results[label][qid] = {times, error, answer(internal)}."""
    results = {label: {q: {"times": [], "error": None} for q in queries} for label in engines}
    answers: dict[str, dict[int, object]] = {label: {} for label in engines}
    labels = list(engines)
    total = args.warmup + args.iterations
    for it in range(total):
        timed = it >= args.warmup
        order = labels[it % len(labels):] + labels[: it % len(labels)]
        log(f"iteration {it + 1}/{total}" + ("" if timed else " (warm-up)"))
        for q in queries:
            line = []
            for label in order:
                if label == "meshql-inproc-policy" and q not in CUSTOMER_QUERIES:
                    continue
                r = results[label][q]
                if r["error"] or r.get("capped"):
                    continue
                want = q not in answers[label]
                try:
                    seconds, table = engines[label].run(q, QUERIES[q], want_answer=want)
                except Exception as e:  # noqa: BLE001 - recorded per engine and query
                    r["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
                    line.append(f"{label}=ERROR")
                    continue
                if want and table is not None:
                    answers[label][q] = table
                if timed:
                    r["times"].append(seconds)
                    plan = getattr(engines[label], "last_plan_seconds", None)
                    if plan is not None:
                        r.setdefault("plan_times", []).append(plan)
                if seconds > args.max_seconds:
                    r["capped"] = True
                line.append(f"{label}={seconds:.3f}s")
            print(f"  Q{q:<2} " + "  ".join(line), flush=True)
    return results, answers


def checker_self_test(answers: dict, reference: str) -> None:
    """The cross-check must catch a wrong answer: perturb one reference answer and expect a
    difference (a checker that accepts everything would make every run look right)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = answers.get(reference, {}).get(1)
    if table is None or table.num_rows == 0:
        return
    col = table.column(2)  # Q1 sum_qty
    wrong = table.set_column(2, table.field(2).name, pc.multiply(col.cast(pa.float64()), 1.01))
    if diff(table, wrong) is None or diff(table, table.slice(1)) is None:
        raise SystemExit("answer cross-check self-test failed: a wrong answer was accepted")


def cross_check(results: dict, answers: dict, queries: list[int]) -> str:
    reference = "duckdb" if "duckdb" in answers else "meshql-inproc"
    checker_self_test(answers, reference)
    for label in results:
        for q in queries:
            r = results[label][q]
            if r["error"] or label == reference:
                continue
            ref, got = answers.get(reference, {}).get(q), answers[label].get(q)
            if ref is None or got is None:
                continue
            # The policy user sees c_address masked (Q10 returns it): compare the rest.
            drop = ("c_address",) if label == "meshql-inproc-policy" else ()
            problem = diff(ref, got, drop)
            if problem:
                r["wrong"] = problem
                log(f"WRONG ANSWER: {label} Q{q} vs {reference}: {problem}")
    return reference


def streaming(args, engines: dict) -> dict:
    """`SELECT * FROM sales.lineitem`, best of `--stream-iterations` runs per path, the paths
    interleaved: meshql over ADBC and over plain `pyarrow.flight`, meshql in-process, and the
    ceiling (the same batches served from memory by a server that does no work, see
    `ceiling.py`) read by the same two clients."""
    sql = "SELECT * FROM sales.lineitem"
    out, runs, closers = {}, {}, []
    for label in ("meshql-flight", "meshql-inproc"):
        if label in engines:
            runs[label] = engines[label].stream
    if "meshql-flight" in engines:
        flight = engines["meshql-flight"]
        client, options = C.pyarrow_client(flight.uri, flight.user)
        closers.append(client.close)
        runs["meshql-flight-pyarrow"] = lambda s: C.stream_pyarrow(client, options, s)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                ceiling = C.Ceiling(client, options, sql, Path(tmp) / "result.arrows")
            closers.append(ceiling.close)
            adbc = E.FlightEngine("ceiling", ceiling.uri, None, qualify=True)
            closers.append(adbc.close)
            c_client, c_options = C.pyarrow_client(ceiling.uri)
            closers.append(c_client.close)
            runs["ceiling-adbc"] = adbc.stream
            runs["ceiling-pyarrow"] = lambda s: C.stream_pyarrow(c_client, c_options, s)
        except Exception as e:  # noqa: BLE001
            out["ceiling-adbc"] = {"error": f"{type(e).__name__}: {e}"}
    best: dict[str, tuple] = {}
    try:
        for _ in range(max(1, args.stream_iterations)):
            for label, run in runs.items():
                if label in out:
                    continue
                try:
                    seconds, rows, nbytes = run(sql)
                except Exception as e:  # noqa: BLE001
                    out[label] = {"error": f"{type(e).__name__}: {e}"}
                    continue
                if label not in best or seconds < best[label][0]:
                    best[label] = (seconds, rows, nbytes)
    finally:
        for close in reversed(closers):
            try:
                close()
            except Exception:  # noqa: BLE001
                traceback.print_exc()
    for label, (seconds, rows, nbytes) in best.items():
        if label in out:
            continue
        out[label] = {"seconds": seconds, "rows": rows, "bytes": nbytes,
                      "gb_per_s": nbytes / seconds / 1e9, "rows_per_s": rows / seconds}
        log(f"streaming {label}: {rows} rows, {nbytes / 1e9:.2f} GB in {seconds:.2f}s "
            f"= {nbytes / seconds / 1e9:.2f} GB/s, {rows / seconds / 1e6:.2f} Mrows/s")
    # The runner counts allocated Arrow memory, pyarrow counts buffer bytes: the same rows and
    # schema go through both paths, so express both rates in the Flight client's bytes.
    f, i = out.get("meshql-flight", {}), out.get("meshql-inproc", {})
    if "bytes" in f and "bytes" in i and f["rows"] == i["rows"]:
        i["allocated_bytes"], i["bytes"] = i["bytes"], f["bytes"]
        i["gb_per_s"] = i["bytes"] / i["seconds"] / 1e9
    return out


def first_batch(flight, repeats: int, user: str | None = "admin") -> dict:
    """Time to first batch of the repeated dashboard query over ADBC: median and best of
    `repeats` runs after one warm-up (execute + first batch, one connection)."""
    conn = E.adbc_connect(flight.uri, user)
    times = []
    try:
        for i in range(repeats + 1):
            cur = conn.cursor()
            start = time.perf_counter()
            cur.execute(DASHBOARD)
            reader = cur.fetch_record_batch()
            reader.read_next_batch()
            elapsed = time.perf_counter() - start
            for _ in reader:
                pass
            cur.close()
            if i:
                times.append(elapsed)
    finally:
        conn.close()
    times.sort()
    return {"median_ms": 1000 * times[len(times) // 2], "best_ms": 1000 * times[0], "runs": len(times)}


def first_batch_ceiling(flight, repeats: int) -> dict:
    """`first_batch` against the ceiling server holding the dashboard query's result: the part
    of the time to first batch that is the client's and the transport's."""
    client, options = C.pyarrow_client(flight.uri, flight.user)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ceiling = C.Ceiling(client, options, DASHBOARD, Path(tmp) / "result.arrows")
    finally:
        client.close()
    try:
        return first_batch(ceiling, repeats, user=None)
    finally:
        ceiling.close()


def dashboard_load(args, flight) -> dict:
    """Queries/s with N concurrent ADBC clients (own connection each), each for a bounded time."""
    out = {}
    for clients in args.clients:
        conns = [E.adbc_connect(flight.uri, "admin") for _ in range(clients)]
        counts, errors = [0] * clients, []
        stop = time.perf_counter() + args.load_seconds
        barrier = threading.Barrier(clients)

        def worker(i: int) -> None:
            cur = conns[i].cursor()
            try:
                barrier.wait()
                while time.perf_counter() < stop:
                    cur.execute(DASHBOARD)
                    cur.fetch_arrow_table()
                    counts[i] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(f"{type(e).__name__}: {e}")
            finally:
                cur.close()

        start = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        for c in conns:
            c.close()
        out[str(clients)] = {"queries": sum(counts), "seconds": elapsed,
                             "qps": sum(counts) / elapsed, "errors": errors[:3]}
        log(f"dashboard load: {clients} client(s): {sum(counts)} queries in {elapsed:.1f}s "
            f"= {sum(counts) / elapsed:.1f} q/s" + (f", {len(errors)} error(s)" if errors else ""))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (default 1)")
    ap.add_argument("--parts", type=int, default=4, help="files per large table (default 4)")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--queries", default="all", help="e.g. 1,3,6 (default all 22)")
    ap.add_argument("--engines", default="all", help="comma-separated labels (default all)")
    ap.add_argument("--data", type=Path, default=Path("bench-data"))
    ap.add_argument("--out", type=Path, default=None, help="results dir (default benches/results/sfX)")
    ap.add_argument("--meshql", required=True, help="the meshql binary")
    ap.add_argument("--inprocess", required=True, help="the tpch_inprocess binary")
    ap.add_argument("--max-seconds", type=float, default=120.0,
                    help="stop repeating a query on an engine after one run this slow")
    ap.add_argument("--stream-iterations", type=int, default=2)
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--load-seconds", type=float, default=10.0)
    ap.add_argument("--no-extras", action="store_true", help="skip streaming and load tests")
    ap.add_argument("--publish", action="store_true",
                    help="copy the chart to benches/tpch/published/ and update BENCHMARKS.md")
    ap.add_argument("--smoke", action="store_true",
                    help="SF 0.01, 2 files per table, 1 iteration, no warm-up, short load test")
    args = ap.parse_args()
    if args.smoke:
        args.sf, args.parts, args.iterations, args.warmup = 0.01, 2, 1, 0
        args.stream_iterations, args.load_seconds, args.clients = 1, 0.5, "1,2"
    args.clients = [int(c) for c in args.clients.split(",")]
    queries = sorted(QUERIES) if args.queries == "all" else [int(q) for q in args.queries.split(",")]
    out = args.out or Path("benches/results") / f"sf{args.sf:g}"
    out.mkdir(parents=True, exist_ok=True)

    log(f"TPC-H SF{args.sf:g}, {len(queries)} queries, {args.warmup} warm-up + "
        f"{args.iterations} iteration(s), threads = {E.THREADS}")
    base = generate(args.sf, args.parts, args.data, args.meshql)
    engines, skipped = start_engines(args, base, out)
    if "meshql-flight" not in engines and "meshql-inproc" not in engines:
        log("neither meshql engine could start; nothing to measure")
        for e in engines.values():
            e.close()
        return 1
    started = time.time()
    try:
        results, answers = run_queries(args, engines, queries)
        reference = cross_check(results, answers, queries)
        extras = {}
        if not args.no_extras:
            extras["streaming"] = streaming(args, engines)
            if "meshql-flight" in engines:
                extras["first_batch"] = {"meshql-flight": first_batch(engines["meshql-flight"], 30)}
                try:
                    extras["first_batch"]["ceiling"] = first_batch_ceiling(engines["meshql-flight"], 30)
                except Exception as e:  # noqa: BLE001
                    log(f"first batch from the ceiling server failed: {type(e).__name__}: {e}")
                extras["dashboard"] = dashboard_load(args, engines["meshql-flight"])
                # The same with meshql's result cache on (its default outside this harness).
                try:
                    cached = E.MeshqlFlight(args.meshql, base / "parquet" / "meshql.toml",
                                            label="meshql-flight-cached",
                                            env={"MESHQL__ENGINE__RESULT_CACHE_SIZE": "256MiB"})
                except Exception as e:  # noqa: BLE001
                    log(f"meshql-flight-cached did not start: {e}")
                else:
                    try:
                        extras["first_batch"]["meshql-flight-cached"] = first_batch(cached, 30)
                        extras["dashboard_cached"] = dashboard_load(args, cached)
                    finally:
                        cached.close()
                for label, fb in extras["first_batch"].items():
                    log(f"first batch {label}: median {fb['median_ms']:.1f} ms, best {fb['best_ms']:.1f} ms")
    finally:
        for e in engines.values():
            try:
                e.close()
            except Exception:  # noqa: BLE001
                traceback.print_exc()

    versions = {label: getattr(e, "version", None) for label, e in engines.items()}
    doc = {
        "scale_factor": args.sf,
        "parts": args.parts,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "threads": E.THREADS,
        "machine": machine(),
        "versions": versions,
        "skipped": skipped,
        "reference": reference,
        "duration_s": time.time() - started,
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip(),
        "queries": {label: {str(q): r for q, r in per.items()} for label, per in results.items()},
        "extras": extras,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=2))
    import report

    report.write(doc, out, publish=args.publish)
    log(f"results: {out / 'results.json'}, {out / 'report.md'}, {out / 'chart.png'}")

    failures = []
    if "meshql-cluster" in skipped:
        failures.append(f"meshql-cluster did not start: {skipped['meshql-cluster']}")
    for label in MESHQL_ENGINES:
        for q, r in doc["queries"].get(label, {}).items():
            if r["error"]:
                failures.append(f"{label} Q{q}: {r['error']}")
            if r.get("wrong"):
                failures.append(f"{label} Q{q}: wrong answer: {r['wrong']}")
    for label, per in doc["queries"].items():
        if label in MESHQL_ENGINES:
            continue
        for q, r in per.items():
            if r["error"] or r.get("wrong"):
                log(f"note: peer {label} Q{q}: {r['error'] or 'wrong answer: ' + r['wrong']}")
    for label, s in extras.get("streaming", {}).items():
        if "error" in s:
            failures.append(f"streaming {label}: {s['error']}")
    for n, d in extras.get("dashboard", {}).items():
        if d["errors"]:
            failures.append(f"dashboard load with {n} clients: {d['errors'][0]}")
    if failures:
        log("FAILED:\n  " + "\n  ".join(failures))
        return 1
    log("all meshql answers agree with " + reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
