//! The authorization bundle (`idmint batch authorize --out AUTH`), format
//! `idmint-offline-authorization` version 1: one JSON document holding
//!
//! - `authorization`: lowercase hex SHA-256 of the `limits` text (the
//!   authorization id; the issuance log chains from it);
//! - `limits`: the batch limits ([`BatchLimits`]) as JSON text, exactly the
//!   bytes that were signed;
//! - `limitsSignature`: base64 signature by the maker CA's key over
//!   `"idmint-offline-limits-v1\0" || limits`;
//! - `batchCa`: the batch CA certificate (PEM; path length 0);
//! - `chain`: the maker CA that signed the batch CA and its parents up to
//!   the root (PEM, issuer first);
//! - `key`: the batch CA private key, either `{"kind": "age", "recipient",
//!   "ciphertext"}` (a PKCS#8 DER key encrypted to the factory's age
//!   recipient, the binary age file in base64) or `{"kind": "pkcs11",
//!   "uri"}` (generated inside the factory's token; never left it).
//!
//! Reading a bundle checks everything a station can check without the
//! maker: the format, the id, the limits signature, the certificate
//! signatures from the batch CA to the root, and that the limits name this
//! batch CA. The key is opened separately ([`Authorization::open_batch_ca`]).

use std::io::Read;
use std::path::Path;

use base64::Engine;
use idmint_pki::{
    CertificateAuthority, CertificateInfo, DeviceKey, KeyType, Pkcs11Config, Pkcs11Key, Pkcs11Uri,
    Profile, RevocationPointers, SignatureEncoding, Signer, VerifyingKey,
};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use idmint_flows::FlowError;

/// The bundle's `format`.
pub const BUNDLE_FORMAT: &str = "idmint-offline-authorization";
/// The bundle version this idmint writes and reads.
pub const BUNDLE_VERSION: u32 = 1;
/// The limits document's `format`.
pub const LIMITS_FORMAT: &str = "idmint-offline-limits";
/// Signed before the limits bytes (domain separation: a CA key signs
/// certificates too).
pub(crate) const LIMITS_CONTEXT: &[u8] = b"idmint-offline-limits-v1\0";
/// Largest bundle read (a bundle is a few kilobytes).
const MAX_BUNDLE_BYTES: u64 = 1 << 20;

/// The batch limits the maker signs: what a station may issue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchLimits {
    /// [`LIMITS_FORMAT`].
    pub format: String,
    /// 1.
    pub version: u32,
    /// The batch id.
    pub batch: String,
    /// The factory the batch is for.
    pub factory: String,
    /// The product.
    pub product: String,
    /// How many certificates the station may ever issue (spoiled ones
    /// included).
    pub count: u64,
    /// First device serial number.
    pub serial_first: u64,
    /// Last device serial number (inclusive).
    pub serial_last: u64,
    /// Issuance window start (the batch CA's notBefore), Unix seconds.
    pub not_before: i64,
    /// Issuance window end (the batch CA's notAfter), Unix seconds.
    pub not_after: i64,
    /// The profile's name at the maker.
    pub profile_name: String,
    /// The certificate profile devices are issued from.
    pub profile: Profile,
    /// The maker's organisation (the `{org}` template variable).
    pub org: String,
    /// The key type asked of devices first.
    pub key_type: KeyType,
    /// Whether the station may make keys for devices that cannot and
    /// inject them.
    pub allow_inject: bool,
    /// Certificate id (SHA-256 of the DER, hex) of the batch CA.
    pub batch_ca: String,
    /// Certificate id of the maker CA that signed the batch CA and these
    /// limits.
    pub issuer_ca: String,
    /// Where relying parties check the certificates the station issues
    /// (the maker's `[server] public_url`): put in each as its CRL
    /// distribution point and OCSP responder. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationUrls>,
}

/// The CRL and OCSP URLs offline-issued certificates carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevocationUrls {
    /// The batch CA's CRL at the maker (`{public_url}/crl/<batch>-ca.crl`).
    pub crl_url: String,
    /// The maker's OCSP responder (`{public_url}/ocsp`).
    pub ocsp_url: String,
}

/// Where the batch CA key is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BundleKey {
    /// PKCS#8 DER encrypted with age to `recipient`.
    Age {
        /// The factory's age recipient (`age1…` or `ssh-ed25519 …`).
        recipient: String,
        /// The binary age file, base64.
        ciphertext: String,
    },
    /// Generated inside the factory's PKCS#11 token.
    Pkcs11 {
        /// The key's `pkcs11:` URI (RFC 7512).
        uri: String,
    },
}

