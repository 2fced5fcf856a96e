//! Who is calling: a bearer token, HTTP Basic with a token (EST), or a TLS
//! client certificate; and what their role allows.

use axum::http::{header, HeaderMap};
use base64::Engine;
use idmint_pki::CertificateInfo;
use idmint_registry::{CaKind, Certificate, CertificateStatus, Role};

use crate::{ApiError, ConnInfo, Shared};

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who the audit records name: `token:NAME` or `cert:<id>`.
    pub actor: String,
    /// The role, if the credential carries one (device certificates do not).
    pub role: Option<Role>,
    /// The batch a token is scoped to.
    pub batch: Option<String>,
    /// The registered certificate, for certificate-authenticated callers.
    pub certificate: Option<Certificate>,
}

impl Caller {
    /// Fails with 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        match self.role {
            Some(r) if roles.contains(&r) => Ok(()),
            Some(r) => Err(ApiError::forbidden(format!("the {r} role may not do this"))),
            None => Err(ApiError::forbidden("this credential has no API role")),
        }
    }
}

/// Roles that may read.
pub const READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Reader];
/// Roles that may change certificate states.
pub const OPERATORS: &[Role] = &[Role::Admin, Role::Operator];
/// Roles that may issue against a batch.
pub const STATIONS: &[Role] = &[Role::Admin, Role::Station];

/// The credentials in an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    /// `Bearer SECRET`.
    Bearer(String),
    /// `Basic base64(NAME:SECRET)`.
    Basic(String, String),
}

/// Parses an `Authorization` header value (what the fuzz target exercises).
pub fn parse_authorization(value: &str) -> Result<Credentials, ApiError> {
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::Bearer(rest.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| ApiError::unauthorized("malformed Basic credentials"))?;
        let text = String::from_utf8(raw)
            .map_err(|_| ApiError::unauthorized("malformed Basic credentials"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| ApiError::unauthorized("malformed Basic credentials"))?;
        return Ok(Credentials::Basic(user.to_string(), pass.to_string()));
    }
    Err(ApiError::unauthorized(format!(
        "unsupported authorization scheme {scheme:?}"
    )))
}

fn unauthorized(message: &str) -> ApiError {
    let mut e = ApiError::unauthorized(message);
    e.basic_challenge = true;
    e
}

/// Authenticates a request: the `Authorization` header if present, else the
/// TLS client certificate if any. `Ok(None)`: no credentials at all.
pub async fn authenticate(
    state: &Shared,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
) -> Result<Option<Caller>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| unauthorized("malformed Authorization header"))?;
        let token = match parse_authorization(value)? {
            Credentials::Bearer(secret) => state.idmint.token_for_secret(&secret).await?,
            Credentials::Basic(name, secret) => {
                state.idmint.token_for_basic(&name, &secret).await?
            }
        };
        let token = token.ok_or_else(|| unauthorized("unknown or revoked token"))?;
        return Ok(Some(Caller {
            actor: format!("token:{}", token.name),
            role: Some(token.role),
            batch: token.batch,
            certificate: None,
        }));
    }
    match client_certificate(state, conn).await? {
        Some(ClientCert::Registered(cert)) => {
            let role = match &cert.thing {
                Some(thing) => state
                    .idmint
                    .store()
                    .thing(thing)
                    .await?
                    .and_then(|t| t.attributes.get("role").and_then(|r| r.parse().ok())),
                None => None,
            };
            Ok(Some(Caller {
                actor: format!("cert:{}", cert.id),
                role,
                batch: None,
                certificate: Some(*cert),
            }))
        }
        Some(ClientCert::Bootstrap { id, .. }) => Ok(Some(Caller {
            actor: format!("cert:{id}"),
            role: None,
            batch: None,
            certificate: None,
        })),
        None => Ok(None),
    }
}

/// Authenticates or fails with 401.
pub async fn require_caller(
    state: &Shared,
    headers: &HeaderMap,
    conn: Option<&ConnInfo>,
) -> Result<Caller, ApiError> {
    authenticate(state, headers, conn)
        .await?
        .ok_or_else(|| unauthorized("authentication required"))
}

/// A TLS client certificate that checked out.
#[derive(Debug)]
pub enum ClientCert {
    /// One of ours, registered, ACTIVE, valid, chaining to its CA.
    Registered(Box<Certificate>),
    /// Chaining to a registered outside (bootstrap) CA, e.g. a vendor IDevID CA.
    Bootstrap {
        /// SHA-256 of its DER.
        id: String,
        /// The outside CA's name.
        ca: String,
        /// Its subject CN.
        cn: Option<String>,
    },
}

/// Checks the TLS client certificate, if one was presented. A certificate
/// that is presented but unknown, revoked, inactive, expired or not chaining
/// to a CA we know is a 401.
pub async fn client_certificate(
    state: &Shared,
    conn: Option<&ConnInfo>,
) -> Result<Option<ClientCert>, ApiError> {
    let Some(conn) = conn else { return Ok(None) };
    let Some(leaf) = conn.certs.first() else {
        return Ok(None);
    };
    let info = CertificateInfo::from_der(leaf)
        .map_err(|_| ApiError::unauthorized("unreadable client certificate"))?;
    if !info.valid_at(time::OffsetDateTime::now_utc()) {
        return Err(ApiError::unauthorized(
            "the client certificate is expired or not yet valid",
        ));
    }
    let store = state.idmint.store();
    if let Some(cert) = store.certificate(&info.id).await? {
        if cert.status != CertificateStatus::Active {
            return Err(ApiError::unauthorized(format!(
                "the client certificate is {}",
                cert.status
            )));
        }
        state
            .idmint
            .verify_against_ca(&cert.ca, leaf, &[])
            .await
            .map_err(|e| match e {
                idmint_flows::FlowError::Pki(e) => {
                    ApiError::unauthorized(format!("client certificate: {e}"))
                }
                other => other.into(),
            })?;
        return Ok(Some(ClientCert::Registered(Box::new(cert))));
    }
    let presented: Vec<&[u8]> = conn.certs.iter().skip(1).map(Vec::as_slice).collect();
    for ca in store.list_cas().await? {
        if ca.kind != CaKind::External {
            continue;
        }
        if idmint_pki::verify_chain(leaf, &presented, &[ca.certificate_der.as_slice()]).is_ok() {
            return Ok(Some(ClientCert::Bootstrap {
                id: info.id,
                ca: ca.name,
                cn: info.subject_cn,
            }));
        }
    }
    Err(ApiError::unauthorized(
        "the client certificate is not registered and chains to no bootstrap CA",
    ))
}
