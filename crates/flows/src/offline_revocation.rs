//! Revocation for offline batches: what the batch CA signs at `batch
//! authorize`, while its key is still at the maker, so that the maker can
//! publish the revocation of certificates the factory issues after the key
//! has left (see `docs/offline-batches.md`, "Revocation").
//!
//! - a delegated OCSP responder certificate (id-kp-OCSPSigning,
//!   id-pkix-ocsp-nocheck) valid for the batch CA's whole lifetime: the
//!   primary path, accepted by every OCSP client;
//! - a CRL signer certificate (the batch CA's own subject name, keyUsage
//!   cRLSign only): CRLs it signs name the batch CA as their issuer and
//!   cover every certificate the batch CA issued, with no cRLIssuer needed
//!   in those certificates (OpenSSL: `-extended_crl`, the signer given as
//!   an untrusted certificate);
//! - an empty CRL the batch CA signs for its lifetime, scoped to the CRL
//!   signer, so `-crl_check_all` can check the signer's own status.
//!
//! The two keys are kept by the maker, PKCS#8-encrypted under the CA
//! passphrase exactly as CA keys are; both certificates are registered and
//! audited like any issuance.

use idmint_pki::{
    decrypt_private_key, encrypt_private_key, CertificateAuthority, CrlSigner, DeviceKey,
    IssuedCertificate, KeyProtection, KeyType, Signer,
};
use idmint_registry::{AuditEvent, CaKind, RevocationSigners, WriteTx};
use time::OffsetDateTime;

use crate::issue::register_service_certificate;
use crate::{FlowError, Idmint};

/// The suffix of the name the CRL covering a batch CA's CRL signer is
/// published under: `/crl/<batch>-ca-signer.crl`.
pub const SIGNER_STATUS_SUFFIX: &str = "-signer";

/// What the batch CA signed, ready to be registered.
pub struct MadeSigners {
    row: RevocationSigners,
    responder: IssuedCertificate,
    crl_signer: IssuedCertificate,
}

/// A delegated OCSP responder kept by the maker for an offline batch CA.
pub(crate) struct StoredResponder {
    pub(crate) signer: Signer,
    pub(crate) der: Vec<u8>,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
}

impl Idmint {
    /// Has `batch_ca` (its key still here) sign a delegated OCSP responder,
    /// a CRL signer and the CRL covering the signer, for new keys that are
    /// encrypted under the CA passphrase.
    pub fn make_revocation_signers(
        &self,
        batch_ca: &CertificateAuthority,
        ca_name: &str,
    ) -> Result<MadeSigners, FlowError> {
        let passphrase = self.passphrase()?;
        let not_after = batch_ca.info().not_after;
        let key_type = match batch_ca.signer().key_type() {
            KeyType::P384 => KeyType::P384,
            _ => KeyType::P256,
        };
        let responder_key = DeviceKey::generate(key_type)?;
        let responder = batch_ca.issue_ocsp_responder_until(&responder_key, not_after)?;
        let crl_key = DeviceKey::generate(key_type)?;
        let status_url = self.signer_status_url(ca_name);
        let crl_signer = batch_ca.issue_crl_signer(&crl_key, &status_url, not_after)?;
        let signer_status_crl = batch_ca.crl_signer_status_crl(&status_url, not_after)?;
        let protect = |key: &DeviceKey| -> Result<String, FlowError> {
            Ok(encrypt_private_key(
                &key.pkcs8_der(),
                passphrase.as_bytes(),
                KeyProtection::default(),
            )?
            .to_string())
        };
        let row = RevocationSigners {
            ca: ca_name.to_string(),
            ocsp_responder_der: responder.der.clone(),
            ocsp_responder_key: protect(&responder_key)?,
            crl_signer_der: crl_signer.der.clone(),
            crl_signer_key: protect(&crl_key)?,
            signer_status_url: status_url,
            signer_status_crl,
            created: idmint_registry::now(),
        };
        Ok(MadeSigners {
            row,
            responder,
            crl_signer,
        })
    }

