//! Shared helpers for the end-to-end tests: a scratch data directory and a
//! way to run the real `idmint` binary against it.
#![allow(dead_code)]

pub mod esp32;
pub mod http;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A scratch data directory for one test.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A fresh, not yet initialised environment.
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A fresh environment after `idmint init`.
    pub fn init(args: &[&str]) -> Env {
        let env = Env::new();
        let mut all = vec!["init", "--org", "Test Co"];
        all.extend_from_slice(args);
        env.ok(&all);
        env
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `idmint` command with this environment's data dir and passphrase.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_idmint"));
        c.env("IDMINT_DATA", self.data())
            .env("IDMINT_CA_PASSPHRASE", "test-passphrase")
            .env_remove("IDMINT_STORE")
            .current_dir(self.dir.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run idmint")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "idmint {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs and asserts failure with a one-line error; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "idmint {args:?} unexpectedly succeeded"
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "error is not one line: {stderr}"
        );
        assert!(stderr.starts_with("error: "), "{stderr}");
        stderr
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("JSON output")
    }

    /// Root and issuing CA certificates written to files; returns (root, issuing).
    pub fn ca_files(&self) -> (PathBuf, PathBuf) {
        let root = self.path("root.pem");
        let issuing = self.path("issuing.pem");
        std::fs::write(&root, self.ok(&["ca", "show", "root", "--pem"])).unwrap();
        std::fs::write(&issuing, self.ok(&["ca", "show", "issuing", "--pem"])).unwrap();
        (root, issuing)
    }

    /// The counts a failed command must not change: certificates and audit records.
    pub fn counts(&self) -> (usize, String) {
        let certs = self
            .json(&["cert", "list", "--json"])
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        (certs, self.ok(&["audit", "verify"]))
    }
}

/// Runs openssl and returns (success, stdout+stderr).
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl installed");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Makes a key and CSR with openssl; returns the CSR path.
pub fn openssl_csr(dir: &Path, name: &str, keyopts: &[&str]) -> PathBuf {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let mut args = vec!["req", "-new", "-nodes", "-subj"];
    let subj = format!("/CN={name}");
    args.push(&subj);
    args.extend_from_slice(keyopts);
    let (k, c) = (
        key.to_string_lossy().to_string(),
        csr.to_string_lossy().to_string(),
    );
    args.extend_from_slice(&["-keyout", &k, "-out", &c]);
    let (ok, text) = openssl(&args);
    assert!(ok, "openssl req: {text}");
    csr
}

/// Asserts `openssl verify` accepts `cert` as a TLS client certificate.
pub fn assert_openssl_verifies(root: &Path, issuing: &Path, cert: &Path) {
    let (ok, text) = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        &root.to_string_lossy(),
        "-untrusted",
        &issuing.to_string_lossy(),
        &cert.to_string_lossy(),
    ]);
    assert!(ok && text.contains(": OK"), "openssl verify: {text}");
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits (at most 30 s) until something listens on the loopback `port`:
/// for outside programs that cannot say which port they bound (mosquitto).
pub fn wait_for_listener(port: u16) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The addresses an `idmint serve` bound, read from what it prints.
pub struct Listening {
    /// The HTTPS port.
    pub https: u16,
    /// The MQTT port, when MQTT is on.
    pub mqtt: Option<u16>,
}

