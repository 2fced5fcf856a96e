//! EST (RFC 7030) under `/.well-known/est/` and `/.well-known/est/<label>/`,
//! where a label names a batch (its CA, profile and quota) or a CA.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine;
use idmint_flows::issue::IssueOptions;
use idmint_pki::{CertificateInfo, Csr, DeviceKey, SubjectValues};
use idmint_registry::{CertificateStatus, Role};

use crate::auth::{client_certificate, parse_authorization, ClientCert, Credentials};
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
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| ApiError::bad_request(format!("the body is not base64: {e}")))
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
    batch: Option<String>,
}

async fn target(state: &Shared, label: Option<&str>) -> Result<Target, ApiError> {
    let store = state.idmint.store();
    match label {
        None => Ok(Target {
            ca: state.idmint.default_ca().to_string(),
            profile: "device".into(),
            batch: None,
        }),
        Some(label) => {
            if let Some(b) = store.batch(label).await? {
                return Ok(Target {
                    ca: b.ca,
                    profile: b.profile,
                    batch: Some(b.id),
                });
            }
            if store.ca(label).await?.is_some() {
                return Ok(Target {
                    ca: label.to_string(),
                    profile: "device".into(),
                    batch: None,
                });
            }
            Err(ApiError::not_found(format!("no batch or CA {label:?}")))
        }
    }
}

async fn batch_target(state: &Shared, batch: &str) -> Result<Target, ApiError> {
    let b = state.idmint.store().require_batch(batch).await?;
    Ok(Target {
        ca: b.ca,
        profile: b.profile,
        batch: Some(b.id),
    })
}

/// `GET cacerts`.
async fn cacerts_for(state: &Shared, label: Option<&str>) -> Result<Response, ApiError> {
    let t = target(state, label).await?;
    let chain = state.idmint.chain(&t.ca).await?;
    certs_response(&chain)
}

/// Who may enroll, and where: an enroll (or station, admin) token, or a
/// bootstrap certificate.
async fn enrollment_target(
    state: &Shared,
    label: Option<&str>,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
) -> Result<(String, Target), ApiError> {
    let challenge = |m: &str| {
        let mut e = ApiError::unauthorized(m);
        e.basic_challenge = true;
        e
    };
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| challenge("malformed Authorization header"))?;
        let token = match parse_authorization(value)? {
            Credentials::Basic(name, secret) => {
                state.idmint.token_for_basic(&name, &secret).await?
            }
            Credentials::Bearer(secret) => state.idmint.token_for_secret(&secret).await?,
        }
        .ok_or_else(|| challenge("unknown or revoked token"))?;
        if !matches!(token.role, Role::Enroll | Role::Station | Role::Admin) {
            return Err(ApiError::forbidden(format!(
                "a {} token may not enroll",
                token.role
            )));
        }
        let labelled = match label {
            Some(l) => Some(target(state, Some(l)).await?),
            None => None,
        };
        let t = match (&token.batch, labelled) {
            (Some(b), Some(l))
                if l.batch.as_deref() != Some(b.as_str())
                    && l.ca != state.idmint.store().require_batch(b).await?.ca =>
            {
                return Err(ApiError::forbidden(format!(
                    "token {} is for batch {b}",
                    token.name
                )))
            }
            (Some(b), _) => batch_target(state, b).await?,
            (None, Some(l)) => l,
            (None, None) => target(state, None).await?,
        };
        if token.role != Role::Admin && t.batch.is_none() {
            return Err(ApiError::forbidden("this token is not scoped to a batch"));
        }
        return Ok((format!("token:{}", token.name), t));
    }
    match client_certificate(state, conn).await? {
        Some(ClientCert::Bootstrap { id, .. }) => Ok((format!("cert:{id}"), target(state, label).await?)),
        Some(ClientCert::Registered(_)) => Err(ApiError::forbidden(
            "this certificate is already registered: use simplereenroll to renew it",
        )),
        None => Err(challenge("authentication required: HTTP Basic with an enrollment token, or a bootstrap client certificate")),
    }
}

