//! `idmint manifest`: import a vendor's manifest of pre-provisioned secure
//! elements (or a fleet moved from another registry), export one, and (hidden)
//! generate test manifests playing the HSM vendor.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use idmint_flows::registry::CertificateStatus;
use idmint_flows::FlowError;
use idmint_manifest::{
    ExportFormat, ExportSelector, ImportOptions, ManifestFormat, Manifests, Rejection,
    ThingNameFrom,
};
use idmint_tools::vendor_sim::VendorSim;

use crate::{actor, output, Context};

/// Rejections printed on stderr when no --report file is given.
const SHOWN_REJECTIONS: u64 = 20;

/// `idmint manifest` subcommands.
#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Import a manifest: every entry checked, good ones registered, bad
    /// ones reported.
    #[command(after_help = "Examples:\n  \
        idmint ca register --name vendor --cert vendor-root.pem --signer vendor-signer.pem\n  \
        idmint manifest import trustngo.json --ca vendor                 # signed Trust&GO: the vendor root\n  \
        idmint manifest import devices.jsonl --ca vendor-signer --json   # JSONL/CSV/PEM: the signer intermediate\n\n\
        docs/s3-manifests.md walks through it with a generated test manifest.")]
    Import(ImportArgs),
    /// Export the certificates of a batch or CA for another registry.
    Export(ExportArgs),
    /// Generate test manifests playing the HSM vendor (tests, benchmarks,
    /// trying the import before a real manifest arrives).
    #[command(after_help = "Example:\n  \
        idmint manifest generate-test --count 10 --test-set --out vendor\n  \
        ls vendor   # README.txt says which file is which and which CA to register")]
    GenerateTest(GenerateArgs),
}

