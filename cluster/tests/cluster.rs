//! A coordinator and two workers in one process, over real gRPC on 127.0.0.1: same answers as a
//! single node for every demo principal, the policy barrier travels or the query fails, workers
//! refuse callers without the secret, and the audit record names the workers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::util::pretty::pretty_format_batches;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::grpc::create_worker_client;
use datafusion_distributed::GetWorkerInfoRequest;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use futures::TryStreamExt;
use meshql_catalog::{Mesh, Principal};
use meshql_cluster::{ClusterSecret, ClusterWorker, Coordinator, MeshqlCodec};
use meshql_engine::demo::{write_demo, DemoOptions};
use meshql_engine::{EngineError, EngineOptions, MeshEngine};
use tokio::sync::oneshot;

const SECRET: &str = "cluster-test-secret-0123456789";

/// The process-wide metrics recorder of this test binary (tests filter by their own workers).
fn metrics_snapshotter() -> &'static metrics_util::debugging::Snapshotter {
    static SNAPSHOTTER: std::sync::OnceLock<metrics_util::debugging::Snapshotter> =
        std::sync::OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("the only metrics recorder");
        snapshotter
    })
}

type MetricsSnapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    metrics_util::debugging::DebugValue,
)>;

/// Counter `name` per `worker` label, for the given workers. (A snapshot drains the counters:
/// only this test takes them.)
fn counters(snapshot: &MetricsSnapshot, name: &str, workers: &[RunningWorker]) -> Vec<u64> {
    workers
        .iter()
        .map(|w| {
            snapshot
                .iter()
                .filter(|(key, _, _, _)| {
                    key.key().name() == name
                        && key
                            .key()
                            .labels()
                            .any(|l| l.key() == "worker" && l.value() == w.url)
                })
                .map(|(_, _, _, value)| match value {
                    metrics_util::debugging::DebugValue::Counter(n) => *n,
                    _ => 0,
                })
                .sum()
        })
        .collect()
}

async fn demo_mesh(dir: &Path) -> PathBuf {
    let opts = DemoOptions {
        dir: dir.to_path_buf(),
        scale: 1,
        force: false,
    };
    let mut progress = |_: &str| {};
    write_demo(&opts, &mut progress).await.expect("demo").config
}

/// A worker serving on an ephemeral port until dropped.
struct RunningWorker {
    url: String,
    _stop: oneshot::Sender<()>,
}

async fn start_worker(mesh: &Mesh, codec: Arc<dyn PhysicalExtensionCodec>) -> RunningWorker {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let worker =
        ClusterWorker::with_codec(mesh, ClusterSecret::new(SECRET).unwrap(), codec).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        worker
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    RunningWorker { url, _stop: stop }
}

struct Cluster {
    single: MeshEngine,
    distributed: MeshEngine,
    coordinator: Coordinator,
    workers: Vec<RunningWorker>,
    audit_file: PathBuf,
}

async fn cluster(
    dir: &Path,
    worker_codec: Arc<dyn PhysicalExtensionCodec>,
    coordinator_codec: Arc<dyn PhysicalExtensionCodec>,
) -> Cluster {
    let config = demo_mesh(dir).await;
    cluster_from(&config, worker_codec, coordinator_codec).await
}

async fn cluster_from(
    config: &Path,
    worker_codec: Arc<dyn PhysicalExtensionCodec>,
    coordinator_codec: Arc<dyn PhysicalExtensionCodec>,
) -> Cluster {
    let mut mesh = Mesh::load(config).unwrap();
    // These tests count what runs on the workers: every query must run, none may be answered
    // from the coordinator's result cache.
    mesh.config.engine.result_cache_size = Some(0);
    let workers = vec![
        start_worker(&mesh, Arc::clone(&worker_codec)).await,
        start_worker(&mesh, worker_codec).await,
    ];
    let mut cluster_config = mesh.config.cluster.clone();
    cluster_config.workers = workers.iter().map(|w| w.url.parse().unwrap()).collect();
    // The demo products are tiny: spread every scan over both workers.
    cluster_config.scan_bytes_per_partition = 1;
    let coordinator = Coordinator::start_with(
        &cluster_config,
        ClusterSecret::new(SECRET).unwrap(),
        coordinator_codec,
    )
    .await
    .unwrap();
    assert!(
        coordinator.workers().iter().all(|(_, up)| *up),
        "{:?}",
        coordinator.workers()
    );
    let audit_file = mesh.config.audit.file.clone().unwrap();
    let single = MeshEngine::try_new(mesh.clone()).unwrap();
    // Both engines share the audit file; only the distributed one lists workers.
    let distributed = MeshEngine::try_new_with_options(
        mesh,
        coordinator.engine_options(EngineOptions::default()),
    )
    .unwrap();
    Cluster {
        single,
        distributed,
        coordinator,
        workers,
        audit_file,
    }
}

