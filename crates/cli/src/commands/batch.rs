//! `idmint batch`: batches of identities. `mint` turns a golden firmware
//! image into per-device images, or writes an ESP32 credential partition
//! per device (scenario 1), `resume` finishes an
//! interrupted mint, `list` and `show` report on every batch, `create`
//! makes a station batch, `authorize` an offline batch authorization and
//! `reconcile` registers an offline station's issuance log.
//!
//! One [`BatchCommand`] variant per subcommand, each with its own args struct.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use idmint_flows::registry::{Batch, CertificateStatus, MINT_ITEM_OK};
use idmint_mint::{EspPartition, MintRequest};
use idmint_slot::{ChipKeyProtection, ImageFormat, PartitionKind};
use idmint_station::offline::{parse_serial_range, AuthorizeRequest, BatchKeyDestination};
use serde::Serialize;

use crate::commands::cert::progress_bar;
use crate::{actor, output, Context};
use idmint_mint::Mint;
use idmint_station::Station;

/// `idmint batch` subcommands.
#[derive(Subcommand)]
pub enum BatchCommand {
    /// Mint per-device firmware images from a golden image, or ESP32
    /// credential partitions (esp_secure_cert, NVS).
    ///
    /// Every certificate is registered ACTIVE before any device is flashed
    /// (use --status PENDING_ACTIVATION to activate them later).
    #[command(after_help = "Examples:\n  \
        idmint batch mint --golden firmware.bin --count 1000 --product sensor --out out\n  \
        idmint batch mint --golden firmware.hex --count 10 --product sensor --out out --json\n  \
        idmint slot show out/images/<device>.hex   # what one image holds\n\n\
        Images go to OUT/images/, one line per device to OUT/manifest.jsonl.")]
    Mint(MintArgs),
    /// Finish an interrupted `batch mint`.
    Resume(ResumeArgs),
    /// List batches.
    List(ListArgs),
    /// Show one batch: issued, spoiled, remaining.
    Show(ShowArgs),
    /// Create a batch (with its quota) that provisioning stations fill.
    Create(crate::commands::station::CreateArgs),
    /// Authorize an offline batch for a factory: write an authorization
    /// bundle (batch CA, signed limits, batch CA key for the factory).
    #[command(after_help = "Example:\n  \
        age-keygen -o factory.key   # the factory's key; its public line is the recipient\n  \
        idmint batch authorize --factory acme --count 1000 --encrypt-to age1... --out acme.bundle")]
    Authorize(AuthorizeArgs),
    /// Check an offline station's issuance log and register its devices;
    /// exits non-zero on duplicates, excess, gaps or tampering.
    Reconcile(ReconcileArgs),
}

/// `idmint batch authorize`.
#[derive(Args)]
#[command(group(
    clap::ArgGroup::new("key").required(true).args(["encrypt_to", "pkcs11_key"])
))]
pub struct AuthorizeArgs {
    /// The factory (or third-party programmer) the batch is for.
    #[arg(long)]
    factory: String,
    /// How many certificates the factory's station may issue (spoiled ones
    /// count).
    #[arg(long)]
    count: u64,
    /// Device serial numbers the station may use, FIRST..LAST inclusive
    /// (default 1..COUNT).
    #[arg(long)]
    serial_range: Option<String>,
    /// Validity of the batch CA in days: the issuance window, and the
    /// longest any device certificate of the batch lives.
    #[arg(long, default_value_t = 30)]
    valid_days: u32,
    /// The authorization bundle to write (a new file).
    #[arg(long)]
    out: PathBuf,
    /// Encrypt the batch CA key to the factory's age recipient (`age1…` or
    /// `ssh-ed25519 …`).
    #[arg(long)]
    encrypt_to: Option<String>,
    /// Instead, generate the batch CA key inside the factory's PKCS#11
    /// token at this `pkcs11:` URI (IDMINT_PKCS11_MODULE, IDMINT_PKCS11_PIN).
    #[arg(long)]
    pkcs11_key: Option<String>,
    /// Product name (default: the factory name).
    #[arg(long)]
    product: Option<String>,
    /// Certificate profile.
    #[arg(long, default_value = "device")]
    profile: String,
    /// The maker CA that signs the batch CA (default `offline`, an issuing
    /// CA of path length 1 under the root, created on first use).
    #[arg(long)]
    ca: Option<String>,
    /// Let the station make keys for devices that cannot and inject them.
    #[arg(long)]
    allow_inject: bool,
    /// Print a JSON object.
    #[arg(long)]
    json: bool,
}

