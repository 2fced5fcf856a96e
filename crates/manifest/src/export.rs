//! `manifest export`: the certificates of a batch or a CA, page by page, as
//! JSON lines (AWS IoT bulk registration shape), CSV, or a tar of PEM
//! files, each importable back with `manifest import`. Each certificate
//! goes out as a PEM bundle: the device certificate, then the
//! intermediates it was imported through (its issuer first), so a registry
//! that trusts only the vendor root can verify it.

use std::collections::BTreeSet;
use std::io::Write;
use std::str::FromStr;

use idmint_pki::to_pem;
use idmint_registry::ExportedCertificate;

use idmint_flows::FlowError;

/// Certificates per registry read.
const PAGE: i64 = 1000;

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// `{"certificatePem", "parameters": {"ThingName", "uniqueId", ...}}` per
    /// line; `certificatePem` is the PEM bundle.
    Jsonl,
    /// `unique_id,certificate_pem,thing_name,<attributes...>`;
    /// `certificate_pem` is the PEM bundle.
    Csv,
    /// A tar of `<unique id>.pem` files, each a PEM bundle.
    PemTar,
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            "pem-tar" => Ok(ExportFormat::PemTar),
            other => Err(format!(
                "unknown export format {other:?} (jsonl, csv, pem-tar)"
            )),
        }
    }
}

/// Which certificates to export.
#[derive(Clone, Debug)]
pub enum ExportSelector {
    /// Those of one batch.
    Batch(String),
    /// Those registered under one CA.
    Ca(String),
}

impl crate::Manifests<'_> {
    /// Writes the selected certificates to `out`; returns how many.
    pub async fn export_manifest(
        &self,
        selector: &ExportSelector,
        format: ExportFormat,
        out: &mut (dyn Write + Send),
    ) -> Result<u64, FlowError> {
        match selector {
            ExportSelector::Batch(b) => drop(self.store().require_batch(b).await?),
            ExportSelector::Ca(c) => drop(self.store().require_ca(c).await?),
        }
        let io = |e: std::io::Error| FlowError::io("export output", e);
        let mut columns = BTreeSet::new();
        if format == ExportFormat::Csv {
            self.each_page(selector, &mut |page| {
                for c in page {
                    columns.extend(c.attributes.keys().cloned());
                }
                Ok(())
            })
            .await?;
        }
        let mut count = 0u64;
        match format {
            ExportFormat::Jsonl => {
                self.each_page(selector, &mut |page| {
                    for c in page {
                        let mut params = serde_json::Map::new();
                        for (k, v) in &c.attributes {
                            params.insert(k.clone(), v.clone().into());
                        }
                        if let Some(t) = &c.thing {
                            params.insert("ThingName".into(), t.clone().into());
                        }
                        if let Some(d) = &c.device_id {
                            params.insert("uniqueId".into(), d.clone().into());
                        }
                        let line =
                            serde_json::json!({"certificatePem": bundle(c), "parameters": params});
                        writeln!(out, "{line}").map_err(io)?;
                        count += 1;
                    }
                    Ok(())
                })
                .await?;
            }
            ExportFormat::Csv => {
                let mut w = csv::Writer::from_writer(&mut *out);
                let mut header = vec![
                    "unique_id".to_string(),
                    "certificate_pem".into(),
                    "thing_name".into(),
                ];
                header.extend(columns.iter().cloned());
                w.write_record(&header)
                    .map_err(|e| FlowError::Invalid(e.to_string()))?;
                self.each_page(selector, &mut |page| {
                    for c in page {
                        let mut row =
                            vec![unique_id(c), bundle(c), c.thing.clone().unwrap_or_default()];
                        row.extend(
                            columns
                                .iter()
                                .map(|k| c.attributes.get(k).cloned().unwrap_or_default()),
                        );
                        w.write_record(&row)
                            .map_err(|e| FlowError::Invalid(e.to_string()))?;
                        count += 1;
                    }
                    Ok(())
                })
                .await?;
                w.flush().map_err(io)?;
            }
            ExportFormat::PemTar => {
                let mut tar = tar::Builder::new(&mut *out);
                self.each_page(selector, &mut |page| {
                    for c in page {
                        let pem = bundle(c);
                        let mut header = tar::Header::new_gnu();
                        header.set_size(pem.len() as u64);
                        header.set_mode(0o644);
                        header.set_mtime(0);
                        header.set_cksum();
                        tar.append_data(
                            &mut header,
                            format!("{}.pem", file_name(c)),
                            pem.as_bytes(),
                        )
                        .map_err(io)?;
                        count += 1;
                    }
                    Ok(())
                })
                .await?;
                tar.finish().map_err(io)?;
            }
        }
        out.flush().map_err(io)?;
        Ok(count)
    }

    async fn each_page(
        &self,
        selector: &ExportSelector,
        f: &mut (dyn FnMut(&[ExportedCertificate]) -> Result<(), FlowError> + Send),
    ) -> Result<(), FlowError> {
        let (batch, ca) = match selector {
            ExportSelector::Batch(b) => (Some(b.as_str()), None),
            ExportSelector::Ca(c) => (None, Some(c.as_str())),
        };
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store()
                .export_page(batch, ca, after.as_deref(), PAGE)
                .await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.id.clone());
            f(&page)?;
        }
    }
}

/// The device certificate, then its chain (issuer first), as PEM.
fn bundle(c: &ExportedCertificate) -> String {
    let mut pem = to_pem("CERTIFICATE", &c.der);
    for der in &c.chain {
        pem.push_str(&to_pem("CERTIFICATE", der));
    }
    pem
}

fn unique_id(c: &ExportedCertificate) -> String {
    c.device_id
        .clone()
        .or_else(|| c.thing.clone())
        .unwrap_or_else(|| c.id.clone())
}

/// The unique id when it is a safe file name, else the certificate id.
fn file_name(c: &ExportedCertificate) -> String {
    let u = unique_id(c);
    let safe = !u.is_empty()
        && u.len() <= 100
        && !u.starts_with('.')
        && u.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
    if safe {
        u
    } else {
        c.id.clone()
    }
}
