//! CA keys held in a PKCS#11 token (an HSM, a smart card, SoftHSM2): a
//! [`Signer`](crate::Signer) whose private key never leaves the token.
//!
//! A key is named by an RFC 7512 `pkcs11:` URI (`token` and `object` path
//! attributes, percent-encoded); the module path and the user PIN come from
//! [`Pkcs11Config`] (the CLI reads them from `IDMINT_PKCS11_MODULE` and
//! `IDMINT_PKCS11_PIN`). The module is loaded at run time, so a build needs
//! no PKCS#11 library. ECDSA P-256 only: the SHA-256 digest is computed here,
//! the token signs it with `CKM_ECDSA`, and its raw `r||s` is converted to
//! the DER `Ecdsa-Sig-Value` X.509 uses.

use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use der::{Decode, Encode};
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey, PKCS_ECDSA_P256_SHA256};
use zeroize::Zeroizing;

use crate::{PkiError, Signer};

/// The named curve P-256 (`prime256v1`), for `CKA_EC_PARAMS`.
const P256_OID: &str = "1.2.840.10045.3.1.7";

/// Where the PKCS#11 module is and how to log in.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: std::path::PathBuf,
    /// The user PIN.
    pub pin: Zeroizing<String>,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

/// A parsed `pkcs11:` URI (RFC 7512): the token label and object label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token=`: the token label.
    pub token: String,
    /// `object=`: the key's label.
    pub object: String,
}

impl Pkcs11Uri {
    /// Parses `pkcs11:token=T;object=O[;...][?...]`. Other path attributes
    /// and the query are ignored; `token` and `object` are required.
    pub fn parse(uri: &str) -> Result<Self, PkiError> {
        let bad = |why: &str| PkiError::Pkcs11(format!("bad PKCS#11 URI {uri:?}: {why}"));
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("must start with pkcs11:"))?;
        let path = rest.split('?').next().unwrap_or("");
        let (mut token, mut object) = (None, None);
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (k, v) = attr
                .split_once('=')
                .ok_or_else(|| bad("attribute without ="))?;
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| bad("attribute is not UTF-8"))?
                .into_owned();
            match k {
                "token" => token = Some(v),
                "object" => object = Some(v),
                _ => {}
            }
        }
        match (token, object) {
            (Some(token), Some(object)) if !token.is_empty() && !object.is_empty() => {
                Ok(Pkcs11Uri { token, object })
            }
            _ => Err(bad("token= and object= are required")),
        }
    }
}

impl std::fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        write!(
            f,
            "pkcs11:token={};object={}",
            utf8_percent_encode(&self.token, NON_ALPHANUMERIC),
            utf8_percent_encode(&self.object, NON_ALPHANUMERIC)
        )
    }
}

/// A P-256 key in a token, logged in, ready to sign.
pub struct Pkcs11Key {
    // Field order: the session closes before the module is finalized.
    session: Mutex<Session>,
    _module: Pkcs11,
    key: ObjectHandle,
    /// Uncompressed EC point (what rcgen calls the key's DER bytes).
    point: Vec<u8>,
}

fn p11(what: &str, e: impl std::fmt::Display) -> PkiError {
    PkiError::Pkcs11(format!("PKCS#11 {what}: {e}"))
}

fn open(config: &Pkcs11Config, token: &str) -> Result<(Pkcs11, Session), PkiError> {
    let module = Pkcs11::new(&config.module)
        .map_err(|e| p11(&format!("module {}", config.module.display()), e))?;
    module
        .initialize(CInitializeArgs::OsThreads)
        .map_err(|e| p11("initialize", e))?;
    let slots = module.get_slots_with_token().map_err(|e| p11("slots", e))?;
    let slot = slots
        .into_iter()
        .find(|s| {
            module
                .get_token_info(*s)
                .map(|i| i.label().trim_end() == token)
                .unwrap_or(false)
        })
        .ok_or_else(|| p11("token", format!("no token labelled {token:?}")))?;
    let session = module
        .open_rw_session(slot)
        .map_err(|e| p11("open session", e))?;
    let pin = AuthPin::new(config.pin.as_str().into());
    session
        .login(UserType::User, Some(&pin))
        .map_err(|e| p11("login", e))?;
    Ok((module, session))
}

