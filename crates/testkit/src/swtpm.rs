//! A software TPM for tests: `swtpm_setup` manufactures a TPM 2.0 with an EK
//! certificate signed by a local CA (the "TPM vendor") in a temporary
//! directory, `swtpm socket` serves it on loopback ports, and [`SoftTpm::tool`]
//! runs tpm2-tools against it. Nothing is written outside the directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The packages a test needs for [`SoftTpm`] (for [`crate::skip`]'s remedy).
pub const SWTPM_PACKAGES: &str = "apt-get install swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0";

/// A running software TPM. Dropping it stops the `swtpm` process it started.
pub struct SoftTpm {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl SoftTpm {
    /// Whether swtpm, swtpm_setup and tpm2-tools are installed.
    pub fn available() -> bool {
        ["swtpm", "swtpm_setup", "tpm2_createek", "tpm2_certify"]
            .iter()
            .all(|tool| {
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false)
            })
    }

    /// Manufactures a TPM in `dir` (which must exist and be empty) with an RSA
    /// and an ECC EK certificate from its own local CA, and starts it.
    /// Panics on failure (a test helper).
    pub fn start(dir: &Path) -> SoftTpm {
        let dir = dir.to_path_buf();
        for sub in ["state", "ca", "ekcerts"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create swtpm dirs");
        }
        let d = dir.display();
        std::fs::write(
            dir.join("swtpm_setup.conf"),
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\n\
                 create_certs_tool_config = {d}/swtpm-localca.conf\n\
                 create_certs_tool_options = {d}/swtpm-localca.options\n\
                 active_pcr_banks = sha256\n"
            ),
        )
        .expect("write swtpm_setup.conf");
        std::fs::write(
            dir.join("swtpm-localca.conf"),
            format!(
                "statedir = {d}/ca\nsigningkey = {d}/ca/signkey.pem\n\
                 issuercert = {d}/ca/issuercert.pem\ncertserial = {d}/ca/certserial\n"
            ),
        )
        .expect("write swtpm-localca.conf");
        std::fs::write(
            dir.join("swtpm-localca.options"),
            "--platform-manufacturer idmint-test\n--platform-version 2.1\n--platform-model swtpm\n",
        )
        .expect("write swtpm-localca.options");
        let out = Command::new("swtpm_setup")
            .args([
                "--tpm2",
                "--create-ek-cert",
                "--create-platform-cert",
                "--overwrite",
            ])
            .arg("--tpmstate")
            .arg(dir.join("state"))
            .arg("--config")
            .arg(dir.join("swtpm_setup.conf"))
            .arg("--write-ek-cert-files")
            .arg(dir.join("ekcerts"))
            // swtpm_setup reads XDG_CONFIG_HOME for user config files.
            .env("XDG_CONFIG_HOME", &dir)
            .env("HOME", &dir)
            .output()
            .expect("run swtpm_setup");
        assert!(
            out.status.success(),
            "swtpm_setup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The swtpm TCTI reaches the control channel on the next port.
        let port = free_port_pair();
        let ctrl = port + 1;
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.join("state").display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start swtpm");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "swtpm did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        SoftTpm { dir, port, child }
    }

    /// The TCTI string for tpm2-tools (`TPM2TOOLS_TCTI`).
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The directory the TPM was manufactured in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificate of the CA that signed the EK certificates (PEM).
    pub fn ek_ca_pem(&self) -> PathBuf {
        self.dir.join("ca/issuercert.pem")
    }

    /// The local CA's root certificate (PEM).
    pub fn root_ca_pem(&self) -> PathBuf {
        self.dir.join("ca/swtpm-localca-rootca-cert.pem")
    }

    /// The RSA-2048 EK certificate (DER).
    pub fn rsa_ek_certificate(&self) -> PathBuf {
        self.dir.join("ekcerts/ek-rsa2048.crt")
    }

    /// Runs one tpm2-tools command in the TPM's directory (relative paths
    /// land there), then flushes transient objects; panics on failure and
    /// returns stdout.
    pub fn tool(&self, tool: &str, args: &[&str]) -> String {
        let out = self.try_tool(tool, args);
        assert!(out.0, "{tool} {args:?} failed: {}", out.1);
        out.1
    }

    /// Runs one tpm2-tools command and leaves what it loaded in the TPM (for
    /// a raw command through `tpm2_send` that uses the transient handles);
    /// `stdin`, if given, is a file fed to the tool. Panics on failure and
    /// returns stdout as bytes.
    pub fn tool_keep(&self, tool: &str, args: &[&str], stdin: Option<&Path>) -> Vec<u8> {
        let mut cmd = Command::new(tool);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("TPM2TOOLS_TCTI", self.tcti());
        if let Some(file) = stdin {
            cmd.stdin(std::fs::File::open(file).expect("open stdin file"));
        }
        let out = cmd.output().expect("run a tpm2 tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Like [`SoftTpm::tool`], returning (success, stdout or stderr) instead
    /// of panicking.
    pub fn try_tool(&self, tool: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(tool)
            .args(args)
            .current_dir(&self.dir)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output()
            .expect("run a tpm2 tool");
        let _ = Command::new("tpm2_flushcontext")
            .arg("-t")
            .current_dir(&self.dir)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output();
        if out.status.success() {
            (true, String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            (false, String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for SoftTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port whose successor is free too.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let Ok(first) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = first.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free loopback ports")
}