impl BundleKey {
    /// `age` or `pkcs11`.
    pub fn kind(&self) -> &'static str {
        match self {
            BundleKey::Age { .. } => "age",
            BundleKey::Pkcs11 { .. } => "pkcs11",
        }
    }
}

/// The bundle file as stored.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct BundleFile {
    pub(crate) format: String,
    pub(crate) version: u32,
    pub(crate) authorization: String,
    pub(crate) limits: String,
    pub(crate) limits_signature: String,
    pub(crate) batch_ca: String,
    pub(crate) chain: Vec<String>,
    pub(crate) key: BundleKey,
}

/// A verified authorization bundle.
#[derive(Clone, Debug)]
pub struct Authorization {
    /// The authorization id: SHA-256 of the limits text, hex.
    pub id: String,
    /// The parsed limits.
    pub limits: BatchLimits,
    /// The limits exactly as signed.
    pub limits_text: String,
    /// The maker CA's signature over the limits, base64.
    pub signature: String,
    /// The batch CA certificate, DER.
    pub batch_ca_der: Vec<u8>,
    /// The maker CA and its parents up to the root, DER, issuer first.
    pub chain_der: Vec<Vec<u8>>,
    /// Where the batch CA key is.
    pub key: BundleKey,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> FlowError {
    FlowError::Invalid(format!(
        "{} is not a usable authorization bundle: {why}",
        path.display()
    ))
}

/// Lowercase hex SHA-256.
pub(crate) use idmint_pki::sha256_hex;

/// Signs `context || message` with a CA key.
pub(crate) fn sign(signer: &Signer, context: &[u8], message: &[u8]) -> Result<Vec<u8>, FlowError> {
    let mut data = Vec::with_capacity(context.len() + message.len());
    data.extend_from_slice(context);
    data.extend_from_slice(message);
    rcgen::SigningKey::sign(signer, &data)
        .map_err(|e| FlowError::Internal(format!("signing failed: {e}")))
}

/// Checks a signature made by [`sign`] against a DER SubjectPublicKeyInfo.
pub(crate) fn verify(spki_der: &[u8], context: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_spki(spki_der, SignatureEncoding::Der) else {
        return false;
    };
    let mut data = Vec::with_capacity(context.len() + message.len());
    data.extend_from_slice(context);
    data.extend_from_slice(message);
    key.verifies(&data, signature)
}

/// Whether `cert_der` carries a valid signature by the key of `issuer_der`.
pub(crate) fn signed_by(cert_der: &[u8], issuer_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, issuer))) = (
        X509Certificate::from_der(cert_der),
        X509Certificate::from_der(issuer_der),
    ) else {
        return false;
    };
    cert.verify_signature(Some(issuer.public_key())).is_ok()
}

/// The path length constraint of a CA certificate (`None`: unlimited or
/// not a CA).
pub(crate) fn path_len(cert_der: &[u8]) -> Option<u32> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let bc = cert.basic_constraints().ok()??;
    bc.value.path_len_constraint
}

pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Base64 (standard alphabet, padded).
pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    b64().encode(bytes)
}

fn pem_der(text: &str, what: &str, path: &Path) -> Result<Vec<u8>, FlowError> {
    CertificateInfo::from_pem(text.as_bytes())
        .map(|(_, der)| der)
        .map_err(|e| bad(path, format!("{what}: {e}")))
}

