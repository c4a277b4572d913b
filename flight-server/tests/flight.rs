//! Flight SQL end to end: a `TestServer` on an ephemeral port driven by arrow-flight's
//! `FlightSqlServiceClient`.

use std::path::Path;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use arrow_flight::{FlightInfo, IpcMessage};
use futures::TryStreamExt;
use meshql_catalog::Mesh;
use meshql_engine::demo::{write_demo, DemoOptions};
use meshql_engine::MeshEngine;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A meshql server over a fresh demo mesh, bound to 127.0.0.1:0.
struct TestServer {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let opts = DemoOptions {
            dir: dir.path().to_path_buf(),
            scale: 1,
            force: false,
        };
        let mut progress = |_: &str| {};
        let report = write_demo(&opts, &mut progress).await.unwrap();
        Self::start_with(dir, &report.config).await
    }

    async fn start_with(dir: tempfile::TempDir, config: &Path) -> Self {
        let engine = MeshEngine::try_new(Mesh::load(config).unwrap()).unwrap();
        let listener = meshql_flight_server::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            meshql_flight_server::serve(engine, listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            stop: Some(stop),
            handle: Some(handle),
            _dir: dir,
        }
    }

    async fn client(&self) -> FlightSqlServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        FlightSqlServiceClient::new(channel)
    }

    async fn login(&self, user: &str) -> FlightSqlServiceClient<Channel> {
        let mut c = self.client().await;
        c.handshake(user, user).await.unwrap();
        c
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }
}

async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, arrow_flight::error::FlightError> {
    let mut out = Vec::new();
    for ep in info.endpoint {
        let ticket = ep.ticket.expect("ticket");
        let stream = client.do_get(ticket).await?;
        out.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok(out)
}

async fn sql(
    client: &mut FlightSqlServiceClient<Channel>,
    q: &str,
) -> Result<Vec<RecordBatch>, String> {
    let info = client
        .execute(q.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    fetch(client, info).await.map_err(|e| e.to_string())
}

fn rows(b: &[RecordBatch]) -> usize {
    b.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test]
async fn handshake_query_and_schemas_agree() {
    let server = TestServer::start().await;
    let mut c = server.login("admin").await;
    let q = "SELECT o.order_id, c.email, s.carrier, s.shipped_at, o.total_amount
             FROM sales.orders o JOIN customers.customers c ON o.customer_id = c.customer_id
             JOIN shipping.shipments s ON s.order_id = o.order_id";
    let info = c.execute(q.to_string(), None).await.unwrap();
    assert_eq!(info.endpoint.len(), 1);
    assert!(info.endpoint[0].location.is_empty());
    assert_eq!(info.total_records, -1);
    let info_schema = info.clone().try_decode_schema().unwrap();
    let batches = fetch(&mut c, info).await.unwrap();
    assert!(rows(&batches) > 1000);
    assert_eq!(batches[0].schema().as_ref(), &info_schema);
    for f in info_schema.fields() {
        assert!(
            !matches!(
                f.data_type(),
                DataType::Utf8View | DataType::BinaryView | DataType::Dictionary(..)
            ),
            "{f}"
        );
    }
    // The same query through a prepared statement: same schema, executed twice.
    let mut stmt = c.prepare(q.to_string(), None).await.unwrap();
    let ds = stmt.dataset_schema().unwrap().clone();
    assert_eq!(&ds, &info_schema);
    for _ in 0..2 {
        let info = stmt.execute().await.unwrap();
        let b = fetch(&mut c, info).await.unwrap();
        assert_eq!(rows(&b), rows(&batches));
    }
    stmt.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn bad_credentials_and_tokens_are_unauthenticated() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let err = c.handshake("admin", "wrong").await.unwrap_err();
    assert!(
        err.to_string().contains("Unauthenticated")
            || err.to_string().contains("invalid user name or password"),
        "{err}"
    );
    let mut c = server.client().await;
    c.set_token("not-a-token".to_string());
    let err = c.execute("SELECT 1".to_string(), None).await.unwrap_err();
    assert!(err.to_string().contains("invalid token"), "{err}");
    // No token at all.
    let mut c = server.client().await;
    let err = c.get_catalogs().await.unwrap_err();
    assert!(err.to_string().contains("authorization"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn metadata_rpcs() {
    let server = TestServer::start().await;
    let mut c = server.login("admin").await;
    let info = c.get_catalogs().await.unwrap();
    let b = fetch(&mut c, info).await.unwrap();
    assert_eq!(b[0].column(0).as_string::<i32>().value(0), "mesh");

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: Some("s%".into()),
        })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await.unwrap();
    let names: Vec<_> = b[0].column(1).as_string::<i32>().iter().flatten().collect();
    assert_eq!(names, ["sales", "shipping"]);

    for include_schema in [false, true] {
        let cmd = CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("sales".into()),
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema,
        };
        let info = c.get_tables(cmd).await.unwrap();
        let b = fetch(&mut c, info).await.unwrap();
        assert_eq!(b[0].num_columns(), if include_schema { 5 } else { 4 });
        let tables: Vec<_> = b[0].column(2).as_string::<i32>().iter().flatten().collect();
        assert_eq!(tables, ["order_items", "orders"]);
        if include_schema {
            let bytes = b[0].column(4).as_binary::<i32>().value(1);
            let schema =
                arrow::datatypes::Schema::try_from(IpcMessage(bytes.to_vec().into())).unwrap();
            let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(
                names,
                [
                    "order_id",
                    "customer_id",
                    "order_ts",
                    "status",
                    "total_amount",
                    "region"
                ]
            );
        }
    }

    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
            SqlInfo::SqlIdentifierQuoteChar,
        ])
        .await
        .unwrap();
    let b = fetch(&mut c, info).await.unwrap();
    assert_eq!(rows(&b), 3);
    server.stop().await;
}

