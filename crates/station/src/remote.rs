//! `idmint station run --server https://HOST:8443 --batch B`: the remote
//! station. Same device steps as the online station, but quota, signing
//! and records live on an `idmint serve` reached over its REST API; the
//! station needs no data directory.
//!
//! - Before a device is touched: `GET /api/v1/batches/{id}` (quota left,
//!   batch open).
//! - Issue: the device's CSR goes to `POST /api/v1/batches/{id}/certificates`,
//!   which takes one from the quota atomically (`409` when exhausted) and
//!   returns the certificate, `PENDING_ACTIVATION`, and its chain.
//! - Installed and proved: `POST .../certificates/{cert}/activate` makes it
//!   `ACTIVE`.
//! - A certificate issued but not installed or proved is reported with
//!   `POST /api/v1/batches/{id}/certificates/{cert}/spoil`, so the server's
//!   counts reconcile (`issued = active + spoiled`).
//!
//! The station authenticates with a station token (Bearer) or a TLS client
//! certificate, and trusts a given CA file or the system roots. Key
//! injection is refused: the API issues only for a device's own CSR.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use idmint_pki::{CertificateInfo, IssuedCertificate, KeyType, Profile};
use idmint_registry::CertificateId;
use idmint_rest::{CsrRequest, ErrorBody, IssuedInBatch, ProvisionedRequest, SpoilRequest};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::{
    fail, run_line, DeviceOutcome, Failed, IssueRequest, LineIssuer, LineOptions, StationBackend,
};
use idmint_flows::FlowError;

/// The environment variable a station token may be given in.
pub const TOKEN_ENV: &str = "IDMINT_STATION_TOKEN";

/// Time allowed for one API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How a remote station proves who it is.
#[derive(Clone)]
pub enum RemoteAuth {
    /// A station token (`idmint token create --role station --batch B`),
    /// sent as `Authorization: Bearer`.
    Token(String),
    /// A TLS client certificate and its private key (PEM files).
    ClientCertificate {
        /// The certificate (PEM; may be followed by its chain).
        cert: PathBuf,
        /// The private key (PEM, PKCS#8 or SEC1).
        key: PathBuf,
    },
}

impl fmt::Debug for RemoteAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteAuth::Token(_) => f.write_str("Token(<redacted>)"),
            RemoteAuth::ClientCertificate { cert, key } => f
                .debug_struct("ClientCertificate")
                .field("cert", cert)
                .field("key", key)
                .finish(),
        }
    }
}

/// Where a remote station issues.
#[derive(Clone, Debug)]
pub struct RemoteStationOptions {
    /// The server's base URL, `https://HOST:PORT`.
    pub server: String,
    /// The batch devices are provisioned into.
    pub batch: String,
    /// CA certificates (PEM) to trust for the server; `None`: the system
    /// roots.
    pub ca_cert: Option<PathBuf>,
    /// The station's credentials.
    pub auth: RemoteAuth,
}

/// What a remote station run did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRun {
    /// The batch.
    pub batch: String,
    /// One outcome per device attempted.
    pub outcomes: Vec<DeviceOutcome>,
    /// The batch as the server counts it after the run (`None` when it
    /// could not be read back).
    pub counts: Option<RemoteCounts>,
}

/// A batch's counts on the server.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteCounts {
    /// The quota.
    pub count: i64,
    /// Certificates issued (spoiled included).
    pub issued: i64,
    /// Certificates spoiled.
    pub spoiled: i64,
}

/// A batch as `GET /api/v1/batches/{id}` returns it (the fields used).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoteBatch {
    id: String,
    kind: String,
    product: String,
    count: i64,
    issued: i64,
    spoiled: i64,
    state: String,
    profile: String,
    allow_inject: bool,
}

