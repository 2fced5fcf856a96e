//! Scenarios 2 and 4, online: the factory provisioning station. A station
//! talks to each device over the device agent protocol (`idmint-agent`):
//! hello, keygen (or inject), issue against a batch quota, install, prove,
//! optional lock, register.
//!
//! Registration order, so that counts always reconcile
//! (`issued = active + spoiled` for a batch):
//!
//! 1. Before touching the device, the batch must have quota left.
//! 2. One transaction takes one from the quota, signs the certificate and
//!    registers it `PENDING_ACTIVATION` with its thing (device id = the
//!    hardware id).
//! 3. The certificate is installed and proved on the device (and the
//!    device locked when asked).
//! 4. Success: the certificate becomes `ACTIVE`. Failure after step 2: the
//!    certificate is revoked (`cessationOfOperation`) and counted spoiled.
//!
//! A device that fails anywhere is reported with the reason and the station
//! goes on with the next one. Device I/O is blocking (one thread per device
//! address); registry calls run on the async runtime through its handle.
//!
//! The device steps are shared with the offline station
//! ([`crate::offline`]): a `StationBackend` decides where quota is counted
//! and certificates are signed and recorded (the registry here, the batch
//! CA and the signed issuance log offline, the REST API of an `idmint
//! serve` in [`remote`] mode).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod offline;
pub mod partition;
pub mod remote;
pub mod report;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idmint_agent::{AgentClient, Capability, DeviceAddress, HelloInfo, Link};
use idmint_pki::{
    CertificateAuthority, Csr, DeviceKey, IssuedCertificate, KeyType, Profile, PublicKey,
    SubjectValues,
};
use idmint_registry::{
    validate_name, AuditEvent, Batch, BatchId, BatchKind, CertificateFilter, CertificateId,
    CertificateStatus, NewBatch, NewThing, RegistryError, StationPolicy, StationSpoiled, Thing,
    ThingName, WriteTx,
};
use serde::Serialize;
use tokio::runtime::Handle;

use idmint_flows::issue::certificate_record;
use idmint_flows::{FlowError, Idmint};

pub use partition::{PartitionOptions, PartitionOutcome};

/// The revocation reason recorded for a certificate that never reached its
/// device.
pub const SPOILED_REASON: idmint_registry::RevocationReason =
    idmint_registry::RevocationReason::CessationOfOperation;

/// Spoils a station certificate inside `tx`: revokes it
/// ([`SPOILED_REASON`]), counts it in its batch's (`spoiled.batch`) spoiled
/// count (`why`) and audits `station.spoiled` with `spoiled`. One sequence
/// for a local station, the remote stations' API and the server's sweep of
/// certificates never confirmed on their devices.
pub async fn spoil_certificate(
    tx: &mut WriteTx,
    certificate: &CertificateId,
    why: &str,
    spoiled: StationSpoiled,
) -> Result<(), RegistryError> {
    tx.set_certificate_status(
        certificate,
        CertificateStatus::Revoked,
        Some(SPOILED_REASON),
    )
    .await?;
    tx.add_spoiled(&spoiled.batch, 1, why).await?;
    tx.audit(certificate, AuditEvent::StationSpoiled(spoiled));
    Ok(())
}

/// A new station batch (`idmint batch create`).
#[derive(Clone, Debug)]
pub struct NewStationBatch {
    /// Product name.
    pub product: String,
    /// Quota: how many identities stations may issue.
    pub count: u64,
    /// The factory it is for.
    pub factory: Option<String>,
    /// Certificate profile.
    pub profile: String,
    /// Issuing CA (the configured default when `None`).
    pub ca: Option<String>,
    /// Whether stations may push station-made keys to devices that cannot
    /// generate their own.
    pub allow_inject: bool,
    /// What remote stations issuing in it get (pending activation, clone
    /// refusal): the batch's policy, not the station's choice.
    pub policy: StationPolicy,
}

idmint_flows::scenario_service!(
    /// Scenarios 2 and 4 over an opened data directory: station batches,
    /// the online station, station reports from a remote station, and the
    /// offline batches a factory runs with its own batch CA (authorize,
    /// reconcile).
    Station
);

