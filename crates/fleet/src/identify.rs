//! Who is on the other end of an MQTT connection, from the TLS client
//! certificate chain it presented: a claim certificate, a registered ACTIVE
//! device (or admin) certificate, or an unknown certificate chaining to an
//! auto-registering CA, which is provisioned just in time. Everything else
//! is refused at connect.

use idmint_registry::{CertificateId, Role};

use super::jitp::RegisteredEvent;
use super::Rejection;
use idmint_flows::access::{AccessError, ClientCertificate, Principal};
use idmint_flows::FlowError;

/// A connected MQTT client's identity.
#[derive(Clone, Debug)]
pub enum MqttIdentity {
    /// A claim certificate: only the provisioning topics of its templates.
    Claim {
        /// The claim certificate's id.
        certificate_id: CertificateId,
        /// Templates it may use.
        templates: Vec<String>,
        /// Provisioning requests per minute (0: no limit).
        rate_per_minute: u32,
    },
    /// A registered, ACTIVE certificate.
    Device {
        /// The certificate id.
        certificate_id: CertificateId,
        /// Its thing.
        thing: Option<String>,
        /// Its subject's common name.
        common_name: Option<String>,
        /// Whether the certificate holds an `admin` grant (may receive events).
        admin: bool,
        /// Set when this connection registered the certificate (JITP).
        registered: Option<RegisteredEvent>,
    },
}

fn refused(message: impl Into<String>) -> Rejection {
    Rejection::forbidden("NotAuthorized", message)
}

impl crate::Fleet<'_> {
    /// Identifies a client by its certificate chain (DER, leaf first),
    /// through the one client-certificate check of [`idmint_flows::access`].
    pub async fn identify_mqtt_client(&self, chain: &[Vec<u8>]) -> Result<MqttIdentity, Rejection> {
        let checked = self
            .check_client_certificate(chain)
            .await
            .map_err(|e| match e {
                FlowError::Access(AccessError::Unauthenticated(m)) => refused(m),
                other => other.into(),
            })?;
        let (info, ca) = match checked {
            ClientCertificate::Registered(cert, claim) => {
                return match self.principal_of_registered(*cert, claim).await? {
                    Principal::Claim {
                        certificate_id,
                        templates,
                        rate_per_minute,
                    } => Ok(MqttIdentity::Claim {
                        certificate_id,
                        templates,
                        rate_per_minute,
                    }),
                    Principal::Device {
                        certificate,
                        grants,
                    } => Ok(MqttIdentity::Device {
                        common_name: idmint_flows::access::common_name_of(&certificate.der),
                        certificate_id: certificate.id,
                        thing: certificate.thing,
                        admin: grants.iter().any(|g| g.role == Role::Admin),
                        registered: None,
                    }),
                    _ => Err(refused("the client certificate confers no MQTT identity")),
                };
            }
            ClientCertificate::Outside { info, ca } => (info, ca),
        };
        if !ca.auto_register {
            return Err(refused(
                "the client certificate is not registered and chains to no auto-registering CA",
            ));
        }
        let leaf = chain
            .first()
            .ok_or_else(|| refused("a client certificate is required"))?;
        let event = match self.jitp_register(&ca, leaf).await {
            Ok(event) => event,
            Err(e) => {
                // Another connection of the same device may have won the race.
                if self.store().certificate(&info.id).await?.is_some() {
                    return Box::pin(self.identify_mqtt_client(chain)).await;
                }
                return Err(e);
            }
        };
        Ok(MqttIdentity::Device {
            common_name: info.subject_cn,
            certificate_id: info.id,
            thing: Some(event.thing_name.clone()),
            admin: false,
            registered: Some(event),
        })
    }
}
