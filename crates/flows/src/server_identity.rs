//! The HTTPS server's own certificate: a key generated here, a server
//! certificate from the default CA for the given host names, the key file
//! written (0600) before the certificate is registered, so a crash never
//! leaves a registered certificate whose key is lost.

use std::path::Path;

use idmint_pki::{DeviceKey, IssuedCertificate, Profile, SubjectValues};
use idmint_registry::{AuditEvent, CertificateStatus};

use crate::files::overwrite_secret;
use crate::issue::certificate_record;
use crate::{FlowError, Idmint};

impl Idmint {
    /// Issues the server certificate for `hosts` (DNS names or IP
    /// addresses), writes its key to `key_path`, registers the certificate
    /// (audited `server.certificate`), and returns it with its chain as PEM
    /// (the certificate, then its issuer).
    pub async fn issue_server_certificate(
        &self,
        hosts: &[String],
        key_path: &Path,
    ) -> Result<(IssuedCertificate, String), FlowError> {
        let ca_name = self.default_ca().to_string();
        let ca = self.signing_ca(&ca_name).await?;
        let key = DeviceKey::generate(self.config().key_type)?;
        let sans = hosts
            .iter()
            .map(|h| {
                if h.parse::<std::net::IpAddr>().is_ok() {
                    format!("ip:{h}")
                } else {
                    format!("dns:{h}")
                }
            })
            .collect();
        let profile = Profile {
            sans,
            ..Profile::server()
        };
        let values =
            SubjectValues::for_thing("idmint-server").with("org", self.config().org.as_str());
        let cert = ca.issue_for_key(&key, &profile, &values)?;
        overwrite_secret(key_path, key.pkcs8_pem().as_bytes())?;
        let mut tx = self.store().begin("server:tls").await?;
        tx.insert_certificate(&certificate_record(
            &cert,
            &ca_name,
            None,
            CertificateStatus::Active,
            None,
        ))
        .await?;
        tx.audit(
            &cert.info.id,
            AuditEvent::ServerCertificate {
                hosts: hosts.to_vec(),
            },
        );
        tx.commit().await?;
        let mut chain = cert.pem();
        if let Some(issuer) = self.chain(&ca_name).await?.first() {
            chain.push_str(&idmint_pki::to_pem("CERTIFICATE", issuer));
        }
        Ok((cert, chain))
    }
}
