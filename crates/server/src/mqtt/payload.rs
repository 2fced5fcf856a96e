//! Fleet provisioning payloads in JSON or CBOR: the requests devices send
//! (parsed strictly, with messages a firmware engineer can act on) and the
//! responses, field for field as AWS IoT sends them.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::topics::Format;
use idmint_fleet::Rejection;

/// The largest request payload accepted, bytes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// CreateKeysAndCertificate request: an empty object (other fields are ignored).
#[derive(Debug, Deserialize)]
pub struct CreateRequest {}

/// CreateCertificateFromCsr request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsrRequest {
    /// PEM PKCS#10.
    pub certificate_signing_request: Option<String>,
}

/// RegisterThing request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// From the create response.
    pub certificate_ownership_token: Option<String>,
    /// Template parameters (strings).
    #[serde(default)]
    pub parameters: Option<BTreeMap<String, String>>,
}

/// CreateKeysAndCertificate / CreateCertificateFromCsr accepted.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedResponse {
    /// Hex SHA-256 of the DER.
    pub certificate_id: String,
    /// PEM.
    pub certificate_pem: String,
    /// PKCS#8 PEM (CreateKeysAndCertificate only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub private_key: Option<String>,
    /// Single-use, one hour.
    pub certificate_ownership_token: String,
}

/// RegisterThing accepted.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredResponse {
    /// The template's DeviceConfiguration.
    pub device_configuration: serde_json::Map<String, serde_json::Value>,
    /// The thing.
    pub thing_name: String,
}

/// Any rejection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedResponse {
    /// 400, 403, 404, 429 or 500.
    pub status_code: u16,
    /// A stable code.
    pub error_code: String,
    /// What to do about it; never internal detail.
    pub error_message: String,
    /// For an internal failure: the id the server's log has the detail
    /// under (an addition to AWS's shape, absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl From<&Rejection> for RejectedResponse {
    fn from(r: &Rejection) -> Self {
        RejectedResponse {
            status_code: r.status_code,
            error_code: r.error_code.to_string(),
            error_message: r.message.clone(),
            correlation_id: r.correlation_id.clone(),
        }
    }
}

/// Decodes a request payload. An empty payload is an empty object.
pub fn decode<T: DeserializeOwned>(format: Format, payload: &[u8]) -> Result<T, Rejection> {
    if payload.len() > MAX_REQUEST_BYTES {
        return Err(Rejection::invalid(
            "PayloadTooLarge",
            format!(
                "the payload is {} bytes; at most {MAX_REQUEST_BYTES} are accepted",
                payload.len()
            ),
        ));
    }
    let empty: &[u8] = match format {
        Format::Json => b"{}",
        Format::Cbor => &[0xa0],
    };
    let bytes = if payload.iter().all(u8::is_ascii_whitespace) {
        empty
    } else {
        payload
    };
    match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|e| {
            Rejection::invalid(
                "InvalidPayload",
                format!("the payload is not the expected JSON: {e}"),
            )
        }),
        Format::Cbor => ciborium::from_reader(bytes).map_err(|e| {
            Rejection::invalid(
                "InvalidPayload",
                format!("the payload is not the expected CBOR: {e}"),
            )
        }),
    }
}

/// Encodes a response payload.
pub fn encode<T: Serialize>(format: Format, value: &T) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec(value).unwrap_or_default(),
        Format::Cbor => {
            let mut out = Vec::new();
            let _ = ciborium::into_writer(value, &mut out);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_json_and_cbor_requests() {
        let r: RegisterRequest = decode(
            Format::Json,
            br#"{"certificateOwnershipToken":"t","parameters":{"SerialNumber":"1"}}"#,
        )
        .expect("json");
        assert_eq!(r.certificate_ownership_token.as_deref(), Some("t"));
        let mut cbor = Vec::new();
        ciborium::into_writer(
            &serde_json::json!({"certificateSigningRequest": "PEM"}),
            &mut cbor,
        )
        .expect("cbor");
        let c: CsrRequest = decode(Format::Cbor, &cbor).expect("cbor");
        assert_eq!(c.certificate_signing_request.as_deref(), Some("PEM"));
        let empty: CsrRequest = decode(Format::Json, b"").expect("empty");
        assert!(empty.certificate_signing_request.is_none());
    }

    #[test]
    fn refuses_garbage_with_a_reason() {
        let e = decode::<RegisterRequest>(Format::Json, b"{not json").expect_err("garbage");
        assert_eq!(e.error_code, "InvalidPayload");
        let e = decode::<RegisterRequest>(Format::Json, br#"{"parameters":{"a":5}}"#)
            .expect_err("number");
        assert!(e.message.contains("expected a string"), "{}", e.message);
        let e = decode::<RegisterRequest>(Format::Cbor, &[0xff, 0x00]).expect_err("cbor");
        assert_eq!(e.status_code, 400);
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert_eq!(
            decode::<CsrRequest>(Format::Json, &big)
                .expect_err("big")
                .error_code,
            "PayloadTooLarge"
        );
    }
}