async fn simpleenroll_for(
    state: &Shared,
    label: Option<&str>,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (actor, t) = enrollment_target(state, label, headers, conn).await?;
    let csr = parse_csr_body(content_type(headers), body)?;
    if csr.common_name().is_none() {
        return Err(ApiError::bad_request("the CSR has no common name"));
    }
    let options = IssueOptions {
        profile: t.profile,
        ca: Some(t.ca),
        thing: None,
        status: CertificateStatus::Active,
        batch: t.batch,
    };
    let issued = state.idmint.issue_from_csr(&actor, &csr, &options).await?;
    state.metrics.issued();
    certs_response(&[issued.certificate.der])
}

async fn simplereenroll_for(
    state: &Shared,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let old = match client_certificate(state, conn).await? {
        Some(ClientCert::Registered(c)) => *c,
        Some(ClientCert::Bootstrap { .. }) => {
            return Err(ApiError::forbidden(
                "a bootstrap certificate cannot re-enroll: use simpleenroll",
            ))
        }
        None => {
            return Err(ApiError::unauthorized(
                "re-enrollment needs the current certificate as TLS client certificate",
            ))
        }
    };
    let csr = parse_csr_body(content_type(headers), body)?;
    let old_info = CertificateInfo::from_der(&old.der)?;
    let thing = old
        .thing
        .clone()
        .ok_or_else(|| ApiError::forbidden("the certificate is attached to no thing"))?;
    let cn_ok = csr
        .common_name()
        .is_some_and(|cn| Some(cn) == old_info.subject_cn.as_deref() || cn == thing);
    if !cn_ok && csr.subject() != old_info.subject {
        return Err(ApiError::forbidden(format!(
            "the CSR subject {:?} does not match the current certificate's {:?}",
            csr.subject(),
            old_info.subject
        )));
    }
    let profile = match &old.batch {
        Some(b) => state
            .idmint
            .store()
            .batch(b)
            .await?
            .map(|b| b.profile)
            .unwrap_or_else(|| "device".into()),
        None => "device".into(),
    };
    let actor = format!("cert:{}", old.id);
    let options = IssueOptions {
        profile,
        ca: Some(old.ca.clone()),
        thing: Some(thing.clone()),
        status: CertificateStatus::Active,
        batch: None,
    };
    let mut values = SubjectValues::for_thing(&thing);
    if let Some(cn) = csr.common_name() {
        values.set("csr_cn", cn);
    }
    let issued = state
        .idmint
        .issue_for_public_key(&actor, csr.public_key(), &thing, values, &options)
        .await?;
    state.metrics.issued();
    let overlap = state.rotation_overlap_secs;
    let mut tx = state.idmint.store().begin(&actor).await?;
    if overlap == 0 {
        tx.set_certificate_status(&old.id, CertificateStatus::Inactive, None)
            .await?;
    } else {
        let retire =
            idmint_registry::now().saturating_add(i64::try_from(overlap).unwrap_or(i64::MAX / 2));
        tx.insert_rotation(&old.id, &issued.certificate.info.id, retire)
            .await?;
    }
    tx.commit().await?;
    certs_response(&[issued.certificate.der])
}

