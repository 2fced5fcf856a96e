//! The `idmint` command line: parses arguments into typed requests and
//! calls the provisioning flows. Errors end as one line on stderr and a
//! non-zero exit.

mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use zeroize::Zeroizing;

use idmint_flows::{Idmint, PASSPHRASE_ENV};

/// Bulk issuance allocates and frees many small buffers on several threads
/// (DER, PEM, SQL arguments, audit JSON): mimalloc's per-thread heaps do
/// that with less contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// idmint: a unique cryptographic identity for every device, wherever in
/// the supply chain it is born, and one registry of every identity issued.
#[derive(Parser)]
#[command(
    name = "idmint",
    version,
    propagate_version = true,
    after_help = "Getting started (docs/ has a tutorial per scenario):\n  \
        idmint init --org \"Example Co\"          # root and issuing CA in ./idmint-data\n  \
        idmint cert new --thing sensor-1           # a key and its certificate\n  \
        idmint cert list\n  \
        idmint batch mint --golden fw.bin --count 100 --product sensor --out out\n  \
        idmint slot show out/images/<device>.bin   # look inside a device image\n\n\
        Every command takes --help; list and show commands take --json."
)]
struct Cli {
    /// Data directory (configuration, and the SQLite registry by default).
    #[arg(
        long,
        global = true,
        env = "IDMINT_DATA",
        default_value = "./idmint-data"
    )]
    data: PathBuf,
    /// Registry store URL (sqlite://PATH or postgres://...), overriding idmint.toml.
    #[arg(long, global = true, env = "IDMINT_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Log verbosity (error, warn, info, debug, trace). `--log` itself is
    /// `station run`'s issuance log.
    #[arg(
        id = "log_level",
        long = "log-level",
        global = true,
        env = "IDMINT_LOG",
        default_value = "warn"
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory with a root CA and an issuing CA.
    Init(commands::init::InitArgs),
    /// Certificate authorities: list, show, create issuing CAs, register outside CAs.
    #[command(subcommand)]
    Ca(commands::ca::CaCommand),
    /// Device certificates: issue, generate, list, show, revoke, activate.
    #[command(subcommand)]
    Cert(commands::cert::CertCommand),
    /// Things (devices) in the registry.
    #[command(subcommand)]
    Thing(commands::thing::ThingCommand),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Issue a signed CRL for a CA.
    Crl(commands::crl::CrlArgs),
    /// Serve the HTTPS REST API, EST enrollment, OCSP and CRLs, and the
    /// MQTT fleet provisioning endpoint.
    Serve(commands::serve::ServeArgs),
    /// Provisioning templates for fleet provisioning and JITP.
    #[command(subcommand)]
    Template(commands::template::TemplateCommand),
    /// Claim certificates for fleet provisioning.
    #[command(subcommand)]
    Claim(commands::claim::ClaimCommand),
    /// Load tests: devices/s and latency of a flow, load generator included.
    #[command(subcommand)]
    Loadtest(commands::loadtest::LoadtestCommand),
    /// API and enrollment tokens: create, list, revoke.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Roles of certificates (admin, operator, station, reader) by scope.
    #[command(subcommand)]
    Grant(commands::grant::GrantCommand),
    /// AWS IoT policies: create, list, show, delete, attach, detach.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// Outside MQTT brokers that trust idmint: mosquitto set-up.
    #[command(subcommand)]
    Broker(commands::broker::BrokerCommand),
    /// Vendor manifests of pre-provisioned secure elements: import, export.
    #[command(subcommand)]
    Manifest(commands::manifest::ManifestCommand),
    /// Batches of identities: create (station quota), list, show, ...
    #[command(subcommand)]
    Batch(commands::batch::BatchCommand),
    /// The factory provisioning station: gives devices their identity.
    #[command(subcommand)]
    Station(commands::station::StationCommand),
    /// A simulated device speaking the device agent protocol.
    Devsim(commands::devsim::DevsimArgs),
    /// Look inside device images: the credential slot's records and certificate.
    #[command(subcommand)]
    Slot(commands::slot::SlotCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::docs::CompletionsArgs),
    /// Write man pages for idmint and every subcommand into a directory.
    Man(commands::docs::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        // sqlx reports slow bulk inserts at WARN with the whole statement: keep
        // that out of a user's terminal unless asked for. The TLS verifier
        // logs a refused server certificate that the command reports anyway.
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "sqlx=error,rustls_platform_verifier=off,{}",
            cli.log
        )))
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // The reader of our output went away (`idmint ... --json | head`).
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            match next_step(&e) {
                Some(hint) => eprintln!("error: {} ({hint})", one_line(&e)),
                None => eprintln!("error: {}", one_line(&e)),
            }
            ExitCode::FAILURE
        }
    }
}

