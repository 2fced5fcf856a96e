//! `idmint init`: a new data directory with its configuration, registry,
//! root CA and first issuing CA.

use std::path::{Path, PathBuf};

use idmint_pki::{encrypt_private_key, CaBuilder, CertificateAuthority, KeyProtection, KeyType};
use idmint_registry::{CaKind, NewCa, Store};
use zeroize::Zeroizing;

use crate::config::CONFIG_FILE;
use crate::context::store_url;
use crate::files::write_secret;
use crate::{Config, FlowError, Idmint, PASSPHRASE_FILE};

/// The root CA's name.
pub const ROOT_CA: &str = "root";
/// The first issuing CA's name.
pub const ISSUING_CA: &str = "issuing";

/// What `init` needs.
pub struct InitOptions {
    /// The organisation (subjects' O).
    pub org: String,
    /// The CA key type.
    pub key_type: KeyType,
    /// A store URL other than the embedded SQLite file.
    pub store: Option<String>,
    /// The passphrase for CA keys; generated and saved when `None`.
    pub passphrase: Option<Zeroizing<String>>,
}

/// What `init` did.
#[derive(Debug)]
pub struct InitReport {
    /// Where a generated passphrase was saved, if one was generated.
    pub generated_passphrase: Option<PathBuf>,
    /// Whether the CAs were created (false when joining a store that has them).
    pub created_cas: bool,
    /// The store URL.
    pub store_url: String,
}

/// Initialises `data_dir`.
pub async fn init(
    data_dir: &Path,
    options: InitOptions,
) -> Result<(Idmint, InitReport), FlowError> {
    if data_dir.join(CONFIG_FILE).exists() {
        return Err(FlowError::AlreadyInitialised(data_dir.to_path_buf()));
    }
    create_private_dir(data_dir)?;
    let (passphrase, generated_passphrase) = match options.passphrase {
        Some(p) => (p, None),
        None => {
            let mut bytes = Zeroizing::new([0u8; 24]);
            idmint_pki::random_fill(bytes.as_mut())?;
            let p = Zeroizing::new(hex::encode(bytes.as_ref()));
            let path = data_dir.join(PASSPHRASE_FILE);
            write_secret(&path, format!("{}\n", p.as_str()).as_bytes())?;
            (p, Some(path))
        }
    };
    let config = Config::new(&options.org, options.key_type, options.store.clone());
    let url = store_url(data_dir, options.store.as_deref());
    let store = Store::open(&url).await?;
    let created_cas = store.ca(ROOT_CA).await?.is_none();
    if created_cas {
        create_hierarchy(&store, &options.org, options.key_type, &passphrase).await?;
    }
    let config_path = data_dir.join(CONFIG_FILE);
    std::fs::write(&config_path, config.to_toml()?).map_err(|e| FlowError::io(&config_path, e))?;
    store.close().await;
    let idmint = Idmint::open(data_dir, options.store.as_deref(), Some(passphrase)).await?;
    Ok((
        idmint,
        InitReport {
            generated_passphrase,
            created_cas,
            store_url: url,
        },
    ))
}

async fn create_hierarchy(
    store: &Store,
    org: &str,
    key_type: KeyType,
    passphrase: &str,
) -> Result<(), FlowError> {
    let root = CaBuilder::root(&format!("{org} Root CA"), key_type)
        .organization(org)
        .build()?;
    let issuing = CaBuilder::issuing(&format!("{org} Device CA"), key_type, &root)
        .organization(org)
        .build()?;
    let mut tx = store.begin("cli:init").await?;
    tx.insert_ca(&new_ca(ROOT_CA, CaKind::Root, None, &root, passphrase)?)
        .await?;
    tx.insert_ca(&new_ca(
        ISSUING_CA,
        CaKind::Issuing,
        Some(ROOT_CA),
        &issuing,
        passphrase,
    )?)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The registry record for a CA we hold the key of; the key is stored
/// encrypted under `passphrase`.
pub fn new_ca(
    name: &str,
    kind: CaKind,
    parent: Option<&str>,
    ca: &CertificateAuthority,
    passphrase: &str,
) -> Result<NewCa, FlowError> {
    let key_ref = match ca.signer().software_pkcs8_der() {
        Some(der) => Some(
            encrypt_private_key(&der, passphrase.as_bytes(), KeyProtection::default())?.to_string(),
        ),
        None => None,
    };
    let info = ca.info();
    Ok(NewCa {
        name: name.to_string(),
        kind,
        parent: parent.map(str::to_string),
        certificate_der: ca.certificate_der().to_vec(),
        id: info.id.clone(),
        subject: info.subject.clone(),
        key_type: info.key_type.map(|k| k.to_string()),
        not_before: info.not_before.unix_timestamp(),
        not_after: info.not_after.unix_timestamp(),
        key_ref,
        signer_der: None,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), FlowError> {
    std::fs::create_dir_all(dir).map_err(|e| FlowError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| FlowError::io(dir, e))?;
    }
    Ok(())
}
