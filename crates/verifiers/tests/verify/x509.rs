//! x509-parser as a verifier: each certificate's signature by its issuer,
//! its names, validity and extensions against what its kind must carry;
//! CRL signatures and entries.

use std::collections::BTreeSet;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// id-pkix-ocsp-nocheck.
const OCSP_NOCHECK: &str = "1.3.6.1.5.5.7.48.1.5";

/// What a kind of certificate must carry.
pub struct Expect {
    ca: bool,
    path_len: Option<u32>,
    key_usage: &'static [&'static str],
    not_key_usage: &'static [&'static str],
    /// The exact extended key usages (empty: no EKU extension).
    eku: Option<&'static [&'static str]>,
    common_name: Option<String>,
    ocsp_nocheck: bool,
    sans: &'static [&'static str],
}

impl Expect {
    fn base() -> Expect {
        Expect {
            ca: false,
            path_len: None,
            key_usage: &[],
            not_key_usage: &[],
            eku: None,
            common_name: None,
            ocsp_nocheck: false,
            sans: &[],
        }
    }

    /// A CA: basicConstraints CA, keyCertSign and cRLSign.
    pub fn ca() -> Expect {
        Expect {
            ca: true,
            key_usage: &["keyCertSign", "cRLSign"],
            ..Expect::base()
        }
    }

    /// An offline batch CA: path length 0, clientAuth only (the factory
    /// holds its key and must not mint TLS servers).
    pub fn batch_ca() -> Expect {
        Expect {
            path_len: Some(0),
            eku: Some(&["clientAuth"]),
            ..Expect::ca()
        }
    }

    /// A device (or claim) certificate for thing `cn`: clientAuth only, no
    /// CA powers.
    pub fn device(cn: &str) -> Expect {
        Expect {
            key_usage: &["digitalSignature"],
            not_key_usage: &["keyCertSign", "cRLSign"],
            eku: Some(&["clientAuth"]),
            common_name: Some(cn.to_string()),
            ..Expect::base()
        }
    }

    /// The server's TLS certificate for `localhost` and `127.0.0.1`.
    pub fn server() -> Expect {
        Expect {
            key_usage: &["digitalSignature"],
            not_key_usage: &["keyCertSign", "cRLSign"],
            eku: Some(&["serverAuth"]),
            sans: &["dns:localhost", "ip:127.0.0.1"],
            ..Expect::base()
        }
    }

    /// A delegated OCSP responder (RFC 6960 §4.2.2.2): OCSPSigning only,
    /// with id-pkix-ocsp-nocheck.
    pub fn ocsp_responder() -> Expect {
        Expect {
            key_usage: &["digitalSignature"],
            not_key_usage: &["keyCertSign", "cRLSign"],
            eku: Some(&["OCSPSigning"]),
            ocsp_nocheck: true,
            ..Expect::base()
        }
    }

    /// An offline batch CA's CRL signer: cRLSign and nothing else.
    pub fn crl_signer() -> Expect {
        Expect {
            key_usage: &["cRLSign"],
            not_key_usage: &["keyCertSign", "digitalSignature"],
            eku: Some(&[]),
            ..Expect::base()
        }
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| format!("parse: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the certificate", rest.len()));
    }
    Ok(cert)
}

