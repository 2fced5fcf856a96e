//! The audit log's vocabulary: one [`AuditEvent`] variant per action the
//! registry records, carrying the typed fields of its details.
//!
//! Every record of the hash chain is written from an `AuditEvent`
//! ([`crate::WriteTx::audit`]): [`AuditEvent::action`] is the stored action
//! (e.g. `batch.create`) and [`AuditEvent::details`] the stored details, a
//! JSON object whose keys are the fields' names in camelCase. The stored
//! text is that object's `to_string()`, keys sorted (serde_json without
//! `preserve_order`), exactly as the chain has always hashed it: a record
//! is byte-for-byte the one written before these types existed, and old
//! chains still verify. The tests pin every variant to the JSON it stands
//! for.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    BatchId, BatchKind, CaKind, CertificateId, CertificateStatus, RevocationReason, Role, Serial,
    TemplateKind, ThingName,
};

/// Whether a flag is off (an absent key in the details).
fn is_false(flag: &bool) -> bool {
    !*flag
}

/// One change to the registry, as its audit record names it: the action
/// ([`AuditEvent::action`]) and its details ([`AuditEvent::details`]).
///
/// It serializes as its details (the object of its fields, untagged); the
/// action is not part of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum AuditEvent {
    /// `ca.create`: one of our CAs (root, issuing, claim, batch) was added.
    /// Subject: the CA name.
    CaCreate(CaAdded),
    /// `ca.register`: an outside CA was registered as a trust anchor.
    /// Subject: the CA name.
    CaRegister(CaAdded),
    /// `ca.update`: a CA's settings changed. Subject: the CA name.
    CaUpdate(CaSettings),
    /// `ca.revoke`: one of our CAs was revoked. Subject: the CA name.
    CaRevoke {
        /// Why.
        reason: RevocationReason,
    },
    /// `crl.issue`: a CA's CRL number was taken for a new CRL. Subject: the
    /// CA name.
    CrlIssue {
        /// The CRL number.
        crl_number: i64,
    },
    /// `crl.signer_issued`: a CA issued a CRL signer certificate. Subject:
    /// the certificate id.
    CrlSignerIssued(ServiceCertificate),
    /// `ocsp.responder_issued`: a CA issued a delegated OCSP responder
    /// certificate. Subject: the certificate id.
    OcspResponderIssued(ServiceCertificate),
    /// `intermediate.register`: an intermediate certificate (of an imported
    /// certificate's chain) was stored. Subject: its id.
    IntermediateRegister {
        /// Its subject.
        subject: String,
    },
    /// `server.certificate`: the server's own TLS certificate was issued.
    /// Subject: the certificate id.
    ServerCertificate {
        /// The DNS names and IP addresses it is for.
        hosts: Vec<String>,
    },
    /// `thing.create`: a thing was created (bulk issuance). Subject: the
    /// thing name.
    ThingCreate {},
    /// `thing.upsert`: a thing was created or updated. Subject: the thing
    /// name.
    ThingUpsert {
        /// Its thing type.
        thing_type: Option<String>,
        /// Its attributes.
        attributes: BTreeMap<String, String>,
        /// Its device id.
        device_id: Option<String>,
        /// Its batch.
        batch: Option<BatchId>,
    },
    /// `thing.groups`: a thing's groups were set. Subject: the thing name.
    ThingGroups {
        /// The groups given.
        groups: Vec<String>,
        /// Whether they were added to the thing's groups (else they replaced
        /// them).
        merge: bool,
    },
    /// `thing.certificate_attached`: a provisioned certificate was attached
    /// to a thing that already existed (what a holder of a leaked claim
    /// would do to take over a thing). Subject: the thing name.
    ThingCertificateAttached {
        /// The thing.
        thing: String,
        /// The certificate id.
        certificate: String,
        /// The provisioning template.
        template: String,
        /// Whether the thing existed: always `true` (only then is this
        /// recorded).
        existing: bool,
        /// Which claim or CA asked (its keys appear among these fields).
        #[serde(flatten)]
        via: ProvisionedVia,
    },
    /// `certificate.register`: a certificate was registered. Subject: the
    /// certificate id.
    CertificateRegister {
        /// Its serial, hex.
        serial: Serial,
        /// Its CA.
        ca: String,
        /// Its thing.
        thing: Option<String>,
        /// Its initial state.
        status: CertificateStatus,
        /// Its batch.
        batch: Option<BatchId>,
        /// Its subject.
        subject: String,
    },
    /// `certificate.issue`: a device's thing and certificate, issued by us,
    /// were registered together. Subject: the certificate id.
    CertificateIssue(RegisteredDevice),
    /// `certificate.import`: a device's thing and certificate, from a
    /// vendor manifest, were registered together. Subject: the certificate
    /// id.
    CertificateImport(RegisteredDevice),
    /// `certificate.superseded`: a certificate's key was certified again for
    /// the same thing. Subject: the older certificate's id.
    CertificateSuperseded {
        /// The newer certificate's id.
        by: String,
        /// Why it is superseded.
        reason: String,
    },
    /// `certificate.status`: a certificate's state changed. Subject: the
    /// certificate id.
    CertificateStatus {
        /// The state before.
        from: CertificateStatus,
        /// The state after.
        to: CertificateStatus,
        /// Why it was revoked (`null` unless `to` is `REVOKED`).
        reason: Option<RevocationReason>,
    },
    /// `certificate.attach`: a certificate was attached to a thing.
    /// Subject: the certificate id.
    CertificateAttach {
        /// The thing name.
        thing: String,
    },
    /// `certificate.delete`: a certificate that never became usable was
    /// removed. Subject: the certificate id.
    CertificateDelete {
        /// Why.
        reason: String,
    },
    /// `certificate.rotate`: a certificate's retirement in favour of a
    /// replacement was scheduled. Subject: the old certificate's id.
    CertificateRotate {
        /// The replacement's certificate id.
        replacement: String,
        /// When the old certificate is retired, Unix seconds.
        retire_at: i64,
    },
    /// `batch.create`: a batch was created. Subject: the batch id.
    BatchCreate {
        /// What it is for.
        kind: BatchKind,
        /// The product.
        product: String,
        /// Its quota.
        count: i64,
        /// The certificate profile.
        profile: String,
        /// The issuing CA.
        ca: String,
        /// The factory it is for.
        factory: Option<String>,
        /// Whether key injection is allowed.
        allow_inject: bool,
    },
    /// `batch.policy`: a batch's station policy was set. Subject: the batch
    /// id.
    BatchPolicy {
        /// Whether its stations issue certificates `PENDING_ACTIVATION`.
        pending_activation: bool,
        /// Whether a thing that already holds a live certificate is
        /// refused.
        refuse_clones: bool,
    },
    /// `batch.quota`: a batch's quota was raised. Subject: the batch id.
    BatchQuota {
        /// By how much.
        raised_by: i64,
        /// Why.
        reason: String,
    },
    /// `batch.spoiled`: identities of a batch were counted spoiled.
    /// Subject: the batch id.
    BatchSpoiled {
        /// How many.
        count: i64,
        /// Why.
        reason: String,
    },
    /// `batch.state`: a batch's state was set. Subject: the batch id.
    BatchState {
        /// The new state (`OPEN`, `COMPLETE`, `CLOSED`, ...).
        state: String,
    },
    /// `serial.reserve`: device numbers were taken for a serial prefix.
    /// Subject: the prefix.
    SerialReserve {
        /// The first number taken.
        first: i64,
        /// How many.
        count: i64,
    },
    /// `mint.device`: a minted device's thing, certificate and image were
    /// registered. Subject: the device id.
    MintDevice {
        /// The batch.
        batch: String,
        /// The thing name.
        thing: String,
        /// The certificate id.
        certificate: String,
        /// The certificate serial, hex.
        serial: Serial,
        /// The issuing CA.
        ca: String,
        /// The certificate's state.
        status: CertificateStatus,
        /// The certificate subject.
        subject: String,
        /// The image file, relative to the batch's output directory.
        image: String,
        /// SHA-256 of the image, hex.
        sha256: String,
    },
    /// `mint.spoiled`: a device image was marked spoiled. Subject: the
    /// device id.
    MintSpoiled {
        /// Why.
        reason: String,
    },
    /// `mint.discard`: certificates whose images were written but never
    /// registered were deleted with their keys on resume. Subject: the batch
    /// id.
    MintDiscard {
        /// Why.
        reason: String,
        /// The discarded certificates' ids.
        certificates: Vec<String>,
    },
    /// `mint.complete`: a mint batch's manifest was written and the batch
    /// completed. Subject: the batch id.
    MintComplete {
        /// How many devices the manifest lists.
        devices: u64,
    },
    /// `manifest.import`: a vendor manifest was imported. Subject: the
    /// import batch, or the CA when nothing was registered.
    ManifestImport {
        /// The manifest file.
        source: String,
        /// The format read.
        format: String,
        /// The outside CA it was checked against.
        ca: String,
        /// Entries read.
        entries: u64,
        /// Newly registered.
        registered: u64,
        /// Already registered identically.
        already_registered: u64,
        /// Rejected.
        rejected: u64,
    },
    /// `station.provisioned`: a station's device installed its certificate,
    /// which is now ACTIVE. Subject: the thing name (a remote station's
    /// report: the certificate id when it has no thing).
    ///
    /// A local station records `injected` and `address`; a remote station's
    /// report records `remote: true` instead.
    StationProvisioned {
        /// The batch.
        batch: String,
        /// The device's hardware id.
        hw_id: Option<String>,
        /// The certificate id.
        certificate: String,
        /// Whether the key was made at the station and injected (a local
        /// station; absent when `None`).
        #[serde(skip_serializing_if = "Option::is_none")]
        injected: Option<bool>,
        /// Whether the device locked its credential storage.
        locked: bool,
        /// The device's address (a local station; absent when `None`).
        #[serde(skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        /// Whether a remote station reported it (absent when `false`).
        #[serde(skip_serializing_if = "is_false")]
        remote: bool,
    },
    /// `station.refused`: a station refused a device (not this batch's, or
    /// a clone). Subject: the thing name.
    StationRefused {
        /// The batch.
        batch: String,
        /// The device's hardware id.
        hw_id: String,
        /// Why.
        reason: String,
    },
    /// `station.spoiled`: a station certificate never became usable and was
    /// revoked. Subject: the certificate id.
    StationSpoiled(StationSpoiled),
    /// `offline.authorize`: an offline batch authorization was registered.
    /// Subject: the batch id.
    OfflineAuthorize {
        /// The authorization id.
        authorization: String,
        /// The batch CA.
        batch_ca: String,
        /// The first serial number authorized.
        serial_first: i64,
        /// The last serial number authorized.
        serial_last: i64,
        /// Start of the authorization's validity, Unix seconds.
        not_before: i64,
        /// End of the authorization's validity, Unix seconds.
        not_after: i64,
        /// Where the batch CA key is (its kind).
        key: String,
    },
    /// `offline.revocation_signers`: what a batch CA signed for the maker
    /// (delegated OCSP responder, CRL signer) was registered. Subject: the
    /// batch CA name.
    OfflineRevocationSigners {
        /// The OCSP responder certificate's id.
        ocsp_responder: String,
        /// The CRL signer certificate's id.
        crl_signer: String,
        /// Where the CRL covering the CRL signer is published.
        signer_status_url: String,
    },
    /// `offline.log`: an offline station's issuance log records were
    /// reconciled. Subject: the batch id.
    OfflineLog {
        /// The first record's seq.
        first: i64,
        /// The last record's seq.
        last: i64,
        /// The last record's hash.
        head: String,
        /// How many records.
        records: u64,
        /// How many of them carry a finding.
        findings: u64,
    },
    /// `offline.issued`: an offline station's issuance was reconciled.
    /// Subject: the certificate id.
    OfflineIssued {
        /// The batch.
        batch: String,
        /// The log record's seq.
        seq: u64,
        /// The device serial number.
        serial: u64,
        /// The device's hardware id.
        hw_id: String,
        /// The thing registered (`null` when the record has a finding).
        thing: Option<String>,
        /// When, Unix seconds (the station's clock).
        time: i64,
        /// What is wrong with the record, if anything.
        finding: Option<String>,
    },
    /// `offline.provisioned`: an offline station's device installation was
    /// reconciled. Subject: the certificate id.
    OfflineProvisioned {
        /// The batch.
        batch: String,
        /// The log record's seq.
        seq: u64,
        /// The device serial number.
        serial: u64,
        /// Whether the device locked its credential storage.
        locked: bool,
        /// When, Unix seconds (the station's clock).
        time: i64,
    },
    /// `offline.spoiled`: an offline station's spoiled certificate was
    /// reconciled. Subject: the certificate id.
    OfflineSpoiled {
        /// The batch.
        batch: String,
        /// The log record's seq.
        seq: u64,
        /// The device serial number.
        serial: u64,
        /// The step that failed.
        stage: String,
        /// Why.
        reason: String,
        /// When, Unix seconds (the station's clock).
        time: i64,
    },
    /// `template.create`: a provisioning template was created. Subject: the
    /// template name.
    TemplateCreate {
        /// How it is used.
        kind: TemplateKind,
        /// Its pre-provisioning hook.
        hook: Option<String>,
        /// Whether it is enabled.
        enabled: bool,
        /// Its body.
        body: String,
    },
    /// `template.update`: a provisioning template was replaced. Subject: the
    /// template name.
    TemplateUpdate {
        /// How it is used.
        kind: TemplateKind,
        /// Its pre-provisioning hook.
        hook: Option<String>,
        /// Whether it is enabled.
        enabled: bool,
        /// Its body.
        body: String,
    },
    /// `template.delete`: a provisioning template was deleted. Subject: the
    /// template name.
    TemplateDelete {},
    /// `template.allow_list`: serial numbers were added to a template's
    /// allow list. Subject: the template name.
    TemplateAllowList {
        /// How many were new.
        added: u64,
        /// How many were given.
        given: u64,
    },
    /// `claim.create`: a certificate was made a claim certificate. Subject:
    /// the certificate id.
    ClaimCreate {
        /// The templates it may use.
        templates: Vec<String>,
        /// How many provisioning requests per minute it may make.
        rate_per_minute: i64,
    },
    /// `fleet.register`: a device registered by claim (RegisterThing).
    /// Subject: the certificate id.
    FleetRegister {
        /// The template.
        template: String,
        /// The thing name.
        thing: String,
        /// Whether the thing existed.
        existing_thing: bool,
        /// The claim certificate's id.
        claim: String,
        /// The MQTT client id.
        client_id: String,
    },
    /// `fleet.token_expired`: an ownership token expired unused. Subject:
    /// its certificate id.
    FleetTokenExpired {
        /// The claim certificate's id.
        claim: String,
        /// When the token expired, Unix seconds.
        expired: i64,
        /// Whether its certificate was revoked (it was still pending).
        revoked: bool,
        /// The revocation reason used.
        reason: RevocationReason,
    },
    /// `jitp.register`: a certificate chaining to an auto-registering CA
    /// registered itself (JITP). Subject: the certificate id.
    JitpRegister {
        /// The CA.
        ca: String,
        /// The template.
        template: String,
        /// The thing name.
        thing: String,
        /// Whether the thing existed.
        existing_thing: bool,
    },
    /// `grant.add`: a role was granted. Subject: the principal.
    GrantAdd {
        /// The role.
        role: Role,
        /// Its scope.
        scope: String,
    },
    /// `grant.remove`: a grant was removed. Subject: the principal.
    GrantRemove {
        /// The role.
        role: Role,
        /// Its scope.
        scope: String,
    },
    /// `grant.migrate`: a thing's old `role` attribute became a grant.
    /// Subject: the principal (`cert:<id>`).
    GrantMigrate {
        /// The role.
        role: Role,
        /// Its scope (`*`).
        scope: String,
        /// The thing whose attribute it was.
        from_thing_attribute: String,
    },
    /// `policy.create`: a policy was created. Subject: the policy name.
    PolicyCreate {
        /// The policy document.
        document: String,
    },
    /// `policy.delete`: a policy was deleted. Subject: the policy name.
    PolicyDelete {},
    /// `policy.attach`: a policy was attached to a certificate. Subject: the
    /// certificate id.
    PolicyAttach {
        /// The policy name.
        policy: String,
    },
    /// `policy.detach`: a policy was detached from a certificate. Subject:
    /// the certificate id.
    PolicyDetach {
        /// The policy name.
        policy: String,
    },
    /// `token.create`: an API token was created. Subject: the token name.
    TokenCreate {
        /// Its role.
        role: Role,
        /// The batch it is limited to.
        batch: Option<String>,
    },
    /// `token.revoke`: an API token was revoked. Subject: the token name.
    TokenRevoke {},
    /// `tpm.challenge`: a TPM's EK certificate and AK were accepted and a
    /// credential wrapped to its EK. Subject: the session id.
    TpmChallenge {
        /// The batch the identity will count against.
        batch: String,
        /// SHA-256 (hex) of the EK's public key.
        ek_sha256: String,
    },
    /// `tpm.identity`: a TPM-resident key was certified after activation
    /// and `TPM2_Certify`. Subject: the certificate id.
    TpmIdentity {
        /// The batch.
        batch: String,
        /// SHA-256 (hex) of the EK's public key.
        ek_sha256: String,
        /// The session.
        session: String,
    },
}

