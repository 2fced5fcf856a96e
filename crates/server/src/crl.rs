//! CRLs served over HTTP: one cached CRL per CA, reissued when its set of
//! revocations changes or when half its validity has passed.

use idmint_registry::CaKind;

use crate::{ApiError, Shared};

/// A cached CRL and what it was built from.
#[derive(Clone, Debug)]
pub struct CachedCrl {
    key: (usize, i64),
    issued: i64,
    der: Vec<u8>,
}

/// The current CRL of `ca` (DER).
pub async fn current(state: &Shared, ca: &str) -> Result<Vec<u8>, ApiError> {
    let record = state
        .idmint
        .store()
        .ca(ca)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no CA {ca:?}")))?;
    if record.kind == CaKind::External {
        return Err(ApiError::not_found(format!(
            "CA {ca:?} is an outside CA: it publishes its own CRL"
        )));
    }
    let revoked = state.idmint.store().revoked_certificates(ca).await?;
    let key = (
        revoked.len(),
        revoked
            .iter()
            .map(|c| c.updated.unix_timestamp())
            .max()
            .unwrap_or(0),
    );
    let now = idmint_registry::now();
    let fresh = idmint_flows::crl::CRL_VALIDITY.whole_seconds() / 2;
    if let Ok(cache) = state.crls.lock() {
        if let Some(c) = cache.get(ca) {
            if c.key == key && now - c.issued < fresh {
                return Ok(c.der.clone());
            }
        }
    }
    let der = state.idmint.issue_crl("server:crl", ca).await?;
    if let Ok(mut cache) = state.crls.lock() {
        cache.insert(
            ca.to_string(),
            CachedCrl {
                key,
                issued: now,
                der: der.clone(),
            },
        );
    }
    Ok(der)
}
