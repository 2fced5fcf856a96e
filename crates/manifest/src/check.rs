//! Checking a parsed entry: the vendor's signature and JWK (signed
//! manifests), then for every format the certificate itself: it parses, it
//! is an end-entity certificate, it chains to the named CA (directly or
//! through an offered intermediate) as a TLS client certificate valid now,
//! and its key type is allowed.
//!
//! The chain is rustls-webpki's (through idmint-pki's
//! [`ClientChainVerifier`]): path length, basic constraints,
//! name constraints, validity, and the client-auth extended key usage
//! (vendor device certificates often carry none, which is accepted; an EKU
//! that excludes clientAuth is not).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use idmint_pki::{
    AcceptedIntermediate, CertificateInfo, ChainRejection, ClientChainVerifier, Profile, Verified,
};
use idmint_registry::ThingName;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{LogSigner, ManifestEntry, Reason, Rejection, ThingNameFrom};

/// An entry that passed every check that needs no registry lookup.
#[derive(Clone, Debug)]
pub struct CheckedEntry {
    /// Position in the manifest.
    pub index: u64,
    /// The unique id (device id of the thing).
    pub unique_id: String,
    /// The thing name.
    pub thing_name: ThingName,
    /// Thing attributes.
    pub attributes: BTreeMap<String, String>,
    /// The certificate's facts.
    pub info: CertificateInfo,
    /// The certificate DER.
    pub der: Vec<u8>,
    /// The offered intermediates it chains to the CA through (DER, shared
    /// by the entries that offer the same one; its
    /// issuer first); empty when the CA signed it directly.
    pub chain: Vec<Arc<[u8]>>,
}

/// The trust decisions for one import, shared by the worker threads.
pub struct Checker {
    /// The registered CA, parsed once (or why it does not parse: every
    /// entry is then rejected as untrusted).
    anchor: Result<ClientChainVerifier, String>,
    signer: Option<LogSigner>,
    profile: Profile,
    thing_name_from: Option<ThingNameFrom>,
}

/// Per-thread memory: offered intermediates webpki already accepted on a
/// path to the CA, by DER, so later leaves they signed cost one signature
/// check.
#[derive(Default)]
pub struct CheckCache {
    intermediates: HashMap<Arc<[u8]>, AcceptedIntermediate>,
}

impl Checker {
    /// A checker for certificates chaining to `anchor_der`, signed manifests
    /// by `signer`.
    pub fn new(
        anchor_der: Vec<u8>,
        signer: Option<LogSigner>,
        profile: Profile,
        thing_name_from: Option<ThingNameFrom>,
        now: OffsetDateTime,
    ) -> Self {
        let anchor = ClientChainVerifier::new(&anchor_der, now).map_err(|e| e.to_string());
        Checker {
            anchor,
            signer,
            profile,
            thing_name_from,
        }
    }

    /// Runs every check on one entry.
    pub fn check(
        &self,
        entry: ManifestEntry,
        cache: &mut CheckCache,
    ) -> Result<CheckedEntry, Rejection> {
        let (index, uid) = (entry.index, entry.unique_id.clone());
        self.check_inner(entry, cache)
            .map_err(|r| r.at(index, uid.as_deref()))
    }

