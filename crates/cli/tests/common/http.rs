//! Helpers for the tests that drive `idmint serve` over HTTPS: a data
//! directory with its own passphrase (and optional store), a running server,
//! curl and openssl wrappers for EST and the REST API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::spawn_serve;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Option<String>,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            store: None,
        }
    }
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn idmint(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_idmint"));
        c.args(args)
            .env("IDMINT_DATA", self.data())
            .env("IDMINT_CA_PASSPHRASE", "serve-test-passphrase");
        if let Some(s) = &self.store {
            c.env("IDMINT_STORE", s);
        }
        c
    }
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.idmint(args).output().expect("run idmint");
        assert!(
            out.status.success(),
            "idmint {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    pub fn serve(&self, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--mqtt-listen", "off"];
        args.extend_from_slice(extra);
        let (child, listening) = spawn_serve(&mut self.idmint(&args), false, None);
        Server {
            child,
            port: listening.https,
        }
    }
}

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// curl against the server: returns (HTTP status, body).
pub fn curl(root: &Path, url: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(root)
        .args(["-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

pub fn token(env: &Env, name: &str, role: &str, batch: Option<&str>) -> String {
    let mut args = vec!["token", "create", "--name", name, "--role", role];
    if let Some(b) = batch {
        args.extend_from_slice(&["--batch", b]);
    }
    let out = env.ok(&args);
    out.lines()
        .last()
        .and_then(|l| l.split_whitespace().last())
        .expect("token")
        .to_string()
}

pub fn csr(env: &Env, name: &str, cn: &str) -> PathBuf {
    let key = env.path(&format!("{name}.key"));
    let der = env.path(&format!("{name}.der"));
    let (ok, text) = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
        ])
        .arg(&key)
        .args(["-subj", &format!("/CN={cn}"), "-outform", "DER", "-out"])
        .arg(&der));
    assert!(ok, "openssl req: {text}");
    let b64 = env.path(&format!("{name}.b64"));
    let (ok, text) = run(Command::new("sh").arg("-c").arg(format!(
        "base64 -w 64 {} > {}",
        der.display(),
        b64.display()
    )));
    assert!(ok, "{text}");
    b64
}

/// Decodes a base64 certs-only response into PEM certificates.
pub fn p7_to_pem(env: &Env, body: &str, name: &str) -> PathBuf {
    let b64 = env.path(&format!("{name}.p7.b64"));
    std::fs::write(&b64, body).expect("write");
    let pem = env.path(&format!("{name}.pem"));
    let (ok, text) = run(Command::new("sh").arg("-c").arg(format!(
        "base64 -d {} | openssl pkcs7 -inform DER -print_certs -out {}",
        b64.display(),
        pem.display()
    )));
    assert!(ok, "not a PKCS#7 certs-only: {text}");
    pem
}

/// Creates a batch of `count` and returns its id.
pub fn batch(env: &Env, count: &str) -> String {
    let ids = |env: &Env| -> Vec<String> {
        let list: serde_json::Value =
            serde_json::from_str(&env.ok(&["batch", "list", "--json"])).expect("json");
        list.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|b| b["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = ids(env);
    env.ok(&[
        "batch",
        "create",
        "--product",
        "serve-widget",
        "--count",
        count,
    ]);
    ids(env)
        .into_iter()
        .find(|id| !before.contains(id))
        .expect("the new batch id")
}

pub fn ocsp(env: &Env, port: u16, issuer: &Path, cert: &Path, trust: &Path) -> String {
    let (_, text) = run(Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(issuer)
        .arg("-cert")
        .arg(cert)
        .args(["-url", &format!("https://localhost:{port}/ocsp"), "-CAfile"])
        .arg(trust)
        .current_dir(env.dir.path()));
    text
}

pub fn cert_id(pem: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in {} -outform der | sha256sum",
            pem.display()
        ))
        .output()
        .expect("sha256");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// A fresh database on the PostgreSQL server named by
/// `IDMINT_TEST_POSTGRES` (`scripts/test.sh` starts one): its URL, or `None`
/// (the variant skipped) when it is not set and skipping is allowed.
pub fn postgres_database(tag: &str) -> Option<String> {
    let Ok(url) = std::env::var("IDMINT_TEST_POSTGRES") else {
        idmint_testkit::skip(
            "PostgreSQL (IDMINT_TEST_POSTGRES)",
            "scripts/test.sh starts one; or scripts/pg-test-server.sh start",
        );
        return None;
    };
    let name = format!(
        "idmint_{tag}_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    let (ok, text) =
        run(Command::new("psql").args([url.as_str(), "-c", &format!("CREATE DATABASE {name}")]));
    assert!(ok, "psql: {text}");
    let base = url.rsplit_once('/').map(|(b, _)| b).expect("database URL");
    Some(format!("{base}/{name}"))
}

/// An environment on a fresh PostgreSQL database ([`postgres_database`]).
pub fn postgres_env(tag: &str) -> Option<Env> {
    let mut env = Env::new();
    env.store = Some(postgres_database(tag)?);
    Some(env)
}

/// The JSON output of a successful command.
pub fn json(env: &Env, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&env.ok(args)).expect("JSON output")
}

/// Standard base64 of `der`, percent-encoded for a URL path (RFC 5019 §5),
/// as an OCSP client builds a GET request (openssl's own base64).
pub fn base64_url_path(der: &[u8]) -> String {
    let out = Command::new("openssl")
        .args(["base64", "-A"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(der)?;
            child.wait_with_output()
        })
        .expect("openssl base64");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}