/// `idmint batch reconcile`.
#[derive(Args)]
pub struct ReconcileArgs {
    /// The issuance log written by `idmint station run --authorization`.
    log: PathBuf,
    /// Print the report as a JSON object.
    #[arg(long)]
    json: bool,
}

/// `idmint batch mint`.
#[derive(Args)]
pub struct MintArgs {
    /// The golden image (with one empty credential slot). Optional with the
    /// ESP32 partition formats, where it is only recorded.
    #[arg(long)]
    golden: Option<PathBuf>,
    /// How many devices.
    #[arg(long)]
    count: u64,
    /// Product name.
    #[arg(long)]
    product: String,
    /// Output format: bin, hex, elf or blob (a device image from the golden
    /// image, inferred from the file by default), or esp-secure-cert or
    /// esp-nvs (an ESP32 credential partition per device).
    #[arg(long, value_parser = parse_mint_format)]
    format: Option<MintFormat>,
    /// ESP32 partition size in bytes (default 0x2000 for esp-secure-cert,
    /// 0x6000 for esp-nvs; hex with 0x).
    #[arg(long, value_parser = parse_number)]
    partition_size: Option<u64>,
    /// ESP32 partition flash offset from the partition table (e.g. 0xD000):
    /// recorded in the manifest with each device's esptool command line
    /// (default 0xD000 for esp-secure-cert).
    #[arg(long, value_parser = parse_number)]
    flash_offset: Option<u64>,
    /// NVS namespace of the credentials (esp-nvs; default esp_secure_cert).
    #[arg(long)]
    nvs_namespace: Option<String>,
    /// The chip, as esptool's --chip names it (ESP32 partition formats).
    #[arg(long, default_value = "esp32")]
    chip: String,
    /// Key protection done on the line with the chip attached (recorded in
    /// the manifest; the partition still holds the plaintext key): none, ds,
    /// hmac-encrypted, hmac-derived or ecdsa-peripheral.
    #[arg(long, value_parser = parse_key_protection, default_value = "none")]
    key_protection: ChipKeyProtection,
    /// The eFuse key block (0-5) the line uses for --key-protection.
    #[arg(long)]
    efuse_key_id: Option<u8>,
    /// Certificate profile.
    #[arg(long, default_value = "device")]
    profile: String,
    /// Device ids are this prefix and a number (default: derived from the
    /// product and the batch id).
    #[arg(long)]
    serial_prefix: Option<String>,
    /// Endpoint URL written into every slot.
    #[arg(long)]
    endpoint: Option<String>,
    /// Initial certificate state: ACTIVE or PENDING_ACTIVATION.
    #[arg(long, default_value = "ACTIVE")]
    status: CertificateStatus,
    /// Write images and manifest only as an age-encrypted tar to this
    /// recipient (`age1…` or `ssh-ed25519 …`).
    #[arg(long)]
    encrypt_to: Option<String>,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Issuing CA (the configured default by default).
    #[arg(long)]
    ca: Option<String>,
    /// Output directory (must be new or empty).
    #[arg(long)]
    out: PathBuf,
    /// Print the summary as a JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// What `batch mint --format` names: an image format or an ESP32 partition.
#[derive(Clone, Copy, Debug)]
pub enum MintFormat {
    /// A device image made from the golden image.
    Image(ImageFormat),
    /// An ESP32 credential partition.
    Partition(PartitionKind),
}

fn parse_mint_format(s: &str) -> Result<MintFormat, String> {
    if let Ok(kind) = s.parse::<PartitionKind>() {
        return Ok(MintFormat::Partition(kind));
    }
    s.parse::<ImageFormat>()
        .map(MintFormat::Image)
        .map_err(|_| {
            format!(
                "unknown format `{s}`; expected bin, hex, elf, blob, esp-secure-cert or esp-nvs"
            )
        })
}

/// A decimal number, or hex with `0x`.
pub(crate) fn parse_number(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("`{s}` is not a number (decimal, or hex with 0x)"))
}

