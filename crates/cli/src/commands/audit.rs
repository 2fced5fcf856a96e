//! `idmint audit`: verify the hash chain end to end (against a checkpoint
//! kept outside the database when given), take a checkpoint, or list
//! records.

use std::process::ExitCode;

use clap::Subcommand;

use idmint_flows::audit_checkpoint::{AuditCheckpoint, CheckpointVerdict};

use crate::{output, Context};

/// `idmint audit` subcommands.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check every link of the audit chain; non-zero exit naming the first
    /// broken record if any row was altered, removed or reordered.
    Verify {
        /// A checkpoint taken earlier (`idmint audit checkpoint`): also
        /// check that every record up to it is still there, unchanged,
        /// which catches records removed from the end with the head rewritten.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<std::path::PathBuf>,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Take a checkpoint of the audit chain (record count, head hash, time,
    /// MACed with a key derived from the CA passphrase) to keep outside the
    /// database; `audit verify --checkpoint FILE` checks the log against it.
    Checkpoint {
        /// Write it to FILE (replaced atomically) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
    /// List audit records.
    List {
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `idmint audit ...`.
pub async fn run(ctx: &Context, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    match cmd {
        AuditCommand::Checkpoint { out } => {
            let checkpoint = idmint.audit_checkpoint().await?;
            let text = format!("{}\n", serde_json::to_string_pretty(&checkpoint)?);
            match out {
                Some(path) => {
                    idmint_flows::files::replace_public(&path, text.as_bytes())?;
                    eprintln!(
                        "checkpoint of {} written to {}: keep it outside the data directory",
                        output::count(checkpoint.records as u64, "record"),
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            checkpoint: Some(path),
            json,
        } => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let checkpoint: AuditCheckpoint = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not an audit checkpoint ({e}); make one with `idmint audit checkpoint --out FILE`",
                    path.display()
                )
            })?;
            let verdict = idmint.verify_audit_checkpoint(&checkpoint).await?;
            if json {
                output::json(&verdict)?;
            }
            match verdict {
                CheckpointVerdict::Intact { records } => {
                    if !json {
                        println!(
                            "audit log intact: {}, the {} of the checkpoint unchanged",
                            output::count(records as u64, "record"),
                            checkpoint.records
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                CheckpointVerdict::Broken { reason } => {
                    eprintln!("error: audit log does not match the checkpoint: {reason}");
                    Ok(ExitCode::from(3))
                }
            }
        }
        AuditCommand::Verify {
            checkpoint: None,
            json,
        } => {
            let report = idmint.store().verify_audit().await?;
            if json {
                output::json(&report)?;
            }
            match &report.fault {
                None => {
                    if !json {
                        println!(
                            "audit log intact: {}, head {}",
                            output::count(report.records as u64, "record"),
                            report.head
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(fault) => {
                    eprintln!(
                        "error: audit log broken at record {}: {}",
                        fault.seq, fault.reason
                    );
                    Ok(ExitCode::from(3))
                }
            }
        }
        AuditCommand::List { after, limit, json } => {
            let records = idmint.store().audit_records(after, limit).await?;
            if json {
                output::json(&records)?;
            } else {
                let rows: Vec<Vec<String>> = records
                    .iter()
                    .map(|r| {
                        vec![
                            r.seq.to_string(),
                            time::OffsetDateTime::from_unix_timestamp(r.time)
                                .map(output::time)
                                .unwrap_or_default(),
                            r.actor.clone(),
                            r.action.clone(),
                            r.subject.clone(),
                        ]
                    })
                    .collect();
                output::table(&["SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
