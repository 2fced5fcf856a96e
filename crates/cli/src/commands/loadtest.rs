//! `idmint loadtest`: load generators that print throughput and latency
//! percentiles, load generator included.
//!
//! - `fleet` plays N devices through fleet provisioning — TLS connect with
//!   a claim certificate, CreateCertificateFromCsr with a key made on the
//!   "device", RegisterThing, reconnect with the new certificate — C at a
//!   time. Without `--mqtt` it runs its own endpoint in this process.
//! - `est` sends N EST `simpleenroll` requests (one fresh P-256 CSR each)
//!   from C keep-alive clients. Without `--server` it runs its own HTTPS
//!   server in this process (rate limit off).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use idmint_fleet::claims::ClaimValidity;
use idmint_fleet::templates::TemplateRequest;
use idmint_flows::pki::{DeviceKey, KeyType};
use idmint_flows::registry::TemplateKind;
use idmint_flows::Idmint;
use idmint_server::mqtt::device::{client_config, ClientConfig, DeviceClient};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{actor, Context};
use idmint_fleet::Fleet;
use idmint_station::Station;

/// `idmint loadtest` subcommands.
#[derive(Subcommand)]
pub enum LoadtestCommand {
    /// Fleet provisioning over MQTT.
    Fleet(FleetArgs),
    /// EST (RFC 7030) simpleenroll over HTTPS.
    Est(EstArgs),
    /// OCSP over HTTPS (POST), from keep-alive clients, for certificates of
    /// the registry.
    Ocsp(OcspArgs),
}

/// `idmint loadtest est` options.
#[derive(Args)]
pub struct EstArgs {
    /// Enrollments to make.
    #[arg(long, default_value_t = 10000)]
    requests: u64,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// An `idmint serve` on the same store, e.g. https://127.0.0.1:8443
    /// (start it with `--rate-limit 0`); default: one in this process.
    #[arg(long)]
    server: Option<String>,
}

/// `idmint loadtest ocsp` options.
#[derive(Args)]
pub struct OcspArgs {
    /// OCSP requests to make.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Distinct certificates asked about, taken from the CA's registered
    /// certificates (each asked about in turn).
    #[arg(long, default_value_t = 10_000)]
    certificates: i64,
    /// The CA whose certificates are asked about.
    #[arg(long, default_value = "issuing")]
    ca: String,
    /// An `idmint serve` on the same store, e.g. https://127.0.0.1:8443
    /// (start it with `--rate-limit 0`); default: one in this process.
    #[arg(long)]
    server: Option<String>,
}