/// A failed API call: the HTTP status (none when the request never got an
/// answer), the server's error code and a one-line message.
struct ApiFailure {
    status: Option<StatusCode>,
    code: Option<String>,
    message: String,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "server answered {}: {}", s.as_u16(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The REST client.
struct Api {
    client: Client,
    base: Url,
    token: Option<String>,
}

impl Api {
    fn new(options: &RemoteStationOptions) -> Result<Api, FlowError> {
        let base = Url::parse(&options.server)
            .map_err(|e| FlowError::Invalid(format!("--server {:?}: {e}", options.server)))?;
        if base.scheme() != "https" {
            return Err(FlowError::Invalid(format!(
                "--server {}: a remote station talks HTTPS only (https://HOST:PORT)",
                options.server
            )));
        }
        let mut builder = Client::builder()
            .user_agent(concat!("idmint-station/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT);
        if let Some(path) = &options.ca_cert {
            let pem = std::fs::read(path).map_err(|e| FlowError::io(path, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                FlowError::Invalid(format!("{}: {}", path.display(), error_chain(&e)))
            })?;
            if certs.is_empty() {
                return Err(FlowError::Invalid(format!(
                    "{}: no PEM certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_only(certs);
        }
        let token = match &options.auth {
            RemoteAuth::Token(t) => {
                let t = t.trim().to_string();
                if t.is_empty() {
                    return Err(FlowError::Invalid("the station token is empty".into()));
                }
                Some(t)
            }
            RemoteAuth::ClientCertificate { cert, key } => {
                let mut pem = std::fs::read(cert).map_err(|e| FlowError::io(cert, e))?;
                pem.push(b'\n');
                pem.extend(std::fs::read(key).map_err(|e| FlowError::io(key, e))?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    FlowError::Invalid(format!(
                        "client certificate {} / key {}: {}",
                        cert.display(),
                        key.display(),
                        error_chain(&e)
                    ))
                })?;
                builder = builder.identity(identity);
                None
            }
        };
        let client = builder
            .build()
            .map_err(|e| FlowError::Internal(format!("HTTPS client: {}", error_chain(&e))))?;
        Ok(Api {
            client,
            base,
            token,
        })
    }

    /// `base` + `/api/v1/batches/<segments...>`, each segment escaped.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1", "batches"]);
            path.extend(segments);
        }
        url
    }

    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, ApiFailure> {
        let request = match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let response = request.send().await.map_err(|e| ApiFailure {
            status: None,
            code: None,
            message: format!(
                "cannot reach {}: {}{}",
                self.base,
                error_chain(&e),
                if unknown_issuer(&e) {
                    " (the server's certificate is not signed by a CA this station trusts: \
                     pass --ca-cert FILE with the server's root, which `idmint ca show root --pem` \
                     prints on the server)"
                } else {
                    ""
                }
            ),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let body: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
        let mut message = body.message.unwrap_or_else(|| {
            text.lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect()
        });
        if let Some(id) = body.correlation_id {
            // A server fault: its log holds the detail under this id.
            message = format!("{message} (correlation id {id}: the server's log has the detail)");
        }
        Err(ApiFailure {
            status: Some(status),
            code: body.error,
            message: if message.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                message
            },
        })
    }

    async fn batch(&self, id: &str) -> Result<RemoteBatch, ApiFailure> {
        let response = self.send(self.client.get(self.url(&[id]))).await?;
        response.json().await.map_err(|e| ApiFailure {
            status: None,
            code: None,
            message: format!("unexpected batch from the server: {}", error_chain(&e)),
        })
    }

    async fn issue(
        &self,
        batch: &str,
        csr_pem: &str,
        thing: &str,
    ) -> Result<IssuedInBatch, ApiFailure> {
        let body = CsrRequest {
            csr: csr_pem.to_string(),
            thing: Some(thing.to_string()),
            pending: true,
            refuse_clones: true,
        };
        let response = self
            .send(
                self.client
                    .post(self.url(&[batch, "certificates"]))
                    .json(&body),
            )
            .await?;
        response.json().await.map_err(|e| ApiFailure {
            status: None,
            code: None,
            message: format!("unexpected issuance answer: {}", error_chain(&e)),
        })
    }

    async fn activate(
        &self,
        batch: &str,
        certificate: &str,
        hw_id: Option<&str>,
        locked: bool,
    ) -> Result<(), ApiFailure> {
        let body = ProvisionedRequest {
            hw_id: hw_id.map(str::to_string),
            locked,
        };
        self.send(
            self.client
                .post(self.url(&[batch, "certificates", certificate, "activate"]))
                .json(&body),
        )
        .await
        .map(drop)
    }

    async fn spoil(&self, batch: &str, certificate: &str, reason: &str) -> Result<(), ApiFailure> {
        let body = SpoilRequest {
            reason: Some(reason.to_string()),
        };
        self.send(
            self.client
                .post(self.url(&[batch, "certificates", certificate, "spoil"]))
                .json(&body),
        )
        .await
        .map(drop)
    }
}

/// An error and its causes on one line (reqwest hides the TLS reason in
/// the source chain).
/// Whether TLS refused the server's certificate because no trusted CA
/// issued it. reqwest hides the rustls error inside an `io::Error`, whose
/// `source` skips it, so both are looked into.
fn unknown_issuer(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if matches!(
            err.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ) {
            return true;
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if unknown_issuer(inner) {
                return true;
            }
        }
        next = err.source();
    }
    false
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Runs a remote station: checks the server, the credentials and the
/// batch first (a failure there is the run's error, before any device is
/// touched), then provisions devices like the online station.
pub async fn run_remote_station(
    options: &RemoteStationOptions,
    line: &LineOptions,
    stop: &AtomicBool,
    report: &(dyn Fn(&DeviceOutcome) + Sync),
) -> Result<RemoteRun, FlowError> {
    if line.devices.is_empty() {
        return Err(FlowError::Invalid("give at least one --device".into()));
    }
    if line.partition.is_some() {
        return Err(FlowError::Invalid(
            "--partition needs key injection, which a remote station cannot do (the REST API issues only for a device's own CSR): run the station with the data directory".into(),
        ));
    }
    let api = Api::new(options)?;
    let batch = api
        .batch(&options.batch)
        .await
        .map_err(|e| FlowError::Invalid(format!("batch {}: {e}", options.batch)))?;
    if batch.kind != "station" {
        return Err(FlowError::Conflict(format!(
            "batch {} is a {} batch, not a station batch",
            batch.id, batch.kind
        )));
    }
    let issuer = LineIssuer {
        batch_id: batch.id.clone(),
        product: batch.product.clone(),
        profile_name: batch.profile.clone(),
        // The server signs with the batch's profile and refuses what it
        // does not allow; here only the device's key choice needs one.
        profile: Profile::device(),
        chain_tail: Vec::new(),
        org: String::new(),
        preferred: KeyType::P256,
        allow_inject: batch.allow_inject,
        inject_refusal: batch.allow_inject.then(|| {
            format!(
                "the device cannot generate keys: batch {} allows key injection, but a remote station cannot inject (the REST API issues only for a device's own CSR); provision it at a station with the data directory",
                batch.id
            )
        }),
        partition_chain: Vec::new(),
    };
    let backend = RemoteBackend {
        api,
        handle: Handle::current(),
        batch: batch.id.clone(),
        chain_tail: Mutex::new(None),
    };
    let outcomes = tokio::task::block_in_place(|| run_line(&backend, &issuer, line, stop, report));
    let counts = backend
        .api
        .batch(&batch.id)
        .await
        .ok()
        .map(|b| RemoteCounts {
            count: b.count,
            issued: b.issued,
            spoiled: b.spoiled,
        });
    Ok(RemoteRun {
        batch: batch.id,
        outcomes,
        counts,
    })
}

/// The remote station's backend: every count and record on the server.
struct RemoteBackend {
    api: Api,
    handle: Handle,
    batch: String,
    /// The issuing chain without the root, learnt from the first issuance.
    chain_tail: Mutex<Option<Vec<Vec<u8>>>>,
}

impl StationBackend for RemoteBackend {
    fn check_quota(&self) -> Result<(), Failed> {
        let b = self
            .handle
            .block_on(self.api.batch(&self.batch))
            .map_err(|e| fail("quota", e))?;
        if b.state != "OPEN" {
            return Err(fail("quota", format!("batch {} is {}", b.id, b.state)));
        }
        if b.issued >= b.count {
            return Err(fail(
                "quota",
                format!(
                    "batch {} quota exhausted: {} of {} issued ({} spoiled)",
                    b.id, b.issued, b.count, b.spoiled
                ),
            ));
        }
        Ok(())
    }

    /// The server keeps the things and refuses clones at issuance; the
    /// station names the thing after the hardware id.
    fn admit(&self, hw_id: &str) -> Result<String, Failed> {
        Ok(hw_id.to_string())
    }

    fn issue(
        &self,
        request: &IssueRequest<'_>,
        outcome: &mut DeviceOutcome,
    ) -> Result<IssuedCertificate, Failed> {
        let csr = request.csr.ok_or_else(|| {
            fail(
                "issue",
                "a remote station issues only for a device's own CSR",
            )
        })?;
        let csr_pem = idmint_pki::to_pem("CERTIFICATE REQUEST", csr.der());
        let answer = self
            .handle
            .block_on(self.api.issue(&self.batch, &csr_pem, request.thing))
            .map_err(|e| {
                if e.code.as_deref() == Some("quota_exhausted") {
                    fail("quota", e)
                } else {
                    fail("issue", e)
                }
            })?;
        // From here on the server counts a certificate: note it first, so a
        // failure below is reported as spoiled.
        outcome.certificate_id = Some(answer.id.clone());
        let (info, der) = CertificateInfo::from_pem(answer.pem.as_bytes())
            .map_err(|e| fail("issue", format!("the server's certificate: {e}")))?;
        if info.spki_der != request.key.spki_der() {
            return Err(fail(
                "issue",
                "the server's certificate does not certify the device's key",
            ));
        }
        let mut tail = Vec::with_capacity(answer.chain.len());
        for pem in &answer.chain {
            let (_, der) = CertificateInfo::from_pem(pem.as_bytes())
                .map_err(|e| fail("issue", format!("the server's chain: {e}")))?;
            tail.push(der);
        }
        // The device gets the chain without the self-signed root.
        if tail.len() > 1 {
            tail.pop();
        }
        if let Ok(mut slot) = self.chain_tail.lock() {
            *slot = Some(tail);
        }
        Ok(IssuedCertificate { der, info })
    }

    /// Activates the certificate on the server.
    fn provisioned(
        &self,
        issued: &IssuedCertificate,
        outcome: &DeviceOutcome,
        locked: bool,
    ) -> Result<(), Failed> {
        self.handle
            .block_on(self.api.activate(
                &self.batch,
                &issued.info.id,
                outcome.hw_id.as_deref(),
                locked,
            ))
            .map_err(|e| fail("register", e))
    }

    fn spoil(&self, certificate_id: &CertificateId, failed: &Failed) -> Result<(), Failed> {
        let reason = format!("{}: {}", failed.stage, failed.reason);
        self.handle
            .block_on(self.api.spoil(&self.batch, certificate_id, &reason))
            .map_err(|e| fail("spoil", e))
    }

    fn chain_tail(&self) -> Option<Vec<Vec<u8>>> {
        self.chain_tail.lock().ok().and_then(|c| c.clone())
    }
}
