//! Scenarios 2 and 4, offline: a factory (or a third-party programmer)
//! without a line to the maker provisions devices under a batch
//! authorization, and the maker reconciles its signed issuance log later.
//!
//! 1. **Authorize** (at the maker, [`crate::Idmint::authorize_offline_batch`]):
//!    a batch CA (path length 0, valid `--valid-days`) is made for the batch
//!    and signed by a maker CA; the batch limits (batch id, factory, count,
//!    device serial range, issuance window, profile) are signed by the same
//!    maker CA key; the batch CA key is encrypted to the factory's age
//!    recipient or generated inside the factory's PKCS#11 token. All of it
//!    goes into one authorization bundle (JSON, [`bundle`]). The maker
//!    registers the batch (kind `authorization`, quota = count) and the batch
//!    CA (kind `batch`, no key) but never keeps the batch CA key.
//! 2. **Station** (at the factory, [`run_offline_station`]): the station
//!    verifies the bundle, opens the batch CA key, and provisions devices
//!    with the same device steps as the online station
//!    ([`crate::station`]), counting against the authorized count and
//!    serial range with its own counter state next to the log, and appends
//!    every issuance, installation and spoiled certificate to a hash-chained
//!    issuance log whose every record the batch CA key signs ([`log`]).
//! 3. **Reconcile** (at the maker, [`crate::Idmint::reconcile_issuance_log`]):
//!    the log's chain and signatures are checked against the registered
//!    authorization, every device is registered (things and certificates,
//!    in one write transaction with its audit records), and duplicates,
//!    excess, gaps and tampering are reported.
//!
//! 4. **Revocation** ([`revocation`]): at authorize, before the batch CA
//!    key leaves, it signs a delegated OCSP responder and a CRL signer
//!    whose keys the maker keeps, so `serve` answers OCSP and CRLs for the
//!    batch CA's certificates.
//!
//! What the offline design can and cannot stop is in
//! `docs/offline-batches.md`: a factory holding the batch CA key can sign
//! more than its count and can rewrite its own log; the batch CA's short
//! validity bounds the window, every certificate it signs must be in a
//! reconciled log to be registered (and so accepted by the maker's
//! services), and reconcile reports whatever the log shows.

pub mod bundle;
pub mod log;

mod authorize;
mod reconcile;
mod station;

pub use authorize::{
    parse_serial_range, AuthorizeReport, AuthorizeRequest, BatchKeyDestination, OFFLINE_CA,
};
pub use bundle::{Authorization, BatchLimits, BundleKey, RevocationUrls};
pub use idmint_flows::offline_revocation::SIGNER_STATUS_SUFFIX;
pub use log::{Finding, FindingKind};
pub use reconcile::ReconcileReport;
pub use station::{run_offline_station, OfflineRun, OfflineStationOptions};

#[cfg(test)]
mod tests;
