//! CRLs served over HTTP: one cached CRL per CA, reissued when its set of
//! revocations changes or when half its validity has passed. A request
//! reads one aggregate row of the registry (how many of the CA's
//! certificates are revoked, and when the newest changed), not the list.

use idmint_registry::CaKind;

use crate::{ApiError, Shared};

/// A cached CRL and what it was built from.
#[derive(Clone, Debug)]
pub struct CachedCrl {
    key: (i64, i64),
    issued: i64,
    der: Vec<u8>,
}

/// A CA's current CRL, as served.
#[derive(Clone, Debug)]
pub struct CurrentCrl {
    /// The DER CRL.
    pub der: Vec<u8>,
    /// When it was issued, Unix seconds.
    pub issued: i64,
}

/// The current CRL of `ca` (DER).
pub async fn current(state: &Shared, ca: &str) -> Result<Vec<u8>, ApiError> {
    Ok(current_crl(state, ca).await?.der)
}

/// The current CRL of `ca`, with when it was issued.
pub async fn current_crl(state: &Shared, ca: &str) -> Result<CurrentCrl, ApiError> {
    let Some(record) = state.idmint.store().ca(ca).await? else {
        // `<batch>-ca-signer`: the CRL an offline batch CA signed at
        // authorization covering its CRL signer (fixed for its lifetime).
        return match state.idmint.crl_signer_status_crl(ca).await? {
            Some(der) => Ok(CurrentCrl {
                der,
                issued: idmint_registry::now(),
            }),
            None => Err(ApiError::not_found(format!("no CA {ca:?}"))),
        };
    };
    if record.kind == CaKind::External {
        return Err(ApiError::not_found(format!(
            "CA {ca:?} is an outside CA: it publishes its own CRL"
        )));
    }
    let key = state.idmint.store().ca_revocation_mark(ca).await?;
    let now = idmint_registry::now();
    let fresh = idmint_flows::crl::CRL_VALIDITY.whole_seconds() / 2;
    if let Ok(cache) = state.crls.lock() {
        if let Some(c) = cache.get(ca) {
            if c.key == key && now - c.issued < fresh {
                return Ok(CurrentCrl {
                    der: c.der.clone(),
                    issued: c.issued,
                });
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
    Ok(CurrentCrl { der, issued: now })
}
