//! `idmint devsim`: a simulated device speaking the device agent protocol,
//! for trying a station without hardware and for tests.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use idmint_agent::{run_devsim, DevsimListen, DevsimOptions, Misbehaviour};

/// Arguments of `idmint devsim`.
#[derive(Args)]
pub struct DevsimArgs {
    /// Listen on a TCP address (`tcp://127.0.0.1:PORT`; port 0 picks one),
    /// or `stdio`: serve the one station that started this process on its
    /// stdin and stdout (`station run --device 'exec:idmint devsim --listen
    /// stdio --state DIR'`).
    #[arg(long, conflicts_with = "pty", required_unless_present = "pty")]
    listen: Option<String>,
    /// Listen on a new pseudo-terminal (the station uses `serial:` + the
    /// printed path).
    #[arg(long)]
    pty: bool,
    /// The device's secure storage: `key.pem`, `cert.pem` (chain, leaf
    /// first), `hw-id`, `locked`.
    #[arg(long)]
    state: PathBuf,
    /// Hardware id (default: the stored one, or a new random one).
    #[arg(long)]
    hw_id: Option<String>,
    /// Simulate a device that cannot generate keys (accepts `inject` only).
    #[arg(long)]
    no_keygen: bool,
    /// Misbehave for tests, e.g. `drop-after=2,garbage-at=keygen,delay-ms=500,
    /// bad-csr-signature,wrong-key-type,bad-proof`.
    #[arg(long, hide = true)]
    misbehave: Option<String>,
}

/// Runs `idmint devsim` until killed.
pub async fn run(args: DevsimArgs) -> anyhow::Result<ExitCode> {
    let listen = match (&args.listen, args.pty) {
        (_, true) => DevsimListen::Pty,
        (Some(addr), false) => addr.parse().map_err(anyhow::Error::msg)?,
        (None, false) => anyhow::bail!("give --listen tcp://IP:PORT or --pty"),
    };
    let mut opts = DevsimOptions::new(listen, args.state);
    opts.hw_id = args.hw_id;
    opts.no_keygen = args.no_keygen;
    if let Some(spec) = &args.misbehave {
        opts.misbehave = spec
            .parse::<Misbehaviour>()
            .map_err(anyhow::Error::msg)
            .context("--misbehave")?;
    }
    tokio::task::spawn_blocking(move || run_devsim(opts))
        .await
        .context("device simulator thread")??;
    Ok(ExitCode::SUCCESS)
}
