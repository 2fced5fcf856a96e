//! `idmint station run`: the factory provisioning station. Gives each
//! device on the line its identity over the device agent protocol, online
//! (`--batch`, this data directory's registry and CA) or offline
//! (`--authorization AUTH --log LOG`, the batch CA of an authorization
//! bundle and a signed issuance log; no data directory needed) or remote
//! (`--server https://HOST:8443 --batch B`, issuing through an `idmint
//! serve` with a station token or client certificate; no data directory
//! needed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use idmint_agent::DeviceAddress;
use idmint_slot::PartitionKind;
use idmint_station::offline::{run_offline_station, OfflineStationOptions};
use idmint_station::remote::{run_remote_station, RemoteAuth, RemoteStationOptions, TOKEN_ENV};
use idmint_station::{
    DeviceOutcome, LineOptions, NewStationBatch, PartitionOptions, StationOptions,
};

use crate::commands::batch::parse_number;
use crate::{actor, output, Context};
use idmint_station::Station;

/// `idmint station` subcommands.
#[derive(Subcommand)]
pub enum StationCommand {
    /// Provision devices into a batch.
    #[command(after_help = "Examples:\n  \
        idmint station run --batch B --device tcp://127.0.0.1:7000            # one device\n  \
        idmint station run --batch B --device serial:/dev/ttyUSB0@115200 --loop\n  \
        idmint station run --batch B --server https://idmint.example:8443 \\\n      \
        --ca-cert root.pem --token-file station.token --device tcp://10.0.0.7:7000\n  \
        idmint station run --batch B --device serial:/dev/ttyUSB0 --partition esp-secure-cert \\\n      \
        --programmer 'esptool.py --chip esp32s3 --port /dev/ttyUSB0 write_flash {offset} {file}'\n\n\
        Without --count or --loop, the station provisions one device per --device address and exits.")]
    Run(RunArgs),
}

/// Arguments of `idmint station run`.
#[derive(Args)]
pub struct RunArgs {
    /// The batch devices are provisioned into (online: this data
    /// directory's registry and CA).
    #[arg(long, required_unless_present = "authorization")]
    batch: Option<String>,
    /// Offline: the authorization bundle from `idmint batch authorize`
    /// (issues with its batch CA, without the maker's registry).
    #[arg(long, conflicts_with_all = ["batch", "server"], requires = "log")]
    authorization: Option<PathBuf>,
    /// Offline: the age identity file that opens the bundle's batch CA key.
    #[arg(long, requires = "authorization")]
    identity: Option<PathBuf>,
    /// Offline: the issuance log to write (created, or continued; the
    /// station's counter is kept next to it in LOG.state).
    #[arg(long, requires = "authorization")]
    log: Option<PathBuf>,
    /// Remote: issue through this `idmint serve` (https://HOST:PORT) with a
    /// station token (--token-file, or IDMINT_STATION_TOKEN) or a client
    /// certificate, instead of this data directory.
    #[arg(long, requires = "batch")]
    server: Option<String>,
    /// Remote: the CA certificate(s) (PEM) to trust for the server
    /// (default: the system roots); `idmint ca show root --pem` on the
    /// server prints its root.
    #[arg(long, requires = "server")]
    ca_cert: Option<PathBuf>,
    /// Remote: a file holding the station token (or set
    /// IDMINT_STATION_TOKEN; never on the command line).
    #[arg(long, requires = "server", conflicts_with = "client_cert")]
    token_file: Option<PathBuf>,
    /// Remote: authenticate with this client certificate (PEM) instead of
    /// a token.
    #[arg(long, requires_all = ["server", "client_key"])]
    client_cert: Option<PathBuf>,
    /// Remote: the client certificate's private key (PEM).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// A device: tcp://HOST:PORT, serial:/dev/ttyUSB0[@BAUD] or exec:CMD.
    /// Several addresses are served in parallel.
    #[arg(long = "device", required = true)]
    devices: Vec<String>,
    /// Provision this many devices in total, then exit (default: one
    /// device per --device address).
    #[arg(long, conflicts_with = "loop")]
    count: Option<u64>,
    /// Keep provisioning (the next board on the same port) until
    /// interrupted.
    #[arg(long = "loop")]
    r#loop: bool,
    /// Lock each device's credential storage after it proved its key.
    #[arg(long, conflicts_with = "partition")]
    lock: bool,
    /// Write each device's ESP32 credential partition instead of installing
    /// over the agent protocol: esp-secure-cert or esp-nvs (the same bytes
    /// as `batch mint --format`). The station makes the key (the batch must
    /// allow injection) and --programmer writes the partition.
    #[arg(long, value_parser = parse_partition_kind, requires = "programmer")]
    partition: Option<PartitionKind>,
    /// ESP32 partition size in bytes (default 0x2000 for esp-secure-cert,
    /// 0x6000 for esp-nvs; hex with 0x).
    #[arg(long, value_parser = parse_number, requires = "partition")]
    partition_size: Option<u64>,
    /// ESP32 partition flash offset from the partition table, `{offset}`
    /// in --programmer (default 0xD000 for esp-secure-cert; required for
    /// esp-nvs).
    #[arg(long, value_parser = parse_number, requires = "partition")]
    flash_offset: Option<u64>,
    /// NVS namespace of the credentials (esp-nvs; default esp_secure_cert).
    #[arg(long, requires = "partition")]
    nvs_namespace: Option<String>,
    /// The command that writes a partition to the device, run with `sh -c`
    /// per device: `{offset}`, `{file}` (a temporary 0600 file, deleted
    /// afterwards) and `{hw_id}` are replaced; non-zero exit fails the
    /// device and spoils its certificate.
    #[arg(long, requires = "partition")]
    programmer: Option<String>,
    /// Seconds the programmer may take for one device before it is killed
    /// (the device fails at stage `program`, its certificate spoiled).
    #[arg(long, default_value_t = 120, requires = "partition")]
    programmer_timeout_secs: u64,
    /// Time to wait for each device response, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Print one JSON object per device (a JSON line).
    #[arg(long)]
    json: bool,
}