impl crate::Station<'_> {
    /// Spoils station certificates left PENDING_ACTIVATION for longer than
    /// `timeout_secs`: issued for a device, never confirmed on it (the
    /// station was killed or lost its link between the two). Each is revoked
    /// (`cessationOfOperation`) and counted in its batch's spoiled count, as
    /// a station does itself when a device fails after issue. Safe to run on
    /// several servers at once. Returns how many were spoiled.
    pub async fn spoil_stale_station_certificates(
        &self,
        timeout_secs: u64,
    ) -> Result<usize, FlowError> {
        let timeout = i64::try_from(timeout_secs).unwrap_or(i64::MAX);
        let before = idmint_registry::now().saturating_sub(timeout);
        let stale = self.store().stale_station_certificates(before, 500).await?;
        let mut spoiled = 0;
        for (certificate, batch) in &stale {
            let mut tx = self.store().begin("server:station-sweep").await?;
            let still_pending = tx
                .certificate(certificate)
                .await?
                .is_some_and(|c| c.status == CertificateStatus::PendingActivation);
            if !still_pending {
                continue;
            }
            let why = format!("not confirmed on its device within {timeout_secs} s of issue");
            let details = StationSpoiled {
                batch: batch.clone(),
                stage: Some("activate".into()),
                reason: why.clone(),
                remote: false,
            };
            spoil_certificate(&mut tx, certificate, &why, details).await?;
            tx.commit().await?;
            spoiled += 1;
        }
        Ok(spoiled)
    }

    /// Creates a station batch and returns it. The profile and CA are
    /// checked first (the CA must be able to sign).
    pub async fn create_station_batch(
        &self,
        actor: &str,
        request: &NewStationBatch,
    ) -> Result<Batch, FlowError> {
        validate_name("product", &request.product)?;
        if let Some(f) = &request.factory {
            validate_name("factory", f)?;
        }
        if request.count == 0 {
            return Err(FlowError::Invalid(
                "a batch needs a count of at least 1".into(),
            ));
        }
        let count = i64::try_from(request.count)
            .map_err(|_| FlowError::Invalid("batch count too large".into()))?;
        self.config().profile(&request.profile)?;
        let ca = request
            .ca
            .clone()
            .unwrap_or_else(|| self.default_ca().to_string());
        let record = self.store().require_ca(&ca).await?;
        if record.key_ref.is_none() {
            return Err(FlowError::CaCannotSign(ca));
        }
        let id = new_batch_id(&request.product)?;
        let mut tx = self.store().begin(actor).await?;
        tx.insert_batch(&NewBatch {
            id: id.clone(),
            kind: BatchKind::Station,
            product: request.product.clone(),
            count,
            profile: request.profile.clone(),
            ca,
            factory: request.factory.clone(),
            allow_inject: request.allow_inject,
            params: serde_json::json!({}),
        })
        .await?;
        if request.policy != StationPolicy::default() {
            tx.set_batch_policy(&id, request.policy).await?;
        }
        tx.commit().await?;
        Ok(self.store().require_batch(&id).await?)
    }
}

/// A batch id: `PRODUCT-YYYYMMDD-XXXXXX` (random hex suffix).
pub fn new_batch_id(product: &str) -> Result<BatchId, FlowError> {
    let mut bytes = [0u8; 3];
    idmint_pki::random_fill(&mut bytes)?;
    let date = time::OffsetDateTime::now_utc().date();
    let clean: String = product
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    let id = format!(
        "{}-{:04}{:02}{:02}-{}",
        clean.trim_matches('-'),
        date.year(),
        u8::from(date.month()),
        date.day(),
        hex::encode(bytes)
    );
    BatchId::parse(&id).map_err(|e| FlowError::Invalid(e.to_string()))
}

/// How a station runs.
#[derive(Clone, Debug)]
pub struct StationOptions {
    /// The batch devices are provisioned into.
    pub batch: String,
    /// Where devices are reached; one worker thread per address.
    pub devices: Vec<DeviceAddress>,
    /// Devices to provision in total (over all addresses); `None` = until
    /// stopped (`--loop`).
    pub count: Option<u64>,
    /// Lock each device's credential storage after it proved its key.
    pub lock: bool,
    /// Time to wait for each device response.
    pub timeout: Duration,
    /// In `--loop` mode, time to wait between reconnection attempts when a
    /// device address does not answer.
    pub retry_delay: Duration,
    /// Write each device's ESP32 credential partition (station-made key)
    /// with a programmer command instead of `install`/`inject` over the
    /// agent protocol.
    pub partition: Option<PartitionOptions>,
}

