//! Catalog metadata RPCs (GetCatalogs, GetDbSchemas, GetTables, GetTableTypes, GetSqlInfo,
//! GetXdbcTypeInfo, GetPrimaryKeys and the foreign-key calls): each FlightInfo's ticket is the
//! command itself, and DoGet answers it in one batch, filtered to what the caller may see. The
//! batches themselves are built in [`crate::metadata`].

use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, ProstMessageExt,
};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use meshql_engine::MESH_CATALOG;
use tonic::{Request, Response, Status};

use super::results::{arrow_status, metadata_info, one_batch};
use super::{DoGetStream, MeshFlightSqlService};
use crate::metadata;
use crate::status::engine_status;

type InfoResult = Result<Response<FlightInfo>, Status>;
type DoGetResult = Result<Response<DoGetStream>, Status>;

impl MeshFlightSqlService {
    pub(super) fn catalogs_info(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> InfoResult {
        let schema = query.into_builder().schema();
        metadata_info(&schema, query, request)
    }

    pub(super) fn catalogs(&self, query: CommandGetCatalogs) -> DoGetResult {
        let mut b = query.into_builder();
        b.append(MESH_CATALOG);
        Ok(Response::new(one_batch(b.build().map_err(arrow_status)?)))
    }

    pub(super) fn schemas_info(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> InfoResult {
        let schema = query.clone().into_builder().schema();
        metadata_info(&schema, query, request)
    }

    pub(super) fn schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> DoGetResult {
        let session = self.session(&request)?;
        let mut b = query.into_builder();
        for s in session.schemas() {
            b.append(MESH_CATALOG, s);
        }
        Ok(Response::new(one_batch(b.build().map_err(arrow_status)?)))
    }

    pub(super) fn tables_info(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> InfoResult {
        let schema = query.clone().into_builder().schema();
        metadata_info(&schema, query, request)
    }

    pub(super) async fn tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> DoGetResult {
        let session = self.session(&request)?;
        let tables = session.tables().await.map_err(engine_status)?;
        let batch = metadata::tables_batch(query, &tables)?;
        Ok(Response::new(one_batch(batch)))
    }

    pub(super) fn table_types_info(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> InfoResult {
        metadata_info(&metadata::table_types_schema(), query, request)
    }

    pub(super) fn table_types(&self) -> DoGetResult {
        Ok(Response::new(one_batch(metadata::table_types_batch()?)))
    }

    pub(super) fn sql_info_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> InfoResult {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        metadata_info(&schema, query, request)
    }

    pub(super) fn sql_info(&self, query: CommandGetSqlInfo) -> DoGetResult {
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(arrow_status)?;
        Ok(Response::new(one_batch(batch)))
    }

    pub(super) fn xdbc_type_info_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> InfoResult {
        let schema = query.into_builder(&self.xdbc_info).schema();
        metadata_info(&schema, query, request)
    }

    pub(super) fn xdbc_type_info(&self, query: CommandGetXdbcTypeInfo) -> DoGetResult {
        let batch = query
            .into_builder(&self.xdbc_info)
            .build()
            .map_err(arrow_status)?;
        Ok(Response::new(one_batch(batch)))
    }

    pub(super) fn primary_keys_info(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> InfoResult {
        metadata_info(&metadata::primary_keys_schema(), query, request)
    }

    pub(super) async fn primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> DoGetResult {
        let session = self.session(&request)?;
        let tables = session.tables().await.map_err(engine_status)?;
        Ok(Response::new(one_batch(metadata::primary_keys_batch(
            &query, &tables,
        )?)))
    }

    /// GetExportedKeys, GetImportedKeys and GetCrossReference share one (empty) answer:
    /// contracts declare no foreign keys.
    pub(super) fn foreign_keys_info(
        &self,
        query: impl ProstMessageExt,
        request: Request<FlightDescriptor>,
    ) -> InfoResult {
        metadata_info(&metadata::foreign_keys_schema(), query, request)
    }

    pub(super) fn foreign_keys(&self) -> DoGetResult {
        Ok(Response::new(one_batch(metadata::foreign_keys_batch())))
    }
}
