//! `idmint thing`: list, show and annotate things.

use std::process::ExitCode;

use clap::Subcommand;
use idmint_flows::registry::CertificateFilter;

use crate::{actor, output, Context};

/// `idmint thing` subcommands.
#[derive(Subcommand)]
pub enum ThingCommand {
    /// List things.
    List {
        /// Only those of this batch.
        #[arg(long)]
        batch: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show a thing and its certificates.
    Show {
        /// The thing name.
        name: String,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Set attributes or the type of an existing thing. Attributes are
    /// data: they confer no access (a `role` attribute no longer changes
    /// anything; give a certificate a role with `idmint grant add`).
    Update {
        /// The thing name.
        name: String,
        /// `KEY=VALUE` to set (repeatable); an empty value removes the key.
        #[arg(long = "attribute", value_name = "KEY=VALUE")]
        attributes: Vec<String>,
        /// A new thing type.
        #[arg(long = "type")]
        thing_type: Option<String>,
    },
}

/// Runs `idmint thing ...`.
pub async fn run(ctx: &Context, cmd: ThingCommand) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let store = idmint.store();
    match cmd {
        ThingCommand::Update {
            name,
            attributes,
            thing_type,
        } => {
            let changes = attributes
                .iter()
                .map(|pair| {
                    let (key, value) = pair.split_once('=').ok_or_else(|| {
                        anyhow::anyhow!("--attribute {pair:?}: expected KEY=VALUE")
                    })?;
                    Ok((
                        key.to_string(),
                        Some(value.to_string()).filter(|v| !v.is_empty()),
                    ))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            idmint
                .update_thing(&actor(), &name, thing_type, &changes)
                .await?;
            eprintln!("updated thing {name}");
        }
        ThingCommand::List { batch, json } => {
            let things = store.list_things(batch.as_deref(), None, None).await?;
            if json {
                output::json(&things)?;
            } else {
                let rows: Vec<Vec<String>> = things
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.thing_type.clone().unwrap_or_default(),
                            t.device_id.clone().unwrap_or_default(),
                            t.batch.as_deref().unwrap_or_default().to_string(),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "TYPE", "DEVICE ID", "BATCH"], &rows);
            }
        }
        ThingCommand::Show { name, json } => {
            let thing = store
                .thing(&name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("thing {name:?} not found"))?;
            let certs = store
                .list_certificates(&CertificateFilter {
                    thing: Some(name.clone()),
                    ..CertificateFilter::default()
                })
                .await?;
            if json {
                let mut value = serde_json::to_value(&thing)?;
                value["certificates"] = serde_json::to_value(&certs)?;
                output::json(&value)?;
            } else {
                println!("name:       {}", thing.name);
                println!("type:       {}", thing.thing_type.as_deref().unwrap_or("-"));
                println!("device id:  {}", thing.device_id.as_deref().unwrap_or("-"));
                println!("batch:      {}", thing.batch.as_deref().unwrap_or("-"));
                for (k, v) in &thing.attributes {
                    println!("attribute:  {k} = {v}");
                }
                for c in certs {
                    println!("cert:       {} {}", c.id, c.status);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