impl Authorization {
    /// Reads and verifies a bundle file.
    pub fn read(path: &Path) -> Result<Authorization, FlowError> {
        let file = std::fs::File::open(path).map_err(|e| FlowError::io(path, e))?;
        let mut bytes = Vec::new();
        file.take(MAX_BUNDLE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FlowError::io(path, e))?;
        if bytes.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(bad(path, "larger than 1 MiB"));
        }
        Self::parse(&bytes, path)
    }

    /// Parses and verifies bundle bytes (`path` names it in errors).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Authorization, FlowError> {
        let probe: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(path, format!("not JSON ({e})")))?;
        if probe.get("format").and_then(|f| f.as_str()) != Some(BUNDLE_FORMAT) {
            return Err(bad(
                path,
                format!(
                    "its format is not {BUNDLE_FORMAT:?} (not made by `idmint batch authorize`)"
                ),
            ));
        }
        let version = probe.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version != u64::from(BUNDLE_VERSION) {
            return Err(bad(
                path,
                format!("version {version}; this idmint reads version {BUNDLE_VERSION}"),
            ));
        }
        let file: BundleFile =
            serde_json::from_value(probe).map_err(|e| bad(path, format!("{e}")))?;
        let id = sha256_hex(file.limits.as_bytes());
        if id != file.authorization {
            return Err(bad(
                path,
                "its authorization id does not match its limits (the limits were edited)",
            ));
        }
        let limits: BatchLimits =
            serde_json::from_str(&file.limits).map_err(|e| bad(path, format!("limits: {e}")))?;
        if limits.format != LIMITS_FORMAT || limits.version != BUNDLE_VERSION {
            return Err(bad(
                path,
                format!(
                    "limits format {:?} version {}, expected {LIMITS_FORMAT:?} version {BUNDLE_VERSION}",
                    limits.format, limits.version
                ),
            ));
        }
        let batch_ca_der = pem_der(&file.batch_ca, "batchCa", path)?;
        if file.chain.is_empty() {
            return Err(bad(path, "chain is empty (the maker CA is missing)"));
        }
        let chain_der = file
            .chain
            .iter()
            .enumerate()
            .map(|(i, c)| pem_der(c, &format!("chain[{i}]"), path))
            .collect::<Result<Vec<_>, _>>()?;
        let maker = CertificateInfo::from_der(&chain_der[0])
            .map_err(|e| bad(path, format!("chain[0]: {e}")))?;
        let signature = b64()
            .decode(file.limits_signature.as_bytes())
            .map_err(|e| bad(path, format!("limitsSignature: {e}")))?;
        if !verify(
            &maker.spki_der,
            LIMITS_CONTEXT,
            file.limits.as_bytes(),
            &signature,
        ) {
            return Err(bad(
                path,
                format!(
                    "the batch limits are not signed by the maker CA {} (edited or forged)",
                    maker.subject
                ),
            ));
        }
        let batch_ca = CertificateInfo::from_der(&batch_ca_der)
            .map_err(|e| bad(path, format!("batchCa: {e}")))?;
        if !batch_ca.is_ca || path_len(&batch_ca_der) != Some(0) {
            return Err(bad(
                path,
                "batchCa is not a CA certificate of path length 0",
            ));
        }
        if !signed_by(&batch_ca_der, &chain_der[0]) {
            return Err(bad(
                path,
                format!(
                    "the batch CA is not signed by the maker CA {}",
                    maker.subject
                ),
            ));
        }
        for (i, pair) in chain_der.windows(2).enumerate() {
            if !signed_by(&pair[0], &pair[1]) {
                return Err(bad(
                    path,
                    format!("chain[{i}] is not signed by chain[{}]", i + 1),
                ));
            }
        }
        if let Some(root) = chain_der.last() {
            if !signed_by(root, root) {
                return Err(bad(path, "the chain does not end with a self-signed root"));
            }
        }
        if limits.batch_ca != batch_ca.id || limits.issuer_ca != maker.id {
            return Err(bad(
                path,
                "the limits name another batch CA or maker CA than the bundle holds",
            ));
        }
        Ok(Authorization {
            id,
            limits,
            limits_text: file.limits,
            signature: file.limits_signature,
            batch_ca_der,
            chain_der,
            key: file.key,
        })
    }

    /// The bundle as JSON text.
    pub(crate) fn to_json(&self) -> Result<String, FlowError> {
        let file = BundleFile {
            format: BUNDLE_FORMAT.into(),
            version: BUNDLE_VERSION,
            authorization: self.id.clone(),
            limits: self.limits_text.clone(),
            limits_signature: self.signature.clone(),
            batch_ca: idmint_pki::to_pem("CERTIFICATE", &self.batch_ca_der),
            chain: self
                .chain_der
                .iter()
                .map(|d| idmint_pki::to_pem("CERTIFICATE", d))
                .collect(),
            key: self.key.clone(),
        };
        let mut text = serde_json::to_string_pretty(&file)
            .map_err(|e| FlowError::Internal(format!("encoding the bundle: {e}")))?;
        text.push('\n');
        Ok(text)
    }

    /// Opens the batch CA with its key: decrypted with the age identity
    /// file `identity`, or opened in the PKCS#11 token (`pkcs11`).
    pub fn open_batch_ca(
        &self,
        identity: Option<&Path>,
        pkcs11: Option<&Pkcs11Config>,
    ) -> Result<CertificateAuthority, FlowError> {
        let signer = match &self.key {
            BundleKey::Age {
                recipient,
                ciphertext,
            } => {
                let identity = identity.ok_or_else(|| {
                    FlowError::Invalid(format!(
                        "the batch CA key of authorization {} is encrypted to {recipient}: give --identity FILE with its age identity",
                        self.limits.batch
                    ))
                })?;
                let der = decrypt_key(identity, recipient, ciphertext)?;
                let key = DeviceKey::from_pkcs8_der(&der).map_err(|e| {
                    FlowError::Invalid(format!(
                        "the decrypted batch CA key is not a usable key: {e}"
                    ))
                })?;
                Signer::software(key)
            }
            BundleKey::Pkcs11 { uri } => {
                let config = pkcs11.ok_or_else(|| {
                    FlowError::Pkcs11NotConfigured(format!(
                        "the batch CA key of authorization {} is in a PKCS#11 token ({uri}): set IDMINT_PKCS11_MODULE and IDMINT_PKCS11_PIN",
                        self.limits.batch
                    ))
                })?;
                Pkcs11Key::open(config, &Pkcs11Uri::parse(uri)?)?.into_signer()?
            }
        };
        let ca =
            CertificateAuthority::from_parts(self.batch_ca_der.clone(), signer).map_err(|e| {
                FlowError::Invalid(format!(
                    "the batch CA key does not open authorization {}: {e}",
                    self.limits.batch
                ))
            })?;
        match &self.limits.revocation {
            Some(urls) => Ok(ca.with_revocation_pointers(RevocationPointers {
                crl_url: urls.crl_url.clone(),
                ocsp_url: urls.ocsp_url.clone(),
            })?),
            None => Ok(ca),
        }
    }
}