/// `idmint manifest import`.
#[derive(Args)]
pub struct ImportArgs {
    /// The manifest file, or a folder of PEM certificates.
    pub file: PathBuf,
    /// The registered CA the device certificates chain to.
    #[arg(long)]
    pub ca: String,
    /// Initial certificate state (ACTIVE or PENDING_ACTIVATION).
    #[arg(long, default_value = "ACTIVE")]
    pub status: CertificateStatus,
    /// Thing names from: cn, unique-id or serial (default: the entry's own
    /// thing name, else its unique id).
    #[arg(long)]
    pub thing_name_from: Option<ThingNameFrom>,
    /// Write one JSON line per rejected entry here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Exit 0 even if some entries were rejected.
    #[arg(long)]
    pub allow_partial: bool,
    /// microchip, jsonl, pem or csv (detected when absent).
    #[arg(long)]
    pub format: Option<ManifestFormat>,
    /// Profile whose key types are allowed.
    #[arg(long, default_value = "device")]
    pub profile: String,
    /// Import batch id (generated when absent; an existing import batch of
    /// the same CA is extended).
    #[arg(long)]
    pub batch: Option<String>,
    /// Checking threads (default: the number of CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `idmint manifest export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Export this batch.
    #[arg(long, conflicts_with = "ca", required_unless_present = "ca")]
    pub batch: Option<String>,
    /// Export every certificate registered under this CA.
    #[arg(long)]
    pub ca: Option<String>,
    /// jsonl, csv or pem-tar.
    #[arg(long, default_value = "jsonl")]
    pub format: ExportFormat,
    /// Output file (stdout when absent).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `idmint manifest generate-test`.
#[derive(Args)]
pub struct GenerateArgs {
    /// Entries in the manifest.
    #[arg(long, default_value_t = 10)]
    pub count: u64,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Write the full test set (tampered manifests, JSON lines, CSV, PEM
    /// folder) instead of one large signed manifest.
    #[arg(long)]
    pub test_set: bool,
    /// Unique id prefix for the large manifest.
    #[arg(long, default_value = "")]
    pub prefix: String,
}

/// Runs `idmint manifest ...`.
pub async fn run(ctx: &Context, cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ManifestCommand::Import(args) => import(ctx, args).await,
        ManifestCommand::Export(args) => export(ctx, args).await,
        ManifestCommand::GenerateTest(args) => {
            let sim = VendorSim::new()?;
            let jobs = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2);
            if args.test_set {
                sim.write_test_set(&args.out, args.count)?;
            } else {
                sim.write_signed_manifest(&args.out, args.count, jobs, &args.prefix)?;
            }
            eprintln!("wrote test manifests into {}", args.out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn import(ctx: &Context, args: ImportArgs) -> anyhow::Result<ExitCode> {
    if !matches!(
        args.status,
        CertificateStatus::Active | CertificateStatus::PendingActivation
    ) {
        anyhow::bail!("--status must be ACTIVE or PENDING_ACTIVATION");
    }
    let idmint = ctx.open().await?;
    let mut report = match &args.report {
        Some(p) => {
            Some(BufWriter::new(File::create(p).with_context(|| {
                format!("creating the report {}", p.display())
            })?))
        }
        None => None,
    };
    let options = ImportOptions {
        path: args.file.clone(),
        format: args.format,
        ca: args.ca.clone(),
        status: args.status,
        thing_name_from: args.thing_name_from,
        profile: args.profile.clone(),
        batch: args.batch.clone(),
        jobs: args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
    };
    let bar = super::cert::progress_bar(0);
    let mut shown = 0u64;
    let mut on_reject = |r: &Rejection| -> Result<(), FlowError> {
        match report.as_mut() {
            Some(w) => {
                let line =
                    serde_json::to_string(r).map_err(|e| FlowError::Internal(e.to_string()))?;
                writeln!(w, "{line}").map_err(|e| FlowError::io("import report", e))?;
            }
            None if shown < SHOWN_REJECTIONS => {
                shown += 1;
                bar.suspend(|| eprintln!("rejected {r}"));
            }
            None => {}
        }
        Ok(())
    };
    let summary = Manifests::new(&idmint)
        .import_manifest(&actor(), &options, &mut on_reject, &|done| {
            bar.set_position(done)
        })
        .await;
    bar.finish_and_clear();
    if let Some(w) = report.as_mut() {
        w.flush().context("writing the import report")?;
    }
    let s = summary?;
    if args.json {
        output::json(&s)?;
    } else {
        eprintln!(
            "{}: {} new, {} already registered, {} rejected{} in {:.2} s ({:.0} entries/s)",
            output::count(s.entries, "entry"),
            s.registered,
            s.already_registered,
            s.rejected,
            s.batch
                .as_deref()
                .map(|b| format!(", batch {b}"))
                .unwrap_or_default(),
            s.seconds,
            s.per_second
        );
        if s.rejected > 0 {
            match &args.report {
                Some(p) => eprintln!("rejected entries are listed in {}", p.display()),
                None if s.rejected > shown => eprintln!(
                    "({} more rejections; use --report FILE)",
                    s.rejected - shown
                ),
                None => {}
            }
        }
    }
    Ok(if s.rejected > 0 && !args.allow_partial {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

async fn export(ctx: &Context, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let selector = match (args.batch, args.ca) {
        (Some(b), _) => ExportSelector::Batch(b),
        (None, Some(c)) => ExportSelector::Ca(c),
        (None, None) => anyhow::bail!("give --batch or --ca"),
    };
    let count = match &args.out {
        Some(p) => {
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(p)
                .with_context(|| format!("creating {}", p.display()))?;
            let mut w = BufWriter::new(file);
            Manifests::new(&idmint)
                .export_manifest(&selector, args.format, &mut w)
                .await?
        }
        None => {
            let mut w = BufWriter::new(std::io::stdout());
            Manifests::new(&idmint)
                .export_manifest(&selector, args.format, &mut w)
                .await?
        }
    };
    eprintln!("exported {}", output::count(count as u64, "certificate"));
    Ok(ExitCode::SUCCESS)
}
