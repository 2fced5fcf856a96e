//! `idmint audit`: verify the hash chain end to end, or list records.

use std::process::ExitCode;

use clap::Subcommand;

use crate::{output, Context};

/// `idmint audit` subcommands.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check every link of the audit chain; non-zero exit naming the first
    /// broken record if any row was altered, removed or reordered.
    Verify {
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
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
        AuditCommand::Verify { json } => {
            let report = idmint.store().verify_audit().await?;
            if json {
                output::json(&report)?;
            }
            match &report.fault {
                None => {
                    if !json {
                        println!(
                            "audit log intact: {} records, head {}",
                            report.records, report.head
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