/// `idmint loadtest fleet` options.
#[derive(Args)]
pub struct FleetArgs {
    /// Devices to provision.
    #[arg(long, default_value_t = 1000)]
    devices: u64,
    /// Devices in flight at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// An `idmint serve` MQTT endpoint on the same store (default: one in this process).
    #[arg(long)]
    mqtt: Option<SocketAddr>,
    /// Write one JSON line per device (serial, certificateId, thingName, registered, error).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep every device's final connection open, idle, until all are done
    /// and then for this many seconds more (measure the server's memory then).
    #[arg(long, value_name = "SECS")]
    hold: Option<u64>,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
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

/// Runs `idmint loadtest ...`.
pub async fn run(ctx: &Context, cmd: LoadtestCommand) -> anyhow::Result<ExitCode> {
    let idmint = Arc::new(ctx.open().await?);
    match cmd {
        LoadtestCommand::Fleet(args) => fleet(idmint, args).await,
        LoadtestCommand::Est(args) => est(idmint, args).await,
        LoadtestCommand::Ocsp(args) => ocsp(idmint, args).await,
    }
}

async fn fleet(idmint: Arc<Idmint>, args: FleetArgs) -> anyhow::Result<ExitCode> {
    if idmint.store().template(TEMPLATE).await?.is_none() {
        Fleet::new(&idmint)
            .create_template(
                &actor(),
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
            &actor(),
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
    let timeout = Duration::from_secs(args.timeout.max(1));
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.devices {
        let permit = gate.clone().acquire_owned().await?;
        let (claim_config, roots, run_id) = (claim_config.clone(), roots.clone(), run_id.clone());
        let hold = args.hold.is_some();
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
    let mut out = args
        .out
        .as_ref()
        .map(|p| std::fs::File::create(p).map(std::io::BufWriter::new))
        .transpose()?;
    let mut latencies = Vec::new();
    let mut held = Vec::new();
    let mut failed = 0u64;
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let outcome = done?;
        match outcome.latency {
            Some(l) => latencies.push(l),
            None => {
                failed += 1;
                first_error.get_or_insert_with(|| outcome.line["error"].to_string());
            }
        }
        if let Some(out) = out.as_mut() {
            writeln!(out, "{}", outcome.line)?;
        }
        held.extend(outcome.held);
    }
    let elapsed = started.elapsed();
    if let Some(mut out) = out {
        out.flush()?;
    }
    println!(
        "{} devices provisioned, {failed} failed, {} (concurrency {})",
        latencies.len(),
        summary(&mut latencies, elapsed, "devices"),
        args.concurrency
    );
    if let Some(secs) = args.hold {
        println!(
            "holding {} idle connections for {secs} s; this process's RSS: {} MiB",
            held.len(),
            rss_mib()
                .map(|m| m.to_string())
                .unwrap_or_else(|| "?".into())
        );
        tokio::time::sleep(Duration::from_secs(secs)).await;
        for client in held {
            client.disconnect().await;
        }
    }
    if let Some(e) = first_error {
        eprintln!("first error: {e}");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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

async fn est(idmint: Arc<Idmint>, args: EstArgs) -> anyhow::Result<ExitCode> {
    use base64::Engine;
    let batch = Station::new(&idmint)
        .create_station_batch(
            &actor(),
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
            &actor(),
            &token_name,
            idmint_flows::registry::Role::Enroll,
            Some(&batch.id),
        )
        .await?;
    let (base, client) = https_target(&idmint, args.server.clone(), args.clients).await?;
    eprintln!("making {} CSRs...", args.requests);
    let mut bodies = Vec::with_capacity(usize::try_from(args.requests).unwrap_or(0));
    for n in 0..args.requests {
        let key = DeviceKey::generate(KeyType::P256)?;
        let pem = key.csr_pem(&format!("est-{}-{n}", batch.id))?;
        let der = pem::parse(pem.as_bytes())?.into_contents();
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
    println!(
        "{} enrollments, {failed} failed, {} ({} clients)",
        latencies.len(),
        summary(&mut latencies, elapsed, "enrollments"),
        args.clients
    );
    idmint.revoke_token(&actor(), &token_name).await?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn ocsp(idmint: Arc<Idmint>, args: OcspArgs) -> anyhow::Result<ExitCode> {
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
        let serial = hex::decode(&c.serial)?;
        bodies.push(idmint_flows::pki::ocsp::request_for(&issuer, &serial)?);
    }
    if bodies.is_empty() {
        anyhow::bail!("CA {} has issued no certificates to ask about", args.ca);
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
    println!(
        "{} OCSP responses for {count} certificates, {failed} failed, {} ({} clients)",
        latencies.len(),
        summary(&mut latencies, elapsed, "responses"),
        args.clients
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The HTTPS server a load generator talks to (`server`, or one started in
/// this process on loopback with the rate limit off) and a keep-alive
/// HTTP/1.1 client for `clients` connections that trusts our root.
async fn https_target(
    idmint: &Arc<Idmint>,
    server: Option<String>,
    clients: usize,
) -> anyhow::Result<(String, reqwest::Client)> {
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
        .add_root_certificate(reqwest::Certificate::from_der(&root)?)
        .http1_only()
        .pool_max_idle_per_host(clients)
        .build()?;
    Ok((base, client))
}

/// Runs `clients` keep-alive clients, each taking the next request from
/// `next` until it has none and timing it; returns the latencies of the
/// requests that succeeded and how many failed.
async fn drive<F, R>(clients: usize, next: F) -> anyhow::Result<(Vec<Duration>, u64)>
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
        let (l, f) = done?;
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
async fn start_endpoint(idmint: Arc<Idmint>) -> anyhow::Result<SocketAddr> {
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

fn rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
}
