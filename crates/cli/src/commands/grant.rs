//! `idmint grant`: give a certificate a role in a scope (admin, operator,
//! station, reader), list and remove grants. Grants are the only way a
//! device certificate gains access to the API or the MQTT event topics; a
//! thing's attributes confer nothing.

use std::process::ExitCode;

use clap::Subcommand;
use idmint_flows::access::{Action, Resource};
use idmint_flows::registry::{CertificateId, Role, Scope};

use crate::{local, output, Context};

/// `idmint grant` subcommands.
#[derive(Subcommand)]
pub enum GrantCommand {
    /// Give a certificate a role, everywhere or in one scope.
    Add(GrantArgs),
    /// Take a grant away.
    Remove(GrantArgs),
    /// List grants.
    List {
        /// Only this certificate's.
        #[arg(long)]
        cert: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// One grant.
#[derive(clap::Args)]
pub struct GrantArgs {
    /// The certificate id (lowercase hex SHA-256 of its DER).
    #[arg(long)]
    pub cert: String,
    /// admin, operator, station or reader.
    #[arg(long)]
    pub role: Role,
    /// Where: `*` (everywhere), `batch:ID`, `ca:NAME`, `template:NAME` or
    /// `thing:NAME`.
    #[arg(long, default_value = "*")]
    pub scope: Scope,
    /// Print a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `idmint grant ...`.
pub async fn run(ctx: &Context, cmd: GrantCommand) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let who = local().authorize(Action::ManageGrants, &Resource::everything())?;
    match cmd {
        GrantCommand::Add(a) => {
            let grant = idmint
                .add_grant(&who, &CertificateId::parse(&a.cert)?, a.role, &a.scope)
                .await?;
            if a.json {
                output::json(&grant)?;
            } else {
                eprintln!(
                    "certificate {} is now {} in scope {}",
                    a.cert, grant.role, grant.scope
                );
            }
        }
        GrantCommand::Remove(a) => {
            idmint.remove_grant(&who, &a.cert, a.role, &a.scope).await?;
            eprintln!(
                "certificate {} is no longer {} in scope {}",
                a.cert, a.role, a.scope
            );
        }
        GrantCommand::List { cert, json } => {
            let grants = idmint.list_grants(cert.as_deref()).await?;
            if json {
                output::json(&grants)?;
            } else {
                let rows: Vec<Vec<String>> = grants
                    .iter()
                    .map(|g| {
                        vec![
                            g.principal.clone(),
                            g.role.to_string(),
                            g.scope.to_string(),
                            output::time(g.created),
                            g.created_by.clone(),
                        ]
                    })
                    .collect();
                output::table(&["PRINCIPAL", "ROLE", "SCOPE", "CREATED", "BY"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
