//! Every route is declared once (its handler's `#[utoipa::path]`): the
//! router serves exactly what the OpenAPI document lists. This test sends
//! each documented method and path to the real router and checks that a
//! handler answered (not the "no such route" fallback, not 405).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use idmint_flows::config::ServerConfig;
use idmint_flows::init::{init, InitOptions};
use idmint_pki::KeyType;
use tower::ServiceExt;

/// Every (method, path) the document lists.
fn documented() -> Vec<(Method, String)> {
    let doc = idmint_server::openapi_document();
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (method, operation) in [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::DELETE, &item.delete),
        ] {
            if operation.is_some() {
                out.push((method, path.clone()));
            }
        }
        assert!(
            item.patch.is_none() && item.head.is_none() && item.options.is_none(),
            "{path}: a method this test does not send"
        );
    }
    out
}

/// A concrete path for a documented template: each `{param}` becomes `x`.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in template.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push('x');
            }
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn every_documented_route_reaches_its_handler() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (idmint, _) = init(
        dir.path(),
        InitOptions {
            org: "Routes Co".into(),
            key_type: KeyType::P256,
            store: None,
            passphrase: Some(zeroize::Zeroizing::new("routes passphrase".into())),
        },
    )
    .await
    .expect("init");
    let state = idmint_server::AppState::new(Arc::new(idmint), &ServerConfig::default());
    let router = idmint_server::router(state);

    let fallback = router
        .clone()
        .oneshot(
            Request::get("/api/v1/nope")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("router");
    assert_eq!(fallback.status(), StatusCode::NOT_FOUND);
    let body = axum::body::to_bytes(fallback.into_body(), 1 << 20)
        .await
        .expect("body");
    assert!(String::from_utf8_lossy(&body).contains("no such route"));

    let routes = documented();
    // 32 under /api/v1 (the broker hooks, TPM attestation and this document among them),
    // OCSP (POST, GET), CRLs, /healthz, /metrics, and 5 EST operations with
    // and without a label.
    assert_eq!(routes.len(), 47, "documented operations: {routes:?}");
    for (method, template) in routes {
        let uri = concrete(&template);
        let response = router
            .clone()
            .oneshot(
                Request::builder()
                    .method(method.clone())
                    .uri(&uri)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("router");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let body = String::from_utf8_lossy(&body);
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}: not routed for this method"
        );
        assert!(
            !body.contains("no such route"),
            "{method} {uri} ({template}): documented but not routed: {status} {body}"
        );
    }

    // The request bodies' schemas are collected from the handlers.
    let doc = idmint_server::openapi_document();
    let schemas = &doc.components.as_ref().expect("components").schemas;
    for name in [
        "RevokeRequest",
        "CsrRequest",
        "SpoilRequest",
        "ProvisionedRequest",
        "ProvisioningClaimRequest",
        "GrantRequest",
        "PolicyRequest",
        "EmqxRequest",
        "GoAuthAclRequest",
    ] {
        assert!(schemas.contains_key(name), "schema {name} is missing");
    }
}
