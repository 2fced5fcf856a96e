//! OCSP responses decoded by RustCrypto's x509-ocsp, their signatures
//! checked by x509-parser: status successful, each certificate's status,
//! thisUpdate/nextUpdate around now, the responder named, and the signature
//! by the responder certificate in the response (or the CA itself).

use der::{Decode, Encode};
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus, ResponderId};
use x509_parser::prelude::FromDer;

/// What a response says.
pub struct Parsed {
    /// (serial in the registry's form, `good` / `revoked` / `unknown`), in
    /// the response's order.
    pub statuses: Vec<(String, &'static str)>,
    /// The responder certificate carried in the response, DER.
    pub responder: Option<Vec<u8>>,
}

/// Decodes and checks a DER `OCSPResponse` for certificates of `issuer`.
pub fn check(der: &[u8], issuer_der: &[u8]) -> Result<Parsed, String> {
    let response = OcspResponse::from_der(der).map_err(|e| format!("OCSPResponse: {e}"))?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(format!("status {:?}", response.response_status));
    }
    let bytes = response.response_bytes.ok_or("no responseBytes")?;
    if bytes.response_type.to_string() != "1.3.6.1.5.5.7.48.1.1" {
        return Err(format!("response type {}", bytes.response_type));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| format!("BasicOCSPResponse: {e}"))?;
    let responder = match &basic.certs {
        Some(certs) if !certs.is_empty() => Some(
            certs[0]
                .to_der()
                .map_err(|e| format!("responder certificate: {e}"))?,
        ),
        _ => None,
    };
    let signer_der = responder.as_deref().unwrap_or(issuer_der);
    let (_, signer) = x509_parser::certificate::X509Certificate::from_der(signer_der)
        .map_err(|e| format!("signer: {e}"))?;
    if let ResponderId::ByName(name) = &basic.tbs_response_data.responder_id {
        let name = name.to_der().map_err(|e| e.to_string())?;
        if name != signer.subject().as_raw() {
            return Err("responderID names another certificate than the signer".into());
        }
    }
    let tbs = basic
        .tbs_response_data
        .to_der()
        .map_err(|e| format!("tbsResponseData: {e}"))?;
    let algorithm_der = basic
        .signature_algorithm
        .to_der()
        .map_err(|e| e.to_string())?;
    let (_, algorithm) = x509_parser::x509::AlgorithmIdentifier::from_der(&algorithm_der)
        .map_err(|e| format!("signature algorithm: {e}"))?;
    let signature = x509_parser::der_parser::asn1_rs::BitString {
        unused_bits: 0,
        data: basic.signature.raw_bytes().into(),
    };
    x509_parser::verify::verify_signature(signer.public_key(), &algorithm, &signature, &tbs)
        .map_err(|e| format!("response signature: {e}"))?;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    let mut statuses = Vec::new();
    for single in &basic.tbs_response_data.responses {
        let this = single.this_update.0.to_unix_duration();
        let next = single
            .next_update
            .as_ref()
            .ok_or("a response without nextUpdate")?
            .0
            .to_unix_duration();
        if this > now + std::time::Duration::from_secs(60) || next <= now {
            return Err(format!("not current: {this:?} .. {next:?} (now {now:?})"));
        }
        let status = match single.cert_status {
            CertStatus::Good(_) => "good",
            CertStatus::Revoked(_) => "revoked",
            CertStatus::Unknown(_) => "unknown",
        };
        statuses.push((
            super::serial_hex(single.cert_id.serial_number.as_bytes()),
            status,
        ));
    }
    Ok(Parsed {
        statuses,
        responder,
    })
}