#[tokio::test]
async fn errors_are_clear_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let mut c = server.login("admin").await;
    let err = sql(&mut c, "SELEC 1").await.unwrap_err();
    assert!(err.contains("SELEC"), "{err}");
    let err = sql(&mut c, "SELECT * FROM sales.no_such_thing")
        .await
        .unwrap_err();
    assert!(err.contains("no_such_thing"), "{err}");
    let err = sql(&mut c, "CREATE TABLE t AS SELECT 1").await.unwrap_err();
    assert!(err.contains("read-only"), "{err}");

    // Delete a product's files: a clear error naming it; other products still answer.
    std::fs::remove_dir_all(server.dir().join("buckets/inventory/stock")).unwrap();
    let info = c
        .execute("SELECT * FROM inventory.stock".to_string(), None)
        .await;
    let err = match info {
        Ok(info) => fetch(&mut c, info).await.unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("inventory.stock"), "{err}");
    let b = sql(&mut c, "SELECT count(*) FROM customers.customers")
        .await
        .unwrap();
    assert_eq!(b[0].column(0).as_primitive::<Int64Type>().value(0), 1000);
    server.stop().await;
}

/// A query far too large to collect: the first batch arrives while the server is still
/// producing, and dropping the stream ends the work.
#[tokio::test]
async fn results_stream() {
    let server = TestServer::start().await;
    let mut c = server.login("admin").await;
    // 10^10 rows would never fit in memory: only a streaming server can answer the first batch.
    let info = c
        .execute(
            "SELECT value, value * 2 AS twice FROM generate_series(1, 10000000000)".to_string(),
            None,
        )
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let first = tokio::time::timeout(Duration::from_secs(120), async {
        let mut stream = c.do_get(ticket).await.unwrap();
        stream.try_next().await.unwrap().unwrap()
    })
    .await
    .expect("the first batch must arrive while the query is still running");
    assert!(first.num_rows() > 0);
    // The server is still responsive to other clients.
    let mut other = server.login("admin").await;
    let b = sql(&mut other, "SELECT 41 + 1").await.unwrap();
    assert_eq!(rows(&b), 1);
    server.stop().await;
}
