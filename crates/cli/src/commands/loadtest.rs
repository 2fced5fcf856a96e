//! `idmint loadtest fleet`: plays N devices through fleet provisioning —
//! TLS connect with a claim certificate, CreateCertificateFromCsr with a
//! key made on the "device", RegisterThing, reconnect with the new
//! certificate — C at a time, and prints devices/s and latency percentiles.
//! Without `--mqtt` it runs its own endpoint in this process.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use idmint_flows::fleet::claims::ClaimValidity;
use idmint_flows::fleet::templates::TemplateRequest;
use idmint_flows::pki::{DeviceKey, KeyType};
use idmint_flows::registry::TemplateKind;
use idmint_flows::Idmint;
use idmint_server::mqtt::device::{client_config, ClientConfig, DeviceClient};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{actor, Context};

/// `idmint loadtest` subcommands.
#[derive(Subcommand)]
pub enum LoadtestCommand {
    /// Fleet provisioning over MQTT.
    Fleet(FleetArgs),
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
    /// Keep every device's final connection open until all are done (idle connections).
    #[arg(long)]
    hold: bool,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

const TEMPLATE: &str = "idmint-loadtest";
const TEMPLATE_BODY: &str = r#"{
  "Parameters": {"SerialNumber": {"Type": "String"}},
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Fn::Join": ["", ["load-", {"Ref": "SerialNumber"}]]}, "AttributePayload": {"source": "loadtest"}}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}}
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
    let LoadtestCommand::Fleet(args) = cmd;
    let idmint = Arc::new(ctx.open().await?);
    if idmint.store().template(TEMPLATE).await?.is_none() {
        idmint
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
    let claim = idmint
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
    let timeout = Duration::from_secs(args.timeout.max(1));
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.devices {
        let permit = gate.clone().acquire_owned().await?;
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
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    println!(
        "{} devices provisioned, {failed} failed, in {:.2} s: {:.0} devices/s, latency p50 {:.1} ms, p99 {:.1} ms (concurrency {})",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        pct(0.50),
        pct(0.99),
        args.concurrency
    );
    if args.hold {
        println!(
            "holding {} idle connections; this process's RSS: {} MiB",
            held.len(),
            rss_mib()
                .map(|m| m.to_string())
                .unwrap_or_else(|| "?".into())
        );
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
    let server = idmint_server::mqtt::MqttServer::bind(state, "127.0.0.1:0").await?;
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
