//! The REST API under `/api/v1`, and the revocation endpoints (`/ocsp`,
//! `/crl/<ca>.crl`), `/healthz` and `/metrics`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use idmint_flows::issue::IssueOptions;
use idmint_flows::ThingName;
use idmint_registry::{CertificateFilter, CertificateId, CertificateStatus, RegistryError};
use idmint_rest::{CsrRequest, IssuedInBatch, ProvisionedRequest, SpoilRequest};
use serde::Deserialize;
use serde_json::{json, Value};

use idmint_fleet::Fleet;
use idmint_flows::access::{Action, Principal, Resource};
use idmint_station::report::StationReport;
use idmint_station::Station;

use crate::auth::Caller;
use crate::page::{Page, PageQuery};
use crate::{ApiError, Shared};

/// Requires the right to read everything.
fn read_all(who: &Principal) -> Result<(), ApiError> {
    who.authorize(Action::Read, &Resource::everything())?;
    Ok(())
}

/// Filters and pagination for listing certificates.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CertificateQuery {
    /// Attached to this thing.
    pub thing: Option<String>,
    /// In this state (ACTIVE, INACTIVE, REVOKED, PENDING_ACTIVATION).
    pub status: Option<String>,
    /// Issued by this CA.
    pub ca: Option<String>,
    /// From this batch.
    pub batch: Option<String>,
}

/// A revocation request.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct RevokeRequest {
    /// RFC 5280 reason name, e.g. `keyCompromise`.
    pub reason: Option<String>,
}

fn json_of<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

/// Lists certificates.
#[utoipa::path(get, path = "/api/v1/certificates", tag = "certificates", params(CertificateQuery, PageQuery), responses((status = 200, description = "{items, nextCursor}"), (status = 401, description = "unauthenticated"), (status = 403, description = "forbidden")))]
pub async fn list_certificates(
    Caller(who): Caller,
    State(s): State<Shared>,
    page: Page,
    Query(q): Query<CertificateQuery>,
) -> Result<Json<Value>, ApiError> {
    read_all(&who)?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<CertificateStatus>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let filter = CertificateFilter {
        thing: q.thing,
        status,
        ca: q.ca,
        batch: q.batch,
        after: page.cursor.clone(),
        limit: Some(page.limit),
    };
    let items = s.idmint.store().list_certificates(&filter).await?;
    page.of(&items, |c| c.id.to_string())
}

/// One certificate (with its PEM).
#[utoipa::path(get, path = "/api/v1/certificates/{id}", tag = "certificates", params(("id" = String, Path, description = "SHA-256 of the DER, hex")), responses((status = 200, description = "the certificate"), (status = 404, description = "unknown")))]
pub async fn get_certificate(
    Caller(who): Caller,
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read_all(&who)?;
    let id = path_certificate_id(&id)?;
    let cert = s.idmint.store().require_certificate(&id).await?;
    let mut v = json_of(&cert)?;
    v["pem"] = Value::String(idmint_pki::to_pem("CERTIFICATE", &cert.der));
    Ok(Json(v))
}

async fn set_status(
    who: &Principal,
    s: &Shared,
    id: &str,
    status: CertificateStatus,
    reason: Option<&str>,
) -> Result<Json<Value>, ApiError> {
    let id = &path_certificate_id(id)?;
    let reason = reason
        .map(|r| {
            r.parse::<idmint_pki::RevocationReason>()
                .map_err(|e| ApiError::bad_request(e.to_string()))
        })
        .transpose()?;
    let cert = s.idmint.store().require_certificate(id).await?;
    let authorized = who.authorize(
        Action::ChangeCertificateStatus,
        &Resource::certificate(&cert),
    )?;
    s.idmint
        .set_certificate_status(&authorized, id, status, reason)
        .await?;
    Ok(Json(json_of(
        &s.idmint.store().require_certificate(id).await?,
    )?))
}

/// Revokes a certificate.
#[utoipa::path(post, path = "/api/v1/certificates/{id}/revoke", tag = "certificates", params(("id" = String, Path, description = "certificate id")), request_body(content = RevokeRequest, description = "optional reason"), responses((status = 200, description = "the certificate")))]
pub async fn revoke_certificate(
    Caller(who): Caller,
    State(s): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: RevokeRequest = optional_json(&body)?;
    set_status(
        &who,
        &s,
        &id,
        CertificateStatus::Revoked,
        Some(req.reason.as_deref().unwrap_or("unspecified")),
    )
    .await
}

/// Activates a certificate.
#[utoipa::path(post, path = "/api/v1/certificates/{id}/activate", tag = "certificates", params(("id" = String, Path, description = "certificate id")), responses((status = 200, description = "the certificate"), (status = 409, description = "revoked")))]
pub async fn activate_certificate(
    Caller(who): Caller,
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&who, &s, &id, CertificateStatus::Active, None).await
}

