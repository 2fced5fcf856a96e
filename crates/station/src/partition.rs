//! ESP32 credential partitions from the station (`idmint station run
//! --partition esp-secure-cert|esp-nvs --programmer CMD`).
//!
//! The device is identified over the agent protocol as on every station
//! path (`hello`, clone refusal, quota), then the station makes the key
//! itself (the batch must allow injection), has the certificate issued
//! (PENDING_ACTIVATION), and builds the device's whole credential partition
//! with `idmint_slot::partition`: the same bytes `idmint batch mint --format
//! esp-secure-cert|esp-nvs` writes for the same credentials. The partition
//! goes to a temporary file (mode 0600) that a programmer command (e.g.
//! `esptool.py write_flash {offset} {file}`) writes to the chip; the file is
//! overwritten and deleted afterwards. Exit status 0 activates the
//! certificate; anything else spoils it, as a failed install does.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use idmint_agent::AgentClient;
use idmint_pki::{DeviceKey, KeyType, SubjectValues};
use idmint_registry::ThingName;
use idmint_slot::{Credentials, PartitionFormat, PemCredentials, Zeroizing};
use serde::Serialize;

use crate::{fail, DeviceRun, Failed, IssueRequest, LineIssuer, StationBackend};

/// How the station writes each device's ESP32 credential partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionOptions {
    /// The partition layout, size and (NVS) namespace, as `batch mint
    /// --format` takes them.
    pub format: PartitionFormat,
    /// The partition's flash offset from the partition table (`{offset}`).
    pub flash_offset: u64,
    /// The programmer command, run with `sh -c` once per device after the
    /// placeholders `{offset}` (e.g. `0xD000`), `{file}` (the partition
    /// file) and `{hw_id}` (the device's hardware id) are replaced by
    /// shell-quoted values. The same values are in the environment as
    /// `IDMINT_FLASH_OFFSET`, `IDMINT_PARTITION_FILE` and `IDMINT_HW_ID`.
    pub programmer: String,
    /// How long the programmer may run for one device; then it is killed
    /// and the device fails.
    pub programmer_timeout: Duration,
}

/// The partition a device was given, in its station report line.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionOutcome {
    /// `esp-secure-cert` or `esp-nvs`.
    pub format: String,
    /// The flash offset it was written at, hex (`0xD000`).
    pub flash_offset: String,
    /// Its size in bytes.
    pub size: usize,
    /// SHA-256 of the partition as handed to the programmer, hex.
    pub sha256: String,
}

/// The key type of station-made partition keys: the configured one when
/// the profile allows it, else P-256 or Ed25519.
pub(crate) fn partition_key_type(issuer: &LineIssuer) -> Result<KeyType, Failed> {
    [issuer.preferred, KeyType::P256, KeyType::Ed25519]
        .into_iter()
        .find(|k| issuer.profile.allows_key_type(*k))
        .ok_or_else(|| {
            fail(
                "keygen",
                format!("profile {} allows no key type", issuer.profile_name),
            )
        })
}

/// Credentials laid out as `batch mint` lays them out: the leaf, then the
/// chain up to the root in the device certificate's chain, the root as the
/// trust anchor.
fn credentials(thing: &str, leaf: Vec<u8>, full_chain: &[Vec<u8>], key: &DeviceKey) -> Credentials {
    Credentials {
        device_id: thing.to_string(),
        thing_name: thing.to_string(),
        certificate: leaf,
        chain: full_chain.to_vec(),
        private_key: key.pkcs8_der(),
        endpoint: None,
        trust_anchors: full_chain.last().cloned().into_iter().collect(),
    }
}