impl StationOptions {
    /// The device-facing part of the options.
    pub fn line(&self) -> LineOptions {
        LineOptions {
            devices: self.devices.clone(),
            count: self.count,
            lock: self.lock,
            timeout: self.timeout,
            retry_delay: self.retry_delay,
            partition: self.partition.clone(),
        }
    }
}

/// How a station drives its devices, online or offline.
#[derive(Clone, Debug)]
pub struct LineOptions {
    /// Where devices are reached; one worker thread per address.
    pub devices: Vec<DeviceAddress>,
    /// Devices to provision in total (over all addresses); `None` = until
    /// stopped (`--loop`).
    pub count: Option<u64>,
    /// Lock each device's credential storage after it proved its key.
    pub lock: bool,
    /// Time to wait for each device response.
    pub timeout: Duration,
    /// In `--loop` mode, time to wait between reconnection attempts when a
    /// device address does not answer.
    pub retry_delay: Duration,
    /// Write each device's ESP32 credential partition with a programmer
    /// ([`partition`]); only the online station takes it.
    pub partition: Option<PartitionOptions>,
}

/// What happened to one device.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceOutcome {
    /// The device address.
    pub address: String,
    /// Hardware id from `hello`, when it got that far.
    pub hw_id: Option<String>,
    /// The thing registered for it.
    pub thing: Option<String>,
    /// The certificate issued, when it got that far.
    pub certificate_id: Option<CertificateId>,
    /// The device serial number it was given (offline batches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// Whether the device is provisioned (certificate ACTIVE).
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// The step that failed (`quota`, `connect`, `hello`, `keygen`, `csr`,
    /// `issue`, `install`, `prove`, `lock`, `register`; with a partition,
    /// `partition` and `program`).
    pub stage: Option<String>,
    /// Whether the key was made at the station and injected.
    pub injected: bool,
    /// Whether an issued certificate was recorded as spoiled.
    pub spoiled: bool,
    /// Wall time for this device, milliseconds.
    pub total_ms: f64,
    /// Of which waiting on the device (connect and responses), ms.
    pub device_ms: f64,
    /// Of which in the station itself (total minus device), ms.
    pub station_ms: f64,
    /// The ESP32 credential partition written for it (`--partition`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionOutcome>,
}

/// A failure at a step.
pub(crate) struct Failed {
    pub(crate) stage: &'static str,
    pub(crate) reason: String,
}

pub(crate) fn fail(stage: &'static str, reason: impl ToString) -> Failed {
    Failed {
        stage,
        reason: reason.to_string(),
    }
}

/// What every station line knows about the batch it fills, online or
/// offline.
pub(crate) struct LineIssuer {
    /// The batch id.
    pub(crate) batch_id: String,
    /// The product (things' type, the `{product}` template variable).
    pub(crate) product: String,
    /// The profile's name, for messages.
    pub(crate) profile_name: String,
    /// The certificate profile.
    pub(crate) profile: Profile,
    /// Sent to devices after the leaf: the CA and its parents, without the
    /// self-signed root.
    pub(crate) chain_tail: Vec<Vec<u8>>,
    /// The organisation (`{org}`).
    pub(crate) org: String,
    /// The key type asked of devices first.
    pub(crate) preferred: KeyType,
    /// Whether station-made keys may be injected.
    pub(crate) allow_inject: bool,
    /// Why this station cannot inject even when the batch allows it.
    pub(crate) inject_refusal: Option<String>,
    /// The issuing CA's chain up to the root, as `batch mint` puts it in a
    /// partition (empty where partitions are not written).
    pub(crate) partition_chain: Vec<Vec<u8>>,
}

/// A certificate to issue for a device.
pub(crate) struct IssueRequest<'a> {
    pub(crate) key: &'a PublicKey,
    /// The device's request (the keygen path; `None` for injected keys).
    pub(crate) csr: Option<&'a Csr>,
    pub(crate) thing: &'a ThingName,
    pub(crate) hw_id: &'a str,
    pub(crate) values: &'a SubjectValues,
    pub(crate) injected: bool,
}

