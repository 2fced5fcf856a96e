//! Group commit for single issuances (EST, the REST API, `cert issue`,
//! fleet provisioning's new certificates): concurrent callers hand their
//! registrations (batch quota, thing, certificate, ownership token, the
//! claim certificate that must still be in force) to one
//! task, which writes every registration waiting at
//! that moment in one transaction. A registry transaction costs a handful
//! of statements before and after its own rows (the audit chain's head, the
//! audit records, the commit); under load they are paid once per group
//! instead of once per certificate, and nobody waits for a group to fill.
//!
//! A group that fails as a whole (one certificate over its batch quota, a
//! duplicate) is rolled back and its registrations are written again one
//! transaction each, so every caller gets the answer it would have had
//! alone, and nothing of a failed registration is kept.

use std::collections::BTreeMap;

use idmint_registry::{
    BatchId, CertificateId, NewCertificate, NewThing, OwnershipToken, RegistryError, Store,
};
use tokio::sync::{mpsc, oneshot};

use crate::FlowError;

/// At most this many registrations share a transaction.
const MAX_GROUP: usize = 256;
/// Registrations waiting to be written, at most.
const QUEUE: usize = 4096;

/// One certificate to register.
#[derive(Debug)]
pub struct Registration {
    /// Who the audit records name.
    pub actor: String,
    /// The thing the certificate is attached to, created if it does not
    /// exist (an existing thing is left as it is).
    pub thing: Option<NewThing>,
    /// Whether the thing may already exist (the principal may act on it);
    /// when false and it exists, the registration fails `ThingExists`.
    pub attach_existing: bool,
    /// The EST bootstrap certificate this registration spends (once).
    pub bootstrap: Option<CertificateId>,
    /// The certificate.
    pub certificate: NewCertificate,
    /// The batch whose quota it counts against.
    pub batch: Option<BatchId>,
    /// The claim certificate that asked for it (fleet provisioning), which
    /// must still be in force when the registration commits.
    pub claim: Option<CertificateId>,
    /// An ownership token for it (fleet provisioning): its SHA-256 and record.
    pub ownership_token: Option<(String, OwnershipToken)>,
    /// The TPM attestation it completes: its session is spent and the
    /// endorsement key's identity in the batch recorded (a second is refused).
    pub tpm: Option<TpmActivation>,
}

/// A TPM attestation session that a certificate completes (issue 16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmActivation {
    /// The session id.
    pub session: String,
    /// SHA-256 (hex) of the endorsement key's SubjectPublicKeyInfo.
    pub ek_sha256: String,
}

type Request = (Registration, oneshot::Sender<Result<(), FlowError>>);

/// The handle callers register through; the writer task ends when the last
/// handle is dropped.
#[derive(Clone, Debug)]
pub struct Registrar {
    queue: mpsc::Sender<Request>,
}

impl Registrar {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(store: Store) -> Registrar {
        let (queue, requests) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(store, requests));
        Registrar { queue }
    }

    /// Registers `registration`, returning once it is committed.
    pub async fn register(&self, registration: Registration) -> Result<(), FlowError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((registration, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> FlowError {
    FlowError::Registry(RegistryError::Corrupt("the registry writer stopped".into()))
}

async fn write_groups(store: Store, mut requests: mpsc::Receiver<Request>) {
    while let Some(first) = requests.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let together = {
            let registrations: Vec<&Registration> = group.iter().map(|(r, _)| r).collect();
            write(&store, &registrations).await
        };
        match together {
            Ok(()) => {
                for (_, reply) in group {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) if group.len() == 1 => {
                if let Some((_, reply)) = group.pop() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(_) => {
                for (registration, reply) in group {
                    let _ = reply.send(write(&store, &[&registration]).await);
                }
            }
        }
    }
}

/// Writes `registrations` in one transaction: each batch's quota once for
/// all its certificates, then the things and certificates, the audit
/// records naming each registration's own actor.
async fn write(store: &Store, registrations: &[&Registration]) -> Result<(), FlowError> {
    let Some(first) = registrations.first() else {
        return Ok(());
    };
    let mut tx = store.begin(&first.actor).await?;
    let mut quotas: BTreeMap<&str, i64> = BTreeMap::new();
    for r in registrations {
        if let Some(batch) = &r.batch {
            *quotas.entry(batch.as_str()).or_default() += 1;
        }
    }
    for (batch, n) in quotas {
        tx.reserve_quota(batch, n).await?;
    }
    // No certificate is registered under a revoked CA (revoked by another
    // process, e.g. `idmint ca revoke` while a server runs).
    let cas: std::collections::BTreeSet<&str> = registrations
        .iter()
        .map(|r| r.certificate.ca.as_str())
        .collect();
    for ca in cas {
        if let Some(revoked) = store.revoked_ca_in_chain(ca).await? {
            return Err(FlowError::CaRevoked(revoked));
        }
    }
    // Each claim certificate in the group is looked at once.
    let claims: std::collections::BTreeSet<&CertificateId> = registrations
        .iter()
        .filter_map(|r| r.claim.as_ref())
        .collect();
    for claim in claims {
        let standing = tx.certificate(claim).await?.map(|c| c.standing());
        crate::access::ensure_claim_in_force(standing.as_ref())?;
    }
    // Consecutive registrations by the same actor are written together.
    let mut start = 0;
    while start < registrations.len() {
        let actor = &registrations[start].actor;
        let end = registrations[start..]
            .iter()
            .position(|r| &r.actor != actor)
            .map_or(registrations.len(), |n| start + n);
        let run = &registrations[start..end];
        let things: Vec<NewThing> = run.iter().filter_map(|r| r.thing.clone()).collect();
        let certificates: Vec<NewCertificate> = run.iter().map(|r| r.certificate.clone()).collect();
        tx.set_actor(actor);
        let mut created: std::collections::HashSet<String> =
            tx.insert_things(&things).await?.into_iter().collect();
        for r in run {
            if let Some(thing) = r.thing.as_ref().filter(|_| !r.attach_existing) {
                if !created.remove(thing.name.as_str()) {
                    return Err(RegistryError::ThingExists {
                        name: thing.name.to_string(),
                    }
                    .into());
                }
            }
        }
        tx.insert_certificates(&certificates).await?;
        for r in run {
            if let (Some(bootstrap), Some(thing)) = (&r.bootstrap, &r.thing) {
                tx.record_bootstrap_enrollment(bootstrap, &r.certificate.id, &thing.name)
                    .await?;
            }
        }
        for (hash, token) in run.iter().filter_map(|r| r.ownership_token.as_ref()) {
            tx.insert_ownership_token(hash, token).await?;
        }
        for r in run {
            if let (Some(tpm), Some(batch)) = (&r.tpm, &r.batch) {
                tx.spend_tpm_session(&tpm.session).await?;
                tx.record_tpm_identity(
                    batch.as_str(),
                    &tpm.ek_sha256,
                    r.certificate.id.as_str(),
                    &tpm.session,
                )
                .await?;
            }
        }
        start = end;
    }
    tx.commit().await?;
    Ok(())
}
