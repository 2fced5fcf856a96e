//! `idmint completions` and `idmint man`: shell completions and man pages,
//! generated from the command-line definition itself, so they never
//! disagree with the binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use clap_complete::Shell;

/// `idmint completions`.
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    idmint completions bash > /etc/bash_completion.d/idmint\n  \
    idmint completions zsh > \"${fpath[1]}/_idmint\"\n  \
    idmint completions fish > ~/.config/fish/completions/idmint.fish")]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

/// `idmint man`.
#[derive(Args)]
#[command(after_help = "Example:\n  \
    idmint man --out-dir /usr/local/share/man/man1 && man idmint-batch-mint")]
pub struct ManArgs {
    /// Directory for the pages: idmint.1 and one per subcommand
    /// (idmint-cert-issue.1, ...). Created if missing.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(mut cli: clap::Command, args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    // Into memory first: clap_complete panics on a failed write, and a
    // reader that went away (`| head`) is a quiet exit here.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "idmint", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes one man page per command into `args.out_dir`.
pub fn man(cli: clap::Command, args: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    clap_mangen::generate_to(cli, &args.out_dir)
        .with_context(|| format!("writing man pages into {}", args.out_dir.display()))?;
    let pages = std::fs::read_dir(&args.out_dir)
        .with_context(|| format!("reading {}", args.out_dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
        .count();
    eprintln!(
        "wrote {} into {}",
        crate::output::count(pages as u64, "man page"),
        args.out_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
