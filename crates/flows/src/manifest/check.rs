//! Checking a parsed entry: the vendor's signature and JWK (signed
//! manifests), then for every format the certificate itself: it parses, it
//! is an end-entity certificate, its issuer signature chains to the named
//! CA (directly or through an offered intermediate), it is valid now, its
//! extended key usage permits TLS client auth, and its key type is allowed.
//!
//! Vendor device certificates often carry no extended key usage at all, so
//! the chain is checked here (issuer keys through idmint-pki's
//! `VerifyingKey`, other algorithms through x509-parser) rather than by
//! webpki's client-auth path building: absent EKU is accepted, an EKU that
//! excludes clientAuth is not.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use idmint_pki::{CertificateInfo, Profile, SignatureEncoding, VerifyingKey};
use time::OffsetDateTime;
use x509_parser::oid_registry::{OID_EC_P256, OID_SIG_ECDSA_WITH_SHA256};
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

use super::{LogSigner, ManifestEntry, Reason, Rejection, ThingNameFrom};

/// An entry that passed every check that needs no registry lookup.
#[derive(Clone, Debug)]
pub struct CheckedEntry {
    /// Position in the manifest.
    pub index: u64,
    /// The unique id (device id of the thing).
    pub unique_id: String,
    /// The thing name.
    pub thing_name: String,
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
    anchor: Result<Issuer, String>,
    signer: Option<LogSigner>,
    profile: Profile,
    thing_name_from: Option<ThingNameFrom>,
    now: OffsetDateTime,
}

/// Per-thread memory: intermediates already found to chain to the anchor,
/// by DER, so a trusted one is neither parsed nor verified again.
#[derive(Default)]
pub struct CheckCache {
    intermediates: HashMap<Arc<[u8]>, Issuer>,
}

/// What the chain check needs of a trusted issuing certificate.
struct Issuer {
    /// Its subject name, raw DER (compared with the issuer names it signs).
    subject: Vec<u8>,
    /// Its DER SubjectPublicKeyInfo.
    spki: Vec<u8>,
    /// Its key parsed once for the usual case, ecdsa-with-SHA256 by a
    /// P-256 key; other algorithms are left to x509-parser.
    p256: Option<VerifyingKey>,
}

