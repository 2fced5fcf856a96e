//! CRLs served over HTTP: one cached CRL per CA, reissued when its set of
//! revocations changes or when half its validity has passed. A request
//! reads one aggregate row of the registry (how many of the CA's
//! certificates are revoked, and when the newest changed), not the list.
//!
//! A CA with `[server] delta_crl_after` revoked entries or more (and a
//! `public_url`) publishes its complete CRL as a base CRL, reissued only as
//! its validity runs down, and beside it `/crl/{ca}-delta.crl`, a delta CRL
//! of what was revoked since the base, reissued on every change: relying
//! parties fetch the large list rarely and the small one often.

use std::sync::Arc;

use idmint_flows::crl::{CrlRequest, IssuedCrl};

use crate::{ApiError, Shared};

/// The suffix of a delta CRL's name: `/crl/{ca}-delta.crl`.
pub const DELTA_SUFFIX: &str = "-delta";

/// A cached CRL and what it was built from.
#[derive(Clone, Debug)]
pub struct CachedCrl {
    /// The CA's revocation mark it was built at.
    key: (i64, i64),
    issued: i64,
    /// Shared, so a cache lookup copies no CRL.
    crl: Arc<IssuedCrl>,
    /// For a base CRL: it is not reissued on a change (the delta is).
    base: bool,
    /// For a delta CRL: the base's number.
    over: Option<u64>,
}

/// A CA's current CRL, as served.
#[derive(Clone, Debug)]
pub struct CurrentCrl {
    /// The DER CRL.
    pub der: Vec<u8>,
    /// When it was issued, Unix seconds.
    pub issued: i64,
}

/// The current complete CRL of `ca` (DER), for the files brokers read:
/// brokers apply no delta CRLs, so where `/crl/{ca}.crl` is a base CRL this
/// is a complete CRL of its own, reissued on every change.
pub async fn current(state: &Shared, ca: &str) -> Result<Vec<u8>, ApiError> {
    let served = current_crl(state, ca).await?;
    if !cached(state, ca).is_some_and(|c| c.base) {
        return Ok(served.der);
    }
    let name = format!("{ca}\u{0}complete");
    let key = state.idmint.store().ca_revocation_mark(ca).await?;
    let now = idmint_registry::now();
    if let Some(c) = cached(state, &name) {
        if c.key == key && fresh(c.issued, now) {
            return Ok(c.crl.der.clone());
        }
    }
    let entry = issue(state, ca, &name, key, CrlRequest::Full, None).await?;
    Ok(entry.crl.der.clone())
}

fn cached(state: &Shared, name: &str) -> Option<CachedCrl> {
    state.crls.lock().ok()?.get(name).cloned()
}

/// Issues a CRL of `ca` and caches it under `name`; `over` is a delta's
/// base number.
async fn issue(
    state: &Shared,
    ca: &str,
    name: &str,
    key: (i64, i64),
    request: CrlRequest,
    over: Option<u64>,
) -> Result<CachedCrl, ApiError> {
    let base = matches!(request, CrlRequest::Base { .. });
    let crl = state
        .idmint
        .issue_crl_of("server:crl", ca, &request)
        .await?;
    let entry = CachedCrl {
        key,
        issued: idmint_registry::now(),
        crl: Arc::new(crl),
        base,
        over,
    };
    if let Ok(mut cache) = state.crls.lock() {
        cache.insert(name.to_string(), entry.clone());
    }
    Ok(entry)
}

impl CachedCrl {
    fn served(&self) -> CurrentCrl {
        CurrentCrl {
            der: self.crl.der.clone(),
            issued: self.issued,
        }
    }
}

/// Whether a CRL issued at `issued` has half its validity left.
fn fresh(issued: i64, now: i64) -> bool {
    now - issued < idmint_flows::crl::CRL_VALIDITY.whole_seconds() / 2
}

/// The current CRL of `ca`, with when it was issued: complete, or a base
/// CRL; `{ca}-delta` names its delta CRL.
pub async fn current_crl(state: &Shared, ca: &str) -> Result<CurrentCrl, ApiError> {
    let Some(record) = state.idmint.store().ca(ca).await? else {
        if let Some(base) = ca.strip_suffix(DELTA_SUFFIX) {
            if state.idmint.store().ca(base).await?.is_some() {
                return current_delta(state, base).await;
            }
        }
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
    if record.kind.is_outside() {
        return Err(ApiError::not_found(format!(
            "CA {ca:?} is an outside CA: it publishes its own CRL"
        )));
    }
    Ok(current_full(state, ca).await?.served())
}

/// The CA's complete (or base) CRL, from the cache when still good.
async fn current_full(state: &Shared, ca: &str) -> Result<CachedCrl, ApiError> {
    let key = state.idmint.store().ca_revocation_mark(ca).await?;
    let now = idmint_registry::now();
    let delta_url = match &state.public_url {
        Some(url) if state.delta_crl_after > 0 && key.0 >= state.delta_crl_after as i64 => Some(
            format!("{}/crl/{ca}{DELTA_SUFFIX}.crl", url.trim_end_matches('/')),
        ),
        _ => None,
    };
    if let Some(c) = cached(state, ca) {
        // A base CRL waits for its validity to run down: changes go to
        // the delta. A complete CRL is reissued on every change.
        let current = if c.base {
            delta_url.is_some()
        } else {
            c.key == key && delta_url.is_none()
        };
        if current && fresh(c.issued, now) {
            return Ok(c);
        }
    }
    let request = match delta_url {
        Some(delta_url) => CrlRequest::Base { delta_url },
        None => CrlRequest::Full,
    };
    issue(state, ca, ca, key, request, None).await
}

/// The delta CRL over the CA's current base CRL, reissued on every change.
async fn current_delta(state: &Shared, ca: &str) -> Result<CurrentCrl, ApiError> {
    let base = current_full(state, ca).await?;
    if !base.base {
        return Err(ApiError::not_found(format!(
            "CA {ca:?} publishes complete CRLs only: /crl/{ca}.crl (delta CRLs start at [server] delta_crl_after = {} revoked entries, with public_url set)",
            state.delta_crl_after
        )));
    }
    let name = format!("{ca}{DELTA_SUFFIX}");
    let key = state.idmint.store().ca_revocation_mark(ca).await?;
    let now = idmint_registry::now();
    if let Some(c) = cached(state, &name) {
        if c.key == key && c.over == Some(base.crl.number) && fresh(c.issued, now) {
            return Ok(c.served());
        }
    }
    let request = CrlRequest::Delta {
        base: base.crl.number,
        base_read_at: base.crl.read_at,
    };
    Ok(issue(state, ca, &name, key, request, Some(base.crl.number))
        .await?
        .served())
}
