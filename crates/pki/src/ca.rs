//! The CA hierarchy: building root and issuing CAs, and issuing device
//! certificates from a profile.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose,
    PublicKeyData, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::profile::{ExtendedKeyUsage, KeyUsage};
use crate::{
    CertificateInfo, DeviceKey, KeyType, PkiError, Profile, PublicKey, Signer, SubjectValues,
};

/// How far back certificates are dated, for devices whose clocks run behind.
pub(crate) const BACKDATE: Duration = Duration::minutes(5);

/// A certificate just issued.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    /// The DER certificate.
    pub der: Vec<u8>,
    /// Its parsed facts (id, serial, validity, ...).
    pub info: CertificateInfo,
}

impl IssuedCertificate {
    /// The certificate as PEM.
    pub fn pem(&self) -> String {
        crate::to_pem("CERTIFICATE", &self.der)
    }
}

/// A CA that can sign: its certificate and its signing key.
pub struct CertificateAuthority {
    der: Vec<u8>,
    info: CertificateInfo,
    issuer: Issuer<'static, Signer>,
    revocation: Option<RevocationPointers>,
}

/// Where relying parties learn whether a certificate of a CA is revoked:
/// put in every certificate it issues as the CRL distribution point and
/// the authority information access OCSP URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationPointers {
    /// The CA's CRL (`https://…/crl/CA.crl`).
    pub crl_url: String,
    /// The OCSP responder (`https://…/ocsp`).
    pub ocsp_url: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &self.info.subject)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Puts a CA certificate and its key together, checking that they belong
    /// together and that the certificate is a CA.
    pub fn from_parts(certificate_der: Vec<u8>, signer: Signer) -> Result<Self, PkiError> {
        let info = CertificateInfo::from_der(&certificate_der)?;
        if !info.is_ca {
            return Err(PkiError::MalformedCertificate(format!(
                "{} is not a CA certificate",
                info.subject
            )));
        }
        if info.spki_der != signer.spki_der() {
            return Err(PkiError::InvalidKey(format!(
                "the key does not belong to the CA certificate {}",
                info.subject
            )));
        }
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(certificate_der.as_slice()), signer)?;
        Ok(CertificateAuthority {
            der: certificate_der,
            info,
            issuer,
            revocation: None,
        })
    }

    /// Puts `pointers` (CRL and OCSP URLs) in every certificate this CA
    /// issues from now on. Refused unless both are `http` or `https` URLs
    /// of printable ASCII.
    pub fn with_revocation_pointers(
        mut self,
        pointers: RevocationPointers,
    ) -> Result<Self, PkiError> {
        for url in [&pointers.crl_url, &pointers.ocsp_url] {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(PkiError::Profile {
                    profile: "revocation URL".into(),
                    reason: format!("{url:?} is not an http(s) URL"),
                });
            }
        }
        self.revocation = Some(pointers);
        Ok(self)
    }

    /// The CRL and OCSP URLs its certificates carry, if set.
    pub fn revocation_pointers(&self) -> Option<&RevocationPointers> {
        self.revocation.as_ref()
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.der
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        crate::to_pem("CERTIFICATE", &self.der)
    }

    /// The CA certificate's facts.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// The CA's signing key.
    pub fn signer(&self) -> &Signer {
        self.issuer.key()
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, Signer> {
        &self.issuer
    }

    /// Issues a certificate for `key` from `profile`, filling its templates
    /// from `values`.
    pub fn issue(
        &self,
        key: &PublicKey,
        profile: &Profile,
        values: &SubjectValues,
    ) -> Result<IssuedCertificate, PkiError> {
        self.issue_for(key.as_rcgen(), key.key_type(), profile, values)
    }

    /// Issues a certificate for a key generated here (server-side key
    /// generation).
    pub fn issue_for_key(
        &self,
        key: &DeviceKey,
        profile: &Profile,
        values: &SubjectValues,
    ) -> Result<IssuedCertificate, PkiError> {
        self.issue_for(key.key_pair(), key.key_type(), profile, values)
    }

    fn issue_for(
        &self,
        key: &impl PublicKeyData,
        key_type: KeyType,
        profile: &Profile,
        values: &SubjectValues,
    ) -> Result<IssuedCertificate, PkiError> {
        if !profile.allows_key_type(key_type) {
            return Err(PkiError::UnsupportedKeyType(format!(
                "{key_type} keys are not allowed by this profile"
            )));
        }
        if let Some(wanted) = &profile.signature_algorithm {
            let have = signature_algorithm_name(self.signer().key_type());
            if wanted != have {
                return Err(PkiError::Profile {
                    profile: "signature_algorithm".into(),
                    reason: format!("profile wants {wanted} but the CA signs with {have}"),
                });
            }
        }
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::now_utc());
        let not_before = now - BACKDATE;
        let mut params = CertificateParams::default();
        params.not_before = not_before;
        params.not_after = match profile.validity_minutes {
            // Short-lived: counted from now, not from the backdated start.
            Some(minutes) => now + Duration::minutes(i64::from(minutes)),
            None => not_before + Duration::days(i64::from(profile.validity_days)),
        };
        params.serial_number = Some(random_serial()?);
        params.distinguished_name = profile.distinguished_name(values)?;
        params.subject_alt_names = profile.subject_alt_names(values)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = profile.key_usage.iter().map(|u| key_usage(*u)).collect();
        params.extended_key_usages = profile.extended_key_usage.iter().map(|u| eku(*u)).collect();
        if let Some(pointers) = &self.revocation {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![pointers.crl_url.clone()],
            }];
            params
                .custom_extensions
                .push(crate::ocsp::authority_info_access(&pointers.ocsp_url)?);
        }
        let cert = params.signed_by(key, &self.issuer)?;
        let der = cert.der().to_vec();
        let info = CertificateInfo::from_der(&der)?;
        Ok(IssuedCertificate { der, info })
    }
}

