//! Per-device firmware images (`idmint batch mint`): the serial counters
//! that keep device ids unique across batches, and one item per device image
//! recording its device id, certificate and image digest, written in the
//! same transaction as the device's thing and certificate.

use serde::Serialize;
use sqlx::{FromRow, Row};

use crate::write::{multi_insert, unique_to, ROWS_PER_INSERT};
use crate::{now, AuditEvent, NewCertificate, NewThing, RegistryError, Store, WriteTx};

/// An item is good: its image was written and its certificate registered.
pub const MINT_ITEM_OK: &str = "OK";
/// An item is spoiled: its certificate was registered but its image was
/// lost (the certificate is revoked and a replacement minted).
pub const MINT_ITEM_SPOILED: &str = "SPOILED";

/// One device image of a mint batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct MintItem {
    /// Device id (unique across all batches).
    pub device_id: String,
    /// The batch.
    pub batch: String,
    /// The device's number (the device id is the serial prefix and it).
    pub number: i64,
    /// Thing name.
    pub thing: String,
    /// Certificate id (SHA-256 of its DER, hex).
    pub certificate_id: String,
    /// Image file name, relative to the batch's output directory.
    pub image_file: String,
    /// SHA-256 of the image, hex.
    pub image_sha256: String,
    /// [`MINT_ITEM_OK`] or [`MINT_ITEM_SPOILED`].
    pub state: String,
}

const ITEM_COLUMNS: &str =
    "device_id, batch, number, thing, certificate_id, image_file, image_sha256, state";

impl Store {
    /// Every item of a mint batch, by number.
    pub async fn mint_items(&self, batch: &str) -> Result<Vec<MintItem>, RegistryError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM mint_items WHERE batch = $1 ORDER BY number, device_id"
        );
        Ok(sqlx::query_as::<_, MintItem>(&sql)
            .bind(batch)
            .fetch_all(&self.pool)
            .await?)
    }

    /// A page of a mint batch's good items, by number after `after`, each
    /// with its certificate's DER: what `manifest.jsonl` lists. (Paged, so
    /// a batch of a million devices is never held in memory at once.)
    pub async fn mint_manifest_page(
        &self,
        batch: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(MintItem, Vec<u8>)>, RegistryError> {
        let rows = sqlx::query(
            "SELECT m.device_id, m.batch, m.number, m.thing, m.certificate_id, m.image_file, \
             m.image_sha256, m.state, c.der FROM mint_items m \
             LEFT JOIN certificates c ON c.id = m.certificate_id \
             WHERE m.batch = $1 AND m.state = $2 AND m.number > $3 ORDER BY m.number LIMIT $4",
        )
        .bind(batch)
        .bind(MINT_ITEM_OK)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let item = MintItem::from_row(row)?;
                let der: Option<Vec<u8>> = row.try_get("der")?;
                let der = der.ok_or_else(|| {
                    RegistryError::Corrupt(format!(
                        "certificate {} of device {} is not registered",
                        item.certificate_id, item.device_id
                    ))
                })?;
                Ok((item, der))
            })
            .collect()
    }

    /// How many batches exist.
    pub async fn count_batches(&self) -> Result<i64, RegistryError> {
        let row = sqlx::query("SELECT COUNT(*) FROM batches")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
}

impl WriteTx {
    /// Takes `n` consecutive device numbers for a serial prefix and returns
    /// the first; numbers start at 1 and are never handed out twice.
    pub async fn reserve_serials(&mut self, prefix: &str, n: i64) -> Result<i64, RegistryError> {
        let row = sqlx::query(
            "INSERT INTO serial_counters (prefix, next) VALUES ($1, 1 + $2) \
             ON CONFLICT (prefix) DO UPDATE SET next = serial_counters.next + $2 RETURNING next",
        )
        .bind(prefix)
        .bind(n)
        .fetch_one(&mut *self.tx)
        .await?;
        let next: i64 = row.try_get(0)?;
        let first = next - n;
        self.audit(prefix, AuditEvent::SerialReserve { first, count: n });
        Ok(first)
    }

    /// Registers minted devices: for each, its thing, its certificate and
    /// its image record, with one audit record (`mint.device`) naming all
    /// three. The three slices are parallel: entry `i` of each is one device.
    pub async fn register_minted_devices(
        &mut self,
        things: &[NewThing],
        certificates: &[NewCertificate],
        items: &[MintItem],
    ) -> Result<(), RegistryError> {
        if things.len() != items.len() || certificates.len() != items.len() {
            return Err(RegistryError::Corrupt(format!(
                "{} things, {} certificates and {} images are not one per device",
                things.len(),
                certificates.len(),
                items.len()
            )));
        }
        self.insert_thing_rows(things).await?;
        self.insert_certificate_rows(certificates).await?;
        self.insert_mint_item_rows(items).await?;
        for (item, c) in items.iter().zip(certificates) {
            self.audit(
                &item.device_id,
                AuditEvent::MintDevice {
                    batch: item.batch.clone(),
                    thing: item.thing.clone(),
                    certificate: item.certificate_id.clone(),
                    serial: c.serial.clone(),
                    ca: c.ca.clone(),
                    status: c.status,
                    subject: c.subject.clone(),
                    image: item.image_file.clone(),
                    sha256: item.image_sha256.clone(),
                },
            );
        }
        Ok(())
    }

    async fn insert_mint_item_rows(&mut self, items: &[MintItem]) -> Result<(), RegistryError> {
        let now = now();
        for chunk in items.chunks(ROWS_PER_INSERT) {
            let sql = multi_insert(
                self.backend,
                "INSERT INTO mint_items (device_id, batch, number, thing, certificate_id, image_file, image_sha256, state, created) VALUES ",
                9,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for i in chunk {
                q = q
                    .bind(i.device_id.as_str())
                    .bind(i.batch.as_str())
                    .bind(i.number)
                    .bind(i.thing.as_str())
                    .bind(i.certificate_id.as_str())
                    .bind(i.image_file.as_str())
                    .bind(i.image_sha256.as_str())
                    .bind(i.state.as_str())
                    .bind(now);
            }
            q.execute(&mut *self.tx).await.map_err(|e| {
                unique_to(
                    e,
                    "device id",
                    chunk.first().map(|i| i.device_id.as_str()).unwrap_or(""),
                )
            })?;
        }
        Ok(())
    }

    /// Marks a device image spoiled (its certificate is revoked separately).
    pub async fn spoil_mint_item(
        &mut self,
        device_id: &str,
        why: &str,
    ) -> Result<(), RegistryError> {
        let done = sqlx::query("UPDATE mint_items SET state = $1 WHERE device_id = $2")
            .bind(MINT_ITEM_SPOILED)
            .bind(device_id)
            .execute(&mut *self.tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(RegistryError::NotFound {
                kind: "device image",
                name: device_id.into(),
            });
        }
        self.audit(
            device_id,
            AuditEvent::MintSpoiled {
                reason: why.to_string(),
            },
        );
        Ok(())
    }
}
