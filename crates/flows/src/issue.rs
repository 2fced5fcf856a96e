//! Issuing device certificates: from a PKCS#10 request (the key stays with
//! its owner), or with a key generated here, one at a time or in bulk.
//! Every certificate is registered, with its thing and audit records, in the
//! same transaction that makes it known.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use idmint_pki::{
    CertificateAuthority, Csr, DeviceKey, IssuedCertificate, KeyType, Profile, PublicKey,
    SubjectValues,
};
use idmint_registry::{
    validate_thing_name, AuditEvent, CertificateStatus, NewCertificate, NewThing, RegistryError,
    ServiceCertificate,
};
use idmint_types::{BatchId, ThingName};
use zeroize::Zeroizing;

use crate::access::{AccessError, AuthorizedIssuance};
use crate::files::{write_new, write_secret};
use crate::registrar::{Registration, TpmActivation};
use crate::{FlowError, Idmint};

/// What to issue and for whom.
#[derive(Clone, Debug)]
pub struct IssueOptions {
    /// Profile name.
    pub profile: String,
    /// Issuing CA name (the configured default when `None`).
    pub ca: Option<String>,
    /// Thing to attach the certificate to (created if new).
    pub thing: Option<ThingName>,
    /// Initial certificate state.
    pub status: CertificateStatus,
    /// Batch the certificate counts against (its quota is taken).
    pub batch: Option<BatchId>,
}

impl Default for IssueOptions {
    fn default() -> Self {
        IssueOptions {
            profile: "device".into(),
            ca: None,
            thing: None,
            status: CertificateStatus::Active,
            batch: None,
        }
    }
}

/// A certificate issued and registered.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub certificate: IssuedCertificate,
    /// The thing it is attached to.
    pub thing: ThingName,
    /// The issuing CA's name.
    pub ca: String,
}

impl Idmint {
    /// Issues a certificate for a verified CSR. The thing name is the
    /// option's, else the CSR's common name.
    pub async fn issue_from_csr(
        &self,
        who: &AuthorizedIssuance,
        csr: &Csr,
        options: &IssueOptions,
    ) -> Result<Issued, FlowError> {
        self.issue_csr(who, csr, options, None).await
    }

    /// Issues a certificate for a verified CSR whose key a TPM attestation
    /// proved TPM-resident: registered with the session it spends and the
    /// endorsement key's identity in the batch, in the same transaction.
    pub async fn issue_from_attested_csr(
        &self,
        who: &AuthorizedIssuance,
        csr: &Csr,
        options: &IssueOptions,
        attestation: TpmActivation,
    ) -> Result<Issued, FlowError> {
        if options.batch.is_none() {
            return Err(FlowError::Invalid(
                "a TPM attestation issues into a batch".into(),
            ));
        }
        self.issue_csr(who, csr, options, Some(attestation)).await
    }

    async fn issue_csr(
        &self,
        who: &AuthorizedIssuance,
        csr: &Csr,
        options: &IssueOptions,
        tpm: Option<TpmActivation>,
    ) -> Result<Issued, FlowError> {
        let thing = match (&options.thing, csr.common_name()) {
            (Some(t), _) => t.clone(),
            (None, Some(cn)) => ThingName::parse(cn).map_err(RegistryError::from)?,
            (None, None) => {
                return Err(FlowError::Invalid(
                    "the CSR has no common name: give the thing name".into(),
                ))
            }
        };
        let mut values = SubjectValues::for_thing(thing.as_str());
        if let Some(cn) = csr.common_name() {
            values.set("csr_cn", cn);
        }
        self.issue_key(who, csr.public_key(), &thing, values, options, tpm)
            .await
    }

    /// Issues a certificate for a public key (the caller has established
    /// possession of the private key).
    pub async fn issue_for_public_key(
        &self,
        who: &AuthorizedIssuance,
        key: &PublicKey,
        thing: &ThingName,
        values: SubjectValues,
        options: &IssueOptions,
    ) -> Result<Issued, FlowError> {
        self.issue_key(who, key, thing, values, options, None).await
    }

    async fn issue_key(
        &self,
        who: &AuthorizedIssuance,
        key: &PublicKey,
        thing: &ThingName,
        mut values: SubjectValues,
        options: &IssueOptions,
        tpm: Option<TpmActivation>,
    ) -> Result<Issued, FlowError> {
        let attach_existing = self.check_issuance(who, thing.as_str(), options).await?;
        let (ca_name, ca, profile) = self.issuer(options).await?;
        values.set("org", self.config().org.as_str());
        let certificate = ca.issue(key, &profile, &values)?;
        self.register_issued(
            who,
            ca_name,
            certificate,
            thing,
            options,
            Completion {
                attach_existing,
                tpm,
            },
        )
        .await
    }

