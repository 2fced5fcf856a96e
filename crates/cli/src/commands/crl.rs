//! `idmint crl`: a signed RFC 5280 CRL of a CA's revoked certificates (for
//! an offline batch CA, signed by its CRL signer; `--ca <batch>-ca-signer`
//! gives the CRL covering that signer).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use idmint_flows::pki::to_pem;

use crate::{actor, Context};

/// Arguments of `idmint crl`.
#[derive(Args)]
pub struct CrlArgs {
    /// The CA whose CRL to issue (`<batch>-ca-signer`: the CRL an offline
    /// batch CA signed covering its CRL signer).
    #[arg(long, default_value = "issuing")]
    ca: String,
    /// Write here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// DER instead of PEM.
    #[arg(long)]
    der: bool,
}

/// Runs `idmint crl`.
pub async fn run(ctx: &Context, args: CrlArgs) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let der = match idmint.store().ca(&args.ca).await? {
        Some(_) => idmint.issue_crl(&actor(), &args.ca).await?,
        // `<batch>-ca-signer`: the CRL an offline batch CA signed at
        // authorization covering its CRL signer (for `-crl_check_all`).
        None => match idmint.crl_signer_status_crl(&args.ca).await? {
            Some(der) => der,
            None => idmint.issue_crl(&actor(), &args.ca).await?,
        },
    };
    let bytes = if args.der {
        der
    } else {
        to_pem("X509 CRL", &der).into_bytes()
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
