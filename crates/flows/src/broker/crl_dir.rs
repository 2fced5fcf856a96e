//! The CRL directory of `idmint serve --crl-dir DIR`: `DIR/<ca-name>.crl.pem`
//! for every CA idmint signs CRLs for and `DIR/all.crl.pem` with all of
//! them (a broker that checks CRLs refuses a device whose issuer has none
//! in its file), each replaced by write-to-temp-and-rename, then the reload
//! command run with `sh -c`.

use std::path::{Path, PathBuf};

use crate::files::replace_public;
use crate::FlowError;

/// The file with every CRL, for brokers that take one `crlfile`.
pub const ALL_CRLS: &str = "all.crl.pem";

/// A directory of CRL files kept current for outside brokers.
#[derive(Clone, Debug)]
pub struct CrlDirectory {
    dir: PathBuf,
    reload_cmd: Option<String>,
}

impl CrlDirectory {
    /// The directory `dir` (created if missing) and the command to run after
    /// its files changed.
    pub fn new(dir: &Path, reload_cmd: Option<String>) -> Result<Self, FlowError> {
        std::fs::create_dir_all(dir).map_err(|e| FlowError::io(dir, e))?;
        Ok(CrlDirectory {
            dir: dir.to_path_buf(),
            reload_cmd: reload_cmd.filter(|c| !c.trim().is_empty()),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `crls` (CA name, DER) as PEM files and `all.crl.pem`; returns
    /// whether any file changed. A CA whose name is not a plain file name
    /// (say it holds `/`) gets no file of its own, but is in `all.crl.pem`.
    pub fn write(&self, crls: &[(String, Vec<u8>)]) -> Result<bool, FlowError> {
        let mut all = String::new();
        let mut changed = false;
        for (ca, der) in crls {
            let pem = idmint_pki::to_pem("X509 CRL", der);
            all.push_str(&pem);
            match file_name(ca) {
                Some(name) => changed |= self.replace_if_changed(&name, pem.as_bytes())?,
                None => tracing::warn!(
                    ca = %ca.escape_default(),
                    "CA name is not a plain file name: its CRL is only in {ALL_CRLS}"
                ),
            }
        }
        changed |= self.replace_if_changed(ALL_CRLS, all.as_bytes())?;
        Ok(changed)
    }

    fn replace_if_changed(&self, name: &str, bytes: &[u8]) -> Result<bool, FlowError> {
        let path = self.dir.join(name);
        if std::fs::read(&path).is_ok_and(|old| old == bytes) {
            return Ok(false);
        }
        replace_public(&path, bytes)?;
        Ok(true)
    }

    /// Runs the reload command (if any) with `sh -c`; a failure to start it
    /// or a non-zero exit is an error naming the command.
    pub async fn reload(&self) -> Result<(), FlowError> {
        let Some(cmd) = &self.reload_cmd else {
            return Ok(());
        };
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::null())
            .status()
            .await
            .map_err(|e| FlowError::Invalid(format!("CRL reload command {cmd:?}: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(FlowError::Invalid(format!(
                "CRL reload command {cmd:?} failed: {status}"
            )))
        }
    }
}

/// `<ca>.crl.pem` when `ca` is a plain file name.
fn file_name(ca: &str) -> Option<String> {
    let plain = !ca.starts_with('.')
        && ca
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    plain.then(|| format!("{ca}.crl.pem"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_each_crl_and_all_and_reports_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let crls = CrlDirectory::new(&dir.path().join("crls"), None).expect("dir");
        let set = vec![
            ("root".to_string(), vec![1, 2, 3]),
            ("../evil".to_string(), vec![4, 5]),
        ];
        assert!(crls.write(&set).expect("write"));
        assert!(!crls.write(&set).expect("rewrite"), "same bytes: no change");
        let root = std::fs::read_to_string(crls.dir().join("root.crl.pem")).expect("root");
        assert!(root.starts_with("-----BEGIN X509 CRL-----"));
        let all = std::fs::read_to_string(crls.dir().join(ALL_CRLS)).expect("all");
        assert_eq!(all.matches("BEGIN X509 CRL").count(), 2);
        assert!(!dir.path().join("evil.crl.pem").exists());
        let names: Vec<_> = std::fs::read_dir(crls.dir())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temp files left: {names:?}");
    }
}
