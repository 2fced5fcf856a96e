//! Scenario 1: unique credentials in per-device firmware images
//! (`idmint batch mint` and `idmint batch resume`).
//!
//! One golden image with an empty credential slot becomes `count` device
//! images, each carrying its own key, certificate, chain and trust anchors
//! (format v1, `idmint-slot`). For ESP32 devices the per-device file is
//! instead a credential partition (`esp_secure_cert` or NVS, see
//! `idmint_slot::partition`), flashed at its offset beside one application
//! image for all devices; no golden image is needed, and the manifest gives
//! each device's esptool command line. Everything that can be checked is
//! checked before the batch record is created: the golden image (exactly one
//! empty slot), the slot or partition capacity (a sample credential set with
//! the widest device id is encoded first), the profile and CA, the
//! recipient, the output directory. Keys and certificates are made on `jobs` threads; registry
//! writes are batched, a few thousand devices per transaction.
//!
//! # Crash safety
//!
//! The invariant: once `batch resume` has finished, every registered (good)
//! certificate of the batch has exactly one complete image, and every image
//! in the output holds a registered certificate. The order that makes it
//! hold after a `kill -9` at any point:
//!
//! 1. A worker writes each image to `images/<device>.<ext>` (0600, through a
//!    hidden temp file renamed into place; `resume` deletes stale ones).
//! 2. Only once the whole image is written are the chunk's thing,
//!    certificate and image record
//!    (`mint_items`: device id, certificate id, image SHA-256) committed, in
//!    one transaction.
//! 3. `resume` deletes every image whose device is not registered, complete
//!    or cut short by the kill (its certificate was signed but never
//!    registered, and its key exists nowhere else: both are destroyed; the
//!    certificate ids go into a `mint.discard` audit record), and mints those
//!    device numbers again. A registered device whose image is missing or whose SHA-256
//!    differs (possible only after a power loss, since images are not
//!    fsynced, or after outside tampering) cannot be repaired: the private key
//!    was never stored. Its certificate is revoked, the item counted as
//!    spoiled, and a replacement minted under a new device number. A spoiled
//!    certificate keeps counting against the batch quota (the registry's one
//!    rule, `issued <= quota`), so the same transaction raises the quota by
//!    one per replacement (audited `batch.quota`).
//!
//! Device numbers come from a per-prefix counter in the registry, reserved in
//! the transaction that creates the batch, so device ids never repeat, across
//! batches and across resumes. `manifest.jsonl` is rebuilt from the registry
//! at the end of `mint` and of `resume` (temp file and rename).
//!
//! With `--encrypt-to` the images and the manifest go only into an age
//! archive (`batch-<id>.tar.age`, a tar inside), written as `.tmp` and renamed
//! when complete; no plaintext key touches the disk. An interrupted archive
//! cannot be reopened, so `resume` revokes every certificate registered for
//! it (spoiled) and mints the whole batch again into a new archive.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use idmint_pki::{
    sha256_hex, CaBuilder, CertificateAuthority, DeviceKey, KeyType, Profile, SubjectValues,
};
use idmint_registry::{
    validate_name, AuditEvent, BatchId, BatchKind, CertificateId, CertificateStatus, MintItem,
    NewBatch, NewThing, RegistryError, ThingName, MINT_ITEM_OK,
};
use idmint_slot::{
    encode_slot_into, ChipKeyProtection, Credentials, GoldenImage, ImageFormat, PartitionFormat,
    PartitionKind, PemCredentials, Zeroizing,
};
use serde::Serialize;

use idmint_flows::files::{overwrite_secret, parse_recipient};
use idmint_flows::issue::certificate_record;
use idmint_flows::FlowError;

idmint_flows::scenario_service!(
    /// Scenario 1 over an opened data directory: mint a batch of device
    /// images (keys generated here, certificates registered), resume one.
    Mint
);

/// Devices rendered per work unit (fewer for large images, see `chunk_len`).
const CHUNK: usize = 256;
/// Manifest lines read from the registry at a time.
const MANIFEST_PAGE: i64 = 4096;
/// Devices registered per registry transaction (at most).
const PER_COMMIT: usize = 2048;
/// Bytes of rendered images a work unit may hold in memory.
const CHUNK_BYTES: usize = 16 << 20;
/// Bytes of slack left for DER length variations (signature sizes, serials)
/// when the sample credential set is checked against the slot capacity.
const SLOT_MARGIN: usize = 32;
/// Subdirectory of the output directory holding the images.
pub const IMAGES_DIR: &str = "images";
/// The manifest's file name in the output directory.
pub const MANIFEST: &str = "manifest.jsonl";

/// A request to mint a batch of device images.
#[derive(Clone, Debug)]
pub struct MintRequest {
    /// The golden image file (needed for images; optional with `partition`,
    /// where it is only recorded).
    pub golden: Option<PathBuf>,
    /// Its format (inferred from the file when `None`).
    pub format: Option<ImageFormat>,
    /// Write an ESP32 credential partition per device instead of an image.
    pub partition: Option<EspPartition>,
    /// How many devices.
    pub count: u64,
    /// Product name.
    pub product: String,
    /// Certificate profile.
    pub profile: String,
    /// Issuing CA (the configured default when `None`).
    pub ca: Option<String>,
    /// Device ids are this prefix and a zero-padded number (derived from the
    /// product and batch id when `None`).
    pub serial_prefix: Option<String>,
    /// Endpoint URL written into each slot.
    pub endpoint: Option<String>,
    /// Initial certificate state.
    pub status: CertificateStatus,
    /// age recipient (`age1…` or `ssh-ed25519 …`): write an encrypted archive.
    pub encrypt_to: Option<String>,
    /// Worker threads.
    pub jobs: usize,
    /// Output directory.
    pub out_dir: PathBuf,
}