/// Checks, before any device is touched, that the partition format is
/// valid and that the credentials of this batch fit in it (a sample key and
/// the issuing CA's certificate, with room to spare, in place of a leaf).
pub(crate) fn check_fits(
    options: &PartitionOptions,
    key_type: KeyType,
    full_chain: &[Vec<u8>],
) -> Result<(), String> {
    options.format.validate().map_err(|e| e.to_string())?;
    let issuing = full_chain
        .first()
        .cloned()
        .ok_or("the batch's CA has no certificate chain")?;
    let key = DeviceKey::generate(key_type).map_err(|e| e.to_string())?;
    let creds = credentials("sample", issuing, full_chain, &key);
    let mut pem = PemCredentials::from_credentials(&creds);
    // A leaf may be longer than its issuer's certificate (subject
    // alternative names, extensions): 1 KiB of PEM to spare.
    pem.device_cert.push_str(&"A".repeat(1024));
    options.format.encode_pem(&pem).map_err(|e| {
        format!(
            "--partition {}: {e} (give a larger --partition-size)",
            options.format.kind()
        )
    })?;
    Ok(())
}

/// The partition path of one device, after `hello` and the clone check:
/// key made here, certificate issued, partition built and handed to the
/// programmer, certificate activated.
#[allow(clippy::too_many_arguments)]
pub(crate) fn provision_partition(
    backend: &dyn StationBackend,
    issuer: &LineIssuer,
    options: &PartitionOptions,
    client: AgentClient,
    thing: &ThingName,
    hw_id: &str,
    values: &SubjectValues,
    run: &mut DeviceRun,
) -> Result<(), Failed> {
    // The programmer may need the port the agent link holds (a serial
    // port): nothing more is asked of the agent.
    drop(client);
    if let Some(why) = &issuer.inject_refusal {
        return Err(fail("keygen", why));
    }
    if !issuer.allow_inject {
        return Err(fail(
            "keygen",
            format!(
                "batch {} does not allow key injection, which --partition needs",
                issuer.batch_id
            ),
        ));
    }
    let key_type = partition_key_type(issuer)?;
    let key = DeviceKey::generate(key_type).map_err(|e| fail("issue", e))?;
    let public = key.public_key().map_err(|e| fail("issue", e))?;
    run.outcome.injected = true;
    let request = IssueRequest {
        key: &public,
        csr: None,
        thing,
        hw_id,
        values,
        injected: true,
    };
    let issued = backend.issue(&request, &mut run.outcome)?;
    let creds = credentials(
        thing.as_str(),
        issued.der.clone(),
        &issuer.partition_chain,
        &key,
    );
    drop(key);
    let bytes = options
        .format
        .encode(&creds)
        .map_err(|e| fail("partition", e))?;
    drop(creds);
    run.outcome.partition = Some(PartitionOutcome {
        format: options.format.kind().name().to_string(),
        flash_offset: hex_offset(options.flash_offset),
        size: bytes.len(),
        sha256: idmint_pki::sha256_hex(&bytes),
    });
    run.timed(|| program(options, &bytes, hw_id))?;
    drop(bytes);
    backend.provisioned(&issued, &run.outcome, false)
}

/// A flash offset as partition tables write it: `0xD000`.
fn hex_offset(offset: u64) -> String {
    format!("0x{offset:X}")
}

/// Writes `bytes` to a fresh 0600 file, runs the programmer on it, and
/// deletes the file (overwritten first) whatever happened.
fn program(options: &PartitionOptions, bytes: &[u8], hw_id: &str) -> Result<(), Failed> {
    let file = SecretFile::create(bytes).map_err(|e| fail("program", e))?;
    let offset = hex_offset(options.flash_offset);
    let path = file.path.to_string_lossy().into_owned();
    let command = expand(&options.programmer, &offset, &path, hw_id);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .env("IDMINT_FLASH_OFFSET", &offset)
        .env("IDMINT_PARTITION_FILE", &path)
        .env("IDMINT_HW_ID", hw_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills what it started too
        // (esptool under `sh -c`), not only the shell.
        .process_group(0)
        .spawn()
        .map_err(|e| fail("program", format!("cannot run the programmer: {e}")))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + options.programmer_timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill_group(&mut child);
                return Err(fail("program", format!("waiting for the programmer: {e}")));
            }
        }
    };
    drop(file);
    let (stdout, stderr) = (joined(stdout), joined(stderr));
    let said = last_line(&stderr)
        .or_else(|| last_line(&stdout))
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(fail(
            "program",
            format!("the programmer failed ({status}){said}"),
        )),
        None => Err(fail(
            "program",
            format!(
                "the programmer did not finish within {} s and was killed{said}",
                options.programmer_timeout.as_secs()
            ),
        )),
    }
}