/// Deactivates a certificate.
#[utoipa::path(post, path = "/api/v1/certificates/{id}/deactivate", tag = "certificates", params(("id" = String, Path, description = "certificate id")), responses((status = 200, description = "the certificate")))]
pub async fn deactivate_certificate(
    Caller(who): Caller,
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&who, &s, &id, CertificateStatus::Inactive, None).await
}

/// Lists things.
#[utoipa::path(get, path = "/api/v1/things", tag = "things", params(PageQuery), responses((status = 200, description = "{items, nextCursor}")))]
pub async fn list_things(
    Caller(who): Caller,
    State(s): State<Shared>,
    page: Page,
) -> Result<Json<Value>, ApiError> {
    read_all(&who)?;
    let items = s
        .idmint
        .store()
        .list_things(None, page.cursor.as_deref(), Some(page.limit))
        .await?;
    page.of(&items, |t| t.name.clone())
}

/// One thing.
#[utoipa::path(get, path = "/api/v1/things/{name}", tag = "things", params(("name" = String, Path, description = "thing name")), responses((status = 200, description = "the thing"), (status = 404, description = "unknown")))]
pub async fn get_thing(
    Caller(who): Caller,
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read_all(&who)?;
    let thing = s
        .idmint
        .store()
        .thing(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("thing {name:?} not found")))?;
    Ok(Json(json_of(&thing)?))
}

/// Lists CAs.
#[utoipa::path(get, path = "/api/v1/cas", tag = "cas", responses((status = 200, description = "the CAs")))]
pub async fn list_cas(
    Caller(who): Caller,
    State(s): State<Shared>,
) -> Result<Json<Value>, ApiError> {
    read_all(&who)?;
    Ok(Json(json_of(&s.idmint.store().list_cas().await?)?))
}

/// One CA (with its PEM).
#[utoipa::path(get, path = "/api/v1/cas/{name}", tag = "cas", params(("name" = String, Path, description = "CA name")), responses((status = 200, description = "the CA"), (status = 404, description = "unknown")))]
pub async fn get_ca(
    Caller(who): Caller,
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read_all(&who)?;
    let ca = s.idmint.store().require_ca(&name).await?;
    let mut v = json_of(&ca)?;
    v["pem"] = Value::String(idmint_pki::to_pem("CERTIFICATE", &ca.certificate_der));
    Ok(Json(v))
}

/// Lists batches.
#[utoipa::path(get, path = "/api/v1/batches", tag = "batches", responses((status = 200, description = "the batches")))]
pub async fn list_batches(
    Caller(who): Caller,
    State(s): State<Shared>,
) -> Result<Json<Value>, ApiError> {
    let mut batches = s.idmint.store().list_batches().await?;
    if who
        .authorize(Action::Read, &Resource::everything())
        .is_err()
    {
        batches.retain(|b| who.authorize(Action::Read, &Resource::batch(&b.id)).is_ok());
        if batches.is_empty() {
            who.authorize(Action::Read, &Resource::everything())?;
        }
    }
    Ok(Json(json_of(&batches)?))
}

/// One batch.
#[utoipa::path(get, path = "/api/v1/batches/{id}", tag = "batches", params(("id" = String, Path, description = "batch id")), responses((status = 200, description = "the batch"), (status = 404, description = "unknown")))]
pub async fn get_batch(
    Caller(who): Caller,
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    who.authorize(Action::Read, &Resource::batch(&id))?;
    Ok(Json(json_of(&s.idmint.store().require_batch(&id).await?)?))
}