fn principal(engine: &MeshEngine, user: &str) -> Principal {
    Principal::from_user(engine.mesh().config.user(user).expect("demo user"))
}

async fn run(engine: &MeshEngine, user: &str, sql: &str) -> Result<Vec<RecordBatch>, EngineError> {
    let session = engine.session(principal(engine, user))?;
    let (_, stream) = session.sql(sql).await?;
    stream.try_collect().await
}

/// Rows as sorted text lines (order-insensitive comparison).
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let text = pretty_format_batches(batches).unwrap().to_string();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

const USERS: [&str; 5] = [
    "admin",
    "sales_analyst",
    "eu_analyst",
    "shipping_ds",
    "guest",
];

/// Queries over Parquet and Delta products (sales.orders and shipping.shipments are Delta).
const QUERIES: [&str; 12] = [
    "SELECT * FROM customers.customers",
    "SELECT region, count(*) AS n, min(email) AS e FROM customers.customers GROUP BY region",
    "SELECT count(*) FROM customers.customers WHERE region <> 'EU'",
    "SELECT i.sku, sum(i.quantity) AS q, sum(i.unit_price * i.quantity) AS v FROM sales.order_items i GROUP BY i.sku",
    "SELECT c.region, count(*) AS n FROM sales.order_items i JOIN sales.orders o ON i.order_id = o.order_id \
     JOIN customers.customers c ON o.customer_id = c.customer_id GROUP BY c.region",
    "SELECT o.order_id, c.name FROM sales.orders o JOIN customers.customers c ON o.customer_id = c.customer_id",
    "SELECT s.sku, s.warehouse, s.on_hand FROM inventory.stock s ORDER BY s.sku, s.warehouse LIMIT 7",
    "SELECT o.status, count(*) AS n, sum(o.total_amount) AS t FROM sales.orders o GROUP BY o.status",
    "SELECT region, count(*) AS n FROM sales.orders VERSION AS OF 0 GROUP BY region",
    "SELECT count(*) FROM sales.orders WHERE status = 'shipped'",
    "SELECT s.carrier, count(*) AS n FROM shipping.shipments s JOIN sales.orders o ON s.order_id = o.order_id \
     GROUP BY s.carrier",
    "SELECT o.region, count(*) AS n FROM sales.orders o WHERE lower(o.status) = 'shipped' AND o.total_amount > 10 \
     GROUP BY o.region",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_answers_and_same_rules_as_a_single_node() {
    metrics_snapshotter();
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), Arc::new(MeshqlCodec), Arc::new(MeshqlCodec)).await;
    for user in USERS {
        for sql in QUERIES {
            let single = run(&c.single, user, sql).await;
            let distributed = run(&c.distributed, user, sql).await;
            if user == "admin" {
                assert!(single.is_ok(), "{sql}: {single:?}");
            }
            match (single, distributed) {
                (Ok(a), Ok(b)) => assert_eq!(rows(&a), rows(&b), "{user}: {sql}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{user}: {sql}"),
                (a, b) => panic!("{user}: {sql}: single {a:?} vs cluster {b:?}"),
            }
        }
    }
    // The audit record names the workers of distributed queries; the single node's none.
    c.single.flush_audit();
    c.distributed.flush_audit();
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&c.audit_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let workers_of = |user: &str, sql: &str| -> Vec<BTreeSet<String>> {
        records
            .iter()
            .filter(|r| r["user"] == user && r["sql"] == sql)
            .map(|r| {
                r["workers"]
                    .as_array()
                    .map(|a| a.iter().map(|w| w.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            })
            .collect()
    };
    let all: BTreeSet<String> = c.workers.iter().map(|w| w.url.clone()).collect();
    // eu_analyst reads customers through a row filter and masks: the barrier travelled.
    let runs = workers_of("eu_analyst", QUERIES[1]);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().any(|w| w.is_empty()), "single node: {runs:?}");
    assert!(
        runs.iter().any(|w| !w.is_empty() && w.is_subset(&all)),
        "cluster: {runs:?}"
    );
    // Delta products are read on the workers too: a join with a Parquet product, a read under
    // a row filter (eu_analyst sees EU orders only), time travel, a filter pushed into the scan,
    // and a join of two Delta products.
    for (user, sql) in [
        ("admin", QUERIES[5]),
        ("eu_analyst", QUERIES[7]),
        ("admin", QUERIES[8]),
        ("admin", QUERIES[9]),
        ("shipping_ds", QUERIES[10]),
        ("sales_analyst", QUERIES[11]),
    ] {
        let runs = workers_of(user, sql);
        assert!(
            runs.iter().any(|w| !w.is_empty() && w.is_subset(&all)),
            "{user}: {sql}: {runs:?}"
        );
    }
    // meshql.audit lists the workers too, and shows each principal only its own records
    // (everyone's to admin).
    for user in USERS {
        let batches = run(
            &c.distributed,
            user,
            "SELECT \"user\", workers FROM meshql.audit",
        )
        .await
        .unwrap();
        let mut users = BTreeSet::new();
        let mut with_workers = 0;
        for b in &batches {
            let names = b.column(0).as_string::<i32>();
            let lists = b.column(1).as_list::<i32>();
            for i in 0..b.num_rows() {
                users.insert(names.value(i).to_string());
                let workers: BTreeSet<String> = lists
                    .value(i)
                    .as_string::<i32>()
                    .iter()
                    .map(|w| w.unwrap().to_string())
                    .collect();
                assert!(workers.is_subset(&all), "{user}: {workers:?}");
                with_workers += usize::from(!workers.is_empty());
            }
        }
        if user == "admin" {
            assert_eq!(users.len(), USERS.len(), "{users:?}");
        } else {
            assert_eq!(users, BTreeSet::from([user.to_string()]), "{user}");
        }
        // Every principal ran distributed queries above (guest only fails to read).
        if user != "guest" {
            assert!(with_workers > 0, "{user}: no record names a worker");
        }
    }
    // Per-worker metrics: fragments sent to and rows and bytes received from each worker.
    let snapshot: MetricsSnapshot = metrics_snapshotter().snapshot().into_vec();
    for name in [
        meshql_cluster::telemetry::WORKER_FRAGMENTS,
        meshql_cluster::telemetry::WORKER_ROWS,
        meshql_cluster::telemetry::WORKER_BYTES,
    ] {
        let per_worker = counters(&snapshot, name, &c.workers);
        assert!(per_worker.iter().all(|n| *n > 0), "{name}: {per_worker:?}");
    }
    assert_eq!(
        counters(
            &snapshot,
            meshql_cluster::telemetry::WORKER_ERRORS,
            &c.workers
        ),
        [0, 0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restricted_plans_really_run_on_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), Arc::new(MeshqlCodec), Arc::new(MeshqlCodec)).await;
    let text = plan_text(
        &c.distributed,
        "eu_analyst",
        "SELECT region, count(*) FROM customers.customers GROUP BY region",
    )
    .await;
    assert!(text.contains("MeshqlClusterExec"), "{text}");
    assert!(text.contains("DistributedExec"), "{text}");
    // EXPLAIN-style output never shows the policy predicate or the mask.
    assert!(!text.contains("region = "), "{text}");
    assert!(!text.contains("***"), "{text}");
}

