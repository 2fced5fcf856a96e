//! TLS: the server's own certificate (issued by our CA for the configured
//! host names, or configured), the rustls configuration (TLS 1.2 and 1.3,
//! client certificates requested but optional and checked per request), and
//! the accept loop that hands each request its connection's peer chain.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use idmint_flows::Idmint;
use idmint_pki::CertificateInfo;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::{ConnInfo, ServerError};

/// The server certificate file in the data directory.
pub const CERT_FILE: &str = "server.cert.pem";
/// The server key file in the data directory (0600).
pub const KEY_FILE: &str = "server.key.pem";
const HOSTS_FILE: &str = "server.hosts";

/// The host names a server certificate covers: the configured ones plus
/// `localhost` and `127.0.0.1`.
pub fn host_names(configured: &[String]) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for h in configured {
        if !hosts.contains(h) {
            hosts.push(h.clone());
        }
    }
    hosts
}

/// The certificate chain and key to serve: configured files, else the
/// issued ones in the data directory (reissued when missing, expiring
/// within 30 days, or issued for other host names).
pub async fn server_identity(
    idmint: &Idmint,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ServerError> {
    let cfg = &idmint.config().server;
    if let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) {
        return load_pem(cert, key);
    }
    let dir = idmint.data_dir();
    let (cert_path, key_path, hosts_path) = (
        dir.join(CERT_FILE),
        dir.join(KEY_FILE),
        dir.join(HOSTS_FILE),
    );
    let hosts = host_names(&cfg.hosts);
    let wanted = hosts.join("\n");
    if cert_path.exists() && key_path.exists() {
        let same_hosts = std::fs::read_to_string(&hosts_path)
            .map(|h| h == wanted)
            .unwrap_or(false);
        let fresh = std::fs::read(&cert_path)
            .ok()
            .and_then(|pem| CertificateInfo::from_pem(&pem).ok())
            .is_some_and(|(info, _)| {
                info.valid_at(time::OffsetDateTime::now_utc() + time::Duration::days(30))
            });
        if same_hosts && fresh {
            return load_pem(&cert_path, &key_path);
        }
    }
    let (cert, chain) = idmint.issue_server_certificate(&hosts, &key_path).await?;
    std::fs::write(&cert_path, chain)
        .map_err(|e| ServerError::Io(cert_path.display().to_string(), e))?;
    std::fs::write(&hosts_path, wanted)
        .map_err(|e| ServerError::Io(hosts_path.display().to_string(), e))?;
    tracing::info!(id = %cert.info.id, "issued the server certificate");
    load_pem(&cert_path, &key_path)
}

fn load_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ServerError> {
    let io = |p: &Path, e| ServerError::Io(p.display().to_string(), e);
    let mut reader = std::io::BufReader::new(std::fs::File::open(cert).map_err(|e| io(cert, e))?);
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io(cert, e))?;
    let mut reader = std::io::BufReader::new(std::fs::File::open(key).map_err(|e| io(key, e))?);
    let key_der = rustls_pemfile::private_key(&mut reader)
        .map_err(|e| io(key, e))?
        .ok_or_else(|| ServerError::Tls(format!("no private key in {}", key.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    Ok((certs, key_der))
}

/// Asks for a client certificate, accepts any (after checking the
/// handshake signature); handlers decide what it is worth, against the
/// registry as it is at that moment.
#[derive(Debug)]
struct DeferredClientAuth {
    algorithms: WebPkiSupportedAlgorithms,
    mandatory: bool,
}

impl ClientCertVerifier for DeferredClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end: &CertificateDer<'_>,
        _inter: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls server configuration (aws-lc-rs, TLS 1.2 and 1.3, h2 and http/1.1).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, ServerError> {
    let mut config = tls_config(chain, key, false)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The MQTT endpoint's configuration: a client certificate is mandatory,
/// and the `x-amzn-mqtt-ca` ALPN of AWS SDKs on port 443 is accepted.
pub fn mqtt_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, ServerError> {
    let mut config = tls_config(chain, key, true)?;
    config.alpn_protocols = vec![b"x-amzn-mqtt-ca".to_vec(), b"mqtt".to_vec()];
    Ok(config)
}

fn tls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    mandatory_client_auth: bool,
) -> Result<rustls::ServerConfig, ServerError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(DeferredClientAuth {
        algorithms: provider.signature_verification_algorithms,
        mandatory: mandatory_client_auth,
    });
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))
}

