//! `idmint init`: a new data directory, root CA and issuing CA.

use std::process::ExitCode;

use clap::Args;
use idmint_flows::init::{init, InitOptions};
use idmint_flows::pki::KeyType;

use crate::{passphrase_from_env, Context};

/// Arguments of `idmint init`.
#[derive(Args)]
#[command(after_help = "Example:\n  \
    IDMINT_CA_PASSPHRASE=... idmint init --org \"Example Co\"   # ./idmint-data, or --data DIR\n\n\
    Without IDMINT_CA_PASSPHRASE a passphrase is generated into DATA/ca-passphrase.")]
pub struct InitArgs {
    /// Organisation named in the CA subjects (and `{org}` in profiles).
    #[arg(long, default_value = "idmint")]
    org: String,
    /// CA key type: p256, p384, ed25519, rsa2048.
    #[arg(long, default_value = "p256")]
    key_type: KeyType,
}

/// Runs `idmint init`.
pub async fn run(ctx: &Context, args: InitArgs) -> anyhow::Result<ExitCode> {
    let (idmint, report) = init(
        &ctx.data,
        InitOptions {
            org: args.org,
            key_type: args.key_type,
            store: ctx.store.clone(),
            passphrase: passphrase_from_env(),
        },
    )
    .await?;
    if let Some(path) = &report.generated_passphrase {
        eprintln!(
            "warning: IDMINT_CA_PASSPHRASE is not set; generated a CA key passphrase and stored it in {} (mode 0600). \
             Move it somewhere safer and set IDMINT_CA_PASSPHRASE for production.",
            path.display()
        );
    }
    let cas = idmint.store().list_cas().await?;
    if report.created_cas {
        eprintln!(
            "initialised {} with store {}",
            ctx.data.display(),
            report.store_url
        );
    } else {
        eprintln!(
            "initialised {} on the existing registry at {} (its CAs were kept)",
            ctx.data.display(),
            report.store_url
        );
    }
    for ca in cas {
        eprintln!("  {:<8} {:<10} {}", ca.kind.as_str(), ca.name, ca.subject);
    }
    Ok(ExitCode::SUCCESS)
}
