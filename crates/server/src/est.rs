//! EST (RFC 7030) under `/.well-known/est/` and `/.well-known/est/<label>/`,
//! where a label names a batch (its CA, profile and quota) or a CA.

use axum::body::Bytes;
use axum::extract::{FromRequest, OptionalFromRequestParts, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use idmint_fleet::Fleet;
use idmint_flows::access::{Action, AuthorizedIssuance, Principal};
use idmint_flows::issue::IssueOptions;
use idmint_flows::ThingName;
use idmint_pki::Csr;
use idmint_registry::{BatchId, CaKind, CertificateStatus, RegistryError};

use crate::auth::{authenticate, unauthorized};
use crate::{pkcs7, ApiError, ConnInfo, Shared};

/// The content type of a certs-only response.
pub const CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";

/// Decodes a base64 body (whitespace and line breaks allowed).
pub fn decode_base64_body(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(ApiError::bad_request("empty body"));
    }
    if compact.starts_with(b"-----BEGIN") {
        return Err(ApiError::bad_request(
            "the body is PEM: EST (RFC 7030) bodies are base64 DER without the BEGIN/END lines (openssl req -outform DER | base64)",
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "the body is not base64 ({e}): EST bodies are base64 DER (openssl req -outform DER | base64)"
            ))
        })
}

/// Checks the content type and parses a base64 PKCS#10 body, verifying its
/// proof of possession (what the fuzz target exercises).
pub fn parse_csr_body(content_type: Option<&str>, body: &[u8]) -> Result<Csr, ApiError> {
    let ct = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ct != "application/pkcs10" {
        return Err(ApiError::unsupported_media(format!(
            "expected Content-Type application/pkcs10, got {:?}",
            content_type.unwrap_or("")
        )));
    }
    let der = decode_base64_body(body)?;
    Csr::from_der(&der).map_err(|e| ApiError::bad_request(format!("bad certificate request: {e}")))
}

fn base64_lines(der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 2);
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out
}

fn base64_response(content_type: &'static str, der: &[u8]) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::HeaderName::from_static("content-transfer-encoding"),
                HeaderValue::from_static("base64"),
            ),
        ],
        base64_lines(der),
    )
        .into_response()
}

fn certs_response(certs: &[Vec<u8>]) -> Result<Response, ApiError> {
    let der = pkcs7::certs_only(certs).map_err(|e| ApiError::internal(format!("PKCS#7: {e}")))?;
    Ok(base64_response(CERTS_ONLY, &der))
}

/// Where an enrollment goes.
#[derive(Clone, Debug)]
struct Target {
    ca: String,
    profile: String,
    batch: Option<BatchId>,
}

/// What a label names: a batch (its CA, profile and quota) or one of our
/// issuing CAs. Root, claim, batch and outside CAs are not enrollment
/// targets.
async fn target(state: &Shared, label: Option<&str>) -> Result<Target, ApiError> {
    let store = state.idmint.store();
    let Some(label) = label else {
        return Ok(Target {
            ca: state.idmint.default_ca().to_string(),
            profile: "device".into(),
            batch: None,
        });
    };
    if let Some(b) = store.batch(label).await? {
        return Ok(Target {
            ca: b.ca,
            profile: b.profile,
            batch: Some(b.id),
        });
    }
    match store.ca(label).await? {
        Some(ca) if ca.kind == CaKind::Issuing => Ok(Target {
            ca: label.to_string(),
            profile: "device".into(),
            batch: None,
        }),
        Some(ca) => Err(ApiError::forbidden(format!(
            "CA {label:?} is a {} CA: devices enroll only under a batch or an issuing CA",
            ca.kind.as_str()
        ))),
        None => Err(ApiError::not_found(format!("no batch or CA {label:?}"))),
    }
}

/// `GET cacerts`.
async fn cacerts_for(state: &Shared, label: Option<&str>) -> Result<Response, ApiError> {
    let t = target(state, label).await?;
    let chain = state.idmint.chain(&t.ca).await?;
    certs_response(&chain)
}

/// An enrollment the access module allowed: where it goes, the thing it
/// creates (for a bootstrap certificate: its own name, not the CSR's), and
/// the proof the issuance flow takes.
struct Enrollment {
    target: Target,
    thing: Option<ThingName>,
    authorized: AuthorizedIssuance,
}

