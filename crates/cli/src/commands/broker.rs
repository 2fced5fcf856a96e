//! `idmint broker`: set-ups for outside MQTT brokers that trust idmint.
//! `broker mosquitto --out DIR` writes the CA file, the ACL compiled from
//! the attached policies, and a `mosquitto.conf` that uses them with the
//! CRL directory `idmint serve --crl-dir` keeps current.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use idmint_flows::broker::crl_dir::ALL_CRLS;
use idmint_flows::files::replace_public;
use idmint_flows::pki::to_pem;

use crate::Context;

/// `idmint broker` subcommands.
#[derive(Subcommand)]
pub enum BrokerCommand {
    /// Write a mosquitto set-up: `ca.pem`, `acl` (compiled from the
    /// attached policies; what has no exact form is reported and left out,
    /// so the broker denies it) and `mosquitto.conf`. Re-run it after
    /// policies change: it rewrites the ACL atomically.
    Mosquitto {
        /// Where the files go (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The CRL directory of `idmint serve --crl-dir` (default: `[crl]
        /// dir`, else OUT/crls).
        #[arg(long)]
        crl_dir: Option<PathBuf>,
        /// The broker's TLS listener port.
        #[arg(long, default_value_t = 8883)]
        port: u16,
        /// The address the listener binds (default: all).
        #[arg(long)]
        bind_address: Option<String>,
        /// The broker's own certificate (PEM), for `certfile`.
        #[arg(long, default_value = "/etc/mosquitto/certs/server.pem")]
        certfile: PathBuf,
        /// The broker's own private key (PEM), for `keyfile`.
        #[arg(long, default_value = "/etc/mosquitto/certs/server.key")]
        keyfile: PathBuf,
    },
}

/// Runs `idmint broker ...`.
pub async fn run(ctx: &Context, cmd: BrokerCommand) -> anyhow::Result<ExitCode> {
    let BrokerCommand::Mosquitto {
        out,
        crl_dir,
        port,
        bind_address,
        certfile,
        keyfile,
    } = cmd;
    let idmint = ctx.open().await?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out
        .canonicalize()
        .with_context(|| format!("resolving {}", out.display()))?;
    let crl_dir = crl_dir
        .or_else(|| idmint.config().crl.dir.clone())
        .unwrap_or_else(|| out.join("crls"));

    let mut chain = String::new();
    // Device CAs only: a claim certificate has no business on the broker.
    for name in idmint.crl_issuers().await? {
        let ca = idmint.store().require_ca(&name).await?;
        if ca.kind != idmint_flows::registry::CaKind::Claim {
            chain.push_str(&to_pem("CERTIFICATE", &ca.certificate_der));
        }
    }
    replace_public(&out.join("ca.pem"), chain.as_bytes())?;

    let acl = idmint.mosquitto_acl().await?;
    replace_public(&out.join("acl"), acl.text.as_bytes())?;

    let listener = match &bind_address {
        Some(addr) => format!("listener {port} {addr}"),
        None => format!("listener {port}"),
    };
    let conf = format!(
        "# idmint broker mosquitto: devices authenticate with their idmint certificates;\n\
         # the ACL is compiled from their policies; `idmint serve --crl-dir {crl}` keeps the\n\
         # CRL current (add --crl-reload-cmd 'kill -HUP $(cat PIDFILE)').\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         {listener}\n\
         cafile {ca}\n\
         certfile {certfile}\n\
         keyfile {keyfile}\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         crlfile {crl}/{ALL_CRLS}\n\
         acl_file {acl}\n",
        crl = crl_dir.display(),
        ca = out.join("ca.pem").display(),
        certfile = certfile.display(),
        keyfile = keyfile.display(),
        acl = out.join("acl").display(),
    );
    replace_public(&out.join("mosquitto.conf"), conf.as_bytes())?;

    for line in &acl.left_out {
        eprintln!("left out (the broker denies it): {line}");
    }
    eprintln!(
        "wrote {} ({} users, {} left out), {}, {}",
        out.join("acl").display(),
        acl.users,
        acl.left_out.len(),
        out.join("ca.pem").display(),
        out.join("mosquitto.conf").display()
    );
    if !crl_dir.join(ALL_CRLS).exists() {
        eprintln!(
            "no {} yet: start `idmint serve --crl-dir {}` before the broker",
            crl_dir.join(ALL_CRLS).display(),
            crl_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
