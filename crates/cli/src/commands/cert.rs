//! `idmint cert`: issue from a CSR, generate key + certificate (one or in
//! bulk), list, show, revoke, activate, deactivate.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use idmint_flows::access::{Action, Resource};
use idmint_flows::files::{write_new, write_secret};
use idmint_flows::issue::{BulkRequest, IssueOptions, Issued};
use idmint_flows::pki::{to_pem, Csr, KeyType, RevocationReason};
use idmint_flows::registry::{CertificateFilter, CertificateStatus};
use idmint_flows::ThingName;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{actor, local, output, Context};

/// `idmint cert` subcommands.
#[derive(Subcommand)]
pub enum CertCommand {
    /// Issue a certificate for a PKCS#10 CSR (the key stays with its owner).
    #[command(after_help = "Example:\n  \
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\\n      \
        -keyout dev-1.key -subj /CN=dev-1 -out dev-1.csr\n  \
        idmint cert issue --csr dev-1.csr --out dev-1.pem --json")]
    Issue(IssueArgs),
    /// Generate a key and its certificate here (one, or --count in bulk).
    #[command(after_help = "Examples:\n  \
        idmint cert new --thing sensor-1                      # sensor-1.key.pem, sensor-1.cert.pem\n  \
        idmint cert new --count 100 --thing-prefix sensor- --out-dir certs")]
    New(NewArgs),
    /// List certificates.
    List {
        /// Only those of this thing.
        #[arg(long)]
        thing: Option<String>,
        /// Only those in this state (ACTIVE, INACTIVE, REVOKED, PENDING_ACTIVATION).
        #[arg(long)]
        status: Option<CertificateStatus>,
        /// Only those of this CA.
        #[arg(long)]
        ca: Option<String>,
        /// Only those of this batch.
        #[arg(long)]
        batch: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one certificate.
    #[command(
        after_help = "Example:\n  idmint cert show 3f9a --json   # a unique prefix of the id is enough, as in git"
    )]
    Show {
        /// Certificate id (SHA-256 of the DER, hex), or a unique prefix of
        /// at least 4 hex digits.
        id: String,
        /// Print just the certificate as PEM.
        #[arg(long, conflicts_with = "json")]
        pem: bool,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a certificate (it goes on its CA's CRL).
    #[command(after_help = "Example:\n  idmint cert revoke 3f9a --reason keyCompromise --json")]
    Revoke {
        /// Certificate id, or a unique prefix of at least 4 hex digits.
        id: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise,
        /// affiliationChanged, superseded, cessationOfOperation,
        /// certificateHold, privilegeWithdrawn.
        #[arg(long, default_value = "unspecified")]
        reason: RevocationReason,
        /// Print the certificate afterwards as a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Make a certificate ACTIVE.
    Activate {
        /// Certificate id, or a unique prefix of at least 4 hex digits.
        id: String,
        /// Print the certificate afterwards as a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Make a certificate INACTIVE.
    Deactivate {
        /// Certificate id, or a unique prefix of at least 4 hex digits.
        id: String,
        /// Print the certificate afterwards as a JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Options shared by `cert issue` and `cert new`.
#[derive(Args)]
pub struct IssueFlags {
    /// Certificate profile.
    #[arg(long, default_value = "device")]
    profile: String,
    /// Issuing CA (the configured default otherwise).
    #[arg(long)]
    ca: Option<String>,
    /// Initial state.
    #[arg(long, default_value = "ACTIVE")]
    status: CertificateStatus,
    /// Print a JSON object on stdout.
    #[arg(long)]
    json: bool,
}

impl IssueFlags {
    fn options(&self, thing: Option<ThingName>) -> IssueOptions {
        IssueOptions {
            profile: self.profile.clone(),
            ca: self.ca.clone(),
            thing,
            status: self.status,
            batch: None,
        }
    }
}

/// Arguments of `cert issue`.
#[derive(Args)]
pub struct IssueArgs {
    /// The PKCS#10 request, PEM or DER.
    #[arg(long)]
    csr: PathBuf,
    /// Thing name (the CSR's common name otherwise).
    #[arg(long)]
    thing: Option<String>,
    /// Write the certificate here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    flags: IssueFlags,
}

/// Arguments of `cert new`.
#[derive(Args)]
pub struct NewArgs {
    /// Thing name (single identity).
    #[arg(long, required_unless_present = "count", conflicts_with_all = ["count", "thing_prefix", "out_dir"])]
    thing: Option<String>,
    /// Where to write the private key (default THING.key.pem); created 0600, never overwritten.
    #[arg(long)]
    out_key: Option<PathBuf>,
    /// Where to write the certificate (default THING.cert.pem).
    #[arg(long)]
    out: Option<PathBuf>,
    /// How many identities to make in bulk.
    #[arg(long, requires_all = ["thing_prefix", "out_dir"])]
    count: Option<u64>,
    /// Bulk: thing names are this prefix and a zero-padded number.
    #[arg(long)]
    thing_prefix: Option<String>,
    /// Bulk: the first number.
    #[arg(long, default_value_t = 1)]
    start: u64,
    /// Bulk: directory for THING.key.pem and THING.cert.pem files.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Bulk: worker threads (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Key type (the configured one by default).
    #[arg(long)]
    key_type: Option<KeyType>,
    #[command(flatten)]
    flags: IssueFlags,
}

/// Runs `idmint cert ...`.
pub async fn run(ctx: &Context, cmd: CertCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CertCommand::Issue(args) => issue(ctx, args).await,
        CertCommand::New(args) if args.count.is_some() => bulk(ctx, args).await,
        CertCommand::New(args) => new_one(ctx, args).await,
        CertCommand::List {
            thing,
            status,
            ca,
            batch,
            json,
        } => {
            let idmint = ctx.open().await?;
            let filter = CertificateFilter {
                thing,
                status,
                ca,
                batch,
                ..CertificateFilter::default()
            };
            let certs = idmint.store().list_certificates(&filter).await?;
            if json {
                output::json(&certs)?;
            } else {
                let rows: Vec<Vec<String>> = certs
                    .iter()
                    .map(|c| {
                        vec![
                            c.id.to_string(),
                            c.status.to_string(),
                            c.thing.clone().unwrap_or_default(),
                            c.ca.clone(),
                            output::time(c.not_after),
                        ]
                    })
                    .collect();
                output::table(&["ID", "STATUS", "THING", "CA", "NOT AFTER"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        CertCommand::Show { id, pem, json } => {
            let idmint = ctx.open().await?;
            let id = idmint.store().resolve_certificate_id(&id).await?;
            let cert = idmint.store().require_certificate(&id).await?;
            if pem {
                print!("{}", to_pem("CERTIFICATE", &cert.der));
            } else if json {
                output::json(&certificate_json(&cert)?)?;
            } else {
                println!("id:         {}", cert.id);
                println!("status:     {}", cert.status);
                println!("thing:      {}", cert.thing.as_deref().unwrap_or("-"));
                println!("ca:         {}", cert.ca);
                println!("serial:     {}", cert.serial);
                println!("subject:    {}", cert.subject);
                println!("key type:   {}", cert.key_type.as_deref().unwrap_or("-"));
                println!("not before: {}", output::time(cert.not_before));
                println!("not after:  {}", output::time(cert.not_after));
                if let Some(batch) = &cert.batch {
                    println!("batch:      {batch}");
                }
                if let (Some(at), Some(reason)) = (cert.revoked_at, &cert.revocation_reason) {
                    println!("revoked:    {} ({reason})", output::time(at));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CertCommand::Revoke { id, reason, json } => {
            set_status(ctx, &id, CertificateStatus::Revoked, Some(reason), json).await
        }
        CertCommand::Activate { id, json } => {
            set_status(ctx, &id, CertificateStatus::Active, None, json).await
        }
        CertCommand::Deactivate { id, json } => {
            set_status(ctx, &id, CertificateStatus::Inactive, None, json).await
        }
    }
}

/// A certificate as `cert show --json` prints it: the registry record and
/// its PEM.
fn certificate_json(
    cert: &idmint_flows::registry::Certificate,
) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(cert)?;
    value["certificatePem"] = to_pem("CERTIFICATE", &cert.der).into();
    Ok(value)
}

async fn set_status(
    ctx: &Context,
    id: &str,
    status: CertificateStatus,
    reason: Option<RevocationReason>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let id = idmint.store().resolve_certificate_id(id).await?;
    let who = local().authorize(Action::ChangeCertificateStatus, &Resource::everything())?;
    idmint
        .set_certificate_status(&who, &id, status, reason)
        .await?;
    if json {
        let cert = idmint.store().require_certificate(&id).await?;
        output::json(&certificate_json(&cert)?)?;
    } else {
        eprintln!("certificate {id} is now {status}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn issue(ctx: &Context, args: IssueArgs) -> anyhow::Result<ExitCode> {
    if let Some(out) = &args.out {
        output::refuse_existing(&[out])?;
    }
    let bytes =
        std::fs::read(&args.csr).with_context(|| format!("reading {}", args.csr.display()))?;
    let csr = Csr::from_pem_or_der(&bytes).with_context(|| format!("{}", args.csr.display()))?;
    let idmint = ctx.open().await?;
    let thing = args.thing.as_deref().map(ThingName::parse).transpose()?;
    let options = args.flags.options(thing);
    let who = local().authorize_issuance(Action::IssueInBatch, options.batch.as_deref())?;
    let issued = idmint.issue_from_csr(&who, &csr, &options).await?;
    let pem = issued.certificate.pem();
    match &args.out {
        Some(path) => write_new(path, pem.as_bytes())?,
        None if !args.flags.json => print!("{pem}"),
        None => {}
    }
    report(&issued, args.flags.status, args.flags.json)
}

async fn new_one(ctx: &Context, args: NewArgs) -> anyhow::Result<ExitCode> {
    let Some(thing) = args.thing.as_deref() else {
        anyhow::bail!("give --thing NAME, or --count N --thing-prefix P --out-dir DIR");
    };
    // Parsed before it names a file: a thing name holds no '/' or '.'.
    let thing = ThingName::parse(thing)?;
    let key_path = args
        .out_key
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{thing}.key.pem")));
    let cert_path = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{thing}.cert.pem")));
    output::refuse_existing(&[&key_path, &cert_path])?;
    let idmint = ctx.open().await?;
    let options = args.flags.options(Some(thing.clone()));
    let (key, issued) = idmint
        .new_identity(
            &local().authorize_issuance(Action::IssueInBatch, options.batch.as_deref())?,
            &thing,
            args.key_type,
            &options,
        )
        .await?;
    write_secret(&key_path, key.pkcs8_pem().as_bytes())?;
    write_new(&cert_path, issued.certificate.pem().as_bytes())?;
    if !args.flags.json {
        eprintln!("wrote {} and {}", key_path.display(), cert_path.display());
    }
    report(&issued, args.flags.status, args.flags.json)
}

fn report(issued: &Issued, status: CertificateStatus, json: bool) -> anyhow::Result<ExitCode> {
    let info = &issued.certificate.info;
    if json {
        output::json(&serde_json::json!({
            "id": info.id,
            "thing": issued.thing,
            "ca": issued.ca,
            "status": status,
            "serial": info.serial,
            "subject": info.subject,
            "notBefore": output::time(info.not_before),
            "notAfter": output::time(info.not_after),
            "certificatePem": issued.certificate.pem(),
        }))?;
    } else {
        eprintln!(
            "certificate {} issued to {} by {}",
            info.id, issued.thing, issued.ca
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn bulk(ctx: &Context, args: NewArgs) -> anyhow::Result<ExitCode> {
    let (Some(count), Some(prefix), Some(out_dir)) =
        (args.count, args.thing_prefix.clone(), args.out_dir.clone())
    else {
        anyhow::bail!("bulk generation needs --count, --thing-prefix and --out-dir");
    };
    let idmint = ctx.open().await?;
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let request = BulkRequest {
        count,
        thing_prefix: prefix,
        start: args.start,
        out_dir: out_dir.clone(),
        key_type: args.key_type,
        jobs,
        options: args.flags.options(None),
    };
    let bar = progress_bar(count);
    let started = Instant::now();
    let report = idmint
        .bulk_new(&actor(), &request, &|done| bar.set_position(done))
        .await;
    bar.finish_and_clear();
    let report = report?;
    let secs = started.elapsed().as_secs_f64();
    let rate = report.issued as f64 / secs.max(1e-9);
    if args.flags.json {
        output::json(
            &serde_json::json!({"issued": report.issued, "seconds": secs, "perSecond": rate, "outDir": out_dir}),
        )?;
    } else {
        eprintln!(
            "issued {} in {:.2} s ({:.0}/s) into {}",
            output::count(report.issued, "identity"),
            secs,
            rate,
            out_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on a terminal; hidden otherwise.
pub fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}") {
        bar.set_style(style);
    }
    bar
}