    /// Where the CRL covering `ca`'s CRL signer is published: under `[server]
    /// public_url` when set, else a URN (relying parties are then handed
    /// the CRL, as they are the CA's own CRL).
    fn signer_status_url(&self, ca: &str) -> String {
        match &self.config().server.public_url {
            Some(url) => format!(
                "{}/crl/{ca}{SIGNER_STATUS_SUFFIX}.crl",
                url.trim_end_matches('/')
            ),
            None => format!("urn:idmint:crl-signer:{ca}"),
        }
    }

    /// The CRL the batch CA signed at authorization covering its CRL
    /// signer, for a name `<batch CA>-signer` (`/crl/<batch>-ca-signer.crl`);
    /// `None` when no batch CA has one by that name.
    pub async fn crl_signer_status_crl(&self, name: &str) -> Result<Option<Vec<u8>>, FlowError> {
        let Some(ca) = name.strip_suffix(SIGNER_STATUS_SUFFIX) else {
            return Ok(None);
        };
        Ok(self
            .store()
            .revocation_signers(ca)
            .await?
            .map(|s| s.signer_status_crl))
    }

    /// The CRL signer the maker keeps for offline batch CA `ca`. Errors
    /// with [`FlowError::BatchCaKeyAtFactory`] for a batch CA authorized
    /// before there were any, and [`FlowError::CaCannotSign`] for a CA that
    /// is no batch CA.
    pub(crate) async fn offline_crl_signer(&self, ca: &str) -> Result<CrlSigner, FlowError> {
        let signers = self.stored_signers(ca).await?;
        let key = self.open_key(&signers.crl_signer_key)?;
        Ok(CrlSigner::from_parts(
            signers.crl_signer_der,
            Signer::software(key),
        )?)
    }

    /// The delegated OCSP responder the maker keeps for offline batch CA
    /// `ca`; errors as [`Idmint::offline_crl_signer`] does.
    pub(crate) async fn offline_ocsp_responder(
        &self,
        ca: &str,
    ) -> Result<StoredResponder, FlowError> {
        let signers = self.stored_signers(ca).await?;
        let key = self.open_key(&signers.ocsp_responder_key)?;
        let info = idmint_pki::CertificateInfo::from_der(&signers.ocsp_responder_der)?;
        if info.spki_der != key.spki_der() {
            return Err(idmint_pki::PkiError::InvalidKey(format!(
                "the stored OCSP responder key of batch CA {ca} does not match its certificate"
            ))
            .into());
        }
        Ok(StoredResponder {
            signer: Signer::software(key),
            der: signers.ocsp_responder_der,
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    async fn stored_signers(&self, ca: &str) -> Result<RevocationSigners, FlowError> {
        let record = self.store().require_ca(ca).await?;
        if record.kind != CaKind::Batch {
            return Err(FlowError::CaCannotSign(ca.to_string()));
        }
        self.store()
            .revocation_signers(ca)
            .await?
            .ok_or_else(|| FlowError::BatchCaKeyAtFactory { ca: ca.to_string() })
    }

    fn open_key(&self, pem: &str) -> Result<DeviceKey, FlowError> {
        let passphrase = self.passphrase()?;
        let der = decrypt_private_key(pem, passphrase.as_bytes())?;
        Ok(DeviceKey::from_pkcs8_der(&der)?)
    }
}

impl MadeSigners {
    /// Registers both certificates (as certificates of the batch CA) and
    /// the kept keys, with their audit records, in `tx`.
    pub async fn register(&self, tx: &mut WriteTx) -> Result<(), FlowError> {
        let ca = self.row.ca.as_str();
        let (responder, crl_signer) = (&self.responder, &self.crl_signer);
        register_service_certificate(tx, responder, ca, AuditEvent::OcspResponderIssued, true)
            .await?;
        register_service_certificate(tx, crl_signer, ca, AuditEvent::CrlSignerIssued, true).await?;
        tx.insert_revocation_signers(&self.row, &responder.info.id, &crl_signer.info.id)
            .await?;
        Ok(())
    }
}