    fn check_inner(
        &self,
        mut entry: ManifestEntry,
        cache: &mut CheckCache,
    ) -> Result<CheckedEntry, Rejection> {
        let der = std::mem::take(&mut entry.certificate_der);
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| {
            Rejection::new(
                Reason::BadCertificate,
                format!("certificate does not parse: {e}"),
            )
        })?;
        if let Some(element) = &entry.signed {
            let signer = self.signer.as_ref().ok_or_else(|| {
                Rejection::new(
                    Reason::SignerMismatch,
                    "the CA has no manifest log signer registered (ca register --signer)",
                )
            })?;
            signer.verify(element)?;
            if let Some(h) = &element.header_unique_id {
                if *h != element.payload.unique_id {
                    return Err(Rejection::new(
                        Reason::UniqueIdMismatch,
                        format!(
                            "header.uniqueId {h:?} differs from the signed uniqueId {:?}",
                            element.payload.unique_id
                        ),
                    ));
                }
            }
            for key in element.payload.keys.iter().filter(|k| !k.x5c.is_empty()) {
                let ok_shape = key.kty == "EC"
                    && key.crv.as_deref() == Some("P-256")
                    && key.x.len() == 32
                    && key.y.len() == 32;
                if !ok_shape {
                    return Err(Rejection::new(
                        Reason::JwkMismatch,
                        format!(
                            "JWK {} is not an EC P-256 key",
                            key.kid.as_deref().unwrap_or("-")
                        ),
                    ));
                }
                let key_cert = if key.x5c[0] == der {
                    None
                } else {
                    Some(
                        X509Certificate::from_der(&key.x5c[0])
                            .map_err(|e| {
                                Rejection::new(
                                    Reason::BadCertificate,
                                    format!("x5c certificate: {e}"),
                                )
                            })?
                            .1,
                    )
                };
                let point = key_cert
                    .as_ref()
                    .unwrap_or(&cert)
                    .public_key()
                    .subject_public_key
                    .data
                    .as_ref();
                let matches = point.len() == 65
                    && point[0] == 4
                    && point[1..33] == key.x[..]
                    && point[33..] == key.y[..];
                if !matches {
                    return Err(Rejection::new(
                        Reason::JwkMismatch,
                        format!(
                            "JWK {} x/y is not the public key of its x5c certificate",
                            key.kid.as_deref().unwrap_or("-")
                        ),
                    ));
                }
            }
        }
        let info = CertificateInfo::from_parsed(&cert, &der)
            .map_err(|e| Rejection::new(Reason::BadCertificate, e.to_string()))?;
        if info.is_ca {
            return Err(Rejection::new(
                Reason::BadCertificate,
                "a CA certificate, not a device certificate",
            ));
        }
        let chain = self
            .chain(&der, &entry.intermediates, cache)
            .map_err(|r| match r {
                ChainRejection::NotYetValid => Rejection::new(
                    Reason::NotYetValid,
                    format!("valid from {}", info.not_before),
                ),
                ChainRejection::Expired => Rejection::new(
                    Reason::Expired,
                    format!("expired {}", info.not_after),
                ),
                ChainRejection::KeyUsage => Rejection::new(Reason::KeyUsage, r.to_string()),
                ChainRejection::Malformed(m) => {
                    Rejection::new(Reason::BadCertificate, format!("certificate: {m}"))
                }
                ChainRejection::Untrusted(why) => Rejection::new(
                    Reason::UntrustedIssuer,
                    format!(
                        "not signed by the named CA (issuer {}; {why}): register the CA that signed it, e.g. the vendor's signer intermediate for a JSON lines, CSV or PEM manifest",
                        cert.issuer()
                    ),
                ),
            })?
            .into_iter()
            .collect();
        match info.key_type {
            Some(k) if self.profile.allows_key_type(k) => {}
            Some(k) => {
                return Err(Rejection::new(
                    Reason::KeyTypeNotAllowed,
                    format!("key type {k} is not allowed by the profile"),
                ))
            }
            None => {
                return Err(Rejection::new(
                    Reason::KeyTypeNotAllowed,
                    "unsupported key type",
                ))
            }
        }
        let unique_id = entry
            .unique_id
            .take()
            .or_else(|| info.subject_cn.clone())
            .ok_or_else(|| {
                Rejection::new(
                    Reason::MissingUniqueId,
                    "the entry names no unique id and the certificate has no CN",
                )
            })?;
        let thing_name = match self.thing_name_from {
            None => entry.thing_name.take().unwrap_or_else(|| unique_id.clone()),
            Some(ThingNameFrom::UniqueId) => unique_id.clone(),
            Some(ThingNameFrom::Serial) => info.serial.to_string(),
            Some(ThingNameFrom::Cn) => info.subject_cn.clone().ok_or_else(|| {
                Rejection::new(Reason::InvalidThingName, "the certificate has no CN")
            })?,
        };
        let thing_name = ThingName::parse(&thing_name)
            .map_err(|e| Rejection::new(Reason::InvalidThingName, e.to_string()))?;
        idmint_registry::validate_name("unique id", &unique_id)
            .map_err(|e| Rejection::new(Reason::MissingUniqueId, e.to_string()))?;
        Ok(CheckedEntry {
            index: entry.index,
            unique_id,
            thing_name,
            attributes: entry.attributes,
            info,
            der,
            chain,
        })
    }

    /// Checks that `leaf` (DER) chains to the anchor, directly (`None`) or
    /// through the offered intermediate returned (the cache's copy).
    fn chain(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
        cache: &mut CheckCache,
    ) -> Result<Option<Arc<[u8]>>, ChainRejection> {
        let anchor = self.anchor.as_ref().map_err(|e| {
            ChainRejection::Untrusted(format!("the registered CA certificate does not parse: {e}"))
        })?;
        for der in intermediates {
            if let Some((der, accepted)) = cache.intermediates.get_key_value(der.as_slice()) {
                if anchor.verify_through(leaf, accepted).is_ok() {
                    return Ok(Some(der.clone()));
                }
            }
        }
        let offered: Vec<&[u8]> = intermediates.iter().map(Vec::as_slice).collect();
        match anchor.verify(leaf, &offered)? {
            Verified::Direct => Ok(None),
            Verified::Through { index, accepted } => {
                let der: Arc<[u8]> = Arc::from(offered[index]);
                if let Some(accepted) = accepted {
                    cache.intermediates.insert(der.clone(), accepted);
                }
                Ok(Some(der))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use idmint_pki::{CaBuilder, CertificateAuthority, DeviceKey, KeyType, SubjectValues};

    use super::*;

    fn device(ca: &CertificateAuthority, name: &str) -> Vec<u8> {
        let key = DeviceKey::generate(KeyType::P256).unwrap();
        ca.issue(
            &key.public_key().unwrap(),
            &Profile::device(),
            &SubjectValues::for_thing(name),
        )
        .unwrap()
        .der
    }

    #[test]
    fn the_intermediate_cache_keeps_every_verdict() {
        let root = CaBuilder::root("Vendor Root", KeyType::P256)
            .build()
            .unwrap();
        let signer = CaBuilder::issuing("Vendor Signer", KeyType::P256, &root)
            .build()
            .unwrap();
        // Same names, other keys: an impostor signer under another root.
        let other_root = CaBuilder::root("Vendor Root", KeyType::P256)
            .build()
            .unwrap();
        let impostor = CaBuilder::issuing("Vendor Signer", KeyType::P256, &other_root)
            .build()
            .unwrap();
        let checker = Checker::new(
            root.certificate_der().to_vec(),
            None,
            Profile::device(),
            None,
            OffsetDateTime::now_utc(),
        );
        let good = device(&signer, "good");
        let forged = device(&impostor, "forged");
        let direct = device(&root, "direct");
        let offered = [
            impostor.certificate_der().to_vec(),
            signer.certificate_der().to_vec(),
        ];
        let mut cache = CheckCache::default();
        for _ in 0..2 {
            let chain = |der: &[u8], cache: &mut CheckCache| {
                checker
                    .chain(der, &offered, cache)
                    .map(|via| via.map(|der| der.to_vec()))
            };
            assert_eq!(chain(&good, &mut cache), Ok(Some(offered[1].clone())));
            assert!(matches!(
                chain(&forged, &mut cache),
                Err(ChainRejection::Untrusted(_))
            ));
            assert_eq!(chain(&direct, &mut cache), Ok(None));
            assert_eq!(cache.intermediates.len(), 1);
        }
        let checker = Checker::new(
            b"not a certificate".to_vec(),
            None,
            Profile::device(),
            None,
            OffsetDateTime::now_utc(),
        );
        let r = checker.chain(&good, &offered, &mut cache);
        assert!(matches!(r, Err(ChainRejection::Untrusted(_))));
    }
}
