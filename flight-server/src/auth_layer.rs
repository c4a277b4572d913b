//! The Flight service's one authentication path: a tower layer in front of the gRPC service that
//! turns every request's credentials (Basic, a session token from the handshake, a JWT) into a
//! [`meshql_auth::Identity`] through [`Authenticator::identify`], and puts it into the request's
//! extensions, where the service's methods read it ([`crate::service`]'s `Caller`). A request
//! that cannot be authenticated is answered here with UNAUTHENTICATED and never reaches the
//! service. Only the Handshake RPC passes through unauthenticated: it is where Basic
//! credentials are exchanged for a bearer token.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use meshql_auth::Authenticator;
use tonic::body::Body;
use tonic::server::NamedService;
use tower_layer::Layer;
use tower_service::Service;

use crate::status::auth_status;

/// The gRPC path of Flight's Handshake, which authenticates itself.
pub(crate) const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// Authenticates every request but the handshake before it reaches the wrapped service.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            auth: Arc::clone(&self.auth),
        }
    }
}

/// A gRPC service behind [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone is not ready; use the instance `poll_ready` was called on.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = Arc::clone(&self.auth);
        Box::pin(async move {
            if request.uri().path() == HANDSHAKE_PATH {
                return inner.call(request).await;
            }
            // No cookie: browsers do not speak gRPC; the HTTP transport reads its own cookie.
            match auth.identify(request.headers(), None).await {
                Ok(identity) => {
                    request.extensions_mut().insert(identity);
                    inner.call(request).await
                }
                Err(e) => Ok(auth_status(e).into_http()),
            }
        })
    }
}
