//! `idmint template`: provisioning templates (AWS IoT's template language)
//! for fleet provisioning and JITP, checked when they are created.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use idmint_fleet::templates::{TemplateChanges, TemplateRequest};
use idmint_flows::registry::{ProvisioningTemplate, TemplateKind};

use crate::{actor, output, Context};
use idmint_fleet::Fleet;

/// `idmint template` subcommands.
#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Create a template from a JSON file.
    Create {
        /// Its name (1–36 of A-Z a-z 0-9 _ -).
        name: String,
        /// The template JSON.
        #[arg(long)]
        body: PathBuf,
        /// Pre-provisioning hook: an http(s) URL, or `allow-list`.
        #[arg(long)]
        hook: Option<String>,
        /// Hook timeout in milliseconds (default: `[fleet] hook_timeout_ms`, 5000).
        #[arg(long)]
        hook_timeout_ms: Option<u64>,
        /// For the `allow-list` hook: a file of permitted serial numbers, one per line.
        #[arg(long)]
        allow_list: Option<PathBuf>,
        /// fleet (RegisterThing by claim) or jitp (auto-registering CAs).
        #[arg(long = "type", default_value = "fleet")]
        kind: TemplateKind,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List templates.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one template, body included.
    Show {
        /// The name.
        name: String,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Change a template's body, hook or state.
    Update {
        /// The name.
        name: String,
        /// A new body.
        #[arg(long)]
        body: Option<PathBuf>,
        /// A new hook URL, or `allow-list`.
        #[arg(long, conflicts_with = "no_hook")]
        hook: Option<String>,
        /// Remove the hook.
        #[arg(long)]
        no_hook: bool,
        /// A new hook timeout in milliseconds.
        #[arg(long)]
        hook_timeout_ms: Option<u64>,
        /// Serial numbers to add to the allow list, one per line.
        #[arg(long)]
        allow_list: Option<PathBuf>,
        /// Enable it.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable it.
        #[arg(long)]
        disable: bool,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Delete a template.
    Delete {
        /// The name.
        name: String,
    },
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn serials(path: &Path) -> anyhow::Result<Vec<String>> {
    Ok(read(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

fn print(t: &ProvisioningTemplate, json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        output::json(t)?;
    } else {
        eprintln!(
            "{verb} {} template {}{}{}",
            t.kind,
            t.name,
            t.hook
                .as_deref()
                .map(|h| format!(" (hook {h})"))
                .unwrap_or_default(),
            if t.enabled { "" } else { ", disabled" }
        );
    }
    Ok(())
}

/// Runs `idmint template ...`.
pub async fn run(ctx: &Context, cmd: TemplateCommand) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    match cmd {
        TemplateCommand::Create {
            name,
            body,
            hook,
            hook_timeout_ms,
            allow_list,
            kind,
            disabled,
            json,
        } => {
            let t = Fleet::new(&idmint)
                .create_template(
                    &actor(),
                    &TemplateRequest {
                        name: name.clone(),
                        kind,
                        body: read(&body)?,
                        hook,
                        hook_timeout_ms,
                        enabled: !disabled,
                    },
                )
                .await?;
            if let Some(path) = allow_list {
                let added = Fleet::new(&idmint)
                    .allow_serials(&actor(), &name, &serials(&path)?)
                    .await?;
                eprintln!("allow list: {added} serial numbers added");
            }
            print(&t, json, "created")?;
        }
        TemplateCommand::List { json } => {
            let templates = idmint.store().list_templates().await?;
            if json {
                output::json(&templates)?;
            } else {
                let rows: Vec<Vec<String>> = templates
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.kind.to_string(),
                            if t.enabled { "yes" } else { "no" }.to_string(),
                            t.hook.clone().unwrap_or_else(|| "-".into()),
                            output::time(t.updated),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "TYPE", "ENABLED", "HOOK", "UPDATED"], &rows);
            }
        }
        TemplateCommand::Show { name, json } => {
            let t = Fleet::new(&idmint).require_template(&name).await?;
            if json {
                output::json(&t)?;
            } else {
                println!("name:     {}", t.name);
                println!("type:     {}", t.kind);
                println!("enabled:  {}", t.enabled);
                println!("hook:     {}", t.hook.as_deref().unwrap_or("-"));
                println!("timeout:  {} ms", t.hook_timeout_ms);
                println!("updated:  {}", output::time(t.updated));
                println!("{}", t.body);
            }
        }
        TemplateCommand::Update {
            name,
            body,
            hook,
            no_hook,
            hook_timeout_ms,
            allow_list,
            enable,
            disable,
            json,
        } => {
            let changes = TemplateChanges {
                body: body.as_deref().map(read).transpose()?,
                hook: if no_hook { Some(None) } else { hook.map(Some) },
                hook_timeout_ms,
                enabled: match (enable, disable) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            };
            let t = Fleet::new(&idmint)
                .update_template(&actor(), &name, &changes)
                .await?;
            if let Some(path) = allow_list {
                let added = Fleet::new(&idmint)
                    .allow_serials(&actor(), &name, &serials(&path)?)
                    .await?;
                eprintln!("allow list: {added} serial numbers added");
            }
            print(&t, json, "updated")?;
        }
        TemplateCommand::Delete { name } => {
            Fleet::new(&idmint).delete_template(&actor(), &name).await?;
            eprintln!("deleted template {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