/// A codec that cannot rebuild a policy barrier (as a worker of another version would); the
/// other meshql nodes (product scan wrappers) it decodes as usual.
#[derive(Debug)]
struct CannotDecode;

impl PhysicalExtensionCodec for CannotDecode {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        c: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let node = MeshqlCodec.try_decode(buf, inputs, ctx, c)?;
        if node.name() == "MeshqlPolicyExec" {
            return Err(DataFusionError::Plan("no meshql codec here".to_string()));
        }
        Ok(node)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        c: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        MeshqlCodec.try_encode(node, buf, c)
    }
}

/// A coordinator codec that mangles what it sends: the policy barrier arrives incomplete.
#[derive(Debug)]
struct Truncating;

impl PhysicalExtensionCodec for Truncating {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        c: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        MeshqlCodec.try_decode(buf, inputs, ctx, c)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        c: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let barrier = node.name() == "MeshqlPolicyExec";
        MeshqlCodec.try_encode(node, buf, c)?;
        if barrier {
            // Keep only the kind and product: the secured plan is lost on the way.
            let keep = buf.len().min(40);
            buf.truncate(keep);
        }
        Ok(())
    }
}

/// The physical plan of `sql` for `user`, as EXPLAIN would show it.
async fn plan_text(engine: &MeshEngine, user: &str, sql: &str) -> String {
    let session = engine.session(principal(engine, user)).unwrap();
    let planned = session.plan_sql(sql).await.unwrap();
    let plan = session.physical_plan(&planned).await.unwrap();
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    text
}

