//! TPM 2.0 attestation over HTTPS (`docs/tpm.md`): `POST /api/v1/tpm/attest`
//! and `POST /api/v1/tpm/activate`. The handlers decode the JSON bodies
//! (binary fields in standard base64) and call the attestation service, which
//! decides everything.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use idmint_attest::{ActivateRequest, AttestRequest, TpmAttestation};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::Shared;

/// Step 1 of TPM attestation: the device's EK certificate, AK and identity key.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TpmAttestBody {
    /// The batch to issue in (default: the enroll token's batch).
    #[serde(default)]
    pub batch: Option<String>,
    /// The EK certificate, DER, base64.
    pub ek_certificate: String,
    /// Intermediate CA certificates between the EK certificate and a
    /// registered TPM manufacturer CA, DER, base64.
    #[serde(default)]
    pub ek_chain: Vec<String>,
    /// The AK's TPM2B_PUBLIC, base64.
    pub ak_public: String,
    /// The identity key's TPM2B_PUBLIC, base64.
    pub identity_public: String,
    /// A PKCS#10 request for the identity key, DER, base64; its CN names the thing.
    pub csr: String,
}

/// Step 1's answer: the credential for `TPM2_ActivateCredential` and the nonce.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TpmChallengeBody {
    /// The session to activate.
    pub session: String,
    /// TPM2B_ID_OBJECT, base64.
    pub credential_blob: String,
    /// TPM2B_ENCRYPTED_SECRET, base64.
    pub encrypted_secret: String,
    /// The qualifying data for `TPM2_Certify`, base64.
    pub nonce: String,
    /// When the session expires (Unix seconds).
    pub expires: i64,
}

/// Step 2: the activated secret and `TPM2_Certify` of the identity key by the AK.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TpmActivateBody {
    /// The session id from step 1.
    pub session: String,
    /// The secret `TPM2_ActivateCredential` returned, base64.
    pub secret: String,
    /// TPMS_ATTEST from `TPM2_Certify`, base64.
    pub certify_info: String,
    /// TPMT_SIGNATURE from `TPM2_Certify`, base64.
    pub signature: String,
}

/// Step 2's answer: the certificate for the TPM-resident identity key.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TpmIdentityBody {
    /// The certificate id (SHA-256 of its DER, hex).
    pub id: String,
    /// The thing it is attached to.
    pub thing: String,
    /// The certificate, PEM.
    pub pem: String,
    /// The issuing chain, PEM, issuing CA first.
    pub chain: Vec<String>,
    /// SHA-256 (hex) of the TPM's EK public key, recorded with the identity.
    pub ek_sha256: String,
}

/// Step 1 of TPM attestation: checks the EK certificate, the AK and the
/// identity key, and answers a credential only that TPM can activate.
#[utoipa::path(post, path = "/api/v1/tpm/attest", tag = "tpm", request_body(content = TpmAttestBody), responses((status = 200, description = "the session, credential and nonce", body = TpmChallengeBody), (status = 400, description = "refused, with the reason"), (status = 409, description = "this TPM already has an identity in the batch")))]
pub async fn tpm_attest(
    Caller(who): Caller,
    State(s): State<Shared>,
    body: Bytes,
) -> Result<Json<TpmChallengeBody>, ApiError> {
    let b: TpmAttestBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))?;
    let req = AttestRequest {
        batch: b.batch,
        ek_certificate: decode("ek_certificate", &b.ek_certificate)?,
        ek_chain: b
            .ek_chain
            .iter()
            .map(|c| decode("ek_chain", c))
            .collect::<Result<_, _>>()?,
        ak_public: decode("ak_public", &b.ak_public)?,
        identity_public: decode("identity_public", &b.identity_public)?,
        csr: decode("csr", &b.csr)?,
    };
    let c = TpmAttestation::new(&s.idmint).attest(&who, &req).await?;
    Ok(Json(TpmChallengeBody {
        session: c.session,
        credential_blob: encode(&c.credential_blob),
        encrypted_secret: encode(&c.encrypted_secret),
        nonce: encode(&c.nonce),
        expires: c.expires,
    }))
}

/// Step 2 of TPM attestation: checks the activated secret and the AK's
/// certification of the identity key, and issues its certificate.
#[utoipa::path(post, path = "/api/v1/tpm/activate", tag = "tpm", request_body(content = TpmActivateBody), responses((status = 201, description = "the certificate", body = TpmIdentityBody), (status = 400, description = "refused, with the reason"), (status = 409, description = "session used or expired, clone, or quota exhausted")))]
pub async fn tpm_activate(
    Caller(who): Caller,
    State(s): State<Shared>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: TpmActivateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))?;
    let secret = Zeroizing::new(b.secret);
    let req = ActivateRequest {
        session: b.session,
        secret: Zeroizing::new(decode("secret", &secret)?),
        certify_info: decode("certify_info", &b.certify_info)?,
        signature: decode("signature", &b.signature)?,
    };
    let done = TpmAttestation::new(&s.idmint).activate(&who, &req).await?;
    s.metrics.issued();
    let answer = TpmIdentityBody {
        id: done.issued.certificate.info.id.to_string(),
        thing: done.issued.thing.to_string(),
        pem: done.issued.certificate.pem(),
        chain: done
            .chain
            .iter()
            .map(|d| idmint_pki::to_pem("CERTIFICATE", d))
            .collect(),
        ek_sha256: done.ek_sha256,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

fn decode(field: &str, value: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| ApiError::bad_request(format!("{field}: not base64: {e}")))
}

fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