fn parse_key_protection(s: &str) -> Result<ChipKeyProtection, String> {
    s.parse().map_err(|_| {
        format!(
            "unknown key protection `{s}`; expected one of {}",
            ChipKeyProtection::NAMES.join(", ")
        )
    })
}

/// `idmint batch resume`.
#[derive(Args)]
pub struct ResumeArgs {
    /// Batch id, or a unique prefix of it.
    batch: String,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print the summary as a JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// `idmint batch list`.
#[derive(Args)]
pub struct ListArgs {
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

/// `idmint batch show`.
#[derive(Args)]
pub struct ShowArgs {
    /// Batch id, or a unique prefix of it.
    batch: String,
    /// Print a JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs a `batch` subcommand.
pub async fn run(ctx: &Context, cmd: BatchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BatchCommand::Mint(args) => mint(ctx, args).await,
        BatchCommand::Resume(args) => resume(ctx, args).await,
        BatchCommand::List(args) => list(ctx, args).await,
        BatchCommand::Show(args) => show(ctx, args).await,
        BatchCommand::Create(args) => crate::commands::station::create_batch(ctx, args).await,
        BatchCommand::Authorize(args) => authorize(ctx, args).await,
        BatchCommand::Reconcile(args) => reconcile(ctx, args).await,
    }
}

async fn authorize(ctx: &Context, args: AuthorizeArgs) -> anyhow::Result<ExitCode> {
    let serial_range = args
        .serial_range
        .as_deref()
        .map(parse_serial_range)
        .transpose()?;
    let key = match (args.encrypt_to, args.pkcs11_key) {
        (Some(recipient), None) => BatchKeyDestination::Age(recipient),
        (None, Some(uri)) => BatchKeyDestination::Pkcs11(uri),
        _ => anyhow::bail!("give one of --encrypt-to and --pkcs11-key"),
    };
    let idmint = ctx.open().await?;
    let report = Station::new(&idmint)
        .authorize_offline_batch(
            &actor(),
            &AuthorizeRequest {
                factory: args.factory,
                count: args.count,
                serial_range,
                valid_days: args.valid_days,
                out: args.out,
                key,
                product: args.product,
                profile: args.profile,
                ca: args.ca,
                allow_inject: args.allow_inject,
            },
        )
        .await?;
    if args.json {
        // Every timestamp in JSON output is RFC 3339.
        let mut value = serde_json::to_value(&report)?;
        value["notAfter"] = output::unix_time(report.not_after).into();
        output::json(&value)?;
    } else {
        println!("{}", report.batch);
        let until = output::unix_time(report.not_after);
        eprintln!(
            "authorized {} (serials {}..{}) for factory {} until {until}, batch CA {} under {} (key: {}); bundle {}",
            output::count(report.count, "certificate"),
            report.serial_first,
            report.serial_last,
            report.factory,
            report.batch_ca,
            report.maker_ca,
            report.key,
            report.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn reconcile(ctx: &Context, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let report = Station::new(&idmint)
        .reconcile_issuance_log(&actor(), &args.log)
        .await?;
    if args.json {
        output::json(&report)?;
    } else {
        let batch = report.batch.as_deref().unwrap_or("?");
        println!(
            "batch {batch}: {} ({} new); issued {}, provisioned {}, spoiled {}{}",
            output::count(report.records, "record"),
            report.new_records,
            report.issued,
            report.provisioned,
            report.spoiled,
            report
                .count
                .map(|c| format!(" of {c} authorized"))
                .unwrap_or_default()
        );
        if report.accepted {
            println!(
                "registered {}",
                output::count(report.registered, "certificate")
            );
        }
        for f in &report.findings {
            println!("{f}");
        }
    }
    if report.clean() {
        return Ok(ExitCode::SUCCESS);
    }
    let first = report
        .findings
        .iter()
        .find(|f| f.rejects)
        .or(report.findings.first());
    let first = first.map(|f| f.to_string()).unwrap_or_default();
    if report.accepted {
        eprintln!(
            "error: reconcile of {} found {}: {first}",
            args.log.display(),
            output::count(report.findings.len() as u64, "problem")
        );
    } else {
        eprintln!(
            "error: issuance log {} rejected, nothing registered: {first}",
            args.log.display()
        );
    }
    Ok(ExitCode::FAILURE)
}

fn jobs(n: Option<usize>) -> usize {
    n.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
    .max(1)
}

/// The one-line summary of a mint or resume, or with `--json` the report
/// with its time and rate.
fn summary(report: &idmint_mint::MintReport, started: Instant, json: bool) -> anyhow::Result<()> {
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        report.minted as f64 / secs
    } else {
        0.0
    };
    if json {
        let mut value = serde_json::to_value(report)?;
        value["seconds"] = secs.into();
        value["perSecond"] = rate.into();
        return output::json(&value);
    }
    let place = match &report.archive {
        Some(a) => a.display().to_string(),
        None => report.out_dir.display().to_string(),
    };
    let mut extra = String::new();
    if report.spoiled > 0 || report.discarded > 0 {
        extra = format!(
            " ({} spoiled and replaced, {} unregistered files removed)",
            report.spoiled, report.discarded
        );
    }
    println!(
        "batch {}: {} in {secs:.2} s, {rate:.0} identities/s{extra} -> {place}",
        report.batch,
        output::count(report.minted, "identity")
    );
    Ok(())
}

async fn mint(ctx: &Context, args: MintArgs) -> anyhow::Result<ExitCode> {
    if !matches!(
        args.status,
        CertificateStatus::Active | CertificateStatus::PendingActivation
    ) {
        anyhow::bail!("--status must be ACTIVE or PENDING_ACTIVATION");
    }
    let (format, partition) = match args.format {
        Some(MintFormat::Partition(kind)) => {
            let size = args
                .partition_size
                .map(usize::try_from)
                .transpose()
                .map_err(|_| anyhow::anyhow!("--partition-size is too large"))?;
            let flash_offset = match (args.flash_offset, kind) {
                (None, PartitionKind::EspSecureCert) => Some(0xD000),
                (offset, _) => offset,
            };
            if args.nvs_namespace.is_some() && kind != PartitionKind::EspNvs {
                anyhow::bail!("--nvs-namespace is for --format esp-nvs");
            }
            let partition = EspPartition {
                format: kind.format(size, args.nvs_namespace.as_deref()),
                flash_offset,
                chip: args.chip,
                key_protection: args.key_protection,
                efuse_key_id: args.efuse_key_id,
            };
            (None, Some(partition))
        }
        other => {
            if args.partition_size.is_some()
                || args.flash_offset.is_some()
                || args.nvs_namespace.is_some()
                || args.key_protection != ChipKeyProtection::None
                || args.efuse_key_id.is_some()
            {
                anyhow::bail!(
                    "--partition-size, --flash-offset, --nvs-namespace, --key-protection and --efuse-key-id are for --format esp-secure-cert or esp-nvs"
                );
            }
            let format = match other {
                Some(MintFormat::Image(f)) => Some(f),
                _ => None,
            };
            (format, None)
        }
    };
    let idmint = ctx.open().await?;
    let request = MintRequest {
        golden: args.golden,
        format,
        partition,
        count: args.count,
        product: args.product,
        profile: args.profile,
        ca: args.ca,
        serial_prefix: args.serial_prefix,
        endpoint: args.endpoint,
        status: args.status,
        encrypt_to: args.encrypt_to,
        jobs: jobs(args.jobs),
        out_dir: args.out,
    };
    let bar = progress_bar(args.count);
    let started = Instant::now();
    let report = Mint::new(&idmint)
        .mint_batch(&actor(), &request, &|done, total| {
            bar.set_length(total);
            bar.set_position(done)
        })
        .await;
    bar.finish_and_clear();
    let report = report?;
    summary(&report, started, args.json)?;
    Ok(ExitCode::SUCCESS)
}

async fn resume(ctx: &Context, args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let batch = idmint.store().resolve_batch_id(&args.batch).await?;
    let bar = progress_bar(0);
    let started = Instant::now();
    let report = Mint::new(&idmint)
        .resume_batch(&actor(), &batch, jobs(args.jobs), &|done, total| {
            bar.set_length(total);
            bar.set_position(done)
        })
        .await;
    bar.finish_and_clear();
    let report = report?;
    summary(&report, started, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// A batch as `list` and `show` print it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchView {
    #[serde(flatten)]
    batch: Batch,
    /// Issued and not spoiled.
    good: i64,
    /// Images recorded for a mint batch (good ones).
    images: Option<usize>,
}

async fn view(idmint: &idmint_flows::Idmint, batch: Batch) -> anyhow::Result<BatchView> {
    let images = if batch.kind == idmint_flows::registry::BatchKind::Mint {
        let items = idmint.store().mint_items(&batch.id).await?;
        Some(items.iter().filter(|i| i.state == MINT_ITEM_OK).count())
    } else {
        None
    };
    let good = batch.issued - batch.spoiled;
    let mut batch = batch;
    // Offline authorizations keep their window in Unix seconds; every
    // timestamp idmint prints in JSON is RFC 3339.
    for field in ["notBefore", "notAfter"] {
        if let Some(secs) = batch.params.get(field).and_then(serde_json::Value::as_i64) {
            batch.params[field] = output::unix_time(secs).into();
        }
    }
    // Spoiled identities consumed a certificate: they stay counted.
    batch.remaining = (batch.count - batch.issued).max(0);
    Ok(BatchView {
        batch,
        good,
        images,
    })
}

async fn list(ctx: &Context, args: ListArgs) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let mut views = Vec::new();
    for b in idmint.store().list_batches().await? {
        views.push(view(&idmint, b).await?);
    }
    if args.json {
        output::json(&views)?;
    } else {
        let rows: Vec<Vec<String>> = views
            .iter()
            .map(|v| {
                vec![
                    v.batch.id.to_string(),
                    v.batch.kind.as_str().to_string(),
                    v.batch.product.clone(),
                    v.batch.count.to_string(),
                    v.batch.issued.to_string(),
                    v.batch.spoiled.to_string(),
                    v.batch.remaining.to_string(),
                    v.batch.state.clone(),
                ]
            })
            .collect();
        output::table(
            &[
                "ID",
                "KIND",
                "PRODUCT",
                "COUNT",
                "ISSUED",
                "SPOILED",
                "REMAINING",
                "STATE",
            ],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(ctx: &Context, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let id = idmint.store().resolve_batch_id(&args.batch).await?;
    let batch = idmint.store().require_batch(&id).await?;
    let v = view(&idmint, batch).await?;
    if args.json {
        output::json(&v)?;
    } else {
        let b = &v.batch;
        println!("id:        {}", b.id);
        println!("kind:      {}", b.kind.as_str());
        println!("product:   {}", b.product);
        println!("state:     {}", b.state);
        println!("profile:   {}", b.profile);
        println!("ca:        {}", b.ca);
        println!("count:     {}", b.count);
        println!("issued:    {}", b.issued);
        println!("spoiled:   {}", b.spoiled);
        println!("remaining: {}", b.remaining);
        println!(
            "policy:    pending-activation {}, refuse-clones {}",
            b.policy.pending_activation, b.policy.refuse_clones
        );
        if let Some(n) = v.images {
            println!("images:    {n}");
        }
        println!("params:    {}", b.params);
    }
    Ok(ExitCode::SUCCESS)
}
