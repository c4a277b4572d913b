//! The `meshql` command line: demo mesh, Flight SQL server, one-off queries, catalog lint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

mod publish;
mod telemetry;
use futures::StreamExt;
use meshql_catalog::{CatalogError, Mesh, Principal};
use meshql_engine::demo::{write_demo, DemoOptions};
use meshql_engine::MeshEngine;

#[derive(Parser)]
#[command(
    name = "meshql",
    version,
    about = "meshql: federated SQL over data products, served over Arrow Flight SQL",
    long_about = "meshql keeps a catalog of domains and their data products (Parquet files and Delta \
tables in each domain's bucket), runs SQL across domains, and serves it over Arrow Flight SQL.\n\n\
New here? Run `meshql serve --demo` and connect a Flight SQL client to grpc://127.0.0.1:50051 \
as user `admin`, password `admin`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the demo data mesh (five domains, Parquet and Delta products, demo users).
    ///
    /// Idempotent: existing data is kept, and configuration or manifest files you edited are
    /// never overwritten (they are listed instead) unless you pass --force.
    Demo {
        /// Directory to write the demo mesh into; its configuration is DIR/meshql.toml.
        #[arg(long, default_value = "demo-mesh")]
        dir: PathBuf,
        /// Multiply the number of generated rows (1 = a few thousand rows per product).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        scale: u32,
        /// Regenerate everything, overwriting edited files and existing data.
        #[arg(long)]
        force: bool,
    },
    /// Serve the mesh over Arrow Flight SQL (and HTTP: web UI, JSON API, metrics).
    ///
    /// Prints `meshql listening on grpc://HOST:PORT` once it accepts connections, then
    /// `meshql http on http://HOST:PORT` when HTTP is on, and stops cleanly on Ctrl-C or SIGTERM.
    Serve {
        /// The mesh configuration (meshql.toml).
        #[arg(long, required_unless_present = "demo", conflicts_with = "demo")]
        config: Option<PathBuf>,
        /// Address to listen on (default: the config's server.bind, else 127.0.0.1:50051).
        /// Port 0 picks a free port.
        #[arg(long, value_name = "HOST:PORT")]
        bind: Option<String>,
        /// Address of the HTTP server (web UI, JSON API, /metrics); default: the config's
        /// `[http] bind`, else 127.0.0.1:8080 with --demo, else no HTTP server. Port 0 picks a
        /// free port.
        #[arg(long, value_name = "HOST:PORT")]
        http_bind: Option<String>,
        /// Serve the demo mesh, creating it first in --demo-dir if it is missing (with the web UI
        /// on http://127.0.0.1:8080).
        #[arg(long)]
        demo: bool,
        /// Where the demo mesh lives with --demo.
        #[arg(long, default_value = "demo-mesh", requires = "demo")]
        demo_dir: PathBuf,
    },
    /// Run a cluster worker: executes plan fragments sent by a `meshql serve` whose
    /// `[cluster] workers` lists it (see docs/cluster.md).
    ///
    /// Prints `meshql worker listening on http://HOST:PORT` once it accepts connections. The
    /// cluster's shared secret is read from the variable named by `[cluster] secret_env`
    /// (default MESHQL_CLUSTER_SECRET).
    Worker {
        /// The mesh configuration (meshql.toml): its domains' buckets and credentials.
        #[arg(long)]
        config: PathBuf,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:50052")]
        bind: String,
    },
    /// Run one SQL query in-process, with the same catalog and access rules as the server.
    Query {
        /// The mesh configuration (meshql.toml).
        #[arg(long)]
        config: PathBuf,
        /// The user to run the query as (a user of the configuration).
        #[arg(long)]
        user: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// The SQL query, e.g. "SELECT * FROM sales.orders LIMIT 5".
        sql: String,
    },
    /// Inspect and validate the catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Publish data products (see docs/publishing.md).
    Product {
        #[command(subcommand)]
        command: ProductCommand,
    },
}

