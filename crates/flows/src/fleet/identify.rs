//! Who is on the other end of an MQTT connection, from the TLS client
//! certificate chain it presented: a claim certificate, a registered ACTIVE
//! device (or admin) certificate, or an unknown certificate chaining to an
//! auto-registering CA, which is provisioned just in time. Everything else
//! is refused at connect.

use idmint_pki::CertificateInfo;
use idmint_registry::{CaKind, CertificateStatus};

use super::jitp::RegisteredEvent;
use super::Rejection;
use crate::{FlowError, Idmint};

/// A connected MQTT client's identity.
#[derive(Clone, Debug)]
pub enum MqttIdentity {
    /// A claim certificate: only the provisioning topics of its templates.
    Claim {
        /// The claim certificate's id.
        certificate_id: String,
        /// Templates it may use.
        templates: Vec<String>,
        /// Provisioning requests per minute (0: no limit).
        rate_per_minute: u32,
    },
    /// A registered, ACTIVE certificate.
    Device {
        /// The certificate id.
        certificate_id: String,
        /// Its thing.
        thing: Option<String>,
        /// Whether the thing has the `admin` role (may receive events).
        admin: bool,
        /// Set when this connection registered the certificate (JITP).
        registered: Option<RegisteredEvent>,
    },
}

fn refused(message: impl Into<String>) -> Rejection {
    Rejection::forbidden("NotAuthorized", message)
}

impl Idmint {
    /// Identifies a client by its certificate chain (DER, leaf first).
    pub async fn identify_mqtt_client(&self, chain: &[Vec<u8>]) -> Result<MqttIdentity, Rejection> {
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
        if let Some(cert) = store.certificate(&info.id).await? {
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
                    other => other.into(),
                })?;
            if let Some(claim) = store.claim(&cert.id).await? {
                return Ok(MqttIdentity::Claim {
                    certificate_id: cert.id,
                    templates: claim.templates,
                    rate_per_minute: u32::try_from(claim.rate_per_minute).unwrap_or(0),
                });
            }
            let admin = match &cert.thing {
                Some(thing) => store
                    .thing(thing)
                    .await?
                    .is_some_and(|t| t.attributes.get("role").map(String::as_str) == Some("admin")),
                None => false,
            };
            return Ok(MqttIdentity::Device {
                certificate_id: cert.id,
                thing: cert.thing,
                admin,
                registered: None,
            });
        }
        for ca in store.list_cas().await? {
            if ca.kind != CaKind::External || !ca.auto_register {
                continue;
            }
            if idmint_pki::verify_chain(leaf, &presented, &[ca.certificate_der.as_slice()]).is_err()
            {
                continue;
            }
            let event = match self.jitp_register(&ca, leaf).await {
                Ok(event) => event,
                Err(e) => {
                    // Another connection of the same device may have won the race.
                    if store.certificate(&info.id).await?.is_some() {
                        return Box::pin(self.identify_mqtt_client(chain)).await;
                    }
                    return Err(e);
                }
            };
            return Ok(MqttIdentity::Device {
                certificate_id: info.id,
                thing: Some(event.thing_name.clone()),
                admin: false,
                registered: Some(event),
            });
        }
        Err(refused(
            "the client certificate is not registered and chains to no auto-registering CA",
        ))
    }
}