impl Issuer {
    fn new(cert: &X509Certificate<'_>) -> Self {
        let key = cert.public_key();
        let on_p256 = key
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| curve == OID_EC_P256);
        Issuer {
            subject: cert.subject().as_raw().to_vec(),
            spki: key.raw.to_vec(),
            p256: on_p256
                .then(|| VerifyingKey::p256(&key.subject_public_key.data, SignatureEncoding::Der))
                .and_then(Result::ok),
        }
    }

    /// Whether `cert` is signed by this issuer's key (as x509-parser's
    /// `verify_signature` decides).
    fn signed(&self, cert: &X509Certificate<'_>) -> bool {
        if let Some(key) = &self.p256 {
            if cert.signature_algorithm.algorithm == OID_SIG_ECDSA_WITH_SHA256 {
                return key.verifies(cert.tbs_certificate.as_ref(), &cert.signature_value.data);
            }
        }
        // The SPKI was taken from a parsed certificate, so it parses.
        SubjectPublicKeyInfo::from_der(&self.spki)
            .is_ok_and(|(_, key)| cert.verify_signature(Some(&key)).is_ok())
    }
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
        let anchor = X509Certificate::from_der(&anchor_der)
            .map(|(_, cert)| Issuer::new(&cert))
            .map_err(|e| e.to_string());
        Checker {
            anchor,
            signer,
            profile,
            thing_name_from,
            now,
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
            .chain(&cert, &entry.intermediates, cache)?
            .into_iter()
            .collect();
        if self.now < info.not_before {
            return Err(Rejection::new(
                Reason::NotYetValid,
                format!("valid from {}", info.not_before),
            ));
        }
        if self.now > info.not_after {
            return Err(Rejection::new(
                Reason::Expired,
                format!("expired {}", info.not_after),
            ));
        }
        if let Ok(Some(eku)) = cert.extended_key_usage() {
            if !eku.value.any && !eku.value.client_auth {
                return Err(Rejection::new(
                    Reason::KeyUsage,
                    "extended key usage excludes TLS client authentication",
                ));
            }
        }
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
            Some(ThingNameFrom::Serial) => info.serial.clone(),
            Some(ThingNameFrom::Cn) => info.subject_cn.clone().ok_or_else(|| {
                Rejection::new(Reason::InvalidThingName, "the certificate has no CN")
            })?,
        };
        idmint_registry::validate_name("thing name", &thing_name)
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

    /// Checks that `leaf` chains to the anchor, directly (`None`) or through
    /// the offered intermediate returned (the cache's copy).
    fn chain(
        &self,
        leaf: &X509Certificate<'_>,
        intermediates: &[Vec<u8>],
        cache: &mut CheckCache,
    ) -> Result<Option<Arc<[u8]>>, Rejection> {
        let untrusted = || {
            Rejection::new(
                Reason::UntrustedIssuer,
                format!("not signed by the named CA (issuer {})", leaf.issuer()),
            )
        };
        let anchor = self.anchor.as_ref().map_err(|e| {
            Rejection::new(
                Reason::UntrustedIssuer,
                format!("the registered CA certificate does not parse: {e}"),
            )
        })?;
        let issuer = leaf.issuer().as_raw();
        if issuer == anchor.subject {
            return if anchor.signed(leaf) {
                Ok(None)
            } else {
                Err(untrusted())
            };
        }
        for der in intermediates {
            if let Some((der, trusted)) = cache.intermediates.get_key_value(der.as_slice()) {
                if issuer != trusted.subject {
                    continue;
                }
                return if trusted.signed(leaf) {
                    Ok(Some(der.clone()))
                } else {
                    Err(untrusted())
                };
            }
            let Ok((_, inter)) = X509Certificate::from_der(der) else {
                continue;
            };
            if issuer != inter.subject().as_raw() {
                continue;
            }
            let ok = inter.is_ca()
                && inter.issuer().as_raw() == anchor.subject
                && inter
                    .validity()
                    .is_valid_at(x509_parser::time::ASN1Time::from(self.now))
                && anchor.signed(&inter);
            if !ok {
                continue;
            }
            let trusted = Issuer::new(&inter);
            let signed = trusted.signed(leaf);
            let der: Arc<[u8]> = Arc::from(der.as_slice());
            cache.intermediates.insert(der.clone(), trusted);
            return if signed {
                Ok(Some(der))
            } else {
                Err(untrusted())
            };
        }
        Err(untrusted())
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

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        X509Certificate::from_der(der).unwrap().1
    }

    #[test]
    fn issuer_signatures_agree_with_x509_parser() {
        for key_type in [KeyType::P256, KeyType::P384] {
            let root = CaBuilder::root("Vendor Root", key_type).build().unwrap();
            let issuer = Issuer::new(&parse(root.certificate_der()));
            assert_eq!(issuer.p256.is_some(), key_type == KeyType::P256);
            let other = CaBuilder::root("Vendor Root", key_type).build().unwrap();
            let ours = device(&root, "a");
            let theirs = device(&other, "b");
            assert!(issuer.signed(&parse(&ours)));
            assert!(!issuer.signed(&parse(&theirs)));
            let mut forged = ours.clone();
            let last = forged.len() - 1;
            forged[last] ^= 1;
            assert!(!issuer.signed(&parse(&forged)));
        }
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
                    .chain(&parse(der), &offered, cache)
                    .map(|via| via.map(|der| der.to_vec()))
                    .map_err(|r| r.reason)
            };
            assert_eq!(chain(&good, &mut cache), Ok(Some(offered[1].clone())));
            assert_eq!(chain(&forged, &mut cache), Err(Reason::UntrustedIssuer));
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
        let r = checker.chain(&parse(&good), &offered, &mut cache);
        assert_eq!(r.unwrap_err().reason, Reason::UntrustedIssuer);
    }
}