/// The details of `ca.create` and `ca.register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaAdded {
    /// Its role.
    pub kind: CaKind,
    /// Its certificate subject.
    pub subject: String,
    /// Its certificate id.
    pub certificate_id: CertificateId,
    /// The CA that signed it, if it is one of ours.
    pub parent: Option<String>,
}

/// The details of `ca.update`: the one group of settings changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum CaSettings {
    /// Auto-registration (JITP).
    AutoRegister {
        /// Whether unknown certificates chained to it register themselves.
        auto_register: bool,
        /// The provisioning template for auto-registration.
        template: Option<String>,
    },
    /// EST bootstrap by its certificates (an outside CA).
    EstBootstrap {
        /// Whether its certificates may bootstrap EST enrollment.
        est_bootstrap: bool,
        /// The one batch bootstrap enrollments go into.
        est_bootstrap_batch: Option<String>,
    },
}

/// The details of `ocsp.responder_issued` and `crl.signer_issued`: a
/// certificate a CA issued to one of idmint's own services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceCertificate {
    /// The issuing CA.
    pub ca: String,
    /// Its serial, hex.
    pub serial: Serial,
    /// End of its validity, Unix seconds.
    pub not_after: i64,
    /// Whether an offline batch CA signed it at `batch authorize` (absent
    /// when `false`).
    #[serde(skip_serializing_if = "is_false")]
    pub offline: bool,
}

