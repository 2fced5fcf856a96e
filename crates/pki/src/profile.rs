//! Certificate profiles: what a certificate of a given kind looks like
//! (subject and SAN templates, key usage, extended key usage, validity),
//! and the values the templates are filled from.

use std::collections::BTreeMap;

use rcgen::{DistinguishedName, DnType, SanType};
use serde::{Deserialize, Serialize};

use crate::{KeyType, PkiError};

/// A certificate profile, as configured in `idmint.toml` under `[profiles.NAME]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Subject attributes in order, each `ATTR=template`, e.g. `CN={thing}`.
    /// Attributes: CN, O, OU, C, ST, L, serialNumber, dnQualifier.
    pub subject: Vec<String>,
    /// Subject alternative names, each `dns:…`, `uri:…`, `ip:…` or `email:…`
    /// with templates allowed.
    #[serde(default)]
    pub sans: Vec<String>,
    /// Key usage bits (the extension is always critical).
    #[serde(default = "default_key_usage")]
    pub key_usage: Vec<KeyUsage>,
    /// Extended key usages.
    #[serde(default = "default_eku")]
    pub extended_key_usage: Vec<ExtendedKeyUsage>,
    /// Validity in days from issuance.
    #[serde(default = "default_validity_days")]
    pub validity_days: u32,
    /// If set, the validity in minutes instead of days (short-lived
    /// credentials such as an installer's temporary claim certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_minutes: Option<u32>,
    /// Subject key types this profile accepts (empty: all supported ones).
    #[serde(default)]
    pub key_types: Vec<KeyType>,
    /// If set, the signature algorithm the issuing CA must sign with
    /// (`ecdsa-sha256`, `ecdsa-sha384`, `ed25519`, `rsa-sha256`).
    #[serde(default)]
    pub signature_algorithm: Option<String>,
}

fn default_key_usage() -> Vec<KeyUsage> {
    vec![KeyUsage::DigitalSignature]
}

fn default_eku() -> Vec<ExtendedKeyUsage> {
    vec![ExtendedKeyUsage::ClientAuth]
}

fn default_validity_days() -> u32 {
    3650
}

/// Key usage bits a profile may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub enum KeyUsage {
    DigitalSignature,
    KeyEncipherment,
    KeyAgreement,
    ContentCommitment,
    DataEncipherment,
}

/// Extended key usages a profile may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub enum ExtendedKeyUsage {
    ClientAuth,
    ServerAuth,
    CodeSigning,
    EmailProtection,
    OcspSigning,
}

/// The variables a profile's templates may use.
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "thing",
    "org",
    "device_id",
    "product",
    "batch",
    "hw_id",
    "csr_cn",
    // The device serial number an offline station gives each device from
    // its authorized range (empty elsewhere).
    "serial",
];

impl Profile {
    /// The built-in `device` profile: `CN={thing}`, `O={org}`, digitalSignature,
    /// clientAuth, ten years.
    pub fn device() -> Self {
        Profile {
            subject: vec!["CN={thing}".into(), "O={org}".into()],
            sans: Vec::new(),
            key_usage: default_key_usage(),
            extended_key_usage: default_eku(),
            validity_days: default_validity_days(),
            validity_minutes: None,
            key_types: Vec::new(),
            signature_algorithm: None,
        }
    }

    /// A TLS server profile (for idmint's own HTTPS and MQTT endpoints).
    pub fn server() -> Self {
        Profile {
            subject: vec!["CN={thing}".into(), "O={org}".into()],
            sans: Vec::new(),
            key_usage: vec![KeyUsage::DigitalSignature],
            extended_key_usage: vec![ExtendedKeyUsage::ServerAuth],
            validity_days: 397,
            validity_minutes: None,
            key_types: Vec::new(),
            signature_algorithm: None,
        }
    }

    /// Checks the templates, so a bad profile fails when it is loaded and
    /// not at the first issuance.
    pub fn validate(&self, name: &str) -> Result<(), PkiError> {
        let err = |reason: String| PkiError::Profile {
            profile: name.to_string(),
            reason,
        };
        if self.subject.is_empty() {
            return Err(err("subject is empty".into()));
        }
        for entry in &self.subject {
            let (attr, template) = entry
                .split_once('=')
                .ok_or_else(|| err(format!("subject entry {entry:?} is not ATTR=template")))?;
            dn_type(attr).ok_or_else(|| err(format!("unknown subject attribute {attr:?}")))?;
            check_template(template)?;
        }
        for san in &self.sans {
            let (kind, template) = san
                .split_once(':')
                .ok_or_else(|| err(format!("SAN {san:?} is not kind:template")))?;
            if !["dns", "uri", "ip", "email"].contains(&kind) {
                return Err(err(format!("unknown SAN kind {kind:?}")));
            }
            check_template(template)?;
        }
        if self.validity_days == 0 {
            return Err(err("validity_days must be at least 1".into()));
        }
        if self.validity_minutes == Some(0) {
            return Err(err("validity_minutes must be at least 1".into()));
        }
        if let Some(alg) = &self.signature_algorithm {
            if !["ecdsa-sha256", "ecdsa-sha384", "ed25519", "rsa-sha256"].contains(&alg.as_str()) {
                return Err(err(format!("unknown signature_algorithm {alg:?}")));
            }
        }
        Ok(())
    }

