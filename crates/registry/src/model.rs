//! The registry's domain model: CAs, things, certificates, batches and audit
//! records, as stored and as the API and `--json` listings show them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use idmint_types::{BatchId, CertificateId, Serial, ThingName};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::RegistryError;

/// A certificate's state, as AWS IoT names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    /// Usable.
    Active,
    /// Suspended; may be activated again.
    Inactive,
    /// Permanently withdrawn; listed on the CRL.
    Revoked,
    /// Issued, waiting to be registered to a thing (fleet provisioning).
    PendingActivation,
}

impl CertificateStatus {
    /// All states.
    pub const ALL: [CertificateStatus; 4] = [
        CertificateStatus::Active,
        CertificateStatus::Inactive,
        CertificateStatus::Revoked,
        CertificateStatus::PendingActivation,
    ];

    /// The stored and displayed name, e.g. `PENDING_ACTIVATION`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Active => "ACTIVE",
            CertificateStatus::Inactive => "INACTIVE",
            CertificateStatus::Revoked => "REVOKED",
            CertificateStatus::PendingActivation => "PENDING_ACTIVATION",
        }
    }
}

impl fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertificateStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.to_ascii_uppercase().replace('-', "_");
        CertificateStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == wanted)
            .ok_or_else(|| {
                format!("unknown certificate status {s:?} (expected ACTIVE, INACTIVE, REVOKED or PENDING_ACTIVATION)")
            })
    }
}

/// What role a CA plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaKind {
    /// Our self-signed root.
    Root,
    /// Our issuing CA for devices.
    Issuing,
    /// Our CA for claim certificates (fleet provisioning).
    Claim,
    /// A batch-scoped CA for an offline factory.
    Batch,
    /// An outside CA registered as a trust anchor (it signs nothing of ours).
    External,
    /// A TPM manufacturer's endorsement-key CA (`ca register --tpm-ek`): a
    /// trust anchor for EK certificates in TPM attestation only, never for
    /// client certificates.
    TpmEk,
}

impl CaKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaKind::Root => "root",
            CaKind::Issuing => "issuing",
            CaKind::Claim => "claim",
            CaKind::Batch => "batch",
            CaKind::External => "external",
            CaKind::TpmEk => "tpm-ek",
        }
    }

    /// Whether the CA is someone else's (a trust anchor that signs nothing
    /// of ours): an outside CA or a TPM manufacturer's EK CA.
    pub fn is_outside(self) -> bool {
        matches!(self, CaKind::External | CaKind::TpmEk)
    }
}

impl FromStr for CaKind {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "root" => CaKind::Root,
            "issuing" => CaKind::Issuing,
            "claim" => CaKind::Claim,
            "batch" => CaKind::Batch,
            "external" => CaKind::External,
            "tpm-ek" => CaKind::TpmEk,
            other => return Err(RegistryError::Corrupt(format!("unknown CA kind {other:?}"))),
        })
    }
}

/// A CA known to the registry.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ca {
    /// Its name, e.g. `root`, `issuing`, `vendor-x`.
    pub name: String,
    /// Its role.
    pub kind: CaKind,
    /// The CA that signed it, if it is one of ours.
    pub parent: Option<String>,
    /// Lowercase hex SHA-256 of the certificate DER.
    pub id: CertificateId,
    /// The certificate subject.
    pub subject: String,
    /// The key type, if known.
    pub key_type: Option<String>,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Whether devices with unknown certificates chained to it register
    /// themselves (JITP).
    pub auto_register: bool,
    /// The provisioning template for auto-registration.
    pub template: Option<String>,
    /// Whether certificates chaining to it (an outside CA) may bootstrap
    /// EST enrollment, once each.
    pub est_bootstrap: bool,
    /// The one batch bootstrap enrollments go into, if set.
    pub est_bootstrap_batch: Option<String>,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The certificate DER.
    #[serde(skip)]
    pub certificate_der: Vec<u8>,
    /// Where the key is: an encrypted PKCS#8 PEM, or a `pkcs11:` URI. `None`
    /// for outside CAs.
    #[serde(skip)]
    pub key_ref: Option<String>,
    /// For outside CAs: the vendor's manifest-signing certificate, DER.
    #[serde(skip)]
    pub signer_der: Option<Vec<u8>>,
    /// When it was revoked (`idmint ca revoke`), if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Why it was revoked.
    pub revocation_reason: Option<idmint_types::RevocationReason>,
}