/// Runs `idmint station ...`.
pub async fn run(ctx: &Context, cmd: StationCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StationCommand::Run(args) => run_station(ctx, args).await,
    }
}

async fn run_station(ctx: &Context, args: RunArgs) -> anyhow::Result<ExitCode> {
    let devices = args
        .devices
        .iter()
        .map(|d| {
            d.parse::<DeviceAddress>()
                .map_err(|e| anyhow::anyhow!("--device {d:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let count = match (args.count, args.r#loop) {
        (Some(n), _) => Some(n),
        (None, true) => None,
        // Without --count or --loop: one device per address.
        (None, false) => Some(devices.len() as u64),
    };
    let partition = partition_options(&args)?;
    if partition.is_some() && (args.authorization.is_some() || args.server.is_some()) {
        anyhow::bail!(
            "--partition is for the online station (--batch with this data directory): the station must make the key"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("station: stopping after the devices in progress");
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let json = args.json;
    let report = move |o: &DeviceOutcome| print_outcome(o, json);
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    if let (Some(authorization), Some(log)) = (args.authorization, args.log) {
        let options = OfflineStationOptions {
            authorization,
            identity: args.identity,
            log,
            pkcs11: crate::pkcs11_from_env(),
        };
        let line = LineOptions {
            devices,
            count,
            lock: args.lock,
            timeout,
            retry_delay: Duration::from_millis(500),
            partition: None,
        };
        let run =
            tokio::task::block_in_place(|| run_offline_station(&options, &line, &stop, &report))?;
        let failed = run.outcomes.iter().filter(|o| !o.ok).count();
        if !json {
            eprintln!(
                "station: {} provisioned, {failed} failed; authorization {}: {} of {} issued ({} spoiled), {} remaining; {} in {}{}",
                run.outcomes.len() - failed,
                run.batch,
                run.issued,
                run.count,
                run.spoiled,
                run.remaining,
                output::count(run.records as u64, "record"),
                run.log.display(),
                if run.recovered > 0 {
                    format!(
                        " ({} of an interrupted run recorded as spoiled)",
                        output::count(run.recovered as u64, "certificate")
                    )
                } else {
                    String::new()
                }
            );
        }
        return Ok(if failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let batch = args
        .batch
        .ok_or_else(|| anyhow::anyhow!("give --batch (online) or --authorization (offline)"))?;
    if let Some(server) = args.server {
        let auth = match (args.client_cert, args.client_key, args.token_file) {
            (Some(cert), Some(key), _) => RemoteAuth::ClientCertificate { cert, key },
            (_, _, Some(file)) => RemoteAuth::Token(
                std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", file.display()))?
                    .trim()
                    .to_string(),
            ),
            _ => match std::env::var(TOKEN_ENV) {
                Ok(t) if !t.trim().is_empty() => RemoteAuth::Token(t.trim().to_string()),
                _ => anyhow::bail!(
                    "--server needs credentials: --token-file FILE, {TOKEN_ENV}, or --client-cert FILE --client-key FILE"
                ),
            },
        };
        let options = RemoteStationOptions {
            server,
            batch,
            ca_cert: args.ca_cert,
            auth,
        };
        let line = LineOptions {
            devices,
            count,
            lock: args.lock,
            timeout,
            retry_delay: Duration::from_millis(500),
            partition: None,
        };
        let run = run_remote_station(&options, &line, &stop, &report).await?;
        let failed = run.outcomes.iter().filter(|o| !o.ok).count();
        if !json {
            let counts = match &run.counts {
                Some(c) => format!(
                    "; batch {}: {} of {} issued ({} spoiled)",
                    run.batch, c.issued, c.count, c.spoiled
                ),
                None => String::new(),
            };
            eprintln!(
                "station: {} provisioned, {failed} failed{counts}",
                run.outcomes.len() - failed
            );
        }
        return Ok(if failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let idmint = ctx.open().await?;
    let options = StationOptions {
        batch,
        devices,
        count,
        lock: args.lock,
        timeout,
        retry_delay: Duration::from_millis(500),
        partition,
    };
    let outcomes = Station::new(&idmint)
        .run_station(&actor(), &options, &stop, &report)
        .await?;
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    if !json {
        eprintln!(
            "station: {} provisioned, {failed} failed",
            outcomes.len() - failed
        );
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn parse_partition_kind(s: &str) -> Result<PartitionKind, String> {
    s.parse()
        .map_err(|()| format!("unknown partition `{s}`; expected esp-secure-cert or esp-nvs"))
}

/// `--partition` and its companions, with `batch mint`'s defaults.
fn partition_options(args: &RunArgs) -> anyhow::Result<Option<PartitionOptions>> {
    let (Some(kind), Some(programmer)) = (args.partition, args.programmer.clone()) else {
        return Ok(None);
    };
    let size = args
        .partition_size
        .map(usize::try_from)
        .transpose()
        .map_err(|_| anyhow::anyhow!("--partition-size is too large"))?;
    if args.nvs_namespace.is_some() && kind != PartitionKind::EspNvs {
        anyhow::bail!("--nvs-namespace is for --partition esp-nvs");
    }
    let flash_offset = match (args.flash_offset, kind) {
        (Some(offset), _) => offset,
        (None, PartitionKind::EspSecureCert) => 0xD000,
        (None, PartitionKind::EspNvs) => anyhow::bail!(
            "--partition esp-nvs needs --flash-offset (the credential partition's offset in your partition table)"
        ),
    };
    if programmer.trim().is_empty() {
        anyhow::bail!("--programmer is empty");
    }
    Ok(Some(PartitionOptions {
        format: kind.format(size, args.nvs_namespace.as_deref()),
        flash_offset,
        programmer,
        programmer_timeout: std::time::Duration::from_secs(args.programmer_timeout_secs.max(1)),
    }))
}

fn print_outcome(o: &DeviceOutcome, json: bool) {
    if json {
        match serde_json::to_string(o) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("error: {e}"),
        }
        return;
    }
    let device = o.hw_id.as_deref().unwrap_or(&o.address);
    let cert = o.certificate_id.as_deref().unwrap_or("-");
    if o.ok {
        println!("{device}  {cert}  ok");
    } else {
        println!(
            "{device}  {cert}  error ({}): {}{}",
            o.stage.as_deref().unwrap_or("?"),
            o.error.as_deref().unwrap_or("failed"),
            if o.spoiled {
                " [certificate spoiled]"
            } else {
                ""
            }
        );
    }
}

/// `idmint batch create`.
#[derive(Args)]
pub struct CreateArgs {
    /// Product name.
    #[arg(long)]
    product: String,
    /// Quota: how many good identities stations may issue.
    #[arg(long)]
    count: u64,
    /// The factory it is for.
    #[arg(long)]
    factory: Option<String>,
    /// Certificate profile.
    #[arg(long, default_value = "device")]
    profile: String,
    /// Issuing CA (the configured default if not given).
    #[arg(long)]
    ca: Option<String>,
    /// Let stations generate keys for devices that cannot and inject them.
    #[arg(long)]
    allow_inject: bool,
    /// Remote stations' certificates start PENDING_ACTIVATION until the
    /// station confirms the device (the batch's policy: a station cannot
    /// turn it off).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    pending_activation: bool,
    /// Refuse (409 clone) a remote station's device whose thing already
    /// holds a live certificate (the batch's policy: a station cannot turn
    /// it off). A public key that is already certified is refused always.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    refuse_clones: bool,
    /// Print a JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `idmint batch create`: prints the new batch id.
pub async fn create_batch(ctx: &Context, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let batch = Station::new(&idmint)
        .create_station_batch(
            &actor(),
            &NewStationBatch {
                product: args.product,
                count: args.count,
                factory: args.factory,
                profile: args.profile,
                ca: args.ca,
                allow_inject: args.allow_inject,
                policy: idmint_registry::StationPolicy {
                    pending_activation: args.pending_activation,
                    refuse_clones: args.refuse_clones,
                },
            },
        )
        .await?;
    if args.json {
        output::json(&batch)?;
    } else {
        println!("{}", batch.id);
    }
    Ok(ExitCode::SUCCESS)
}