/// Decrypts the age-encrypted PKCS#8 key with the identities in `identity`.
fn decrypt_key(
    identity: &Path,
    recipient: &str,
    ciphertext: &str,
) -> Result<Zeroizing<Vec<u8>>, FlowError> {
    let text = Zeroizing::new(std::fs::read(identity).map_err(|e| FlowError::io(identity, e))?);
    let mut identities: Vec<Box<dyn age::Identity>> = Vec::new();
    if let Ok(file) = age::IdentityFile::from_buffer(&text[..]) {
        if let Ok(ids) = file.into_identities() {
            identities.extend(ids);
        }
    }
    if identities.is_empty() {
        if let Ok(ssh) =
            age::ssh::Identity::from_buffer(&text[..], Some(identity.display().to_string()))
        {
            if matches!(ssh, age::ssh::Identity::Unencrypted(_)) {
                identities.push(Box::new(ssh));
            }
        }
    }
    if identities.is_empty() {
        return Err(FlowError::Invalid(format!(
            "{} holds no age identity (expected AGE-SECRET-KEY-1… lines or an unencrypted OpenSSH key)",
            identity.display()
        )));
    }
    let cipher = b64()
        .decode(ciphertext.as_bytes())
        .map_err(|e| FlowError::Invalid(format!("the bundle's key ciphertext: {e}")))?;
    let wrong = || {
        FlowError::Invalid(format!(
            "the identity in {} cannot open the batch CA key (it is encrypted to {recipient})",
            identity.display()
        ))
    };
    let decryptor = age::Decryptor::new(&cipher[..])
        .map_err(|e| FlowError::Invalid(format!("the bundle's key ciphertext: {e}")))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => wrong(),
            e => FlowError::Invalid(format!("decrypting the batch CA key: {e}")),
        })?;
    let mut der = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut der)
        .map_err(|e| FlowError::Invalid(format!("decrypting the batch CA key: {e}")))?;
    Ok(der)
}

/// Encrypts a PKCS#8 key to an age recipient; returns the base64 age file.
pub(crate) fn encrypt_key(recipient: &str, pkcs8_der: &[u8]) -> Result<String, FlowError> {
    use std::io::Write;
    let recipient = idmint_flows::files::parse_recipient(recipient)?;
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&*recipient as &dyn age::Recipient))
            .map_err(|e| FlowError::Invalid(format!("age recipient: {e}")))?;
    let mut out = Vec::new();
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| FlowError::Internal(format!("age encryption: {e}")))?;
    writer
        .write_all(pkcs8_der)
        .and_then(|_| writer.finish().map(|_| ()))
        .map_err(|e| FlowError::Internal(format!("age encryption: {e}")))?;
    Ok(b64().encode(out))
}
