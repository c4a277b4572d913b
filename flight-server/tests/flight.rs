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
    engine: MeshEngine,
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
        Self::start_custom(dir, config, |s| s).await
    }

    /// A demo server with `extra` appended to its configuration and its service adjusted.
    async fn start_configured(
        extra: &str,
        customize: impl FnOnce(
            meshql_flight_server::MeshFlightSqlService,
        ) -> meshql_flight_server::MeshFlightSqlService,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let opts = DemoOptions {
            dir: dir.path().to_path_buf(),
            scale: 1,
            force: false,
        };
        let mut progress = |_: &str| {};
        let report = write_demo(&opts, &mut progress).await.unwrap();
        let text = std::fs::read_to_string(&report.config).unwrap();
        std::fs::write(&report.config, format!("{text}\n{extra}")).unwrap();
        Self::start_custom(dir, &report.config, customize).await
    }

    async fn start_custom(
        dir: tempfile::TempDir,
        config: &Path,
        customize: impl FnOnce(
            meshql_flight_server::MeshFlightSqlService,
        ) -> meshql_flight_server::MeshFlightSqlService,
    ) -> Self {
        let engine = MeshEngine::try_new(Mesh::load(config).unwrap()).unwrap();
        let server_config = engine.mesh().config.server.clone();
        let service =
            customize(meshql_flight_server::MeshFlightSqlService::try_new(engine.clone()).unwrap());
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
            engine,
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

/// ADBC and JDBC run every query as a prepared statement: create, GetFlightInfo, DoGet. Each
/// step runs the plan the one before made, so an execution is planned once; bound values are
/// planned when bound. A kept plan runs only for its owner: another user presenting the
/// statement's ticket is refused and leaves the owner's plan in place.
#[tokio::test]
async fn a_prepared_statement_is_planned_once_per_execution() {
    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    let server = TestServer::start().await;
    let mut admin = server.login("admin").await;
    let planned = || server.engine.statements_planned();
    let text = |batches: &[RecordBatch]| {
        arrow::util::pretty::pretty_format_batches(batches)
            .unwrap()
            .to_string()
    };
    let q = "SELECT region, email FROM customers.customers ORDER BY customer_id";
    let direct = sql(&mut admin, q).await.unwrap();

    let before = planned();
    let mut stmt = admin.prepare(q.to_string(), None).await.unwrap();
    let info = stmt.execute().await.unwrap();
    assert_eq!(text(&fetch(&mut admin, info).await.unwrap()), text(&direct));
    assert_eq!(
        planned() - before,
        1,
        "create, GetFlightInfo and DoGet plan once"
    );
    // Executed again: planned again (the data may have changed), once.
    let info = stmt.execute().await.unwrap();
    assert_eq!(planned() - before, 2);
    // Another user presenting the ticket is refused, and the owner's plan stays in place.
    for user in ["eu_analyst", "sales_analyst", "guest"] {
        let mut other = server.login(user).await;
        let err = fetch(&mut other, info.clone())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("prepared statement"), "{user}: {err}");
    }
    let mine = fetch(&mut admin, info).await.unwrap();
    assert_eq!(text(&mine), text(&direct));
    assert_eq!(planned() - before, 2, "the admin's DoGet ran the kept plan");
    // The same SQL prepared by another user is planned for them: their masks.
    let mut eu = server.login("eu_analyst").await;
    let own = sql(&mut eu, q).await.unwrap();
    let mut eu_stmt = eu.prepare(q.to_string(), None).await.unwrap();
    let info = eu_stmt.execute().await.unwrap();
    let got = fetch(&mut eu, info).await.unwrap();
    assert_eq!(text(&got), text(&own));
    assert_ne!(text(&got), text(&direct));
    stmt.close().await.unwrap();
    eu_stmt.close().await.unwrap();

    // Parameters: the plan made when values are bound is the one that runs.
    let mut stmt = admin
        .prepare(
            "SELECT order_id FROM sales.orders WHERE order_id = ?".to_string(),
            None,
        )
        .await
        .unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("0", DataType::Int64, true)]));
    for id in [3, 5] {
        let values = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![id]))],
        )
        .unwrap();
        stmt.set_parameters(values).unwrap();
        let before = planned();
        let info = stmt.execute().await.unwrap();
        let b = fetch(&mut admin, info).await.unwrap();
        assert_eq!(b[0].column(0).as_primitive::<Int64Type>().values(), &[id]);
        assert_eq!(
            planned() - before,
            1,
            "bind, GetFlightInfo and DoGet plan once"
        );
    }
    stmt.close().await.unwrap();
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

