//! What a rendered template asks for: the thing, the certificate, the
//! policies and the device configuration of one device, with every
//! intrinsic function evaluated and every name checked.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A declared template parameter (`Parameters.<name>`). Every parameter is
/// of type `String`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParameterSpec {
    /// The `Default`, used when the caller passes no value.
    pub default: Option<String>,
}

/// The resources one device's provisioning asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provisioning {
    /// The `AWS::IoT::Thing`, if the template declares one.
    pub thing: Option<ThingSpec>,
    /// The `AWS::IoT::Certificate`, if the template declares one.
    pub certificate: Option<CertificateSpec>,
    /// The `AWS::IoT::Policy` resources, in logical-name order.
    pub policies: Vec<PolicySpec>,
    /// The evaluated `DeviceConfiguration` (empty if the template has none).
    pub device_configuration: serde_json::Map<String, serde_json::Value>,
}

/// An `AWS::IoT::Thing` to create or update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThingSpec {
    /// `ThingName`: 1 to 128 of `[a-zA-Z0-9:_-]`.
    pub name: String,
    /// `AttributePayload`: attribute name to value.
    pub attributes: BTreeMap<String, String>,
    /// `ThingTypeName`.
    pub thing_type: Option<String>,
    /// `ThingGroups`, duplicates removed, in template order.
    pub thing_groups: Vec<String>,
    /// `BillingGroup`.
    pub billing_group: Option<String>,
    /// `OverrideSettings`, per property name (`AttributePayload`,
    /// `ThingTypeName`, `ThingGroups`, `BillingGroup`). A property without an
    /// entry has no declared setting; the caller applies its default.
    pub overrides: BTreeMap<String, OverrideSetting>,
}

/// What to do when a resource property already exists (`OverrideSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OverrideSetting {
    /// `DO_NOTHING`: leave the existing value as it is.
    DoNothing,
    /// `REPLACE`: replace it with the template's value.
    Replace,
    /// `FAIL`: fail the provisioning request.
    Fail,
    /// `MERGE`: merge attributes or group memberships (only for
    /// `AttributePayload` and `ThingGroups`).
    Merge,
}

impl OverrideSetting {
    /// The template spelling: `DO_NOTHING`, `REPLACE`, `FAIL`, `MERGE`.
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideSetting::DoNothing => "DO_NOTHING",
            OverrideSetting::Replace => "REPLACE",
            OverrideSetting::Fail => "FAIL",
            OverrideSetting::Merge => "MERGE",
        }
    }
}

impl fmt::Display for OverrideSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OverrideSetting {
    type Err = UnknownOverrideSetting;

    /// Parses the template spelling (exact, upper case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "DO_NOTHING" => Ok(OverrideSetting::DoNothing),
            "REPLACE" => Ok(OverrideSetting::Replace),
            "FAIL" => Ok(OverrideSetting::Fail),
            "MERGE" => Ok(OverrideSetting::Merge),
            _ => Err(UnknownOverrideSetting),
        }
    }
}

/// The error of `OverrideSetting::from_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected DO_NOTHING, REPLACE, FAIL or MERGE")]
pub struct UnknownOverrideSetting;

/// An `AWS::IoT::Certificate` to register or update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateSpec {
    /// Which certificate: in fleet provisioning and JITP templates, the
    /// certificate id (`{"Ref": "AWS::IoT::Certificate::Id"}`).
    pub source: CertificateSource,
    /// `Status`; ACTIVE when the template does not say.
    pub status: CertificateStatus,
    /// `OverrideSettings` (only `Status` can have one).
    pub overrides: BTreeMap<String, OverrideSetting>,
}

/// How a certificate resource names its certificate: exactly one way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateSource {
    /// `CertificateId`: an existing certificate.
    Id(String),
    /// `CertificateSigningRequest`: a PEM CSR to issue a certificate for
    /// (bulk registration).
    SigningRequest(String),
    /// `CertificatePem` (and optionally `CACertificatePem`): a certificate
    /// made by a registered CA.
    Pem {
        /// `CertificatePem`.
        certificate_pem: String,
        /// `CACertificatePem`.
        ca_certificate_pem: Option<String>,
    },
}

/// The status a template gives its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    /// `ACTIVE` (the default).
    Active,
    /// `INACTIVE`.
    Inactive,
}

impl CertificateStatus {
    /// `ACTIVE` or `INACTIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Active => "ACTIVE",
            CertificateStatus::Inactive => "INACTIVE",
        }
    }

    /// Parses a template `Status`, ignoring ASCII case: AWS's own examples
    /// write both `ACTIVE` and `Active`.
    pub fn parse(text: &str) -> Option<CertificateStatus> {
        if text.eq_ignore_ascii_case("ACTIVE") {
            Some(CertificateStatus::Active)
        } else if text.eq_ignore_ascii_case("INACTIVE") {
            Some(CertificateStatus::Inactive)
        } else {
            None
        }
    }
}

impl fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `AWS::IoT::Policy` to attach to the certificate: exactly one of
/// `name` (an existing policy) and `document` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySpec {
    /// `PolicyName`: attach this existing policy.
    pub name: Option<String>,
    /// `PolicyDocument`: the policy JSON text, compact when the template
    /// gave it as a JSON object, as written when it gave a string.
    pub document: Option<String>,
}
