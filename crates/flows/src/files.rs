//! Writing files that hold key material: always a new file of mode 0600
//! from the first byte on Unix; replacing an existing file means renaming
//! a new one over it, so its old mode, open readers or a symlink in its
//! place never see the key.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::FlowError;

/// Creates `path` with mode 0600 (failing if it exists) and writes `bytes`.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), FlowError> {
    let mut file = create_private(path)?;
    file.write_all(bytes).map_err(|e| FlowError::io(path, e))
}

/// Like [`write_secret`], but replaces an existing file: `bytes` go to a
/// new 0600 file beside `path` (`.NAME.PID.N.tmp`), which is then renamed
/// over it. An existing file's mode (say 0644) is never the mode of the
/// key, a reader who opened the old file never sees the new bytes, and a
/// symlink at `path` is replaced, not written through.
pub fn overwrite_secret(path: &Path, bytes: &[u8]) -> Result<(), FlowError> {
    let tmp = temp_beside(path);
    let written = create_private(&tmp)
        .and_then(|mut file| file.write_all(bytes).map_err(|e| FlowError::io(&tmp, e)))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| FlowError::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A fresh hidden name in `path`'s folder for [`overwrite_secret`].
fn temp_beside(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Writes a public file (certificates, CRLs), failing if it exists.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), FlowError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| FlowError::io(path, e))?;
    file.write_all(bytes).map_err(|e| FlowError::io(path, e))
}

/// Replaces a public file (a CRL, a CA chain, a broker ACL) atomically: the
/// bytes go to a new file beside `path`, renamed over it, so a reader (a
/// broker re-reading on SIGHUP) sees the old file or the new one, never
/// half of one.
pub fn replace_public(path: &Path, bytes: &[u8]) -> Result<(), FlowError> {
    let tmp = temp_beside(path);
    let written = write_new(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| FlowError::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates `path` (failing if anything, even a dangling symlink, is there)
/// with mode 0600 whatever the umask.
fn create_private(path: &Path) -> Result<File, FlowError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(|e| FlowError::io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| FlowError::io(path, e))?;
    }
    Ok(file)
}

/// Parses an age recipient: `age1…` (X25519) or an SSH ed25519/RSA public key.
pub fn parse_recipient(text: &str) -> Result<Box<dyn age::Recipient + Send>, FlowError> {
    let text = text.trim();
    if text.starts_with("age1") {
        return age::x25519::Recipient::from_str(text)
            .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
            .map_err(|e| FlowError::Invalid(format!("--encrypt-to: not an age recipient: {e}")));
    }
    age::ssh::Recipient::from_str(text)
        .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
        .map_err(|_| FlowError::Invalid("--encrypt-to: expected an age recipient (age1…) or an SSH public key (ssh-ed25519 …)".into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    fn world_readable(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(mode(&path), 0o644);
        path
    }

    #[test]
    fn overwrite_secret_tightens_an_existing_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = world_readable(dir.path(), "key.pem", "old public bytes");
        overwrite_secret(&path, b"SECRET KEY").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"SECRET KEY");
    }

    #[test]
    fn a_reader_of_the_old_file_never_sees_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = world_readable(dir.path(), "key.pem", "old public bytes");
        // Anyone could open the 0644 file before it was replaced; the open
        // file must not become a window onto the new key.
        let mut early = File::open(&path).unwrap();
        overwrite_secret(&path, b"SECRET KEY").unwrap();
        let mut seen = Vec::new();
        early.read_to_end(&mut seen).unwrap();
        assert!(
            !seen.windows(6).any(|w| w == b"SECRET"),
            "an fd opened on the old 0644 file reads the new secret"
        );
    }

    #[test]
    fn overwrite_secret_replaces_a_symlink_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = world_readable(dir.path(), "elsewhere.txt", "someone else's file");
        let path = dir.path().join("key.pem");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        overwrite_secret(&path, b"SECRET KEY").unwrap();
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"someone else's file",
            "the secret went through the symlink"
        );
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn write_secret_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = world_readable(dir.path(), "key.pem", "old");
        assert!(write_secret(&path, b"SECRET").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
