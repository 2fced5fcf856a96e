//! `idmint serve`: the HTTPS endpoint that stations, installers, devices and
//! operators talk to. The REST API under `/api/v1` (bearer tokens or client
//! certificates, by role), EST (RFC 7030) enrollment and re-enrollment under
//! `/.well-known/est/`, an OCSP responder at `/ocsp`, CRLs at
//! `/crl/<ca>.crl`, `/healthz` and `/metrics`; beside it, the MQTT endpoint
//! for fleet provisioning ([`mqtt`]).
//!
//! The server keeps no state of its own: tokens, quotas and rotations live
//! in the registry, so several servers can share one PostgreSQL store.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod brokers;
pub mod crl;
pub mod crl_files;
mod error;
pub mod est;
pub mod grants;
mod http_cache;
pub mod metrics;
pub mod mqtt;
pub mod ocsp;
pub mod pkcs7;
pub mod policies;
pub mod ratelimit;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;
use idmint_flows::config::ServerConfig;
use idmint_flows::Idmint;
use tokio::net::TcpListener;

pub use error::ApiError;

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A flow failed (CA, store).
    #[error(transparent)]
    Flow(#[from] idmint_flows::FlowError),
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] idmint_registry::RegistryError),
    /// A PKI operation failed.
    #[error(transparent)]
    Pki(#[from] idmint_pki::PkiError),
    /// A file or socket could not be used.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
}

/// What a connection tells its requests: the peer address and the TLS
/// client certificate chain it presented (DER, leaf first; may be empty).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The presented certificate chain, leaf first.
    pub certs: Arc<Vec<Vec<u8>>>,
}

/// Everything the handlers share.
pub struct AppState {
    /// The opened data directory.
    pub idmint: Arc<Idmint>,
    /// Metrics.
    pub metrics: metrics::Metrics,
    /// The per-client rate limit.
    pub limiter: ratelimit::RateLimiter,
    /// Cached CRLs by CA.
    pub crls: Mutex<HashMap<String, crl::CachedCrl>>,
    /// Seconds a replaced certificate stays ACTIVE.
    pub rotation_overlap_secs: u64,
    /// Seconds a station certificate may stay PENDING_ACTIVATION.
    pub station_pending_timeout_secs: u64,
    /// Request body limit, bytes.
    pub body_limit: usize,
}

/// The shared state handle.
pub type Shared = Arc<AppState>;

impl AppState {
    /// State for `idmint` with these `[server]` settings.
    pub fn new(idmint: Arc<Idmint>, cfg: &ServerConfig) -> Shared {
        Arc::new(AppState {
            idmint,
            metrics: metrics::Metrics::default(),
            limiter: ratelimit::RateLimiter::new(cfg.rate_limit, cfg.rate_burst),
            crls: Mutex::new(HashMap::new()),
            rotation_overlap_secs: cfg.rotation_overlap_secs,
            station_pending_timeout_secs: cfg.station_pending_timeout_secs,
            body_limit: cfg.body_limit,
        })
    }
}

/// The OpenAPI document of every route.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "idmint",
        description = "Device identity registry, EST enrollment and revocation"
    ),
    paths(
        api::list_certificates,
        api::get_certificate,
        api::revoke_certificate,
        api::activate_certificate,
        api::deactivate_certificate,
        api::list_things,
        api::get_thing,
        api::list_cas,
        api::get_ca,
        api::list_batches,
        api::get_batch,
        api::issue_in_batch,
        api::spoil_in_batch,
        api::activate_in_batch,
        api::create_provisioning_claim,
        api::verify_audit,
        grants::list_grants,
        grants::add_grant,
        grants::remove_grant,
        policies::list_policies,
        policies::get_policy,
        policies::create_policy,
        policies::delete_policy,
        policies::attach_policy,
        policies::detach_policy,
        brokers::emqx_authorize,
        brokers::go_auth_acl,
        brokers::go_auth_superuser,
        brokers::go_auth_user,
        api::openapi,
        api::ocsp_post,
        api::ocsp_get,
        api::crl,
        api::healthz,
        api::metrics,
        est::cacerts,
        est::cacerts_label,
        est::simpleenroll,
        est::simpleenroll_label,
        est::simplereenroll,
        est::simplereenroll_label,
        est::csrattrs,
        est::csrattrs_label,
        est::serverkeygen,
        est::serverkeygen_label,
    ),
    components(schemas(
        api::RevokeRequest,
        api::CsrRequest,
        api::SpoilRequest,
        api::ProvisionedRequest,
        api::ProvisioningClaimRequest,
        grants::GrantRequest,
        policies::PolicyRequest,
        brokers::EmqxRequest,
        brokers::GoAuthAclRequest
    ))
)]
pub struct ApiDoc;

