//! Reading manifests one entry at a time, in bounded memory: a JSON array
//! of signed secure elements (split into elements by a small scanner, so a
//! broken element does not stop the ones after it), JSON lines, a folder
//! or tar of PEM certificates (or one PEM bundle), and CSV.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use super::{Reason, Rejection};
use idmint_flows::FlowError;

/// The largest single entry read (a signed element, a line, a PEM file).
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// A manifest format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFormat {
    /// Microchip Trust&GO / TrustFLEX style: a JSON array of flattened-JWS
    /// `SignedSecureElement` objects.
    Signed,
    /// JSON lines in AWS IoT bulk registration shape (`certificatePem`,
    /// `parameters`).
    JsonLines,
    /// A folder or tar of PEM certificates, or one file of PEM blocks.
    Pem,
    /// CSV: `unique_id,certificate_pem_or_path,...attributes` with a header.
    /// A certificate path is relative to the CSV's folder and stays inside
    /// it: no absolute path, no `..`, no symlink leading out, a regular file
    /// (a row that breaks this refuses the whole manifest).
    Csv,
}

impl ManifestFormat {
    /// The name used by `--format`.
    pub fn as_str(self) -> &'static str {
        match self {
            ManifestFormat::Signed => "microchip",
            ManifestFormat::JsonLines => "jsonl",
            ManifestFormat::Pem => "pem",
            ManifestFormat::Csv => "csv",
        }
    }

    /// Guesses the format of `path` from its first bytes.
    pub fn detect(path: &Path) -> Result<ManifestFormat, FlowError> {
        if path.is_dir() {
            return Ok(ManifestFormat::Pem);
        }
        let mut head = Vec::with_capacity(512);
        File::open(path)
            .and_then(|f| f.take(512).read_to_end(&mut head))
            .map_err(|e| FlowError::io(path, e))?;
        if is_tar(&head) {
            return Ok(ManifestFormat::Pem);
        }
        let first = head
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map(|i| &head[i..])
            .unwrap_or(&[]);
        Ok(match first.first() {
            Some(b'[') => ManifestFormat::Signed,
            Some(b'{') => ManifestFormat::JsonLines,
            _ if first.starts_with(b"-----BEGIN") => ManifestFormat::Pem,
            _ => ManifestFormat::Csv,
        })
    }
}

impl FromStr for ManifestFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "microchip" | "signed" | "jws" | "trustngo" => Ok(ManifestFormat::Signed),
            "jsonl" | "json-lines" | "aws" => Ok(ManifestFormat::JsonLines),
            "pem" | "pem-dir" | "pem-tar" | "tar" => Ok(ManifestFormat::Pem),
            "csv" => Ok(ManifestFormat::Csv),
            other => Err(format!(
                "unknown manifest format {other:?} (microchip, jsonl, pem, csv)"
            )),
        }
    }
}

fn is_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// One entry as read, before parsing.
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// Position in the manifest, from 0.
    pub index: u64,
    /// The bytes.
    pub body: RawBody,
}

/// An entry's bytes, by format.
#[derive(Clone, Debug)]
pub enum RawBody {
    /// The JSON text of one `SignedSecureElement`.
    Signed(Vec<u8>),
    /// One JSON line.
    JsonLine(Vec<u8>),
    /// One PEM (or DER) certificate file.
    Pem {
        /// Its file name.
        name: String,
        /// Its contents.
        bytes: Vec<u8>,
    },
    /// One CSV row.
    Csv {
        /// The first column.
        unique_id: String,
        /// The certificate PEM (inline or read from the named file).
        certificate: Vec<u8>,
        /// A `thing_name` column, if present.
        thing_name: Option<String>,
        /// The other columns, by header.
        attributes: BTreeMap<String, String>,
    },
    /// The reader could not produce this entry (reading stops after it
    /// when the manifest itself is broken).
    Broken(Rejection),
}

