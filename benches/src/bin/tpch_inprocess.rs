//! meshql's engine in-process, driven by the TPC-H harness (`benches/tpch/run.py`).
//!
//! ```text
//! tpch_inprocess --config MESH/meshql.toml [--target-partitions N] [--batch-size N]
//! ```
//!
//! Loads the mesh once, then reads one JSON request per line on stdin and answers one JSON line
//! on stdout per request, so the harness can interleave it with the other engines:
//!
//! ```text
//! {"sql": "SELECT ...", "user": "admin", "out": "/tmp/q1.arrow"}    "out" is optional
//! {"ok": true, "seconds": 0.123, "plan_seconds": 0.004, "rows": 4, "batches": 1, "bytes": 1234}
//! {"ok": false, "error": "..."}
//! ```
//!
//! `seconds` covers planning and pulling every batch of the result (what a client waits for),
//! `plan_seconds` the part until the stream exists (session, catalog, planning, physical plan),
//! `logical_seconds` the part until the statement's logical plan exists (session, parsing,
//! catalog resolution, policies);
//! writing the result to `out` (Arrow IPC file, for the harness's answer cross-check) happens
//! after the clock stops. `bytes` is the in-memory Arrow size of the result. With
//! `"plan_only": true` the stream is dropped unread once planned (for profiling the planner).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use meshql_catalog::{Mesh, Principal};
use meshql_engine::{EngineOptions, MeshEngine};
use serde_json::{json, Value};

struct Args {
    config: PathBuf,
    options: EngineOptions,
}

fn parse_args() -> Result<Args, String> {
    let mut config = None;
    let mut options = EngineOptions::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--target-partitions" => {
                options.target_partitions = value("--target-partitions")?
                    .parse()
                    .map_err(|e| format!("--target-partitions: {e}"))?
            }
            "--batch-size" => {
                options.batch_size = value("--batch-size")?
                    .parse()
                    .map_err(|e| format!("--batch-size: {e}"))?
            }
            "-h" | "--help" => {
                return Err(
                    "usage: tpch_inprocess --config FILE [--target-partitions N] \
                            [--batch-size N]  (JSON requests on stdin, one per line)"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    let config = config.ok_or("--config FILE is required")?;
    Ok(Args { config, options })
}

fn principal(mesh: &Mesh, user: &str) -> Result<Principal, String> {
    mesh.config
        .users
        .iter()
        .find(|u| u.name == user)
        .map(Principal::from_user)
        .ok_or_else(|| format!("user {user:?} is not configured in the mesh"))
}

fn write_ipc(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut writer = arrow::ipc::writer::FileWriter::try_new(file, schema.as_ref())
        .map_err(|e| e.to_string())?;
    for b in batches {
        writer.write(b).map_err(|e| e.to_string())?;
    }
    writer.finish().map_err(|e| e.to_string())
}

async fn run_one(engine: &MeshEngine, request: &Value) -> Result<Value, String> {
    let sql = request["sql"].as_str().ok_or("request without \"sql\"")?;
    let user = request["user"].as_str().unwrap_or("admin");
    let out = request["out"].as_str().map(PathBuf::from);
    let principal = principal(&engine.mesh(), user)?;
    let started = Instant::now();
    let session = engine.session(principal).map_err(|e| e.to_string())?;
    let planned_query = session.plan_sql(sql).await.map_err(|e| e.to_string())?;
    let logical = started.elapsed().as_secs_f64();
    let schema = Arc::clone(&planned_query.schema);
    let mut stream = session
        .execute(planned_query)
        .await
        .map_err(|e| e.to_string())?;
    let planned = started.elapsed().as_secs_f64();
    if request["plan_only"].as_bool().unwrap_or(false) {
        // Planning alone (profiles of the planner): the stream is dropped unread.
        return Ok(
            json!({"ok": true, "seconds": planned, "plan_seconds": planned,
            "logical_seconds": logical}),
        );
    }
    let (mut rows, mut bytes, mut count) = (0usize, 0usize, 0usize);
    let mut kept = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| e.to_string())?;
        rows += batch.num_rows();
        bytes += batch.get_array_memory_size();
        count += 1;
        if out.is_some() {
            kept.push(batch);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(path) = out {
        write_ipc(&path, &schema, &kept)?;
    }
    Ok(
        json!({"ok": true, "seconds": seconds, "plan_seconds": planned,
        "logical_seconds": logical, "rows": rows, "batches": count, "bytes": bytes}),
    )
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tpch_inprocess: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tpch_inprocess: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let engine = match Mesh::load(&args.config)
        .map_err(|e| e.to_string())
        .and_then(|m| MeshEngine::try_new_with_options(m, args.options).map_err(|e| e.to_string()))
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("tpch_inprocess: {}: {e}", args.config.display());
            std::process::exit(1);
        }
    };
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(request) => runtime
                .block_on(run_one(&engine, &request))
                .unwrap_or_else(|e| json!({"ok": false, "error": e})),
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        if writeln!(stdout, "{answer}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
}