/// Where a station counts and records: the registry (online) or the
/// issuance log under an authorization (offline). Called from the device
/// worker threads.
pub(crate) trait StationBackend: Sync {
    /// Before a device is touched: is there quota left?
    fn check_quota(&self) -> Result<(), Failed>;
    /// After `hello`: refuses clones; returns the thing name.
    fn admit(&self, hw_id: &str) -> Result<String, Failed>;
    /// Takes one from the quota, signs, and records the certificate (and
    /// notes its id, and serial if any, in `outcome`).
    fn issue(
        &self,
        request: &IssueRequest<'_>,
        outcome: &mut DeviceOutcome,
    ) -> Result<IssuedCertificate, Failed>;
    /// The device installed the certificate and proved its key.
    fn provisioned(
        &self,
        issued: &IssuedCertificate,
        outcome: &DeviceOutcome,
        locked: bool,
    ) -> Result<(), Failed>;
    /// Records an issued certificate that never became usable.
    fn spoil(&self, certificate_id: &CertificateId, failed: &Failed) -> Result<(), Failed>;
    /// The chain sent after the leaf when the backend learns it only from
    /// issuing (remote); `None`: the issuer's `chain_tail`.
    fn chain_tail(&self) -> Option<Vec<Vec<u8>>> {
        None
    }
}

impl crate::Station<'_> {
    /// Runs a station: provisions devices from `options.devices` (in
    /// parallel, one thread per address) into the batch until `count`
    /// devices were attempted, or forever without a count. `report` is
    /// called once per device, from the worker threads, as each finishes.
    /// Stops early (after the device in progress) when `stop` becomes true.
    pub async fn run_station(
        &self,
        actor: &str,
        options: &StationOptions,
        stop: &AtomicBool,
        report: &(dyn Fn(&DeviceOutcome) + Sync),
    ) -> Result<Vec<DeviceOutcome>, FlowError> {
        if options.devices.is_empty() {
            return Err(FlowError::Invalid("give at least one --device".into()));
        }
        let batch = self.store().require_batch(&options.batch).await?;
        if batch.kind != BatchKind::Station {
            return Err(FlowError::Conflict(format!(
                "batch {} is a {} batch, not a station batch",
                batch.id,
                batch.kind.as_str()
            )));
        }
        if options.partition.is_some() && options.lock {
            return Err(FlowError::Invalid(
                "--lock is for devices installed over the agent protocol; with --partition the line locks the chip (flash encryption, secure boot) itself".into(),
            ));
        }
        if options.partition.is_some() && !batch.allow_inject {
            return Err(FlowError::Conflict(format!(
                "batch {} does not allow key injection: --partition makes each device's key at the station and writes it into the partition (create the batch with `idmint batch create --allow-inject`)",
                batch.id
            )));
        }
        let profile = self.config().profile(&batch.profile)?;
        let ca = self.signing_ca(&batch.ca).await?;
        let partition_chain = self.chain(&batch.ca).await?;
        let mut chain_tail = partition_chain.clone();
        if chain_tail.len() > 1 {
            chain_tail.pop();
        }
        let issuer = LineIssuer {
            batch_id: batch.id.to_string(),
            product: batch.product.clone(),
            profile_name: batch.profile.clone(),
            profile,
            chain_tail,
            org: self.config().org.clone(),
            preferred: self.config().key_type,
            allow_inject: batch.allow_inject,
            inject_refusal: None,
            partition_chain,
        };
        if let Some(p) = &options.partition {
            let key_type =
                partition::partition_key_type(&issuer).map_err(|f| FlowError::Invalid(f.reason))?;
            partition::check_fits(p, key_type, &issuer.partition_chain)
                .map_err(FlowError::Invalid)?;
        }
        let backend = OnlineBackend {
            idmint: self,
            handle: Handle::current(),
            actor,
            batch,
            ca,
            profile: issuer.profile.clone(),
        };
        let line = options.line();
        Ok(tokio::task::block_in_place(|| {
            run_line(&backend, &issuer, &line, stop, report)
        }))
    }
}

