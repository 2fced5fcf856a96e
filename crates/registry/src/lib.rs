//! idmint's registry: the single source of truth for every CA, thing,
//! certificate and batch, and the hash-chained audit log of every change.
//!
//! The [`Store`] is an embedded SQLite file by default or a PostgreSQL
//! server; both run the same SQL and the same test suite. Reads go through
//! [`Store`]; every change goes through a [`WriteTx`], which appends its
//! audit records to the chain in the same transaction, so a crash leaves all
//! or nothing.
//!
//! ```no_run
//! # async fn demo() -> Result<(), idmint_registry::RegistryError> {
//! use idmint_registry::{NewThing, Store, ThingName};
//! let store = Store::open("sqlite://idmint-data/registry.db").await?;
//! let mut tx = store.begin("operator:alice").await?;
//! let name = ThingName::parse("sensor-1").expect("a valid thing name");
//! tx.upsert_thing(&NewThing::named(name)).await?;
//! tx.commit().await?;
//! assert!(store.verify_audit().await?.intact());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod audit;
mod audit_event;
mod chains;
mod claim_rate;
mod error;
mod events;
mod fleet;
mod grants;
mod imports;
mod lookup;
mod mint;
mod model;
mod offline;
mod policies;
mod rotations;
mod row;
mod store;
mod tokens;
mod tpm;
mod write;

pub use audit::{AuditFault, AuditReport};
pub use audit_event::{
    AuditEvent, CaAdded, CaSettings, ProvisionedVia, RegisteredDevice, ServiceCertificate,
    StationSpoiled,
};
pub use chains::{NewChain, NewIntermediate};
pub use claim_rate::{ClaimAllowance, CLAIM_WINDOW_SECS};
pub use error::RegistryError;
pub use events::{Event, EventChannel, EventListener, EVENT_CHANNEL};
pub use fleet::{
    Claim, NewTemplate, OwnershipToken, ProvisioningTemplate, TemplateKind, UsableToken,
};
pub use grants::{ConvertedRole, Grant, Scope};
pub use idmint_types::{BatchId, CertificateId, RevocationReason, Serial, ThingName};
pub use imports::{ExportedCertificate, RegisteredCertificate, RegisteredThing};
pub use lookup::MIN_PREFIX;
pub use mint::{MintItem, MINT_ITEM_OK, MINT_ITEM_SPOILED};
pub use model::*;
pub use offline::{
    FindingKind, NewOfflineAuthorization, OfflineAuthorization, ReconciledRecord, RecordFinding,
    RevocationSigners,
};
pub use policies::Policy;
pub use rotations::Rotation;
pub use store::{Backend, CertificateFilter, Store};
pub use tokens::{Role, Token};
pub use tpm::{NewTpmSession, TpmSession};
pub use write::WriteTx;

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