/// Reads every entry of the manifest at `path`, calling `sink` with each in
/// order; stops early when `sink` returns false.
pub fn read_entries(
    path: &Path,
    format: ManifestFormat,
    sink: &mut dyn FnMut(RawEntry) -> bool,
) -> Result<(), FlowError> {
    let mut index = 0u64;
    let mut emit = |body: RawBody| {
        let keep_going = sink(RawEntry { index, body });
        index += 1;
        keep_going
    };
    let open = || {
        File::open(path)
            .map(|f| BufReader::with_capacity(256 * 1024, f))
            .map_err(|e| FlowError::io(path, e))
    };
    match format {
        ManifestFormat::Signed => {
            read_json_array(&mut open()?, &mut emit).map_err(|e| FlowError::io(path, e))
        }
        ManifestFormat::JsonLines => {
            read_lines(&mut open()?, &mut emit).map_err(|e| FlowError::io(path, e))
        }
        ManifestFormat::Pem if path.is_dir() => read_dir(path, &mut emit),
        ManifestFormat::Pem => {
            let mut head = Vec::new();
            open()?
                .take(512)
                .read_to_end(&mut head)
                .map_err(|e| FlowError::io(path, e))?;
            if is_tar(&head) {
                read_tar(open()?, &mut emit).map_err(|e| FlowError::io(path, e))
            } else {
                read_pem_bundle(path, &mut emit)
            }
        }
        ManifestFormat::Csv => read_csv(path, &mut emit),
    }
}

/// Reads the entries of a manifest that arrives as a stream rather than a
/// file: a JSON array of signed secure elements (`Signed`), JSON lines, or
/// a tar of PEM certificates (`Pem`). Every entry goes to `sink` in order,
/// as [`read_entries`] gives them; a broken manifest ends in one
/// [`RawBody::Broken`] entry. `Csv` (whose rows may name files beside it)
/// is refused: read it with [`read_entries`].
pub fn read_stream(
    mut r: impl BufRead,
    format: ManifestFormat,
    sink: &mut dyn FnMut(RawEntry) -> bool,
) -> std::io::Result<()> {
    let mut index = 0u64;
    let mut emit = |body: RawBody| {
        let keep_going = sink(RawEntry { index, body });
        index += 1;
        keep_going
    };
    match format {
        ManifestFormat::Signed => read_json_array(&mut r, &mut emit),
        ManifestFormat::JsonLines => read_lines(&mut r, &mut emit),
        ManifestFormat::Pem => read_tar(r, &mut emit),
        ManifestFormat::Csv => {
            emit(broken(
                Reason::MalformedManifest,
                "a CSV manifest is read from its file, not a stream",
            ));
            Ok(())
        }
    }
}

fn broken(reason: Reason, message: impl Into<String>) -> RawBody {
    RawBody::Broken(Rejection::new(reason, message))
}

/// Splits a JSON array into its elements' texts without parsing them.
fn read_json_array(
    r: &mut impl BufRead,
    emit: &mut dyn FnMut(RawBody) -> bool,
) -> std::io::Result<()> {
    match next_non_ws(r)? {
        Some(b'[') => {}
        Some(c) => {
            emit(broken(
                Reason::MalformedManifest,
                format!("expected a JSON array, found {:?}", c as char),
            ));
            return Ok(());
        }
        None => {
            emit(broken(Reason::MalformedManifest, "empty manifest"));
            return Ok(());
        }
    }
    let mut first = true;
    let mut text = Vec::with_capacity(8192);
    loop {
        let c = next_non_ws(r)?;
        let c = match (c, first) {
            (Some(b']'), _) => return Ok(()),
            (Some(b','), false) => next_non_ws(r)?,
            (c, true) => c,
            (Some(c), false) => {
                emit(broken(
                    Reason::MalformedManifest,
                    format!("expected ',' or ']' between entries, found {:?}", c as char),
                ));
                return Ok(());
            }
            (None, false) => None,
        };
        first = false;
        match c {
            Some(b'{') => match scan_object(r, &mut text)? {
                Ok(()) => {
                    if !emit(RawBody::Signed(text.clone())) {
                        return Ok(());
                    }
                }
                Err(why) => {
                    emit(broken(Reason::MalformedManifest, why));
                    return Ok(());
                }
            },
            None => {
                emit(broken(
                    Reason::MalformedManifest,
                    "truncated: the manifest ends inside the array",
                ));
                return Ok(());
            }
            Some(c) => {
                emit(broken(
                    Reason::MalformedManifest,
                    format!("expected an object, found {:?}", c as char),
                ));
                return Ok(());
            }
        }
    }
}

fn next_non_ws(r: &mut impl BufRead) -> std::io::Result<Option<u8>> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let c = buf[i];
                r.consume(i + 1);
                return Ok(Some(c));
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