/// Drives the devices of a line: one worker thread per address, until
/// `count` devices were attempted (or forever), each device reported as it
/// finishes.
pub(crate) fn run_line(
    backend: &dyn StationBackend,
    issuer: &LineIssuer,
    options: &LineOptions,
    stop: &AtomicBool,
    report: &(dyn Fn(&DeviceOutcome) + Sync),
) -> Vec<DeviceOutcome> {
    let started = AtomicU64::new(0);
    let outcomes = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for address in &options.devices {
            let (started, outcomes) = (&started, &outcomes);
            scope.spawn(move || loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(count) = options.count {
                    if started.fetch_add(1, Ordering::SeqCst) >= count {
                        break;
                    }
                }
                let outcome = provision_one(backend, issuer, address, options);
                report(&outcome);
                let unreachable = outcome.stage.as_deref() == Some("connect");
                if let Ok(mut list) = outcomes.lock() {
                    list.push(outcome);
                }
                if unreachable && options.count.is_none() {
                    std::thread::sleep(options.retry_delay);
                }
            });
        }
    });
    outcomes.into_inner().unwrap_or_default()
}

/// Provisions the device at `address`, never panicking and never leaving
/// a usable certificate recorded on failure.
fn provision_one(
    backend: &dyn StationBackend,
    issuer: &LineIssuer,
    address: &DeviceAddress,
    options: &LineOptions,
) -> DeviceOutcome {
    let start = Instant::now();
    let mut run = DeviceRun {
        device_time: Duration::ZERO,
        outcome: DeviceOutcome {
            address: address.to_string(),
            hw_id: None,
            thing: None,
            certificate_id: None,
            serial: None,
            ok: false,
            error: None,
            stage: None,
            injected: false,
            spoiled: false,
            total_ms: 0.0,
            device_ms: 0.0,
            station_ms: 0.0,
            partition: None,
        },
    };
    let result = provision_steps(backend, issuer, address, options, &mut run);
    if let Err(f) = result {
        if let Some(id) = run.outcome.certificate_id.clone() {
            match backend.spoil(&id, &f) {
                Ok(()) => run.outcome.spoiled = true,
                Err(e) => {
                    run.outcome.error = Some(format!(
                        "{}; and recording the certificate as spoiled failed: {}",
                        f.reason, e.reason
                    ));
                }
            }
        }
        run.outcome.stage = Some(f.stage.to_string());
        if run.outcome.error.is_none() {
            run.outcome.error = Some(f.reason);
        }
    } else {
        run.outcome.ok = true;
    }
    let total = start.elapsed();
    run.outcome.total_ms = ms(total);
    run.outcome.device_ms = ms(run.device_time);
    run.outcome.station_ms = ms(total.saturating_sub(run.device_time));
    run.outcome
}

