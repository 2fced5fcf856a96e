//! The opened data directory: configuration, store and CA keys, shared by
//! every flow and every edge.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use idmint_pki::{
    decrypt_private_key, CertificateAuthority, DeviceKey, Pkcs11Config, Pkcs11Key, Pkcs11Uri,
    RevocationPointers, Signer,
};
use idmint_registry::{Ca, CaKind, Store};
use zeroize::Zeroizing;

use crate::registrar::Registrar;
use crate::{Config, FlowError};

/// The environment variable holding the CA key passphrase.
pub const PASSPHRASE_ENV: &str = "IDMINT_CA_PASSPHRASE";
/// The file (mode 0600, in the data directory) holding a generated passphrase.
pub const PASSPHRASE_FILE: &str = "ca-passphrase";
/// The default SQLite registry file in the data directory.
pub const REGISTRY_FILE: &str = "registry.db";

/// An opened data directory.
pub struct Idmint {
    data_dir: PathBuf,
    config: Config,
    store: Store,
    passphrase: Option<Zeroizing<String>>,
    cas: Mutex<HashMap<String, Arc<CertificateAuthority>>>,
    /// The chains above CAs, by CA name. A CA record's certificate and
    /// parent never change once written (CAs are added, never rewritten or
    /// deleted), so a chain read once holds for the process; each client
    /// certificate check would otherwise read every CA of its chain.
    chains: Mutex<HashMap<String, Arc<Vec<Vec<u8>>>>>,
    pkcs11: Option<Pkcs11Config>,
    /// The OCSP responder's CA names, delegated responders and responses.
    ocsp: crate::ocsp::OcspState,
    /// Group commit for single issuances, started on first use.
    registrar: std::sync::OnceLock<Registrar>,
}

impl Idmint {
    /// Opens `data_dir`: reads `idmint.toml`, opens the store (`store`
    /// overrides the configured one), and remembers the CA passphrase
    /// (`passphrase`, else the passphrase file) for when a CA must sign.
    pub async fn open(
        data_dir: &Path,
        store: Option<&str>,
        passphrase: Option<Zeroizing<String>>,
    ) -> Result<Idmint, FlowError> {
        let config = Config::load(data_dir)?;
        let url = store_url(data_dir, store.or(config.store.as_deref()));
        let store = Store::open(&url).await?;
        let idmint = Idmint {
            data_dir: data_dir.to_path_buf(),
            config,
            store,
            passphrase,
            cas: Mutex::new(HashMap::new()),
            chains: Mutex::new(HashMap::new()),
            ocsp: Default::default(),
            pkcs11: None,
            registrar: std::sync::OnceLock::new(),
        };
        // Registries from before grants: their role attributes become
        // grants once, with a warning; from then on attributes confer nothing.
        idmint.convert_role_attributes().await?;
        Ok(idmint)
    }

    /// The PKCS#11 module and PIN for CA keys held in a token (`pkcs11:`
    /// key references).
    pub fn with_pkcs11(mut self, config: Option<Pkcs11Config>) -> Self {
        self.pkcs11 = config;
        self
    }

    /// The group-commit writer for single issuances (started on the
    /// current runtime on first use).
    pub fn registrar(&self) -> &Registrar {
        self.registrar
            .get_or_init(|| Registrar::start(self.store.clone()))
    }

    /// The OCSP responder's state in this process.
    pub(crate) fn ocsp_state(&self) -> &crate::ocsp::OcspState {
        &self.ocsp
    }

    /// The PKCS#11 configuration, if any.
    pub fn pkcs11(&self) -> Option<&Pkcs11Config> {
        self.pkcs11.as_ref()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The registry store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The CA passphrase: the one given at open, else the passphrase file.
    pub fn passphrase(&self) -> Result<Zeroizing<String>, FlowError> {
        if let Some(p) = &self.passphrase {
            return Ok(p.clone());
        }
        let path = self.data_dir.join(PASSPHRASE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Zeroizing::new(text.trim_end().to_string())),
            Err(_) => Err(FlowError::NoPassphrase(path)),
        }
    }

    /// The CA to use when a request names none.
    pub fn default_ca(&self) -> &str {
        &self.config.default_ca
    }

    /// A CA that can sign, with its key decrypted (cached for the process).
    pub async fn signing_ca(&self, name: &str) -> Result<Arc<CertificateAuthority>, FlowError> {
        if let Some(ca) = self.cached(name) {
            return Ok(ca);
        }
        let record = self.store.require_ca(name).await?;
        let ca = Arc::new(self.unlock(&record)?);
        if let Ok(mut cache) = self.cas.lock() {
            cache.insert(name.to_string(), ca.clone());
        }
        Ok(ca)
    }

    /// Drops a CA's unlocked key from this process's cache.
    pub(crate) fn forget_signing_ca(&self, name: &str) {
        if let Ok(mut cache) = self.cas.lock() {
            cache.remove(name);
        }
    }

