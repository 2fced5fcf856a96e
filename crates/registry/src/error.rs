//! The typed errors of the registry.

/// Everything that can go wrong reading or changing the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The store could not be reached or a statement failed.
    #[error("store error: {0}")]
    Store(sqlx::Error),
    /// The schema migration failed.
    #[error("store migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The store URL is not one idmint supports.
    #[error("unsupported store {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedStore(String),
    /// A record that must exist does not.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// What was looked for (`certificate`, `thing`, `CA`, `batch`).
        kind: &'static str,
        /// Its name or id.
        name: String,
    },
    /// A record that must be unique already exists.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// What kind of record.
        kind: &'static str,
        /// Its name or id.
        name: String,
    },
    /// A name that the registry refuses (control characters, empty, too long).
    #[error("invalid {kind} {name:?}: {reason}")]
    InvalidName {
        /// What kind of name.
        kind: &'static str,
        /// The name, escaped.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A batch has no quota left for the requested issuance.
    #[error(
        "batch {batch} quota exhausted: {issued} of {quota} issued, {requested} more requested"
    )]
    QuotaExhausted {
        /// The batch.
        batch: String,
        /// Its quota.
        quota: i64,
        /// Already issued.
        issued: i64,
        /// Requested now.
        requested: i64,
    },
    /// A state change that is not allowed (e.g. activating a revoked certificate).
    #[error("certificate {id} is {from}; cannot make it {to}")]
    InvalidTransition {
        /// The certificate id.
        id: String,
        /// Its current status.
        from: String,
        /// The requested status.
        to: String,
    },
    /// A policy that is still attached cannot be deleted.
    #[error("policy {name:?} is attached to {certificates} certificate(s); detach it first (idmint policy detach)")]
    PolicyAttached {
        /// The policy.
        name: String,
        /// How many certificates hold it.
        certificates: i64,
    },
    /// A certificate ownership token that cannot be used (unknown, already
    /// used, expired, or another claim's).
    #[error("certificate ownership token {0}")]
    OwnershipToken(&'static str),
    /// A new certificate would attach to a thing that already exists, and
    /// its requester may not act on that thing.
    #[error("thing {name:?} already exists")]
    ThingExists {
        /// The thing.
        name: String,
    },
    /// A live certificate (ACTIVE, INACTIVE or PENDING_ACTIVATION) already
    /// certifies this public key for another thing: the same key on two
    /// devices is a clone. Refused inside the issuing transaction.
    #[error("refused clone: the public key {public_key_sha256} is already certified{}", existing_certificate.as_deref().map(|c| format!(" (certificate {c})")).unwrap_or_default())]
    Clone {
        /// SHA-256 (hex) of the public key (DER SubjectPublicKeyInfo).
        public_key_sha256: String,
        /// The live certificate that holds it (`None` when only the
        /// store's unique index caught a concurrent writer).
        existing_certificate: Option<String>,
    },
    /// Other writers held the store for too long.
    #[error("the registry is busy: other writers held it for 30 s; try again")]
    Busy,
    /// A notification on the event channel that is not one of ours.
    #[error("unreadable event notification: {0}")]
    EventNotice(String),
    /// A stored value could not be decoded (corrupt row).
    #[error("corrupt registry row: {0}")]
    Corrupt(String),
    /// An id prefix that matches more than one record.
    #[error("{kind} id prefix {prefix:?} is ambiguous: it matches {}{}; give more characters", matches.join(", "), if *more { ", ..." } else { "" })]
    Ambiguous {
        /// What was looked for (`certificate`, `batch`).
        kind: &'static str,
        /// The prefix given.
        prefix: String,
        /// The first ids it matches, in order.
        matches: Vec<String>,
        /// Whether it matches more than those listed.
        more: bool,
    },
}

impl From<sqlx::Error> for RegistryError {
    /// A column that does not decode is a corrupt row, named by its column;
    /// every other store error is the store's.
    fn from(e: sqlx::Error) -> RegistryError {
        match e {
            sqlx::Error::ColumnDecode { index, source } => {
                RegistryError::Corrupt(format!("{index}: {source}"))
            }
            e => RegistryError::Store(e),
        }
    }
}
