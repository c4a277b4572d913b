//! Hot reload of a large catalog: how long a reload takes, and whether queries stall meanwhile.
//!
//! ```text
//! catalog_reload [--products 1000] [--domains 10] [--reloads 20] [--seconds 10] [--clients 4]
//! ```
//!
//! Writes a mesh of `--products` Parquet products (spread over `--domains` domains; each
//! manifest has 8 columns, a description and tags; every product of a domain reads the same
//! small Parquet file) into a temporary folder, then:
//!
//! 1. **reload time**: `--reloads` times, rewrites one manifest (a new description) and times
//!    one `Reloader::check_now` (rescan of every file, complete load and validation of the
//!    catalog, policy type-checks, atomic swap); also times a look that finds nothing changed and
//!    `Mesh::load_checked` alone;
//! 2. **queries during reloads**: `--clients` tasks run a small query (`SELECT count(*), sum(v)
//!    FROM d0.p0`) in a loop, each in a new session (as a Flight SQL request does), for
//!    `--seconds` without reloads, then for `--seconds` while the catalog is changed and
//!    reloaded back to back; prints latency percentiles of both phases and fails if a query
//!    fails.
//!
//! Prints one JSON object (and a human summary on stderr). Timings depend on the machine and its
//! load; they are never asserted.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;
use meshql_catalog::{CatalogFingerprint, Mesh, Principal};
use meshql_engine::{MeshEngine, ReloadOutcome, Reloader};
use serde_json::json;

struct Args {
    products: usize,
    domains: usize,
    reloads: usize,
    seconds: u64,
    clients: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        products: 1000,
        domains: 10,
        reloads: 20,
        seconds: 10,
        clients: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse()
                .map_err(|e| format!("{name}: {e}"))
        };
        match arg.as_str() {
            "--products" => a.products = num("--products")?,
            "--domains" => a.domains = num("--domains")?,
            "--reloads" => a.reloads = num("--reloads")?,
            "--seconds" => a.seconds = num("--seconds")? as u64,
            "--clients" => a.clients = num("--clients")?,
            _ => {
                return Err(
                    "usage: catalog_reload [--products N] [--domains N] [--reloads N] \
                            [--seconds N] [--clients N]"
                        .into(),
                )
            }
        }
    }
    if a.domains == 0 || a.products < a.domains {
        return Err("need at least one product per domain".into());
    }
    Ok(a)
}

fn manifest(domain: usize, product: usize, note: &str) -> String {
    let mut m = format!(
        "name = \"p{product}\"\ndomain = \"d{domain}\"\nversion = \"1.0.0\"\n\
         description = \"Product {product} of domain {domain}{note}.\"\n\
         owner = \"team{domain}@example.com\"\nformat = \"parquet\"\nlocation = \"shared\"\n\
         tags = [\"bench\", \"d{domain}\"]\n\n[sla]\nfreshness = \"1d\"\n"
    );
    m.push_str(
        "\n[[schema]]\nname = \"id\"\ntype = \"bigint\"\nprimary_key = true\ndescription = \"Key.\"\n",
    );
    m.push_str("\n[[schema]]\nname = \"v\"\ntype = \"bigint\"\ndescription = \"Value.\"\n");
    m.push_str("\n[[schema]]\nname = \"region\"\ntype = \"string\"\ndescription = \"Region.\"\n");
    for c in 0..5 {
        m.push_str(&format!(
            "\n[[schema]]\nname = \"c{c}\"\ntype = \"string\"\ndescription = \"Column {c}.\"\n"
        ));
    }
    m
}

