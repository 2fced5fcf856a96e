//! The `openssl` command line (OpenSSL 3) as a verifier: `verify` for
//! certificate paths (purposes, host names, CRLs), `crl` for CRL
//! signatures, `ocsp` for requests and responses, `req` for CSRs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Workdir;

static FILES: AtomicUsize = AtomicUsize::new(0);

/// A fresh file name in the directory of `near`.
fn scratch(near: &Path, what: &str) -> PathBuf {
    let n = FILES.fetch_add(1, Ordering::Relaxed);
    near.parent()
        .expect("a file in a directory")
        .join(format!("{what}-{n}.pem"))
}

/// Runs openssl; its stdout and stderr together, `Err` when it fails.
pub fn run<I, S>(args: I) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn concat(near: &Path, what: &str, files: &[&Path]) -> PathBuf {
    let path = scratch(near, what);
    let mut text = Vec::new();
    for file in files {
        text.extend(std::fs::read(file).expect("PEM file"));
    }
    std::fs::write(&path, text).expect("write");
    path
}

fn verify_args(root: &Path, untrusted: &[&Path], leaf: &Path) -> Vec<String> {
    let mut args = vec!["verify".to_string(), "-CAfile".into(), s(root)];
    if !untrusted.is_empty() {
        args.push("-untrusted".into());
        args.push(s(&concat(leaf, "untrusted", untrusted)));
    }
    args
}

fn s(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn verified(args: Vec<String>) -> Result<(), String> {
    let text = run(&args)?;
    if text.contains(": OK") {
        Ok(())
    } else {
        Err(text)
    }
}

/// `openssl verify`: `leaf` chains to `root` through `untrusted`, for
/// `purpose` (e.g. `sslclient`) if given.
pub fn verify(
    root: &Path,
    untrusted: &[&Path],
    leaf: &Path,
    purpose: Option<&str>,
) -> Result<(), String> {
    let mut args = verify_args(root, untrusted, leaf);
    if let Some(p) = purpose {
        args.extend(["-purpose".into(), p.into()]);
    }
    args.push(s(leaf));
    verified(args)
}

/// `openssl verify` of a TLS server certificate for a host name and an IP
/// address.
pub fn verify_server(
    root: &Path,
    untrusted: &[&Path],
    leaf: &Path,
    host: &str,
    ip: &str,
) -> Result<(), String> {
    let mut args = verify_args(root, untrusted, leaf);
    args.extend([
        "-purpose".into(),
        "sslserver".into(),
        "-verify_hostname".into(),
        host.into(),
        "-verify_ip".into(),
        ip.into(),
        s(leaf),
    ]);
    verified(args)
}

/// `openssl verify -crl_check` of `leaf` against `crl`; with `more_crls`,
/// every certificate of the path is checked (`-crl_check_all`), and CRLs
/// signed by a CRL signer other than the CA are accepted (`-extended_crl`).
pub fn verify_with_crl(
    root: &Path,
    untrusted: &[&Path],
    leaf: &Path,
    crl: &Path,
    more_crls: &[&Path],
) -> Result<(), String> {
    let mut args = verify_args(root, untrusted, leaf);
    let mut crls = vec![crl];
    crls.extend_from_slice(more_crls);
    if more_crls.is_empty() {
        args.push("-crl_check".into());
    } else {
        args.extend(["-crl_check_all".into(), "-extended_crl".into()]);
    }
    args.extend(["-CRLfile".into(), s(&concat(leaf, "crls", &crls)), s(leaf)]);
    verified(args)
}

/// `openssl crl`: the CRL's signature verifies against the certificate in
/// `signer`; its text.
pub fn crl(crl: &Path, signer: &Path) -> Result<String, String> {
    let text = run([
        "crl".as_ref(),
        "-in".as_ref(),
        crl.as_os_str(),
        "-CAfile".as_ref(),
        signer.as_os_str(),
        "-noout".as_ref(),
        "-text".as_ref(),
    ])?;
    if text.contains("verify OK") {
        Ok(text)
    } else {
        Err(text)
    }
}

/// `openssl x509 -text`.
pub fn text(cert: &Path) -> String {
    run([
        "x509".as_ref(),
        "-noout".as_ref(),
        "-text".as_ref(),
        "-in".as_ref(),
        cert.as_os_str(),
    ])
    .unwrap_or_else(|e| panic!("openssl x509: {e}"))
}

/// The public key of a certificate, PEM, as openssl reads it.
pub fn public_key_of_certificate(cert: &Path) -> String {
    run([
        "x509".as_ref(),
        "-noout".as_ref(),
        "-pubkey".as_ref(),
        "-in".as_ref(),
        cert.as_os_str(),
    ])
    .unwrap_or_else(|e| panic!("openssl x509 -pubkey: {e}"))
}

/// The public key of a private key file, PEM, as openssl reads it.
pub fn public_key_of_key(key: &Path) -> String {
    run([
        "pkey".as_ref(),
        "-pubout".as_ref(),
        "-in".as_ref(),
        key.as_os_str(),
    ])
    .unwrap_or_else(|e| panic!("openssl pkey: {e}"))
}

/// A P-256 key and a CSR for it with common name `cn`, made by openssl:
/// (CSR file, key file).
pub fn new_csr(work: &Workdir, cn: &str) -> (PathBuf, PathBuf) {
    let (csr, key) = (
        work.path(&format!("{cn}.csr")),
        work.path(&format!("{cn}.key")),
    );
    run([
        "req".as_ref(),
        "-new".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-nodes".as_ref(),
        "-subj".as_ref(),
        format!("/CN={cn}").as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        csr.as_os_str(),
    ])
    .unwrap_or_else(|e| panic!("openssl req: {e}"));
    (csr, key)
}

/// A self-signed CA made by openssl: (certificate file, key file).
pub fn self_signed_ca(work: &Workdir, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        work.path(&format!("{cn}.pem")),
        work.path(&format!("{cn}.key")),
    );
    run([
        "req".as_ref(),
        "-x509".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-nodes".as_ref(),
        "-days".as_ref(),
        "2".as_ref(),
        "-subj".as_ref(),
        format!("/CN={cn}").as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        cert.as_os_str(),
    ])
    .unwrap_or_else(|e| panic!("openssl req -x509: {e}"));
    (cert, key)
}

