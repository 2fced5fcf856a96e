//! PKCS#10 certificate signing requests: parsed once at the edge, with the
//! self-signature (proof of possession) checked, into a typed [`Csr`].

use x509_parser::prelude::{FromDer, X509CertificationRequest};

use crate::{KeyType, PkiError, PublicKey};

/// A PKCS#10 request whose signature has been verified.
#[derive(Clone, Debug)]
pub struct Csr {
    public_key: PublicKey,
    subject: String,
    common_name: Option<String>,
    der: Vec<u8>,
}

impl Csr {
    /// Parses and verifies a DER request.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (rest, req) = X509CertificationRequest::from_der(der)
            .map_err(|e| PkiError::MalformedCsr(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PkiError::MalformedCsr(format!(
                "{} trailing bytes after the request",
                rest.len()
            )));
        }
        let info = &req.certification_request_info;
        let spki_der = info.subject_pki.raw;
        // Identify the key type first so an unsupported key says so, rather
        // than failing as a bad signature.
        let public_key = PublicKey::from_spki_der(spki_der)?;
        req.verify_signature()
            .map_err(|_| PkiError::CsrSignatureInvalid)?;
        let common_name = info
            .subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        Ok(Csr {
            public_key,
            subject: info.subject.to_string(),
            common_name,
            der: der.to_vec(),
        })
    }

    /// Parses and verifies a PEM request (`CERTIFICATE REQUEST` or the
    /// older `NEW CERTIFICATE REQUEST` label).
    pub fn from_pem(pem_text: &[u8]) -> Result<Self, PkiError> {
        let block = pem::parse(pem_text).map_err(|e| PkiError::BadPem {
            expected: "CERTIFICATE REQUEST",
            reason: e.to_string(),
        })?;
        if block.tag() != "CERTIFICATE REQUEST" && block.tag() != "NEW CERTIFICATE REQUEST" {
            return Err(PkiError::BadPem {
                expected: "CERTIFICATE REQUEST",
                reason: format!("found a {} block", block.tag()),
            });
        }
        Self::from_der(block.contents())
    }

    /// Parses PEM if the bytes look like PEM, DER otherwise.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, PkiError> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"-----BEGIN") {
            Self::from_pem(trimmed)
        } else {
            Self::from_der(bytes)
        }
    }

    /// The requested public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.public_key.key_type()
    }

    /// The requested subject, RFC 4514 style (informational: the profile
    /// decides the issued subject).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The requested common name, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The request's DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}
