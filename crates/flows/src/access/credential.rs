//! Turning a credential into a [`Principal`]: a token from an
//! `Authorization` header, or a TLS client certificate chain. The one
//! client-certificate check (validity, registry status, chain to its CA with
//! the intermediates the peer presented) used by HTTP, EST and MQTT alike.

use idmint_pki::CertificateInfo;
use idmint_registry::{Ca, CaKind, Certificate, CertificateStatus, Claim};

use super::{AccessError, Principal};
use crate::{FlowError, Idmint};

/// The credentials of an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    /// `Bearer SECRET`.
    Bearer(String),
    /// `Basic base64(NAME:SECRET)`.
    Basic(String, String),
}

/// A TLS client certificate that checked out.
#[derive(Debug)]
pub enum ClientCertificate {
    /// One of ours (or imported), registered, ACTIVE, valid, chaining to
    /// its CA; with its claim if it is a claim certificate.
    Registered(Box<Certificate>, Option<Claim>),
    /// Unknown to the registry, chaining to a registered outside CA.
    Outside {
        /// The leaf's parsed fields.
        info: Box<CertificateInfo>,
        /// The outside CA it chains to.
        ca: Box<Ca>,
    },
}

fn refused(message: impl Into<String>) -> FlowError {
    FlowError::Access(AccessError::Unauthenticated(message.into()))
}

impl Idmint {
    /// The principal a token credential names; `Unauthenticated` when the
    /// token is unknown or revoked.
    pub async fn principal_for_token(
        &self,
        credentials: &Credentials,
    ) -> Result<Principal, FlowError> {
        let token = match credentials {
            Credentials::Bearer(secret) => self.token_for_secret(secret).await?,
            Credentials::Basic(name, secret) => self.token_for_basic(name, secret).await?,
        }
        .ok_or_else(|| refused("unknown or revoked token"))?;
        Ok(Principal::Token {
            name: token.name,
            role: token.role,
            batch: token.batch,
        })
    }

    /// Checks a client certificate chain (DER, leaf first): it must be
    /// valid now and either registered ACTIVE and chaining to its CA (with
    /// the presented intermediates), or unknown and chaining to a registered
    /// outside CA. Anything else is `Unauthenticated`.
    pub async fn check_client_certificate(
        &self,
        chain: &[Vec<u8>],
    ) -> Result<ClientCertificate, FlowError> {
        let leaf = chain
            .first()
            .ok_or_else(|| refused("a client certificate is required"))?;
        let info = CertificateInfo::from_der(leaf)
            .map_err(|e| refused(format!("unreadable client certificate: {e}")))?;
        if !info.valid_at(time::OffsetDateTime::now_utc()) {
            return Err(refused(
                "the client certificate is expired or not yet valid",
            ));
        }
        let presented: Vec<&[u8]> = chain.iter().skip(1).map(Vec::as_slice).collect();
        let store = self.store();
        if let Some((cert, claim)) = store.certificate_and_claim(&info.id).await? {
            if cert.status != CertificateStatus::Active {
                return Err(refused(format!(
                    "the client certificate is {}",
                    cert.status
                )));
            }
            self.verify_against_ca(&cert.ca, leaf, &presented)
                .await
                .map_err(|e| match e {
                    FlowError::Pki(e) => refused(format!("client certificate: {e}")),
                    other => other,
                })?;
            return Ok(ClientCertificate::Registered(Box::new(cert), claim));
        }
        for ca in store.list_cas().await? {
            if ca.kind != CaKind::External {
                continue;
            }
            if idmint_pki::verify_chain(leaf, &presented, &[ca.certificate_der.as_slice()]).is_ok()
            {
                return Ok(ClientCertificate::Outside {
                    info: Box::new(info),
                    ca: Box::new(ca),
                });
            }
        }
        Err(refused(
            "the client certificate is not registered and chains to no registered CA",
        ))
    }

    /// The principal a client certificate chain proves, for HTTP and EST:
    /// a registered certificate with its grants (or a claim certificate),
    /// or a bootstrap certificate of an outside CA registered with
    /// `--est-bootstrap`. An outside CA without it is `Unauthenticated`.
    pub async fn principal_for_certificate(
        &self,
        chain: &[Vec<u8>],
    ) -> Result<Principal, FlowError> {
        match self.check_client_certificate(chain).await? {
            ClientCertificate::Registered(cert, claim) => {
                self.principal_of_registered(*cert, claim).await
            }
            ClientCertificate::Outside { info, ca } => {
                if !ca.est_bootstrap {
                    return Err(refused(format!(
                        "the client certificate chains to CA {:?}, which is not registered for EST bootstrap (idmint ca update {} --est-bootstrap true)",
                        ca.name, ca.name
                    )));
                }
                Ok(Principal::Bootstrap {
                    id: info.id.clone(),
                    ca: ca.name.clone(),
                    thing: info.subject_cn.clone(),
                    batch: ca.est_bootstrap_batch.clone(),
                })
            }
        }
    }

    /// The principal of a registered, checked certificate: a claim (the
    /// claim it holds, as the check read it), or a device with its grants.
    pub async fn principal_of_registered(
        &self,
        cert: Certificate,
        claim: Option<Claim>,
    ) -> Result<Principal, FlowError> {
        if let Some(claim) = claim {
            return Ok(Principal::Claim {
                certificate_id: cert.id,
                templates: claim.templates,
                rate_per_minute: u32::try_from(claim.rate_per_minute).unwrap_or(0),
            });
        }
        let grants = self.store().grants_of(&format!("cert:{}", cert.id)).await?;
        Ok(Principal::Device {
            certificate: Box::new(cert),
            grants,
        })
    }
}