/// Who may enroll, and where: an enroll (or station, admin) token within
/// its batch, or a bootstrap certificate of a CA registered with
/// `--est-bootstrap`, once, into that CA's batch.
async fn enrollment(state: &Shared, est: &EstRequest) -> Result<Enrollment, ApiError> {
    let label = est.label();
    let principal = authenticate(state, &est.headers, est.conn.as_ref()).await?.ok_or_else(|| {
        unauthorized("authentication required: HTTP Basic with an enrollment token, or a bootstrap client certificate")
    })?;
    let (target, thing) = match &principal {
        Principal::Device { .. } => {
            return Err(ApiError::forbidden(
                "this certificate is already registered: use simplereenroll to renew it",
            ))
        }
        Principal::Bootstrap {
            id, thing, batch, ..
        } => {
            if let Some(done) = state.idmint.store().bootstrap_enrollment(id).await? {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "already_enrolled",
                    format!("this bootstrap certificate already enrolled (certificate {done}): renew with simplereenroll using that certificate"),
                ));
            }
            let thing = thing.clone().ok_or_else(|| {
                ApiError::bad_request(
                    "the bootstrap certificate has no subject CN to name the thing",
                )
            })?;
            let target = match (label, batch) {
                (None, None) => target(state, None).await?,
                (None, Some(b)) => target(state, Some(b)).await?,
                (Some(l), Some(b)) if l == b => target(state, Some(b)).await?,
                (Some(l), _) => {
                    return Err(ApiError::forbidden(format!(
                        "a bootstrap certificate may not choose the label {l:?}: enroll at /.well-known/est/{}simpleenroll",
                        batch.as_ref().map(|b| format!("{b}/")).unwrap_or_default()
                    )))
                }
            };
            // The CN of an outside CA's certificate: parsed here, before
            // anything is looked up or issued under it.
            let thing = ThingName::parse(&thing).map_err(RegistryError::from)?;
            (target, Some(thing))
        }
        _ => {
            let t = match (principal.batch(), label) {
                (Some(mine), Some(l)) if l != mine => {
                    let batch_ca = state.idmint.store().require_batch(mine).await?.ca;
                    if l != batch_ca {
                        return Err(ApiError::forbidden(format!(
                            "this token is for batch {mine}, not {l:?}"
                        )));
                    }
                    target(state, Some(mine)).await?
                }
                (Some(mine), _) => target(state, Some(mine)).await?,
                (None, l) => target(state, l).await?,
            };
            (t, None)
        }
    };
    let authorized = principal.authorize_issuance(Action::Enroll, target.batch.as_deref())?;
    Ok(Enrollment {
        target,
        thing,
        authorized,
    })
}

async fn simpleenroll_for(state: &Shared, est: &EstRequest) -> Result<Response, ApiError> {
    let e = enrollment(state, est).await?;
    let csr = parse_csr_body(est.content_type(), &est.body)?;
    if csr.common_name().is_none() && e.thing.is_none() {
        return Err(ApiError::bad_request("the CSR has no common name"));
    }
    let options = IssueOptions {
        profile: e.target.profile,
        ca: Some(e.target.ca),
        thing: e.thing,
        status: CertificateStatus::Active,
        batch: e.target.batch,
    };
    let issued = state
        .idmint
        .issue_from_csr(&e.authorized, &csr, &options)
        .await?;
    state.metrics.issued();
    certs_response(&[issued.certificate.der])
}

async fn simplereenroll_for(state: &Shared, est: &EstRequest) -> Result<Response, ApiError> {
    let chain = est
        .conn
        .as_ref()
        .map(|c| c.certs.as_slice())
        .unwrap_or_default();
    if chain.is_empty() {
        return Err(ApiError::unauthorized(
            "re-enrollment needs the current certificate as TLS client certificate",
        ));
    }
    let principal = state.idmint.principal_for_certificate(chain).await?;
    let authorized = principal.authorize_reenroll()?;
    let csr = parse_csr_body(est.content_type(), &est.body)?;
    let issued = Fleet::new(&state.idmint)
        .reenroll(&authorized, &csr, state.rotation_overlap_secs)
        .await?;
    state.metrics.issued();
    certs_response(&[issued.der])
}

async fn serverkeygen_for(state: &Shared, est: &EstRequest) -> Result<Response, ApiError> {
    let e = enrollment(state, est).await?;
    let csr = parse_csr_body(est.content_type(), &est.body)?;
    let thing = match (e.thing, csr.common_name()) {
        (Some(t), _) => t,
        (None, Some(cn)) => ThingName::parse(cn).map_err(RegistryError::from)?,
        (None, None) => return Err(ApiError::bad_request("the CSR has no common name")),
    };
    let options = IssueOptions {
        profile: e.target.profile,
        ca: Some(e.target.ca),
        thing: None,
        status: CertificateStatus::Active,
        batch: e.target.batch,
    };
    let (key, issued) = state
        .idmint
        .new_identity(&e.authorized, &thing, None, &options)
        .await?;
    state.metrics.issued();
    let p7 = pkcs7::certs_only(&[issued.certificate.der])
        .map_err(|e| ApiError::internal(format!("PKCS#7: {e}")))?;
    let pkcs8 = key.pkcs8_der();
    let boundary = "idmint-est-boundary";
    let body = zeroize::Zeroizing::new(format!(
        "--{boundary}\r\nContent-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--{boundary}\r\nContent-Type: {CERTS_ONLY}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--{boundary}--\r\n",
        zeroize::Zeroizing::new(base64_lines(&pkcs8)).as_str(),
        base64_lines(&p7)
    ));
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            format!("multipart/mixed; boundary={boundary}"),
        )],
        body.as_bytes().to_vec(),
    )
        .into_response())
}