async fn assert_fails_closed(c: &Cluster, why: &str) {
    for (user, sql) in [
        (
            "eu_analyst",
            "SELECT name, count(*) FROM customers.customers GROUP BY name",
        ),
        (
            "sales_analyst",
            "SELECT email, count(*) FROM customers.customers GROUP BY email",
        ),
    ] {
        let plan = plan_text(&c.distributed, user, sql).await;
        assert!(
            plan.contains("MeshqlClusterExec"),
            "not distributed: {plan}"
        );
        let err = run(&c.distributed, user, sql)
            .await
            .expect_err("a query whose policy barrier cannot travel must fail");
        let text = err.to_string();
        assert!(text.contains(why), "{text}");
        // Nothing of the data leaks through the error either.
        assert!(!text.contains('@'), "{text}");
        // Unrestricted reads are unaffected.
        let ok = run(&c.distributed, "admin", sql).await.unwrap();
        assert!(!rows(&ok).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_without_the_policy_codec_fail_queries_instead_of_leaking() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), Arc::new(CannotDecode), Arc::new(MeshqlCodec)).await;
    assert_fails_closed(&c, "no meshql codec here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mangled_policy_barrier_fails_queries_instead_of_leaking() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), Arc::new(MeshqlCodec), Arc::new(Truncating)).await;
    assert_fails_closed(&c, "refusing a plan fragment").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_refuse_callers_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), Arc::new(MeshqlCodec), Arc::new(MeshqlCodec)).await;
    for header in [
        None,
        Some("Bearer wrong-secret-0123456789"),
        Some("Basic x"),
    ] {
        let channel = tonic::transport::Endpoint::from_shared(c.workers[0].url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let header = header.map(http::HeaderValue::from_static);
        let authed = tower::ServiceBuilder::new()
            .map_request(move |mut r: http::Request<tonic::body::Body>| {
                if let Some(h) = &header {
                    r.headers_mut()
                        .insert(http::header::AUTHORIZATION, h.clone());
                }
                r
            })
            .service(channel);
        let mut client = create_worker_client(
            datafusion_distributed::grpc::BoxCloneSyncChannel::new(authed),
        );
        let err = client
            .get_worker_info(GetWorkerInfoRequest {})
            .await
            .err()
            .expect("refused");
        let status = match &err {
            DataFusionError::External(e) => e.downcast_ref::<tonic::Status>().cloned(),
            _ => None,
        }
        .unwrap_or_else(|| panic!("not a gRPC status: {err:?}"));
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        assert!(!status.message().contains(SECRET));
    }
    // The coordinator itself gets in.
    c.coordinator.check_workers().await;
    assert!(c.coordinator.workers().iter().all(|(_, up)| *up));
}