/// Reads the rest of an object whose `{` was consumed into `text`.
fn scan_object(r: &mut impl BufRead, text: &mut Vec<u8>) -> std::io::Result<Result<(), String>> {
    text.clear();
    text.push(b'{');
    let (mut depth, mut in_string, mut escaped) = (1usize, false, false);
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(Err("truncated: the manifest ends inside an entry".into()));
        }
        let (mut i, mut end) = (0, None);
        while i < buf.len() {
            if escaped {
                escaped = false;
                i += 1;
            } else if in_string {
                // Most of an entry is base64 text inside strings.
                match memchr::memchr2(b'"', b'\\', &buf[i..]) {
                    Some(at) => {
                        i += at;
                        if buf[i] == b'"' {
                            in_string = false;
                        } else {
                            escaped = true;
                        }
                        i += 1;
                    }
                    None => i = buf.len(),
                }
            } else {
                match buf[i] {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        let take = end.unwrap_or(buf.len());
        text.extend_from_slice(&buf[..take]);
        r.consume(take);
        if end.is_some() {
            return Ok(Ok(()));
        }
        if text.len() > MAX_ENTRY_BYTES {
            return Ok(Err(format!(
                "an entry is larger than {MAX_ENTRY_BYTES} bytes"
            )));
        }
    }
}

fn read_lines(r: &mut impl BufRead, emit: &mut dyn FnMut(RawBody) -> bool) -> std::io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut *r)
            .take(MAX_ENTRY_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_ENTRY_BYTES {
            emit(broken(
                Reason::MalformedManifest,
                format!("a line is longer than {MAX_ENTRY_BYTES} bytes"),
            ));
            return Ok(());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if !emit(RawBody::JsonLine(std::mem::take(&mut line))) {
            return Ok(());
        }
    }
}

fn is_certificate_file(name: &str) -> bool {
    [".pem", ".crt", ".cer", ".der"]
        .iter()
        .any(|e| name.ends_with(e))
}

fn read_limited(mut r: impl Read) -> std::io::Result<Result<Vec<u8>, String>> {
    let mut bytes = Vec::new();
    (&mut r)
        .take(MAX_ENTRY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_ENTRY_BYTES {
        return Ok(Err(format!("larger than {MAX_ENTRY_BYTES} bytes")));
    }
    Ok(Ok(bytes))
}

fn read_dir(dir: &Path, emit: &mut dyn FnMut(RawBody) -> bool) -> Result<(), FlowError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| FlowError::io(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_certificate_file)
        })
        .collect();
    files.sort();
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let body = match File::open(&path).and_then(read_limited) {
            Ok(Ok(bytes)) => RawBody::Pem { name, bytes },
            Ok(Err(why)) => broken(Reason::MalformedEntry, format!("{name}: {why}")),
            Err(e) => broken(Reason::MalformedEntry, format!("{name}: {e}")),
        };
        if !emit(body) {
            break;
        }
    }
    Ok(())
}

fn read_tar(r: impl Read, emit: &mut dyn FnMut(RawBody) -> bool) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(r);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            emit(broken(Reason::MalformedManifest, format!("tar: {e}")));
            return Ok(());
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                emit(broken(Reason::MalformedManifest, format!("tar: {e}")));
                return Ok(());
            }
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !is_certificate_file(&name) {
            continue;
        }
        let body = match read_limited(entry) {
            Ok(Ok(bytes)) => RawBody::Pem { name, bytes },
            Ok(Err(why)) => broken(Reason::MalformedEntry, format!("{name}: {why}")),
            Err(e) => {
                emit(broken(
                    Reason::MalformedManifest,
                    format!("tar: {name}: {e}"),
                ));
                return Ok(());
            }
        };
        if !emit(body) {
            break;
        }
    }
    Ok(())
}

