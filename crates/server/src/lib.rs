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
pub mod page;
pub mod pkcs7;
pub mod policies;
pub mod ratelimit;
pub mod tls;
pub mod tpm;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use idmint_fleet::Fleet;
use idmint_flows::config::ServerConfig;
use idmint_flows::Idmint;
use idmint_station::Station;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// How long a request's body may take to arrive once its headers are in.
    pub body_timeout: Duration,
    /// Where relying parties reach this server (`[server] public_url`).
    pub public_url: Option<String>,
    /// Revoked entries from which a CA's CRL becomes a base CRL with deltas.
    pub delta_crl_after: usize,
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
            body_timeout: Duration::from_secs(cfg.body_timeout_secs.max(1)),
            public_url: cfg.public_url.clone(),
            delta_crl_after: cfg.delta_crl_after,
        })
    }
}

/// The OpenAPI document's description; its paths and schemas come from
/// the routes ([`api_routes`]).
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "idmint",
    description = "Device identity registry, EST enrollment and revocation"
))]
pub struct ApiDoc;

/// Every route, declared once: each handler's `#[utoipa::path]` gives the
/// method and path the router serves and the OpenAPI document lists.
pub fn api_routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(api::list_certificates))
        .routes(routes!(api::get_certificate))
        .routes(routes!(api::revoke_certificate))
        .routes(routes!(api::activate_certificate))
        .routes(routes!(api::deactivate_certificate))
        .routes(routes!(api::list_things))
        .routes(routes!(api::get_thing))
        .routes(routes!(api::list_cas))
        .routes(routes!(api::get_ca))
        .routes(routes!(api::list_batches))
        .routes(routes!(api::get_batch))
        .routes(routes!(api::issue_in_batch))
        .routes(routes!(api::spoil_in_batch))
        .routes(routes!(api::activate_in_batch))
        .routes(routes!(api::create_provisioning_claim))
        .routes(routes!(api::verify_audit))
        .routes(routes!(tpm::tpm_attest))
        .routes(routes!(tpm::tpm_activate))
        .routes(routes!(
            grants::list_grants,
            grants::add_grant,
            grants::remove_grant
        ))
        .routes(routes!(policies::list_policies, policies::create_policy))
        .routes(routes!(policies::get_policy, policies::delete_policy))
        .routes(routes!(policies::attach_policy, policies::detach_policy))
        .routes(routes!(brokers::emqx_authorize))
        .routes(routes!(brokers::go_auth_acl))
        .routes(routes!(brokers::go_auth_superuser))
        .routes(routes!(brokers::go_auth_user))
        .routes(routes!(api::openapi))
        .routes(routes!(api::ocsp_post))
        .routes(routes!(api::ocsp_get))
        .routes(routes!(api::crl))
        .routes(routes!(api::healthz))
        .routes(routes!(api::metrics))
        .routes(routes!(est::cacerts))
        .routes(routes!(est::cacerts_label))
        .routes(routes!(est::simpleenroll))
        .routes(routes!(est::simpleenroll_label))
        .routes(routes!(est::simplereenroll))
        .routes(routes!(est::simplereenroll_label))
        .routes(routes!(est::csrattrs))
        .routes(routes!(est::csrattrs_label))
        .routes(routes!(est::serverkeygen))
        .routes(routes!(est::serverkeygen_label))
}

/// The OpenAPI document of every route (served at `/api/v1/openapi.json`).
pub fn openapi_document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| api_routes().into_openapi())
}

/// The application: every route, the body limit, the rate limit and metrics.
pub fn router(state: Shared) -> Router {
    let body_limit = state.body_limit;
    let (router, _) = api_routes().split_for_parts();
    router
        .fallback(|| async { ApiError::not_found("no such route") })
        // Bodies arrive already read and within the limit (`admit`); this
        // lifts axum's own 2 MB default for a larger `body_limit`.
        .layer(DefaultBodyLimit::max(body_limit))
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
    let response = match admit(&state, &route, request).await {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal,
    };
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// What is refused before any handler runs: a body over `[server]
/// body_limit` (413) and a client over the rate limit (429). Otherwise the
/// request, with its body read.
async fn admit(state: &Shared, route: &str, request: Request) -> Result<Request, Response> {
    // A declared body over the limit is refused before a byte of it is read,
    // so a client that sent `Expect: 100-continue` never uploads it.
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.body_limit) {
        return Err(too_large());
    }
    // The body (within the limit) is read before any handler or extractor
    // runs: a request refused early (401 from the `Caller` extractor, 403)
    // must not leave unread bytes in the socket, or closing it resets the
    // connection and the client never reads the answer.
    // A client that trickles its body is cut off by `[server]
    // body_timeout_secs` (the header timeout ends with the headers).
    let (parts, body) = request.into_parts();
    let bytes = tokio::time::timeout(
        state.body_timeout,
        axum::body::to_bytes(body, state.body_limit),
    )
    .await
    .map_err(|_| body_timeout())?
    .map_err(|_| too_large())?;
    let request = Request::from_parts(parts, axum::body::Body::from(bytes));
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
                return Err(e.into_response());
            }
        }
    }
    Ok(request)
}

/// 408, and the connection is closed: the rest of the body is not waited for.
fn body_timeout() -> Response {
    let mut response = ApiError::new(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "the request body did not arrive in time",
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

fn too_large() -> Response {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is too large",
    )
    .into_response()
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
        match Station::new(&idmint)
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
    Fleet::new(idmint).retire_due_rotations().await
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
