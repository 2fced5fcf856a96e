//! `idmint slot show`: looks inside a device image that `batch mint` made
//! (bin, Intel HEX, ELF, blob) or an ESP32 partition (`esp_secure_cert` or
//! NVS), and
//! prints its credential records and the certificate's subject, serial and
//! validity. The private key is never printed, only its presence and size.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use idmint_flows::pki::{to_pem, CertificateInfo};
use idmint_slot::partition::esp_secure_cert::{EspSecureCert, TlvType, TLV_MAGIC};
use idmint_slot::partition::nvs::{self, NvsPartition, NvsValue};
use idmint_slot::{find_slot, slot_region, ImageFormat, RecordType, Slot};
use serde::Serialize;

use crate::output;

/// `idmint slot` subcommands.
#[derive(Subcommand)]
pub enum SlotCommand {
    /// Show the credentials in a device image or ESP32 partition.
    #[command(after_help = "Examples:\n  \
        idmint slot show out/images/sensor-000001.bin\n  \
        idmint slot show out/images/sensor-000001.hex --json | jq .certificate.notAfter\n  \
        idmint slot show out/images/sensor-000001.bin --pem > device.pem && \\\n    \
        openssl verify -CAfile root.pem -untrusted device.pem device.pem")]
    Show(ShowArgs),
}

/// `idmint slot show`.
#[derive(Args)]
pub struct ShowArgs {
    /// The device image: bin, Intel HEX (.hex), ELF, a blob (.cred), or an
    /// `esp_secure_cert` partition image.
    image: PathBuf,
    /// Image format: bin, hex, elf or blob (inferred from the file by
    /// default; an `esp_secure_cert` partition is recognised by its magic).
    #[arg(long)]
    format: Option<ImageFormat>,
    /// Print a JSON object.
    #[arg(long, conflicts_with = "pem")]
    json: bool,
    /// Print only the certificates as PEM: the leaf, then its chain (for
    /// `openssl verify`). Never the key.
    #[arg(long)]
    pem: bool,
}

/// Runs `idmint slot ...`.
pub fn run(cmd: SlotCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SlotCommand::Show(args) => show(args),
    }
}

/// What `slot show` found, as `--json` prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SlotView {
    /// The file shown.
    image: PathBuf,
    /// `bin`, `hex`, `elf`, `blob`, `esp-secure-cert` or `esp-nvs`.
    format: String,
    /// File offset of the slot (address for Intel HEX); 0 for a partition.
    location: u64,
    /// Slot or partition size in bytes.
    capacity: usize,
    /// Every record (or TLV entry) in order, without its value.
    records: Vec<RecordView>,
    device_id: Option<String>,
    thing_name: Option<String>,
    endpoint: Option<String>,
    /// The device certificate.
    certificate: Option<CertView>,
    /// Chain certificates after the leaf, issuer first.
    chain: Vec<CertView>,
    /// CA certificates the device trusts for its server.
    trust_anchors: Vec<CertView>,
    /// Bytes of the private key (never the key itself); `None` if absent.
    private_key_bytes: Option<usize>,
    /// The leaf and chain certificates as PEM, for `--pem`.
    #[serde(skip)]
    pem: String,
}

/// One record: its type and length.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordView {
    /// The wire type (the TLV type of an `esp_secure_cert` entry, the
    /// item type of an NVS key).
    #[serde(rename = "type")]
    tag: u16,
    /// What the type means, if known.
    name: Option<String>,
    /// Value length in bytes.
    length: usize,
}

/// The facts of a certificate found in an image.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CertView {
    id: String,
    subject: String,
    issuer: String,
    serial: String,
    not_before: String,
    not_after: String,
}

impl CertView {
    fn new(info: &CertificateInfo) -> CertView {
        CertView {
            id: info.id.to_string(),
            subject: info.subject.clone(),
            issuer: info.issuer.clone(),
            serial: info.serial.to_string(),
            not_before: output::time(info.not_before),
            not_after: output::time(info.not_after),
        }
    }

    fn from_der(der: &[u8], what: &str) -> anyhow::Result<CertView> {
        let info = CertificateInfo::from_der(der).with_context(|| format!("the {what}"))?;
        Ok(CertView::new(&info))
    }
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let view = if args.format.is_none() && bytes.starts_with(&TLV_MAGIC.to_le_bytes()) {
        partition_view(&args.image, &bytes)?
    } else if args.format.is_none() && looks_like_nvs(&bytes) {
        nvs_view(&args.image, &bytes)?
    } else {
        let format = args
            .format
            .unwrap_or_else(|| ImageFormat::detect(&args.image, &bytes));
        image_view(&args.image, &bytes, format)?
    };
    if args.pem {
        print!("{}", view.pem);
    } else if args.json {
        output::json(&view)?;
    } else {
        print_view(&view);
    }
    Ok(ExitCode::SUCCESS)
}

