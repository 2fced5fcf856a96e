//! `idmint serve`: the HTTPS server (REST API, EST, OCSP, CRLs) and the MQTT
//! fleet provisioning endpoint. Initialises the data directory on first start.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use idmint_flows::init::{init, InitOptions};

use crate::{passphrase_from_env, Context};

/// `idmint serve` options.
#[derive(Args)]
#[command(after_help = "Example:\n  \
    idmint serve --listen 127.0.0.1:8443 --mqtt-listen off &\n  \
    idmint ca show root --pem > root.pem\n  \
    curl --cacert root.pem https://localhost:8443/healthz\n\n\
    The server certificate names localhost, 127.0.0.1 and every name in [server] hosts of\n\
    DATA/idmint.toml (e.g. hosts = [\"idmint.example.com\", \"10.0.0.5\"]); it is reissued\n\
    when that list changes. Clients trust the root CA.")]
pub struct ServeArgs {
    /// HTTPS listen address (default: `[server] listen`, else 0.0.0.0:8443).
    #[arg(long)]
    pub listen: Option<String>,
    /// MQTT (fleet provisioning) listen address (default: `[fleet]
    /// mqtt_listen`, else 0.0.0.0:8883); `off` serves no MQTT.
    #[arg(long)]
    pub mqtt_listen: Option<String>,
    /// Requests per second per client (0: no limit), overriding `[server] rate_limit`.
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Seconds a replaced certificate stays ACTIVE after re-enrollment,
    /// overriding `[server] rotation_overlap_secs`.
    #[arg(long)]
    pub rotation_overlap: Option<u64>,
    /// Seconds a station's certificate may stay PENDING_ACTIVATION (issued,
    /// never confirmed on its device) before it is spoiled, overriding
    /// `[server] station_pending_timeout_secs` (default 3600).
    #[arg(long)]
    pub station_pending_timeout: Option<u64>,
    /// Directory where CRL files for outside brokers are kept current:
    /// `<ca-name>.crl.pem` per CA and `all.crl.pem`, rewritten within
    /// seconds of a revocation (overrides `[crl] dir`).
    #[arg(long, value_name = "DIR")]
    pub crl_dir: Option<std::path::PathBuf>,
    /// Command run with `sh -c` after the CRL files changed, e.g.
    /// `kill -HUP $(cat /run/mosquitto.pid)` (overrides `[crl] reload_cmd`).
    #[arg(long, value_name = "CMD", requires = "crl_dir")]
    pub crl_reload_cmd: Option<String>,
}

/// Runs `idmint serve`.
pub async fn run(ctx: &Context, args: ServeArgs) -> anyhow::Result<ExitCode> {
    if !ctx.data.join(idmint_flows::config::CONFIG_FILE).exists() {
        let options = InitOptions {
            org: "idmint".into(),
            key_type: idmint_flows::pki::KeyType::P256,
            store: ctx.store.clone(),
            passphrase: passphrase_from_env(),
        };
        let (_, report) = init(&ctx.data, options).await?;
        eprintln!(
            "initialised {} (store {})",
            ctx.data.display(),
            report.store_url
        );
        if let Some(p) = report.generated_passphrase {
            eprintln!(
                "the CA passphrase was generated and saved in {}",
                p.display()
            );
        }
    }
    let idmint = ctx.open().await?;
    let mut server_cfg = idmint.config().server.clone();
    if let Some(r) = args.rate_limit {
        server_cfg.rate_limit = r;
        server_cfg.rate_burst = r.saturating_mul(2);
    }
    if let Some(o) = args.rotation_overlap {
        server_cfg.rotation_overlap_secs = o;
    }
    if let Some(t) = args.station_pending_timeout {
        server_cfg.station_pending_timeout_secs = t;
    }
    if let Some(listen) = args.listen {
        server_cfg.listen = listen;
    }
    let idmint = Arc::new(idmint);
    let server = idmint_server::Server::bind(idmint.clone(), &server_cfg).await?;
    eprintln!("idmint serving https://{}", server.local_addr()?);
    match &server_cfg.cert {
        None => eprintln!(
            "server certificate for {} ([server] hosts adds names); clients trust the root: idmint ca show root --pem > root.pem",
            idmint_server::tls::host_names(&server_cfg.hosts).join(", ")
        ),
        Some(path) => eprintln!(
            "server certificate from {} ([server] cert); clients trust its issuer",
            path.display()
        ),
    }
    tracing::info!(addr = %server.local_addr()?, "serving");

    // One shutdown signal for every listener (HTTPS now; MQTT beside it later).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        idmint_server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mqtt_listen = args
        .mqtt_listen
        .unwrap_or_else(|| idmint.config().fleet.mqtt_listen.clone());
    let mqtt = if mqtt_listen == "off" {
        None
    } else {
        let mqtt = idmint_server::mqtt::MqttServer::bind(server.state(), &mqtt_listen).await?;
        eprintln!("idmint serving mqtts://{}", mqtt.local_addr()?);
        Some(tokio::spawn(mqtt.run(stopped(stop_rx.clone()))))
    };
    let mut crl = idmint.config().crl.clone();
    if let Some(dir) = args.crl_dir {
        crl.dir = Some(dir);
    }
    if let Some(cmd) = args.crl_reload_cmd {
        crl.reload_cmd = Some(cmd);
    }
    if let Some(dir) = &crl.dir {
        let dir = idmint_flows::broker::crl_dir::CrlDirectory::new(dir, crl.reload_cmd.clone())?;
        // Written once before serving, so a broker started next finds them.
        idmint_server::crl_files::publish(&server.state(), &dir)
            .await
            .map_err(|e| anyhow::anyhow!("CRL files in {}: {}", dir.dir().display(), e.message))?;
        // The broker may start after us: a failed reload now is only noted.
        if let Err(e) = dir.reload().await {
            tracing::warn!("{e}");
        }
        eprintln!("idmint keeps CRLs current in {}", dir.dir().display());
        tokio::spawn(idmint_server::crl_files::run(
            server.state(),
            dir,
            stopped(stop_rx.clone()),
        ));
    }
    let audit = idmint.config().audit.clone();
    if let Some(dir) = audit.checkpoint_dir {
        // One now, so a checkpoint exists from the first moment of serving.
        idmint_flows::audit_checkpoint::write_checkpoint(&idmint, &dir, None)
            .await
            .map_err(|e| anyhow::anyhow!("audit checkpoint in {}: {e}", dir.display()))?;
        eprintln!(
            "idmint writes audit checkpoints to {} every {} s",
            dir.display(),
            audit.checkpoint_interval_secs
        );
        tokio::spawn(idmint_flows::audit_checkpoint::run_checkpoints(
            idmint.clone(),
            dir,
            std::time::Duration::from_secs(audit.checkpoint_interval_secs),
            stopped(stop_rx.clone()),
        ));
    }
    let https = tokio::spawn(server.run(stopped(stop_rx.clone())));
    // Scripts (and the tests) wait for this line: everything above is done.
    eprintln!("idmint serve ready");
    https.await??;
    if let Some(mqtt) = mqtt {
        mqtt.await??;
    }
    eprintln!("idmint serve stopped");
    Ok(ExitCode::SUCCESS)
}