async fn serverkeygen_for(
    state: &Shared,
    label: Option<&str>,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (actor, t) = enrollment_target(state, label, headers, conn).await?;
    let csr = parse_csr_body(content_type(headers), body)?;
    let thing = csr
        .common_name()
        .ok_or_else(|| ApiError::bad_request("the CSR has no common name"))?
        .to_string();
    let key = DeviceKey::generate(state.idmint.config().key_type)?;
    let options = IssueOptions {
        profile: t.profile,
        ca: Some(t.ca),
        thing: None,
        status: CertificateStatus::Active,
        batch: t.batch,
    };
    let mut values = SubjectValues::for_thing(&thing);
    values.set("csr_cn", thing.as_str());
    let issued = state
        .idmint
        .issue_for_public_key(&actor, &key.public_key()?, &thing, values, &options)
        .await?;
    state.metrics.issued();
    let p7 = pkcs7::certs_only(&[issued.certificate.der])
        .map_err(|e| ApiError::internal(format!("PKCS#7: {e}")))?;
    let pkcs8 = key.pkcs8_der();
    let boundary = "idmint-est-boundary";
    let body = zeroize::Zeroizing::new(format!(
        "--{boundary}\r\nContent-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--{boundary}\r\nContent-Type: {CERTS_ONLY}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--{boundary}--\r\n",
        base64_lines(&pkcs8),
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

type Conn = Option<Extension<ConnInfo>>;

macro_rules! conn {
    ($c:expr) => {
        $c.as_ref().map(|Extension(c)| c)
    };
}

/// CA certificates.
#[utoipa::path(get, path = "/.well-known/est/cacerts", tag = "est", responses((status = 200, description = "base64 PKCS#7 certs-only", content_type = "application/pkcs7-mime")))]
pub async fn cacerts(State(s): State<Shared>) -> Result<Response, ApiError> {
    cacerts_for(&s, None).await
}

/// CA certificates for a batch or CA.
#[utoipa::path(get, path = "/.well-known/est/{label}/cacerts", tag = "est", params(("label" = String, Path, description = "batch id or CA name")), responses((status = 200, description = "base64 PKCS#7 certs-only", content_type = "application/pkcs7-mime")))]
pub async fn cacerts_label(
    State(s): State<Shared>,
    Path(label): Path<String>,
) -> Result<Response, ApiError> {
    cacerts_for(&s, Some(&label)).await
}

/// Enrollment (HTTP Basic enrollment token, or bootstrap client certificate).
#[utoipa::path(post, path = "/.well-known/est/simpleenroll", tag = "est", request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "base64 PKCS#7 certs-only"), (status = 401, description = "no or bad credentials")))]
pub async fn simpleenroll(
    State(s): State<Shared>,
    c: Conn,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    simpleenroll_for(&s, None, &h, conn!(c), &body).await
}

/// Enrollment into a batch or CA.
#[utoipa::path(post, path = "/.well-known/est/{label}/simpleenroll", tag = "est", params(("label" = String, Path, description = "batch id or CA name")), request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "base64 PKCS#7 certs-only")))]
pub async fn simpleenroll_label(
    State(s): State<Shared>,
    Path(label): Path<String>,
    c: Conn,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    simpleenroll_for(&s, Some(&label), &h, conn!(c), &body).await
}

/// Re-enrollment (rotation) with the current certificate as TLS client certificate.
#[utoipa::path(post, path = "/.well-known/est/simplereenroll", tag = "est", request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "base64 PKCS#7 certs-only")))]
pub async fn simplereenroll(
    State(s): State<Shared>,
    c: Conn,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    simplereenroll_for(&s, &h, conn!(c), &body).await
}

/// Re-enrollment (the label is ignored: the current certificate decides).
#[utoipa::path(post, path = "/.well-known/est/{label}/simplereenroll", tag = "est", params(("label" = String, Path, description = "ignored")), request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "base64 PKCS#7 certs-only")))]
pub async fn simplereenroll_label(
    State(s): State<Shared>,
    Path(_label): Path<String>,
    c: Conn,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    simplereenroll_for(&s, &h, conn!(c), &body).await
}

/// CSR attributes.
#[utoipa::path(get, path = "/.well-known/est/csrattrs", tag = "est", responses((status = 200, description = "base64 CsrAttrs", content_type = "application/csrattrs")))]
pub async fn csrattrs() -> Result<Response, ApiError> {
    csrattrs_response()
}

/// CSR attributes.
#[utoipa::path(get, path = "/.well-known/est/{label}/csrattrs", tag = "est", params(("label" = String, Path, description = "batch id or CA name")), responses((status = 200, description = "base64 CsrAttrs")))]
pub async fn csrattrs_label(Path(_label): Path<String>) -> Result<Response, ApiError> {
    csrattrs_response()
}

/// Server-side key generation.
#[utoipa::path(post, path = "/.well-known/est/serverkeygen", tag = "est", request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "multipart/mixed: PKCS#8 key and PKCS#7 certs-only")))]
pub async fn serverkeygen(
    State(s): State<Shared>,
    c: Conn,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    serverkeygen_for(&s, None, &h, conn!(c), &body).await
}

/// Server-side key generation into a batch or CA.
#[utoipa::path(post, path = "/.well-known/est/{label}/serverkeygen", tag = "est", params(("label" = String, Path, description = "batch id or CA name")), request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "multipart/mixed")))]
pub async fn serverkeygen_label(
    State(s): State<Shared>,
    Path(label): Path<String>,
    c: Conn,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    serverkeygen_for(&s, Some(&label), &h, conn!(c), &body).await
}
