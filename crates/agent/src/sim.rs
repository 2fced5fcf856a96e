//! The device simulator (std): [`DeviceSimulator`], a [`Device`] that keeps
//! its credentials in a state directory like a real device keeps them in
//! flash, with knobs to misbehave for tests; and [`run_devsim`], which serves
//! it over TCP or a pseudo-terminal (`idmint devsim`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::thread;
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, SignatureAlgorithm, SigningKey,
    PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::agent::{encode_response, frame_error_response, Agent};
use crate::device::{Device, Proof};
use crate::error::{DeviceError, DevsimError};
use crate::frame::decode_message;
use crate::link::DeviceAddress;
use crate::message::{
    Capability, CertificateChain, HelloInfo, KeyType, Request, RequestKind, SecretBytes,
    PROTOCOL_VERSION,
};

/// File in the state directory holding the private key (PKCS#8 PEM, mode 0600).
pub const KEY_FILE: &str = "key.pem";
/// File in the state directory holding the certificate chain (PEM, leaf first).
pub const CERT_FILE: &str = "cert.pem";
/// File in the state directory holding the hardware id.
pub const HW_ID_FILE: &str = "hw-id";
/// Marker file whose presence means credential storage is locked.
pub const LOCK_FILE: &str = "locked";

/// Bytes sent instead of a response by [`Misbehaviour::garbage_at`]: not
/// valid COBS, so the station sees a frame error.
pub const GARBAGE: &[u8] = b"\x09garbage\x00";

/// Ways the simulator can misbehave, for testing stations. The default
/// behaves well.
///
/// Parsed from a comma-separated list by [`FromStr`], e.g.
/// `drop-after=2,garbage-at=keygen,delay-ms=500,bad-csr-signature,wrong-key-type,bad-proof`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Misbehaviour {
    /// Close the connection instead of answering request number N+1 of each
    /// connection (on a pty: stop answering that request).
    pub drop_after: Option<u32>,
    /// Close the connection when a request of this kind arrives.
    pub drop_at: Option<RequestKind>,
    /// Send [`GARBAGE`] instead of the response to requests of this kind.
    pub garbage_at: Option<RequestKind>,
    /// Wait this long before every response.
    pub delay_ms: u64,
    /// Return CSRs whose signature is broken.
    pub bad_csr_signature: bool,
    /// Generate the other key type than the one asked for.
    pub wrong_key_type: bool,
    /// Sign the wrong data in `prove`.
    pub bad_proof: bool,
}

impl FromStr for Misbehaviour {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut m = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (item, None),
            };
            let need = || value.ok_or_else(|| format!("misbehaviour {key} needs a value"));
            let kind = |v: &str| {
                v.parse::<RequestKind>()
                    .map_err(|_| format!("unknown request kind {v:?}"))
            };
            match key {
                "drop-after" => {
                    m.drop_after = Some(need()?.parse().map_err(|_| "bad drop-after count")?)
                }
                "drop-at" => m.drop_at = Some(kind(need()?)?),
                "garbage-at" => m.garbage_at = Some(kind(need()?)?),
                "delay-ms" => m.delay_ms = need()?.parse().map_err(|_| "bad delay-ms")?,
                "bad-csr-signature" => m.bad_csr_signature = true,
                "wrong-key-type" => m.wrong_key_type = true,
                "bad-proof" => m.bad_proof = true,
                other => return Err(format!("unknown misbehaviour {other:?}")),
            }
        }
        Ok(m)
    }
}

/// A simulated device whose credentials live in a state directory:
/// [`KEY_FILE`], [`CERT_FILE`], [`HW_ID_FILE`] and [`LOCK_FILE`].
pub struct DeviceSimulator {
    state: PathBuf,
    hw_id: String,
    no_keygen: bool,
    misbehave: Misbehaviour,
    key: Option<KeyPair>,
    chain: Option<Vec<Vec<u8>>>,
    locked: bool,
}