fn ocsp_targets(args: &mut Vec<String>, certs: &[&Path], serials: &[&str]) {
    for cert in certs {
        args.extend(["-cert".into(), s(cert)]);
    }
    for serial in serials {
        args.extend(["-serial".into(), serial.to_string()]);
    }
}

/// An OCSP request made by openssl (no nonce, as RFC 5019 clients send
/// them) for `certs` and `serials` of `issuer`, DER.
pub fn ocsp_request(work: &Workdir, issuer: &Path, certs: &[&Path], serials: &[&str]) -> Vec<u8> {
    let n = FILES.fetch_add(1, Ordering::Relaxed);
    let out = work.path(&format!("ocsp-request-{n}.der"));
    let mut args = vec![
        "ocsp".to_string(),
        "-issuer".into(),
        s(issuer),
        "-no_nonce".into(),
        "-reqout".into(),
        s(&out),
    ];
    ocsp_targets(&mut args, certs, serials);
    run(&args).unwrap_or_else(|e| panic!("openssl ocsp -reqout: {e}"));
    std::fs::read(&out).expect("OCSP request")
}

/// `openssl ocsp -respin`: the response verifies (its responder chains to
/// `root` through `issuer` and `other`); the statuses it reports, one line
/// per certificate (`FILE: good`).
pub fn ocsp_check(
    response: &Path,
    issuer: &Path,
    root: &Path,
    other: &[&Path],
    certs: &[&Path],
    serials: &[&str],
) -> Result<String, String> {
    let mut untrusted = vec![issuer];
    untrusted.extend_from_slice(other);
    let mut args = vec![
        "ocsp".to_string(),
        "-respin".into(),
        s(response),
        "-issuer".into(),
        s(issuer),
        "-CAfile".into(),
        s(root),
        "-verify_other".into(),
        s(&concat(response, "verify-other", &untrusted)),
        "-no_nonce".into(),
    ];
    ocsp_targets(&mut args, certs, serials);
    let text = run(&args)?;
    if text.contains("Response verify OK") {
        Ok(text)
    } else {
        Err(text)
    }
}
