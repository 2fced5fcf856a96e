//! `idmint claim`: claim certificates for fleet provisioning, the shared
//! credential a golden image carries so a device can ask for its own.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use idmint_fleet::claims::ClaimValidity;

use crate::{actor, output, Context};
use idmint_fleet::Fleet;

/// `idmint claim` subcommands.
#[derive(Subcommand)]
pub enum ClaimCommand {
    /// Issue a claim certificate limited to the provisioning topics of its templates.
    Create {
        /// A fleet template it may use (repeatable).
        #[arg(long = "template", required = true)]
        templates: Vec<String>,
        /// Where to write the certificate chain (claim certificate, claim CA);
        /// must not exist yet.
        #[arg(long)]
        out_cert: PathBuf,
        /// Where to write the private key (created 0600); must not exist yet.
        #[arg(long)]
        out_key: PathBuf,
        /// Validity in days (default: `[fleet] claim_valid_days`).
        #[arg(long)]
        valid_days: Option<u32>,
        /// Provisioning requests per minute this claim may make, across all
        /// devices using it (default: `[fleet] claim_rate_per_minute`; 0: no limit).
        #[arg(long)]
        rate_per_minute: Option<u32>,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `idmint claim ...`.
pub async fn run(ctx: &Context, cmd: ClaimCommand) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    match cmd {
        ClaimCommand::Create {
            templates,
            out_cert,
            out_key,
            valid_days,
            rate_per_minute,
            json,
        } => {
            output::refuse_existing(&[&out_cert, &out_key])?;
            let days = valid_days.unwrap_or(idmint.config().fleet.claim_valid_days);
            let claim = Fleet::new(&idmint)
                .create_claim(
                    &actor(),
                    &templates,
                    ClaimValidity::Days(days),
                    rate_per_minute,
                )
                .await?;
            idmint_flows::files::write_secret(&out_key, claim.private_key.as_bytes())?;
            idmint_flows::files::write_new(&out_cert, claim.certificate_pem.as_bytes())?;
            if json {
                output::json(&serde_json::json!({
                    "certificateId": claim.certificate_id,
                    "templates": claim.templates,
                    "notAfter": output::time(claim.not_after),
                    "certificate": out_cert,
                    "key": out_key,
                }))?;
            } else {
                eprintln!(
                    "claim certificate {} for {} (valid until {}): {} and {}",
                    claim.certificate_id,
                    claim.templates.join(", "),
                    output::time(claim.not_after),
                    out_cert.display(),
                    out_key.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