impl std::fmt::Debug for DeviceSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSimulator")
            .field("state", &self.state)
            .field("hw_id", &self.hw_id)
            .field("no_keygen", &self.no_keygen)
            .field("has_key", &self.key.is_some())
            .field("has_certificate", &self.chain.is_some())
            .field("locked", &self.locked)
            .finish_non_exhaustive()
    }
}

impl DeviceSimulator {
    /// Open (creating if needed) the state directory `state`. Without
    /// `hw_id`, the id stored there is used, or a random `sim-` id is made
    /// and stored. `no_keygen` makes a device that only accepts `inject`.
    pub fn open(
        state: impl Into<PathBuf>,
        hw_id: Option<String>,
        no_keygen: bool,
    ) -> Result<Self, DevsimError> {
        let state = state.into();
        fs::create_dir_all(&state).map_err(|e| state_err(&state, e))?;
        let hw_id_path = state.join(HW_ID_FILE);
        let hw_id = match hw_id {
            Some(id) => {
                write_atomic(&hw_id_path, id.as_bytes(), 0o644)?;
                id
            }
            None => match fs::read_to_string(&hw_id_path) {
                Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
                Ok(_) => new_hw_id(&hw_id_path)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => new_hw_id(&hw_id_path)?,
                Err(e) => return Err(state_err(&hw_id_path, e)),
            },
        };
        let key = read_optional(&state.join(KEY_FILE))?
            .map(|pem| {
                let pem = Zeroizing::new(pem);
                let text = std::str::from_utf8(&pem).map_err(|e| corrupt(&state, KEY_FILE, e))?;
                KeyPair::from_pem(text).map_err(|e| corrupt(&state, KEY_FILE, e))
            })
            .transpose()?;
        let chain = read_optional(&state.join(CERT_FILE))?
            .map(|pem| {
                pem::parse_many(&pem)
                    .map(|blocks| blocks.into_iter().map(|b| b.into_contents()).collect())
                    .map_err(|e| corrupt(&state, CERT_FILE, e))
            })
            .transpose()?;
        let locked = state.join(LOCK_FILE).exists();
        Ok(Self {
            state,
            hw_id,
            no_keygen,
            misbehave: Misbehaviour::default(),
            key,
            chain,
            locked,
        })
    }

    /// Set the misbehaviour knobs (builder style).
    pub fn with_misbehaviour(mut self, misbehave: Misbehaviour) -> Self {
        self.misbehave = misbehave;
        self
    }

    /// The hardware id.
    pub fn hw_id(&self) -> &str {
        &self.hw_id
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The stored certificate chain (DER, leaf first), if any.
    pub fn chain(&self) -> Option<&[Vec<u8>]> {
        self.chain.as_deref()
    }

    /// Whether credential storage is locked.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    fn key_type(&self) -> Option<KeyType> {
        self.key.as_ref().and_then(|k| key_type_of(k.algorithm()))
    }

    fn store_key(&self, key: &KeyPair) -> Result<(), DeviceError> {
        let der = pkcs8_v1(key);
        let pem = Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec())));
        write_atomic(&self.state.join(KEY_FILE), pem.as_bytes(), 0o600).map_err(internal)
    }

    fn store_chain(&self, chain: &[Vec<u8>]) -> Result<(), DeviceError> {
        let blocks: Vec<pem::Pem> = chain
            .iter()
            .map(|der| pem::Pem::new("CERTIFICATE", der.clone()))
            .collect();
        let text = pem::encode_many(&blocks);
        write_atomic(&self.state.join(CERT_FILE), text.as_bytes(), 0o644).map_err(internal)
    }

    fn check_writable(&self) -> Result<(), DeviceError> {
        if self.locked {
            Err(DeviceError::locked())
        } else {
            Ok(())
        }
    }
}

impl Device for DeviceSimulator {
    fn hello(&mut self) -> Result<HelloInfo, DeviceError> {
        let mut capabilities = if self.no_keygen {
            vec![Capability::KeyInject]
        } else {
            vec![Capability::KeygenP256, Capability::KeygenEd25519]
        };
        capabilities.push(Capability::Lock);
        Ok(HelloInfo {
            protocol: PROTOCOL_VERSION,
            hw_id: self.hw_id.clone(),
            firmware: concat!("idmint-devsim/", env!("CARGO_PKG_VERSION")).to_owned(),
            capabilities,
            locked: self.locked,
        })
    }

