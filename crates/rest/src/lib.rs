//! The bodies of idmint's REST API that more than one side writes or reads:
//! the server's handlers deserialize them, its clients (the remote station,
//! `idmint station run --server`) serialize them, so the two cannot drift
//! apart. Field names are the wire contract (the server's OpenAPI
//! document): renaming one breaks stations in the field.

use idmint_types::CertificateId;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/batches/{id}/certificates`: a CSR to issue against a batch.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CsrRequest {
    /// PEM PKCS#10 request.
    pub csr: String,
    /// Thing name (default: the CSR's common name).
    pub thing: Option<String>,
    /// Compatibility only: the batch's policy (`batch create
    /// --pending-activation`) decides; `true` asks for `PENDING_ACTIVATION`
    /// on a batch whose policy is not, `false` is ignored.
    #[serde(default)]
    pub pending: bool,
    /// Compatibility only: the batch's policy (`batch create
    /// --refuse-clones`) decides whether a thing that already holds a live
    /// certificate is refused (`409 clone`); `true` asks for it on a batch
    /// whose policy does not, `false` is ignored. A public key that is
    /// already certified is refused always.
    #[serde(default, rename = "refuseClones")]
    pub refuse_clones: bool,
}

/// The `201` answer to a [`CsrRequest`].
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuedInBatch {
    /// The certificate id (SHA-256 of its DER, hex).
    #[schema(value_type = String)]
    pub id: CertificateId,
    /// The thing it is attached to.
    pub thing: String,
    /// The certificate, PEM.
    pub pem: String,
    /// The issuing CA's chain, issuer first, PEM each.
    pub chain: Vec<String>,
}

/// `POST /api/v1/batches/{id}/certificates/{cert_id}/spoil`: a remote
/// station's report of a certificate that never became usable.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpoilRequest {
    /// Why: the failed step and what went wrong, e.g. `prove: bad proof`.
    pub reason: Option<String>,
}

/// `POST /api/v1/batches/{id}/certificates/{cert_id}/activate`: a remote
/// station's report that a device installed its certificate and proved its
/// key.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionedRequest {
    /// The device's hardware id.
    pub hw_id: Option<String>,
    /// Whether the device's credential storage was locked.
    #[serde(default)]
    pub locked: bool,
}

/// The body of every error answer. A 4xx carries a message for people; a
/// 5xx carries only `"internal error"` and a correlation id to quote to
/// the operator, whose log holds the detail under that id.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// A short machine-readable code, e.g. `not_found`, `clone`.
    #[serde(default)]
    pub error: Option<String>,
    /// What went wrong.
    #[serde(default)]
    pub message: Option<String>,
    /// For a 5xx: the id the server logged the detail under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_names_stay_what_stations_in_the_field_send() {
        let csr = CsrRequest {
            csr: "PEM".into(),
            thing: Some("dev-1".into()),
            pending: true,
            refuse_clones: true,
        };
        assert_eq!(
            serde_json::to_value(&csr).unwrap_or_default(),
            serde_json::json!({"csr": "PEM", "thing": "dev-1", "pending": true, "refuseClones": true})
        );
        let provisioned = ProvisionedRequest {
            hw_id: Some("hw".into()),
            locked: true,
        };
        assert_eq!(
            serde_json::to_value(&provisioned).unwrap_or_default(),
            serde_json::json!({"hwId": "hw", "locked": true})
        );
        let error = ErrorBody {
            error: Some("internal".into()),
            message: Some("internal error".into()),
            correlation_id: Some("0123456789abcdef".into()),
        };
        assert_eq!(
            serde_json::to_value(&error).unwrap_or_default(),
            serde_json::json!({"error": "internal", "message": "internal error", "correlationId": "0123456789abcdef"})
        );
    }

    #[test]
    fn old_and_minimal_bodies_still_parse() {
        let csr: CsrRequest = serde_json::from_str(r#"{"csr":"PEM"}"#).expect("minimal CSR body");
        assert!(csr.thing.is_none() && !csr.pending && !csr.refuse_clones);
        let p: ProvisionedRequest = serde_json::from_str(r#"{"hwId":null}"#).expect("provisioned");
        assert!(p.hw_id.is_none() && !p.locked);
        let e: ErrorBody = serde_json::from_str("{}").expect("an empty error body");
        assert!(e.error.is_none() && e.message.is_none());
    }
}
