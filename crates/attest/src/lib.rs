//! TPM 2.0 device identities (issue 16): a device proves that the key it
//! wants certified lives in the same TPM as an endorsement key (EK) whose
//! certificate chains to a registered TPM manufacturer, and gets a
//! certificate for that key in a batch.
//!
//! Two steps, a session between them (`docs/tpm.md` has the wire shapes):
//!
//! 1. [`TpmAttestation::attest`]: the EK certificate is checked against the
//!    registered TPM manufacturers' CAs (`ca register --tpm-ek`), the
//!    attestation key (AK) must be a restricted signing key that cannot leave
//!    the TPM, the identity key must not be duplicable and be the CSR's key.
//!    idmint wraps a random secret to the EK for the AK's Name
//!    (`MakeCredential`) and picks a nonce.
//! 2. [`TpmAttestation::activate`]: the device returns the secret its TPM
//!    recovered (`ActivateCredential`: only that TPM, and only for that AK,
//!    can) and `TPM2_Certify` of the identity key by the AK over the nonce.
//!    idmint checks them and issues the certificate in the batch (quota, audit,
//!    one identity per EK per batch), spending the session in the same
//!    transaction. A session is spent by its first activation, whatever the
//!    outcome: a secret or a nonce is good once.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use idmint_flows::access::{Action, Principal};
use idmint_flows::issue::{IssueOptions, Issued};
use idmint_flows::registrar::TpmActivation;
use idmint_flows::FlowError;
use idmint_flows::ThingName;
use idmint_pki::tpm::{
    make_credential, verify_attestation_signature, verify_ek_chain_at, CertifyInfo, EndorsementKey,
    ObjectAttributes, TpmPublic, TpmSignature,
};
use idmint_pki::{constant_time_eq, sha256, sha256_hex, CertificateInfo, Csr};
use idmint_registry::{
    validate_name, Ca, CaKind, CertificateStatus, NewCa, NewTpmSession, RegistryError, TpmSession,
};
use zeroize::Zeroizing;

idmint_flows::scenario_service!(
    /// TPM attestation over an opened data directory: TPM manufacturers'
    /// EK CAs, attestation sessions, certificates for TPM-resident keys.
    TpmAttestation
);

/// How long a session waits for its activation.
pub const SESSION_LIFETIME_SECS: i64 = 300;

/// Bytes of the secret wrapped to the EK (fits every EK's Name hash).
const SECRET_LEN: usize = 32;
/// Bytes of the nonce `TPM2_Certify` must carry.
const NONCE_LEN: usize = 32;

/// Step 1: what a device sends.
#[derive(Clone, Debug)]
pub struct AttestRequest {
    /// The batch to issue in; the caller's own batch when it has one.
    pub batch: Option<String>,
    /// The TPM's EK certificate (DER).
    pub ek_certificate: Vec<u8>,
    /// Intermediate CA certificates (DER) between it and a registered TPM
    /// manufacturer CA, if any.
    pub ek_chain: Vec<Vec<u8>>,
    /// The AK's `TPM2B_PUBLIC`.
    pub ak_public: Vec<u8>,
    /// The identity key's `TPM2B_PUBLIC`.
    pub identity_public: Vec<u8>,
    /// A CSR (PEM or DER) for the identity key; its CN names the thing.
    pub csr: Vec<u8>,
}