    fn cached(&self, name: &str) -> Option<Arc<CertificateAuthority>> {
        self.cas.lock().ok().and_then(|c| c.get(name).cloned())
    }

    fn unlock(&self, record: &Ca) -> Result<CertificateAuthority, FlowError> {
        let key_ref = match (&record.kind, &record.key_ref) {
            (CaKind::External | CaKind::TpmEk, _) | (_, None) => {
                return Err(FlowError::CaCannotSign(record.name.clone()))
            }
            (_, Some(k)) => k,
        };
        if key_ref.starts_with("pkcs11:") {
            let config = self.pkcs11.as_ref().ok_or_else(|| {
                FlowError::Pkcs11NotConfigured(format!(
                    "CA {:?} keeps its key in a PKCS#11 token ({key_ref}): set IDMINT_PKCS11_MODULE and IDMINT_PKCS11_PIN",
                    record.name
                ))
            })?;
            let key = Pkcs11Key::open(config, &Pkcs11Uri::parse(key_ref)?)?;
            let ca = CertificateAuthority::from_parts(
                record.certificate_der.clone(),
                key.into_signer()?,
            )?;
            return self.with_revocation_pointers(ca, &record.name);
        }
        let passphrase = self.passphrase()?;
        let der = decrypt_private_key(key_ref, passphrase.as_bytes())?;
        let key = DeviceKey::from_pkcs8_der(&der)?;
        let ca = CertificateAuthority::from_parts(
            record.certificate_der.clone(),
            Signer::software(key),
        )?;
        self.with_revocation_pointers(ca, &record.name)
    }

    /// Where certificates of CA `name` send relying parties: its CRL and
    /// the OCSP responder at `[server] public_url`, if set.
    pub fn revocation_pointers(&self, name: &str) -> Option<RevocationPointers> {
        let base = self.config.server.public_url.as_deref()?;
        Some(RevocationPointers {
            crl_url: format!("{base}/crl/{name}.crl"),
            ocsp_url: format!("{base}/ocsp"),
        })
    }

    /// With `[server] public_url` set, the CA's certificates point at its
    /// CRL and at the OCSP responder there.
    fn with_revocation_pointers(
        &self,
        ca: CertificateAuthority,
        name: &str,
    ) -> Result<CertificateAuthority, FlowError> {
        match self.revocation_pointers(name) {
            Some(pointers) => Ok(ca.with_revocation_pointers(pointers)?),
            None => Ok(ca),
        }
    }

    /// Checks that `leaf` chains to the CA it is registered under: that CA's
    /// chain up to its root, plus any intermediates the holder `presented`.
    pub async fn verify_against_ca(
        &self,
        ca: &str,
        leaf: &[u8],
        presented: &[&[u8]],
    ) -> Result<(), FlowError> {
        let chain = self.shared_chain(ca).await?;
        let (root, above) = chain
            .split_last()
            .ok_or_else(|| FlowError::Invalid(format!("CA {ca:?} has no certificate")))?;
        let mut intermediates: Vec<&[u8]> = above.iter().map(Vec::as_slice).collect();
        intermediates.extend_from_slice(presented);
        idmint_pki::verify_chain(leaf, &intermediates, &[root.as_slice()])?;
        if let Some(revoked) = self.store.revoked_ca_in_chain(ca).await? {
            return Err(FlowError::Pki(idmint_pki::PkiError::ChainInvalid(format!(
                "it chains through CA {revoked:?}, which is revoked"
            ))));
        }
        Ok(())
    }

    /// The chain above a CA's certificates: the CA itself, then its parents
    /// up to the root (DER, issuer first).
    pub async fn chain(&self, ca: &str) -> Result<Vec<Vec<u8>>, FlowError> {
        Ok(self.shared_chain(ca).await?.to_vec())
    }

    async fn shared_chain(&self, ca: &str) -> Result<Arc<Vec<Vec<u8>>>, FlowError> {
        if let Some(chain) = self.chains.lock().ok().and_then(|c| c.get(ca).cloned()) {
            return Ok(chain);
        }
        let chain = Arc::new(self.read_chain(ca).await?);
        if let Ok(mut cache) = self.chains.lock() {
            cache.insert(ca.to_string(), chain.clone());
        }
        Ok(chain)
    }

    async fn read_chain(&self, ca: &str) -> Result<Vec<Vec<u8>>, FlowError> {
        let mut chain = Vec::new();
        let mut next = Some(ca.to_string());
        while let Some(name) = next {
            let record = self.store.require_ca(&name).await?;
            chain.push(record.certificate_der);
            next = record.parent.filter(|p| *p != name);
            if chain.len() > 8 {
                return Err(FlowError::Invalid(format!("CA chain of {ca:?} loops")));
            }
        }
        Ok(chain)
    }
}

/// The store URL for a data directory: `store` if given, else the SQLite
/// file inside it.
pub fn store_url(data_dir: &Path, store: Option<&str>) -> String {
    match store {
        Some(url) => url.to_string(),
        None => format!("sqlite://{}", data_dir.join(REGISTRY_FILE).display()),
    }
}