/// Spawns `serve` (a command running `idmint serve` with `--listen
/// 127.0.0.1:0`, and `--mqtt-listen 127.0.0.1:0` when `mqtt`), and returns
/// once it printed the addresses it bound: the kernel chose the ports, so
/// no other process can take them between a probe and the bind, and no
/// probe connection is made. It returns after `idmint serve ready`, when
/// everything serve does before serving (CRL files, the first audit
/// checkpoint) is done. Its stderr is copied to `log` when given (and
/// drained in any case, so the server never blocks on a full pipe).
pub fn spawn_serve(serve: &mut Command, mqtt: bool, log: Option<&Path>) -> (Child, Listening) {
    use std::io::Write;
    let mut child = serve
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut copy = log.map(|p| std::fs::File::create(p).expect("log file"));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = copy.as_mut() {
                let _ = writeln!(file, "{line}");
                let _ = file.flush();
            }
            let _ = tx.send(line);
        }
    });
    let port_of = |line: &str, scheme: &str| -> Option<u16> {
        let rest = line.strip_prefix(&format!("idmint serving {scheme}://"))?;
        rest.rsplit_once(':')?.1.trim().parse().ok()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (mut https, mut mqtt_port, mut ready) = (None, None, false);
    let mut said = Vec::new();
    while !ready {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                https = https.or(port_of(&line, "https"));
                mqtt_port = mqtt_port.or(port_of(&line, "mqtts"));
                ready = line == "idmint serve ready";
                said.push(line);
            }
            Err(_) => panic!("idmint serve did not say where it listens: {said:?}"),
        }
    }
    let https = https.unwrap_or_else(|| panic!("no HTTPS address in {said:?}"));
    assert!(!mqtt || mqtt_port.is_some(), "no MQTT address in {said:?}");
    (
        child,
        Listening {
            https,
            mqtt: mqtt_port,
        },
    )
}

/// A running `idmint devsim`, killed on drop.
pub struct Devsim {
    pub child: Child,
    /// Its `tcp://` address.
    pub addr: String,
    /// Its state directory (key.pem, cert.pem once provisioned).
    pub state: PathBuf,
}

impl Drop for Devsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a simulated device with state in `env/<name>` and hardware id
/// `HW-<name>` (unless `extra` gives `--hw-id`), and waits until it listens.
pub fn devsim(env: &Env, name: &str, extra: &[&str]) -> Devsim {
    let state = env.path(name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idmint"));
    cmd.args(["devsim", "--listen", "tcp://127.0.0.1:0", "--state"])
        .arg(&state);
    if !extra.contains(&"--hw-id") {
        cmd.args(["--hw-id", &format!("HW-{name}")]);
    }
    let mut child = cmd
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn devsim");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    let listen = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("devsim said {line:?}"))
        .trim()
        .to_string();
    // Keep draining stderr so the simulator never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Devsim {
        child,
        addr: listen,
        state,
    }
}

/// SoftHSM2's PKCS#11 module (Debian's softhsm2 package).
pub const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A fresh SoftHSM2 token labelled `label` (user PIN 1234) kept under this
/// environment; returns the environment variables that point SoftHSM2 and
/// idmint at it, or `None` (test skipped) when SoftHSM2 is not installed.
pub fn softhsm_token(env: &Env, label: &str) -> Option<Vec<(String, String)>> {
    if !Path::new(SOFTHSM).exists() {
        idmint_testkit::skip("SoftHSM2", "apt-get install softhsm2");
        return None;
    }
    let tokens = env.path("tokens");
    std::fs::create_dir_all(&tokens).expect("token dir");
    let conf = env.path("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .expect("softhsm2.conf");
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", "1234", "--so-pin", "5678"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util");
    assert!(
        out.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(vec![
        ("SOFTHSM2_CONF".into(), conf.to_string_lossy().to_string()),
        ("IDMINT_PKCS11_MODULE".into(), SOFTHSM.into()),
        ("IDMINT_PKCS11_PIN".into(), "1234".into()),
    ])
}

/// Runs `idmint station run --json --timeout-ms TIMEOUT_MS ARGS...`;
/// returns (success, the per-device JSON lines, stderr).
pub fn station_json(
    env: &Env,
    timeout_ms: &str,
    args: &[&str],
) -> (bool, Vec<serde_json::Value>, String) {
    let mut all = vec!["station", "run", "--json", "--timeout-ms", timeout_ms];
    all.extend_from_slice(args);
    let out = env.run(&all);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}