const DEMO_USERS: [&str; 5] = [
    "admin",
    "eu_analyst",
    "guest",
    "sales_analyst",
    "shipping_ds",
];
const JWT_SECRET_VAR: &str = "MESHQL_FLIGHT_TEST_JWT_SECRET";
const JWT_SECRET: &str = "flight-tests-hs256-secret-0123456789abcdef";

/// `[auth.jwt]` for an HS256 test identity provider, plus `extra` settings.
fn jwt_config(extra: &str) -> String {
    // Set once, before any server of these tests reads it.
    static SECRET: std::sync::Once = std::sync::Once::new();
    SECRET.call_once(|| std::env::set_var(JWT_SECRET_VAR, JWT_SECRET));
    format!(
        "[auth.jwt]\nhs256_secret_env = \"{JWT_SECRET_VAR}\"\naudiences = [\"meshql\"]\n\
         attribute_claims = {{ region = \"region\" }}\n{extra}"
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A JWT for `sub` with no groups, valid for ten minutes.
fn jwt_for(sub: &str, extra: serde_json::Value) -> String {
    let mut claims = serde_json::json!({"sub": sub, "aud": "meshql", "exp": now() + 600});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

impl TestServer {
    /// A client carrying `token` as its bearer token, without a handshake.
    async fn with_token(&self, token: &str) -> FlightSqlServiceClient<Channel> {
        let mut c = self.client().await;
        c.set_token(token.to_string());
        c
    }
}

/// Creates a prepared statement through the raw action, returning its handle.
async fn prepare_handle(
    c: &FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<bytes::Bytes, tonic::Status> {
    use arrow_flight::sql::{ActionCreatePreparedStatementRequest, ProstMessageExt};
    use prost::Message;
    let action = arrow_flight::Action::new(
        "CreatePreparedStatement",
        ActionCreatePreparedStatementRequest {
            query: sql.to_string(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec(),
    );
    let mut raw = c.inner().clone();
    let mut results = raw.do_action(authorized(c, action)).await?.into_inner();
    let body = results.message().await?.expect("a result").body;
    let any = arrow_flight::sql::Any::decode(body).unwrap();
    let res: arrow_flight::sql::ActionCreatePreparedStatementResult =
        any.unpack().unwrap().unwrap();
    Ok(res.prepared_statement_handle)
}

/// Executes a prepared statement by handle; returns its row count.
async fn execute_handle(
    c: &mut FlightSqlServiceClient<Channel>,
    handle: &bytes::Bytes,
) -> Result<usize, tonic::Status> {
    use arrow_flight::sql::{CommandPreparedStatementQuery, ProstMessageExt};
    use prost::Message;
    let cmd = CommandPreparedStatementQuery {
        prepared_statement_handle: handle.clone(),
    };
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
    let mut raw = c.inner().clone();
    let info = raw
        .get_flight_info(authorized(c, descriptor))
        .await?
        .into_inner();
    let batches = fetch(c, info)
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    Ok(rows(&batches))
}

/// Closes a prepared statement by handle through the raw action.
async fn close_handle(c: &FlightSqlServiceClient<Channel>, handle: &bytes::Bytes) {
    use arrow_flight::sql::{ActionClosePreparedStatementRequest, ProstMessageExt};
    use prost::Message;
    let action = arrow_flight::Action::new(
        "ClosePreparedStatement",
        ActionClosePreparedStatementRequest {
            prepared_statement_handle: handle.clone(),
        }
        .as_any()
        .encode_to_vec(),
    );
    let mut raw = c.inner().clone();
    let mut results = raw
        .do_action(authorized(c, action))
        .await
        .unwrap()
        .into_inner();
    while results.message().await.unwrap().is_some() {}
}

/// `(user, sql)` of every `meshql.audit` record the client may see.
async fn audit_records(c: &mut FlightSqlServiceClient<Channel>) -> Vec<(String, String)> {
    let b = sql(c, "SELECT \"user\", sql FROM meshql.audit")
        .await
        .unwrap();
    b.iter()
        .flat_map(|b| {
            let users = b.column(0).as_string::<i32>().clone();
            let sqls = b.column(1).as_string::<i32>().clone();
            (0..b.num_rows())
                .map(move |i| (users.value(i).to_string(), sqls.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn cancel(c: &mut FlightSqlServiceClient<Channel>, info: &FlightInfo) -> i32 {
    let action = arrow_flight::Action::new(
        "CancelFlightInfo",
        prost::Message::encode_to_vec(&arrow_flight::CancelFlightInfoRequest::new(info.clone())),
    );
    let mut results = c.do_action(action).await.unwrap();
    let result = results.message().await.unwrap().expect("a result");
    let result: arrow_flight::CancelFlightInfoResult = prost::Message::decode(result.body).unwrap();
    result.status
}

/// A JWT whose subject is a local user's name is a different principal (`jwt:<sub>`): it reads
/// none of that user's audit records and cannot use, close or cancel anything of theirs.
#[tokio::test]
async fn jwt_subjects_do_not_become_local_users() {
    let server = TestServer::start_configured(&jwt_config(""), |s| s).await;
    for user in DEMO_USERS {
        let mut local = server.login(user).await;
        let marker = format!("SELECT 'marker of {user}' AS m");
        assert_eq!(rows(&sql(&mut local, &marker).await.unwrap()), 1);
        let handle = prepare_handle(&local, "SELECT 1 AS one").await.unwrap();
        let running = local.execute(HUGE.to_string(), None).await.unwrap();
        let mut stream = local
            .do_get(running.endpoint[0].ticket.clone().unwrap())
            .await
            .unwrap();
        assert!(stream.try_next().await.unwrap().unwrap().num_rows() > 0);

        let mut token = server
            .with_token(&jwt_for(user, serde_json::json!({})))
            .await;
        // Its own first query, so that it has a record of its own.
        assert_eq!(rows(&sql(&mut token, "SELECT 1").await.unwrap()), 1);
        let seen = audit_records(&mut token).await;
        assert!(!seen.is_empty());
        assert!(
            seen.iter().all(|(u, _)| *u == format!("jwt:{user}")),
            "{user}: {seen:?}"
        );
        assert!(!seen.iter().any(|(_, s)| *s == marker), "{user}");
        // The local user does see the marker: the audit holds it.
        let own = audit_records(&mut local).await;
        assert!(own.iter().any(|(u, s)| u == user && *s == marker), "{user}");

        // The local user's prepared statement is not the token's: unknown, not closable.
        let err = execute_handle(&mut token, &handle).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{user}: {err}");
        close_handle(&token, &handle).await;
        assert_eq!(execute_handle(&mut local, &handle).await.unwrap(), 1);
        // Nor is its running query.
        assert_eq!(
            cancel(&mut token, &running).await,
            arrow_flight::CancelStatus::NotCancellable as i32,
            "{user}"
        );
        assert_eq!(
            cancel(&mut local, &running).await,
            arrow_flight::CancelStatus::Cancelled as i32,
            "{user}"
        );
        drop(stream);
    }
    wait_until_idle(&server).await;
    server.stop().await;
}

/// With `map_to_local_users = true`, a token whose subject names a local user is that user,
/// with the local user's groups and attributes (not the token's).
#[tokio::test]
async fn jwt_mapped_to_local_users_are_those_users() {
    let server =
        TestServer::start_configured(&jwt_config("map_to_local_users = true\n"), |s| s).await;
    let mut local = server.login("eu_analyst").await;
    let marker = "SELECT 'marker of the local eu_analyst' AS m";
    sql(&mut local, marker).await.unwrap();
    let handle = prepare_handle(&local, "SELECT 1 AS one").await.unwrap();
    // The token claims another region and admin's group: the local rules apply regardless.
    let claims = serde_json::json!({"region": "NA", "groups": ["admin", "pii_reader"]});
    let mut token = server
        .with_token(&jwt_for("eu_analyst", claims.clone()))
        .await;
    let seen = audit_records(&mut token).await;
    assert!(seen.iter().any(|(u, s)| u == "eu_analyst" && s == marker));
    assert!(seen.iter().all(|(u, _)| u == "eu_analyst"), "{seen:?}");
    assert_eq!(execute_handle(&mut token, &handle).await.unwrap(), 1);
    let b = sql(
        &mut token,
        "SELECT DISTINCT region FROM customers.customers",
    )
    .await
    .unwrap();
    let regions: Vec<_> = b
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(regions, ["EU"]);
    // A subject that is no local user stays in the JWT namespace, with its token's claims
    // (group `admin` lets it read every record, and its own are `jwt:eve`'s).
    let mut stranger = server.with_token(&jwt_for("eve", claims)).await;
    sql(&mut stranger, "SELECT 1").await.unwrap();
    let seen = audit_records(&mut stranger).await;
    assert!(seen.iter().any(|(u, _)| u == "jwt:eve"), "{seen:?}");
    assert!(
        seen.iter().any(|(u, s)| u == "eu_analyst" && s == marker),
        "{seen:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn jwts_not_yet_valid_are_unauthenticated() {
    let server = TestServer::start_configured(&jwt_config(""), |s| s).await;
    let future = jwt_for("eve", serde_json::json!({"nbf": now() + 3600}));
    let mut c = server.with_token(&future).await;
    let err = c.get_catalogs().await.unwrap_err().to_string();
    assert!(err.contains("not yet valid"), "{err}");
    // Within the documented leeway (30 s), a slightly early `nbf` is accepted.
    let skewed = jwt_for("eve", serde_json::json!({"nbf": now() + 10}));
    let mut c = server.with_token(&skewed).await;
    c.get_catalogs().await.unwrap();
    server.stop().await;
}

/// A login attempt costs one argon2 verification whether or not the user exists.
#[tokio::test]
async fn unknown_users_cost_a_real_password_check() {
    let server = TestServer::start().await;
    let auth = std::sync::Arc::clone(server.service.authenticator());
    for user in DEMO_USERS {
        for (name, password) in [(user, "wrong"), (&*format!("{user}_unknown"), user)] {
            let before = auth.password_verifications();
            let err = server
                .client()
                .await
                .handshake(name, password)
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("invalid user name or password"),
                "{err}"
            );
            assert_eq!(auth.password_verifications(), before + 1, "{name}");
        }
        let before = auth.password_verifications();
        server.login(user).await;
        assert_eq!(auth.password_verifications(), before + 1);
    }
    server.stop().await;
}

/// Every principal has its own bounded share of prepared statements (least recently used
/// closed within it); the server-wide limit refuses new ones instead of closing others'.
#[tokio::test]
async fn prepared_statements_are_bounded_per_principal() {
    let server = TestServer::start_configured("", |s| s.with_prepared_statement_limits(3, 8)).await;
    let mut others = Vec::new();
    for user in ["eu_analyst", "guest", "sales_analyst", "shipping_ds"] {
        let c = server.login(user).await;
        let h = prepare_handle(&c, "SELECT 1 AS one").await.unwrap();
        others.push((c, h));
    }
    let mut admin = server.login("admin").await;
    let mut handles = Vec::new();
    for i in 0..10 {
        handles.push(
            prepare_handle(&admin, &format!("SELECT {i} AS i"))
                .await
                .unwrap(),
        );
        // Keep the first one in use: it is never the least recently used.
        assert_eq!(execute_handle(&mut admin, &handles[0]).await.unwrap(), 1);
    }
    assert_eq!(execute_handle(&mut admin, &handles[0]).await.unwrap(), 1);
    for h in &handles[8..] {
        assert_eq!(execute_handle(&mut admin, h).await.unwrap(), 1);
    }
    for h in &handles[1..8] {
        let err = execute_handle(&mut admin, h).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }
    for (c, h) in &mut others {
        assert_eq!(
            execute_handle(c, h).await.unwrap(),
            1,
            "another principal's statement survived"
        );
    }
    // 3 + 4 statements held; one more principal's share still fits, then the server is full.
    let (c, _) = &others[0];
    prepare_handle(c, "SELECT 2").await.unwrap();
    let err = prepare_handle(&others[1].0, "SELECT 2").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("prepared statements"), "{err}");
    // A principal at its own limit still replaces its own.
    prepare_handle(&admin, "SELECT 11").await.unwrap();
    for (c, h) in &mut others {
        assert_eq!(execute_handle(c, h).await.unwrap(), 1);
    }
    server.stop().await;
}

/// Basic credentials are accepted on any call (the same authentication path as the handshake's
/// tokens and JWTs); the handshake is the only RPC that passes unauthenticated.
#[tokio::test]
async fn one_authentication_path_for_every_rpc() {
    use base64::Engine;
    let server = TestServer::start().await;
    let basic = base64::engine::general_purpose::STANDARD_NO_PAD.encode("eu_analyst:eu_analyst");
    let mut c = server.client().await;
    c.set_header("authorization", format!("Basic {basic}"));
    let b = sql(&mut c, "SELECT DISTINCT region FROM customers.customers")
        .await
        .unwrap();
    assert_eq!(rows(&b), 1);
    let mut c = server.client().await;
    c.set_header(
        "authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("eu_analyst:nope")
        ),
    );
    let err = c.get_catalogs().await.unwrap_err().to_string();
    assert!(err.contains("invalid user name or password"), "{err}");
    // Calls outside Flight SQL's commands are authenticated too.
    let mut raw = server.client().await.inner().clone();
    let err = raw
        .list_actions(tonic::Request::new(arrow_flight::Empty {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = raw
        .do_get(tonic::Request::new(arrow_flight::Ticket::new("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(err.message().contains("authorization"), "{err}");
    server.stop().await;
}

fn has_code(err: &str, code: tonic::Code) -> bool {
    err.contains(code.description())
}

/// Issue 9: inputs that used to overflow a worker's stack and abort the process, nesting of
/// every kind, oversized SQL and writes hidden under EXPLAIN, sent over Flight SQL: each fails
/// alone with a clear status while another client's connection keeps working.
#[tokio::test]
async fn no_input_stops_the_server() {
    let server = TestServer::start().await;
    let mut bystander = server.login("sales_analyst").await;
    let mut c = server.login("guest").await;
    let chain = |n: usize, term: &str, op: &str| vec![term; n].join(op);
    let deep = vec![
        format!("SELECT {}", chain(2000, "1", "+")),
        format!("SELECT {}", chain(3000, "true", " AND ")),
        format!("SELECT {}", chain(3000, "false", " OR ")),
        format!("SELECT {}", chain(3000, "'a'", " || ")),
        format!(
            "SELECT {} 1 {}",
            "CASE WHEN true THEN ".repeat(3000),
            " END".repeat(3000)
        ),
        format!("SELECT {} 1 {}", "(SELECT ".repeat(3000), ")".repeat(3000)),
        format!("SELECT {}1{}", "abs(".repeat(3000), ")".repeat(3000)),
        format!("SELECT {}1{}", "(".repeat(3000), ")".repeat(3000)),
        chain(3000, "SELECT 1", " UNION ALL "),
        format!("SELECT 1{}", "::bigint".repeat(3000)),
        format!("SELECT 1{}", "+1".repeat(400_000)),
        format!("SELECT '{}'", "x".repeat(2 * 1024 * 1024)),
    ];
    for q in &deep {
        let err = sql(&mut c, q).await.unwrap_err();
        assert!(
            has_code(&err, tonic::Code::InvalidArgument),
            "{}: {}",
            &q[..40],
            &err[..err.len().min(300)]
        );
        assert!(
            err.contains("max_expr_depth")
                || err.contains("max_sql_bytes")
                || err.contains("too deeply")
                || err.contains("ParserError"),
            "{}",
            &err[..err.len().min(300)]
        );
    }
    // Writes hidden under EXPLAIN are refused and write nothing.
    let target = server.dir().join("forged.csv");
    for form in ["EXPLAIN ANALYZE ", "EXPLAIN (ANALYZE) ", "EXPLAIN ", ""] {
        let q = format!("{form}COPY (SELECT 'x' AS a) TO '{}'", target.display());
        let err = sql(&mut c, &q).await.unwrap_err();
        assert!(has_code(&err, tonic::Code::PermissionDenied), "{q}: {err}");
    }
    assert!(!target.exists());
    // Everyone still gets answers.
    let b = sql(&mut c, "SELECT 1 + 1").await.unwrap();
    assert_eq!(rows(&b), 1);
    let b = sql(&mut bystander, "SELECT count(*) FROM sales.orders")
        .await
        .unwrap();
    assert_eq!(b[0].column(0).as_primitive::<Int64Type>().value(0), 5000);
    server.stop().await;
}

/// Issue 9: each kind of failure reaches the client with its status code.
#[tokio::test]
async fn failures_have_their_status_codes() {
    let server = TestServer::start().await;
    let mut c = server.login("sales_analyst").await;
    let cases: Vec<(&str, tonic::Code)> = vec![
        ("SELEC 1", tonic::Code::InvalidArgument),
        (
            "SELECT * FROM marketing.leads",
            tonic::Code::InvalidArgument,
        ),
        ("SELECT 1/0", tonic::Code::InvalidArgument),
        ("DROP TABLE sales.orders", tonic::Code::PermissionDenied),
        ("SHOW ALL", tonic::Code::PermissionDenied),
    ];
    for (q, code) in cases {
        let err = sql(&mut c, q).await.unwrap_err();
        assert!(has_code(&err, code), "{q}: {err}");
    }
    // A product whose files are gone is UNAVAILABLE, never INVALID_ARGUMENT, and its error
    // carries no local path.
    std::fs::remove_dir_all(server.dir().join("buckets/sales/order_items")).unwrap();
    let err = sql(&mut c, "SELECT * FROM sales.order_items")
        .await
        .unwrap_err();
    assert!(has_code(&err, tonic::Code::Unavailable), "{err}");
    assert!(err.contains("sales.order_items"), "{err}");
    let root = server.dir().display().to_string();
    assert!(!err.contains(root.trim_start_matches('/')), "{err}");
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

/// DoGet runs the plan GetFlightInfo made only for the principal that asked for it: the same
/// ticket presented by anyone else is planned again for them (their rows, their masks, or their
/// refusal), and a ticket presented twice still answers the second time.
#[tokio::test]
async fn a_planned_ticket_runs_only_for_its_principal() {
    let server = TestServer::start().await;
    let mut admin = server.login("admin").await;
    let q = "SELECT region, email FROM customers.customers ORDER BY customer_id";
    let text = |batches: &[RecordBatch]| {
        arrow::util::pretty::pretty_format_batches(batches)
            .unwrap()
            .to_string()
    };
    let expected = |user: &'static str| {
        let server = &server;
        async move {
            let mut c = server.login(user).await;
            sql(&mut c, q).await
        }
    };
    let own = [
        ("sales_analyst", expected("sales_analyst").await),
        ("eu_analyst", expected("eu_analyst").await),
        ("guest", expected("guest").await),
    ];
    assert!(own[2].1.is_err(), "the guest sees no customers");
    for (user, own) in own {
        let info = admin.execute(q.to_string(), None).await.unwrap();
        let mut other = server.login(user).await;
        let got = fetch(&mut other, info.clone())
            .await
            .map_err(|e| e.to_string());
        match (&got, &own) {
            (Ok(got), Ok(own)) => assert_eq!(text(got), text(own), "{user}"),
            (Err(_), Err(_)) => {}
            _ => panic!("{user}: {got:?} vs {own:?}"),
        }
        // The admin's own ticket still answers, planned again if need be, with clear e-mails.
        let mine = fetch(&mut admin, info).await.unwrap();
        assert!(text(&mine).contains('@'));
        assert_eq!(rows(&mine), rows(&sql(&mut admin, q).await.unwrap()));
    }
    server.stop().await;
}
