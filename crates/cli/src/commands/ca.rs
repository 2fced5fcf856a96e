//! `idmint ca`: list, show and create CAs; register outside CAs and their
//! auto-registration (JITP).

use std::process::ExitCode;

use clap::Subcommand;
use idmint_attest::TpmAttestation;
use idmint_flows::ca::NewIssuingCa;
use idmint_flows::pki::{to_pem, KeyType, RevocationReason};
use idmint_flows::registry::CaKind;
use idmint_manifest::Manifests;

use crate::{actor, output, Context};
use idmint_fleet::Fleet;

/// `idmint ca` subcommands.
#[derive(Subcommand)]
pub enum CaCommand {
    /// List CAs: ours (root, issuing, ...) and registered outside CAs.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one CA.
    Show {
        /// The CA name.
        name: String,
        /// Print just the certificate as PEM.
        #[arg(long, conflicts_with = "json")]
        pem: bool,
        /// Print just the CRL signer certificate of an offline batch CA as
        /// PEM (what relying parties pass to `openssl verify -untrusted`
        /// with `-extended_crl`).
        #[arg(long, conflicts_with_all = ["json", "pem"])]
        crl_signer: bool,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an issuing or batch CA: it goes on its parent's CRL, OCSP
    /// answers revoked for it, it issues nothing more, and certificates
    /// under it are refused. A root is not revoked: stop trusting it.
    Revoke {
        /// The CA name.
        name: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise,
        /// affiliationChanged, superseded, cessationOfOperation,
        /// certificateHold, privilegeWithdrawn.
        #[arg(long, default_value = "unspecified")]
        reason: RevocationReason,
    },
    /// Create another issuing CA (one per product line or factory is normal).
    CreateIssuing {
        /// Its name.
        #[arg(long)]
        name: String,
        /// The CA that signs it.
        #[arg(long, default_value = "root")]
        parent: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        valid_days: u32,
        /// Key type (the configured one by default).
        #[arg(long)]
        key_type: Option<KeyType>,
        /// Generate the CA key (P-256) in a PKCS#11 token at this `pkcs11:`
        /// URI, e.g. `pkcs11:token=ca;object=line-a` (IDMINT_PKCS11_MODULE,
        /// IDMINT_PKCS11_PIN); the key never leaves the token.
        #[arg(long)]
        pkcs11_key: Option<String>,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Register an outside CA (an HSM or secure element vendor's) as a
    /// trust anchor for device certificates, with its manifest log signer.
    Register(RegisterArgs),
    /// Change an outside CA's auto-registration (JITP) or EST bootstrap.
    Update {
        /// The CA name.
        name: String,
        /// Turn auto-registration on or off.
        #[arg(long, action = clap::ArgAction::Set, required_unless_present = "est_bootstrap")]
        auto_register: Option<bool>,
        /// The JITP template.
        #[arg(long)]
        template: Option<String>,
        /// Let certificates chaining to this CA enroll over EST, once each
        /// (true), or stop them (false).
        #[arg(long, action = clap::ArgAction::Set)]
        est_bootstrap: Option<bool>,
        /// The one batch bootstrap enrollments go into.
        #[arg(long, requires = "est_bootstrap")]
        batch: Option<String>,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `idmint ca register`.
#[derive(clap::Args)]
pub struct RegisterArgs {
    /// Its name in the registry.
    #[arg(long)]
    pub name: String,
    /// The CA certificate (PEM or DER).
    #[arg(long)]
    pub cert: std::path::PathBuf,
    /// The vendor's manifest log-signer certificate (PEM or DER).
    #[arg(long)]
    pub signer: Option<std::path::PathBuf>,
    /// The CA is a TPM manufacturer's endorsement-key CA: TPM attestation
    /// (`/api/v1/tpm/attest`) accepts EK certificates chaining to it. It
    /// anchors nothing else.
    #[arg(long, conflicts_with_all = ["signer", "auto_register", "est_bootstrap"])]
    pub tpm_ek: bool,
    /// Devices with unknown certificates chained to this CA register
    /// themselves on first connection (JITP), from `--template`.
    #[arg(long, requires = "template")]
    pub auto_register: bool,
    /// The JITP template for auto-registration.
    #[arg(long)]
    pub template: Option<String>,
    /// Certificates chaining to this CA may enroll over EST (RFC 7030
    /// bootstrap), once each, the thing named by the certificate's CN. Off
    /// by default: a CA registered for manifest import confers nothing.
    #[arg(long)]
    pub est_bootstrap: bool,
    /// The one batch bootstrap enrollments go into (its quota, CA and
    /// profile); without it they go to the default issuing CA.
    #[arg(long, requires = "est_bootstrap")]
    pub batch: Option<String>,
    /// Print a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `idmint ca ...`.
pub async fn run(ctx: &Context, cmd: CaCommand) -> anyhow::Result<ExitCode> {
    let idmint = ctx.open().await?;
    let store = idmint.store();
    match cmd {
        CaCommand::List { json } => {
            let cas = store.list_cas().await?;
            if json {
                output::json(&cas)?;
            } else {
                let rows: Vec<Vec<String>> = cas
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.kind.as_str().to_string(),
                            c.key_type.clone().unwrap_or_default(),
                            output::time(c.not_after),
                            c.subject.clone(),
                        ]
                    })
                    .collect();
                let outside = cas.iter().filter(|c| c.kind.is_outside()).count();
                let (ours, theirs) = rows.split_at(rows.len() - outside);
                output::table(&["NAME", "KIND", "KEY", "NOT AFTER", "SUBJECT"], ours);
                if !theirs.is_empty() {
                    println!();
                    println!("registered outside CAs (trust anchors, they sign nothing of ours):");
                    output::table(&["NAME", "KIND", "KEY", "NOT AFTER", "SUBJECT"], theirs);
                }
            }
        }
        CaCommand::Show {
            name,
            pem,
            crl_signer,
            json,
        } => {
            let ca = store.require_ca(&name).await?;
            let signers = store.revocation_signers(&name).await?;
            if pem {
                print!("{}", to_pem("CERTIFICATE", &ca.certificate_der));
            } else if crl_signer {
                let Some(signers) = &signers else {
                    anyhow::bail!(
                        "CA {name} has no CRL signer: only offline batch CAs authorized with one have it"
                    );
                };
                print!("{}", to_pem("CERTIFICATE", &signers.crl_signer_der));
            } else if json {
                let mut value = serde_json::to_value(&ca)?;
                value["certificatePem"] = to_pem("CERTIFICATE", &ca.certificate_der).into();
                if let Some(signers) = &signers {
                    value["ocspResponderPem"] =
                        to_pem("CERTIFICATE", &signers.ocsp_responder_der).into();
                    value["crlSignerPem"] = to_pem("CERTIFICATE", &signers.crl_signer_der).into();
                    value["crlSignerCrlPem"] =
                        to_pem("X509 CRL", &signers.signer_status_crl).into();
                    value["crlSignerCrlUrl"] = signers.signer_status_url.clone().into();
                }
                output::json(&value)?;
            } else {
                println!("name:       {}", ca.name);
                println!("kind:       {}", ca.kind.as_str());
                println!("parent:     {}", ca.parent.as_deref().unwrap_or("-"));
                println!("subject:    {}", ca.subject);
                println!("id:         {}", ca.id);
                println!("key type:   {}", ca.key_type.as_deref().unwrap_or("-"));
                println!("not before: {}", output::time(ca.not_before));
                println!("not after:  {}", output::time(ca.not_after));
                if let (Some(at), Some(reason)) = (ca.revoked_at, ca.revocation_reason) {
                    println!("revoked:    {} ({reason})", output::time(at));
                }
                if ca.kind == CaKind::Batch {
                    println!(
                        "revocation: {}",
                        match &signers {
                            Some(_) => format!(
                                "OCSP by its delegated responder, CRL by its CRL signer (idmint ca show {name} --crl-signer; its own status: idmint crl --ca {name}-signer)"
                            ),
                            None => "none: authorized before batch CAs signed an OCSP responder and a CRL signer for the maker (revoke the batch CA instead)".to_string(),
                        }
                    );
                }
                if ca.kind == CaKind::External {
                    println!(
                        "est bootstrap: {}",
                        match (ca.est_bootstrap, &ca.est_bootstrap_batch) {
                            (false, _) => "off".to_string(),
                            (true, None) => "on".to_string(),
                            (true, Some(b)) => format!("on, into batch {b}"),
                        }
                    );
                }
            }
        }
        CaCommand::Revoke { name, reason } => {
            idmint.revoke_ca(&actor(), &name, reason).await?;
            eprintln!(
                "CA {name} revoked ({reason}): it is on its parent's CRL now; publish that CRL (idmint crl --ca PARENT) where relying parties fetch it"
            );
        }
        CaCommand::CreateIssuing {
            name,
            parent,
            valid_days,
            key_type,
            pkcs11_key,
            json,
        } => {
            let ca = idmint
                .create_issuing_ca(
                    &actor(),
                    &NewIssuingCa {
                        name: &name,
                        parent: &parent,
                        valid_days,
                        key_type,
                        common_name: None,
                        pkcs11_key: pkcs11_key.as_deref(),
                    },
                )
                .await?;
            if json {
                output::json(&ca)?;
            } else {
                eprintln!(
                    "created issuing CA {} ({}) under {parent}",
                    ca.name, ca.subject
                );
            }
        }
        CaCommand::Register(args) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            };
            if args.tpm_ek {
                let ca = TpmAttestation::new(&idmint)
                    .register_ek_ca(&actor(), &args.name, &read(&args.cert)?)
                    .await?;
                if args.json {
                    output::json(&ca)?;
                } else {
                    eprintln!(
                        "registered TPM manufacturer EK CA {} ({}): TPM attestation accepts EK certificates chaining to it",
                        ca.name, ca.subject
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let request = idmint_manifest::RegisterCa {
                name: args.name.clone(),
                certificate: read(&args.cert)?,
                signer: args.signer.as_deref().map(read).transpose()?,
            };
            let mut ca = Manifests::new(&idmint)
                .register_external_ca(&actor(), &request)
                .await?;
            if args.auto_register {
                ca = Fleet::new(&idmint)
                    .set_auto_register(&actor(), &ca.name, true, args.template.as_deref())
                    .await?;
            }
            if args.est_bootstrap {
                ca = Manifests::new(&idmint)
                    .set_est_bootstrap(&actor(), &ca.name, true, args.batch.as_deref())
                    .await?;
            }
            if args.json {
                output::json(&ca)?;
            } else {
                eprintln!(
                    "registered outside CA {} ({}){}",
                    ca.name,
                    ca.subject,
                    if ca.signer_der.is_some() {
                        " with its manifest log signer"
                    } else {
                        ""
                    }
                );
                if let (true, Some(t)) = (ca.auto_register, &ca.template) {
                    eprintln!("devices chaining to it register themselves with template {t}");
                }
                print_est_bootstrap(&ca);
            }
        }
        CaCommand::Update {
            name,
            auto_register,
            template,
            est_bootstrap,
            batch,
            json,
        } => {
            let mut ca = store.require_ca(&name).await?;
            if let Some(on) = auto_register {
                ca = Fleet::new(&idmint)
                    .set_auto_register(&actor(), &name, on, template.as_deref())
                    .await?;
            }
            if let Some(on) = est_bootstrap {
                ca = Manifests::new(&idmint)
                    .set_est_bootstrap(&actor(), &name, on, batch.as_deref())
                    .await?;
            }
            if json {
                output::json(&ca)?;
            } else {
                eprintln!(
                    "CA {}: auto-registration {}{}",
                    ca.name,
                    if ca.auto_register { "on" } else { "off" },
                    ca.template
                        .as_deref()
                        .map(|t| format!(", template {t}"))
                        .unwrap_or_default()
                );
                print_est_bootstrap(&ca);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_est_bootstrap(ca: &idmint_flows::registry::Ca) {
    if ca.est_bootstrap {
        eprintln!(
            "certificates chaining to it may enroll over EST once each{}",
            ca.est_bootstrap_batch
                .as_deref()
                .map(|b| format!(", into batch {b}"))
                .unwrap_or_default()
        );
    }
}