/// A CA to add.
#[derive(Clone, Debug)]
pub struct NewCa {
    /// Its name.
    pub name: String,
    /// Its role.
    pub kind: CaKind,
    /// Its parent, if ours.
    pub parent: Option<String>,
    /// The certificate DER.
    pub certificate_der: Vec<u8>,
    /// SHA-256 of the DER, hex.
    pub id: CertificateId,
    /// Subject.
    pub subject: String,
    /// Key type, if known.
    pub key_type: Option<String>,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// Encrypted key PEM or `pkcs11:` URI.
    pub key_ref: Option<String>,
    /// Vendor manifest signer certificate, DER.
    pub signer_der: Option<Vec<u8>>,
}

/// A device (or any identity holder) in the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Thing {
    /// Unique name. Text as stored: new names follow [`ThingName`]'s rule
    /// ([`NewThing`] takes one), but a thing registered before the rule
    /// keeps its name and must still be listed, shown and revoked.
    pub name: String,
    /// Optional thing type.
    pub thing_type: Option<String>,
    /// Free attributes.
    pub attributes: BTreeMap<String, String>,
    /// Hardware or device id, unique when set.
    pub device_id: Option<String>,
    /// The batch it came from.
    pub batch: Option<BatchId>,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated: OffsetDateTime,
}

/// A thing to create or update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewThing {
    /// Unique name.
    pub name: ThingName,
    /// Optional type.
    pub thing_type: Option<String>,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
    /// Hardware or device id.
    pub device_id: Option<String>,
    /// Source batch.
    pub batch: Option<BatchId>,
}

impl NewThing {
    /// A thing with just a name.
    pub fn named(name: ThingName) -> Self {
        NewThing {
            name,
            thing_type: None,
            attributes: BTreeMap::new(),
            device_id: None,
            batch: None,
        }
    }
}

/// What a certificate's OCSP answer is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevocationState {
    /// Its state.
    pub status: CertificateStatus,
    /// When it last changed.
    pub updated: OffsetDateTime,
    /// When it was revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// Why it was revoked.
    pub revocation_reason: Option<idmint_types::RevocationReason>,
}

/// What decides whether a certificate is in force: its state and validity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertificateStanding {
    /// Its state.
    pub status: CertificateStatus,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl CertificateStanding {
    /// Whether the certificate is ACTIVE and within its validity at `at`.
    pub fn in_force_at(&self, at: OffsetDateTime) -> bool {
        self.status == CertificateStatus::Active && self.not_before <= at && at <= self.not_after
    }
}

/// A certificate in the registry.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// Lowercase hex SHA-256 of the DER.
    pub id: CertificateId,
    /// Serial number, hex.
    pub serial: Serial,
    /// The CA that issued it (or the outside CA it chains to).
    pub ca: String,
    /// The thing it is attached to (its name as stored; see [`Thing::name`]).
    pub thing: Option<String>,
    /// Its state.
    pub status: CertificateStatus,
    /// Subject.
    pub subject: String,
    /// Key type, if known.
    pub key_type: Option<String>,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of the SubjectPublicKeyInfo, hex.
    pub public_key_sha256: String,
    /// The batch it was issued under.
    pub batch: Option<BatchId>,
    /// Registered.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated: OffsetDateTime,
    /// When revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Why revoked (RFC 5280 name).
    pub revocation_reason: Option<idmint_types::RevocationReason>,
    /// The DER.
    #[serde(skip)]
    pub der: Vec<u8>,
}

impl Certificate {
    /// Its state and validity.
    pub fn standing(&self) -> CertificateStanding {
        CertificateStanding {
            status: self.status,
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

/// A certificate to register.
#[derive(Clone, Debug)]
pub struct NewCertificate {
    /// SHA-256 of the DER, hex.
    pub id: CertificateId,
    /// Serial, hex.
    pub serial: Serial,
    /// Issuing or trust-anchor CA name.
    pub ca: String,
    /// Attached thing: an existing thing's name as stored (see
    /// [`Thing::name`]), or a new thing's, which a [`NewThing`] checked.
    pub thing: Option<String>,
    /// Initial state.
    pub status: CertificateStatus,
    /// Subject.
    pub subject: String,
    /// Key type.
    pub key_type: Option<String>,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the SubjectPublicKeyInfo, hex.
    pub public_key_sha256: String,
    /// Batch.
    pub batch: Option<BatchId>,
    /// The DER.
    pub der: Vec<u8>,
}

/// What a batch is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchKind {
    /// Per-device firmware images minted by the maker (S1).
    Mint,
    /// Filled by provisioning stations online (S2, S4).
    Station,
    /// Authorised for an offline factory (S2, S4).
    Authorization,
    /// Imported from a vendor manifest (S3).
    Import,
}

impl BatchKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchKind::Mint => "mint",
            BatchKind::Station => "station",
            BatchKind::Authorization => "authorization",
            BatchKind::Import => "import",
        }
    }
}