/// Step 1: what idmint answers.
#[derive(Clone, Debug)]
pub struct Challenge {
    /// The session id to activate.
    pub session: String,
    /// `TPM2B_ID_OBJECT` for `TPM2_ActivateCredential`.
    pub credential_blob: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` for `TPM2_ActivateCredential`.
    pub encrypted_secret: Vec<u8>,
    /// The qualifying data `TPM2_Certify` must carry.
    pub nonce: Vec<u8>,
    /// When the session expires (Unix seconds).
    pub expires: i64,
}

/// Step 2: what a device sends.
#[derive(Clone, Debug)]
pub struct ActivateRequest {
    /// The session id.
    pub session: String,
    /// The secret `TPM2_ActivateCredential` recovered.
    pub secret: Zeroizing<Vec<u8>>,
    /// The `TPMS_ATTEST` of `TPM2_Certify` (identity key, signed by the AK).
    pub certify_info: Vec<u8>,
    /// The AK's `TPMT_SIGNATURE` over it.
    pub signature: Vec<u8>,
}

/// Step 2: the certificate issued.
#[derive(Clone, Debug)]
pub struct Activated {
    /// The certificate, its thing and CA.
    pub issued: Issued,
    /// The issuing chain (DER), issuing CA first.
    pub chain: Vec<Vec<u8>>,
    /// SHA-256 (hex) of the EK's public key, recorded with the identity.
    pub ek_sha256: String,
}

impl TpmAttestation<'_> {
    /// Registers a TPM manufacturer's EK CA (kind `tpm-ek`): EK certificates
    /// chaining to it are accepted by [`TpmAttestation::attest`]; it anchors
    /// nothing else (no client certificate, no manifest).
    pub async fn register_ek_ca(
        &self,
        actor: &str,
        name: &str,
        certificate: &[u8],
    ) -> Result<Ca, FlowError> {
        validate_name("CA name", name)?;
        if self.store().ca(name).await?.is_some() {
            return Err(RegistryError::AlreadyExists {
                kind: "CA",
                name: name.to_string(),
            }
            .into());
        }
        let trimmed = certificate.trim_ascii_start();
        let (info, der) = if trimmed.starts_with(b"-----BEGIN") {
            CertificateInfo::from_pem(trimmed)
        } else {
            CertificateInfo::from_der(certificate).map(|i| (i, certificate.to_vec()))
        }
        .map_err(|e| FlowError::Invalid(format!("TPM EK CA certificate: {e}")))?;
        if !info.is_ca {
            return Err(FlowError::Invalid(format!(
                "{} is not a CA certificate (basicConstraints CA is not set)",
                info.subject
            )));
        }
        let mut tx = self.store().begin(actor).await?;
        tx.insert_ca(&NewCa {
            name: name.to_string(),
            kind: CaKind::TpmEk,
            parent: None,
            certificate_der: der,
            id: info.id.clone(),
            subject: info.subject.clone(),
            key_type: info.key_type.map(|k| k.to_string()),
            not_before: info.not_before.unix_timestamp(),
            not_after: info.not_after.unix_timestamp(),
            key_ref: None,
            signer_der: None,
        })
        .await?;
        tx.commit().await?;
        Ok(self.store().require_ca(name).await?)
    }

    /// Step 1: checks the TPM's EK certificate, AK and identity key, and
    /// opens a session whose credential only that TPM can activate.
    pub async fn attest(
        &self,
        who: &Principal,
        req: &AttestRequest,
    ) -> Result<Challenge, FlowError> {
        let batch_id = match (&req.batch, who.batch()) {
            (Some(asked), _) => asked.clone(),
            (None, Some(mine)) => mine.to_string(),
            (None, None) => {
                return Err(FlowError::Invalid(
                    "name the batch to issue in (\"batch\")".into(),
                ))
            }
        };
        who.authorize_issuance(Action::Enroll, Some(&batch_id))?;
        let batch = self.store().require_batch(&batch_id).await?;

        let ek_sha256 = self
            .check_ek_certificate(&req.ek_certificate, &req.ek_chain)
            .await?;
        let (ek, _) = EndorsementKey::from_certificate_der(&req.ek_certificate)
            .map_err(|e| refused("EK certificate", e))?;
        let ak = check_ak(&req.ak_public)?;
        let csr = Csr::from_pem_or_der(&req.csr)?;
        check_identity_key(&req.identity_public, &csr)?;
        thing_of(&csr)?;
        if let Some(existing) = self.store().tpm_identity(&batch.id, &ek_sha256).await? {
            return Err(clone_refused(&batch.id, &ek_sha256, &existing));
        }

        let secret = Zeroizing::new(idmint_flows::random_bytes(SECRET_LEN)?);
        let nonce = idmint_flows::random_bytes(NONCE_LEN)?;
        let session = hex::encode(idmint_flows::random_bytes(16)?);
        let made = make_credential(&ek, &ak.name(), &secret).map_err(idmint_pki::PkiError::from)?;
        let expires = idmint_registry::now() + SESSION_LIFETIME_SECS;
        let mut tx = self.store().begin(&who.actor()).await?;
        tx.insert_tpm_session(&NewTpmSession {
            id: session.clone(),
            batch: batch.id.to_string(),
            ek_sha256,
            ak_public: req.ak_public.clone(),
            identity_public: req.identity_public.clone(),
            csr: csr.der().to_vec(),
            secret_sha256: hex::encode(sha256(&secret)),
            nonce: nonce.clone(),
            expires,
        })
        .await?;
        tx.commit().await?;
        Ok(Challenge {
            session,
            credential_blob: made.credential_blob,
            encrypted_secret: made.encrypted_secret,
            nonce,
            expires,
        })
    }

    /// Step 2: checks the activated secret and the AK's `TPM2_Certify` of
    /// the identity key over the session's nonce, and issues the identity
    /// key's certificate in the session's batch. The session is spent
    /// whatever the outcome.
    pub async fn activate(
        &self,
        who: &Principal,
        req: &ActivateRequest,
    ) -> Result<Activated, FlowError> {
        let stored = self
            .store()
            .tpm_session(&req.session)
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                kind: "TPM session",
                name: req.session.clone(),
            })?;
        let authorized = who.authorize_issuance(Action::Enroll, Some(&stored.session.batch))?;
        if stored.spent.is_some() {
            return Err(FlowError::Conflict(format!(
                "TPM session {} was already used: its secret and nonce are good once; start again with /api/v1/tpm/attest",
                req.session
            )));
        }
        let verdict = self.verify_activation(&stored, req);
        let (csr, ek_sha256) = match verdict {
            Ok(ok) => ok,
            Err(e) => {
                self.spend(who, &req.session).await;
                return Err(e);
            }
        };
        let batch = self.store().require_batch(&stored.session.batch).await?;
        let options = IssueOptions {
            profile: batch.profile.clone(),
            ca: Some(batch.ca.clone()),
            thing: Some(thing_of(&csr)?),
            status: CertificateStatus::Active,
            batch: Some(batch.id.clone()),
        };
        let activation = TpmActivation {
            session: req.session.clone(),
            ek_sha256: ek_sha256.clone(),
        };
        let issued = match self
            .issue_from_attested_csr(&authorized, &csr, &options, activation)
            .await
        {
            Ok(issued) => issued,
            Err(e) => {
                // A concurrent activation for the same EK and batch is
                // refused by the registry's ledger (409, AlreadyExists).
                self.spend(who, &req.session).await;
                return Err(e);
            }
        };
        let chain = self.chain(&batch.ca).await?;
        Ok(Activated {
            issued,
            chain,
            ek_sha256,
        })
    }

    /// Every check of step 2, on the session's stored (already checked)
    /// request and the device's answer.
    fn verify_activation(
        &self,
        stored: &TpmSession,
        req: &ActivateRequest,
    ) -> Result<(Csr, String), FlowError> {
        let s = &stored.session;
        if idmint_registry::now() >= s.expires {
            return Err(FlowError::Conflict(format!(
                "TPM session {} expired (sessions last {SESSION_LIFETIME_SECS} s); start again with /api/v1/tpm/attest",
                s.id
            )));
        }
        let expected = hex::decode(&s.secret_sha256)
            .map_err(|_| RegistryError::Corrupt("tpm_sessions.secret_sha256".into()))?;
        if !constant_time_eq(&sha256(&req.secret), &expected) {
            return Err(FlowError::Invalid(
                "the activated secret is wrong: this TPM does not hold the certified EK, or the AK is not the one attested".into(),
            ));
        }
        let attest = CertifyInfo::from_tpms_attest(&req.certify_info)
            .map_err(|e| refused("certify_info", e))?;
        if !constant_time_eq(&attest.extra_data, &s.nonce) {
            return Err(FlowError::Invalid(
                "the certification does not carry this session's nonce (a replayed or stale TPM2_Certify)".into(),
            ));
        }
        let ak = check_ak(&s.ak_public)?;
        let csr = Csr::from_der(&s.csr)?;
        let identity = check_identity_key(&s.identity_public, &csr)?;
        if attest.certified_name != identity.name() {
            return Err(FlowError::Invalid(
                "the certification is of another key: the certified Name is not the identity key's"
                    .into(),
            ));
        }
        let signature =
            TpmSignature::from_tpmt(&req.signature).map_err(|e| refused("signature", e))?;
        verify_attestation_signature(&ak, &attest, &signature)
            .map_err(|e| refused("certification", e))?;
        Ok((csr, s.ek_sha256.clone()))
    }

    /// Spends a session after a refused activation (best effort: a failure
    /// to write is logged; the session then expires).
    async fn spend(&self, who: &Principal, session: &str) {
        let spent = async {
            let mut tx = self.store().begin(&who.actor()).await?;
            tx.spend_tpm_session(session).await?;
            tx.commit().await
        };
        if let Err(e) = spent.await {
            tracing::warn!(session, "could not spend a refused TPM session: {e}");
        }
    }

    /// The EK certificate must chain to a registered TPM manufacturer CA
    /// (kind `tpm-ek`); returns the SHA-256 of its public key.
    async fn check_ek_certificate(
        &self,
        ek_certificate: &[u8],
        chain: &[Vec<u8>],
    ) -> Result<String, FlowError> {
        let anchors: Vec<Ca> = self
            .store()
            .list_cas()
            .await?
            .into_iter()
            .filter(|ca| ca.kind == CaKind::TpmEk)
            .collect();
        if anchors.is_empty() {
            return Err(FlowError::Invalid(
                "no TPM manufacturer is registered: idmint ca register --tpm-ek".into(),
            ));
        }
        let roots: Vec<&[u8]> = anchors
            .iter()
            .map(|c| c.certificate_der.as_slice())
            .collect();
        let intermediates: Vec<&[u8]> = chain
            .iter()
            .map(Vec::as_slice)
            .chain(roots.iter().copied())
            .collect();
        verify_ek_chain_at(
            ek_certificate,
            &intermediates,
            &roots,
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|e| {
            FlowError::Invalid(format!(
                "the EK certificate does not chain to a registered TPM manufacturer: {e}"
            ))
        })?;
        let (_, spki) = EndorsementKey::from_certificate_der(ek_certificate)
            .map_err(|e| refused("EK certificate", e))?;
        Ok(sha256_hex(&spki))
    }
}

/// The AK must be a restricted signing key that cannot leave its TPM
/// (fixedTPM, fixedParent, restricted, sign, not decrypt).
fn check_ak(ak_public: &[u8]) -> Result<TpmPublic, FlowError> {
    let ak = TpmPublic::from_tpm2b(ak_public).map_err(|e| refused("ak_public", e))?;
    let a = ak.attributes();
    let required = [
        (ObjectAttributes::FIXED_TPM, "fixedTPM"),
        (ObjectAttributes::FIXED_PARENT, "fixedParent"),
        (ObjectAttributes::RESTRICTED, "restricted"),
        (ObjectAttributes::SIGN, "sign"),
    ];
    for (bit, name) in required {
        if !a.has(bit) {
            return Err(FlowError::Invalid(format!(
                "the attestation key is not {name}: an AK must be a restricted signing key that cannot leave its TPM"
            )));
        }
    }
    if a.has(ObjectAttributes::DECRYPT) {
        return Err(FlowError::Invalid(
            "the attestation key is also a decryption key: an AK only signs".into(),
        ));
    }
    Ok(ak)
}

/// The identity key must be a signing key that cannot be duplicated out of
/// its TPM (fixedTPM, fixedParent), unrestricted (it signs TLS handshakes),
/// and be the CSR's key.
fn check_identity_key(identity_public: &[u8], csr: &Csr) -> Result<TpmPublic, FlowError> {
    let key = TpmPublic::from_tpm2b(identity_public).map_err(|e| refused("identity_public", e))?;
    let a = key.attributes();
    if !a.has(ObjectAttributes::FIXED_TPM) || !a.has(ObjectAttributes::FIXED_PARENT) {
        return Err(FlowError::Invalid(
            "the identity key is duplicable (fixedTPM and fixedParent must be set): it could leave the TPM".into(),
        ));
    }
    if !a.has(ObjectAttributes::SIGN) || a.has(ObjectAttributes::RESTRICTED) {
        return Err(FlowError::Invalid(
            "the identity key must be an unrestricted signing key".into(),
        ));
    }
    if !key.same_key_as(csr.public_key().spki_der()) {
        return Err(FlowError::Invalid(
            "the CSR's public key is not the identity key's".into(),
        ));
    }
    Ok(key)
}

/// The thing the certificate is for: the CSR's common name.
fn thing_of(csr: &Csr) -> Result<ThingName, FlowError> {
    let cn = csr
        .common_name()
        .ok_or_else(|| FlowError::Invalid("the CSR has no common name to name the thing".into()))?;
    Ok(ThingName::parse(cn).map_err(RegistryError::from)?)
}

fn refused(what: &str, e: idmint_pki::tpm::TpmError) -> FlowError {
    if e.is_the_requests() {
        FlowError::Invalid(format!("{what}: {e}"))
    } else {
        FlowError::Pki(e.into())
    }
}

fn clone_refused(batch: &str, ek_sha256: &str, existing: &str) -> FlowError {
    FlowError::Conflict(format!(
        "refused clone: the TPM with EK {ek_sha256} already has an identity in batch {batch} (certificate {existing})"
    ))
}