/// Builds a root or issuing CA with a fresh software key (or a given signer).
pub struct CaBuilder<'p> {
    common_name: String,
    organization: Option<String>,
    key_type: KeyType,
    parent: Option<&'p CertificateAuthority>,
    valid_days: u32,
    signer: Option<Signer>,
    path_len: u8,
    extended_key_usage: Vec<ExtendedKeyUsage>,
}

impl<'p> CaBuilder<'p> {
    /// A self-signed root CA (no path length limit), valid 20 years.
    pub fn root(common_name: &str, key_type: KeyType) -> Self {
        CaBuilder {
            common_name: common_name.to_string(),
            organization: None,
            key_type,
            parent: None,
            valid_days: 20 * 365,
            signer: None,
            path_len: 0,
            extended_key_usage: Vec::new(),
        }
    }

    /// An issuing CA (path length 0) signed by `parent`, valid 10 years.
    pub fn issuing(common_name: &str, key_type: KeyType, parent: &'p CertificateAuthority) -> Self {
        CaBuilder {
            common_name: common_name.to_string(),
            organization: None,
            key_type,
            parent: Some(parent),
            valid_days: 10 * 365,
            signer: None,
            path_len: 0,
            extended_key_usage: Vec::new(),
        }
    }

    /// Sets the subject's organization.
    pub fn organization(mut self, org: &str) -> Self {
        self.organization = Some(org.to_string());
        self
    }

    /// Sets the validity in days.
    pub fn valid_days(mut self, days: u32) -> Self {
        self.valid_days = days;
        self
    }

    /// Sets an issuing CA's path length constraint (0 by default: it signs
    /// only end-entity certificates; 1 lets it sign CAs of path length 0,
    /// such as an offline batch CA). Ignored for roots.
    pub fn path_len(mut self, n: u8) -> Self {
        self.path_len = n;
        self
    }

    /// Puts an extended key usage extension on the CA certificate (none by
    /// default). Verifiers (OpenSSL, webpki) apply a CA's EKU to the whole
    /// chain below it, so e.g. `[ClientAuth]` on a factory's batch CA means
    /// its key cannot mint TLS server certificates that verify.
    pub fn extended_key_usage(mut self, usages: &[ExtendedKeyUsage]) -> Self {
        self.extended_key_usage = usages.to_vec();
        self
    }

    /// Uses an existing key (e.g. one inside a PKCS#11 token) instead of
    /// generating a software key.
    pub fn signer(mut self, signer: Signer) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Generates the key (unless given) and signs the CA certificate.
    pub fn build(self) -> Result<CertificateAuthority, PkiError> {
        let signer = match self.signer {
            Some(s) => s,
            None => Signer::software(DeviceKey::generate(self.key_type)?),
        };
        let mut dn = DistinguishedName::new();
        if let Some(org) = &self.organization {
            dn.push(DnType::OrganizationName, org.as_str());
        }
        dn.push(DnType::CommonName, self.common_name.as_str());
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::now_utc());
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(i64::from(self.valid_days));
        params.serial_number = Some(random_serial()?);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.extended_key_usages = self.extended_key_usage.iter().map(|u| eku(*u)).collect();
        let der = match self.parent {
            None => {
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.self_signed(&signer)?.der().to_vec()
            }
            Some(parent) => {
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(self.path_len));
                params.use_authority_key_identifier_extension = true;
                if params.not_after > parent.info.not_after {
                    params.not_after = parent.info.not_after;
                }
                params.signed_by(&signer, &parent.issuer)?.der().to_vec()
            }
        };
        CertificateAuthority::from_parts(der, signer)
    }
}

/// 16 random bytes, positive, never starting with a zero byte (so the DER
/// integer is exactly 16 bytes).
pub(crate) fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| PkiError::Signing("random generator failed".into()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn signature_algorithm_name(key_type: KeyType) -> &'static str {
    match key_type {
        KeyType::P256 => "ecdsa-sha256",
        KeyType::P384 => "ecdsa-sha384",
        KeyType::Ed25519 => "ed25519",
        KeyType::Rsa2048 | KeyType::Rsa3072 => "rsa-sha256",
    }
}

fn key_usage(u: KeyUsage) -> KeyUsagePurpose {
    match u {
        KeyUsage::DigitalSignature => KeyUsagePurpose::DigitalSignature,
        KeyUsage::KeyEncipherment => KeyUsagePurpose::KeyEncipherment,
        KeyUsage::KeyAgreement => KeyUsagePurpose::KeyAgreement,
        KeyUsage::ContentCommitment => KeyUsagePurpose::ContentCommitment,
        KeyUsage::DataEncipherment => KeyUsagePurpose::DataEncipherment,
    }
}

fn eku(u: ExtendedKeyUsage) -> rcgen::ExtendedKeyUsagePurpose {
    use rcgen::ExtendedKeyUsagePurpose as E;
    match u {
        ExtendedKeyUsage::ClientAuth => E::ClientAuth,
        ExtendedKeyUsage::ServerAuth => E::ServerAuth,
        ExtendedKeyUsage::CodeSigning => E::CodeSigning,
        ExtendedKeyUsage::EmailProtection => E::EmailProtection,
        ExtendedKeyUsage::OcspSigning => E::OcspSigning,
    }
}
