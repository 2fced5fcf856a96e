//! `idmint batch authorize`: the maker makes an offline batch authorization
//! for a factory (see the module docs of [`crate::offline`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use idmint_pki::{
    CaBuilder, CertificateAuthority, DeviceKey, ExtendedKeyUsage, KeyType, Pkcs11Key, Pkcs11Uri,
    Signer,
};
use idmint_registry::{validate_name, BatchKind, CaKind, NewBatch, NewCa, NewOfflineAuthorization};
use serde::Serialize;

use super::bundle::{
    b64, encrypt_key, path_len, sha256_hex, sign, Authorization, BatchLimits, BundleKey,
    RevocationUrls, BUNDLE_VERSION, LIMITS_CONTEXT, LIMITS_FORMAT,
};
use crate::new_batch_id;
use idmint_flows::init::{new_ca, ROOT_CA};
use idmint_flows::FlowError;

/// The maker CA that signs batch CAs by default: an issuing CA of path
/// length 1 under the root, created on first use.
pub const OFFLINE_CA: &str = "offline";

/// The longest a batch CA may live, days.
const MAX_VALID_DAYS: u32 = 3650;

/// Where the batch CA key goes.
#[derive(Clone, Debug)]
pub enum BatchKeyDestination {
    /// Made here, encrypted to this age recipient (`age1…` or
    /// `ssh-ed25519 …`), and forgotten.
    Age(String),
    /// Generated inside the factory's PKCS#11 token at this `pkcs11:` URI
    /// (the token must be reachable here, with `IDMINT_PKCS11_MODULE` and
    /// `IDMINT_PKCS11_PIN`).
    Pkcs11(String),
}

/// What `idmint batch authorize` asks for.
#[derive(Clone, Debug)]
pub struct AuthorizeRequest {
    /// The factory the batch is for.
    pub factory: String,
    /// How many certificates the factory may issue.
    pub count: u64,
    /// The device serial numbers it may use, inclusive (default `1..count`).
    pub serial_range: Option<(u64, u64)>,
    /// The batch CA's validity (the issuance window), days.
    pub valid_days: u32,
    /// The bundle file to write (must not exist).
    pub out: PathBuf,
    /// Where the batch CA key goes.
    pub key: BatchKeyDestination,
    /// The product (default: the factory name).
    pub product: Option<String>,
    /// The certificate profile.
    pub profile: String,
    /// The maker CA that signs the batch CA and the limits (default
    /// [`OFFLINE_CA`]).
    pub ca: Option<String>,
    /// Whether the station may inject station-made keys.
    pub allow_inject: bool,
}

/// What `idmint batch authorize` made.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizeReport {
    /// The batch id.
    pub batch: String,
    /// The authorization id (SHA-256 of the signed limits, hex).
    pub authorization: String,
    /// The factory.
    pub factory: String,
    /// The authorized count.
    pub count: u64,
    /// First device serial number.
    pub serial_first: u64,
    /// Last device serial number.
    pub serial_last: u64,
    /// The batch CA's registry name.
    pub batch_ca: String,
    /// The maker CA that signed it.
    pub maker_ca: String,
    /// End of the issuance window, Unix seconds.
    pub not_after: i64,
    /// `age` or `pkcs11`.
    pub key: String,
    /// The bundle file.
    pub out: PathBuf,
}

/// Parses `A..B` (inclusive at both ends; `A..=B` is accepted too).
pub fn parse_serial_range(text: &str) -> Result<(u64, u64), FlowError> {
    let bad = || {
        FlowError::Invalid(format!(
            "serial range {text:?}: expected FIRST..LAST, e.g. 1000..1999 (inclusive)"
        ))
    };
    let (a, b) = text.split_once("..").ok_or_else(bad)?;
    let b = b.strip_prefix('=').unwrap_or(b);
    let first: u64 = a.trim().parse().map_err(|_| bad())?;
    let last: u64 = b.trim().parse().map_err(|_| bad())?;
    Ok((first, last))
}