/// Overwrites everything between a Parquet file's magic and its footer: the file still opens
/// (schema, statistics) but its pages cannot be read.
fn corrupt_pages(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    let footer = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    for b in &mut bytes[4..n - 8 - footer] {
        *b = 0xFF;
    }
    std::fs::write(path, bytes).unwrap();
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            parquet_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_on_workers_are_reported_as_on_a_single_node() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster(dir.path(), Arc::new(MeshqlCodec), Arc::new(MeshqlCodec)).await;
    // A failed cast, evaluated on the workers (in the partial aggregation).
    let sql = "SELECT CAST(email AS INT) AS e, count(*) FROM customers.customers GROUP BY e";
    let plan = plan_text(&c.distributed, "admin", sql).await;
    assert!(
        plan.contains("MeshqlClusterExec"),
        "not distributed: {plan}"
    );
    let single = run(&c.single, "admin", sql)
        .await
        .expect_err("a failed cast");
    let distributed = run(&c.distributed, "admin", sql)
        .await
        .expect_err("a failed cast");
    assert!(
        matches!(distributed, EngineError::Execution { .. }),
        "{distributed:?}"
    );
    assert_eq!(single.to_string(), distributed.to_string());

    // A product whose pages cannot be read: unavailable, naming the product, for an
    // unrestricted read and for one under policies (the scan inside the barrier).
    let customers = dir.path().join("buckets/customers");
    let mut files = Vec::new();
    parquet_files(&customers, &mut files);
    assert!(!files.is_empty(), "no Parquet files under {customers:?}");
    // Distributed while the files are sound. (Once they are damaged, planning may already
    // fail: the file listing is not cached, so changed files' footers are read again then.)
    let sql = "SELECT name, count(*) FROM customers.customers GROUP BY name";
    for user in ["admin", "eu_analyst"] {
        let plan = plan_text(&c.distributed, user, sql).await;
        assert!(
            plan.contains("MeshqlClusterExec"),
            "not distributed: {plan}"
        );
    }
    for f in &files {
        corrupt_pages(f);
    }
    for user in ["admin", "eu_analyst"] {
        let single = run(&c.single, user, sql).await.expect_err("corrupt pages");
        let distributed = run(&c.distributed, user, sql)
            .await
            .expect_err("corrupt pages");
        for e in [&single, &distributed] {
            match e {
                EngineError::ProductUnavailable { product, .. } => {
                    assert_eq!(product, "customers.customers", "{user}: {e:?}")
                }
                other => panic!("{user}: not a product error: {other:?}"),
            }
        }
        if user == "admin" {
            // (Under a policy the split scan meets the damage through another Parquet code path
            // than the whole-file scan of a single node, so the wording of the cause differs.)
            assert_eq!(single.to_string(), distributed.to_string());
        }
        assert!(
            !distributed
                .to_string()
                .contains("meshql.product_unavailable"),
            "{distributed}"
        );
    }
    // A Delta product whose data files are gone (its log still lists them).
    let mut files = Vec::new();
    parquet_files(&dir.path().join("buckets/shipping/shipments"), &mut files);
    assert!(!files.is_empty());
    for f in &files {
        std::fs::remove_file(f).unwrap();
    }
    let sql = "SELECT carrier, count(*) FROM shipping.shipments GROUP BY carrier";
    let plan = plan_text(&c.distributed, "admin", sql).await;
    assert!(
        plan.contains("MeshqlClusterExec"),
        "not distributed: {plan}"
    );
    let single = run(&c.single, "admin", sql)
        .await
        .expect_err("missing files");
    let distributed = run(&c.distributed, "admin", sql)
        .await
        .expect_err("missing files");
    for e in [&single, &distributed] {
        match e {
            EngineError::ProductUnavailable { product, .. } => {
                assert_eq!(product, "shipping.shipments", "{e:?}")
            }
            other => panic!("not a product error: {other:?}"),
        }
    }
    assert_eq!(single.to_string(), distributed.to_string());
    // The workers are fine: the query failed, not the cluster.
    assert!(c.coordinator.workers().iter().all(|(_, up)| *up));
}