    fn keygen(&mut self, key_type: KeyType) -> Result<Vec<u8>, DeviceError> {
        if self.no_keygen {
            return Err(DeviceError::unsupported("this device cannot generate keys"));
        }
        self.check_writable()?;
        let key_type = match (self.misbehave.wrong_key_type, key_type) {
            (false, k) => k,
            (true, KeyType::P256) => KeyType::Ed25519,
            (true, KeyType::Ed25519) => KeyType::P256,
        };
        let alg: &'static SignatureAlgorithm = match key_type {
            KeyType::P256 => &PKCS_ECDSA_P256_SHA256,
            KeyType::Ed25519 => &PKCS_ED25519,
        };
        let key = KeyPair::generate_for(alg).map_err(internal)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.hw_id.as_str());
        params.distinguished_name = dn;
        let csr = params.serialize_request(&key).map_err(internal)?;
        let mut der = csr.der().to_vec();
        if self.misbehave.bad_csr_signature {
            if let Some(last) = der.last_mut() {
                *last ^= 0x01;
            }
        }
        // The new key replaces the old one; a certificate for the old key
        // is no longer valid.
        self.store_key(&key)?;
        remove_if_exists(&self.state.join(CERT_FILE)).map_err(internal)?;
        self.key = Some(key);
        self.chain = None;
        Ok(der)
    }

    fn install(&mut self, chain: &CertificateChain) -> Result<(), DeviceError> {
        self.check_writable()?;
        let key = self.key.as_ref().ok_or_else(DeviceError::no_key)?;
        check_chain(chain, key.public_key_raw())?;
        self.store_chain(&chain.0)?;
        self.chain = Some(chain.0.clone());
        Ok(())
    }

    fn inject(&mut self, key: &SecretBytes, chain: &CertificateChain) -> Result<(), DeviceError> {
        if !self.no_keygen {
            return Err(DeviceError::unsupported(
                "this device generates its own keys; use keygen",
            ));
        }
        self.check_writable()?;
        let key = KeyPair::try_from(key.expose())
            .map_err(|e| DeviceError::bad_request(format!("bad PKCS#8 key: {e}")))?;
        if key_type_of(key.algorithm()).is_none() {
            return Err(DeviceError::unsupported(
                "only P-256 and Ed25519 keys are supported",
            ));
        }
        check_chain(chain, key.public_key_raw())?;
        self.store_key(&key)?;
        self.store_chain(&chain.0)?;
        self.key = Some(key);
        self.chain = Some(chain.0.clone());
        Ok(())
    }

    fn prove(&mut self, message: &[u8]) -> Result<Proof, DeviceError> {
        let key = self.key.as_ref().ok_or_else(DeviceError::no_key)?;
        let key_type = self
            .key_type()
            .ok_or_else(|| DeviceError::internal("stored key has an unsupported type"))?;
        if self.chain.is_none() {
            return Err(DeviceError::no_certificate());
        }
        let signature = if self.misbehave.bad_proof {
            let mut wrong = message.to_vec();
            wrong.push(0);
            key.sign(&wrong)
        } else {
            key.sign(message)
        }
        .map_err(internal)?;
        Ok(Proof {
            key_type,
            signature,
        })
    }

    fn lock(&mut self) -> Result<(), DeviceError> {
        if !self.locked {
            write_atomic(&self.state.join(LOCK_FILE), b"locked\n", 0o444).map_err(internal)?;
            self.locked = true;
        }
        Ok(())
    }
}

/// Where `idmint devsim` listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DevsimListen {
    /// A TCP address; port 0 picks a free port.
    Tcp(SocketAddr),
    /// A new pseudo-terminal; the station uses `serial:` + the printed path.
    Pty,
    /// This process's stdin and stdout, for one station that started it
    /// (`exec:idmint devsim --listen stdio --state DIR`).
    Stdio,
}

