//! The load generators behind `idmint loadtest`: each plays many clients
//! against the real server (one it starts in this process on loopback, or a
//! running `idmint serve` on the same store) and reports throughput and
//! latency percentiles.
//!
//! - [`fleet`] plays N devices through fleet provisioning: TLS connect with
//!   a claim certificate, CreateCertificateFromCsr with a key made on the
//!   "device", RegisterThing, reconnect with the new certificate, C at a
//!   time.
//! - [`est`] sends N EST `simpleenroll` requests (one fresh P-256 CSR each)
//!   from C keep-alive clients.
//! - [`ocsp`] sends N OCSP requests (POST) for certificates of the registry
//!   from C keep-alive clients.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idmint_fleet::claims::ClaimValidity;
use idmint_fleet::templates::TemplateRequest;
use idmint_fleet::Fleet;
use idmint_flows::pki::{DeviceKey, KeyType};
use idmint_flows::registry::TemplateKind;
use idmint_flows::{FlowError, Idmint};
use idmint_server::mqtt::device::{client_config, ClientConfig, DeviceClient};
use idmint_station::Station;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// Why a load run could not run (a failed request is counted, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Setting up the run (template, claim, batch, token, CA) failed.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// The registry could not be read.
    #[error(transparent)]
    Registry(#[from] idmint_flows::registry::RegistryError),
    /// A key or CSR could not be made.
    #[error(transparent)]
    Pki(#[from] idmint_flows::pki::PkiError),
    /// The server started in this process failed.
    #[error(transparent)]
    Server(#[from] idmint_server::ServerError),
    /// The device TLS configuration could not be made.
    #[error(transparent)]
    Device(#[from] idmint_server::mqtt::device::DeviceError),
    /// The HTTPS client could not be made.
    #[error("HTTPS client: {0}")]
    Client(String),
    /// The `--out` file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// There is nothing to ask about.
    #[error("{0}")]
    Nothing(String),
    /// A client task died.
    #[error("a load client failed: {0}")]
    Task(String),
}

/// `idmint loadtest fleet`.
#[derive(Clone, Debug)]
pub struct FleetLoad {
    /// Devices to provision.
    pub devices: u64,
    /// Devices in flight at once.
    pub concurrency: usize,
    /// An `idmint serve` MQTT endpoint on the same store (default: one in
    /// this process).
    pub mqtt: Option<SocketAddr>,
    /// Where to write one JSON line per device (serial, certificateId,
    /// thingName, registered, error).
    pub out: Option<PathBuf>,
    /// Keep every device's final connection open, to be held by the caller.
    pub hold: bool,
    /// How long to wait for each reply.
    pub timeout: Duration,
}

/// `idmint loadtest est`.
#[derive(Clone, Debug)]
pub struct EstLoad {
    /// Enrollments to make.
    pub requests: u64,
    /// Concurrent keep-alive clients.
    pub clients: usize,
    /// An `idmint serve` on the same store (start it with `--rate-limit 0`);
    /// `None`: one in this process.
    pub server: Option<String>,
}

/// `idmint loadtest ocsp`.
#[derive(Clone, Debug)]
pub struct OcspLoad {
    /// OCSP requests to make.
    pub requests: u64,
    /// Concurrent keep-alive clients.
    pub clients: usize,
    /// Distinct certificates asked about, taken from the CA's registered
    /// certificates (each asked about in turn).
    pub certificates: i64,
    /// The CA whose certificates are asked about.
    pub ca: String,
    /// An `idmint serve` on the same store; `None`: one in this process.
    pub server: Option<String>,
}

/// What a run measured.
#[derive(Debug)]
pub struct LoadReport {
    /// Requests (or devices) that succeeded.
    pub succeeded: u64,
    /// Requests (or devices) that failed.
    pub failed: u64,
    /// "N devices provisioned, F failed, in T s: R devices/s, latency p50 X
    /// ms, p99 Y ms (...)".
    pub summary: String,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// A fleet run: its report and, with [`FleetLoad::hold`], every device's
/// open connection.
pub struct FleetRun {
    /// What it measured.
    pub report: LoadReport,
    /// The connections kept open.
    pub held: Vec<DeviceClient>,
}

const TEMPLATE: &str = "idmint-loadtest";
const TEMPLATE_BODY: &str = r#"{
  "Parameters": {"SerialNumber": {"Type": "String"}},
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Fn::Join": ["", ["load-", {"Ref": "SerialNumber"}]]}, "AttributePayload": {"source": "loadtest"}}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": {"Version": "2012-10-17", "Statement": [
      {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/${iot:ClientId}"},
      {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": "arn:aws:iot:*:*:topic/load/${iot:Connection.Thing.ThingName}/*"},
      {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": "arn:aws:iot:*:*:topicfilter/load/${iot:Connection.Thing.ThingName}/*"}]}}}
  },
  "DeviceConfiguration": {"thing": {"Fn::Sub": "load-${SerialNumber}"}}
}"#;

struct Outcome {
    line: Value,
    latency: Option<Duration>,
    held: Option<DeviceClient>,
}

fn task(e: impl std::fmt::Display) -> LoadError {
    LoadError::Task(e.to_string())
}

fn client(e: impl std::fmt::Display) -> LoadError {
    LoadError::Client(e.to_string())
}

/// Provisions `load.devices` devices over MQTT, `load.concurrency` at a
/// time, under claim certificate and template made for the run by `actor`.
pub async fn fleet(
    idmint: Arc<Idmint>,
    actor: &str,
    args: &FleetLoad,
) -> Result<FleetRun, LoadError> {
    if idmint.store().template(TEMPLATE).await?.is_none() {
        Fleet::new(&idmint)
            .create_template(
                actor,
                &TemplateRequest {
                    name: TEMPLATE.into(),
                    kind: TemplateKind::Fleet,
                    body: TEMPLATE_BODY.into(),
                    hook: None,
                    hook_timeout_ms: None,
                    enabled: true,
                },
            )
            .await?;
    }
    let claim = Fleet::new(&idmint)
        .create_claim(
            actor,
            &[TEMPLATE.to_string()],
            ClaimValidity::Days(1),
            Some(0),
        )
        .await?;
    let addr = match args.mqtt {
        Some(addr) => addr,
        None => start_endpoint(idmint.clone()).await?,
    };
    let roots = idmint.chain(idmint_flows::init::ROOT_CA).await?;
    let claim_config = client_config(
        &roots,
        claim.certificate_pem.as_bytes(),
        claim.private_key.as_bytes(),
    )?;
    // Thing names unique to this run: the claim certificate id is random.
    let run_id: String = claim.certificate_id.chars().take(8).collect();
    // Unlock the issuing CA (scrypt) before the clock starts, as a running
    // server already has.
    idmint.signing_ca(idmint.default_ca()).await?;
    let timeout = args.timeout.max(Duration::from_millis(1));
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.devices {
        let permit = gate.clone().acquire_owned().await.map_err(task)?;
        let (claim_config, roots, run_id) = (claim_config.clone(), roots.clone(), run_id.clone());
        let hold = args.hold;
        tasks.spawn(async move {
            let serial = format!("{run_id}-{n:07}");
            let t0 = Instant::now();
            let result = provision(addr, claim_config, &roots, &serial, timeout).await;
            drop(permit);
            match result {
                Ok((line, client)) => Outcome {
                    line,
                    latency: Some(t0.elapsed()),
                    held: if hold {
                        Some(client)
                    } else {
                        client.disconnect().await;
                        None
                    },
                },
                Err((line, e)) => {
                    let mut line = line;
                    line["error"] = e.into();
                    Outcome {
                        line,
                        latency: None,
                        held: None,
                    }
                }
            }
        });
    }
    let out_error = |source| LoadError::Io {
        path: args.out.clone().unwrap_or_default(),
        source,
    };
    let mut out = args
        .out
        .as_ref()
        .map(|p| std::fs::File::create(p).map(std::io::BufWriter::new))
        .transpose()
        .map_err(out_error)?;
    let mut latencies = Vec::new();
    let mut held = Vec::new();
    let mut failed = 0u64;
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let outcome = done.map_err(task)?;
        match outcome.latency {
            Some(l) => latencies.push(l),
            None => {
                failed += 1;
                first_error.get_or_insert_with(|| outcome.line["error"].to_string());
            }
        }
        if let Some(out) = out.as_mut() {
            writeln!(out, "{}", outcome.line).map_err(out_error)?;
        }
        held.extend(outcome.held);
    }
    let elapsed = started.elapsed();
    if let Some(mut out) = out {
        out.flush().map_err(out_error)?;
    }
    let succeeded = latencies.len() as u64;
    Ok(FleetRun {
        report: LoadReport {
            succeeded,
            failed,
            summary: format!(
                "{succeeded} devices provisioned, {failed} failed, {} (concurrency {})",
                summary(&mut latencies, elapsed, "devices"),
                args.concurrency
            ),
            first_error,
        },
        held,
    })
}

/// "in T s: R things/s, latency p50 X ms, p99 Y ms".
fn summary(latencies: &mut [Duration], elapsed: Duration, things: &str) -> String {
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    format!(
        "in {:.2} s: {:.0} {things}/s, latency p50 {:.1} ms, p99 {:.1} ms",
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        pct(0.50),
        pct(0.99)
    )
}

/// Makes `load.requests` EST enrollments against a batch made for the run,
/// from `load.clients` keep-alive clients.
pub async fn est(
    idmint: Arc<Idmint>,
    actor: &str,
    args: &EstLoad,
) -> Result<LoadReport, LoadError> {
    use base64::Engine;
    let batch = Station::new(&idmint)
        .create_station_batch(
            actor,
            &idmint_station::NewStationBatch {
                product: "est-loadtest".into(),
                count: args.requests.max(1),
                factory: None,
                profile: "device".into(),
                ca: None,
                allow_inject: false,
                policy: Default::default(),
            },
        )
        .await?;
    // Unlock the batch's CA (scrypt) before the clock starts, as a running
    // server already has.
    idmint.signing_ca(&batch.ca).await?;
    let token_name = format!("est-loadtest-{}", batch.id);
    let secret = idmint
        .create_token(
            actor,
            &token_name,
            idmint_flows::registry::Role::Enroll,
            Some(&batch.id),
        )
        .await?;
    let (base, client) = https_target(&idmint, args.server.clone(), args.clients).await?;
    tracing::info!("making {} CSRs...", args.requests);
    let mut bodies = Vec::with_capacity(usize::try_from(args.requests).unwrap_or(0));
    for n in 0..args.requests {
        let key = DeviceKey::generate(KeyType::P256)?;
        let pem = key.csr_pem(&format!("est-{}-{n}", batch.id))?;
        let der = pem::parse(pem.as_bytes())
            .map_err(|e| task(format!("a CSR of ours: {e}")))?
            .into_contents();
        bodies.push(base64::engine::general_purpose::STANDARD.encode(der));
    }
    let url = format!("{base}/.well-known/est/simpleenroll");
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let (user, secret) = (token_name.clone(), secret.to_string());
    let started = Instant::now();
    let (mut latencies, failed) = drive(args.clients, move || {
        let body = queue.lock().ok().and_then(|mut q| q.pop())?;
        let request = client
            .post(&url)
            .basic_auth(&user, Some(&secret))
            .header("Content-Type", "application/pkcs10")
            .body(body);
        Some(async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            }
        })
    })
    .await?;
    let elapsed = started.elapsed();
    idmint.revoke_token(actor, &token_name).await?;
    let succeeded = latencies.len() as u64;
    Ok(LoadReport {
        succeeded,
        failed,
        summary: format!(
            "{succeeded} enrollments, {failed} failed, {} ({} clients)",
            summary(&mut latencies, elapsed, "enrollments"),
            args.clients
        ),
        first_error: None,
    })
}

/// Sends `load.requests` OCSP requests for certificates of `load.ca`, from
/// `load.clients` keep-alive clients.
pub async fn ocsp(idmint: Arc<Idmint>, args: &OcspLoad) -> Result<LoadReport, LoadError> {
    let issuer = idmint.store().require_ca(&args.ca).await?.certificate_der;
    let certificates = idmint
        .store()
        .list_certificates(&idmint_flows::registry::CertificateFilter {
            ca: Some(args.ca.clone()),
            limit: Some(args.certificates.max(1)),
            ..Default::default()
        })
        .await?;
    let mut bodies = Vec::with_capacity(certificates.len());
    for c in &certificates {
        let serial = hex::decode(c.serial.as_str())
            .map_err(|e| task(format!("serial {:?} in the registry: {e}", c.serial)))?;
        bodies
            .push(idmint_flows::pki::ocsp::request_for(&issuer, &serial).map_err(FlowError::from)?);
    }
    if bodies.is_empty() {
        return Err(LoadError::Nothing(format!(
            "CA {} has issued no certificates to ask about",
            args.ca
        )));
    }
    let (base, client) = https_target(&idmint, args.server.clone(), args.clients).await?;
    let url = format!("{base}/ocsp");
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (total, count) = (args.requests, bodies.len());
    let started = Instant::now();
    let (mut latencies, failed) = drive(args.clients, move || {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n >= total {
            return None;
        }
        let body = bodies[usize::try_from(n).unwrap_or(0) % count].clone();
        let request = client
            .post(&url)
            .header("Content-Type", "application/ocsp-request")
            .body(body);
        Some(async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => r
                    .bytes()
                    .await
                    .is_ok_and(|b| idmint_flows::pki::ocsp::is_successful(b.as_ref())),
                _ => false,
            }
        })
    })
    .await?;
    let elapsed = started.elapsed();
    let succeeded = latencies.len() as u64;
    Ok(LoadReport {
        succeeded,
        failed,
        summary: format!(
            "{succeeded} OCSP responses for {count} certificates, {failed} failed, {} ({} clients)",
            summary(&mut latencies, elapsed, "responses"),
            args.clients
        ),
        first_error: None,
    })
}

/// The HTTPS server a load generator talks to (`server`, or one started in
/// this process on loopback with the rate limit off) and a keep-alive
/// HTTP/1.1 client for `clients` connections that trusts our root.
async fn https_target(
    idmint: &Arc<Idmint>,
    server: Option<String>,
    clients: usize,
) -> Result<(String, reqwest::Client), LoadError> {
    let base = match server {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let mut cfg = idmint.config().server.clone();
            cfg.listen = "127.0.0.1:0".into();
            cfg.rate_limit = 0;
            let server = idmint_server::Server::bind(idmint.clone(), &cfg).await?;
            let addr = server.local_addr()?;
            tokio::spawn(server.run(std::future::pending::<()>()));
            format!("https://{addr}")
        }
    };
    let root = idmint.chain(idmint_flows::init::ROOT_CA).await?;
    let root = root.last().cloned().unwrap_or_default();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(&root).map_err(client)?)
        .http1_only()
        .pool_max_idle_per_host(clients)
        .build()
        .map_err(client)?;
    Ok((base, client))
}

/// Runs `clients` keep-alive clients, each taking the next request from
/// `next` until it has none and timing it; returns the latencies of the
/// requests that succeeded and how many failed.
async fn drive<F, R>(clients: usize, next: F) -> Result<(Vec<Duration>, u64), LoadError>
where
    F: Fn() -> Option<R> + Clone + Send + 'static,
    R: std::future::Future<Output = bool> + Send,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let next = next.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0u64;
            while let Some(request) = next() {
                let t0 = Instant::now();
                if request.await {
                    latencies.push(t0.elapsed());
                } else {
                    failed += 1;
                }
            }
            (latencies, failed)
        });
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, f) = done.map_err(task)?;
        latencies.extend(l);
        failed += f;
    }
    Ok((latencies, failed))
}

/// One device, start to finish. On failure, what it had got so far.
async fn provision(
    addr: SocketAddr,
    claim_config: Arc<ClientConfig>,
    roots: &[Vec<u8>],
    serial: &str,
    timeout: Duration,
) -> Result<(Value, DeviceClient), (Value, String)> {
    let mut line = json!({"serial": serial, "registered": false});
    let fail = |line: &Value, e: &dyn std::fmt::Display| (line.clone(), e.to_string());
    let key = DeviceKey::generate(KeyType::P256).map_err(|e| fail(&line, &e))?;
    let csr = key.csr_pem(serial).map_err(|e| fail(&line, &e))?;
    let mut claim = DeviceClient::connect(addr, claim_config, serial, timeout)
        .await
        .map_err(|e| fail(&line, &e))?;
    const CSR: &str = "$aws/certificates/create-from-csr/json";
    let provision = format!("$aws/provisioning-templates/{TEMPLATE}/provision/json");
    let topics: Vec<String> = [CSR, provision.as_str()]
        .iter()
        .flat_map(|t| [format!("{t}/accepted"), format!("{t}/rejected")])
        .collect();
    claim
        .subscribe(&topics)
        .await
        .map_err(|e| fail(&line, &e))?;
    let (topic, body) = claim
        .request(
            CSR,
            json!({"certificateSigningRequest": csr})
                .to_string()
                .into_bytes(),
        )
        .await
        .map_err(|e| fail(&line, &e))?;
    let created: Value = serde_json::from_slice(&body).map_err(|e| fail(&line, &e))?;
    if !topic.ends_with("/accepted") {
        return Err(fail(&line, &created));
    }
    line["certificateId"] = created["certificateId"].clone();
    let request = json!({"certificateOwnershipToken": created["certificateOwnershipToken"], "parameters": {"SerialNumber": serial}});
    let (topic, body) = claim
        .request(&provision, request.to_string().into_bytes())
        .await
        .map_err(|e| fail(&line, &e))?;
    let registered: Value = serde_json::from_slice(&body).map_err(|e| fail(&line, &e))?;
    if !topic.ends_with("/accepted") {
        return Err(fail(&line, &registered));
    }
    line["registered"] = true.into();
    line["thingName"] = registered["thingName"].clone();
    claim.disconnect().await;
    let pem = created["certificatePem"].as_str().unwrap_or_default();
    let device_config = client_config(roots, pem.as_bytes(), key.pkcs8_pem().as_bytes())
        .map_err(|e| fail(&line, &e))?;
    let device = DeviceClient::connect(addr, device_config, serial, timeout)
        .await
        .map_err(|e| fail(&line, &format!("reconnect with the new certificate: {e}")))?;
    line["reconnected"] = true.into();
    Ok((line, device))
}

/// Starts an MQTT endpoint on 127.0.0.1 in this process.
async fn start_endpoint(idmint: Arc<Idmint>) -> Result<SocketAddr, LoadError> {
    let cfg = idmint.config().server.clone();
    let state = idmint_server::AppState::new(idmint, &cfg);
    // Every simulated device comes from 127.0.0.1.
    let server = idmint_server::mqtt::MqttServer::bind(state, "127.0.0.1:0")
        .await?
        .one_client_address();
    let addr = server.local_addr()?;
    tokio::spawn(server.run(std::future::pending::<()>()));
    Ok(addr)
}
