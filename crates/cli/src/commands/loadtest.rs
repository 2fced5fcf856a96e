//! `idmint loadtest`: the arguments of the load generators
//! (`idmint_tools::loadtest`) and the report they print: throughput and
//! latency percentiles. Without `--mqtt` / `--server` each runs its own
//! endpoint in this process (rate limit off).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use idmint_tools::loadtest::{self, EstLoad, FleetLoad, LoadReport, OcspLoad};

use crate::{actor, Context};

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

/// Runs `idmint loadtest ...`.
pub async fn run(ctx: &Context, cmd: LoadtestCommand) -> anyhow::Result<ExitCode> {
    let idmint = Arc::new(ctx.open().await?);
    let report = match cmd {
        LoadtestCommand::Fleet(args) => {
            let load = FleetLoad {
                devices: args.devices,
                concurrency: args.concurrency,
                mqtt: args.mqtt,
                out: args.out,
                hold: args.hold.is_some(),
                timeout: Duration::from_secs(args.timeout.max(1)),
            };
            let run = loadtest::fleet(idmint, &actor(), &load).await?;
            println!("{}", run.report.summary);
            if let Some(secs) = args.hold {
                println!(
                    "holding {} idle connections for {secs} s; this process's RSS: {} MiB",
                    run.held.len(),
                    rss_mib()
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "?".into())
                );
                tokio::time::sleep(Duration::from_secs(secs)).await;
                for client in run.held {
                    client.disconnect().await;
                }
            }
            run.report
        }
        LoadtestCommand::Est(args) => {
            let load = EstLoad {
                requests: args.requests,
                clients: args.clients,
                server: args.server,
            };
            let report = loadtest::est(idmint, &actor(), &load).await?;
            println!("{}", report.summary);
            report
        }
        LoadtestCommand::Ocsp(args) => {
            let load = OcspLoad {
                requests: args.requests,
                clients: args.clients,
                certificates: args.certificates,
                ca: args.ca,
                server: args.server,
            };
            let report = loadtest::ocsp(idmint, &load).await?;
            println!("{}", report.summary);
            report
        }
    };
    Ok(exit_code(&report))
}

fn exit_code(report: &LoadReport) -> ExitCode {
    if let Some(e) = &report.first_error {
        eprintln!("first error: {e}");
    }
    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
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
