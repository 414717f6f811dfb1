//! The gate in front of every service: credential → principal → role check, before any request body is read. The
//! principal travels to the handler in the request's extensions ([`principal_of`]).

use super::audit::AuditLog;
use super::policy::{self, Access};
use super::{AuthError, Principal, Principals};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::Status;

/// How the gate admits requests.
#[derive(Clone)]
pub enum Gate {
    /// Every request needs a valid token with a role the RPC allows; refusals of known principals are audited.
    Tokens(Principals, AuditLog),
    /// `--insecure-no-auth`: every request runs as [`Principal::anonymous_admin`].
    Disabled,
}

impl Gate {
    /// The principal a request to `path` with these headers runs as, or the status that refuses it.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` without a valid credential, `PERMISSION_DENIED` for a role the RPC does not allow or a path
    /// no rule covers.
    pub fn admit(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        client_cert_sha256: Option<&str>,
    ) -> Result<Option<Principal>, Status> {
        let rule = policy::access(path);
        if rule == Access::Open {
            return Ok(None);
        }
        let principal = match self {
            Self::Disabled => Principal::anonymous_admin(),
            Self::Tokens(principals, _) => {
                let token = headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty());
                let now = crate::ingest::system_now_ms();
                // A token, when given, decides; otherwise the mTLS certificate the connection presented.
                match (token, client_cert_sha256) {
                    (Some(t), _) => principals.authenticate(t, now),
                    (None, Some(cert)) => principals.authenticate_cert(cert, now),
                    (None, None) => Err(AuthError::Missing),
                }
                .map_err(|e| Status::unauthenticated(e.to_string()))?
            }
        };
        let refusal = match rule {
            Access::Roles(roles) if roles.contains(&principal.role) => return Ok(Some(principal)),
            Access::Roles(roles) => format!(
                "{path} needs one of the roles {:?}; {} is {}",
                roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                principal.name,
                principal.role.as_str()
            ),
            Access::Open | Access::Unknown => format!("{path}: no access rule, refused"),
        };
        // A known principal trying what its role may not do is worth an officer's look; anonymous knocking is
        // only logged (it would otherwise let anyone fill the disk).
        if let Self::Tokens(_, audit) = self {
            audit.refused(&principal, path, "", &refusal);
        }
        Err(Status::permission_denied(refusal))
    }
}

/// The principal the gate admitted a request as.
///
/// # Errors
/// `UNAUTHENTICATED` when the request did not pass the gate (a handler called outside the server).
pub fn principal_of<T>(req: &tonic::Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("request did not pass the authentication gate"))
}

/// Tower layer putting the [`Gate`] in front of the gRPC routes.
#[derive(Clone)]
pub struct AuthLayer {
    gate: Gate,
}

impl AuthLayer {
    /// A layer admitting by `gate`.
    pub fn new(gate: Gate) -> Self {
        Self { gate }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// Hex SHA-256 of the client certificate the TLS connection presented (mTLS), if any.
fn client_cert_sha256<B>(req: &http::Request<B>) -> Option<String> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    certs
        .first()
        .map(|c| crate::domain::secret::sha256_hex(c.as_ref()))
}

/// The service [`AuthLayer`] wraps the routes in.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    gate: Gate,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for AuthService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let cert = client_cert_sha256(&req);
        match self
            .gate
            .admit(req.uri().path(), req.headers(), cert.as_deref())
        {
            Ok(principal) => {
                if let Some(p) = principal {
                    req.extensions_mut().insert(p);
                }
                // The ready service is the one called; a fresh clone takes its place for the next request.
                let clone = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, clone);
                Box::pin(ready.call(req))
            }
            Err(status) => {
                tracing::info!(path = req.uri().path(), code = ?status.code(), "Refused: {}", status.message());
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