impl FromStr for DevsimListen {
    type Err = String;

    /// `tcp://IP:PORT`, `pty` or `stdio`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pty" => return Ok(Self::Pty),
            "stdio" => return Ok(Self::Stdio),
            _ => {}
        }
        s.strip_prefix("tcp://")
            .and_then(|a| a.parse().ok())
            .map(Self::Tcp)
            .ok_or_else(|| {
                format!("bad listen address {s:?}: expected tcp://IP:PORT, pty or stdio")
            })
    }
}

/// Options of `idmint devsim`.
#[derive(Clone, Debug)]
pub struct DevsimOptions {
    /// Where to listen.
    pub listen: DevsimListen,
    /// The state directory (created if missing).
    pub state: PathBuf,
    /// The hardware id; default: the one stored in the state directory, or a
    /// new random one.
    pub hw_id: Option<String>,
    /// Simulate a device that cannot generate keys (advertises only
    /// `key-inject`).
    pub no_keygen: bool,
    /// Test knobs.
    pub misbehave: Misbehaviour,
}

impl DevsimOptions {
    /// Options for a well-behaved keygen-capable device.
    pub fn new(listen: DevsimListen, state: impl Into<PathBuf>) -> Self {
        Self {
            listen,
            state: state.into(),
            hw_id: None,
            no_keygen: false,
            misbehave: Misbehaviour::default(),
        }
    }
}

/// Run the simulator until killed: bind, print `listening on ADDRESS` (a
/// device address a station can use, e.g. `tcp://127.0.0.1:7000` or
/// `serial:/dev/pts/3`) to stderr, and serve connections one at a time.
/// On stdio: serve the one station on stdin/stdout until it closes them.
pub fn run_devsim(opts: DevsimOptions) -> Result<(), DevsimError> {
    if opts.listen == DevsimListen::Stdio {
        let sim = DeviceSimulator::open(&opts.state, opts.hw_id, opts.no_keygen)?
            .with_misbehaviour(opts.misbehave.clone());
        return serve_connection(
            &mut Agent::new(sim),
            &opts.misbehave,
            io::stdin().lock(),
            io::stdout().lock(),
        );
    }
    let server = DevsimServer::bind(opts)?;
    eprintln!("listening on {}", server.address());
    server.serve_forever()
}

/// A bound simulator: a [`DeviceSimulator`] and the TCP listener or pty it
/// serves on.
#[derive(Debug)]
pub struct DevsimServer {
    endpoint: Endpoint,
    agent: Agent<DeviceSimulator>,
    misbehave: Misbehaviour,
}

#[derive(Debug)]
enum Endpoint {
    Tcp(TcpListener),
    Pty {
        master: File,
        // Kept open so the master never sees a hang-up between stations.
        _slave: OwnedFd,
        path: PathBuf,
    },
}