/// The details of `certificate.issue` and `certificate.import`: a device's
/// thing and certificate, registered together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredDevice {
    /// The thing name.
    pub thing: ThingName,
    /// Whether the thing was created (else it existed).
    pub new_thing: bool,
    /// The thing's device id.
    pub device_id: Option<String>,
    /// The certificate serial, hex.
    pub serial: Serial,
    /// The certificate's CA.
    pub ca: String,
    /// The certificate's initial state.
    pub status: CertificateStatus,
    /// The batch.
    pub batch: Option<BatchId>,
    /// The certificate subject.
    pub subject: String,
}

/// The details of `station.spoiled`.
///
/// A station of this process, and the server's sweep of certificates never
/// confirmed, record the failed `stage`; a remote station's report records
/// `remote: true` instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StationSpoiled {
    /// The batch.
    pub batch: String,
    /// The step that failed (absent when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Why.
    pub reason: String,
    /// Whether a remote station reported it (absent when `false`).
    #[serde(skip_serializing_if = "is_false")]
    pub remote: bool,
}

/// Who asked for a provisioning (`thing.certificate_attached`), recorded as
/// `via` and its own fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "via", rename_all = "lowercase", rename_all_fields = "camelCase")]
pub enum ProvisionedVia {
    /// Fleet provisioning by claim (RegisterThing).
    Fleet {
        /// The claim certificate's id.
        claim: String,
        /// The MQTT client id.
        client_id: String,
    },
    /// Just-in-time provisioning.
    Jitp {
        /// The auto-registering CA.
        ca: String,
    },
}