/// Kills the programmer's process group (the shell and what it ran) and
/// reaps the shell.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads a child's output on a thread of its own, so a chatty programmer
/// never blocks on a full pipe while the station waits for it.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<std::thread::JoinHandle<Vec<u8>>> {
    pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    })
}

/// What a [`drain`] thread read (nothing if it had no pipe).
fn joined(reader: Option<std::thread::JoinHandle<Vec<u8>>>) -> Vec<u8> {
    reader.and_then(|r| r.join().ok()).unwrap_or_default()
}

/// The programmer command with its placeholders replaced by shell-quoted
/// values.
fn expand(template: &str, offset: &str, file: &str, hw_id: &str) -> String {
    template
        .replace("{offset}", &shell_quote(offset))
        .replace("{file}", &shell_quote(file))
        .replace("{hw_id}", &shell_quote(hw_id))
}

/// `value` as one `sh` word.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The last non-empty line of a program's output, shortened, for a report.
fn last_line(output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(200).collect())
}

/// A temporary file holding a partition (key material): created new with
/// mode 0600 in the temporary directory, overwritten with zeros and removed
/// on drop.
struct SecretFile {
    path: PathBuf,
    len: usize,
}

impl SecretFile {
    fn create(bytes: &[u8]) -> Result<Self, String> {
        let mut random = [0u8; 12];
        idmint_pki::random_fill(&mut random).map_err(|e| e.to_string())?;
        let path =
            std::env::temp_dir().join(format!("idmint-partition-{}.bin", hex::encode(random)));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let file = Self {
            path,
            len: bytes.len(),
        };
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", file.path.display()))?;
        Ok(file)
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        wipe(&self.path, self.len);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Best effort: overwrite a file holding key material before it is
/// unlinked (nothing is written when the programmer removed it).
fn wipe(path: &Path, len: usize) {
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
        let zeros = Zeroizing::new(vec![0u8; len]);
        let _ = f.write_all(&zeros).and_then(|()| f.sync_all());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_single_shell_words() {
        assert_eq!(
            expand(
                "esptool.py write_flash {offset} {file} # {hw_id}",
                "0xD000",
                "/tmp/p.bin",
                "it's"
            ),
            r"esptool.py write_flash '0xD000' '/tmp/p.bin' # 'it'\''s'"
        );
    }

    /// The hardware id comes from the device: whatever it holds, the shell
    /// the programmer runs in sees one literal word, never a command.
    #[test]
    fn a_hostile_hardware_id_reaches_the_programmer_as_one_literal_word() {
        let dir = std::env::temp_dir().join(format!("idmint-hwid-{}", std::process::id()));
        let marker = dir.join("pwned");
        std::fs::create_dir_all(&dir).unwrap();
        for hw_id in [
            format!("$(touch {})", marker.display()),
            format!("`touch {}`", marker.display()),
            format!("x'; touch {}; echo '", marker.display()),
            "a b\n\"c\"; exit 7".to_string(),
        ] {
            let command = expand("printf %s {hw_id}", "0xD000", "/tmp/p.bin", &hw_id);
            let out = Command::new("sh").arg("-c").arg(&command).output().unwrap();
            assert!(out.status.success(), "{hw_id:?}: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), hw_id);
            assert!(!marker.exists(), "{hw_id:?} ran a command");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_file_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let file = SecretFile::create(b"key material").unwrap();
        let path = file.path.clone();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"key material");
        drop(file);
        assert!(!path.exists());
    }
}
