//! The REST API for grants (`/api/v1/grants`): list, add and remove a
//! certificate's roles, for admins only; the same flows as `idmint grant`.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use idmint_flows::access::{Action, Authorized, Resource};
use idmint_registry::{CertificateId, Role, Scope};
use serde::Deserialize;

use crate::auth::Caller;
use crate::{ApiError, Shared};

/// A grant to add or remove.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantRequest {
    /// The certificate id.
    pub certificate_id: String,
    /// admin, operator, station or reader.
    pub role: String,
    /// `*` (default), `batch:ID`, `ca:NAME`, `template:NAME` or `thing:NAME`.
    pub scope: Option<String>,
}

/// Which grants to list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GrantQuery {
    /// Only this certificate's.
    pub certificate: Option<String>,
}

fn admin(Caller(who): Caller) -> Result<Authorized, ApiError> {
    Ok(who.authorize(Action::ManageGrants, &Resource::everything())?)
}

fn parse(body: &[u8]) -> Result<(CertificateId, Role, Scope), ApiError> {
    let req: GrantRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))?;
    let role: Role = req.role.parse().map_err(ApiError::bad_request)?;
    let scope: Scope = req
        .scope
        .as_deref()
        .unwrap_or("*")
        .parse()
        .map_err(ApiError::bad_request)?;
    let certificate = CertificateId::parse(&req.certificate_id)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((certificate, role, scope))
}

/// Lists grants.
#[utoipa::path(get, path = "/api/v1/grants", tag = "grants", params(GrantQuery), responses((status = 200, description = "the grants"), (status = 403, description = "not an admin")))]
pub async fn list_grants(
    caller: Caller,
    State(s): State<Shared>,
    Query(q): Query<GrantQuery>,
) -> Result<Response, ApiError> {
    admin(caller)?;
    let grants = s.idmint.list_grants(q.certificate.as_deref()).await?;
    Ok(Json(grants).into_response())
}

/// Gives a certificate a role in a scope.
#[utoipa::path(post, path = "/api/v1/grants", tag = "grants", request_body(content = GrantRequest), responses((status = 201, description = "the grant"), (status = 403, description = "not an admin"), (status = 409, description = "already granted")))]
pub async fn add_grant(
    caller: Caller,
    State(s): State<Shared>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = admin(caller)?;
    let (cert, role, scope) = parse(&body)?;
    let grant = s.idmint.add_grant(&who, &cert, role, &scope).await?;
    Ok((StatusCode::CREATED, Json(grant)).into_response())
}

/// Takes a grant away.
#[utoipa::path(delete, path = "/api/v1/grants", tag = "grants", request_body(content = GrantRequest), responses((status = 204, description = "removed"), (status = 403, description = "not an admin"), (status = 404, description = "no such grant")))]
pub async fn remove_grant(
    caller: Caller,
    State(s): State<Shared>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = admin(caller)?;
    let (cert, role, scope) = parse(&body)?;
    s.idmint.remove_grant(&who, &cert, role, &scope).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
