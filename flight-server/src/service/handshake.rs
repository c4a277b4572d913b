//! The Flight handshake: the one RPC the authentication layer lets through, because it is where
//! Basic credentials are exchanged for a bearer token (sent both as the payload and in the
//! `authorization` response header, where ADBC, JDBC and pyarrow look for it). A handshake
//! carrying a valid bearer token keeps it.

use bytes::Bytes;
use futures::stream;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use arrow_flight::{HandshakeRequest, HandshakeResponse};

use super::{HandshakeStream, MeshFlightSqlService};
use crate::status::auth_status;

impl MeshFlightSqlService {
    pub(super) async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        let (token, _principal) = self
            .auth
            .handshake(request.metadata().as_ref())
            .await
            .map_err(auth_status)?;
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: Bytes::from(token.clone()),
        };
        let out: HandshakeStream = Box::pin(stream::iter(vec![Ok(response)]));
        let mut response = Response::new(out);
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|e| Status::internal(e.to_string()))?;
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }
}