    /// Generates a key here and issues its certificate. The key is returned
    /// to the caller, never stored.
    pub async fn new_identity(
        &self,
        who: &AuthorizedIssuance,
        thing: &ThingName,
        key_type: Option<KeyType>,
        options: &IssueOptions,
    ) -> Result<(DeviceKey, Issued), FlowError> {
        let attach_existing = self.check_issuance(who, thing.as_str(), options).await?;
        let (ca_name, ca, profile) = self.issuer(options).await?;
        let key = DeviceKey::generate(key_type.unwrap_or(self.config().key_type))?;
        let values =
            SubjectValues::for_thing(thing.as_str()).with("org", self.config().org.as_str());
        let certificate = ca.issue_for_key(&key, &profile, &values)?;
        let issued = self
            .register_issued(
                who,
                ca_name,
                certificate,
                thing,
                options,
                Completion {
                    attach_existing,
                    tpm: None,
                },
            )
            .await?;
        Ok((key, issued))
    }

    /// Registers a certificate just signed for `thing` ([`Idmint::register`])
    /// and hands it back as [`Issued`].
    async fn register_issued(
        &self,
        who: &AuthorizedIssuance,
        ca_name: String,
        certificate: IssuedCertificate,
        thing: &ThingName,
        options: &IssueOptions,
        completion: Completion,
    ) -> Result<Issued, FlowError> {
        self.register(who, &ca_name, &certificate, thing, options, completion)
            .await?;
        Ok(Issued {
            certificate,
            thing: thing.clone(),
            ca: ca_name,
        })
    }

    /// The CA and profile an issuance uses, checked before any key is made.
    pub async fn issuer(
        &self,
        options: &IssueOptions,
    ) -> Result<(String, Arc<CertificateAuthority>, Profile), FlowError> {
        let profile = self.config().profile(&options.profile)?;
        let ca_name = options
            .ca
            .clone()
            .unwrap_or_else(|| self.default_ca().to_string());
        let ca = self.signing_ca(&ca_name).await?;
        Ok((ca_name, ca, profile))
    }