impl AuditEvent {
    /// The stored action, e.g. `batch.create`.
    pub fn action(&self) -> &'static str {
        match self {
            AuditEvent::CaCreate(_) => "ca.create",
            AuditEvent::CaRegister(_) => "ca.register",
            AuditEvent::CaUpdate(_) => "ca.update",
            AuditEvent::CaRevoke { .. } => "ca.revoke",
            AuditEvent::CrlIssue { .. } => "crl.issue",
            AuditEvent::CrlSignerIssued(_) => "crl.signer_issued",
            AuditEvent::OcspResponderIssued(_) => "ocsp.responder_issued",
            AuditEvent::IntermediateRegister { .. } => "intermediate.register",
            AuditEvent::ServerCertificate { .. } => "server.certificate",
            AuditEvent::ThingCreate {} => "thing.create",
            AuditEvent::ThingUpsert { .. } => "thing.upsert",
            AuditEvent::ThingGroups { .. } => "thing.groups",
            AuditEvent::ThingCertificateAttached { .. } => "thing.certificate_attached",
            AuditEvent::CertificateRegister { .. } => "certificate.register",
            AuditEvent::CertificateIssue(_) => "certificate.issue",
            AuditEvent::CertificateImport(_) => "certificate.import",
            AuditEvent::CertificateSuperseded { .. } => "certificate.superseded",
            AuditEvent::CertificateStatus { .. } => "certificate.status",
            AuditEvent::CertificateAttach { .. } => "certificate.attach",
            AuditEvent::CertificateDelete { .. } => "certificate.delete",
            AuditEvent::CertificateRotate { .. } => "certificate.rotate",
            AuditEvent::BatchCreate { .. } => "batch.create",
            AuditEvent::BatchPolicy { .. } => "batch.policy",
            AuditEvent::BatchQuota { .. } => "batch.quota",
            AuditEvent::BatchSpoiled { .. } => "batch.spoiled",
            AuditEvent::BatchState { .. } => "batch.state",
            AuditEvent::SerialReserve { .. } => "serial.reserve",
            AuditEvent::MintDevice { .. } => "mint.device",
            AuditEvent::MintSpoiled { .. } => "mint.spoiled",
            AuditEvent::MintDiscard { .. } => "mint.discard",
            AuditEvent::MintComplete { .. } => "mint.complete",
            AuditEvent::ManifestImport { .. } => "manifest.import",
            AuditEvent::StationProvisioned { .. } => "station.provisioned",
            AuditEvent::StationRefused { .. } => "station.refused",
            AuditEvent::StationSpoiled(_) => "station.spoiled",
            AuditEvent::OfflineAuthorize { .. } => "offline.authorize",
            AuditEvent::OfflineRevocationSigners { .. } => "offline.revocation_signers",
            AuditEvent::OfflineLog { .. } => "offline.log",
            AuditEvent::OfflineIssued { .. } => "offline.issued",
            AuditEvent::OfflineProvisioned { .. } => "offline.provisioned",
            AuditEvent::OfflineSpoiled { .. } => "offline.spoiled",
            AuditEvent::TemplateCreate { .. } => "template.create",
            AuditEvent::TemplateUpdate { .. } => "template.update",
            AuditEvent::TemplateDelete {} => "template.delete",
            AuditEvent::TemplateAllowList { .. } => "template.allow_list",
            AuditEvent::ClaimCreate { .. } => "claim.create",
            AuditEvent::FleetRegister { .. } => "fleet.register",
            AuditEvent::FleetTokenExpired { .. } => "fleet.token_expired",
            AuditEvent::JitpRegister { .. } => "jitp.register",
            AuditEvent::GrantAdd { .. } => "grant.add",
            AuditEvent::GrantRemove { .. } => "grant.remove",
            AuditEvent::GrantMigrate { .. } => "grant.migrate",
            AuditEvent::PolicyCreate { .. } => "policy.create",
            AuditEvent::PolicyDelete {} => "policy.delete",
            AuditEvent::PolicyAttach { .. } => "policy.attach",
            AuditEvent::PolicyDetach { .. } => "policy.detach",
            AuditEvent::TokenCreate { .. } => "token.create",
            AuditEvent::TokenRevoke {} => "token.revoke",
            AuditEvent::TpmChallenge { .. } => "tpm.challenge",
            AuditEvent::TpmIdentity { .. } => "tpm.identity",
        }
    }

    /// The stored details: a JSON object of the fields, keys in camelCase
    /// (the record stores its `to_string()`, keys sorted).
    pub fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|e| {
            // Unreachable: every field is a string, number, bool, null, list
            // or string-keyed object (the tests serialize every variant).
            serde_json::json!({ "unserializable": e.to_string() })
        })
    }
}

#[cfg(test)]
mod tests {
    //! Each variant against the `json!` literal its call site wrote before
    //! [`AuditEvent`] existed (copied from there; `self.` and other
    //! crates' types replaced by local values of the same shape): same
    //! action, same details text.

    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::{
        Claim, FindingKind, NewBatch, NewCa, NewCertificate, NewOfflineAuthorization, NewTemplate,
        NewThing, ReconciledRecord, RecordFinding, RevocationSigners, StationPolicy,
    };

    /// Checks one event against the old action and details, and notes the
    /// action as covered.
    fn same(
        covered: &mut BTreeSet<&'static str>,
        event: AuditEvent,
        action: &str,
        old: serde_json::Value,
    ) {
        assert_eq!(event.action(), action);
        assert_eq!(event.details().to_string(), old.to_string(), "{action}");
        assert_eq!(event.details(), old, "{action}");
        covered.insert(event.action());
    }

    /// A certificate id standing for `tag`: its bytes in hex, right-padded
    /// with `0` to 64 digits (tags keep their order).
    fn cid(tag: &str) -> crate::CertificateId {
        let hex: String = tag.bytes().map(|b| format!("{b:02x}")).collect();
        crate::CertificateId::parse(&format!("{hex:0<64}")).unwrap()
    }

    fn new_ca(kind: CaKind, parent: Option<&str>) -> NewCa {
        NewCa {
            name: "issuing".into(),
            kind,
            parent: parent.map(str::to_string),
            certificate_der: vec![1, 2, 3],
            id: CertificateId::from_sha256(&[0xab; 32]),
            subject: "CN=Issuing \"CA\", O=Acme".into(),
            key_type: Some("ec-p256".into()),
            not_before: 1_700_000_000,
            not_after: 1_900_000_000,
            key_ref: None,
            signer_der: None,
        }
    }

    fn new_thing(device_id: Option<&str>) -> NewThing {
        NewThing {
            name: ThingName::parse("sensor-1").unwrap(),
            thing_type: device_id.map(|_| "widget".to_string()),
            attributes: [("b".to_string(), "2".to_string()), ("a".into(), "1".into())]
                .into_iter()
                .collect(),
            device_id: device_id.map(str::to_string),
            batch: device_id.map(|_| BatchId::parse("b-1").unwrap()),
        }
    }

