//! The REST API for AWS IoT policies (`/api/v1/policies`): list and show
//! (readers), create, delete, attach to and detach from certificates
//! (admins); the same flows as `idmint policy`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use idmint_flows::access::{Action, Authorized, Resource};
use serde::Deserialize;

use crate::auth::Caller;
use crate::{ApiError, Shared};

/// A policy to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRequest {
    /// The policy's name.
    pub name: String,
    /// The AWS IoT policy document: a JSON object, or its text.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

fn allowed(Caller(who): Caller, action: Action) -> Result<Authorized, ApiError> {
    Ok(who.authorize(action, &Resource::everything())?)
}

/// Lists policies.
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies", responses((status = 200, description = "the policies")))]
pub async fn list_policies(caller: Caller, State(s): State<Shared>) -> Result<Response, ApiError> {
    allowed(caller, Action::Read)?;
    Ok(Json(s.idmint.list_policies().await?).into_response())
}

/// One policy with its document.
#[utoipa::path(get, path = "/api/v1/policies/{name}", tag = "policies", responses((status = 200, description = "the policy"), (status = 404, description = "no such policy")))]
pub async fn get_policy(
    caller: Caller,
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    allowed(caller, Action::Read)?;
    Ok(Json(s.idmint.policy(&name).await?).into_response())
}

/// Creates a policy; a document that does not parse is refused naming
/// the JSON path of the fault.
#[utoipa::path(post, path = "/api/v1/policies", tag = "policies", request_body(content = PolicyRequest), responses((status = 201, description = "the policy"), (status = 400, description = "a bad document"), (status = 409, description = "the name is taken")))]
pub async fn create_policy(
    caller: Caller,
    State(s): State<Shared>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = allowed(caller, Action::ManagePolicies)?;
    let req: PolicyRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))?;
    let document = match req.document {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    let policy = s.idmint.create_policy(&who, &req.name, &document).await?;
    Ok((StatusCode::CREATED, Json(policy)).into_response())
}

/// Deletes a policy attached to no certificate.
#[utoipa::path(delete, path = "/api/v1/policies/{name}", tag = "policies", responses((status = 204, description = "deleted"), (status = 409, description = "still attached")))]
pub async fn delete_policy(
    caller: Caller,
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let who = allowed(caller, Action::ManagePolicies)?;
    s.idmint.delete_policy(&who, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Attaches a policy to a certificate.
#[utoipa::path(put, path = "/api/v1/policies/{name}/certificates/{cert_id}", tag = "policies", responses((status = 204, description = "attached"), (status = 404, description = "no such policy or certificate")))]
pub async fn attach_policy(
    caller: Caller,
    State(s): State<Shared>,
    Path((name, cert_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let who = allowed(caller, Action::ManagePolicies)?;
    s.idmint.attach_policy(&who, &name, &cert_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Detaches a policy from a certificate.
#[utoipa::path(delete, path = "/api/v1/policies/{name}/certificates/{cert_id}", tag = "policies", responses((status = 204, description = "detached"), (status = 404, description = "not attached")))]
pub async fn detach_policy(
    caller: Caller,
    State(s): State<Shared>,
    Path((name, cert_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let who = allowed(caller, Action::ManagePolicies)?;
    s.idmint.detach_policy(&who, &name, &cert_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