impl DevsimServer {
    /// Open the state and bind the listener or create the pty.
    pub fn bind(opts: DevsimOptions) -> Result<Self, DevsimError> {
        let sim = DeviceSimulator::open(&opts.state, opts.hw_id, opts.no_keygen)?
            .with_misbehaviour(opts.misbehave.clone());
        let endpoint = match opts.listen {
            DevsimListen::Tcp(addr) => {
                Endpoint::Tcp(TcpListener::bind(addr).map_err(DevsimError::Listen)?)
            }
            DevsimListen::Pty => open_pty()?,
            DevsimListen::Stdio => {
                return Err(DevsimError::Listen(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "stdio has one station, served by run_devsim, not a listener",
                )))
            }
        };
        Ok(Self {
            endpoint,
            agent: Agent::new(sim),
            misbehave: opts.misbehave,
        })
    }

    /// The device address a station uses to reach this simulator.
    pub fn address(&self) -> DeviceAddress {
        match &self.endpoint {
            Endpoint::Tcp(l) => match l.local_addr() {
                Ok(a) => DeviceAddress::Tcp(a.to_string()),
                Err(_) => DeviceAddress::Tcp("unknown:0".into()),
            },
            Endpoint::Pty { path, .. } => DeviceAddress::Serial {
                path: path.clone(),
                baud: crate::link::DEFAULT_BAUD,
            },
        }
    }

    /// The simulated device.
    pub fn device(&self) -> &DeviceSimulator {
        self.agent.device()
    }

    /// Serve one station: on TCP, accept one connection and serve it until
    /// it closes; on a pty, serve until the simulator drops the link.
    pub fn serve_one(&mut self) -> Result<(), DevsimError> {
        match &self.endpoint {
            Endpoint::Tcp(listener) => {
                let (stream, _) = listener.accept().map_err(DevsimError::Listen)?;
                let _ = stream.set_nodelay(true);
                let writer = stream.try_clone()?;
                serve_connection(&mut self.agent, &self.misbehave, stream, writer)
            }
            Endpoint::Pty { master, .. } => {
                let reader = master.try_clone()?;
                let writer = master.try_clone()?;
                serve_connection(&mut self.agent, &self.misbehave, reader, writer)
            }
        }
    }

    /// Serve stations one after another, forever. A failed connection is
    /// reported on stderr and the next one is served.
    pub fn serve_forever(mut self) -> Result<(), DevsimError> {
        loop {
            match self.serve_one() {
                Ok(()) => {}
                Err(DevsimError::Listen(e)) => return Err(DevsimError::Listen(e)),
                Err(e) => eprintln!("devsim: connection ended: {e}"),
            }
        }
    }
}

/// Serve one connection with the misbehaviour knobs applied. Returns when
/// the peer closes the stream or a knob drops the link.
fn serve_connection<R: Read, W: Write>(
    agent: &mut Agent<DeviceSimulator>,
    misbehave: &Misbehaviour,
    mut reader: R,
    mut writer: W,
) -> Result<(), DevsimError> {
    let mut decoder = crate::frame::FrameDecoder::new();
    let mut served: u32 = 0;
    let mut buf = [0u8; 4096];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let frames: Vec<_> = decoder.feed(&buf[..n]).collect();
        for frame in frames {
            let payload = match frame {
                Ok(p) => p,
                Err(e) => {
                    writer.write_all(&encode_response(&frame_error_response(&e)))?;
                    continue;
                }
            };
            let kind = decode_message::<Request>(&payload)
                .ok()
                .map(|r| r.body.kind());
            served += 1;
            let drop_now = misbehave.drop_after.is_some_and(|n| served > n)
                || (kind.is_some() && kind == misbehave.drop_at);
            if drop_now {
                return Ok(());
            }
            let response = agent.handle_payload(&payload);
            if misbehave.delay_ms > 0 {
                thread::sleep(Duration::from_millis(misbehave.delay_ms));
            }
            if kind.is_some() && kind == misbehave.garbage_at {
                writer.write_all(GARBAGE)?;
            } else {
                writer.write_all(&encode_response(&response))?;
            }
            writer.flush()?;
        }
    }
}

fn open_pty() -> Result<Endpoint, DevsimError> {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let pty = nix::pty::openpty(None, None).map_err(|e| DevsimError::Pty(e.to_string()))?;
    let mut tio = tcgetattr(&pty.slave).map_err(|e| DevsimError::Pty(e.to_string()))?;
    cfmakeraw(&mut tio);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &tio).map_err(|e| DevsimError::Pty(e.to_string()))?;
    let path = nix::unistd::ttyname(&pty.slave).map_err(|e| DevsimError::Pty(e.to_string()))?;
    Ok(Endpoint::Pty {
        master: File::from(pty.master),
        _slave: pty.slave,
        path,
    })
}