fn find(
    session: &Session,
    class: ObjectClass,
    label: &str,
) -> Result<Option<ObjectHandle>, PkiError> {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| p11("find objects", e))?;
    Ok(found.into_iter().next())
}

fn ec_point(session: &Session, public: ObjectHandle) -> Result<Vec<u8>, PkiError> {
    let attrs = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .map_err(|e| p11("read public key", e))?;
    let raw = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| p11("read public key", "no CKA_EC_POINT"))?;
    // CKA_EC_POINT is a DER OCTET STRING holding the point; some modules
    // return the bare point.
    let point = match der::asn1::OctetString::from_der(&raw) {
        Ok(os) => os.as_bytes().to_vec(),
        Err(_) => raw,
    };
    p256::PublicKey::from_sec1_bytes(&point).map_err(|e| p11("public key is not P-256", e))?;
    Ok(point)
}

impl Pkcs11Key {
    /// Opens the key named by `uri` (a P-256 private key and its public
    /// key, both with the object label).
    pub fn open(config: &Pkcs11Config, uri: &Pkcs11Uri) -> Result<Self, PkiError> {
        let (module, session) = open(config, &uri.token)?;
        let key = find(&session, ObjectClass::PRIVATE_KEY, &uri.object)?
            .ok_or_else(|| p11("key", format!("no private key labelled {:?}", uri.object)))?;
        let public = find(&session, ObjectClass::PUBLIC_KEY, &uri.object)?
            .ok_or_else(|| p11("key", format!("no public key labelled {:?}", uri.object)))?;
        let point = ec_point(&session, public)?;
        Ok(Pkcs11Key {
            session: Mutex::new(session),
            _module: module,
            key,
            point,
        })
    }

    /// Generates a P-256 key pair inside the token, labelled `uri.object`:
    /// the private key is sensitive and not extractable. Fails if a key
    /// with that label exists.
    pub fn generate(config: &Pkcs11Config, uri: &Pkcs11Uri) -> Result<Self, PkiError> {
        {
            let (_module, session) = open(config, &uri.token)?;
            if find(&session, ObjectClass::PRIVATE_KEY, &uri.object)?.is_some() {
                return Err(p11(
                    "generate",
                    format!("the token already holds a key labelled {:?}", uri.object),
                ));
            }
            let oid = der::asn1::ObjectIdentifier::new(P256_OID)
                .map_err(|e| p11("curve", e))?
                .to_der()
                .map_err(|e| p11("curve", e))?;
            let label = uri.object.as_bytes().to_vec();
            let public = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::KeyType(CkKeyType::EC),
                Attribute::EcParams(oid),
                Attribute::Verify(true),
                Attribute::Label(label.clone()),
                Attribute::Id(label.clone()),
            ];
            let private = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::KeyType(CkKeyType::EC),
                Attribute::Sign(true),
                Attribute::Label(label.clone()),
                Attribute::Id(label),
            ];
            session
                .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
                .map_err(|e| p11("generate key pair", e))?;
        }
        Self::open(config, uri)
    }

    /// A [`Signer`] over this key.
    pub fn into_signer(self) -> Result<Signer, PkiError> {
        Signer::external(Box::new(self))
    }

    /// Whether the token reports the private key as sensitive and not
    /// extractable.
    pub fn is_non_extractable(&self) -> Result<bool, PkiError> {
        let session = self
            .session
            .lock()
            .map_err(|_| p11("session", "poisoned"))?;
        let attrs = session
            .get_attributes(
                self.key,
                &[AttributeType::Sensitive, AttributeType::Extractable],
            )
            .map_err(|e| p11("read key attributes", e))?;
        let mut sensitive = false;
        let mut extractable = true;
        for a in attrs {
            match a {
                Attribute::Sensitive(s) => sensitive = s,
                Attribute::Extractable(x) => extractable = x,
                _ => {}
            }
        }
        Ok(sensitive && !extractable)
    }
}

impl PublicKeyData for Pkcs11Key {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for Pkcs11Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, msg);
        let session = self
            .session
            .lock()
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        let raw = session
            .sign(&Mechanism::Ecdsa, self.key, digest.as_ref())
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        let signature =
            p256::ecdsa::Signature::from_slice(&raw).map_err(|_| rcgen::Error::RemoteKeyError)?;
        Ok(signature.to_der().as_bytes().to_vec())
    }
}