fn provision_steps(
    backend: &dyn StationBackend,
    issuer: &LineIssuer,
    address: &DeviceAddress,
    options: &LineOptions,
    run: &mut DeviceRun,
) -> Result<(), Failed> {
    // 1. Quota first: a device is not touched when the batch is full.
    backend.check_quota()?;
    let link = run
        .timed(|| Link::open(address, options.timeout))
        .map_err(|e| fail("connect", e))?;
    let mut client = AgentClient::new(link).with_timeout(options.timeout);
    let hello = run.timed(|| client.hello()).map_err(|e| fail("hello", e))?;
    let hw_id = hello.hw_id.clone();
    validate_name("hardware id", &hw_id).map_err(|e| fail("hello", e))?;
    run.outcome.hw_id = Some(hw_id.clone());
    // Refuse clones: a hardware id already holding a live certificate.
    let thing = ThingName::parse(&backend.admit(&hw_id)?).map_err(|e| fail("hello", e))?;
    if hello.locked {
        return Err(fail("hello", "the device's credential storage is locked"));
    }
    run.outcome.thing = Some(thing.to_string());
    let mut values = SubjectValues::for_thing(&thing)
        .with("org", issuer.org.as_str())
        .with("device_id", hw_id.as_str())
        .with("hw_id", hw_id.as_str())
        .with("product", issuer.product.as_str())
        .with("batch", issuer.batch_id.as_str());
    if let Some(p) = &options.partition {
        // 2-3. Key made here, written in the device's partition by the
        // programmer.
        return partition::provision_partition(
            backend, issuer, p, client, &thing, &hw_id, &values, run,
        );
    }
    // 2. Key: made on the device (preferred) or here and injected.
    let key_choice = choose_key(&hello, issuer)?;
    let (issued, injected_key) = match key_choice {
        KeyChoice::Keygen(key_type) => {
            let agent_type = to_agent(key_type).ok_or_else(|| fail("keygen", "key type"))?;
            let csr_der = run
                .timed(|| client.keygen(agent_type))
                .map_err(|e| fail("keygen", e))?;
            let csr = Csr::from_der(&csr_der).map_err(|e| fail("csr", e))?;
            if csr.key_type() != key_type {
                return Err(fail(
                    "csr",
                    format!(
                        "the device returned a {} key, {} was asked",
                        csr.key_type(),
                        key_type
                    ),
                ));
            }
            if let Some(cn) = csr.common_name() {
                values.set("csr_cn", cn);
            }
            let key = csr.public_key().clone();
            let request = IssueRequest {
                key: &key,
                csr: Some(&csr),
                thing: &thing,
                hw_id: &hw_id,
                values: &values,
                injected: false,
            };
            (backend.issue(&request, &mut run.outcome)?, None)
        }
        KeyChoice::Inject(key_type) => {
            let key = DeviceKey::generate(key_type).map_err(|e| fail("issue", e))?;
            let public = key.public_key().map_err(|e| fail("issue", e))?;
            run.outcome.injected = true;
            let request = IssueRequest {
                key: &public,
                csr: None,
                thing: &thing,
                hw_id: &hw_id,
                values: &values,
                injected: true,
            };
            (backend.issue(&request, &mut run.outcome)?, Some(key))
        }
    };
    // 3. Install (or inject), prove, lock.
    let tail = backend
        .chain_tail()
        .unwrap_or_else(|| issuer.chain_tail.clone());
    let mut chain = Vec::with_capacity(1 + tail.len());
    chain.push(issued.der.clone());
    chain.extend(tail);
    match &injected_key {
        None => run
            .timed(|| client.install(&chain))
            .map_err(|e| fail("install", e))?,
        Some(key) => {
            let pkcs8 = key.pkcs8_der();
            run.timed(|| client.inject(&pkcs8, &chain))
                .map_err(|e| fail("install", e))?
        }
    }
    drop(injected_key);
    let mut nonce = [0u8; 32];
    idmint_pki::random_fill(&mut nonce).map_err(|e| fail("prove", e))?;
    let proof = run
        .timed(|| client.prove(&nonce))
        .map_err(|e| fail("prove", e))?;
    idmint_agent::verify_proof(&issued.der, &nonce, &proof.signature)
        .map_err(|e| fail("prove", format!("proof of possession failed: {e}")))?;
    if options.lock {
        if !hello.has(&Capability::Lock) {
            return Err(fail(
                "lock",
                "the device cannot lock its credential storage",
            ));
        }
        run.timed(|| client.lock()).map_err(|e| fail("lock", e))?;
    }
    // 4. Activate.
    backend.provisioned(&issued, &run.outcome, options.lock)
}

/// The online station: quota, clone checks and records in this data
/// directory's registry, certificates signed by the batch's CA.
struct OnlineBackend<'a> {
    idmint: &'a Idmint,
    handle: Handle,
    actor: &'a str,
    batch: Batch,
    ca: Arc<CertificateAuthority>,
    profile: Profile,
}

