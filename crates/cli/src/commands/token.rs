//! `idmint token`: create, list and revoke API and enrollment tokens.

use std::process::ExitCode;

use clap::Subcommand;
use idmint_flows::registry::Role;

use crate::{actor, output, Context};

/// `idmint token` subcommands.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once (the last word of the last line).
    #[command(after_help = "Examples:\n  \
        idmint token create --name line-1 --role station --batch B --json | jq -r .token > station.token\n  \
        idmint token create --name est-1 --role enroll --batch B   # EST: HTTP Basic est-1:<token>")]
    Create {
        /// Unique name (the HTTP Basic user name for EST).
        #[arg(long)]
        name: String,
        /// admin, operator, station, reader or enroll.
        #[arg(long)]
        role: Role,
        /// The batch an enroll (or station) token is limited to.
        #[arg(long)]
        batch: Option<String>,
        /// Print a JSON object `{name, role, batch, token}` instead.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token.
    Revoke {
        /// The token name.
        name: String,
    },
}

/// Runs `idmint token ...`.
pub async fn run(ctx: &Context, cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    match cmd {
        TokenCommand::Create {
            name,
            role,
            batch,
            json,
        } => {
            let secret = idmint
                .create_token(&actor(), &name, role, batch.as_deref())
                .await?;
            eprintln!("Token {name:?} ({role}) created. Store it now: it is not shown again.");
            if json {
                output::json(&serde_json::json!({
                    "name": name, "role": role, "batch": batch, "token": secret.as_str(),
                }))?;
            } else {
                println!("token: {}", secret.as_str());
            }
        }
        TokenCommand::List { json } => {
            let tokens = idmint.store().list_tokens().await?;
            if json {
                output::json(&tokens)?;
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.role.to_string(),
                            t.batch.clone().unwrap_or_default(),
                            output::time(t.created),
                            t.revoked_at.map(output::time).unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "ROLE", "BATCH", "CREATED", "REVOKED"], &rows);
            }
        }
        TokenCommand::Revoke { name } => {
            idmint.revoke_token(&actor(), &name).await?;
            println!("revoked token {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
