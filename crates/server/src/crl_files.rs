//! Keeps the CRL directory of `idmint serve --crl-dir` current: written at
//! start, then within about a second of any revocation (a cheap mark polled
//! from the store, so a revocation made on another server or by the CLI
//! counts too) and before half a CRL's validity has passed. After a change
//! the reload command tells the broker to re-read its `crlfile`.

use std::future::Future;
use std::time::Duration;

use idmint_flows::broker::crl_dir::CrlDirectory;

use crate::{ApiError, Shared};

/// How often the revocation mark is polled.
const POLL: Duration = Duration::from_secs(1);

/// Writes every CRL idmint can sign into `dir`; returns whether a file
/// changed.
pub async fn publish(state: &Shared, dir: &CrlDirectory) -> Result<bool, ApiError> {
    let mut crls = Vec::new();
    for ca in state.idmint.crl_issuers().await? {
        crls.push((ca.clone(), crate::crl::current(state, &ca).await?));
    }
    Ok(dir.write(&crls)?)
}

/// Writes the directory once, then keeps it current until `shutdown`.
pub async fn run(state: Shared, dir: CrlDirectory, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let fresh = idmint_flows::crl::CRL_VALIDITY.whole_seconds() / 2;
    let mut last: Option<((i64, i64), i64)> = None;
    loop {
        match state.idmint.store().revocation_mark().await {
            Ok(mark) => {
                let now = idmint_registry::now();
                let due = last.is_none_or(|(seen, at)| seen != mark || now - at >= fresh);
                if due {
                    match publish(&state, &dir).await {
                        Ok(changed) => {
                            last = Some((mark, now));
                            if changed {
                                tracing::info!(dir = %dir.dir().display(), "CRL files written");
                                if let Err(e) = dir.reload().await {
                                    tracing::warn!("{e}");
                                }
                            }
                        }
                        Err(e) => tracing::warn!("CRL files not written: {}", e.message),
                    }
                }
            }
            Err(e) => tracing::warn!("revocation mark not read: {e}"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