impl crate::Station<'_> {
    /// Makes an offline batch authorization: the batch CA, the signed
    /// limits, the key for the factory, the bundle file, and the batch and
    /// batch CA in the registry (one transaction; the bundle appears at
    /// `out` only once they are committed).
    pub async fn authorize_offline_batch(
        &self,
        actor: &str,
        request: &AuthorizeRequest,
    ) -> Result<AuthorizeReport, FlowError> {
        validate_name("factory", &request.factory)?;
        let product = request
            .product
            .clone()
            .unwrap_or_else(|| request.factory.clone());
        validate_name("product", &product)?;
        if request.count == 0 {
            return Err(FlowError::Invalid("--count must be at least 1".into()));
        }
        let count = i64::try_from(request.count)
            .map_err(|_| FlowError::Invalid("--count is too large".into()))?;
        let (first, last) = request.serial_range.unwrap_or((1, request.count));
        if first > last {
            return Err(FlowError::Invalid(format!(
                "serial range {first}..{last} is empty (FIRST..LAST, inclusive, FIRST <= LAST)"
            )));
        }
        let (first_i, last_i) = match (i64::try_from(first), i64::try_from(last)) {
            (Ok(f), Ok(l)) => (f, l),
            _ => return Err(FlowError::Invalid("serial numbers are too large".into())),
        };
        let size = last - first + 1;
        if size < request.count {
            return Err(FlowError::Invalid(format!(
                "serial range {first}..{last} holds {size} serial numbers, fewer than --count {}",
                request.count
            )));
        }
        if request.valid_days == 0 || request.valid_days > MAX_VALID_DAYS {
            return Err(FlowError::Invalid(format!(
                "--valid-days must be 1 to {MAX_VALID_DAYS}"
            )));
        }
        let profile = self.config().profile(&request.profile)?;
        check_out(&request.out)?;
        let pkcs11_uri = match &request.key {
            BatchKeyDestination::Age(recipient) => {
                idmint_flows::files::parse_recipient(recipient)?;
                None
            }
            BatchKeyDestination::Pkcs11(uri) => {
                let uri = Pkcs11Uri::parse(uri)?;
                if self.pkcs11().is_none() {
                    return Err(FlowError::Pkcs11NotConfigured(format!(
                        "the batch CA key is to be generated in a PKCS#11 token ({uri}): set IDMINT_PKCS11_MODULE and IDMINT_PKCS11_PIN"
                    )));
                }
                Some(uri)
            }
        };
        let maker_name = request.ca.clone().unwrap_or_else(|| OFFLINE_CA.to_string());
        let maker = self.offline_maker_ca(actor, &maker_name).await?;
        let batch = new_batch_id(&product)?;
        let batch_ca_name = format!("{batch}-ca");
        validate_name("CA name", &batch_ca_name)?;

        // The batch CA key: software (to be encrypted to the factory) or
        // generated in the factory's token.
        let (signer, key_type) = match (&pkcs11_uri, self.pkcs11()) {
            (Some(uri), Some(config)) => (
                Pkcs11Key::generate(config, uri)?.into_signer()?,
                KeyType::P256,
            ),
            _ => {
                let kt = self.config().key_type;
                (Signer::software(DeviceKey::generate(kt)?), kt)
            }
        };
        let org = self.config().org.clone();
        // clientAuth only: the factory holds this key, and must not be
        // able to mint TLS server certificates devices trusting the root
        // would accept.
        let batch_ca = CaBuilder::issuing(&format!("{org} Batch {batch} CA"), key_type, &maker)
            .organization(&org)
            .valid_days(request.valid_days)
            .extended_key_usage(&[ExtendedKeyUsage::ClientAuth])
            .signer(signer)
            .build()?;
        let info = batch_ca.info().clone();
        let limits = BatchLimits {
            format: LIMITS_FORMAT.into(),
            version: BUNDLE_VERSION,
            batch: batch.to_string(),
            factory: request.factory.clone(),
            product: product.clone(),
            count: request.count,
            serial_first: first,
            serial_last: last,
            not_before: info.not_before.unix_timestamp(),
            not_after: info.not_after.unix_timestamp(),
            profile_name: request.profile.clone(),
            profile,
            org: org.clone(),
            key_type: self.config().key_type,
            allow_inject: request.allow_inject,
            batch_ca: info.id.to_string(),
            issuer_ca: maker.info().id.to_string(),
            revocation: self
                .revocation_pointers(&batch_ca_name)
                .map(|p| RevocationUrls {
                    crl_url: p.crl_url,
                    ocsp_url: p.ocsp_url,
                }),
        };
        let limits_text = serde_json::to_string(&limits)
            .map_err(|e| FlowError::Internal(format!("encoding the limits: {e}")))?;
        let id = sha256_hex(limits_text.as_bytes());
        let signature = b64().encode(sign(
            maker.signer(),
            LIMITS_CONTEXT,
            limits_text.as_bytes(),
        )?);
        let key = match (&request.key, &pkcs11_uri) {
            (BatchKeyDestination::Age(recipient), _) => {
                let der = batch_ca.signer().software_pkcs8_der().ok_or_else(|| {
                    FlowError::Invalid("the batch CA key cannot be exported".into())
                })?;
                BundleKey::Age {
                    recipient: recipient.clone(),
                    ciphertext: encrypt_key(recipient, &der)?,
                }
            }
            (BatchKeyDestination::Pkcs11(uri), parsed) => BundleKey::Pkcs11 {
                uri: parsed
                    .as_ref()
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| uri.clone()),
            },
        };
        let authorization = Authorization {
            id: id.clone(),
            limits,
            limits_text: limits_text.clone(),
            signature: signature.clone(),
            batch_ca_der: batch_ca.certificate_der().to_vec(),
            chain_der: self.chain(&maker_name).await?,
            key,
        };
        let json = authorization.to_json()?;
        // What the factory will check, checked here first.
        Authorization::parse(json.as_bytes(), &request.out)?;
        // The last signatures the batch CA key makes here: what lets the
        // maker publish revocations once it has gone.
        let revocation_signers = self.make_revocation_signers(&batch_ca, &batch_ca_name)?;
        drop(batch_ca);

        let tmp = tmp_path(&request.out);
        idmint_flows::files::overwrite_secret(&tmp, json.as_bytes())?;
        let registered = async {
            let mut tx = self.store().begin(actor).await?;
            tx.insert_ca(&NewCa {
                name: batch_ca_name.clone(),
                kind: CaKind::Batch,
                parent: Some(maker_name.clone()),
                certificate_der: authorization.batch_ca_der.clone(),
                id: info.id.clone(),
                subject: info.subject.clone(),
                key_type: info.key_type.map(|k| k.to_string()),
                not_before: info.not_before.unix_timestamp(),
                not_after: info.not_after.unix_timestamp(),
                // The maker never keeps the batch CA key.
                key_ref: None,
                signer_der: None,
            })
            .await?;
            revocation_signers.register(&mut tx).await?;
            tx.insert_batch(&NewBatch {
                id: batch.clone(),
                kind: BatchKind::Authorization,
                product: product.clone(),
                count,
                profile: request.profile.clone(),
                ca: batch_ca_name.clone(),
                factory: Some(request.factory.clone()),
                allow_inject: request.allow_inject,
                params: serde_json::json!({
                    "authorization": id,
                    "makerCa": maker_name,
                    "serialFirst": first,
                    "serialLast": last,
                    "notAfter": info.not_after.unix_timestamp(),
                    "key": authorization.key.kind(),
                }),
            })
            .await?;
            tx.insert_offline_authorization(&NewOfflineAuthorization {
                batch: batch.to_string(),
                authorization_id: id.clone(),
                batch_ca: batch_ca_name.clone(),
                serial_first: first_i,
                serial_last: last_i,
                not_before: info.not_before.unix_timestamp(),
                not_after: info.not_after.unix_timestamp(),
                limits: limits_text,
                signature,
                key_kind: authorization.key.kind().to_string(),
            })
            .await?;
            tx.commit().await?;
            Ok::<_, FlowError>(())
        }
        .await;
        if let Err(e) = registered {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &request.out).map_err(|e| FlowError::io(&request.out, e))?;
        Ok(AuthorizeReport {
            batch: batch.into_string(),
            authorization: id,
            factory: request.factory.clone(),
            count: request.count,
            serial_first: first,
            serial_last: last,
            batch_ca: batch_ca_name,
            maker_ca: maker_name,
            not_after: info.not_after.unix_timestamp(),
            key: authorization.key.kind().to_string(),
            out: request.out.clone(),
        })
    }

    /// The maker CA that signs batch CAs: `name` if it can sign CAs, or
    /// the default [`OFFLINE_CA`], created under the root on first use.
    async fn offline_maker_ca(
        &self,
        actor: &str,
        name: &str,
    ) -> Result<Arc<CertificateAuthority>, FlowError> {
        if let Some(record) = self.store().ca(name).await? {
            if !matches!(record.kind, CaKind::Root | CaKind::Issuing) {
                return Err(FlowError::Invalid(format!(
                    "CA {name} is a {} CA: batch CAs are signed by the root or an issuing CA",
                    record.kind.as_str()
                )));
            }
            if path_len(&record.certificate_der) == Some(0) {
                return Err(FlowError::Invalid(format!(
                    "CA {name} has path length 0: it cannot sign a batch CA (use --ca {OFFLINE_CA}, the default, or a CA of path length 1 or more)"
                )));
            }
            return self.signing_ca(name).await;
        }
        if name != OFFLINE_CA {
            return Err(idmint_registry::RegistryError::NotFound {
                kind: "CA",
                name: name.to_string(),
            }
            .into());
        }
        let root = self.signing_ca(ROOT_CA).await?;
        let org = self.config().org.clone();
        let ca = CaBuilder::issuing(
            &format!("{org} Offline Batches CA"),
            self.config().key_type,
            &root,
        )
        .organization(&org)
        .path_len(1)
        .build()?;
        let passphrase = self.passphrase()?;
        let mut tx = self.store().begin(actor).await?;
        tx.insert_ca(&new_ca(
            OFFLINE_CA,
            CaKind::Issuing,
            Some(ROOT_CA),
            &ca,
            &passphrase,
        )?)
        .await?;
        tx.commit().await?;
        self.signing_ca(OFFLINE_CA).await
    }
}

fn check_out(out: &Path) -> Result<(), FlowError> {
    if out.exists() {
        return Err(FlowError::Conflict(format!(
            "{} exists: write the authorization to a new file",
            out.display()
        )));
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(FlowError::Invalid(format!(
                "{}: no such directory",
                dir.display()
            )));
        }
    }
    Ok(())
}

fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    out.with_file_name(name)
}