/// A device image: find the written slot and read its records.
fn image_view(
    path: &std::path::Path,
    bytes: &[u8],
    format: ImageFormat,
) -> anyhow::Result<SlotView> {
    let context = || format!("{} (read as {format})", path.display());
    let region = slot_region(bytes, format).with_context(context)?;
    let (offset, slot) = find_slot(&region.bytes).with_context(context)?;
    let text = |r: Result<Option<&str>, _>| -> anyhow::Result<Option<String>> {
        Ok(r.with_context(context)?.map(str::to_string))
    };
    let certificate = slot
        .certificate()
        .with_context(context)?
        .map(|der| CertView::from_der(der, "leaf certificate"))
        .transpose()?;
    Ok(SlotView {
        image: path.to_path_buf(),
        format: format.name().to_string(),
        location: region.base + offset as u64,
        capacity: slot.capacity(),
        records: records(&slot),
        device_id: text(slot.device_id())?,
        thing_name: text(slot.thing_name())?,
        endpoint: text(slot.endpoint())?,
        certificate,
        chain: slot
            .values(RecordType::ChainCertificate)
            .map(|der| CertView::from_der(der, "chain certificate"))
            .collect::<anyhow::Result<_>>()?,
        trust_anchors: slot
            .values(RecordType::TrustAnchor)
            .map(|der| CertView::from_der(der, "trust anchor"))
            .collect::<anyhow::Result<_>>()?,
        private_key_bytes: slot.private_key().with_context(context)?.map(<[u8]>::len),
        pem: slot
            .values(RecordType::Certificate)
            .chain(slot.values(RecordType::ChainCertificate))
            .map(|der| to_pem("CERTIFICATE", der))
            .collect(),
    })
}

fn records(slot: &Slot<'_>) -> Vec<RecordView> {
    slot.records()
        .map(|r| RecordView {
            tag: r.tag,
            name: r.record_type().and_then(record_name).map(str::to_string),
            length: r.value.len(),
        })
        .collect()
}

fn record_name(t: RecordType) -> Option<&'static str> {
    Some(match t {
        RecordType::DeviceId => "device id",
        RecordType::Certificate => "leaf certificate",
        RecordType::ChainCertificate => "chain certificate",
        RecordType::PrivateKey => "private key",
        RecordType::Endpoint => "endpoint",
        RecordType::ThingName => "thing name",
        RecordType::TrustAnchor => "trust anchor",
        _ => return None,
    })
}

