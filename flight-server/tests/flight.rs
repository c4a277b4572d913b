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
    service: meshql_flight_server::MeshFlightSqlService,
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
        let server_config = engine.mesh().config.server.clone();
        let service = meshql_flight_server::MeshFlightSqlService::try_new(engine).unwrap();
        let listener = meshql_flight_server::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = service.clone();
        let handle = tokio::spawn(async move {
            meshql_flight_server::serve_service(serving, &server_config, listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            service,
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

/// The raw Flight client of `c` with its bearer token, for calls the Flight SQL client lacks.
fn authorized<T>(c: &FlightSqlServiceClient<Channel>, message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    let token = c.token().expect("logged in");
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn wait_until_idle(server: &TestServer) {
    // A bound, not a timing assertion: work must stop eventually, however slow the machine.
    // The server signals each stream's end; no polling.
    tokio::time::timeout(Duration::from_secs(60), server.service.idle())
        .await
        .expect("the server kept streaming a result nobody reads");
}

const HUGE: &str = "SELECT value, value * 2 AS twice FROM generate_series(1, 10000000000)";

#[tokio::test]
async fn client_disconnect_stops_the_query() {
    let server = TestServer::start().await;
    let mut c = server.login("admin").await;
    let info = c.execute(HUGE.to_string(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = c.do_get(ticket).await.unwrap();
    assert!(stream.try_next().await.unwrap().unwrap().num_rows() > 0);
    assert_eq!(server.service.active_queries(), 1);
    drop(stream);
    drop(c);
    wait_until_idle(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn cancel_flight_info_stops_the_query() {
    let server = TestServer::start().await;
    let mut c = server.login("admin").await;
    let info = c.execute(HUGE.to_string(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = c.do_get(ticket).await.unwrap();
    assert!(stream.try_next().await.unwrap().unwrap().num_rows() > 0);

    let mut other = server.login("admin").await;
    let action = arrow_flight::Action::new(
        "CancelFlightInfo",
        prost::Message::encode_to_vec(&arrow_flight::CancelFlightInfoRequest::new(info.clone())),
    );
    let mut results = other.do_action(action).await.unwrap();
    let result = results.message().await.unwrap().expect("a result");
    let result: arrow_flight::CancelFlightInfoResult = prost::Message::decode(result.body).unwrap();
    assert_eq!(result.status, arrow_flight::CancelStatus::Cancelled as i32);
    // The reader sees a CANCELLED status, not a silently truncated result.
    let err = loop {
        match stream.try_next().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without reporting the cancellation"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("cancelled"), "{err}");
    wait_until_idle(&server).await;
    // Cancelling a finished query: not cancellable.
    let action = arrow_flight::Action::new(
        "CancelFlightInfo",
        prost::Message::encode_to_vec(&arrow_flight::CancelFlightInfoRequest::new(info)),
    );
    let mut results = other.do_action(action).await.unwrap();
    let result: arrow_flight::CancelFlightInfoResult =
        prost::Message::decode(results.message().await.unwrap().unwrap().body).unwrap();
    assert_eq!(
        result.status,
        arrow_flight::CancelStatus::NotCancellable as i32
    );
    server.stop().await;
}

#[tokio::test]
async fn prepared_statements_bind_parameters() {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    let server = TestServer::start().await;
    let mut c = server.login("admin").await;
    let mut stmt = c
        .prepare(
            "SELECT order_id, region FROM sales.orders WHERE order_id = ? AND region <> ?"
                .to_string(),
            None,
        )
        .await
        .unwrap();
    let params = stmt.parameter_schema().unwrap().clone();
    assert_eq!(params.fields().len(), 2);
    assert_eq!(params.field(0).data_type(), &DataType::Int64);
    assert_eq!(params.field(1).data_type(), &DataType::Utf8);

    // Executing without binding is a clear error.
    let err = stmt.execute().await.unwrap_err().to_string();
    assert!(err.contains("parameter"), "{err}");

    let schema = Arc::new(Schema::new(vec![
        Field::new("0", DataType::Int64, true),
        Field::new("1", DataType::Utf8, true),
    ]));
    let one = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(vec![3])),
            Arc::new(StringArray::from(vec!["nowhere"])),
        ],
    )
    .unwrap();
    stmt.set_parameters(one).unwrap();
    for _ in 0..2 {
        let info = stmt.execute().await.unwrap();
        let b = fetch(&mut c, info).await.unwrap();
        assert_eq!(rows(&b), 1);
        assert_eq!(b[0].column(0).as_primitive::<Int64Type>().value(0), 3);
    }
    // Many rows: the query runs once per row, results concatenated.
    let many = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 5])),
            Arc::new(StringArray::from(vec!["x", "x", "x"])),
        ],
    )
    .unwrap();
    stmt.set_parameters(many).unwrap();
    let info = stmt.execute().await.unwrap();
    let b = fetch(&mut c, info).await.unwrap();
    let ids: Vec<i64> = b
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, [1, 2, 5]);
    // A query cannot be executed as an update (executemany).
    let err = stmt.execute_update().await.unwrap_err().to_string();
    assert!(err.contains("read-only"), "{err}");
    stmt.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn statements_that_are_not_queries() {
    let server = TestServer::start().await;
    let mut c = server.login("admin").await;
    let mut stmt = c
        .prepare("CREATE TABLE t AS SELECT 1".to_string(), None)
        .await
        .unwrap();
    assert!(stmt.dataset_schema().unwrap().fields().is_empty());
    let err = stmt.execute_update().await.unwrap_err().to_string();
    assert!(
        err.contains("PermissionDenied") || err.contains("permission"),
        "{err}"
    );
    assert!(err.contains("read-only"), "{err}");
    let err = c
        .execute_update("DELETE FROM sales.orders".to_string(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("read-only"), "{err}");
    // Closing twice is fine.
    stmt.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn get_schema_for_statements_and_prepared_statements() {
    use arrow_flight::sql::{
        CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt,
    };
    use arrow_flight::FlightDescriptor;
    use prost::Message;

    let server = TestServer::start().await;
    let mut c = server.login("admin").await;
    let q = "SELECT order_id, order_ts, total_amount FROM sales.orders";
    let cmd = CommandStatementQuery {
        query: q.to_string(),
        transaction_id: None,
    };
    let descriptor = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
    let mut raw = c.inner().clone();
    let result = raw
        .get_schema(authorized(&c, descriptor))
        .await
        .unwrap()
        .into_inner();
    let schema = arrow::datatypes::Schema::try_from(&result).unwrap();
    let info = c.execute(q.to_string(), None).await.unwrap();
    assert_eq!(schema, info.try_decode_schema().unwrap());
    assert!(matches!(
        schema.field(2).data_type(),
        DataType::Decimal128(_, _)
    ));

    let stmt = c.prepare(q.to_string(), None).await.unwrap();
    let handle = {
        // The handle is not exposed by the client; replay the prepare by hand.
        let action = arrow_flight::Action::new(
            "CreatePreparedStatement",
            arrow_flight::sql::ActionCreatePreparedStatementRequest {
                query: q.to_string(),
                transaction_id: None,
            }
            .as_any()
            .encode_to_vec(),
        );
        let mut r = c.do_action(action).await.unwrap();
        let any = arrow_flight::sql::Any::decode(r.message().await.unwrap().unwrap().body).unwrap();
        let res: arrow_flight::sql::ActionCreatePreparedStatementResult =
            any.unpack().unwrap().unwrap();
        res.prepared_statement_handle
    };
    let cmd = CommandPreparedStatementQuery {
        prepared_statement_handle: handle,
    };
    let descriptor = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
    let result = raw
        .get_schema(authorized(&c, descriptor))
        .await
        .unwrap()
        .into_inner();
    let prepared_schema = arrow::datatypes::Schema::try_from(&result).unwrap();
    assert_eq!(&prepared_schema, stmt.dataset_schema().unwrap());
    // Without a token: unauthenticated, like every other call.
    let descriptor = FlightDescriptor::new_cmd(
        CommandStatementQuery {
            query: "SELECT 1".into(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec(),
    );
    let err = raw.get_schema(descriptor).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test]
async fn metadata_rpcs_for_jdbc() {
    use arrow_flight::sql::{
        CommandGetCrossReference, CommandGetExportedKeys, CommandGetImportedKeys,
        CommandGetPrimaryKeys, CommandGetXdbcTypeInfo,
    };

    let server = TestServer::start().await;
    let mut c = server.login("admin").await;

    let info = c.get_table_types().await.unwrap();
    let b = fetch(&mut c, info).await.unwrap();
    let types: Vec<_> = b[0].column(0).as_string::<i32>().iter().flatten().collect();
    assert_eq!(types, ["SYSTEM TABLE", "TABLE"]);

    // Grafana asks for `BASE TABLE` and `table`.
    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec!["BASE TABLE".into(), "table".into()],
            include_schema: false,
        })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await.unwrap();
    assert_eq!(rows(&b), 7, "every product, no system table");

    // Column metadata in table_schema.
    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("mesh".into()),
            db_schema_filter_pattern: Some("sales".into()),
            table_name_filter_pattern: Some("orders".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await.unwrap();
    assert_eq!(rows(&b), 1);
    let bytes = b[0].column(4).as_binary::<i32>().value(0);
    let schema = arrow::datatypes::Schema::try_from(IpcMessage(bytes.to_vec().into())).unwrap();
    let amount = schema.field_with_name("total_amount").unwrap();
    let md = amount.metadata();
    assert_eq!(md["ARROW:FLIGHT:SQL:TYPE_NAME"], "DECIMAL");
    assert!(md.contains_key("ARROW:FLIGHT:SQL:PRECISION"));
    assert!(md.contains_key("ARROW:FLIGHT:SQL:SCALE"));
    assert!(!md["ARROW:FLIGHT:SQL:REMARKS"].is_empty());
    assert_eq!(md["ARROW:FLIGHT:SQL:TABLE_NAME"], "orders");
    assert!(!schema.metadata()["meshql:description"].is_empty());
    assert!(!schema.metadata()["meshql:owner"].is_empty());

    let info = c
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("sales".into()),
            table: "orders".into(),
        })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await.unwrap();
    let cols: Vec<_> = b[0].column(3).as_string::<i32>().iter().flatten().collect();
    assert_eq!(cols, ["order_id"]);

    for info in [
        c.get_imported_keys(CommandGetImportedKeys {
            catalog: None,
            db_schema: None,
            table: "orders".into(),
        })
        .await
        .unwrap(),
        c.get_exported_keys(CommandGetExportedKeys {
            catalog: None,
            db_schema: None,
            table: "orders".into(),
        })
        .await
        .unwrap(),
        c.get_cross_reference(CommandGetCrossReference {
            pk_catalog: None,
            pk_db_schema: None,
            pk_table: "orders".into(),
            fk_catalog: None,
            fk_db_schema: None,
            fk_table: "order_items".into(),
        })
        .await
        .unwrap(),
    ] {
        let schema = info.clone().try_decode_schema().unwrap();
        assert_eq!(schema.fields().len(), 13);
        let b = fetch(&mut c, info).await.unwrap();
        assert_eq!(rows(&b), 0);
    }

    let info = c
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await.unwrap();
    assert!(rows(&b) >= 10);

    // All SqlInfo ids when none are asked for.
    let info = c.get_sql_info(vec![]).await.unwrap();
    let b = fetch(&mut c, info).await.unwrap();
    assert!(rows(&b) > 70, "{}", rows(&b));
    server.stop().await;
}

/// A product whose freshness SLA says `on_breach = "refuse"` and whose data is older than it:
/// reading it is FAILED_PRECONDITION naming the product and its SLA; GetTables carries the
/// product's status once it is known.
#[tokio::test]
async fn a_stale_product_under_refuse_is_failed_precondition() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DemoOptions {
        dir: dir.path().to_path_buf(),
        scale: 1,
        force: false,
    };
    let mut progress = |_: &str| {};
    let report = write_demo(&opts, &mut progress).await.unwrap();
    let manifest = dir.path().join("catalog/shipping/products/shipments.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "freshness = \"6h\"\n",
            "freshness = \"6h\"\non_breach = \"refuse\"\n",
        ),
    )
    .unwrap();
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    for entry in
        std::fs::read_dir(dir.path().join("buckets/shipping/shipments/_delta_log")).unwrap()
    {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(day_ago)
                .unwrap();
        }
    }
    let server = TestServer::start_with(dir, &report.config).await;
    let mut c = server.login("shipping_ds").await;
    let status = match c
        .execute("SELECT count(*) FROM shipping.shipments".to_string(), None)
        .await
    {
        Ok(info) => match fetch(&mut c, info).await {
            Err(arrow_flight::error::FlightError::Tonic(s)) => *s,
            other => panic!("{other:?}"),
        },
        Err(arrow_flight::error::FlightError::Tonic(s)) => *s,
        Err(other) => panic!("{other:?}"),
    };
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("shipping.shipments") && status.message().contains("SLA of 6h"),
        "{}",
        status.message()
    );
    // The server keeps serving; time travel is exempt.
    let b = sql(
        &mut c,
        "SELECT count(*) FROM shipping.shipments VERSION AS OF 0",
    )
    .await
    .unwrap();
    assert_eq!(rows(&b), 1);
    // meshql.products observes the product; GetTables then reports its last known status.
    sql(&mut c, "SELECT * FROM meshql.products").await.unwrap();
    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("mesh".into()),
            db_schema_filter_pattern: Some("shipping".into()),
            table_name_filter_pattern: Some("%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let b = fetch(&mut c, info).await.unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for batch in &b {
        for i in 0..batch.num_rows() {
            let name = batch.column(2).as_string::<i32>().value(i).to_string();
            let bytes = batch.column(4).as_binary::<i32>().value(i);
            let schema =
                arrow::datatypes::Schema::try_from(IpcMessage(bytes.to_vec().into())).unwrap();
            seen.insert(name, schema.metadata()["meshql:status"].clone());
        }
    }
    assert!(seen["shipments"].starts_with("stale: "), "{seen:?}");
    assert_eq!(
        seen["delivery_performance"],
        "at_risk: upstream product shipping.shipments is stale"
    );
    server.stop().await;
}