/// The ESP32 credential partition a batch writes per device, and how it is
/// flashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspPartition {
    /// The partition layout, size and (NVS) namespace.
    pub format: PartitionFormat,
    /// The partition's flash offset (from the partition table), e.g. 0xD000.
    pub flash_offset: Option<u64>,
    /// The chip, as esptool's `--chip` names it.
    pub chip: String,
    /// Key protection to be done on the line.
    pub key_protection: ChipKeyProtection,
    /// The eFuse key block the line uses for it (0-5).
    pub efuse_key_id: Option<u8>,
}

impl EspPartition {
    /// The command a line lead runs to flash one device's partition (when
    /// the offset is known).
    pub fn esptool_command(&self, file: &str) -> Option<String> {
        self.flash_offset.map(|o| {
            format!(
                "esptool.py --chip {} write_flash {} {file}",
                self.chip,
                hex_offset(o)
            )
        })
    }
}

/// What a mint or resume did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MintReport {
    /// The batch id.
    pub batch: String,
    /// Devices in the batch.
    pub count: u64,
    /// Device images minted by this run.
    pub minted: u64,
    /// Certificates revoked by this run because their image was lost.
    pub spoiled: u64,
    /// Unregistered images (and temp files) deleted by this run.
    pub discarded: u64,
    /// The output directory.
    pub out_dir: PathBuf,
    /// The encrypted archive, with `--encrypt-to`.
    pub archive: Option<PathBuf>,
}

/// The batch parameters kept in the batch record (what `resume` needs).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MintParams {
    #[serde(default)]
    golden: Option<PathBuf>,
    #[serde(default)]
    golden_sha256: Option<String>,
    format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition: Option<PartitionParams>,
    serial_prefix: String,
    first: i64,
    width: usize,
    endpoint: Option<String>,
    status: CertificateStatus,
    encrypt_to: Option<String>,
    out_dir: PathBuf,
    key_type: String,
}

/// An ESP32 partition batch's parameters as the batch record keeps them.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartitionParams {
    kind: String,
    size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flash_offset: Option<u64>,
    chip: String,
    key_protection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    efuse_key_id: Option<u8>,
}

impl PartitionParams {
    fn from_request(p: &EspPartition) -> Self {
        let namespace = match &p.format {
            PartitionFormat::EspNvs { namespace, .. } => Some(namespace.clone()),
            _ => None,
        };
        PartitionParams {
            kind: p.format.kind().name().to_string(),
            size: p.format.size(),
            namespace,
            flash_offset: p.flash_offset,
            chip: p.chip.clone(),
            key_protection: p.key_protection.name().to_string(),
            efuse_key_id: p.efuse_key_id,
        }
    }

    fn to_request(&self) -> Result<EspPartition, FlowError> {
        let kind = PartitionKind::from_str(&self.kind)
            .map_err(|_| invalid(format!("unknown partition format {:?}", self.kind)))?;
        let key_protection = ChipKeyProtection::from_str(&self.key_protection)
            .map_err(|_| invalid(format!("unknown key protection {:?}", self.key_protection)))?;
        Ok(EspPartition {
            format: kind.format(Some(self.size), self.namespace.as_deref()),
            flash_offset: self.flash_offset,
            chip: self.chip.clone(),
            key_protection,
            efuse_key_id: self.efuse_key_id,
        })
    }
}

/// One manifest line.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestLine<'a> {
    device_id: &'a str,
    thing_name: &'a str,
    certificate_id: &'a str,
    certificate_pem: String,
    image: &'a str,
    image_sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<PartitionLine<'a>>,
}

/// The ESP32 partition fields of a manifest line.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PartitionLine<'a> {
    /// `esp-secure-cert` or `esp-nvs`.
    format: &'static str,
    size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    nvs_namespace: Option<&'a str>,
    /// Hex, as in a partition table (`0xD000`).
    #[serde(skip_serializing_if = "Option::is_none")]
    flash_offset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    esptool: Option<String>,
    key_protection: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    efuse_key_id: Option<u8>,
}

/// What each device gets: an image made from the golden image, or an ESP32
/// credential partition.
enum Output {
    Image(GoldenImage),
    Partition(EspPartition),
}

impl Output {
    fn extension(&self) -> &'static str {
        match self {
            Output::Image(g) => g.format().extension(),
            Output::Partition(_) => "bin",
        }
    }

    fn output_len(&self) -> usize {
        match self {
            Output::Image(g) => g.output_len(),
            Output::Partition(p) => p.format.size(),
        }
    }
}

/// Everything a run needs, shared by the workers.
struct Plan {
    batch: BatchId,
    output: Output,
    ca: Arc<CertificateAuthority>,
    ca_name: String,
    profile: Profile,
    key_type: KeyType,
    org: String,
    product: String,
    params: MintParams,
    chain: Vec<Vec<u8>>,
    anchors: Vec<Vec<u8>>,
}

impl Plan {
    fn device_id(&self, number: i64) -> String {
        format!(
            "{}{:0width$}",
            self.params.serial_prefix,
            number,
            width = self.params.width
        )
    }

    fn image_file(&self, device_id: &str) -> String {
        format!("{IMAGES_DIR}/{device_id}.{}", self.output.extension())
    }
}

