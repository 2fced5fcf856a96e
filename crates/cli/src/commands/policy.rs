//! `idmint policy`: AWS IoT policy documents (create, list, show, delete)
//! and their attachment to certificates (attach, detach). The MQTT
//! endpoint and the broker integrations decide `iot:Connect`,
//! `iot:Publish`, `iot:Subscribe` and `iot:Receive` from the policies
//! attached to the certificate that asks; no policy, no access.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use idmint_flows::access::{Action, Resource};

use crate::{local, output, Context};

/// `idmint policy` subcommands.
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Create a policy from an AWS IoT policy document (JSON).
    Create {
        /// The policy's name.
        name: String,
        /// The document file (`-` reads standard input).
        #[arg(long)]
        document: PathBuf,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List policies and how many certificates hold each.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show a policy's document.
    Show {
        /// The policy's name.
        name: String,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Delete a policy attached to no certificate.
    Delete {
        /// The policy's name.
        name: String,
    },
    /// Attach a policy to a certificate.
    Attach {
        /// The policy's name.
        name: String,
        /// The certificate id (lowercase hex SHA-256 of its DER).
        #[arg(long)]
        cert: String,
    },
    /// Detach a policy from a certificate.
    Detach {
        /// The policy's name.
        name: String,
        /// The certificate id.
        #[arg(long)]
        cert: String,
    },
}

fn read_document(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading the policy document from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("reading the policy document {}", path.display()))
}

/// Runs `idmint policy ...`.
pub async fn run(ctx: &Context, cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let who = local().authorize(Action::ManagePolicies, &Resource::everything())?;
    match cmd {
        PolicyCommand::Create {
            name,
            document,
            json,
        } => {
            let text = read_document(&document)?;
            let policy = idmint.create_policy(&who, &name, &text).await?;
            if json {
                output::json(&policy)?;
            } else {
                eprintln!(
                    "policy {name} created; attach it with: idmint policy attach {name} --cert CERT_ID"
                );
            }
        }
        PolicyCommand::List { json } => {
            let policies = idmint.list_policies().await?;
            if json {
                output::json(&policies)?;
            } else {
                let rows: Vec<Vec<String>> = policies
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.attachments.to_string(),
                            output::time(p.created),
                            if p.document.is_some() {
                                ""
                            } else {
                                "no document: grants nothing"
                            }
                            .to_string(),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "CERTIFICATES", "CREATED", "NOTE"], &rows);
            }
        }
        PolicyCommand::Show { name, json } => {
            let policy = idmint.policy(&name).await?;
            if json {
                output::json(&policy)?;
            } else {
                match &policy.document {
                    Some(doc) => {
                        let pretty = serde_json::from_str::<serde_json::Value>(doc)
                            .and_then(|v| serde_json::to_string_pretty(&v))
                            .unwrap_or_else(|_| doc.clone());
                        println!("{pretty}");
                    }
                    None => eprintln!(
                        "policy {name} has no document (a template attached the name): it grants nothing until `idmint policy create {name} --document FILE`"
                    ),
                }
                eprintln!("attached to {} certificate(s)", policy.attachments);
            }
        }
        PolicyCommand::Delete { name } => {
            idmint.delete_policy(&who, &name).await?;
            eprintln!("policy {name} deleted");
        }
        PolicyCommand::Attach { name, cert } => {
            idmint.attach_policy(&who, &name, &cert).await?;
            eprintln!("policy {name} attached to certificate {cert}");
        }
        PolicyCommand::Detach { name, cert } => {
            idmint.detach_policy(&who, &name, &cert).await?;
            eprintln!("policy {name} detached from certificate {cert}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