    fn new_certificate(thing: Option<&str>, batch: Option<&str>) -> NewCertificate {
        NewCertificate {
            id: CertificateId::from_sha256(&[0xc0; 32]),
            serial: Serial::parse("7f01").unwrap(),
            ca: "issuing".into(),
            thing: thing.map(str::to_string),
            status: CertificateStatus::PendingActivation,
            subject: "CN=sensor-1".into(),
            key_type: None,
            not_before: 1,
            not_after: 2,
            public_key_sha256: "beef".into(),
            batch: batch.map(|b| BatchId::parse(b).unwrap()),
            der: Vec::new(),
        }
    }

    fn registered_device(t: &NewThing, c: &NewCertificate, new_thing: bool) -> RegisteredDevice {
        RegisteredDevice {
            thing: t.name.clone(),
            new_thing,
            device_id: t.device_id.clone(),
            serial: c.serial.clone(),
            ca: c.ca.clone(),
            status: c.status,
            batch: c.batch.clone(),
            subject: c.subject.clone(),
        }
    }

    #[test]
    fn every_event_writes_the_details_its_call_site_wrote() {
        let covered = &mut BTreeSet::new();

        // registry/src/write.rs
        let reason = RevocationReason::KeyCompromise;
        same(
            covered,
            AuditEvent::CaRevoke { reason },
            "ca.revoke",
            json!({"reason": reason}),
        );
        for (ca, action) in [
            (new_ca(CaKind::Issuing, Some("root")), "ca.create"),
            (new_ca(CaKind::Root, None), "ca.create"),
            (new_ca(CaKind::External, None), "ca.register"),
        ] {
            let added = CaAdded {
                kind: ca.kind,
                subject: ca.subject.clone(),
                certificate_id: ca.id.clone(),
                parent: ca.parent.clone(),
            };
            let event = if ca.kind == CaKind::External {
                AuditEvent::CaRegister(added)
            } else {
                AuditEvent::CaCreate(added)
            };
            same(
                covered,
                event,
                action,
                json!({"kind": ca.kind.as_str(), "subject": ca.subject, "certificateId": ca.id, "parent": ca.parent}),
            );
        }
        for (auto_register, template) in [(true, Some("jitp-1")), (false, None)] {
            same(
                covered,
                AuditEvent::CaUpdate(CaSettings::AutoRegister {
                    auto_register,
                    template: template.map(str::to_string),
                }),
                "ca.update",
                json!({"autoRegister": auto_register, "template": template}),
            );
        }
        let n: i64 = 42;
        same(
            covered,
            AuditEvent::CrlIssue { crl_number: n },
            "crl.issue",
            json!({"crlNumber": n}),
        );
        for thing in [new_thing(Some("hw-1")), new_thing(None)] {
            same(
                covered,
                AuditEvent::ThingUpsert {
                    thing_type: thing.thing_type.clone(),
                    attributes: thing.attributes.clone(),
                    device_id: thing.device_id.clone(),
                    batch: thing.batch.clone(),
                },
                "thing.upsert",
                json!({"thingType": thing.thing_type, "attributes": thing.attributes, "deviceId": thing.device_id, "batch": thing.batch}),
            );
        }
        same(
            covered,
            AuditEvent::ThingCreate {},
            "thing.create",
            json!({}),
        );
        for c in [
            new_certificate(Some("sensor-1"), Some("b-1")),
            new_certificate(None, None),
        ] {
            same(
                covered,
                AuditEvent::CertificateRegister {
                    serial: c.serial.clone(),
                    ca: c.ca.clone(),
                    thing: c.thing.clone(),
                    status: c.status,
                    batch: c.batch.clone(),
                    subject: c.subject.clone(),
                },
                "certificate.register",
                json!({"serial": c.serial, "ca": c.ca, "thing": c.thing, "status": c.status, "batch": c.batch, "subject": c.subject}),
            );
        }
        let new = "c0ffee".to_string();
        same(
            covered,
            AuditEvent::CertificateSuperseded {
                by: new.clone(),
                reason: "the same key certified again for the same thing".into(),
            },
            "certificate.superseded",
            json!({"by": new, "reason": "the same key certified again for the same thing"}),
        );
        for (t, c, created) in [
            (
                new_thing(Some("hw-1")),
                new_certificate(Some("sensor-1"), Some("b-1")),
                true,
            ),
            (new_thing(None), new_certificate(None, None), false),
        ] {
            for (event, action) in [
                (
                    AuditEvent::CertificateIssue(registered_device(&t, &c, created)),
                    "certificate.issue",
                ),
                (
                    AuditEvent::CertificateImport(registered_device(&t, &c, created)),
                    "certificate.import",
                ),
            ] {
                same(
                    covered,
                    event,
                    action,
                    json!({"thing": t.name, "newThing": created,
                        "deviceId": t.device_id, "serial": c.serial, "ca": c.ca, "status": c.status,
                        "batch": c.batch, "subject": c.subject}),
                );
            }
        }
        for (current, status, reason) in [
            (
                CertificateStatus::Active,
                CertificateStatus::Revoked,
                Some(RevocationReason::CessationOfOperation),
            ),
            (
                CertificateStatus::PendingActivation,
                CertificateStatus::Active,
                None,
            ),
        ] {
            same(
                covered,
                AuditEvent::CertificateStatus {
                    from: current,
                    to: status,
                    reason,
                },
                "certificate.status",
                json!({"from": current, "to": status, "reason": reason}),
            );
        }
        let thing = "sensor-1";
        same(
            covered,
            AuditEvent::CertificateAttach {
                thing: thing.into(),
            },
            "certificate.attach",
            json!({"thing": thing}),
        );
        let why = "token expired unused";
        same(
            covered,
            AuditEvent::CertificateDelete { reason: why.into() },
            "certificate.delete",
            json!({"reason": why}),
        );
        for factory in [Some("fab-7"), None] {
            let batch = NewBatch {
                id: crate::BatchId::parse("b-1").unwrap(),
                kind: BatchKind::Station,
                product: "widget".into(),
                count: 1000,
                profile: "device".into(),
                ca: "issuing".into(),
                factory: factory.map(str::to_string),
                allow_inject: factory.is_some(),
                params: json!({"ignored": true}),
            };
            same(
                covered,
                AuditEvent::BatchCreate {
                    kind: batch.kind,
                    product: batch.product.clone(),
                    count: batch.count,
                    profile: batch.profile.clone(),
                    ca: batch.ca.clone(),
                    factory: batch.factory.clone(),
                    allow_inject: batch.allow_inject,
                },
                "batch.create",
                json!({"kind": batch.kind, "product": batch.product, "count": batch.count, "profile": batch.profile, "ca": batch.ca, "factory": batch.factory, "allowInject": batch.allow_inject}),
            );
        }
        let policy = StationPolicy {
            pending_activation: true,
            refuse_clones: false,
        };
        same(
            covered,
            AuditEvent::BatchPolicy {
                pending_activation: policy.pending_activation,
                refuse_clones: policy.refuse_clones,
            },
            "batch.policy",
            json!({"pendingActivation": policy.pending_activation, "refuseClones": policy.refuse_clones}),
        );
        let n: i64 = 3;
        let why = "replacements for images lost before the batch completed";
        same(
            covered,
            AuditEvent::BatchQuota {
                raised_by: n,
                reason: why.into(),
            },
            "batch.quota",
            json!({"raisedBy": n, "reason": why}),
        );
        same(
            covered,
            AuditEvent::BatchSpoiled {
                count: n,
                reason: why.into(),
            },
            "batch.spoiled",
            json!({"count": n, "reason": why}),
        );
        let state = "COMPLETE";
        same(
            covered,
            AuditEvent::BatchState {
                state: state.into(),
            },
            "batch.state",
            json!({"state": state}),
        );

        // registry/src/grants.rs
        let role = Role::Operator;
        let scope_text = "batch:b-1".to_string();
        same(
            covered,
            AuditEvent::GrantAdd {
                role,
                scope: scope_text.clone(),
            },
            "grant.add",
            json!({"role": role, "scope": scope_text}),
        );
        same(
            covered,
            AuditEvent::GrantRemove {
                role,
                scope: scope_text.clone(),
            },
            "grant.remove",
            json!({"role": role, "scope": scope_text}),
        );
        for (enabled, batch) in [(true, Some("b-1")), (false, None)] {
            same(
                covered,
                AuditEvent::CaUpdate(CaSettings::EstBootstrap {
                    est_bootstrap: enabled,
                    est_bootstrap_batch: batch.map(str::to_string),
                }),
                "ca.update",
                json!({"estBootstrap": enabled, "estBootstrapBatch": batch}),
            );
        }
        let thing = "sensor-1".to_string();
        same(
            covered,
            AuditEvent::GrantMigrate {
                role: Role::Admin,
                scope: "*".into(),
                from_thing_attribute: thing.clone(),
            },
            "grant.migrate",
            json!({"role": Role::Admin, "scope": "*", "fromThingAttribute": thing}),
        );

        // registry/src/policies.rs
        let document = r#"{"Version":"2012-10-17","Statement":[]}"#;
        same(
            covered,
            AuditEvent::PolicyCreate {
                document: document.into(),
            },
            "policy.create",
            json!({"document": document}),
        );
        same(
            covered,
            AuditEvent::PolicyDelete {},
            "policy.delete",
            json!({}),
        );
        let policy = "telemetry";
        same(
            covered,
            AuditEvent::PolicyAttach {
                policy: policy.into(),
            },
            "policy.attach",
            json!({"policy": policy}),
        );
        same(
            covered,
            AuditEvent::PolicyDetach {
                policy: policy.into(),
            },
            "policy.detach",
            json!({"policy": policy}),
        );

        // registry/src/fleet.rs
        for hook in [Some("allow-list"), None] {
            let t = NewTemplate {
                name: "fleet-1".into(),
                kind: TemplateKind::Fleet,
                body: r#"{"Resources":{}}"#.into(),
                hook: hook.map(str::to_string),
                hook_timeout_ms: 5000,
                enabled: hook.is_none(),
            };
            same(
                covered,
                AuditEvent::TemplateCreate {
                    kind: t.kind,
                    hook: t.hook.clone(),
                    enabled: t.enabled,
                    body: t.body.clone(),
                },
                "template.create",
                json!({"kind": t.kind, "hook": t.hook, "enabled": t.enabled, "body": t.body}),
            );
            same(
                covered,
                AuditEvent::TemplateUpdate {
                    kind: TemplateKind::Jitp,
                    hook: t.hook.clone(),
                    enabled: t.enabled,
                    body: t.body.clone(),
                },
                "template.update",
                json!({"kind": TemplateKind::Jitp, "hook": t.hook, "enabled": t.enabled, "body": t.body}),
            );
        }
        same(
            covered,
            AuditEvent::TemplateDelete {},
            "template.delete",
            json!({}),
        );
        let added: usize = 2;
        let serials = ["01".to_string(), "02".into(), "03".into()];
        same(
            covered,
            AuditEvent::TemplateAllowList {
                added: added as u64,
                given: serials.len() as u64,
            },
            "template.allow_list",
            json!({"added": added, "given": serials.len()}),
        );
        let claim = Claim {
            certificate_id: cid("c1a1m"),
            templates: vec!["fleet-1".into(), "fleet-2".into()],
            rate_per_minute: 0,
        };
        same(
            covered,
            AuditEvent::ClaimCreate {
                templates: claim.templates.clone(),
                rate_per_minute: claim.rate_per_minute,
            },
            "claim.create",
            json!({"templates": claim.templates, "ratePerMinute": claim.rate_per_minute}),
        );
        let status = CertificateStatus::Inactive;
        same(
            covered,
            AuditEvent::CertificateStatus {
                from: CertificateStatus::PendingActivation,
                to: status,
                reason: None,
            },
            "certificate.status",
            json!({"from": CertificateStatus::PendingActivation, "to": status, "reason": null}),
        );
        let claim = "c1a1m".to_string();
        let expires: i64 = 1_700_000_300;
        for pending in [true, false] {
            same(
                covered,
                AuditEvent::FleetTokenExpired {
                    claim: claim.clone(),
                    expired: expires,
                    revoked: pending,
                    reason: RevocationReason::CessationOfOperation,
                },
                "fleet.token_expired",
                json!({"claim": claim, "expired": expires, "revoked": pending, "reason": RevocationReason::CessationOfOperation}),
            );
        }
        for (groups, merge) in [(vec!["g1".to_string(), "g2".into()], true), (vec![], false)] {
            same(
                covered,
                AuditEvent::ThingGroups {
                    groups: groups.clone(),
                    merge,
                },
                "thing.groups",
                json!({"groups": groups, "merge": merge}),
            );
        }

        // registry/src/chains.rs
        let subject = "CN=Vendor Intermediate";
        same(
            covered,
            AuditEvent::IntermediateRegister {
                subject: subject.into(),
            },
            "intermediate.register",
            json!({"subject": subject}),
        );

        // registry/src/tokens.rs
        for batch in [Some("b-1"), None] {
            same(
                covered,
                AuditEvent::TokenCreate {
                    role: Role::Station,
                    batch: batch.map(str::to_string),
                },
                "token.create",
                json!({"role": Role::Station, "batch": batch}),
            );
        }
        same(
            covered,
            AuditEvent::TokenRevoke {},
            "token.revoke",
            json!({}),
        );

        // registry/src/tpm.rs (issue 16: no earlier call site)
        same(
            covered,
            AuditEvent::TpmChallenge {
                batch: "b1".into(),
                ek_sha256: "ab".into(),
            },
            "tpm.challenge",
            json!({"batch": "b1", "ekSha256": "ab"}),
        );
        same(
            covered,
            AuditEvent::TpmIdentity {
                batch: "b1".into(),
                ek_sha256: "ab".into(),
                session: "s1".into(),
            },
            "tpm.identity",
            json!({"batch": "b1", "ekSha256": "ab", "session": "s1"}),
        );
        let (new_id, retire_at) = ("n3w", 1_700_086_400_i64);
        same(
            covered,
            AuditEvent::CertificateRotate {
                replacement: new_id.into(),
                retire_at,
            },
            "certificate.rotate",
            json!({"replacement": new_id, "retireAt": retire_at}),
        );

        // registry/src/mint.rs
        let (first, n) = (101_i64, 50_i64);
        same(
            covered,
            AuditEvent::SerialReserve { first, count: n },
            "serial.reserve",
            json!({"first": first, "count": n}),
        );
        let item = crate::MintItem {
            device_id: "ACME-000101".into(),
            batch: "m-1".into(),
            number: 101,
            thing: "acme-000101".into(),
            certificate_id: "c0ffee".into(),
            image_file: "images/ACME-000101.bin".into(),
            image_sha256: "5ha".into(),
            state: "OK".into(),
        };
        let mut c = new_certificate(Some("acme-000101"), Some("m-1"));
        c.status = CertificateStatus::Active;
        same(
            covered,
            AuditEvent::MintDevice {
                batch: item.batch.clone(),
                thing: item.thing.clone(),
                certificate: item.certificate_id.clone(),
                serial: c.serial.clone(),
                ca: c.ca.clone(),
                status: c.status,
                subject: c.subject.clone(),
                image: item.image_file.clone(),
                sha256: item.image_sha256.clone(),
            },
            "mint.device",
            json!({"batch": item.batch, "thing": item.thing,
                "certificate": item.certificate_id, "serial": c.serial, "ca": c.ca,
                "status": c.status, "subject": c.subject,
                "image": item.image_file, "sha256": item.image_sha256}),
        );
        let why = "image lost before the batch completed";
        same(
            covered,
            AuditEvent::MintSpoiled { reason: why.into() },
            "mint.spoiled",
            json!({"reason": why}),
        );

        // registry/src/offline.rs
        let auth = NewOfflineAuthorization {
            batch: "o-1".into(),
            authorization_id: "auth-1".into(),
            batch_ca: "o-1-ca".into(),
            serial_first: 1,
            serial_last: 500,
            not_before: 1_700_000_000,
            not_after: 1_800_000_000,
            limits: "{}".into(),
            signature: "sig".into(),
            key_kind: "software".into(),
        };
        same(
            covered,
            AuditEvent::OfflineAuthorize {
                authorization: auth.authorization_id.clone(),
                batch_ca: auth.batch_ca.clone(),
                serial_first: auth.serial_first,
                serial_last: auth.serial_last,
                not_before: auth.not_before,
                not_after: auth.not_after,
                key: auth.key_kind.clone(),
            },
            "offline.authorize",
            json!({"authorization": auth.authorization_id, "batchCa": auth.batch_ca,
                "serialFirst": auth.serial_first, "serialLast": auth.serial_last,
                "notBefore": auth.not_before, "notAfter": auth.not_after, "key": auth.key_kind}),
        );
        let signers = RevocationSigners {
            ca: "o-1-ca".into(),
            ocsp_responder_der: Vec::new(),
            ocsp_responder_key: String::new(),
            crl_signer_der: Vec::new(),
            crl_signer_key: String::new(),
            signer_status_url: "http://pki.example/crl/o-1-ca-signer.crl".into(),
            signer_status_crl: Vec::new(),
            created: 0,
        };
        let (ocsp_responder_id, crl_signer_id) = ("0c5p", "c41");
        same(
            covered,
            AuditEvent::OfflineRevocationSigners {
                ocsp_responder: ocsp_responder_id.into(),
                crl_signer: crl_signer_id.into(),
                signer_status_url: signers.signer_status_url.clone(),
            },
            "offline.revocation_signers",
            json!({"ocspResponder": ocsp_responder_id, "crlSigner": crl_signer_id,
                "signerStatusUrl": signers.signer_status_url}),
        );
        let record = |seq: i64, finding: Option<(FindingKind, &str)>| ReconciledRecord {
            batch: "o-1".into(),
            seq,
            hash: format!("h{seq}"),
            event: "issued".into(),
            certificate_id: None,
            serial: None,
            hw_id: None,
            finding: finding.map(|(kind, message): (FindingKind, &str)| RecordFinding {
                kind,
                message: message.to_string(),
            }),
            reconciled: 0,
        };
        let records = [
            record(1, None),
            record(2, Some((FindingKind::Excess, "..."))),
            record(3, None),
        ];
        let (first, last) = (&records[0], &records[2]);
        let findings = records.iter().filter(|r| r.finding.is_some()).count();
        same(
            covered,
            AuditEvent::OfflineLog {
                first: first.seq,
                last: last.seq,
                head: last.hash.clone(),
                records: records.len() as u64,
                findings: findings as u64,
            },
            "offline.log",
            json!({"first": first.seq, "last": last.seq, "head": last.hash,
                "records": records.len(), "findings": findings}),
        );

        // flows/src/issue.rs (register_service_certificate; the action from
        // ocsp.rs and offline_revocation.rs)
        let (ca, serial, not_after) = ("issuing", "5e41a1".to_string(), 1_700_345_600_i64);
        for offline in [false, true] {
            let mut details = json!({"ca": ca, "serial": serial,
                "notAfter": not_after});
            if offline {
                details["offline"] = serde_json::Value::Bool(true);
            }
            let service = ServiceCertificate {
                ca: ca.into(),
                serial: crate::Serial::parse(&serial).unwrap(),
                not_after,
                offline,
            };
            same(
                covered,
                AuditEvent::OcspResponderIssued(service.clone()),
                "ocsp.responder_issued",
                details.clone(),
            );
            same(
                covered,
                AuditEvent::CrlSignerIssued(service),
                "crl.signer_issued",
                details,
            );
        }

        // flows/src/server_identity.rs
        let hosts = vec!["idmint.example".to_string(), "10.0.0.1".into()];
        same(
            covered,
            AuditEvent::ServerCertificate {
                hosts: hosts.clone(),
            },
            "server.certificate",
            json!({"hosts": hosts}),
        );

        // mint/src/lib.rs
        let discarded_certs = vec!["d1".to_string(), "d2".into()];
        same(
            covered,
            AuditEvent::MintDiscard {
                reason: "image written but never registered; deleted with its key on resume".into(),
                certificates: discarded_certs.clone(),
            },
            "mint.discard",
            json!({"reason": "image written but never registered; deleted with its key on resume", "certificates": discarded_certs}),
        );
        let devices = 1000_u64;
        same(
            covered,
            AuditEvent::MintComplete { devices },
            "mint.complete",
            json!({"devices": devices}),
        );

        // manifest/src/import.rs (`self.options.path`, `self.ca` and the
        // summary `s` as locals)
        let path = std::path::PathBuf::from("/data/vendor manifest.json");
        let (format, self_ca) = ("aws-iot-csv".to_string(), "vendor-x".to_string());
        let (entries, registered, already_registered, rejected) = (10_u64, 7_u64, 2_u64, 1_u64);
        same(
            covered,
            AuditEvent::ManifestImport {
                source: path.display().to_string(),
                format: format.clone(),
                ca: self_ca.clone(),
                entries,
                registered,
                already_registered,
                rejected,
            },
            "manifest.import",
            json!({
                "source": path.display().to_string(), "format": format, "ca": self_ca,
                "entries": entries, "registered": registered, "alreadyRegistered": already_registered, "rejected": rejected,
            }),
        );

        // fleet/src/provision.rs and jitp.rs
        let (template_name, thing_name) = ("fleet-1", "sensor-1".to_string());
        let (claim_certificate_id, client_id) = ("c1a1m".to_string(), "client-7".to_string());
        for existing in [false, true] {
            same(
                covered,
                AuditEvent::FleetRegister {
                    template: template_name.into(),
                    thing: thing_name.clone(),
                    existing_thing: existing,
                    claim: claim_certificate_id.clone(),
                    client_id: client_id.clone(),
                },
                "fleet.register",
                json!({"template": template_name, "thing": thing_name, "existingThing": existing, "claim": claim_certificate_id, "clientId": client_id}),
            );
        }
        let ca_name = "vendor-x".to_string();
        same(
            covered,
            AuditEvent::JitpRegister {
                ca: ca_name.clone(),
                template: template_name.into(),
                thing: thing_name.clone(),
                existing_thing: true,
            },
            "jitp.register",
            json!({"ca": ca_name, "template": template_name, "thing": thing_name, "existingThing": true}),
        );
        let certificate_id = "c0ffee";
        for (via, context) in [
            (
                ProvisionedVia::Fleet {
                    claim: claim_certificate_id.clone(),
                    client_id: client_id.clone(),
                },
                json!({"via": "fleet", "claim": claim_certificate_id, "clientId": client_id}),
            ),
            (
                ProvisionedVia::Jitp {
                    ca: ca_name.clone(),
                },
                json!({"via": "jitp", "ca": ca_name}),
            ),
        ] {
            let mut details = json!({
                "thing": thing_name,
                "certificate": certificate_id,
                "template": template_name,
                "existing": true,
            });
            if let (Some(all), serde_json::Value::Object(extra)) =
                (details.as_object_mut(), context)
            {
                all.extend(extra);
            }
            same(
                covered,
                AuditEvent::ThingCertificateAttached {
                    thing: thing_name.clone(),
                    certificate: certificate_id.into(),
                    template: template_name.into(),
                    existing: true,
                    via,
                },
                "thing.certificate_attached",
                details,
            );
        }

        // station/src/lib.rs and report.rs (`self.batch.id`, `outcome` and
        // `failed` as locals)
        let batch = "b-1";
        let why = "not confirmed on its device within 600 s of issue".to_string();
        same(
            covered,
            AuditEvent::StationSpoiled(StationSpoiled {
                batch: batch.into(),
                stage: Some("activate".into()),
                reason: why.clone(),
                remote: false,
            }),
            "station.spoiled",
            json!({"batch": batch, "stage": "activate", "reason": why}),
        );
        let (stage, failed_reason) = ("install", "device said \"no\"".to_string());
        same(
            covered,
            AuditEvent::StationSpoiled(StationSpoiled {
                batch: batch.into(),
                stage: Some(stage.into()),
                reason: failed_reason.clone(),
                remote: false,
            }),
            "station.spoiled",
            json!({"batch": batch, "stage": stage, "reason": failed_reason}),
        );
        same(
            covered,
            AuditEvent::StationSpoiled(StationSpoiled {
                batch: batch.into(),
                stage: None,
                reason: why.clone(),
                remote: true,
            }),
            "station.spoiled",
            json!({"batch": batch, "reason": why, "remote": true}),
        );
        let (id, address) = ("c0ffee".to_string(), "/dev/ttyUSB0".to_string());
        for (hw_id, injected, locked) in
            [(Some("hw-1".to_string()), true, false), (None, false, true)]
        {
            same(
                covered,
                AuditEvent::StationProvisioned {
                    batch: batch.into(),
                    hw_id: hw_id.clone(),
                    certificate: id.clone(),
                    injected: Some(injected),
                    locked,
                    address: Some(address.clone()),
                    remote: false,
                },
                "station.provisioned",
                json!({"batch": batch, "hwId": hw_id,
                    "certificate": id, "injected": injected,
                    "locked": locked, "address": address}),
            );
            let certificate = id.as_str();
            same(
                covered,
                AuditEvent::StationProvisioned {
                    batch: batch.into(),
                    hw_id: hw_id.clone(),
                    certificate: certificate.into(),
                    injected: None,
                    locked,
                    address: None,
                    remote: true,
                },
                "station.provisioned",
                json!({"batch": batch, "certificate": certificate, "hwId": hw_id,
                    "locked": locked, "remote": true}),
            );
        }
        let hw_id = "hw-1";
        same(
            covered,
            AuditEvent::StationRefused {
                batch: batch.into(),
                hw_id: hw_id.into(),
                reason: why.clone(),
            },
            "station.refused",
            json!({"batch": batch, "hwId": hw_id, "reason": why}),
        );

        // station/src/offline/reconcile.rs (`batch.id`, `r` and the event's
        // fields as locals)
        let (seq, serial, time) = (7_u64, 1007_u64, 1_700_000_123_i64);
        for (thing_name, finding) in [
            (Some("sensor-1".to_string()), None),
            (
                None,
                Some("record 7: certificate c0ffee exceeds the batch quota 5".to_string()),
            ),
        ] {
            same(
                covered,
                AuditEvent::OfflineIssued {
                    batch: batch.into(),
                    seq,
                    serial,
                    hw_id: hw_id.into(),
                    thing: thing_name.clone(),
                    time,
                    finding: finding.clone(),
                },
                "offline.issued",
                json!({"batch": batch, "seq": seq, "serial": serial,
                    "hwId": hw_id, "thing": thing_name, "time": time,
                    "finding": finding}),
            );
        }
        let locked = true;
        same(
            covered,
            AuditEvent::OfflineProvisioned {
                batch: batch.into(),
                seq,
                serial,
                locked,
                time,
            },
            "offline.provisioned",
            json!({"batch": batch, "seq": seq, "serial": serial,
                "locked": locked, "time": time}),
        );
        let reason = "no answer";
        same(
            covered,
            AuditEvent::OfflineSpoiled {
                batch: batch.into(),
                seq,
                serial,
                stage: stage.into(),
                reason: reason.into(),
                time,
            },
            "offline.spoiled",
            json!({"batch": batch, "seq": seq, "serial": serial,
                "stage": stage, "reason": reason, "time": time}),
        );

        // Every action the registry records (one per variant).
        assert_eq!(covered.len(), 60, "{covered:?}");
    }
}