    /// Checks an issuance against its authorization before anything is
    /// signed: the batch it is limited to, and whether the thing, if it
    /// exists, may gain a certificate. Returns whether it exists (the
    /// registry refuses a thing that appears meanwhile unless it may).
    async fn check_issuance(
        &self,
        who: &AuthorizedIssuance,
        thing: &str,
        options: &IssueOptions,
    ) -> Result<bool, FlowError> {
        if let Some(batch) = who.batch() {
            if options.batch.as_deref() != Some(batch) {
                return Err(AccessError::Refused(format!(
                    "this credential may only issue in batch {batch}"
                ))
                .into());
            }
        }
        match self.store().thing(thing).await? {
            Some(existing) => {
                who.may_attach(&existing)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn register(
        &self,
        who: &AuthorizedIssuance,
        ca: &str,
        certificate: &IssuedCertificate,
        thing: &ThingName,
        options: &IssueOptions,
        completion: Completion,
    ) -> Result<(), FlowError> {
        let Completion {
            attach_existing,
            tpm,
        } = completion;
        let mut new_thing = NewThing::named(thing.clone());
        new_thing.batch = options.batch.clone();
        self.registrar()
            .register(Registration {
                actor: who.actor().to_string(),
                thing: Some(new_thing),
                attach_existing,
                bootstrap: who.bootstrap().cloned(),
                certificate: certificate_record(
                    certificate,
                    ca,
                    Some(thing.as_str()),
                    options.status,
                    options.batch.as_ref(),
                ),
                batch: options.batch.clone(),
                claim: None,
                ownership_token: None,
                tpm,
            })
            .await
    }
}

/// How a registration completes beyond the certificate: whether the thing
/// may exist already, and the TPM attestation it spends.
struct Completion {
    attach_existing: bool,
    tpm: Option<TpmActivation>,
}

/// The registry record for a certificate we issued.
pub fn certificate_record(
    certificate: &IssuedCertificate,
    ca: &str,
    thing: Option<&str>,
    status: CertificateStatus,
    batch: Option<&BatchId>,
) -> NewCertificate {
    let info = &certificate.info;
    NewCertificate {
        id: info.id.clone(),
        serial: info.serial.clone(),
        ca: ca.to_string(),
        thing: thing.map(str::to_string),
        status,
        subject: info.subject.clone(),
        key_type: info.key_type.map(|k| k.to_string()),
        not_before: info.not_before.unix_timestamp(),
        not_after: info.not_after.unix_timestamp(),
        public_key_sha256: info.public_key_sha256.clone(),
        batch: batch.cloned(),
        der: certificate.der.clone(),
    }
}

/// Registers in `tx` a certificate CA `ca` issued to one of idmint's own
/// services (a delegated OCSP responder, a CRL signer): ACTIVE, of no thing
/// or batch, with its audit record `event` (e.g.
/// [`AuditEvent::OcspResponderIssued`]); `offline` marks one an offline
/// batch CA signed at `batch authorize`.
pub(crate) async fn register_service_certificate(
    tx: &mut idmint_registry::WriteTx,
    issued: &IssuedCertificate,
    ca: &str,
    event: fn(ServiceCertificate) -> AuditEvent,
    offline: bool,
) -> Result<(), FlowError> {
    tx.insert_certificate(&certificate_record(
        issued,
        ca,
        None,
        CertificateStatus::Active,
        None,
    ))
    .await?;
    tx.audit(
        &issued.info.id,
        event(ServiceCertificate {
            ca: ca.to_string(),
            serial: issued.info.serial.clone(),
            not_after: issued.info.not_after.unix_timestamp(),
            offline,
        }),
    );
    Ok(())
}

/// A bulk server-side key generation request (`cert new --count`).
#[derive(Clone, Debug)]
pub struct BulkRequest {
    /// How many identities.
    pub count: u64,
    /// Thing names are the prefix followed by a zero-padded number.
    pub thing_prefix: String,
    /// The first number.
    pub start: u64,
    /// Where the key and certificate files go.
    pub out_dir: PathBuf,
    /// Key type (configured default when `None`).
    pub key_type: Option<KeyType>,
    /// Worker threads for the cryptography.
    pub jobs: usize,
    /// Profile, CA, status.
    pub options: IssueOptions,
}

/// What a bulk run did.
#[derive(Clone, Debug)]
pub struct BulkReport {
    /// Identities issued and registered.
    pub issued: u64,
}

/// Identities generated per chunk (one registry transaction each, at most).
const CHUNK: u64 = 256;
/// Chunks committed per registry transaction.
const CHUNKS_PER_COMMIT: usize = 8;

struct Minted {
    thing: ThingName,
    key_pem: Zeroizing<String>,
    certificate: IssuedCertificate,
}

impl Idmint {
    /// Generates `count` keys and certificates, crypto in parallel, registry
    /// writes batched, files written after their records are committed.
    /// `progress` is called with the number of identities done so far.
    pub async fn bulk_new(
        &self,
        actor: &str,
        request: &BulkRequest,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<BulkReport, FlowError> {
        let width = digits(request.start + request.count).max(6);
        validate_thing_name(&format!("{}0", request.thing_prefix))?;
        let (ca_name, ca, profile) = self.issuer(&request.options).await?;
        std::fs::create_dir_all(&request.out_dir)
            .map_err(|e| FlowError::io(&request.out_dir, e))?;
        let chain_path = request.out_dir.join("ca-chain.pem");
        if !chain_path.exists() {
            let chain: String = self
                .chain(&ca_name)
                .await?
                .iter()
                .map(|der| idmint_pki::to_pem("CERTIFICATE", der))
                .collect();
            write_new(&chain_path, chain.as_bytes())?;
        }
        let key_type = request.key_type.unwrap_or(self.config().key_type);
        let org = self.config().org.clone();
        let next = Arc::new(AtomicU64::new(0));
        // Room for two commits' worth on each side, so minting, the
        // registry commit and file writing overlap instead of taking turns.
        let (tx_chunks, mut rx_chunks) = tokio::sync::mpsc::channel::<Result<Vec<Minted>, FlowError>>(
            (request.jobs * 2).max(CHUNKS_PER_COMMIT * 2),
        );
        let mut workers = Vec::new();
        for _ in 0..request.jobs.max(1) {
            let (ca, profile, next, tx_chunks) =
                (ca.clone(), profile.clone(), next.clone(), tx_chunks.clone());
            let (prefix, org, start, count) = (
                request.thing_prefix.clone(),
                org.clone(),
                request.start,
                request.count,
            );
            workers.push(std::thread::spawn(move || loop {
                let first = next.fetch_add(CHUNK, Ordering::Relaxed);
                if first >= count {
                    break;
                }
                let last = (first + CHUNK).min(count);
                let chunk = (first..last)
                    .map(|i| {
                        let thing = ThingName::parse(&format!("{prefix}{:0width$}", start + i))
                            .map_err(RegistryError::from)?;
                        mint(&ca, &profile, key_type, thing, &org)
                    })
                    .collect::<Result<Vec<_>, _>>();
                let failed = chunk.is_err();
                if tx_chunks.blocking_send(chunk).is_err() || failed {
                    break;
                }
            }));
        }
        drop(tx_chunks);

        let (tx_files, rx_files) =
            std::sync::mpsc::sync_channel::<Vec<Minted>>(CHUNKS_PER_COMMIT * 2);
        let out_dir = request.out_dir.clone();
        let file_writer = std::thread::spawn(move || -> Result<(), FlowError> {
            for chunk in rx_files {
                write_identity_files(&out_dir, &chunk)?;
            }
            Ok(())
        });

        let mut done = 0u64;
        let mut pending: Vec<Vec<Minted>> = Vec::new();
        let mut result = Ok(());
        while let Some(chunk) = rx_chunks.recv().await {
            match chunk {
                Ok(chunk) => pending.push(chunk),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if pending.len() >= CHUNKS_PER_COMMIT {
                done += self
                    .commit_minted(actor, &ca_name, &request.options, &pending)
                    .await?;
                for chunk in pending.drain(..) {
                    if tx_files.send(chunk).is_err() {
                        break;
                    }
                }
                progress(done);
            }
        }
        drop(rx_chunks);
        if result.is_ok() && !pending.is_empty() {
            done += self
                .commit_minted(actor, &ca_name, &request.options, &pending)
                .await?;
            for chunk in pending.drain(..) {
                let _ = tx_files.send(chunk);
            }
            progress(done);
        }
        drop(tx_files);
        for w in workers {
            let _ = w.join();
        }
        file_writer
            .join()
            .map_err(|_| FlowError::Internal("the file writer thread panicked".into()))??;
        result?;
        Ok(BulkReport { issued: done })
    }

    async fn commit_minted(
        &self,
        actor: &str,
        ca: &str,
        options: &IssueOptions,
        chunks: &[Vec<Minted>],
    ) -> Result<u64, FlowError> {
        let minted: Vec<&Minted> = chunks.iter().flatten().collect();
        let things: Vec<NewThing> = minted
            .iter()
            .map(|m| {
                let mut t = NewThing::named(m.thing.clone());
                t.batch = options.batch.clone();
                t
            })
            .collect();
        let certs: Vec<NewCertificate> = minted
            .iter()
            .map(|m| {
                certificate_record(
                    &m.certificate,
                    ca,
                    Some(m.thing.as_str()),
                    options.status,
                    options.batch.as_ref(),
                )
            })
            .collect();
        let mut tx = self.store().begin(actor).await?;
        if let Some(batch) = &options.batch {
            tx.reserve_quota(batch, certs.len() as i64).await?;
        }
        tx.register_devices(AuditEvent::CertificateIssue, &things, &certs)
            .await?;
        tx.commit().await?;
        Ok(certs.len() as u64)
    }
}

fn mint(
    ca: &CertificateAuthority,
    profile: &Profile,
    key_type: KeyType,
    thing: ThingName,
    org: &str,
) -> Result<Minted, FlowError> {
    let key = DeviceKey::generate(key_type)?;
    let values = SubjectValues::for_thing(&thing).with("org", org);
    let certificate = ca.issue_for_key(&key, profile, &values)?;
    Ok(Minted {
        thing,
        key_pem: key.pkcs8_pem(),
        certificate,
    })
}

fn write_identity_files(dir: &Path, chunk: &[Minted]) -> Result<(), FlowError> {
    for m in chunk {
        write_secret(
            &dir.join(format!("{}.key.pem", m.thing)),
            m.key_pem.as_bytes(),
        )?;
        write_new(
            &dir.join(format!("{}.cert.pem", m.thing)),
            m.certificate.pem().as_bytes(),
        )?;
    }
    Ok(())
}

fn digits(n: u64) -> usize {
    n.to_string().len()
}
