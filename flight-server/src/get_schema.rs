//! The gRPC-facing Flight service. arrow-flight's blanket `FlightService` impl for a
//! `FlightSqlService` fixes `GetSchema` and `PollFlightInfo` to UNIMPLEMENTED; this wrapper
//! delegates everything to it except those two, which it answers itself.

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaAsIpc, SchemaResult, Ticket,
};
use tonic::{Request, Response, Status, Streaming};
use tower_layer::Layer;

use crate::auth_layer::{AuthLayer, Authenticated};
use crate::service::MeshFlightSqlService;

type Inner = MeshFlightSqlService;

/// meshql's Flight service: the Flight SQL service plus GetSchema and PollFlightInfo.
#[derive(Debug, Clone)]
pub struct MeshFlightService {
    inner: MeshFlightSqlService,
}

impl MeshFlightService {
    pub(crate) fn new(inner: MeshFlightSqlService) -> Self {
        Self { inner }
    }
}

#[tonic::async_trait]
impl FlightService for MeshFlightService {
    type HandshakeStream = <Inner as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner as FlightService>::DoGetStream;
    type DoPutStream = <Inner as FlightService>::DoPutStream;
    type DoActionStream = <Inner as FlightService>::DoActionStream;
    type ListActionsStream = <Inner as FlightService>::ListActionsStream;
    type DoExchangeStream = <Inner as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&self.inner, request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(&self.inner, request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(&self.inner, request).await
    }

    /// Executions are not long-running jobs here: the answer is always complete.
    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let info = FlightService::get_flight_info(&self.inner, request)
            .await?
            .into_inner();
        Ok(Response::new(PollInfo {
            info: Some(info),
            flight_descriptor: None,
            progress: Some(1.0),
            expiration_time: None,
        }))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let schema = self.inner.schema_for(request).await?;
        let result = SchemaResult::try_from(SchemaAsIpc::new(&schema, &Default::default()))
            .map_err(|e| Status::internal(format!("encoding schema: {e}")))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        FlightService::do_get(&self.inner, request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(&self.inner, request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(&self.inner, request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(&self.inner, request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        FlightService::do_exchange(&self.inner, request).await
    }
}

/// The tonic service with meshql's message-size limits, behind the authentication layer (the
/// only way to serve [`MeshFlightSqlService`]: its methods expect authenticated requests).
pub fn flight_service(
    service: MeshFlightSqlService,
    max_message_bytes: usize,
) -> Authenticated<FlightServiceServer<MeshFlightService>> {
    let auth = AuthLayer::new(std::sync::Arc::clone(service.authenticator()));
    auth.layer(
        FlightServiceServer::new(MeshFlightService::new(service))
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes),
    )
}