/// Issues a certificate for a CSR against a batch's quota (remote stations).
#[utoipa::path(post, path = "/api/v1/batches/{id}/certificates", tag = "batches", params(("id" = String, Path, description = "batch id")), request_body(content = CsrRequest), responses((status = 201, description = "the certificate and its chain", body = IssuedInBatch), (status = 409, description = "quota exhausted, or clone")))]
pub async fn issue_in_batch(
    Caller(who): Caller,
    State(s): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let authorized = who.authorize_issuance(Action::IssueInBatch, Some(&id))?;
    let req: CsrRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))?;
    let csr = idmint_pki::Csr::from_pem_or_der(req.csr.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("bad certificate request: {e}")))?;
    let batch = s.idmint.store().require_batch(&id).await?;
    // The batch's policy; the request may ask for more, never for less.
    let thing = req
        .thing
        .as_deref()
        .map(ThingName::parse)
        .transpose()
        .map_err(RegistryError::from)?;
    let policy = batch.policy.at_least(req.pending, req.refuse_clones);
    if policy.refuse_clones {
        refuse_clones(&s, &csr, thing.as_ref().map(ThingName::as_str)).await?;
    }
    let options = IssueOptions {
        profile: batch.profile,
        ca: Some(batch.ca.clone()),
        thing,
        status: if policy.pending_activation {
            CertificateStatus::PendingActivation
        } else {
            CertificateStatus::Active
        },
        batch: Some(batch.id),
    };
    let issued = s.idmint.issue_from_csr(&authorized, &csr, &options).await?;
    s.metrics.issued();
    let chain: Vec<String> = s
        .idmint
        .chain(&batch.ca)
        .await?
        .iter()
        .map(|d| idmint_pki::to_pem("CERTIFICATE", d))
        .collect();
    let answer = IssuedInBatch {
        pem: issued.certificate.pem(),
        id: issued.certificate.info.id,
        thing: issued.thing.into_string(),
        chain,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Records a certificate a remote station issued but could not install or
/// prove on its device: revokes it (`cessationOfOperation`) and counts it
/// in the batch's spoiled count, so `issued = active + spoiled` holds.
#[utoipa::path(post, path = "/api/v1/batches/{id}/certificates/{cert_id}/spoil", tag = "batches", params(("id" = String, Path, description = "batch id"), ("cert_id" = String, Path, description = "certificate id")), request_body(content = SpoilRequest, description = "optional reason"), responses((status = 200, description = "the certificate, REVOKED"), (status = 404, description = "unknown certificate or not of this batch"), (status = 409, description = "not PENDING_ACTIVATION")))]
pub async fn spoil_in_batch(
    Caller(who): Caller,
    State(s): State<Shared>,
    Path((id, cert_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let authorized = who.authorize(Action::ReportStation, &Resource::batch(&id))?;
    let cert_id = path_certificate_id(&cert_id)?;
    let req: SpoilRequest = optional_json(&body)?;
    let report = StationReport::Spoiled {
        reason: req
            .reason
            .unwrap_or_else(|| "spoiled at a remote station".into()),
    };
    let cert = Station::new(&s.idmint)
        .report_station_result(&authorized, &id, &cert_id, &report)
        .await?;
    Ok(Json(json_of(&cert)?))
}

/// A certificate id from a URL path, checked once here: a malformed one is
/// a 400 naming the rule, never a lookup.
fn path_certificate_id(text: &str) -> Result<CertificateId, ApiError> {
    CertificateId::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// An empty body is the request's defaults; anything else must be its JSON.
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))
}

/// Activates a certificate a remote station issued `PENDING_ACTIVATION`
/// once its device installed it and proved its key.
#[utoipa::path(post, path = "/api/v1/batches/{id}/certificates/{cert_id}/activate", tag = "batches", params(("id" = String, Path, description = "batch id"), ("cert_id" = String, Path, description = "certificate id")), request_body(content = ProvisionedRequest, description = "optional device facts"), responses((status = 200, description = "the certificate, ACTIVE"), (status = 404, description = "unknown certificate or not of this batch"), (status = 409, description = "not pending activation")))]
pub async fn activate_in_batch(
    Caller(who): Caller,
    State(s): State<Shared>,
    Path((id, cert_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let authorized = who.authorize(Action::ReportStation, &Resource::batch(&id))?;
    let cert_id = path_certificate_id(&cert_id)?;
    let req: ProvisionedRequest = optional_json(&body)?;
    let report = StationReport::Provisioned {
        hw_id: req.hw_id,
        locked: req.locked,
    };
    let cert = Station::new(&s.idmint)
        .report_station_result(&authorized, &id, &cert_id, &report)
        .await?;
    Ok(Json(json_of(&cert)?))
}

/// `409 clone` when the thing already holds a live certificate (the batch's
/// `refuseClones` policy). A public key that is already certified is
/// refused by the registry, inside the issuing transaction, whatever the
/// policy ([`idmint_registry::RegistryError::Clone`]).
async fn refuse_clones(
    s: &Shared,
    csr: &idmint_pki::Csr,
    thing: Option<&str>,
) -> Result<(), ApiError> {
    let Some(thing) = thing.or(csr.common_name()) else {
        return Ok(());
    };
    let live = s
        .idmint
        .store()
        .list_certificates(&CertificateFilter {
            thing: Some(thing.to_string()),
            ..CertificateFilter::default()
        })
        .await?
        .into_iter()
        .find(|c| c.status != CertificateStatus::Revoked);
    match live {
        Some(c) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "clone",
            format!(
                "refused clone: thing {thing} is already provisioned (certificate {})",
                c.id
            ),
        )),
        None => Ok(()),
    }
}

/// A trusted user's request for a temporary claim certificate.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningClaimRequest {
    /// The fleet template the claim may use.
    pub template_name: String,
}