/// Every route: (method, path, handler).
fn route_table() -> Vec<(&'static str, &'static str, MethodRouter<Shared>)> {
    const EST: &str = "/.well-known/est";
    let _ = EST;
    vec![
        ("GET", "/api/v1/certificates", get(api::list_certificates)),
        (
            "GET",
            "/api/v1/certificates/{id}",
            get(api::get_certificate),
        ),
        (
            "POST",
            "/api/v1/certificates/{id}/revoke",
            post(api::revoke_certificate),
        ),
        (
            "POST",
            "/api/v1/certificates/{id}/activate",
            post(api::activate_certificate),
        ),
        (
            "POST",
            "/api/v1/certificates/{id}/deactivate",
            post(api::deactivate_certificate),
        ),
        ("GET", "/api/v1/things", get(api::list_things)),
        ("GET", "/api/v1/things/{name}", get(api::get_thing)),
        ("GET", "/api/v1/cas", get(api::list_cas)),
        ("GET", "/api/v1/cas/{name}", get(api::get_ca)),
        ("GET", "/api/v1/batches", get(api::list_batches)),
        ("GET", "/api/v1/batches/{id}", get(api::get_batch)),
        (
            "POST",
            "/api/v1/batches/{id}/certificates",
            post(api::issue_in_batch),
        ),
        (
            "POST",
            "/api/v1/batches/{id}/certificates/{cert_id}/spoil",
            post(api::spoil_in_batch),
        ),
        (
            "POST",
            "/api/v1/batches/{id}/certificates/{cert_id}/activate",
            post(api::activate_in_batch),
        ),
        (
            "POST",
            "/api/v1/provisioning-claims",
            post(api::create_provisioning_claim),
        ),
        ("GET", "/api/v1/audit/verify", get(api::verify_audit)),
        ("GET", "/api/v1/grants", get(grants::list_grants)),
        ("POST", "/api/v1/grants", post(grants::add_grant)),
        ("DELETE", "/api/v1/grants", delete(grants::remove_grant)),
        ("GET", "/api/v1/policies", get(policies::list_policies)),
        ("POST", "/api/v1/policies", post(policies::create_policy)),
        ("GET", "/api/v1/policies/{name}", get(policies::get_policy)),
        (
            "DELETE",
            "/api/v1/policies/{name}",
            delete(policies::delete_policy),
        ),
        (
            "PUT",
            "/api/v1/policies/{name}/certificates/{cert_id}",
            put(policies::attach_policy),
        ),
        (
            "DELETE",
            "/api/v1/policies/{name}/certificates/{cert_id}",
            delete(policies::detach_policy),
        ),
        (
            "POST",
            "/api/v1/broker/emqx/authorize",
            post(brokers::emqx_authorize),
        ),
        (
            "POST",
            "/api/v1/broker/go-auth/{token}/acl",
            post(brokers::go_auth_acl),
        ),
        (
            "POST",
            "/api/v1/broker/go-auth/{token}/superuser",
            post(brokers::go_auth_superuser),
        ),
        (
            "POST",
            "/api/v1/broker/go-auth/{token}/user",
            post(brokers::go_auth_user),
        ),
        ("GET", "/api/v1/openapi.json", get(api::openapi)),
        ("POST", "/ocsp", post(api::ocsp_post)),
        ("GET", "/ocsp/{request}", get(api::ocsp_get)),
        ("GET", "/crl/{file}", get(api::crl)),
        ("GET", "/healthz", get(api::healthz)),
        ("GET", "/metrics", get(api::metrics)),
        ("GET", "/.well-known/est/cacerts", get(est::cacerts)),
        (
            "GET",
            "/.well-known/est/{label}/cacerts",
            get(est::cacerts_label),
        ),
        (
            "POST",
            "/.well-known/est/simpleenroll",
            post(est::simpleenroll),
        ),
        (
            "POST",
            "/.well-known/est/{label}/simpleenroll",
            post(est::simpleenroll_label),
        ),
        (
            "POST",
            "/.well-known/est/simplereenroll",
            post(est::simplereenroll),
        ),
        (
            "POST",
            "/.well-known/est/{label}/simplereenroll",
            post(est::simplereenroll_label),
        ),
        ("GET", "/.well-known/est/csrattrs", get(est::csrattrs)),
        (
            "GET",
            "/.well-known/est/{label}/csrattrs",
            get(est::csrattrs_label),
        ),
        (
            "POST",
            "/.well-known/est/serverkeygen",
            post(est::serverkeygen),
        ),
        (
            "POST",
            "/.well-known/est/{label}/serverkeygen",
            post(est::serverkeygen_label),
        ),
    ]
}