/// Parse every certificate of `chain` and check the leaf certifies the
/// public key `key_raw` (the SubjectPublicKeyInfo's key bits).
fn check_chain(chain: &CertificateChain, key_raw: &[u8]) -> Result<(), DeviceError> {
    let leaf_der = chain
        .leaf()
        .ok_or_else(|| DeviceError::bad_request("empty certificate chain"))?;
    for (i, der) in chain.0.iter().enumerate() {
        let (rest, _) = X509Certificate::from_der(der)
            .map_err(|e| DeviceError::bad_request(format!("certificate {i}: {e}")))?;
        if !rest.is_empty() {
            return Err(DeviceError::bad_request(format!(
                "certificate {i}: trailing bytes"
            )));
        }
    }
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| DeviceError::bad_request(format!("leaf certificate: {e}")))?;
    if &*leaf.public_key().subject_public_key.data != key_raw {
        return Err(DeviceError::key_mismatch());
    }
    Ok(())
}

/// PKCS#8 DER of `key`. aws-lc-rs writes Ed25519 keys as PKCS#8 v2 (RFC
/// 5958, public key included), which OpenSSL 3.0 cannot read; store them as
/// the RFC 8410 v1 form every tool reads.
fn pkcs8_v1(key: &KeyPair) -> Zeroizing<Vec<u8>> {
    const V2_PREFIX: [u8; 16] = [
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let der = Zeroizing::new(key.serialize_der());
    match der.get(..48) {
        Some(head) if head.starts_with(&V2_PREFIX) => {
            let mut v1 = Zeroizing::new(Vec::with_capacity(48));
            v1.extend_from_slice(&V1_PREFIX);
            v1.extend_from_slice(&head[16..48]);
            v1
        }
        _ => der,
    }
}

fn key_type_of(alg: &'static SignatureAlgorithm) -> Option<KeyType> {
    if alg == &PKCS_ECDSA_P256_SHA256 {
        Some(KeyType::P256)
    } else if alg == &PKCS_ED25519 {
        Some(KeyType::Ed25519)
    } else {
        None
    }
}

fn new_hw_id(path: &Path) -> Result<String, DevsimError> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| DevsimError::Pty("no randomness".into()))?;
    let id = format!(
        "sim-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    write_atomic(path, id.as_bytes(), 0o644)?;
    Ok(id)
}

/// Write `data` to `path` via a temporary file and a rename, so a crash
/// never leaves a half-written credential.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), DevsimError> {
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        // The umask may have cleared bits; set the mode we mean.
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| state_err(path, e))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, DevsimError> {
    match fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_err(path, e)),
    }
}

fn remove_if_exists(path: &Path) -> Result<(), DevsimError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(state_err(path, e)),
    }
}

fn state_err(path: &Path, source: io::Error) -> DevsimError {
    DevsimError::State {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(state: &Path, file: &str, e: impl std::fmt::Display) -> DevsimError {
    DevsimError::CorruptState {
        path: state.join(file),
        reason: e.to_string(),
    }
}

fn internal(e: impl std::fmt::Display) -> DeviceError {
    DeviceError::internal(e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parse_misbehaviour() {
        let m: Misbehaviour =
            "drop-after=2, garbage-at=keygen,delay-ms=50,bad-csr-signature,wrong-key-type,bad-proof,drop-at=lock"
                .parse()
                .unwrap();
        assert_eq!(
            m,
            Misbehaviour {
                drop_after: Some(2),
                drop_at: Some(RequestKind::Lock),
                garbage_at: Some(RequestKind::Keygen),
                delay_ms: 50,
                bad_csr_signature: true,
                wrong_key_type: true,
                bad_proof: true,
            }
        );
        assert_eq!("".parse::<Misbehaviour>().unwrap(), Misbehaviour::default());
        assert!("explode".parse::<Misbehaviour>().is_err());
        assert!("drop-at=reboot".parse::<Misbehaviour>().is_err());
    }

    #[test]
    fn parse_listen() {
        assert_eq!("pty".parse::<DevsimListen>(), Ok(DevsimListen::Pty));
        assert_eq!(
            "tcp://127.0.0.1:0".parse::<DevsimListen>(),
            Ok(DevsimListen::Tcp("127.0.0.1:0".parse().unwrap()))
        );
        assert!("tcp://localhost:1".parse::<DevsimListen>().is_err());
    }
}