/// Issues a temporary claim certificate for an installer's app (provisioning
/// by trusted user), valid `[fleet] trusted_user_claim_minutes` (5).
#[utoipa::path(post, path = "/api/v1/provisioning-claims", tag = "fleet", request_body(content = ProvisioningClaimRequest), responses((status = 201, description = "{certificateId, certificatePem, keyPair: {PublicKey, PrivateKey}, expiration}"), (status = 404, description = "unknown template")))]
pub async fn create_provisioning_claim(
    Caller(who): Caller,
    State(s): State<Shared>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: ProvisioningClaimRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))?;
    let authorized = who.authorize(
        Action::CreateClaim,
        &Resource {
            template: Some(req.template_name.clone()),
            ..Resource::default()
        },
    )?;
    let minutes = s.idmint.config().fleet.trusted_user_claim_minutes;
    let claim = Fleet::new(&s.idmint)
        .create_claim(
            authorized.actor(),
            std::slice::from_ref(&req.template_name),
            idmint_fleet::claims::ClaimValidity::Minutes(minutes),
            None,
        )
        .await?;
    let public_key = idmint_pki::DeviceKey::from_pkcs8_pem(&claim.private_key)
        .map(|k| idmint_pki::to_pem("PUBLIC KEY", &k.spki_der()))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let expiration = claim
        .not_after
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "certificateId": claim.certificate_id,
            "certificatePem": claim.certificate_pem,
            "keyPair": {"PublicKey": public_key, "PrivateKey": claim.private_key.as_str()},
            "expiration": expiration,
        })),
    )
        .into_response())
}

/// Verifies the audit chain.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", responses((status = 200, description = "{intact, report}")))]
pub async fn verify_audit(
    Caller(who): Caller,
    State(s): State<Shared>,
) -> Result<Json<Value>, ApiError> {
    read_all(&who)?;
    let report = s.idmint.store().verify_audit().await?;
    Ok(Json(
        json!({"intact": report.intact(), "report": format!("{report:?}")}),
    ))
}

/// OCSP over POST (`application/ocsp-request`).
#[utoipa::path(post, path = "/ocsp", tag = "revocation", request_body(content = String, content_type = "application/ocsp-request"), responses((status = 200, description = "DER OCSPResponse", content_type = "application/ocsp-response")))]
pub async fn ocsp_post(State(s): State<Shared>, body: Bytes) -> Response {
    crate::ocsp::respond(&s.idmint, &body).await
}

/// OCSP over GET (base64 DER request in the path, RFC 5019 §5): cacheable.
#[utoipa::path(get, path = "/ocsp/{request}", tag = "revocation", params(("request" = String, Path, description = "URL-encoded base64 DER OCSPRequest")), responses((status = 200, description = "DER OCSPResponse", content_type = "application/ocsp-response")))]
pub async fn ocsp_get(State(s): State<Shared>, Path(request): Path<String>) -> Response {
    crate::ocsp::respond(&s.idmint, &crate::ocsp::decode_get(&request)).await
}

/// The current CRL of a CA (DER), reissued when its revocations change.
#[utoipa::path(get, path = "/crl/{file}", tag = "revocation", params(("file" = String, Path, description = "`<ca>.crl`")), responses((status = 200, description = "DER CRL, with an ETag", content_type = "application/pkix-crl"), (status = 304, description = "unchanged since the ETag in If-None-Match"), (status = 404, description = "unknown CA")))]
pub async fn crl(
    State(s): State<Shared>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ca = file
        .strip_suffix(".crl")
        .ok_or_else(|| ApiError::not_found("CRLs are at /crl/<ca>.crl"))?;
    let crl = crate::crl::current_crl(&s, ca).await?;
    let etag = crate::http_cache::etag(&crl.der);
    let last_modified = time::OffsetDateTime::from_unix_timestamp(crl.issued)
        .map(crate::http_cache::http_date)
        .unwrap_or_default();
    let cache = [
        (header::ETAG, etag.clone()),
        (
            header::CACHE_CONTROL,
            "max-age=60, public, no-transform".to_string(),
        ),
        (header::LAST_MODIFIED, last_modified),
    ];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/pkix-crl")],
        cache,
        crl.der,
    )
        .into_response())
}

/// Liveness and store reachability.
#[utoipa::path(get, path = "/healthz", tag = "server", responses((status = 200, description = "ok"), (status = 503, description = "store unreachable")))]
pub async fn healthz(State(s): State<Shared>) -> Response {
    match s.idmint.store().ca(s.idmint.default_ca()).await {
        Ok(_) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
        .into_response(),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "server", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "server", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi() -> Response {
    Json(crate::openapi_document()).into_response()
}