/// `csrattrs`: we ask for an ECDSA-with-SHA256 signed request.
fn csrattrs_response() -> Result<Response, ApiError> {
    use der::Encode;
    let attrs = vec![const_oid::db::rfc5912::ECDSA_WITH_SHA_256];
    let der = attrs
        .to_der()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(base64_response("application/csrattrs", &der))
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// One EST request as its handler takes it: the label when the path is
/// `/.well-known/est/<label>/…`, the headers, the TLS connection and the
/// body. The labelled and the unlabelled route of an operation both take it,
/// so each pair of handlers is one call to the same function.
pub struct EstRequest {
    label: Option<String>,
    headers: HeaderMap,
    conn: Option<ConnInfo>,
    body: Bytes,
}

impl EstRequest {
    fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    fn content_type(&self) -> Option<&str> {
        content_type(&self.headers)
    }
}

impl FromRequest<Shared> for EstRequest {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Shared) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let label = <Path<String> as OptionalFromRequestParts<Shared>>::from_request_parts(
            &mut parts, state,
        )
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?
        .map(|Path(label)| label);
        let conn = parts.extensions.get::<ConnInfo>().cloned();
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
        Ok(EstRequest {
            label,
            headers: parts.headers,
            conn,
            body,
        })
    }
}

/// CA certificates.
#[utoipa::path(get, path = "/.well-known/est/cacerts", tag = "est", responses((status = 200, description = "base64 PKCS#7 certs-only", content_type = "application/pkcs7-mime")))]
pub async fn cacerts(State(s): State<Shared>, est: EstRequest) -> Result<Response, ApiError> {
    cacerts_for(&s, est.label()).await
}

/// CA certificates for a batch or CA.
#[utoipa::path(get, path = "/.well-known/est/{label}/cacerts", tag = "est", params(("label" = String, Path, description = "batch id or CA name")), responses((status = 200, description = "base64 PKCS#7 certs-only", content_type = "application/pkcs7-mime")))]
pub async fn cacerts_label(State(s): State<Shared>, est: EstRequest) -> Result<Response, ApiError> {
    cacerts_for(&s, est.label()).await
}

/// Enrollment (HTTP Basic enrollment token, or bootstrap client certificate).
#[utoipa::path(post, path = "/.well-known/est/simpleenroll", tag = "est", request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "base64 PKCS#7 certs-only"), (status = 401, description = "no or bad credentials")))]
pub async fn simpleenroll(State(s): State<Shared>, est: EstRequest) -> Result<Response, ApiError> {
    simpleenroll_for(&s, &est).await
}

/// Enrollment into a batch or CA.
#[utoipa::path(post, path = "/.well-known/est/{label}/simpleenroll", tag = "est", params(("label" = String, Path, description = "batch id or CA name")), request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "base64 PKCS#7 certs-only")))]
pub async fn simpleenroll_label(
    State(s): State<Shared>,
    est: EstRequest,
) -> Result<Response, ApiError> {
    simpleenroll_for(&s, &est).await
}

/// Re-enrollment (rotation) with the current certificate as TLS client certificate.
#[utoipa::path(post, path = "/.well-known/est/simplereenroll", tag = "est", request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "base64 PKCS#7 certs-only")))]
pub async fn simplereenroll(
    State(s): State<Shared>,
    est: EstRequest,
) -> Result<Response, ApiError> {
    simplereenroll_for(&s, &est).await
}

/// Re-enrollment (the label is ignored: the current certificate decides).
#[utoipa::path(post, path = "/.well-known/est/{label}/simplereenroll", tag = "est", params(("label" = String, Path, description = "ignored")), request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "base64 PKCS#7 certs-only")))]
pub async fn simplereenroll_label(
    State(s): State<Shared>,
    est: EstRequest,
) -> Result<Response, ApiError> {
    simplereenroll_for(&s, &est).await
}

/// CSR attributes.
#[utoipa::path(get, path = "/.well-known/est/csrattrs", tag = "est", responses((status = 200, description = "base64 CsrAttrs", content_type = "application/csrattrs")))]
pub async fn csrattrs() -> Result<Response, ApiError> {
    csrattrs_response()
}

/// CSR attributes.
#[utoipa::path(get, path = "/.well-known/est/{label}/csrattrs", tag = "est", params(("label" = String, Path, description = "batch id or CA name")), responses((status = 200, description = "base64 CsrAttrs")))]
pub async fn csrattrs_label() -> Result<Response, ApiError> {
    csrattrs_response()
}

/// Server-side key generation.
#[utoipa::path(post, path = "/.well-known/est/serverkeygen", tag = "est", request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "multipart/mixed: PKCS#8 key and PKCS#7 certs-only")))]
pub async fn serverkeygen(State(s): State<Shared>, est: EstRequest) -> Result<Response, ApiError> {
    serverkeygen_for(&s, &est).await
}

/// Server-side key generation into a batch or CA.
#[utoipa::path(post, path = "/.well-known/est/{label}/serverkeygen", tag = "est", params(("label" = String, Path, description = "batch id or CA name")), request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "multipart/mixed")))]
pub async fn serverkeygen_label(
    State(s): State<Shared>,
    est: EstRequest,
) -> Result<Response, ApiError> {
    serverkeygen_for(&s, &est).await
}
