//! `idmint batch`: batches of identities. `mint` turns a golden firmware
//! image into per-device images (scenario 1), `resume` finishes an
//! interrupted mint, `list` and `show` report on every batch.
//!
//! One [`BatchCommand`] variant per subcommand, each with its own args struct.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use idmint_flows::mint::MintRequest;
use idmint_flows::registry::{Batch, CertificateStatus, MINT_ITEM_OK};
use idmint_slot::ImageFormat;
use serde::Serialize;

use crate::commands::cert::progress_bar;
use crate::{actor, output, Context};

/// `idmint batch` subcommands.
#[derive(Subcommand)]
pub enum BatchCommand {
    /// Mint per-device firmware images from a golden image.
    Mint(MintArgs),
    /// Finish an interrupted `batch mint`.
    Resume(ResumeArgs),
    /// List batches.
    List(ListArgs),
    /// Show one batch: issued, spoiled, remaining.
    Show(ShowArgs),
    /// Create a batch (with its quota) that provisioning stations fill.
    Create(crate::commands::station::CreateArgs),
}

/// `idmint batch mint`.
#[derive(Args)]
pub struct MintArgs {
    /// The golden image (with one empty credential slot).
    #[arg(long)]
    golden: PathBuf,
    /// How many devices.
    #[arg(long)]
    count: u64,
    /// Product name.
    #[arg(long)]
    product: String,
    /// Image format: bin, hex, elf or blob (inferred from the file by default).
    #[arg(long)]
    format: Option<ImageFormat>,
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
}

/// `idmint batch resume`.
#[derive(Args)]
pub struct ResumeArgs {
    /// Batch id.
    batch: String,
    /// Worker threads (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
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
    /// Batch id.
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
    }
}

fn jobs(n: Option<usize>) -> usize {
    n.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
    .max(1)
}

fn summary(report: &idmint_flows::mint::MintReport, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        report.minted as f64 / secs
    } else {
        0.0
    };
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
        "batch {}: {} identities in {secs:.2} s, {rate:.0} identities/s{extra} -> {place}",
        report.batch, report.minted
    );
}

async fn mint(ctx: &Context, args: MintArgs) -> anyhow::Result<ExitCode> {
    if !matches!(
        args.status,
        CertificateStatus::Active | CertificateStatus::PendingActivation
    ) {
        anyhow::bail!("--status must be ACTIVE or PENDING_ACTIVATION");
    }
    let idmint = ctx.open().await?;
    let request = MintRequest {
        golden: args.golden,
        format: args.format,
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
    let report = idmint
        .mint_batch(&actor(), &request, &|done, total| {
            bar.set_length(total);
            bar.set_position(done)
        })
        .await;
    bar.finish_and_clear();
    let report = report?;
    summary(&report, started);
    Ok(ExitCode::SUCCESS)
}

async fn resume(ctx: &Context, args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let bar = progress_bar(0);
    let started = Instant::now();
    let report = idmint
        .resume_batch(&actor(), &args.batch, jobs(args.jobs), &|done, total| {
            bar.set_length(total);
            bar.set_position(done)
        })
        .await;
    bar.finish_and_clear();
    let report = report?;
    summary(&report, started);
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
                    v.batch.id.clone(),
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
    let batch = idmint.store().require_batch(&args.batch).await?;
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
        if let Some(n) = v.images {
            println!("images:    {n}");
        }
        println!("params:    {}", b.params);
    }
    Ok(ExitCode::SUCCESS)
}