/// Checks `der` as a certificate of the kind `expect`, issued by `issuer`
/// (itself, for a root).
pub fn check(der: &[u8], issuer_der: &[u8], expect: &Expect) -> Result<(), String> {
    let cert = parse(der)?;
    let issuer = parse(issuer_der)?;
    cert.verify_signature(Some(issuer.public_key()))
        .map_err(|e| format!("signature by the issuer: {e}"))?;
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(format!(
            "issuer {} is not {}",
            cert.issuer(),
            issuer.subject()
        ));
    }
    if !cert.validity().is_valid() {
        return Err(format!("not valid now: {:?}", cert.validity()));
    }
    if cert.version().0 != 2 {
        return Err(format!("version {} (v3 expected)", cert.version().0 + 1));
    }
    let bc = cert
        .basic_constraints()
        .map_err(|e| format!("basicConstraints: {e}"))?;
    let is_ca = bc.as_ref().is_some_and(|b| b.value.ca);
    if is_ca != expect.ca {
        return Err(format!(
            "basicConstraints CA is {is_ca}, expected {}",
            expect.ca
        ));
    }
    if expect.path_len.is_some() {
        let path_len = bc.and_then(|b| b.value.path_len_constraint);
        if path_len != expect.path_len {
            return Err(format!(
                "path length {path_len:?}, expected {:?}",
                expect.path_len
            ));
        }
    }
    let ku = cert
        .key_usage()
        .map_err(|e| format!("keyUsage: {e}"))?
        .ok_or("no keyUsage extension")?;
    if !ku.critical {
        return Err("keyUsage is not critical".into());
    }
    let has = |name: &str| match name {
        "digitalSignature" => ku.value.digital_signature(),
        "keyCertSign" => ku.value.key_cert_sign(),
        "cRLSign" => ku.value.crl_sign(),
        other => panic!("unknown key usage {other}"),
    };
    for usage in expect.key_usage {
        if !has(usage) {
            return Err(format!("keyUsage lacks {usage}: {}", ku.value));
        }
    }
    for usage in expect.not_key_usage {
        if has(usage) {
            return Err(format!("keyUsage has {usage}: {}", ku.value));
        }
    }
    if let Some(wanted) = expect.eku {
        let found: BTreeSet<&str> =
            match cert.extended_key_usage().map_err(|e| format!("EKU: {e}"))? {
                None => BTreeSet::new(),
                Some(eku) => {
                    let e = eku.value;
                    if e.any
                        || !e.other.is_empty()
                        || e.code_signing
                        || e.email_protection
                        || e.time_stamping
                    {
                        return Err(format!("unexpected extended key usage: {e:?}"));
                    }
                    [
                        (e.client_auth, "clientAuth"),
                        (e.server_auth, "serverAuth"),
                        (e.ocsp_signing, "OCSPSigning"),
                    ]
                    .into_iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, name)| name)
                    .collect()
                }
            };
        let wanted: BTreeSet<&str> = wanted.iter().copied().collect();
        if found != wanted {
            return Err(format!("extended key usage {found:?}, expected {wanted:?}"));
        }
    }
    if let Some(cn) = &expect.common_name {
        let found = common_name(der);
        if found.as_deref() != Some(cn.as_str()) {
            return Err(format!("common name {found:?}, expected {cn:?}"));
        }
    }
    let nocheck = cert
        .extensions()
        .iter()
        .any(|e| e.oid.to_id_string() == OCSP_NOCHECK);
    if nocheck != expect.ocsp_nocheck {
        return Err(format!("id-pkix-ocsp-nocheck present: {nocheck}"));
    }
    if !expect.sans.is_empty() {
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("subjectAltName: {e}"))?
            .ok_or("no subjectAltName")?;
        let found: BTreeSet<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => format!("dns:{d}"),
                GeneralName::IPAddress(ip) if ip.len() == 4 => {
                    format!("ip:{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
                }
                other => format!("{other:?}"),
            })
            .collect();
        let wanted: BTreeSet<String> = expect.sans.iter().map(|s| s.to_string()).collect();
        if found != wanted {
            return Err(format!("subjectAltName {found:?}, expected {wanted:?}"));
        }
    }
    // The key identifiers chain: the authority key id is the issuer's
    // subject key id.
    let ski_of = |c: &X509Certificate<'_>| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            })
    };
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    if expect.ca && ski_of(&cert).is_none() {
        return Err("a CA without a subject key identifier".into());
    }
    if der != issuer_der {
        match (aki, ski_of(&issuer)) {
            (Some(a), Some(s)) if a == s => {}
            (a, s) => {
                return Err(format!(
                    "authority key id {a:02x?} is not the issuer's subject key id {s:02x?}"
                ))
            }
        }
    }
    Ok(())
}

/// The certificate's common name.
pub fn common_name(der: &[u8]) -> Option<String> {
    let cert = parse(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The certificate's subject, DER.
pub fn subject(der: &[u8]) -> Vec<u8> {
    parse(der).expect("certificate").subject().as_raw().to_vec()
}

/// The certificate's serial number, the registry's form.
pub fn serial(der: &[u8]) -> String {
    super::serial_hex(parse(der).expect("certificate").raw_serial())
}

/// Checks a CRL: signed by `signer` and naming it as issuer, current, with a
/// CRL number; its entries as (serial, reason code).
pub fn crl(der: &[u8], signer_der: &[u8]) -> Result<Vec<(String, Option<u8>)>, String> {
    let (rest, crl) =
        CertificateRevocationList::from_der(der).map_err(|e| format!("parse: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the CRL", rest.len()));
    }
    let signer = parse(signer_der)?;
    crl.verify_signature(signer.public_key())
        .map_err(|e| format!("CRL signature: {e}"))?;
    if crl.issuer().as_raw() != signer.subject().as_raw() {
        return Err(format!(
            "CRL issuer {} is not {}",
            crl.issuer(),
            signer.subject()
        ));
    }
    if crl.crl_number().is_none() {
        return Err("no cRLNumber".into());
    }
    let next = crl.next_update().ok_or("no nextUpdate")?;
    let now = x509_parser::time::ASN1Time::now();
    if crl.last_update() > now || next < now {
        return Err(format!("not current: {} .. {next}", crl.last_update()));
    }
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| {
            (
                super::serial_hex(r.raw_serial()),
                r.reason_code().map(|(_, code)| code.0),
            )
        })
        .collect())
}