/// What one listener allows: connections in all and per client address,
/// and how long a client may take to finish its handshake and each
/// request's headers.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections at most from one address.
    pub max_per_address: usize,
    /// The handshake and header (and keep-alive idle) timeout.
    pub header_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits of `[server]`.
    pub fn of(cfg: &idmint_flows::config::ServerConfig) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: cfg.max_connections.max(1),
            max_per_address: cfg.max_connections_per_address.max(1),
            header_timeout: Duration::from_secs(cfg.header_timeout_secs.max(1)),
        }
    }

    /// The limits of `[mqtt]`; an MQTT client has `connect_timeout_secs`
    /// for its TLS handshake (and as long again for its CONNECT, which the
    /// session bounds).
    pub fn of_mqtt(cfg: &idmint_flows::config::MqttConfig) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: cfg.max_connections.max(1),
            max_per_address: cfg.max_connections_per_address.max(1),
            header_timeout: Duration::from_secs(cfg.connect_timeout_secs.max(1)),
        }
    }
}

/// Open connections by client address; a [`Slot`] is one of them.
#[derive(Debug, Default)]
pub struct ConnectionCount {
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    total: std::sync::atomic::AtomicUsize,
}

/// One counted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Slot {
    count: Arc<ConnectionCount>,
    address: std::net::IpAddr,
}

impl ConnectionCount {
    /// Takes a place for a connection from `address`, or `None` when the
    /// global or per-address limit is reached.
    pub fn admit(
        self: &Arc<Self>,
        address: std::net::IpAddr,
        limits: &ConnectionLimits,
    ) -> Option<Slot> {
        use std::sync::atomic::Ordering;
        let mut open = self.open.lock().ok()?;
        let mine = open.entry(address).or_insert(0);
        if *mine >= limits.max_per_address
            || self.total.load(Ordering::Relaxed) >= limits.max_connections
        {
            return None;
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            count: self.clone(),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.count
            .total
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut open) = self.count.open.lock() {
            if let Some(n) = open.get_mut(&self.address) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&self.address);
                }
            }
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then
/// lets open requests finish (up to 10 s).
pub async fn serve_tls(
    listener: TcpListener,
    config: rustls::ServerConfig,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let count = Arc::new(ConnectionCount::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = count.admit(peer.ip(), &limits) else {
            tracing::debug!(%peer, "connection limit reached: closed at accept");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let certs: Vec<Vec<u8>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default();
            let info = ConnInfo {
                peer,
                certs: Arc::new(certs),
            };
            let service =
                app.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(info.clone());
                    req
                });
            let service = hyper_util::service::TowerToHyperService::new(service);
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(limits.header_timeout)
                .keep_alive_timeout(limits.header_timeout);
            let io = FirstByteDeadline::new(tls, limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("connections still open after 10 s; closing"),
    }
    Ok(())
}

/// A connection's I/O that must deliver its first byte within a deadline:
/// hyper's header timeout runs from a request's first byte, so without this
/// a client that finishes its TLS handshake and then sends nothing would
/// hold its connection for good. A read still waiting for that first byte
/// at the deadline fails with `TimedOut`, which ends the connection; once a
/// byte arrived, hyper's timeouts govern.
struct FirstByteDeadline<S> {
    inner: S,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> FirstByteDeadline<S> {
    fn new(inner: S, within: Duration) -> Self {
        FirstByteDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FirstByteDeadline<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::Poll;
        let this = self.get_mut();
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no request within the header timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FirstByteDeadline<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