fn write_mesh(dir: &Path, args: &Args) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let mut config = String::from("[catalog]\ndir = \"catalog\"\nrefresh_interval = \"1s\"\n\n");
    config.push_str("[[users]]\nname = \"admin\"\n");
    config.push_str(&format!(
        "password_hash = \"{}\"\ngroups = [\"admin\"]\n\n",
        meshql_catalog::hash_password("admin", b"bench-salt-0123456")?
    ));
    let rows = 1000i64;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("c0", DataType::Utf8, true),
        Field::new("c1", DataType::Utf8, true),
        Field::new("c2", DataType::Utf8, true),
        Field::new("c3", DataType::Utf8, true),
        Field::new("c4", DataType::Utf8, true),
    ]));
    let text = |prefix: &str| {
        Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| format!("{prefix}{}", i % 7)),
        )) as arrow::array::ArrayRef
    };
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows)),
            Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i * 3))),
            text("r"),
            text("a"),
            text("b"),
            text("c"),
            text("d"),
            text("e"),
        ],
    )?;
    let per_domain = args.products.div_ceil(args.domains);
    let mut written = 0;
    for d in 0..args.domains {
        config.push_str(&format!(
            "[[domains]]\nname = \"d{d}\"\ndescription = \"Domain {d}.\"\nowner = \"team{d}@example.com\"\nbucket = \"buckets/d{d}\"\n\n"
        ));
        let data = dir.join(format!("buckets/d{d}/shared"));
        std::fs::create_dir_all(&data)?;
        let file = std::fs::File::create(data.join("part-0.parquet"))?;
        let mut w = parquet::arrow::ArrowWriter::try_new(file, Arc::clone(&schema), None)?;
        w.write(&batch)?;
        w.close()?;
        let products = dir.join(format!("catalog/d{d}/products"));
        std::fs::create_dir_all(&products)?;
        // A row filter and a mask per domain, so policies are compiled and type-checked too.
        std::fs::write(
            dir.join(format!("catalog/d{d}/policies.toml")),
            "[[grants]]\nto = [\"group:analysts\"]\nproducts = [\"*\"]\n\n\
             [[row_filters]]\nname = \"own_region\"\nproduct = \"p0\"\napplies_to = [\"group:analysts\"]\npredicate = \"region = 'r1'\"\n",
        )?;
        for p in 0..per_domain {
            if written == args.products {
                break;
            }
            std::fs::write(products.join(format!("p{p}.toml")), manifest(d, p, ""))?;
            written += 1;
        }
    }
    std::fs::create_dir_all(dir.join("catalog/_global"))?;
    std::fs::write(
        dir.join("catalog/_global/policies.toml"),
        "[[grants]]\nto = [\"group:admin\"]\ndomains = [\"*\"]\nproducts = [\"*\"]\n",
    )?;
    let path = dir.join("meshql.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

fn percentiles(mut v: Vec<f64>) -> serde_json::Value {
    if v.is_empty() {
        return json!(null);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    json!({
        "n": v.len(),
        "p50_ms": at(0.5) * 1e3,
        "p95_ms": at(0.95) * 1e3,
        "p99_ms": at(0.99) * 1e3,
        "max_ms": at(1.0) * 1e3,
    })
}

/// Runs `clients` query loops until `stop`; returns their latencies (seconds) and errors.
async fn query_load(
    engine: &MeshEngine,
    principal: &Principal,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<f64>, Vec<String>) {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let engine = engine.clone();
            let principal = principal.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let result = async {
                        let session = engine.session(principal.clone())?;
                        let (_, mut stream) =
                            session.sql("SELECT count(*), sum(v) FROM d0.p0").await?;
                        let mut rows = 0;
                        while let Some(b) = stream.next().await {
                            rows += b?.num_rows();
                        }
                        Ok::<usize, meshql_engine::EngineError>(rows)
                    }
                    .await;
                    match result {
                        Ok(1) => lat.push(t.elapsed().as_secs_f64()),
                        Ok(n) => errors.push(format!("{n} rows")),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok((l, e)) => {
                lat.extend(l);
                errors.extend(e);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    (lat, errors)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let config = write_mesh(tmp.path(), &args)?;
    let fingerprint = CatalogFingerprint::scan(&config);
    let t = Instant::now();
    let mesh = Mesh::load_checked(&config).map_err(|p| format!("{p:?}"))?;
    let first_load = t.elapsed().as_secs_f64();
    let products = mesh.products().count();
    let principal = Principal::new("admin").with_group("admin");
    let engine = MeshEngine::try_new(mesh)?;
    let reloader = Reloader::new(engine.clone(), &config, fingerprint, None);

    // 1. Reload time.
    let t = Instant::now();
    let unchanged = reloader.check_now().await;
    let unchanged_s = t.elapsed().as_secs_f64();
    if !matches!(unchanged, ReloadOutcome::Unchanged) {
        return Err(format!("expected no change, got {unchanged:?}").into());
    }
    let mut loads = Vec::new();
    for _ in 0..args.reloads.min(5) {
        let t = Instant::now();
        Mesh::load_checked(&config).map_err(|p| format!("{p:?}"))?;
        loads.push(t.elapsed().as_secs_f64());
    }
    let target = tmp.path().join("catalog/d1/products/p1.toml");
    let mut reloads = Vec::new();
    let mut counter = 0usize;
    let change = |counter: &mut usize| -> std::io::Result<()> {
        *counter += 1;
        let tmp_file = target.with_extension("tmp");
        std::fs::write(&tmp_file, manifest(1, 1, &format!(" (rev {counter})")))?;
        std::fs::rename(&tmp_file, &target)
    };
    for _ in 0..args.reloads {
        change(&mut counter)?;
        let t = Instant::now();
        match reloader.check_now().await {
            ReloadOutcome::Applied { .. } => reloads.push(t.elapsed().as_secs_f64()),
            other => return Err(format!("reload not applied: {other:?}").into()),
        }
    }

    // 2. Queries without, then during, reloads.
    let phase = Duration::from_secs(args.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (engine, principal, stop) = (engine.clone(), principal.clone(), Arc::clone(&stop));
        let clients = args.clients;
        tokio::spawn(async move { query_load(&engine, &principal, clients, stop).await })
    };
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::Relaxed);
    let (quiet, quiet_errors) = load.await?;
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (engine, principal, stop) = (engine.clone(), principal.clone(), Arc::clone(&stop));
        let clients = args.clients;
        tokio::spawn(async move { query_load(&engine, &principal, clients, stop).await })
    };
    let start = Instant::now();
    let mut during = Vec::new();
    while start.elapsed() < phase {
        change(&mut counter)?;
        let t = Instant::now();
        if !matches!(reloader.check_now().await, ReloadOutcome::Applied { .. }) {
            return Err("a reload during the query load was not applied".into());
        }
        during.push(t.elapsed().as_secs_f64());
    }
    stop.store(true, Ordering::Relaxed);
    let (busy, busy_errors) = load.await?;
    let out = json!({
        "products": products,
        "domains": args.domains,
        "files": engine.catalog_status().files,
        "first_load_s": first_load,
        "unchanged_check_s": unchanged_s,
        "load_checked": percentiles(loads),
        "reload": percentiles(reloads),
        "reloads_during_queries": percentiles(during.clone()),
        "queries_without_reloads": percentiles(quiet),
        "queries_during_reloads": percentiles(busy),
        "query_errors": quiet_errors.len() + busy_errors.len(),
        "generation": engine.catalog_status().generation,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    let errors: Vec<&String> = quiet_errors.iter().chain(&busy_errors).take(5).collect();
    if !errors.is_empty() {
        return Err(format!("queries failed: {errors:?}").into());
    }
    Ok(())
}