impl StationBackend for OnlineBackend<'_> {
    fn check_quota(&self) -> Result<(), Failed> {
        let batch_id = self.batch.id.as_str();
        let batch = self
            .handle
            .block_on(self.idmint.store().require_batch(batch_id))
            .map_err(|e| fail("quota", e))?;
        if batch.state != "OPEN" {
            return Err(fail(
                "quota",
                format!("batch {batch_id} is {}", batch.state),
            ));
        }
        // Spoiled certificates were issued: they keep counting.
        if batch.issued >= batch.count {
            return Err(fail(
                "quota",
                format!(
                    "batch {batch_id} quota exhausted: {} of {} issued ({} spoiled)",
                    batch.issued, batch.count, batch.spoiled
                ),
            ));
        }
        Ok(())
    }

    fn admit(&self, hw_id: &str) -> Result<String, Failed> {
        let store = self.idmint.store();
        let by_device = self
            .handle
            .block_on(store.thing_by_device_id(hw_id))
            .map_err(|e| fail("hello", e))?;
        let thing = match by_device {
            Some(existing) => existing,
            None => match self
                .handle
                .block_on(store.thing(hw_id))
                .map_err(|e| fail("hello", e))?
            {
                Some(named) => named,
                None => return Ok(hw_id.to_string()),
            },
        };
        let live = self
            .handle
            .block_on(store.list_certificates(&CertificateFilter {
                thing: Some(thing.name.clone()),
                ..CertificateFilter::default()
            }))
            .map_err(|e| fail("hello", e))?
            .into_iter()
            .any(|c| c.status != CertificateStatus::Revoked);
        if live {
            let why = format!(
                "refused clone: hardware id {hw_id} is already provisioned (thing {})",
                thing.name
            );
            return Err(self.refuse(hw_id, &thing.name, why));
        }
        if let Some(why) = foreign_thing(&thing, &self.batch.id, hw_id) {
            return Err(self.refuse(hw_id, &thing.name, why));
        }
        Ok(thing.name)
    }

    /// Takes one from the quota, signs, and registers the certificate
    /// PENDING_ACTIVATION, in one transaction.
    fn issue(
        &self,
        request: &IssueRequest<'_>,
        outcome: &mut DeviceOutcome,
    ) -> Result<IssuedCertificate, Failed> {
        let batch_id = self.batch.id.as_str();
        let store = self.idmint.store();
        let issued = self
            .handle
            .block_on(async {
                let mut tx = store.begin(self.actor).await?;
                // Decided again inside the transaction that writes: the
                // thing may have appeared since `admit`.
                if let Some(existing) = tx.thing(request.thing).await? {
                    if let Some(why) = foreign_thing(&existing, batch_id, request.hw_id) {
                        return Ok(Err(why));
                    }
                }
                tx.reserve_quota(batch_id, 1).await?;
                let certificate = self
                    .ca
                    .issue(request.key, &self.profile, request.values)
                    .map_err(FlowError::from)?;
                let mut new_thing = NewThing::named(request.thing.clone());
                new_thing.device_id = Some(request.hw_id.to_string());
                new_thing.batch = Some(self.batch.id.clone());
                new_thing.thing_type = Some(self.batch.product.clone());
                tx.upsert_thing(&new_thing).await?;
                tx.insert_certificate(&certificate_record(
                    &certificate,
                    &self.batch.ca,
                    Some(request.thing.as_str()),
                    CertificateStatus::PendingActivation,
                    Some(&self.batch.id),
                ))
                .await?;
                tx.commit().await?;
                Ok::<_, FlowError>(Ok(certificate))
            })
            .map_err(|e| match e {
                FlowError::Registry(RegistryError::QuotaExhausted { .. }) => fail("quota", e),
                e => fail("issue", e),
            })?
            .map_err(|why| self.refuse(request.hw_id, request.thing, why))?;
        outcome.certificate_id = Some(issued.info.id.clone());
        Ok(issued)
    }

    fn provisioned(
        &self,
        issued: &IssuedCertificate,
        outcome: &DeviceOutcome,
        locked: bool,
    ) -> Result<(), Failed> {
        let id = issued.info.id.clone();
        let thing = outcome.thing.clone().unwrap_or_default();
        self.handle
            .block_on(async {
                let mut tx = self.idmint.store().begin(self.actor).await?;
                tx.set_certificate_status(&id, CertificateStatus::Active, None)
                    .await?;
                tx.audit(
                    &thing,
                    AuditEvent::StationProvisioned {
                        batch: self.batch.id.to_string(),
                        hw_id: outcome.hw_id.clone(),
                        certificate: id.to_string(),
                        injected: Some(outcome.injected),
                        locked,
                        address: Some(outcome.address.clone()),
                        remote: false,
                    },
                );
                tx.commit().await
            })
            .map_err(|e| fail("register", e))
    }

    /// Revokes a certificate that never became usable and counts it
    /// spoiled.
    fn spoil(&self, certificate: &CertificateId, failed: &Failed) -> Result<(), Failed> {
        let batch = self.batch.id.as_str();
        self.handle
            .block_on(async {
                let mut tx = self.idmint.store().begin(self.actor).await?;
                let why = format!("{}: {}", failed.stage, failed.reason);
                let details = StationSpoiled {
                    batch: batch.to_string(),
                    stage: Some(failed.stage.to_string()),
                    reason: failed.reason.clone(),
                    remote: false,
                };
                spoil_certificate(&mut tx, certificate, &why, details).await?;
                tx.commit().await?;
                Ok::<_, FlowError>(())
            })
            .map_err(|e| fail("spoil", e))
    }
}

