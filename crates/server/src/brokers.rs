//! HTTP authorization for outside brokers, in the shapes they call:
//! - EMQX's HTTP authorizer: `POST /api/v1/broker/emqx/authorize` with a
//!   bearer token (reader) in its `headers`, a JSON body built from its
//!   template (`cert_common_name`, `clientid`, `topic`, `action`), answered
//!   `200 {"result": "allow"|"deny"}`;
//! - mosquitto-go-auth's HTTP backend, which sends no headers: the token
//!   is a path segment, `POST /api/v1/broker/go-auth/{token}/acl` (JSON or
//!   form `username`, `clientid`, `topic`, `acc`), `/superuser` and `/user`,
//!   answered `200 {"ok": true, "error": ""}` or `403 {"ok": false, ...}`
//!   (its `status` and `json` response modes).
//!
//! The device is named by its certificate's common name, never by a user
//! name the client chose; the decision is the flows' (the same policy
//! evaluator as idmint's own MQTT endpoint).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use idmint_flows::access::{Action, Authorized, Credentials, Resource};
use idmint_flows::broker::authorize::BrokerAccess;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::{ApiError, Shared};

/// What EMQX's HTTP authorizer sends (its body template may add fields).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EmqxRequest {
    /// `${cert_common_name}`: the device's certificate common name.
    #[serde(default)]
    pub cert_common_name: String,
    /// `${clientid}`.
    #[serde(default)]
    pub clientid: String,
    /// `${topic}`.
    pub topic: String,
    /// `${action}`: `publish` or `subscribe`.
    pub action: String,
}

/// What mosquitto-go-auth's HTTP backend sends to its ACL URI.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct GoAuthAclRequest {
    /// The user name (with `use_identity_as_username`, the certificate's
    /// common name).
    pub username: String,
    /// The client id.
    #[serde(default)]
    pub clientid: String,
    /// The topic or filter.
    pub topic: String,
    /// 1 read (receive), 2 write (publish), 3 both, 4 subscribe.
    #[serde(deserialize_with = "number_or_text")]
    pub acc: i64,
}

fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Acc {
        Number(i64),
        Text(String),
    }
    match Acc::deserialize(d)? {
        Acc::Number(n) => Ok(n),
        Acc::Text(t) => t.trim().parse().map_err(serde::de::Error::custom),
    }
}

fn reader(who: idmint_flows::access::Principal) -> Result<Authorized, ApiError> {
    Ok(who.authorize(Action::Read, &Resource::everything())?)
}

/// EMQX's HTTP authorizer.
#[utoipa::path(post, path = "/api/v1/broker/emqx/authorize", tag = "brokers", request_body(content = EmqxRequest), responses((status = 200, description = "{\"result\": \"allow\"} or {\"result\": \"deny\"}")))]
pub async fn emqx_authorize(
    Caller(who): Caller,
    State(s): State<Shared>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = reader(who)?;
    let req: EmqxRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "bad EMQX authorization request ({e}); the body template needs cert_common_name, clientid, topic and action"
        ))
    })?;
    let access = match req.action.as_str() {
        "publish" => BrokerAccess::Publish,
        // EMQX checks a subscription once, not each message it delivers.
        "subscribe" => BrokerAccess::SubscribeAndReceive,
        other => {
            return Err(ApiError::bad_request(format!(
                "action {other:?}: expected publish or subscribe"
            )))
        }
    };
    let allowed = !req.cert_common_name.is_empty()
        && s.idmint
            .broker_decision(
                &who,
                &req.cert_common_name,
                &req.clientid,
                access,
                &req.topic,
            )
            .await?
            .allowed();
    let result = if allowed { "allow" } else { "deny" };
    Ok(Json(json!({ "result": result })).into_response())
}

/// A go-auth answer in its `status` and `json` response modes.
fn go_auth(allowed: bool, error: &str) -> Response {
    let status = if allowed {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    (status, Json(json!({ "ok": allowed, "error": error }))).into_response()
}

/// The token of a go-auth path, as a bearer token.
async fn go_auth_caller(s: &Shared, token: &str) -> Result<Authorized, ApiError> {
    let who = s
        .idmint
        .principal_for_token(&Credentials::Bearer(token.to_string()))
        .await?;
    reader(who)
}

/// mosquitto-go-auth's ACL check.
#[utoipa::path(post, path = "/api/v1/broker/go-auth/{token}/acl", tag = "brokers", request_body(content = GoAuthAclRequest), responses((status = 200, description = "allowed"), (status = 403, description = "denied")))]
pub async fn go_auth_acl(
    State(s): State<Shared>,
    Path(token): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = go_auth_caller(&s, &token).await?;
    let form = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let parsed: Result<GoAuthAclRequest, String> = if form {
        serde_urlencoded::from_bytes(&body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    let req = parsed.map_err(|e| {
        ApiError::bad_request(format!(
            "bad go-auth ACL request ({e}); expected username, clientid, topic and acc"
        ))
    })?;
    let access = match req.acc {
        1 => vec![BrokerAccess::Receive],
        2 => vec![BrokerAccess::Publish],
        3 => vec![BrokerAccess::Receive, BrokerAccess::Publish],
        4 => vec![BrokerAccess::Subscribe],
        other => {
            return Err(ApiError::bad_request(format!(
                "acc {other}: expected 1 (read), 2 (write), 3 (readwrite) or 4 (subscribe)"
            )))
        }
    };
    for access in access {
        let decision = s
            .idmint
            .broker_decision(&who, &req.username, &req.clientid, access, &req.topic)
            .await?;
        if !decision.allowed() {
            return Ok(go_auth(false, "denied by the device's policies"));
        }
    }
    Ok(go_auth(true, ""))
}

/// mosquitto-go-auth's superuser check: no device is a superuser.
#[utoipa::path(post, path = "/api/v1/broker/go-auth/{token}/superuser", tag = "brokers", request_body(content = String, description = "username (JSON or form)"), responses((status = 403, description = "never a superuser")))]
pub async fn go_auth_superuser(
    State(s): State<Shared>,
    Path(token): Path<String>,
    // Read, so the connection is not reset under a client still sending.
    _body: Bytes,
) -> Result<Response, ApiError> {
    go_auth_caller(&s, &token).await?;
    Ok(go_auth(false, "no device is a superuser"))
}

/// mosquitto-go-auth's user check: refused, because devices authenticate
/// with their certificates (`use_identity_as_username true`), never with a
/// password this endpoint could check.
#[utoipa::path(post, path = "/api/v1/broker/go-auth/{token}/user", tag = "brokers", request_body(content = String, description = "username, password, clientid (JSON or form)"), responses((status = 403, description = "refused: devices authenticate by certificate")))]
pub async fn go_auth_user(
    State(s): State<Shared>,
    Path(token): Path<String>,
    // Read, so the connection is not reset under a client still sending.
    _body: Bytes,
) -> Result<Response, ApiError> {
    go_auth_caller(&s, &token).await?;
    Ok(go_auth(
        false,
        "idmint devices authenticate by certificate: set use_identity_as_username true on the listener",
    ))
}