/// Every (method, path) the router serves, for checking the OpenAPI document.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    route_table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The application: every route, the body limit, the rate limit and metrics.
pub fn router(state: Shared) -> Router {
    let body_limit = state.body_limit;
    let mut router = Router::new();
    for (_, path, handler) in route_table() {
        router = router.route(path, handler);
    }
    router
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        // A body declared over the limit is refused (413) before it is
        // read, so an `Expect: 100-continue` client never uploads it.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn observe(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    // A declared body over the limit is refused before a byte of it is read,
    // so a client that sent `Expect: 100-continue` never uploads it.
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.body_limit) {
        let status = axum::http::StatusCode::PAYLOAD_TOO_LARGE;
        state
            .metrics
            .observe(&method, &route, status.as_u16(), started.elapsed());
        return ApiError::new(status, "payload_too_large", "the request body is too large")
            .into_response();
    }
    let exempt = route == "/healthz" || route == "/metrics";
    if !exempt {
        if let Some(conn) = request.extensions().get::<ConnInfo>() {
            if let Err(wait) = state.limiter.check(conn.peer.ip()) {
                let mut e = ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests",
                );
                e.retry_after = Some(wait);
                let response = e.into_response();
                state
                    .metrics
                    .observe(&method, &route, 429, started.elapsed());
                return response;
            }
        }
    }
    let mut response = next.run(request).await;
    let status = response.status();
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE
        && response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"))
    {
        response = ApiError::new(status, "payload_too_large", "the request body is too large")
            .into_response();
    }
    state
        .metrics
        .observe(&method, &route, status.as_u16(), started.elapsed());
    response
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Every `every`: retires certificates whose rotation overlap has ended,
/// and spoils station certificates left PENDING_ACTIVATION for longer than
/// `station_pending_timeout_secs`.
pub async fn sweep_rotations(
    idmint: Arc<Idmint>,
    every: Duration,
    station_pending_timeout_secs: u64,
) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = sweep_once(&idmint).await {
            tracing::warn!("rotation sweep failed: {e}");
        }
        match idmint
            .spoil_stale_station_certificates(station_pending_timeout_secs)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                spoiled = n,
                "station certificates never confirmed on their devices"
            ),
            Err(e) => tracing::warn!("station sweep failed: {e}"),
        }
    }
}

/// One sweep: due rotations make the old certificate INACTIVE (if it is
/// still ACTIVE). Safe to run on several servers at once.
pub async fn sweep_once(idmint: &Idmint) -> Result<usize, idmint_flows::FlowError> {
    idmint.retire_due_rotations().await
}

/// A bound HTTPS server, ready to run.
pub struct Server {
    listener: TcpListener,
    config: rustls::ServerConfig,
    limits: tls::ConnectionLimits,
    state: Shared,
}

impl Server {
    /// Binds `cfg.listen`, prepares the TLS identity (issuing it if needed).
    pub async fn bind(idmint: Arc<Idmint>, cfg: &ServerConfig) -> Result<Server, ServerError> {
        let listen = cfg.listen.as_str();
        let (chain, key) = tls::server_identity(&idmint).await?;
        let config = tls::server_config(chain, key)?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| ServerError::Io(listen.to_string(), e))?;
        Ok(Server {
            listener,
            config,
            limits: tls::ConnectionLimits::of(cfg),
            state: AppState::new(idmint, cfg),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener
            .local_addr()
            .map_err(|e| ServerError::Io("listener".into(), e))
    }

    /// The shared state (metrics, store) for listeners running beside this one.
    pub fn state(&self) -> Shared {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves; the rotation sweeper runs beside.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let every = self
            .state
            .rotation_overlap_secs
            .min(self.state.station_pending_timeout_secs)
            .clamp(1, 30);
        let sweeper = tokio::spawn(sweep_rotations(
            self.state.idmint.clone(),
            Duration::from_secs(every),
            self.state.station_pending_timeout_secs,
        ));
        let app = router(self.state.clone());
        let result = tls::serve_tls(self.listener, self.config, app, self.limits, shutdown).await;
        sweeper.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc = super::ApiDoc::openapi();
        for (method, path) in super::routes() {
            let item = doc
                .paths
                .paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"));
            let documented = match method {
                "GET" => item.get.is_some(),
                "POST" => item.post.is_some(),
                "DELETE" => item.delete.is_some(),
                "PUT" => item.put.is_some(),
                _ => false,
            };
            assert!(documented, "{method} {path} is not in the OpenAPI document");
        }
        let paths: std::collections::BTreeSet<&str> =
            super::routes().into_iter().map(|(_, p)| p).collect();
        assert_eq!(
            doc.paths.paths.len(),
            paths.len(),
            "the document has routes the router lacks"
        );
    }
}
