//! GetSchema: the schema a command would answer, without running it (statements and prepared
//! statements are planned as the caller; metadata commands have fixed schemas).

use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::sql::{Any, Command};
use arrow_flight::FlightDescriptor;
use prost::Message;
use tonic::{Request, Status};

use super::{caller, MeshFlightSqlService};
use crate::metadata;
use crate::prepared::number_placeholders;
use crate::status::engine_status;

impl MeshFlightSqlService {
    /// The schema GetSchema answers for a command.
    pub(crate) async fn schema_for(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Schema, Status> {
        let caller = caller(&request)?;
        let message = Any::decode(&*request.get_ref().cmd)
            .map_err(|e| Status::invalid_argument(format!("malformed command: {e}")))?;
        let command = Command::try_from(message)
            .map_err(|e| Status::invalid_argument(format!("unknown command: {e}")))?;
        let schema = self.default_schema(&caller);
        let schema: SchemaRef = match command {
            Command::CommandStatementQuery(q) => {
                let session = self.session_for(caller.principal, schema.as_deref())?;
                let sql = number_placeholders(&q.query);
                session.plan_sql(&sql).await.map_err(engine_status)?.schema
            }
            Command::CommandPreparedStatementQuery(cmd) => {
                let prepared = self
                    .prepared
                    .get(&cmd.prepared_statement_handle, &caller.principal.user)?;
                let session =
                    self.session_for(caller.principal, prepared.default_schema.as_deref())?;
                if let Some(msg) = &prepared.not_a_query {
                    return Err(Status::permission_denied(msg.clone()));
                }
                session
                    .plan_sql(&prepared.sql)
                    .await
                    .map_err(engine_status)?
                    .schema
            }
            Command::CommandGetCatalogs(c) => c.into_builder().schema(),
            Command::CommandGetDbSchemas(c) => c.into_builder().schema(),
            Command::CommandGetTables(c) => c.into_builder().schema(),
            Command::CommandGetTableTypes(_) => metadata::table_types_schema(),
            Command::CommandGetSqlInfo(c) => c.into_builder(&self.sql_info).schema(),
            Command::CommandGetXdbcTypeInfo(c) => c.into_builder(&self.xdbc_info).schema(),
            Command::CommandGetPrimaryKeys(_) => metadata::primary_keys_schema(),
            Command::CommandGetImportedKeys(_)
            | Command::CommandGetExportedKeys(_)
            | Command::CommandGetCrossReference(_) => metadata::foreign_keys_schema(),
            other => {
                return Err(Status::invalid_argument(format!(
                    "GetSchema is not available for {}",
                    other.type_url()
                )))
            }
        };
        Ok(schema.as_ref().clone())
    }
}