#[derive(Subcommand)]
enum ProductCommand {
    /// Validate a manifest, check the data against its contract, refuse a breaking change
    /// without a major version bump, and install it atomically into the catalog (a running
    /// server picks it up within catalog.refresh_interval).
    ///
    /// Exit codes: 0 published (or would be, with --dry-run); 1 breaking change without a
    /// major version bump; 3 version refused; 4 invalid manifest or catalog; 5 data does not
    /// match the contract; 6 a quality rule of severity error fails; 7 the published manifest
    /// changed meanwhile (run again); 8 could not run.
    Publish {
        /// The mesh configuration (meshql.toml).
        #[arg(long)]
        config: PathBuf,
        /// Check everything but install nothing.
        #[arg(long)]
        dry_run: bool,
        /// How far back the audit log is searched for affected readers.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        /// The product manifest to publish.
        manifest: PathBuf,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Validate the configuration and every product manifest; exit 1 on any problem.
    ///
    /// Every problem is reported with its file and field. With --data, each product's files
    /// are also checked against its contract.
    Lint {
        /// The mesh configuration (meshql.toml).
        #[arg(long)]
        config: PathBuf,
        /// Also read each product's data and check it against the contract.
        #[arg(long)]
        data: bool,
    },
    /// Run the quality rules of every product (or of one) on its data; exit 1 when an
    /// `error` rule fails.
    ///
    /// Prints each rule's status and what was observed (e.g. `3 NULLs`, `2 duplicate keys`,
    /// `max 1200000000 > 1000000`). A rule that cannot be evaluated (unreadable data, a
    /// predicate failing at run time) counts as failed. `warning` rules never change the exit
    /// code. Rules of a product run in one query over its data (see docs/quality.md).
    Check {
        /// The mesh configuration (meshql.toml).
        #[arg(long)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// Only this product (`domain.product`).
        product: Option<String>,
    },
    /// Hash a password (read from standard input) for a user's `password_hash`.
    HashPassword,
    /// Compare a manifest with the published version of its product: the changes, the verdict,
    /// and who it would break (principals and recent queries from the audit log that read the
    /// affected columns).
    ///
    /// Exit codes: 0 accepted; 1 breaking without a major version bump; 3 version refused
    /// (changed without a new version, or going backwards); 4 invalid manifest or catalog;
    /// 8 could not run.
    Diff {
        /// The mesh configuration (meshql.toml).
        #[arg(long)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = publish::DiffFormat::Text)]
        format: publish::DiffFormat,
        /// How far back the audit log is searched for affected readers.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        /// The proposed product manifest.
        manifest: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    Json,
    Arrow,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets up logging once its configuration (`[telemetry]`) is loaded.
    if !matches!(cli.command, Command::Serve { .. }) {
        if let Err(e) = telemetry::init(None) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Threads that call into the engine get its caller stack, so that the engine's deep-stack
    // sections (plan drops, result cache lookups) run in place instead of on a fresh segment.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(meshql_engine::CALLER_STACK_SIZE)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Demo { dir, scale, force } => {
            demo(&dir, scale, force).await.map(|_| ExitCode::SUCCESS)
        }
        Command::Serve {
            config,
            bind,
            http_bind,
            demo: use_demo,
            demo_dir,
        } => {
            let config = match config {
                Some(c) => c,
                None => {
                    debug_assert!(use_demo);
                    let config = demo_dir.join("meshql.toml");
                    if !config.exists() {
                        demo(&demo_dir, 1, false).await?;
                    }
                    config
                }
            };
            serve(&config, bind, http_bind, use_demo)
                .await
                .map(|_| ExitCode::SUCCESS)
        }
        Command::Worker { config, bind } => worker(&config, &bind).await.map(|_| ExitCode::SUCCESS),
        Command::Query {
            config,
            user,
            format,
            sql,
        } => query(&config, &user, format, &sql).await,
        Command::Catalog {
            command: CatalogCommand::Lint { config, data },
        } => lint(&config, data).await,
        Command::Catalog {
            command:
                CatalogCommand::Diff {
                    config,
                    format,
                    since,
                    manifest,
                },
        } => Ok(publish::diff(&config, &manifest, format, since).await),
        Command::Product {
            command:
                ProductCommand::Publish {
                    config,
                    dry_run,
                    since,
                    manifest,
                },
        } => Ok(publish::publish(&config, &manifest, dry_run, since).await),
        Command::Catalog {
            command:
                CatalogCommand::Check {
                    config,
                    format,
                    product,
                },
        } => check(&config, format, product.as_deref()).await,
        Command::Catalog {
            command: CatalogCommand::HashPassword,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(|e| format!("reading the password: {e}"))?;
            let password = password.trim_end_matches(['\n', '\r']);
            let mut salt = [0u8; 16];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
            let hash = meshql_catalog::hash_password(password, &salt).map_err(|e| e.to_string())?;
            println!("{hash}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn demo(dir: &Path, scale: u32, force: bool) -> Result<(), String> {
    eprintln!("writing the demo mesh to {}", dir.display());
    let opts = DemoOptions {
        dir: dir.to_path_buf(),
        scale,
        force,
    };
    let mut progress = |line: &str| eprintln!("  {line}");
    let report = write_demo(&opts, &mut progress)
        .await
        .map_err(|e| e.to_string())?;
    for p in &report.kept_edits {
        eprintln!(
            "  kept {} (it differs from the demo default; --force overwrites it)",
            p.display()
        );
    }
    if !report.existing_data.is_empty() {
        eprintln!(
            "  kept existing data of {}",
            report.existing_data.join(", ")
        );
    }
    eprintln!("demo mesh ready: {}", report.config.display());
    eprintln!(
        "serve it with: meshql serve --config {}",
        report.config.display()
    );
    Ok(())
}

fn load(config: &Path) -> Result<Mesh, String> {
    Mesh::load(config).map_err(|e| match e {
        CatalogError::Invalid(_) => format!("{e}"),
        other => format!("cannot load {}: {other}", config.display()),
    })
}

/// Where `meshql serve --demo` serves HTTP unless told otherwise.
const DEMO_HTTP_BIND: &str = "127.0.0.1:8080";

async fn serve(
    config: &Path,
    bind: Option<String>,
    http_bind: Option<String>,
    demo: bool,
) -> Result<(), String> {
    // Scan before loading, so that a change racing with the load is seen at the first check.
    let fingerprint = meshql_catalog::CatalogFingerprint::scan(config);
    let mesh = load(config)?;
    let tracer = telemetry::init(Some(&mesh.config.telemetry))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    if mesh.config.server.demo_credentials {
        tracing::warn!("this mesh uses the DEMO CREDENTIALS (password = user name); never expose it beyond this machine");
    }
    // One authenticator for every transport, so a token from one works on the other; fail at
    // start, not at the first login, when a JWT secret or key cannot be loaded.
    let auth = Arc::new(
        meshql_auth::Authenticator::try_new(&mesh.config)
            .map_err(|e| format!("{}: {e}", config.display()))?,
    );
    let tls = meshql_flight_server::check_tls(&mesh.config.server)
        .map_err(|e| format!("{}: server.tls: {e}", config.display()))?;
    let addr = bind.unwrap_or_else(|| mesh.config.server.bind.clone());
    let http_addr = http_bind
        .or_else(|| mesh.config.http.as_ref().map(|h| h.bind.clone()))
        .or_else(|| demo.then(|| DEMO_HTTP_BIND.to_string()));
    let products = mesh.products().count();
    let domains = mesh.domains.len();
    // With `[cluster] workers`, queries are distributed; the coordinator lives as long as the server.
    let coordinator = if mesh.config.cluster.workers.is_empty() {
        None
    } else {
        Some(
            meshql_cluster::Coordinator::start(&mesh.config.cluster)
                .await
                .map_err(|e| format!("{}: cluster: {e}", config.display()))?,
        )
    };
    let options = match &coordinator {
        Some(c) => c.engine_options(meshql_engine::EngineOptions::default()),
        None => meshql_engine::EngineOptions::default(),
    };
    let refresh = mesh.config.refresh_interval;
    let engine = MeshEngine::try_new_with_options(mesh, options).map_err(|e| e.to_string())?;
    // Hot reload of manifests, policies and users every `catalog.refresh_interval`.
    let reloader = meshql_engine::Reloader::new(
        engine.clone(),
        config,
        fingerprint,
        Some(auth_reload_hook(&auth)),
    );
    let _reload_task = (!refresh.is_zero()).then(|| reloader.spawn(refresh));
    // Quality checks of new data versions, in the background (bounded by [quality]).
    let _monitor = engine.spawn_quality_monitor();
    let listener = meshql_flight_server::bind(&addr)
        .await
        .map_err(|e| e.to_string())?;
    let local = meshql_flight_server::local_addr(&listener).map_err(|e| e.to_string())?;
    let http_listener = match &http_addr {
        Some(a) => Some(meshql_http::bind(a).await.map_err(|e| e.to_string())?),
        None => None,
    };
    tracing::info!(domains, products, addr = %local, "serving the mesh");
    let flight_url = format!("{}://{local}", if tls { "grpc+tls" } else { "grpc" });
    println!("meshql listening on {flight_url}");
    let http = match http_listener {
        Some(l) => {
            let http_local = meshql_http::local_addr(&l).map_err(|e| e.to_string())?;
            let metrics = meshql_http::install_metrics_recorder()
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
            let router = meshql_http::router(
                engine.clone(),
                Arc::clone(&auth),
                meshql_http::HttpOptions {
                    flight_url,
                    metrics,
                },
            );
            println!("meshql http on http://{http_local}");
            Some((l, router))
        }
        None => None,
    };
    let _ = std::io::stdout().flush();
    // One signal stops both servers.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let flight = meshql_flight_server::serve_with_authenticator(
        engine,
        auth,
        listener,
        stopped(stop_rx.clone()),
    );
    let http = async {
        match http {
            Some((listener, router)) => meshql_http::serve(router, listener, stopped(stop_rx))
                .await
                .map_err(|e| format!("HTTP server failed: {e}")),
            None => Ok(()),
        }
    };
    let (flight, http) = tokio::join!(flight, http);
    telemetry::shutdown(tracer).await;
    flight.map_err(|e| e.to_string())?;
    http?;
    tracing::info!("stopped");
    Ok(())
}

/// What a catalog reload asks of the authenticator: check the new users and `[auth.jwt]`
/// settings (a JWT key that cannot be loaded rejects the change), then put them in force.
fn auth_reload_hook(auth: &Arc<meshql_auth::Authenticator>) -> meshql_engine::ReloadHook {
    let auth = Arc::clone(auth);
    meshql_engine::ReloadHook(Arc::new(move |mesh: &Mesh| {
        let update = auth.prepare_update(&mesh.config).map_err(|e| {
            vec![meshql_catalog::Problem::new(
                &mesh.config.file,
                "auth.jwt",
                e,
            )]
        })?;
        let auth = Arc::clone(&auth);
        Ok(Box::new(move || auth.apply(update)) as meshql_engine::ReloadCommit)
    }))
}

async fn worker(config: &Path, bind: &str) -> Result<(), String> {
    let mesh = load(config)?;
    let worker = meshql_cluster::ClusterWorker::new(&mesh)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let listener = meshql_flight_server::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    let local = meshql_flight_server::local_addr(&listener).map_err(|e| e.to_string())?;
    println!("meshql worker listening on http://{local}");
    let _ = std::io::stdout().flush();
    worker
        .serve(listener, shutdown_signal())
        .await
        .map_err(|e| format!("{}: {e}", config.display()))?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

async fn query(
    config: &Path,
    user: &str,
    format: OutputFormat,
    sql: &str,
) -> Result<ExitCode, String> {
    let mesh = load(config)?;
    let user_config = mesh
        .config
        .user(user)
        .ok_or_else(|| format!("unknown user `{user}` (not in {})", config.display()))?;
    let principal = Principal::from_user(user_config);
    let engine = MeshEngine::try_new(mesh).map_err(|e| e.to_string())?;
    let session = engine.session(principal).map_err(|e| e.to_string())?;
    let (schema, mut stream) = session.sql(sql).await.map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io = |e: std::io::Error| format!("writing output: {e}");
    let arrow_err = |e: arrow::error::ArrowError| format!("writing output: {e}");
    match format {
        OutputFormat::Table => {
            let mut batches = Vec::new();
            while let Some(b) = stream.next().await {
                batches.push(b.map_err(|e| e.to_string())?);
            }
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if batches.is_empty() {
                batches.push(arrow::array::RecordBatch::new_empty(schema));
            }
            let table = arrow::util::pretty::pretty_format_batches(&batches).map_err(arrow_err)?;
            writeln!(out, "{table}").map_err(io)?;
            writeln!(out, "{rows} row(s)").map_err(io)?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            while let Some(b) = stream.next().await {
                w.write(&b.map_err(|e| e.to_string())?).map_err(arrow_err)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            while let Some(b) = stream.next().await {
                w.write(&b.map_err(|e| e.to_string())?).map_err(arrow_err)?;
            }
            w.finish().map_err(arrow_err)?;
        }
        OutputFormat::Arrow => {
            let mut w =
                arrow::ipc::writer::StreamWriter::try_new(&mut out, &schema).map_err(arrow_err)?;
            while let Some(b) = stream.next().await {
                w.write(&b.map_err(|e| e.to_string())?).map_err(arrow_err)?;
            }
            w.finish().map_err(arrow_err)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn lint(config: &Path, data: bool) -> Result<ExitCode, String> {
    let mesh = match Mesh::load(config) {
        Ok(m) => m,
        Err(CatalogError::Invalid(problems)) => {
            for p in &problems {
                println!("{p}");
            }
            println!("{} problem(s) found", problems.len());
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(format!("cannot load {}: {e}", config.display())),
    };
    let products = mesh.products().count();
    let mut problems = 0;
    let engine = MeshEngine::try_new(mesh.clone()).map_err(|e| e.to_string())?;
    for (file, field, message) in engine
        .check_policies()
        .into_iter()
        .chain(meshql_engine::quality::lint_quality(&mesh))
    {
        println!("{}: {field}: {message}", file.display());
        problems += 1;
    }
    if data {
        let files: std::collections::HashMap<String, PathBuf> = mesh
            .products()
            .map(|p| (p.qualified_name(), p.file.clone()))
            .collect();
        let engine = MeshEngine::try_new(mesh).map_err(|e| e.to_string())?;
        for (product, message) in engine.check_data().await {
            let file = files
                .get(&product)
                .map(|f| f.display().to_string())
                .unwrap_or_default();
            println!("{file}: data of `{product}`: {message}");
            problems += 1;
        }
    }
    if problems > 0 {
        println!("{problems} problem(s) found");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "ok: {products} product(s){}",
        if data {
            ", data matches the contracts"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn check(
    config: &Path,
    format: CheckFormat,
    product: Option<&str>,
) -> Result<ExitCode, String> {
    use meshql_engine::quality::{check_mesh_quality, CheckOptions, RuleStatus};
    let mesh = load(config)?;
    // A predicate that does not type-check is a catalog problem: report it like `lint`.
    let lint = meshql_engine::quality::lint_quality(&mesh);
    if !lint.is_empty() {
        for (file, field, message) in &lint {
            println!("{}: {field}: {message}", file.display());
        }
        println!("{} problem(s) found", lint.len());
        return Ok(ExitCode::FAILURE);
    }
    let checks = check_mesh_quality(&mesh, product, &CheckOptions::for_mesh(&mesh))
        .await
        .map_err(|e| e.to_string())?;
    let passed = checks.iter().all(|c| c.passed());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io = |e: std::io::Error| format!("writing output: {e}");
    match format {
        CheckFormat::Json => {
            let text = serde_json::to_string_pretty(&checks).map_err(|e| e.to_string())?;
            writeln!(out, "{text}").map_err(io)?;
        }
        CheckFormat::Text => {
            let (mut rules, mut failed_errors, mut failed_warnings) = (0, 0, 0);
            for c in &checks {
                let mut head = format!("{}  {}", c.product, c.data_version);
                if let Some(rows) = c.rows {
                    head.push_str(&format!("  {rows} rows"));
                }
                if c.scans > 0 {
                    head.push_str(&format!("  {} scan(s), {} ms", c.scans, c.duration_ms));
                }
                writeln!(out, "{head}").map_err(io)?;
                if let Some(e) = &c.error {
                    writeln!(out, "  data unavailable: {e}").map_err(io)?;
                }
                if c.rules.is_empty() {
                    writeln!(out, "  (no quality rules)").map_err(io)?;
                }
                let name_w = c.rules.iter().map(|r| r.rule.len()).max().unwrap_or(0);
                for r in &c.rules {
                    rules += 1;
                    if r.status != RuleStatus::Pass {
                        match r.severity {
                            meshql_catalog::Severity::Error => failed_errors += 1,
                            meshql_catalog::Severity::Warning => failed_warnings += 1,
                        }
                    }
                    let status = match r.status {
                        RuleStatus::Pass => "pass ",
                        RuleStatus::Fail => "FAIL ",
                        RuleStatus::Error => "ERROR",
                    };
                    writeln!(
                        out,
                        "  {status}  {:<7}  {:<name_w$}  {}  ({})",
                        r.severity.as_str(),
                        r.rule,
                        r.observed,
                        r.definition
                    )
                    .map_err(io)?;
                }
            }
            writeln!(
                out,
                "{} product(s), {rules} rule(s): {} passed, {failed_errors} error rule(s) failed, {failed_warnings} warning rule(s) failed",
                checks.len(),
                rules - failed_errors - failed_warnings
            )
            .map_err(io)?;
        }
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