impl FromStr for BatchKind {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "mint" => BatchKind::Mint,
            "station" => BatchKind::Station,
            "authorization" => BatchKind::Authorization,
            "import" => BatchKind::Import,
            other => {
                return Err(RegistryError::Corrupt(format!(
                    "unknown batch kind {other:?}"
                )))
            }
        })
    }
}

/// A batch: an order for a number of identities, with its quota.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    /// Its id.
    pub id: BatchId,
    /// What it is for.
    pub kind: BatchKind,
    /// The product.
    pub product: String,
    /// How many identities it may issue (the quota).
    pub count: i64,
    /// How many were issued.
    pub issued: i64,
    /// How many were issued but never reached a device.
    pub spoiled: i64,
    /// `count - issued`.
    pub remaining: i64,
    /// Certificate profile.
    pub profile: String,
    /// Issuing CA.
    pub ca: String,
    /// The factory it is for.
    pub factory: Option<String>,
    /// `OPEN`, `COMPLETE`, `CLOSED`.
    pub state: String,
    /// Whether stations may push keys to devices that cannot make their own.
    pub allow_inject: bool,
    /// Flow-specific parameters.
    pub params: serde_json::Value,
    /// What remote stations issuing in it get (set by `batch create`).
    #[serde(flatten)]
    pub policy: StationPolicy,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated: OffsetDateTime,
}

/// A batch's policy for the certificates its stations issue through the
/// REST API: the batch's, not the station's choice. A station's request may
/// ask for more ([`StationPolicy::at_least`]), never for less.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StationPolicy {
    /// Issue certificates `PENDING_ACTIVATION` (activated once the station
    /// confirms the device, else spoiled).
    pub pending_activation: bool,
    /// Refuse a thing (hardware id) that already holds a live certificate.
    /// (A public key that is already certified is refused always.)
    pub refuse_clones: bool,
}

impl Default for StationPolicy {
    /// Both on: what remote stations asked for before the policy was the
    /// batch's.
    fn default() -> Self {
        StationPolicy {
            pending_activation: true,
            refuse_clones: true,
        }
    }
}

impl StationPolicy {
    /// This policy, strengthened by what a request asks for (a request
    /// cannot turn either off).
    pub fn at_least(self, pending_activation: bool, refuse_clones: bool) -> StationPolicy {
        StationPolicy {
            pending_activation: self.pending_activation || pending_activation,
            refuse_clones: self.refuse_clones || refuse_clones,
        }
    }
}

/// A batch to create.
#[derive(Clone, Debug)]
pub struct NewBatch {
    /// Its id.
    pub id: BatchId,
    /// What it is for.
    pub kind: BatchKind,
    /// Product.
    pub product: String,
    /// Quota.
    pub count: i64,
    /// Profile.
    pub profile: String,
    /// Issuing CA.
    pub ca: String,
    /// Factory.
    pub factory: Option<String>,
    /// Whether key injection is allowed.
    pub allow_inject: bool,
    /// Flow-specific parameters.
    pub params: serde_json::Value,
}

/// One record of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When, Unix seconds.
    pub time: i64,
    /// Who: `cli:user`, `token:NAME`, `device:ID`, ...
    pub actor: String,
    /// What, e.g. `certificate.issue`.
    pub action: String,
    /// On what: a certificate id, thing name, CA name, batch id.
    pub subject: String,
    /// Details (JSON text exactly as hashed).
    pub details: String,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// Hash of this record.
    pub hash: String,
}

/// Checks a thing name against the one thing-name rule
/// ([`idmint_types::ThingName`]: 1 to 128 of `[a-zA-Z0-9:_-]`).
pub fn validate_thing_name(name: &str) -> Result<(), RegistryError> {
    idmint_types::ThingName::parse(name)
        .map(|_| ())
        .map_err(RegistryError::from)
}

impl From<idmint_types::InvalidThingName> for RegistryError {
    fn from(e: idmint_types::InvalidThingName) -> Self {
        RegistryError::InvalidName {
            kind: "thing name",
            name: e.name,
            reason: e.reason,
        }
    }
}

/// Checks a name for a batch, CA, template, token, product or hardware id:
/// 1 to 128 characters, no control characters, no surrounding whitespace.
/// (Thing names follow the stricter [`validate_thing_name`].)
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), RegistryError> {
    match idmint_types::name_fault(name) {
        Some(reason) => Err(RegistryError::InvalidName {
            kind,
            name: name.escape_default().to_string(),
            reason,
        }),
        None => Ok(()),
    }
}
