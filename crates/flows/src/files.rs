//! Writing files that hold key material: created new (never overwriting),
//! mode 0600 from the first byte on Unix.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::FlowError;

/// Creates `path` with mode 0600 (failing if it exists) and writes `bytes`.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), FlowError> {
    let mut file = create_private(path, false)?;
    file.write_all(bytes).map_err(|e| FlowError::io(path, e))
}

/// Like [`write_secret`], but replaces an existing file.
pub fn overwrite_secret(path: &Path, bytes: &[u8]) -> Result<(), FlowError> {
    let mut file = create_private(path, true)?;
    file.write_all(bytes).map_err(|e| FlowError::io(path, e))
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

fn create_private(path: &Path, replace: bool) -> Result<File, FlowError> {
    let mut options = OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
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