/// Whether the error is a write into a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Every cause in the chain on one line, without repeating a cause that the
/// message above it already quotes.
/// What the user can do next, for the errors that do not say it themselves.
fn next_step(e: &anyhow::Error) -> Option<String> {
    use idmint_flows::pki::PkiError;
    use idmint_flows::registry::RegistryError;
    use idmint_flows::FlowError;
    for cause in e.chain() {
        let (registry, pki) = match cause.downcast_ref::<FlowError>() {
            Some(FlowError::Registry(r)) => (Some(r), None),
            Some(FlowError::Pki(p)) => (None, Some(p)),
            _ => (
                cause.downcast_ref::<RegistryError>(),
                cause.downcast_ref::<PkiError>(),
            ),
        };
        if let Some(RegistryError::NotFound { kind, .. }) = registry {
            let command = match *kind {
                "batch" => "batch",
                "certificate" => "cert",
                "thing" => "thing",
                "CA" => "ca",
                "template" => "template",
                "token" => "token",
                "grant" => "grant",
                "policy" => "policy",
                _ => return None,
            };
            return Some(format!("`idmint {command} list` shows what there is"));
        }
        match pki {
            Some(PkiError::KeyDecryption) => {
                return Some(format!(
                    "check {PASSPHRASE_ENV}, or the data directory's ca-passphrase file"
                ))
            }
            Some(PkiError::MalformedCsr(_)) => {
                return Some(
                    "expected a PKCS#10 request, PEM (-----BEGIN CERTIFICATE REQUEST-----) or DER, e.g. from `openssl req -new`".into(),
                )
            }
            _ => {}
        }
    }
    None
}

fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context {
        data: cli.data,
        store: cli.store,
    };
    match cli.command {
        Command::Init(args) => commands::init::run(&ctx, args).await,
        Command::Ca(cmd) => commands::ca::run(&ctx, cmd).await,
        Command::Cert(cmd) => commands::cert::run(&ctx, cmd).await,
        Command::Thing(cmd) => commands::thing::run(&ctx, cmd).await,
        Command::Audit(cmd) => commands::audit::run(&ctx, cmd).await,
        Command::Crl(args) => commands::crl::run(&ctx, args).await,
        Command::Serve(args) => commands::serve::run(&ctx, args).await,
        Command::Template(cmd) => commands::template::run(&ctx, cmd).await,
        Command::Claim(cmd) => commands::claim::run(&ctx, cmd).await,
        Command::Loadtest(cmd) => commands::loadtest::run(&ctx, cmd).await,
        Command::Token(cmd) => commands::token::run(&ctx, cmd).await,
        Command::Grant(cmd) => commands::grant::run(&ctx, cmd).await,
        Command::Policy(cmd) => commands::policy::run(&ctx, cmd).await,
        Command::Broker(cmd) => commands::broker::run(&ctx, cmd).await,
        Command::Manifest(cmd) => commands::manifest::run(&ctx, cmd).await,
        Command::Batch(cmd) => commands::batch::run(&ctx, cmd).await,
        Command::Station(cmd) => commands::station::run(&ctx, cmd).await,
        Command::Devsim(args) => commands::devsim::run(args).await,
        Command::Slot(cmd) => commands::slot::run(cmd),
        Command::Completions(args) => commands::docs::completions(Cli::command(), args),
        Command::Man(args) => commands::docs::man(Cli::command(), args),
    }
}

/// What every command gets: where the data directory and store are.
pub struct Context {
    data: PathBuf,
    store: Option<String>,
}

impl Context {
    /// Opens the data directory.
    pub async fn open(&self) -> anyhow::Result<Idmint> {
        Ok(
            Idmint::open(&self.data, self.store.as_deref(), passphrase_from_env())
                .await?
                .with_pkcs11(pkcs11_from_env()),
        )
    }
}

/// The CA passphrase from the environment, if set (the one place it is read).
pub fn passphrase_from_env() -> Option<Zeroizing<String>> {
    std::env::var(PASSPHRASE_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .map(Zeroizing::new)
}

/// The PKCS#11 module and PIN from the environment (`IDMINT_PKCS11_MODULE`,
/// `IDMINT_PKCS11_PIN`), for CA keys held in a token.
pub fn pkcs11_from_env() -> Option<idmint_flows::pki::Pkcs11Config> {
    let module = std::env::var_os("IDMINT_PKCS11_MODULE").filter(|m| !m.is_empty())?;
    let pin = std::env::var("IDMINT_PKCS11_PIN").unwrap_or_default();
    Some(idmint_flows::pki::Pkcs11Config {
        module: module.into(),
        pin: Zeroizing::new(pin),
    })
}

/// The actor named in audit records for commands run from this CLI.
pub fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// Whoever runs this CLI on the data directory: the local operator, who
/// holds the CA passphrase and may do everything.
pub fn local() -> idmint_flows::access::Principal {
    idmint_flows::access::Principal::Local { actor: actor() }
}
