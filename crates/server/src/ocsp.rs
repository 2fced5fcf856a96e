//! OCSP over HTTP (RFC 6960 Appendix A, RFC 5019 §5): the request comes as
//! a POST body or base64 in a GET path; the answer goes out with the
//! caching headers RFC 5019 §6 asks for, so CDNs and relying parties can
//! keep it until its nextUpdate. A request that gets no signed answer gets
//! the unsigned `OCSPResponse` saying why with a 4xx status: 400 for
//! garbage or a truncated request, 403 for one naming no certificate of a
//! CA served here; 500 when the responder failed. What the answer says is
//! decided in [`idmint_flows::ocsp`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use idmint_flows::ocsp::OcspAnswer;
use idmint_flows::pki::ocsp::Failure;
use idmint_flows::Idmint;
use time::OffsetDateTime;

use crate::http_cache::{etag, http_date};

/// Decodes the base64 request of a GET (`/ocsp/{request}`, URL-decoded by
/// the router); garbage decodes to nothing, which the responder answers
/// `malformedRequest`.
pub fn decode_get(path: &str) -> Vec<u8> {
    let text = path.trim();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
        .unwrap_or_default()
}

/// Answers a DER OCSP request as an HTTP response.
pub async fn respond(idmint: &Idmint, request_der: &[u8]) -> Response {
    let answer = idmint.ocsp_respond(request_der).await;
    http_response(answer, OffsetDateTime::now_utc())
}

fn http_response(answer: OcspAnswer, now: OffsetDateTime) -> Response {
    let status = match answer.failure {
        None => StatusCode::OK,
        Some(Failure::MalformedRequest) => StatusCode::BAD_REQUEST,
        Some(Failure::Unauthorized) => StatusCode::FORBIDDEN,
        Some(Failure::InternalError) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/ocsp-response")],
        answer.der.clone(),
    )
        .into_response();
    let headers = response.headers_mut();
    match answer.valid {
        Some((this_update, next_update)) => {
            let max_age = (next_update - now).whole_seconds().max(0);
            if let Ok(v) = HeaderValue::from_str(&format!(
                "max-age={max_age}, public, no-transform, must-revalidate"
            )) {
                headers.insert(header::CACHE_CONTROL, v);
            }
            for (name, value) in [
                (header::LAST_MODIFIED, http_date(this_update)),
                (header::EXPIRES, http_date(next_update)),
                (header::ETAG, etag(&answer.der)),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            }
        }
        None => {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    response
}