/// A device minted by a worker, image written (or held for the archive).
struct Minted {
    item: MintItem,
    record: idmint_registry::NewCertificate,
    /// The image, until it is written to its file or into the archive.
    image: Option<Zeroizing<Vec<u8>>>,
}

/// What workers send on: a chunk of minted devices, or why they stopped.
type MintedChunk = Result<Vec<Minted>, FlowError>;

/// Where workers hand their chunks: to the image file writer, or straight
/// to registration (with `--encrypt-to` the images go into the archive,
/// after registration; see the module docs).
#[derive(Clone)]
enum ChunkSink {
    Files(std::sync::mpsc::SyncSender<MintedChunk>),
    Register(tokio::sync::mpsc::Sender<MintedChunk>),
}

impl ChunkSink {
    /// Blocks until the chunk is taken; false once the receiver is gone.
    fn send(&self, chunk: MintedChunk) -> bool {
        match self {
            ChunkSink::Files(tx) => tx.send(chunk).is_ok(),
            ChunkSink::Register(tx) => tx.blocking_send(chunk).is_ok(),
        }
    }
}

fn invalid(msg: impl Into<String>) -> FlowError {
    FlowError::Invalid(msg.into())
}

/// Letters, digits, `-`, `_`, `.`: safe in file names and device ids.
fn file_safe(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn load_golden(
    path: &Path,
    format: Option<ImageFormat>,
) -> Result<(GoldenImage, String), FlowError> {
    let bytes = std::fs::read(path).map_err(|e| FlowError::io(path, e))?;
    let sha = sha256_hex(&bytes);
    let format = format.unwrap_or_else(|| ImageFormat::detect(path, &bytes));
    let golden = GoldenImage::load(bytes, format)
        .map_err(|e| invalid(format!("golden image {}: {e}", path.display())))?;
    Ok((golden, sha))
}

fn chunk_len(image_len: usize) -> usize {
    (CHUNK_BYTES / image_len.max(1)).clamp(1, CHUNK)
}

impl Mint<'_> {
    /// Mints a new batch of device images. `progress(done, total)` is called
    /// as devices are registered.
    pub async fn mint_batch(
        &self,
        actor: &str,
        request: &MintRequest,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<MintReport, FlowError> {
        // Everything is checked before the batch exists.
        if request.count == 0 {
            return Err(invalid("--count must be at least 1"));
        }
        validate_name("product", &request.product)?;
        if let Some(p) = &request.serial_prefix {
            if !file_safe(p) {
                return Err(invalid(format!(
                    "serial prefix {p:?}: use letters, digits, '-', '_' and '.' (not first)"
                )));
            }
        }
        if let Some(e) = &request.endpoint {
            if e.trim().is_empty() || e.trim() != e || e.chars().any(char::is_control) {
                return Err(invalid("--endpoint must be a non-empty URL without spaces"));
            }
        }
        let (output, golden_sha256) = match (&request.partition, &request.golden) {
            (None, None) => {
                return Err(invalid(
                    "--golden is required for the image formats (bin, hex, elf, blob)",
                ))
            }
            (None, Some(golden)) => {
                let (g, sha) = load_golden(golden, request.format)?;
                (Output::Image(g), Some(sha))
            }
            (Some(p), golden) => {
                p.format
                    .validate()
                    .map_err(|e| invalid(format!("--format {}: {e}", p.format.kind())))?;
                if p.efuse_key_id.is_some_and(|k| k > 5) {
                    return Err(invalid("--efuse-key-id must be 0 to 5"));
                }
                if p.chip.is_empty() || !p.chip.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(invalid(format!(
                        "--chip {:?}: use esptool's name, e.g. esp32s3",
                        p.chip
                    )));
                }
                // Recorded only: the partition does not depend on it.
                let sha = match golden {
                    Some(g) => Some(sha256_hex(
                        &std::fs::read(g).map_err(|e| FlowError::io(g, e))?,
                    )),
                    None => None,
                };
                (Output::Partition(p.clone()), sha)
            }
        };
        if let Some(r) = &request.encrypt_to {
            parse_recipient(r)?;
        }
        let options = idmint_flows::issue::IssueOptions {
            profile: request.profile.clone(),
            ca: request.ca.clone(),
            ..Default::default()
        };
        let (ca_name, ca, profile) = self.issuer(&options).await?;
        let key_type = self.config().key_type;
        if !profile.allows_key_type(key_type) {
            return Err(invalid(format!(
                "profile {:?} does not allow {key_type} keys",
                request.profile
            )));
        }
        check_out_dir(&request.out_dir)?;

        let batch = BatchId::parse(&format!(
            "{}-{}",
            slug(&request.product),
            idmint_flows::random_hex(4)?
        ))
        .map_err(|e| invalid(e.to_string()))?;
        let serial_prefix = match &request.serial_prefix {
            Some(p) => p.clone(),
            None => format!("{batch}-"),
        };
        let width = 6usize;
        let chain = self.chain(&ca_name).await?;
        let anchors: Vec<Vec<u8>> = chain.last().cloned().into_iter().collect();
        // The widest device id this batch can have (numbers may grow with
        // replacements; allow three more digits).
        let sample_id = format!(
            "{serial_prefix}{}",
            "9".repeat(width.max(request.count.to_string().len()) + 3)
        );
        check_capacity(
            &output,
            &ca,
            &profile,
            key_type,
            &self.config().org,
            &sample_id,
            &chain,
            &anchors,
            request.endpoint.as_deref(),
        )?;

        let out_dir = absolute(&request.out_dir)?;
        let mut params = MintParams {
            golden: request.golden.as_deref().map(absolute).transpose()?,
            golden_sha256,
            format: match &output {
                Output::Image(g) => g.format().name().to_string(),
                Output::Partition(p) => p.format.kind().name().to_string(),
            },
            partition: request
                .partition
                .as_ref()
                .map(PartitionParams::from_request),
            serial_prefix: serial_prefix.clone(),
            first: 0,
            width,
            endpoint: request.endpoint.clone(),
            status: request.status,
            encrypt_to: request.encrypt_to.clone(),
            out_dir: out_dir.clone(),
            key_type: key_type.to_string(),
        };
        let count = i64::try_from(request.count).map_err(|_| invalid("--count is too large"))?;
        let mut tx = self.store().begin(actor).await?;
        params.first = tx.reserve_serials(&serial_prefix, count).await?;
        let params_json = serde_json::to_value(&params).map_err(|e| invalid(e.to_string()))?;
        tx.insert_batch(&NewBatch {
            id: batch.clone(),
            kind: BatchKind::Mint,
            product: request.product.clone(),
            count,
            profile: request.profile.clone(),
            ca: ca_name.clone(),
            factory: None,
            allow_inject: false,
            params: params_json,
        })
        .await?;
        tx.commit().await?;

        std::fs::create_dir_all(out_dir.join(IMAGES_DIR))
            .map_err(|e| FlowError::io(&out_dir, e))?;
        let plan = Arc::new(Plan {
            batch: batch.clone(),
            output,
            ca,
            ca_name,
            profile,
            key_type,
            org: self.config().org.clone(),
            product: request.product.clone(),
            params,
            chain,
            anchors,
        });
        let numbers: Vec<i64> = (plan.params.first..plan.params.first + count).collect();
        let (minted, open) = self
            .run(
                actor,
                &plan,
                numbers,
                request.count,
                0,
                request.jobs,
                progress,
            )
            .await?;
        let archive = self.finish(actor, &plan, open).await?;
        Ok(MintReport {
            batch: batch.into_string(),
            count: request.count,
            minted,
            spoiled: 0,
            discarded: 0,
            out_dir,
            archive,
        })
    }

    /// Finishes an interrupted mint batch (see the module docs).
    pub async fn resume_batch(
        &self,
        actor: &str,
        batch_id: &str,
        jobs: usize,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<MintReport, FlowError> {
        let batch = self.store().require_batch(batch_id).await?;
        if batch.kind != BatchKind::Mint {
            return Err(invalid(format!(
                "batch {batch_id} is not a mint batch (it is {})",
                batch.kind.as_str()
            )));
        }
        let params: MintParams = serde_json::from_value(batch.params.clone())
            .map_err(|e| invalid(format!("batch {batch_id}: unreadable parameters: {e}")))?;
        let output = match (&params.partition, &params.golden) {
            (Some(p), _) => Output::Partition(p.to_request()?),
            (None, Some(path)) => {
                let format =
                    ImageFormat::from_str(&params.format).map_err(|e| invalid(e.to_string()))?;
                let (golden, sha) = load_golden(path, Some(format))?;
                if Some(&sha) != params.golden_sha256.as_ref() {
                    return Err(invalid(format!(
                        "golden image {} changed since batch {batch_id} was created (SHA-256 {sha}, expected {})",
                        path.display(),
                        params.golden_sha256.as_deref().unwrap_or("?")
                    )));
                }
                Output::Image(golden)
            }
            (None, None) => {
                return Err(invalid(format!(
                    "batch {batch_id}: neither a golden image nor a partition format recorded"
                )))
            }
        };
        let options = idmint_flows::issue::IssueOptions {
            profile: batch.profile.clone(),
            ca: Some(batch.ca.clone()),
            ..Default::default()
        };
        let (ca_name, ca, profile) = self.issuer(&options).await?;
        let key_type = KeyType::from_str(&params.key_type).map_err(|e| invalid(e.to_string()))?;
        let chain = self.chain(&ca_name).await?;
        let anchors: Vec<Vec<u8>> = chain.last().cloned().into_iter().collect();
        let out_dir = params.out_dir.clone();
        let plan = Arc::new(Plan {
            batch: batch.id.clone(),
            output,
            ca,
            ca_name,
            profile,
            key_type,
            org: self.config().org.clone(),
            product: batch.product.clone(),
            params,
            chain,
            anchors,
        });
        // Devices ordered: the quota less the replacements it was raised by
        // (one per spoiled image).
        let ordered = batch.count - batch.spoiled;
        let count = u64::try_from(ordered).unwrap_or(0);
        let archive_path = archive_path(&plan);
        if batch.state != "OPEN" {
            return Ok(MintReport {
                batch: batch.id.to_string(),
                count,
                minted: 0,
                spoiled: 0,
                discarded: 0,
                out_dir,
                archive: plan.params.encrypt_to.as_ref().map(|_| archive_path),
            });
        }
        std::fs::create_dir_all(out_dir.join(IMAGES_DIR))
            .map_err(|e| FlowError::io(&out_dir, e))?;

        let items = self.store().mint_items(&batch.id).await?;
        let mut good: BTreeMap<String, MintItem> = BTreeMap::new();
        let mut used: BTreeSet<i64> = BTreeSet::new();
        for item in items {
            used.insert(item.number);
            if item.state == MINT_ITEM_OK {
                good.insert(item.device_id.clone(), item);
            }
        }
        let mut lost: Vec<MintItem> = Vec::new();
        let mut discarded = 0u64;
        let mut discarded_certs: Vec<String> = Vec::new();
        if plan.params.encrypt_to.is_some() {
            if archive_path.exists() {
                // The archive was complete; only the final bookkeeping was lost.
                self.finish(actor, &plan, None).await?;
                return Ok(MintReport {
                    batch: batch.id.to_string(),
                    count,
                    minted: 0,
                    spoiled: 0,
                    discarded: 0,
                    out_dir,
                    archive: Some(archive_path),
                });
            }
            let tmp = tmp_path(&archive_path);
            if tmp.exists() {
                std::fs::remove_file(&tmp).map_err(|e| FlowError::io(&tmp, e))?;
                discarded += 1;
            }
            lost.extend(std::mem::take(&mut good).into_values());
        } else {
            let dir = out_dir.join(IMAGES_DIR);
            let mut present: BTreeSet<String> = BTreeSet::new();
            let ext = format!(".{}", plan.output.extension());
            let entries = std::fs::read_dir(&dir).map_err(|e| FlowError::io(&dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| FlowError::io(&dir, e))?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let device = name.strip_suffix(&ext).filter(|_| !name.starts_with('.'));
                match device.and_then(|d| good.get(d)) {
                    Some(item) => {
                        let bytes = std::fs::read(&path).map_err(|e| FlowError::io(&path, e))?;
                        if sha256_hex(&bytes) == item.image_sha256 {
                            present.insert(item.device_id.clone());
                            continue;
                        }
                    }
                    None => {
                        if let Ok(bytes) = std::fs::read(&path) {
                            if let Some(id) = certificate_in_output(&plan.output, &bytes) {
                                discarded_certs.push(id);
                            }
                        }
                    }
                }
                std::fs::remove_file(&path).map_err(|e| FlowError::io(&path, e))?;
                discarded += 1;
            }
            for (device, item) in &good {
                if !present.contains(device) {
                    lost.push(item.clone());
                }
            }
        }
        let spoiled = lost.len() as u64;
        if !lost.is_empty() || !discarded_certs.is_empty() {
            let mut tx = self.store().begin(actor).await?;
            for item in &lost {
                good.remove(&item.device_id);
                let certificate = CertificateId::parse(&item.certificate_id)
                    .map_err(|e| RegistryError::Corrupt(e.to_string()))?;
                tx.set_certificate_status(
                    &certificate,
                    CertificateStatus::Revoked,
                    Some(idmint_registry::RevocationReason::CessationOfOperation),
                )
                .await?;
                tx.spoil_mint_item(&item.device_id, "image lost before the batch completed")
                    .await?;
            }
            if !lost.is_empty() {
                let n = lost.len() as i64;
                tx.add_spoiled(&batch.id, n, "image lost before the batch completed")
                    .await?;
                // Spoiled certificates keep counting against the quota:
                // replacing them is this explicit, audited raise.
                tx.raise_quota(
                    &batch.id,
                    n,
                    "replacements for images lost before the batch completed",
                )
                .await?;
            }
            if !discarded_certs.is_empty() {
                tx.audit(
                    &batch.id,
                    AuditEvent::MintDiscard {
                        reason:
                            "image written but never registered; deleted with its key on resume"
                                .into(),
                        certificates: discarded_certs,
                    },
                );
            }
            tx.commit().await?;
        }
        // Numbers still to mint: the batch's own range first, then new ones.
        let needed = (count as usize).saturating_sub(good.len());
        let mut numbers: Vec<i64> = (plan.params.first..plan.params.first + ordered)
            .filter(|n| !used.contains(n))
            .take(needed)
            .collect();
        if numbers.len() < needed {
            let extra = (needed - numbers.len()) as i64;
            let mut tx = self.store().begin(actor).await?;
            let first = tx
                .reserve_serials(&plan.params.serial_prefix, extra)
                .await?;
            tx.commit().await?;
            numbers.extend(first..first + extra);
        }
        let (minted, open) = self
            .run(
                actor,
                &plan,
                numbers,
                count,
                good.len() as u64,
                jobs,
                progress,
            )
            .await?;
        let archive = self.finish(actor, &plan, open).await?;
        Ok(MintReport {
            batch: batch.id.to_string(),
            count,
            minted,
            spoiled,
            discarded,
            out_dir,
            archive,
        })
    }

    /// Mints the devices `numbers`: workers make keys, certificates and
    /// images; this task registers them in batched transactions.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        actor: &str,
        plan: &Arc<Plan>,
        numbers: Vec<i64>,
        total: u64,
        already: u64,
        jobs: usize,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(u64, Option<ArchiveBuilder>), FlowError> {
        progress(already, total);
        if numbers.is_empty() {
            return Ok((0, None));
        }
        let numbers = Arc::new(numbers);
        let per_chunk = chunk_len(plan.output.output_len());
        let encrypt = plan.params.encrypt_to.is_some();
        let next = Arc::new(AtomicUsize::new(0));
        let jobs = jobs.max(1);
        let (tx_chunks, mut rx_chunks) = tokio::sync::mpsc::channel::<MintedChunk>(jobs * 2);
        // Without --encrypt-to, one thread writes every image file, before
        // its chunk goes on to be registered. Files created in one directory
        // queue on its lock in the kernel anyway; workers spinning on that
        // lock would take the cores from the crypto.
        let mut threads = Vec::new();
        let sink = if encrypt {
            ChunkSink::Register(tx_chunks)
        } else {
            let (tx_files, rx_files) = std::sync::mpsc::sync_channel::<MintedChunk>(jobs * 2);
            let out_dir = plan.params.out_dir.clone();
            threads.push(std::thread::spawn(move || {
                write_image_files(&out_dir, rx_files, tx_chunks)
            }));
            ChunkSink::Files(tx_files)
        };
        for _ in 0..jobs {
            let (plan, numbers, next, sink) =
                (plan.clone(), numbers.clone(), next.clone(), sink.clone());
            threads.push(std::thread::spawn(move || {
                let mut slot = Zeroizing::new(Vec::new());
                let mut image = Zeroizing::new(Vec::new());
                loop {
                    let first = next.fetch_add(per_chunk, Ordering::Relaxed);
                    if first >= numbers.len() {
                        break;
                    }
                    let last = (first + per_chunk).min(numbers.len());
                    let chunk = numbers[first..last]
                        .iter()
                        .map(|&n| mint_one(&plan, n, &mut slot, &mut image))
                        .collect::<Result<Vec<_>, _>>();
                    let failed = chunk.is_err();
                    if !sink.send(chunk) || failed {
                        break;
                    }
                }
            }));
        }
        drop(sink);

        // With --encrypt-to, a writer thread streams images into the archive.
        let (tx_archive, archive_writer) = if encrypt {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Minted>>(2);
            let writer = open_archive(plan)?;
            (
                Some(tx),
                Some(std::thread::spawn(move || write_archive_images(writer, rx))),
            )
        } else {
            (None, None)
        };

        let mut done = already;
        let mut minted = 0u64;
        let mut pending: Vec<Minted> = Vec::new();
        let mut result: Result<(), FlowError> = Ok(());
        loop {
            let next_chunk = rx_chunks.recv().await;
            let end = next_chunk.is_none();
            match next_chunk {
                Some(Ok(chunk)) => pending.extend(chunk),
                Some(Err(e)) => {
                    result = Err(e);
                    break;
                }
                None => {}
            }
            if (end && !pending.is_empty()) || pending.len() >= PER_COMMIT {
                let batch_done = std::mem::take(&mut pending);
                if let Err(e) = self.commit_items(actor, plan, &batch_done).await {
                    result = Err(e);
                    break;
                }
                minted += batch_done.len() as u64;
                done += batch_done.len() as u64;
                if let Some(tx) = &tx_archive {
                    if tx.send(batch_done).is_err() {
                        result = Err(invalid("the archive writer stopped"));
                        break;
                    }
                }
                progress(done, total);
            }
            if end {
                break;
            }
        }
        drop(rx_chunks);
        for t in threads {
            let _ = t.join();
        }
        drop(tx_archive);
        let mut archive = None;
        if let Some(writer) = archive_writer {
            let written = writer
                .join()
                .map_err(|_| invalid("the archive writer panicked"))?;
            match (&result, written) {
                (Ok(()), Ok(builder)) => archive = Some(builder),
                (Ok(()), Err(e)) => result = Err(e),
                _ => {}
            }
        }
        result?;
        Ok((minted, archive))
    }

    async fn commit_items(
        &self,
        actor: &str,
        plan: &Plan,
        minted: &[Minted],
    ) -> Result<(), FlowError> {
        let things = minted
            .iter()
            .map(|m| {
                let name = ThingName::parse(&m.item.thing).map_err(RegistryError::from)?;
                let mut t = NewThing::named(name);
                t.device_id = Some(m.item.device_id.clone());
                t.batch = Some(plan.batch.clone());
                t.thing_type = Some(plan.product.clone());
                Ok(t)
            })
            .collect::<Result<Vec<NewThing>, RegistryError>>()?;
        let certs: Vec<_> = minted.iter().map(|m| m.record.clone()).collect();
        let items: Vec<MintItem> = minted.iter().map(|m| m.item.clone()).collect();
        let mut tx = self.store().begin(actor).await?;
        tx.reserve_quota(&plan.batch, minted.len() as i64).await?;
        tx.register_minted_devices(&things, &certs, &items).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes the manifest (or completes the archive) from the registry and
    /// marks the batch complete.
    async fn finish(
        &self,
        actor: &str,
        plan: &Plan,
        open: Option<ArchiveBuilder>,
    ) -> Result<Option<PathBuf>, FlowError> {
        let out_dir = &plan.params.out_dir;
        let path = out_dir.join(MANIFEST);
        let tmp = tmp_path(&path);
        let devices = self.write_manifest(plan, &tmp).await?;
        let archive = if plan.params.encrypt_to.is_some() {
            let archive = archive_path(plan);
            if !archive.exists() {
                let builder = match open {
                    Some(b) => b,
                    // Nothing minted by this run (an empty resume): a fresh archive.
                    None => ArchiveBuilder::new(open_archive(plan)?),
                };
                builder.finish(&tmp, &archive)?;
            }
            std::fs::remove_file(&tmp).map_err(|e| FlowError::io(&tmp, e))?;
            Some(archive)
        } else {
            std::fs::rename(&tmp, &path).map_err(|e| FlowError::io(&path, e))?;
            None
        };
        let mut tx = self.store().begin(actor).await?;
        tx.set_batch_state(&plan.batch, "COMPLETE", None).await?;
        tx.audit(&plan.batch, AuditEvent::MintComplete { devices });
        tx.commit().await?;
        Ok(archive)
    }

    /// Writes `manifest.jsonl` (one line per good device, by number) to
    /// `path`, a page of the registry at a time; returns the line count.
    async fn write_manifest(&self, plan: &Plan, path: &Path) -> Result<u64, FlowError> {
        let io = |e| FlowError::io(path, e);
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
        let mut devices = 0u64;
        let mut after = i64::MIN;
        loop {
            let page = self
                .store()
                .mint_manifest_page(&plan.batch, after, MANIFEST_PAGE)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = last.number;
            for (item, der) in &page {
                let partition = match &plan.output {
                    Output::Partition(p) => Some(PartitionLine {
                        format: p.format.kind().name(),
                        size: p.format.size(),
                        nvs_namespace: match &p.format {
                            PartitionFormat::EspNvs { namespace, .. } => Some(namespace.as_str()),
                            _ => None,
                        },
                        flash_offset: p.flash_offset.map(hex_offset),
                        esptool: p.esptool_command(&item.image_file),
                        key_protection: p.key_protection.name(),
                        efuse_key_id: p.efuse_key_id,
                    }),
                    Output::Image(_) => None,
                };
                let line = ManifestLine {
                    device_id: &item.device_id,
                    thing_name: &item.thing,
                    certificate_id: &item.certificate_id,
                    certificate_pem: idmint_pki::to_pem("CERTIFICATE", der),
                    image: &item.image_file,
                    image_sha256: &item.image_sha256,
                    partition,
                };
                serde_json::to_writer(&mut out, &line).map_err(|e| invalid(e.to_string()))?;
                out.write_all(b"\n").map_err(io)?;
                devices += 1;
            }
        }
        out.flush().map_err(io)?;
        Ok(devices)
    }
}

/// The certificate id held by a device image's slot or partition, if it has
/// a readable one.
fn certificate_in_output(output: &Output, bytes: &[u8]) -> Option<String> {
    match output {
        Output::Image(_) => {
            let (_, slot) = idmint_slot::find_slot(bytes).ok()?;
            let creds = Credentials::from_slot(&slot).ok()?;
            Some(idmint_pki::certificate_id(&creds.certificate).into_string())
        }
        Output::Partition(p) => {
            let pem = p.format.decode(bytes).ok()?;
            let (info, _) =
                idmint_pki::CertificateInfo::from_pem(pem.device_cert.as_bytes()).ok()?;
            Some(info.id.into_string())
        }
    }
}

/// A flash offset as partition tables write it: `0xD000`.
fn hex_offset(offset: u64) -> String {
    format!("0x{offset:X}")
}

fn mint_one(
    plan: &Plan,
    number: i64,
    slot: &mut Zeroizing<Vec<u8>>,
    image: &mut Zeroizing<Vec<u8>>,
) -> Result<Minted, FlowError> {
    let device_id = plan.device_id(number);
    let key = DeviceKey::generate(plan.key_type)?;
    let values = SubjectValues::for_thing(&device_id)
        .with("org", plan.org.as_str())
        .with("device_id", device_id.as_str())
        .with("product", plan.product.as_str())
        .with("batch", plan.batch.as_str());
    let certificate = plan.ca.issue_for_key(&key, &plan.profile, &values)?;
    let creds = Credentials {
        device_id: device_id.clone(),
        thing_name: device_id.clone(),
        certificate: certificate.der.clone(),
        chain: plan.chain.clone(),
        private_key: key.pkcs8_der(),
        endpoint: plan.params.endpoint.clone(),
        trust_anchors: plan.anchors.clone(),
    };
    let bytes = match &plan.output {
        Output::Image(golden) => {
            encode_slot_into(golden.capacity(), &creds, slot)
                .map_err(|e| invalid(format!("device {device_id}: {e}")))?;
            golden
                .render(slot, image)
                .map_err(|e| invalid(format!("device {device_id}: {e}")))?;
            Zeroizing::new(image.to_vec())
        }
        Output::Partition(p) => p
            .format
            .encode(&creds)
            .map_err(|e| invalid(format!("device {device_id}: {e}")))?,
    };
    let image_sha256 = sha256_hex(&bytes);
    let image_file = plan.image_file(&device_id);
    let record = certificate_record(
        &certificate,
        &plan.ca_name,
        Some(&device_id),
        plan.params.status,
        Some(&plan.batch),
    );
    Ok(Minted {
        item: MintItem {
            device_id: device_id.clone(),
            batch: plan.batch.to_string(),
            number,
            thing: device_id,
            certificate_id: certificate.info.id.to_string(),
            image_file,
            image_sha256,
            state: MINT_ITEM_OK.into(),
        },
        record,
        image: Some(bytes),
    })
}

/// The image file writer: writes each chunk's images, then passes the chunk
/// on to be registered. Images are written in place: a device is registered
/// only after its image is complete, and resume deletes every unregistered
/// image (see the module docs), so a temp name and rename (two more lookups
/// in a directory of up to 100,000 entries) buy nothing.
fn write_image_files(
    out_dir: &Path,
    chunks: std::sync::mpsc::Receiver<MintedChunk>,
    register: tokio::sync::mpsc::Sender<MintedChunk>,
) {
    for chunk in chunks {
        let written = chunk.and_then(|mut chunk| {
            for m in &mut chunk {
                if let Some(image) = m.image.take() {
                    // It holds a private key: owner-only, even over a file
                    // that is there already (renamed over, never written
                    // through).
                    overwrite_secret(&out_dir.join(&m.item.image_file), &image)?;
                }
            }
            Ok(chunk)
        });
        let failed = written.is_err();
        if register.blocking_send(written).is_err() || failed {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_capacity(
    output: &Output,
    ca: &CertificateAuthority,
    profile: &Profile,
    key_type: KeyType,
    org: &str,
    sample_id: &str,
    chain: &[Vec<u8>],
    anchors: &[Vec<u8>],
    endpoint: Option<&str>,
) -> Result<(), FlowError> {
    // A throwaway CA with the real CA's name and key type signs the sample,
    // so nothing real is issued.
    let ca_info = ca.info();
    let ca_key = ca_info.key_type.unwrap_or(key_type);
    let cn = ca_info
        .subject_cn
        .clone()
        .unwrap_or_else(|| "idmint".into());
    let sample_ca = CaBuilder::root(&cn, ca_key).organization(org).build()?;
    let key = DeviceKey::generate(key_type)?;
    let values = SubjectValues::for_thing(sample_id)
        .with("org", org)
        .with("device_id", sample_id)
        .with("product", sample_id)
        .with("batch", sample_id);
    let certificate = sample_ca.issue_for_key(&key, profile, &values)?;
    let creds = Credentials {
        device_id: sample_id.into(),
        thing_name: sample_id.into(),
        certificate: certificate.der,
        chain: chain.to_vec(),
        private_key: key.pkcs8_der(),
        endpoint: endpoint.map(str::to_string),
        trust_anchors: anchors.to_vec(),
    };
    let margin = SLOT_MARGIN
        + ca.certificate_der()
            .len()
            .saturating_sub(sample_ca.certificate_der().len());
    match output {
        Output::Image(golden) => {
            let needed = idmint_slot::required_capacity(&creds) + margin;
            if needed > golden.capacity() {
                return Err(invalid(format!(
                    "slot too small: the credentials need about {needed} bytes but the golden image's slot holds {} (reserve a larger slot, e.g. 4096 bytes)",
                    golden.capacity()
                )));
            }
        }
        Output::Partition(p) => {
            // The sample certificate, longer by the margin, stands for the
            // largest one this batch can issue.
            let mut pem = PemCredentials::from_credentials(&creds);
            pem.device_cert
                .push_str(&"A".repeat(margin.div_ceil(3) * 4 + margin / 48 + 1));
            p.format.encode_pem(&pem).map_err(|e| {
                invalid(format!(
                    "--format {}: {e} (give a larger --partition-size)",
                    p.format.kind()
                ))
            })?;
        }
    }
    Ok(())
}

fn check_out_dir(dir: &Path) -> Result<(), FlowError> {
    if !dir.exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| FlowError::io(dir, e))?;
    if entries.next().is_some() {
        return Err(invalid(format!(
            "output directory {} is not empty",
            dir.display()
        )));
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, FlowError> {
    std::path::absolute(path).map_err(|e| FlowError::io(path, e))
}

fn slug(product: &str) -> String {
    let s: String = product
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "batch".into()
    } else {
        s
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn archive_path(plan: &Plan) -> PathBuf {
    plan.params
        .out_dir
        .join(format!("batch-{}.tar.age", plan.batch))
}

type AgeWriter = age::stream::StreamWriter<BufWriter<File>>;

/// The tar inside the age stream, open while images are added.
struct ArchiveBuilder {
    tar: tar::Builder<AgeWriter>,
    tmp: PathBuf,
}

impl ArchiveBuilder {
    fn new((writer, tmp): (AgeWriter, PathBuf)) -> Self {
        let mut tar = tar::Builder::new(writer);
        tar.mode(tar::HeaderMode::Deterministic);
        ArchiveBuilder { tar, tmp }
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), FlowError> {
        self.append_from(name, bytes.len() as u64, bytes)
    }

    fn append_from(
        &mut self,
        name: &str,
        size: u64,
        data: impl std::io::Read,
    ) -> Result<(), FlowError> {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        self.tar
            .append_data(&mut header, name, data)
            .map_err(|e| FlowError::io(&self.tmp, e))
    }

    /// Adds the manifest written at `manifest` and renames the archive to `path`.
    fn finish(mut self, manifest: &Path, path: &Path) -> Result<(), FlowError> {
        let file = File::open(manifest).map_err(|e| FlowError::io(manifest, e))?;
        let size = file
            .metadata()
            .map_err(|e| FlowError::io(manifest, e))?
            .len();
        self.append_from(MANIFEST, size, std::io::BufReader::new(file))?;
        let tmp = self.tmp.clone();
        let age = self.tar.into_inner().map_err(|e| FlowError::io(&tmp, e))?;
        let mut file = age.finish().map_err(|e| FlowError::io(&tmp, e))?;
        file.flush().map_err(|e| FlowError::io(&tmp, e))?;
        let file = file
            .into_inner()
            .map_err(|e| FlowError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| FlowError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| FlowError::io(path, e))
    }
}

fn open_archive(plan: &Plan) -> Result<(AgeWriter, PathBuf), FlowError> {
    let recipient = plan
        .params
        .encrypt_to
        .as_deref()
        .ok_or_else(|| invalid("no recipient"))?;
    let recipient = parse_recipient(recipient)?;
    let tmp = tmp_path(&archive_path(plan));
    let file = File::create(&tmp).map_err(|e| FlowError::io(&tmp, e))?;
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&*recipient as &dyn age::Recipient))
            .map_err(|e| invalid(format!("--encrypt-to: {e}")))?;
    let writer = encryptor
        .wrap_output(BufWriter::with_capacity(1 << 20, file))
        .map_err(|e| FlowError::io(&tmp, e))?;
    Ok((writer, tmp))
}

fn write_archive_images(
    writer: (AgeWriter, PathBuf),
    rx: std::sync::mpsc::Receiver<Vec<Minted>>,
) -> Result<ArchiveBuilder, FlowError> {
    let mut builder = ArchiveBuilder::new(writer);
    for chunk in rx {
        for m in chunk {
            if let Some(image) = &m.image {
                builder.append(&m.item.image_file, image)?;
            }
        }
    }
    Ok(builder)
}