/// An `esp_secure_cert` partition: its TLV entries, with the PEM
/// certificates read out of them.
fn partition_view(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<SlotView> {
    let context = || format!("{} (read as an esp_secure_cert partition)", path.display());
    let partition = EspSecureCert::parse(bytes).with_context(context)?;
    let mut pem = String::new();
    let mut pem_certs = |t: TlvType, what: &str| -> anyhow::Result<Vec<CertView>> {
        let Some(entry) = partition.find(t) else {
            return Ok(Vec::new());
        };
        let text = String::from_utf8_lossy(entry.value);
        pem_blocks(&text)
            .map(|block| {
                let (info, _) = CertificateInfo::from_pem(block.as_bytes())
                    .with_context(|| format!("the {what} in {}", path.display()))?;
                if t == TlvType::DEV_CERT {
                    pem.push_str(block);
                    pem.push('\n');
                }
                Ok(CertView::new(&info))
            })
            .collect()
    };
    let mut device = pem_certs(TlvType::DEV_CERT, "device certificate")?.into_iter();
    let trust_anchors = pem_certs(TlvType::CA_CERT, "CA certificate")?;
    let key = partition.find(TlvType::PRIV_KEY).map(|e| {
        // The PEM text is NUL-terminated on flash.
        e.value.strip_suffix(&[0]).unwrap_or(e.value).len()
    });
    Ok(SlotView {
        image: path.to_path_buf(),
        format: "esp-secure-cert".into(),
        location: 0,
        capacity: bytes.len(),
        records: partition
            .entries()
            .iter()
            .map(|e| RecordView {
                tag: u16::from(e.tlv_type.0),
                name: tlv_name(e.tlv_type).map(str::to_string),
                length: e.value.len(),
            })
            .collect(),
        device_id: None,
        thing_name: None,
        endpoint: None,
        certificate: device.next(),
        chain: device.collect(),
        trust_anchors,
        private_key_bytes: key,
        pem,
    })
}

/// Whether a file looks like an NVS partition: whole 4 KiB pages, the
/// first one active or full (its header's state word).
fn looks_like_nvs(bytes: &[u8]) -> bool {
    const ACTIVE: [u8; 4] = 0xFFFF_FFFE_u32.to_le_bytes();
    const FULL: [u8; 4] = 0xFFFF_FFFC_u32.to_le_bytes();
    !bytes.is_empty()
        && bytes.len().is_multiple_of(4096)
        && (bytes.starts_with(&ACTIVE) || bytes.starts_with(&FULL))
}

/// An NVS partition (`--format esp-nvs`): its keys, with the credentials
/// read from the namespace that holds a `dev_cert` string.
fn nvs_view(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<SlotView> {
    let context = || format!("{} (read as an NVS partition)", path.display());
    let partition = NvsPartition::parse(bytes).with_context(context)?;
    let namespace = partition
        .entries()
        .iter()
        .find(|e| e.key == nvs::DEV_CERT_KEY && matches!(e.value, NvsValue::Str(_)))
        .map(|e| e.namespace.clone())
        .with_context(|| format!("{}: no namespace holds a dev_cert string", path.display()))?;
    let creds = partition.credentials(&namespace).with_context(context)?;
    let certs = |text: &str, what: &str| -> anyhow::Result<Vec<CertView>> {
        pem_blocks(text)
            .map(|block| {
                let (info, _) = CertificateInfo::from_pem(block.as_bytes())
                    .with_context(|| format!("the {what} in {}", path.display()))?;
                Ok(CertView::new(&info))
            })
            .collect()
    };
    let mut device = certs(&creds.device_cert, "device certificate")?.into_iter();
    let records = partition
        .entries()
        .iter()
        .map(|e| RecordView {
            tag: u16::from(e.value.item_type().code()),
            name: Some(format!("{}/{}", e.namespace, e.key)),
            length: e.value.size(),
        })
        .collect();
    Ok(SlotView {
        image: path.to_path_buf(),
        format: "esp-nvs".into(),
        location: 0,
        capacity: bytes.len(),
        records,
        device_id: None,
        thing_name: None,
        endpoint: None,
        certificate: device.next(),
        chain: device.collect(),
        trust_anchors: certs(&creds.ca_cert, "CA certificate")?,
        private_key_bytes: Some(creds.private_key.len()),
        pem: pem_blocks(&creds.device_cert)
            .map(|b| format!("{b}\n"))
            .collect(),
    })
}

/// Each `CERTIFICATE` PEM block of a text, BEGIN and END lines included.
fn pem_blocks(text: &str) -> impl Iterator<Item = &str> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find(BEGIN)?;
        let end = rest[start..].find(END)? + start + END.len();
        let block = &rest[start..end];
        rest = &rest[end..];
        Some(block)
    })
}

fn tlv_name(t: TlvType) -> Option<&'static str> {
    Some(match t {
        TlvType::CA_CERT => "CA certificate",
        TlvType::DEV_CERT => "device certificate",
        TlvType::PRIV_KEY => "private key",
        TlvType::DS_DATA => "DS data",
        TlvType::DS_CONTEXT => "DS context",
        TlvType::HMAC_ECDSA_KEY_SALT => "HMAC ECDSA key salt",
        TlvType::SEC_CFG => "security configuration",
        TlvType::TEE_SEC_STORAGE_KEY => "TEE secure storage key",
        TlvType::SIGNATURE_BLOCK => "signature block",
        TlvType::INTEGRITY => "integrity (SHA-256)",
        _ => return None,
    })
}

fn print_view(v: &SlotView) {
    let unit = if v.format == "hex" {
        "address"
    } else {
        "offset"
    };
    println!(
        "image:         {} ({}, slot at {unit} {:#x}, {} bytes)",
        v.image.display(),
        v.format,
        v.location,
        v.capacity
    );
    let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    if v.format != "esp-secure-cert" {
        println!("device id:     {}", or_dash(&v.device_id));
        println!("thing name:    {}", or_dash(&v.thing_name));
        println!("endpoint:      {}", or_dash(&v.endpoint));
    }
    match &v.certificate {
        Some(c) => {
            println!("certificate:   {}", c.subject);
            println!("  issuer:      {}", c.issuer);
            println!("  serial:      {}", c.serial);
            println!("  not before:  {}", c.not_before);
            println!("  not after:   {}", c.not_after);
            println!("  id:          {}", c.id);
        }
        None => println!("certificate:   -"),
    }
    for c in &v.chain {
        println!("chain:         {} (serial {})", c.subject, c.serial);
    }
    for c in &v.trust_anchors {
        println!("trust anchor:  {} (serial {})", c.subject, c.serial);
    }
    match v.private_key_bytes {
        Some(n) => println!("private key:   present, {n} bytes (not shown)"),
        None => println!("private key:   -"),
    }
    println!("records:");
    for r in &v.records {
        println!(
            "  type {:>3}  {:>6} bytes  {}",
            r.tag,
            r.length,
            r.name.as_deref().unwrap_or("(unknown type)")
        );
    }
}