/// One file of PEM blocks: each CERTIFICATE block is an entry, named by
/// its position.
fn read_pem_bundle(path: &Path, emit: &mut dyn FnMut(RawBody) -> bool) -> Result<(), FlowError> {
    let file = File::open(path).map_err(|e| FlowError::io(path, e))?;
    let mut r = BufReader::new(file);
    let mut block = Vec::new();
    let mut line = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let got = (&mut r)
            .take(MAX_ENTRY_BYTES as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| FlowError::io(path, e))?;
        if got == 0 {
            return Ok(());
        }
        if line.starts_with(b"-----BEGIN") {
            block.clear();
        }
        block.extend_from_slice(&line);
        if block.len() > MAX_ENTRY_BYTES {
            emit(broken(
                Reason::MalformedManifest,
                "a PEM block is too large",
            ));
            return Ok(());
        }
        if line.starts_with(b"-----END") {
            n += 1;
            if !emit(RawBody::Pem {
                name: format!("certificate-{n}"),
                bytes: std::mem::take(&mut block),
            }) {
                return Ok(());
            }
        }
    }
}

fn read_csv(path: &Path, emit: &mut dyn FnMut(RawBody) -> bool) -> Result<(), FlowError> {
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    check_csv_paths(path, base)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::Headers)
        .from_path(path)
        .map_err(|e| FlowError::Invalid(format!("{}: {e}", path.display())))?;
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            emit(broken(
                Reason::MalformedManifest,
                format!("CSV header: {e}"),
            ));
            return Ok(());
        }
    };
    if headers.len() < 2 {
        emit(broken(
            Reason::MalformedManifest,
            "the CSV header needs unique_id and certificate columns",
        ));
        return Ok(());
    }
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                emit(broken(Reason::MalformedManifest, format!("CSV: {e}")));
                return Ok(());
            }
        }
        let field = |i: usize| {
            record
                .get(i)
                .map(|f| String::from_utf8_lossy(f).trim().to_string())
                .unwrap_or_default()
        };
        let unique_id = field(0);
        let cert = field(1);
        let certificate = if cert.starts_with("-----BEGIN") {
            Ok(cert.into_bytes())
        } else if cert.is_empty() {
            Err("no certificate".to_string())
        } else {
            read_certificate_file(base, &cert).map_err(|refusal| match refusal {
                PathRefusal::Rule(why) | PathRefusal::Unreadable(why) => why,
            })
        };
        let mut attributes = BTreeMap::new();
        let mut thing_name = None;
        for (i, h) in headers.iter().enumerate().skip(2) {
            let v = field(i);
            if v.is_empty() {
                continue;
            }
            if h == "thing_name" {
                thing_name = Some(v);
            } else {
                attributes.insert(h.to_string(), v);
            }
        }
        let body = match certificate {
            Ok(certificate) => RawBody::Csv {
                unique_id,
                certificate,
                thing_name,
                attributes,
            },
            Err(why) => RawBody::Broken(Rejection {
                unique_id: Some(unique_id).filter(|u| !u.is_empty()),
                ..Rejection::new(Reason::MissingCertificate, why)
            }),
        };
        if !emit(body) {
            return Ok(());
        }
    }
}

