//! The three independent verifiers, and the files they read.

pub mod ocsp;
pub mod openssl;
pub mod webpki_check;
pub mod x509;

use std::path::{Path, PathBuf};

pub use x509::Expect;

/// A directory of PEM and DER files for the `openssl` command line.
pub struct Workdir(PathBuf);

impl Workdir {
    /// Creates `dir`.
    pub fn new(dir: PathBuf) -> Workdir {
        std::fs::create_dir_all(&dir).expect("work dir");
        Workdir(dir)
    }

    /// The path of `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `bytes` to `name`.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// Writes a DER certificate as PEM.
    pub fn pem(&self, name: &str, der: &[u8]) -> PathBuf {
        self.pem_of(name, "CERTIFICATE", der)
    }

    /// Writes DER as a PEM block of `label`.
    pub fn pem_of(&self, name: &str, label: &str, der: &[u8]) -> PathBuf {
        self.write(name, pem_text(label, der).as_bytes())
    }
}

fn pem_text(label: &str, der: &[u8]) -> String {
    idmint_pki::to_pem(label, der)
}

/// The DER certificates in a PEM text, in order.
pub fn pem_certificates(text: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .map(|p| p.expect("PEM block"))
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

/// The first certificate of a PEM file, DER.
pub fn der_of_pem_file(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).expect("PEM file");
    pem_certificates(&text).remove(0)
}

/// A file's permission bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Lowercase hex of a serial number's bytes, leading zero bytes dropped
/// (the registry's form).
pub fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes[start..].iter().map(|b| format!("{b:02x}")).collect()
}
