//! Certificate rotation (EST `simplereenroll`): a device renews with its
//! current certificate; the old one stays ACTIVE for the overlap, then is
//! retired. At most one rotation is pending per thing: a second renewal
//! inside the overlap revokes the earlier replacement (`superseded`) before
//! issuing, all in one transaction, so no replacement is left ACTIVE and
//! untracked.

use idmint_pki::{Csr, IssuedCertificate, PublicKey, SubjectValues};
use idmint_registry::{CertificateStatus, RegistryError};

use idmint_flows::access::{AccessError, AuthorizedReenroll};
use idmint_flows::issue::{certificate_record, IssueOptions};
use idmint_flows::FlowError;

impl crate::Fleet<'_> {
    /// Renews `who`'s certificate for the key in `csr`, whose subject must
    /// match the current certificate's (its CN, or the thing name). The
    /// old certificate is retired after `overlap_secs` (at once when 0, or
    /// revoked `superseded` at once when the key is the same). The new
    /// certificate inherits the old one's grants. The new certificate stays
    /// on the old one's thing, registered as it is.
    pub async fn reenroll(
        &self,
        who: &AuthorizedReenroll,
        csr: &Csr,
        overlap_secs: u64,
    ) -> Result<IssuedCertificate, FlowError> {
        let old = who.certificate();
        let thing = who.thing();
        let old_info = idmint_pki::CertificateInfo::from_der(&old.der)?;
        let cn_ok = csr
            .common_name()
            .is_some_and(|cn| Some(cn) == old_info.subject_cn.as_deref() || cn == thing);
        if !cn_ok && csr.subject() != old_info.subject {
            return Err(AccessError::Refused(format!(
                "the CSR subject {:?} does not match the current certificate's {:?}",
                csr.subject(),
                old_info.subject
            ))
            .into());
        }
        let profile = match &old.batch {
            Some(b) => self
                .store()
                .batch(b)
                .await?
                .map_or_else(|| "device".to_string(), |b| b.profile),
            None => "device".into(),
        };
        let options = IssueOptions {
            profile,
            ca: Some(old.ca.clone()),
            // Only the CA and profile are asked of it: the thing is the
            // registered one (which may predate the thing-name rule).
            thing: None,
            status: CertificateStatus::Active,
            batch: None,
        };
        let (ca_name, ca, profile) = self.issuer(&options).await?;
        let mut values = SubjectValues::for_thing(thing).with("org", self.config().org.as_str());
        if let Some(cn) = csr.common_name() {
            values.set("csr_cn", cn);
        }
        let key: &PublicKey = csr.public_key();
        let certificate = ca.issue(key, &profile, &values)?;
        let new_id = certificate.info.id.clone();
        let same_key = certificate.info.public_key_sha256 == old.public_key_sha256;

        let actor = format!("cert:{}", old.id);
        let mut tx = self.store().begin(&actor).await?;
        let current = tx
            .certificate(&old.id)
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                kind: "certificate",
                name: old.id.to_string(),
            })?;
        if current.status != CertificateStatus::Active {
            return Err(AccessError::Unauthenticated(format!(
                "the client certificate is {}",
                current.status
            ))
            .into());
        }
        if let Some(pending) = tx.pending_rotation_of_thing(thing).await? {
            if pending.new_id != old.id {
                // The earlier replacement is superseded by this one.
                let replacement = tx.certificate(&pending.new_id).await?;
                if replacement.is_some_and(|c| c.status != CertificateStatus::Revoked) {
                    tx.set_certificate_status(
                        &pending.new_id,
                        CertificateStatus::Revoked,
                        Some(idmint_registry::RevocationReason::Superseded),
                    )
                    .await?;
                }
            }
            if pending.old_id != old.id {
                // The replacement renews: its predecessor retires now.
                let predecessor = tx.certificate(&pending.old_id).await?;
                if predecessor.is_some_and(|c| c.status == CertificateStatus::Active) {
                    tx.set_certificate_status(&pending.old_id, CertificateStatus::Inactive, None)
                        .await?;
                }
            }
            tx.finish_rotation(&pending.old_id).await?;
        }
        if same_key {
            tx.set_certificate_status(
                &old.id,
                CertificateStatus::Revoked,
                Some(idmint_registry::RevocationReason::Superseded),
            )
            .await?;
        }
        tx.insert_certificates(&[certificate_record(
            &certificate,
            &ca_name,
            Some(thing),
            CertificateStatus::Active,
            None,
        )])
        .await?;
        if !same_key {
            if overlap_secs == 0 {
                tx.set_certificate_status(&old.id, CertificateStatus::Inactive, None)
                    .await?;
            } else {
                let retire = idmint_registry::now()
                    .saturating_add(i64::try_from(overlap_secs).unwrap_or(i64::MAX / 2));
                tx.insert_rotation(&old.id, &new_id, retire).await?;
            }
        }
        for grant in tx.grants_of(&actor).await? {
            tx.insert_grant(&format!("cert:{new_id}"), grant.role, &grant.scope)
                .await?;
        }
        tx.commit().await?;
        Ok(certificate)
    }

    /// Retires every rotation whose overlap has ended: the old certificate
    /// becomes INACTIVE if it is still ACTIVE. Safe to run on several
    /// servers at once. Returns how many were due.
    pub async fn retire_due_rotations(&self) -> Result<usize, FlowError> {
        let due = self.store().due_rotations(idmint_registry::now()).await?;
        for r in &due {
            let mut tx = self.store().begin("server:rotation").await?;
            let still_active = tx
                .certificate(&r.old_id)
                .await?
                .is_some_and(|c| c.status == CertificateStatus::Active);
            if still_active {
                tx.set_certificate_status(&r.old_id, CertificateStatus::Inactive, None)
                    .await?;
            }
            tx.finish_rotation(&r.old_id).await?;
            tx.commit().await?;
        }
        Ok(due.len())
    }
}
