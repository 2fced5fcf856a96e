//! Domain values every idmint layer shares — the PKI that signs them, the
//! registry that stores them, the flows and front ends that pass them —
//! parsed once at the edge and carried typed from there on.

mod ids;
mod revocation;
mod thing;

pub use ids::{
    name_fault, BatchId, CertificateId, InvalidBatchId, InvalidCertificateId, InvalidSerial, Serial,
};

pub use revocation::{RevocationReason, UnknownRevocationReason};
pub use thing::{InvalidThingName, ThingName, MAX_THING_NAME};