/// Writes `sales.<name>`, a Delta product partitioned by `region`, in three commits of 30
/// rows each (ids 0..90, region by id % 3, amount = id), and its contract. `nested` adds a
/// struct column the contract does not expose: such a version is read by deltalake, the other
/// as Parquet files with partition values (`delta_files`).
async fn write_partitioned_delta(config: &Path, name: &str, nested: bool) {
    use arrow::array::{ArrayRef, Int64Array, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let root = config.parent().unwrap();
    let location = root.join("buckets/sales").join(name);
    std::fs::create_dir_all(&location).unwrap();
    let url = url::Url::from_directory_path(&location).unwrap();
    let note = Arc::new(Field::new("note", DataType::Int64, false));
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("amount", DataType::Int64, false),
    ];
    if nested {
        fields.push(Field::new(
            "extra",
            DataType::Struct(vec![Arc::clone(&note)].into()),
            false,
        ));
    }
    let schema = Arc::new(Schema::new(fields));
    let mut table = deltalake::DeltaTable::try_from_url(url).await.unwrap();
    for commit in 0..3i64 {
        let ids: Vec<i64> = (commit * 30..commit * 30 + 30).collect();
        let regions: Vec<&str> = ids
            .iter()
            .map(|i| ["EU", "NA", "APAC"][(i % 3) as usize])
            .collect();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from(regions)),
            Arc::new(Int64Array::from(ids.clone())),
        ];
        if nested {
            let notes: ArrayRef = Arc::new(Int64Array::from(ids));
            columns.push(Arc::new(StructArray::from(vec![(
                Arc::clone(&note),
                notes,
            )])));
        }
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        table = table
            .write(vec![batch])
            .with_save_mode(deltalake::protocol::SaveMode::Append)
            .with_partition_columns(["region"])
            .await
            .unwrap();
    }
    std::fs::write(
        root.join(format!("catalog/sales/products/{name}.toml")),
        r#"name = "NAME"
domain = "sales"
version = "1.0.0"
description = "Test rows partitioned by region."
owner = "sales-data@acme.example"
format = "delta"
location = "NAME"

[[schema]]
name = "id"
type = "bigint"
primary_key = true

[[schema]]
name = "region"
type = "string"

[[schema]]
name = "amount"
type = "bigint"
"#
        .replace("NAME", name),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_delta_products_are_read_on_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_mesh(dir.path()).await;
    write_partitioned_delta(&config, "by_region", false).await;
    write_partitioned_delta(&config, "by_region_nested", true).await;
    let c = cluster_from(&config, Arc::new(MeshqlCodec), Arc::new(MeshqlCodec)).await;
    // (sql, expected rows): region values come from the partition paths, not the files.
    let cases = [
        (
            "SELECT region, count(*) AS n, sum(amount) AS s FROM sales.TABLE GROUP BY region",
            vec![
                "| APAC   | 30 | 1365 |",
                "| EU     | 30 | 1305 |",
                "| NA     | 30 | 1335 |",
            ],
        ),
        // A filter on the partition column prunes files on the worker as on the coordinator.
        (
            "SELECT region, count(*) AS n, max(id) AS m FROM sales.TABLE WHERE region <> 'NA' GROUP BY region",
            vec!["| APAC   | 30 | 89 |", "| EU     | 30 | 87 |"],
        ),
        // The second commit: ids 0..60.
        (
            "SELECT region, count(*) AS n, sum(amount) AS s FROM sales.TABLE VERSION AS OF 1 \
             GROUP BY region",
            vec![
                "| APAC   | 20 | 610 |",
                "| EU     | 20 | 570 |",
                "| NA     | 20 | 590 |",
            ],
        ),
    ];
    // The plain table's scans travel as Parquet scans; the nested one's as deltalake's call
    // (docs/cluster.md).
    for (table, by_deltalake) in [("by_region", false), ("by_region_nested", true)] {
        for (sql, expected) in &cases {
            let sql = &sql.replace("TABLE", table);
            let plan = plan_text(&c.distributed, "admin", sql).await;
            assert!(
                plan.contains("MeshqlClusterExec"),
                "not distributed: {plan}"
            );
            assert_eq!(plan.contains("DeltaScanExec"), by_deltalake, "{plan}");
            let single = rows(&run(&c.single, "admin", sql).await.unwrap());
            let distributed = rows(&run(&c.distributed, "admin", sql).await.unwrap());
            assert_eq!(&single, expected, "{sql}");
            assert_eq!(&distributed, expected, "{sql}");
        }
    }
}