/// Refuses the whole CSV manifest, before any entry is read, when a row's
/// certificate path breaks a rule of [`certificate_path`]: a manifest that
/// points outside its folder is not imported in part. Rows whose file is
/// merely missing or unreadable are left to the entry-by-entry rejection.
fn check_csv_paths(path: &Path, folder: &Path) -> Result<(), FlowError> {
    let Ok(mut reader) = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
    else {
        // The reading pass reports an unreadable CSV.
        return Ok(());
    };
    let mut record = csv::ByteRecord::new();
    while let Ok(true) = reader.read_byte_record(&mut record) {
        let value = record
            .get(1)
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .unwrap_or_default();
        if value.is_empty() || value.starts_with("-----BEGIN") {
            continue;
        }
        if let Err(PathRefusal::Rule(why)) = certificate_path(folder, &value) {
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            return Err(FlowError::Invalid(format!(
                "{}: line {line}: {why}",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Why a CSV certificate path cannot be read.
enum PathRefusal {
    /// The path breaks a rule (absolute, `..`, leaves the folder, not a
    /// regular file): the whole manifest is refused.
    Rule(String),
    /// The path obeys the rules but the file cannot be read (missing,
    /// unreadable): that entry is rejected, as before.
    Unreadable(String),
}

/// Resolves a CSV `certificate_pem_or_path` value against the manifest's
/// folder. The path must be relative, without `..` components, and lead
/// (after symlinks) to a regular file inside the folder: a manifest from a
/// vendor never makes idmint read `/etc/passwd`, a FIFO or a device.
fn certificate_path(folder: &Path, value: &str) -> Result<PathBuf, PathRefusal> {
    let path = Path::new(value);
    if path.has_root() || path.is_absolute() {
        return Err(PathRefusal::Rule(format!(
            "certificate path {value:?} is absolute; paths are relative to the manifest's folder"
        )));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(PathRefusal::Rule(format!(
            "certificate path {value:?} has a `..` component; paths must stay inside the manifest's folder"
        )));
    }
    let folder = folder.canonicalize().map_err(|e| {
        PathRefusal::Unreadable(format!("the manifest's folder {}: {e}", folder.display()))
    })?;
    let resolved = folder
        .join(path)
        .canonicalize()
        .map_err(|e| PathRefusal::Unreadable(format!("certificate path {value:?}: {e}")))?;
    if !resolved.starts_with(&folder) {
        return Err(PathRefusal::Rule(format!(
            "certificate path {value:?} leads outside the manifest's folder (through a symlink)"
        )));
    }
    let meta = std::fs::metadata(&resolved)
        .map_err(|e| PathRefusal::Unreadable(format!("certificate path {value:?}: {e}")))?;
    if !meta.is_file() {
        return Err(PathRefusal::Rule(format!(
            "certificate path {value:?} is not a regular file"
        )));
    }
    Ok(resolved)
}

/// Reads the certificate file a CSV row names (see [`certificate_path`]).
fn read_certificate_file(folder: &Path, value: &str) -> Result<Vec<u8>, PathRefusal> {
    let path = certificate_path(folder, value)?;
    let unreadable =
        |e: std::io::Error| PathRefusal::Unreadable(format!("certificate path {value:?}: {e}"));
    let file = File::open(&path).map_err(unreadable)?;
    // Checked again on the open file: it may have been swapped since.
    if !file.metadata().map_err(unreadable)?.is_file() {
        return Err(PathRefusal::Rule(format!(
            "certificate path {value:?} is not a regular file"
        )));
    }
    read_limited(file)
        .map_err(unreadable)?
        .map_err(|why| PathRefusal::Unreadable(format!("certificate path {value:?}: {why}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<RawBody> {
        let mut out = Vec::new();
        read_json_array(&mut std::io::Cursor::new(text.as_bytes()), &mut |b| {
            out.push(b);
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn splits_a_json_array_into_elements() {
        let bodies = split(" [ {\"a\": \"}\\\"{\"}, {\"b\": [1, {\"c\": 2}]} ] ");
        assert_eq!(bodies.len(), 2);
        match &bodies[0] {
            RawBody::Signed(t) => assert_eq!(t, b"{\"a\": \"}\\\"{\"}"),
            other => panic!("{other:?}"),
        }
        assert!(split("[]").is_empty());
    }

    #[test]
    fn splits_the_same_across_read_buffer_boundaries() {
        let long = "QUJD".repeat(40);
        let text = format!(
            "[{{\"p\": \"{long}\\\\\", \"q\": \"a\\\"}}]{{\\\\\"}}, {{\"r\": [\"{long}\", {{}}]}}]"
        );
        let whole = split(&text);
        assert_eq!(whole.len(), 2);
        match &whole[0] {
            RawBody::Signed(t) => assert_eq!(
                t,
                format!("{{\"p\": \"{long}\\\\\", \"q\": \"a\\\"}}]{{\\\\\"}}").as_bytes()
            ),
            other => panic!("{other:?}"),
        }
        for capacity in 1..=17 {
            let mut parts = Vec::new();
            let mut r = std::io::BufReader::with_capacity(capacity, text.as_bytes());
            read_json_array(&mut r, &mut |b| {
                parts.push(b);
                true
            })
            .unwrap();
            assert_eq!(
                format!("{parts:?}"),
                format!("{whole:?}"),
                "capacity {capacity}"
            );
        }
    }

    #[test]
    fn truncation_and_garbage_are_one_broken_entry() {
        for text in [
            "[{\"a\": 1}, {\"b\"",
            "[{\"a\": 1} {",
            "{}",
            "",
            "[1]",
            "[{\"a\":1},",
        ] {
            let bodies = split(text);
            assert!(
                matches!(bodies.last(), Some(RawBody::Broken(r)) if r.reason == Reason::MalformedManifest),
                "{text}"
            );
        }
    }
}