    /// Whether the profile accepts a subject key of this type.
    pub fn allows_key_type(&self, key_type: KeyType) -> bool {
        self.key_types.is_empty() || self.key_types.contains(&key_type)
    }

    pub(crate) fn distinguished_name(
        &self,
        values: &SubjectValues,
    ) -> Result<DistinguishedName, PkiError> {
        let mut dn = DistinguishedName::new();
        for entry in &self.subject {
            let Some((attr, template)) = entry.split_once('=') else {
                continue;
            };
            let Some(ty) = dn_type(attr) else { continue };
            let value = values.render(template)?;
            if !value.is_empty() {
                dn.push(ty, value);
            }
        }
        Ok(dn)
    }

    pub(crate) fn subject_alt_names(
        &self,
        values: &SubjectValues,
    ) -> Result<Vec<SanType>, PkiError> {
        let mut sans = Vec::with_capacity(self.sans.len());
        for san in &self.sans {
            let Some((kind, template)) = san.split_once(':') else {
                continue;
            };
            let value = values.render(template)?;
            let bad = |e: String| PkiError::Profile {
                profile: "san".into(),
                reason: format!("SAN {san:?} renders to invalid {kind} {value:?}: {e}"),
            };
            sans.push(match kind {
                "dns" => SanType::DnsName(
                    value
                        .clone()
                        .try_into()
                        .map_err(|e: rcgen::Error| bad(e.to_string()))?,
                ),
                "uri" => SanType::URI(
                    value
                        .clone()
                        .try_into()
                        .map_err(|e: rcgen::Error| bad(e.to_string()))?,
                ),
                "email" => SanType::Rfc822Name(
                    value
                        .clone()
                        .try_into()
                        .map_err(|e: rcgen::Error| bad(e.to_string()))?,
                ),
                _ => SanType::IpAddress(
                    value
                        .parse()
                        .map_err(|e: std::net::AddrParseError| bad(e.to_string()))?,
                ),
            });
        }
        Ok(sans)
    }
}

fn dn_type(attr: &str) -> Option<DnType> {
    Some(match attr {
        "CN" => DnType::CommonName,
        "O" => DnType::OrganizationName,
        "OU" => DnType::OrganizationalUnitName,
        "C" => DnType::CountryName,
        "ST" => DnType::StateOrProvinceName,
        "L" => DnType::LocalityName,
        "serialNumber" => DnType::CustomDnType(vec![2, 5, 4, 5]),
        "dnQualifier" => DnType::CustomDnType(vec![2, 5, 4, 46]),
        _ => return None,
    })
}

fn check_template(template: &str) -> Result<(), PkiError> {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| PkiError::UnknownTemplateVariable {
                template: template.into(),
                variable: after.into(),
            })?;
        let var = &after[..end];
        if !TEMPLATE_VARIABLES.contains(&var) {
            return Err(PkiError::UnknownTemplateVariable {
                template: template.into(),
                variable: var.into(),
            });
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// The values a profile's templates are filled from: `thing`, `org`,
/// `device_id`, `product`, `batch`, `hw_id`, `csr_cn`, `serial`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectValues {
    values: BTreeMap<&'static str, String>,
}

impl SubjectValues {
    /// Values with just the thing name set.
    pub fn for_thing(thing: &str) -> Self {
        let mut v = SubjectValues::default();
        v.set("thing", thing);
        v
    }

    /// Sets a variable (one of [`TEMPLATE_VARIABLES`]; others are ignored).
    pub fn set(&mut self, variable: &str, value: impl Into<String>) -> &mut Self {
        if let Some(name) = TEMPLATE_VARIABLES.iter().find(|v| **v == variable) {
            self.values.insert(name, value.into());
        }
        self
    }

    /// Builder form of [`SubjectValues::set`].
    pub fn with(mut self, variable: &str, value: impl Into<String>) -> Self {
        self.set(variable, value);
        self
    }

    /// A variable's value, if set.
    pub fn get(&self, variable: &str) -> Option<&str> {
        self.values.get(variable).map(String::as_str)
    }

    /// Fills a template; unset variables render empty.
    pub fn render(&self, template: &str) -> Result<String, PkiError> {
        check_template(template)?;
        let mut out = String::with_capacity(template.len() + 16);
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after.find('}').unwrap_or(after.len());
            out.push_str(self.get(&after[..end]).unwrap_or(""));
            rest = after.get(end + 1..).unwrap_or("");
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_templates() {
        let v = SubjectValues::for_thing("dev-1").with("org", "Acme");
        assert_eq!(
            v.render("CN {thing} of {org}!").unwrap(),
            "CN dev-1 of Acme!"
        );
        assert_eq!(v.render("{product}").unwrap(), "");
        assert!(v.render("{nope}").is_err());
        assert!(v.render("{thing").is_err());
    }

    #[test]
    fn validates_profiles() {
        assert!(Profile::device().validate("device").is_ok());
        let mut p = Profile::device();
        p.subject = vec!["XX=1".into()];
        assert!(p.validate("p").is_err());
        p.subject = vec!["CN={bogus}".into()];
        assert!(p.validate("p").is_err());
        p.subject = vec!["CN={thing}".into()];
        p.sans = vec!["ftp:x".into()];
        assert!(p.validate("p").is_err());
    }
}