impl OnlineBackend<'_> {
    /// A device refused because its hardware id names a thing that is not
    /// this batch's device, or one already provisioned (a clone): audited
    /// (`station.refused`), and the device's outcome says why.
    fn refuse(&self, hw_id: &str, thing: &str, why: String) -> Failed {
        let written = self.handle.block_on(async {
            let mut tx = self.idmint.store().begin(self.actor).await?;
            tx.audit(
                thing,
                AuditEvent::StationRefused {
                    batch: self.batch.id.to_string(),
                    hw_id: hw_id.to_string(),
                    reason: why.clone(),
                },
            );
            tx.commit().await
        });
        match written {
            Ok(()) => fail("hello", why),
            Err(e) => fail("hello", format!("{why} (and the audit record failed: {e})")),
        }
    }
}

/// Why a device reporting `hw_id` may not take `thing` in `batch`: the thing
/// is another batch's (or of none), or another device's. `None`: it may.
fn foreign_thing(thing: &Thing, batch: &str, hw_id: &str) -> Option<String> {
    if thing.batch.as_deref() != Some(batch) {
        return Some(format!(
            "refused: hardware id {hw_id} names thing {} of {}, not of batch {batch}",
            thing.name,
            thing
                .batch
                .as_deref()
                .map_or("no batch".to_string(), |b| format!("batch {b}"))
        ));
    }
    match thing.device_id.as_deref() {
        Some(other) if other != hw_id => Some(format!(
            "refused: hardware id {hw_id} names thing {} of device {other}",
            thing.name
        )),
        _ => None,
    }
}

enum KeyChoice {
    Keygen(KeyType),
    Inject(KeyType),
}

/// Keygen with the configured key type when the device and profile allow
/// it, else another both allow; inject only when the device cannot make
/// keys and the batch allows it.
fn choose_key(hello: &HelloInfo, issuer: &LineIssuer) -> Result<KeyChoice, Failed> {
    let mut candidates = vec![issuer.preferred, KeyType::P256, KeyType::Ed25519];
    candidates.dedup();
    let allowed = |k: &KeyType| issuer.profile.allows_key_type(*k);
    let device_can = |k: &KeyType| match k {
        KeyType::P256 => hello.has(&Capability::KeygenP256),
        KeyType::Ed25519 => hello.has(&Capability::KeygenEd25519),
        _ => false,
    };
    if let Some(k) = candidates.iter().find(|k| allowed(k) && device_can(k)) {
        return Ok(KeyChoice::Keygen(*k));
    }
    let can_keygen = hello.has(&Capability::KeygenP256) || hello.has(&Capability::KeygenEd25519);
    if can_keygen {
        return Err(fail(
            "keygen",
            format!(
                "the device generates no key type that profile {} allows",
                issuer.profile_name
            ),
        ));
    }
    if !hello.has(&Capability::KeyInject) {
        return Err(fail(
            "keygen",
            "the device can neither generate keys nor accept one",
        ));
    }
    if let Some(why) = &issuer.inject_refusal {
        return Err(fail("keygen", why));
    }
    if !issuer.allow_inject {
        return Err(fail(
            "keygen",
            format!(
                "the device cannot generate keys and batch {} does not allow key injection",
                issuer.batch_id
            ),
        ));
    }
    candidates
        .into_iter()
        .find(|k| allowed(k) && to_agent(*k).is_some())
        .map(KeyChoice::Inject)
        .ok_or_else(|| fail("keygen", "no injectable key type allowed by the profile"))
}

fn to_agent(k: KeyType) -> Option<idmint_agent::KeyType> {
    match k {
        KeyType::P256 => Some(idmint_agent::KeyType::P256),
        KeyType::Ed25519 => Some(idmint_agent::KeyType::Ed25519),
        _ => None,
    }
}

/// Per-device bookkeeping: the outcome so far and time spent waiting on
/// the device.
struct DeviceRun {
    device_time: Duration,
    outcome: DeviceOutcome,
}

impl DeviceRun {
    /// Runs a device exchange, counting its time as device time.
    fn timed<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.device_time += t.elapsed();
        r
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
