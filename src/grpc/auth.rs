//! Caller authentication and authorization, for every request in one place.
//!
//! A request carries either a bearer key (`authorization: Bearer <key>`,
//! what grpcurl's `-H` sends) or arrives over mutual TLS with a client
//! certificate naming a caller's TLS identity. A bearer key, when present,
//! is what counts. No credential, or one that does not check out, is
//! UNAUTHENTICATED; a caller outside its role is PERMISSION_DENIED. Both are
//! decided before any handler runs, so neither says anything about the
//! account a request names.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;
use tower::{Layer, Service};

use super::access::{access_for, Access, ReflectionAccess};
use super::status::with_reason;
use super::tls_identity;
use crate::domain::callers::model::Recognised;
use crate::domain::callers::service::Callers;
use crate::domain::callers::store::CallerStore;
use crate::domain::shared::error::Reason;
use crate::domain::tenants::model::Reach;
use crate::transport::Proof;

const UNAUTHENTICATED: &str =
    "a valid caller credential is required: send `authorization: Bearer <key>` or a client certificate";

#[derive(Clone)]
pub struct CallerAuthLayer<S> {
    callers: Callers<S>,
    reflection: ReflectionAccess,
}

impl<S> CallerAuthLayer<S> {
    pub fn new(callers: Callers<S>, reflection: ReflectionAccess) -> Self {
        Self {
            callers,
            reflection,
        }
    }
}

impl<S: Clone, Inner> Layer<Inner> for CallerAuthLayer<S> {
    type Service = CallerAuth<S, Inner>;

    fn layer(&self, inner: Inner) -> Self::Service {
        CallerAuth {
            callers: self.callers.clone(),
            reflection: self.reflection,
            inner,
        }
    }
}

#[derive(Clone)]
pub struct CallerAuth<S, Inner> {
    callers: Callers<S>,
    reflection: ReflectionAccess,
    inner: Inner,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, Inner, ReqBody, ResBody> Service<http::Request<ReqBody>> for CallerAuth<S, Inner>
where
    S: CallerStore,
    Inner: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    Inner::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Inner::Response;
    type Error = Inner::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let callers = self.callers.clone();
        let reflection = self.reflection;
        Box::pin(async move {
            let (needed, deployment_only) = match access_for(request.uri().path()) {
                Some(Access::Open) => return inner.call(request).await,
                Some(Access::Reflection) if reflection == ReflectionAccess::Open => {
                    return inner.call(request).await
                }
                Some(Access::Reflection) => (None, false),
                Some(Access::Roles(roles)) => (Some(roles), false),
                Some(Access::Deployment(roles)) => (Some(roles), true),
                None => (Some(&[][..]), false),
            };
            let presented = Presented::of(&request);
            let peer = Proof::of_request(&request).map(|proof| proof.peer_ip());
            let (caller, reach) = match presented.identify(&callers, peer).await {
                Ok(Some(Recognised { caller, reach })) => {
                    // A recognised caller proves its connection at once,
                    // before its request runs (`transport.rs`: connections
                    // without one are capped, the oldest closed first).
                    if let Some(proof) = Proof::of_request(&request) {
                        proof.prove();
                    }
                    (caller, reach)
                }
                Ok(None) => {
                    return Ok(refuse(with_reason(
                        tonic::Code::Unauthenticated,
                        UNAUTHENTICATED,
                        Reason::CallerUnauthenticated,
                    )))
                }
                Err(error) => return Ok(refuse(Status::from(error))),
            };
            let path = request.uri().path();
            let denied = match needed {
                Some(roles) if !roles.contains(&caller.role) => Some((
                    format!(
                        "caller {} (role {}) may not call {path}",
                        caller.name, caller.role
                    ),
                    Reason::RoleNotAllowed,
                )),
                // Deployment-wide methods: never for a scoped caller.
                _ if deployment_only && reach != Reach::Deployment => Some((
                    format!(
                        "caller {} is scoped to a tenant and may not call {path}",
                        caller.name
                    ),
                    Reason::OutsideTenant,
                )),
                _ => None,
            };
            if let Some((message, reason)) = denied {
                let mut response =
                    refuse(with_reason(tonic::Code::PermissionDenied, message, reason));
                response.extensions_mut().insert(caller);
                return Ok(response);
            }
            request.extensions_mut().insert(caller.clone());
            request.extensions_mut().insert(reach);
            let mut response = inner.call(request).await?;
            response.extensions_mut().insert(caller);
            Ok(response)
        })
    }
}

/// What a request presents to prove who sent it, copied out of the
/// request so that checking it holds no borrow across an await.
enum Presented {
    /// An `authorization` header: `Some(key)` if it is a bearer key.
    Bearer(Option<String>),
    /// The identities of a TLS client certificate (empty without one).
    Certificate(Vec<String>),
}

impl Presented {
    /// A bearer key, if sent, is what counts; otherwise the client
    /// certificate.
    fn of<B>(request: &http::Request<B>) -> Self {
        match request.headers().get(http::header::AUTHORIZATION) {
            Some(value) => Self::Bearer(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    })
                    .map(|key| key.trim().to_owned()),
            ),
            None => Self::Certificate(tls_identity::of_request(request)),
        }
    }

    async fn identify<S: CallerStore>(
        self,
        callers: &Callers<S>,
        peer: Option<std::net::IpAddr>,
    ) -> crate::domain::shared::error::Result<Option<Recognised>> {
        match self {
            Self::Bearer(Some(key)) => callers.caller_by_key(&key, peer).await,
            Self::Bearer(None) => Ok(None),
            Self::Certificate(identities) => {
                callers.caller_by_tls_identities(&identities, peer).await
            }
        }
    }
}

fn refuse<B: Default>(status: Status) -> http::Response<B> {
    status.into_http()
}
