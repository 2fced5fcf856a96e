//! Registry support for bulk imports of outside certificates (vendor
//! manifests): set lookups that find what is already registered, inside the
//! write transaction that will register the rest, import batch counting,
//! and paged export reads (with each certificate's issuer chain).

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;

use crate::chains::chains_in_range;
use crate::write::{changed, placeholder_groups};
use crate::{now, RegistryError, Store, WriteTx};

/// Keys per `IN (...)` lookup (well under the bind limits).
const KEYS_PER_QUERY: usize = 200;

/// What the registry already holds for a certificate id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredCertificate {
    /// The thing it is attached to.
    pub thing: Option<String>,
    /// The batch it came with.
    pub batch: Option<String>,
    /// The CA it is registered under.
    pub ca: String,
}

/// What the registry already holds for a thing name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredThing {
    /// Its device id.
    pub device_id: Option<String>,
}

/// One certificate of an export page, with its thing's identity.
#[derive(Clone, Debug)]
pub struct ExportedCertificate {
    /// Certificate id.
    pub id: String,
    /// The DER.
    pub der: Vec<u8>,
    /// The attached thing's name.
    pub thing: Option<String>,
    /// The thing's device id (the secure element's unique id).
    pub device_id: Option<String>,
    /// The thing's attributes.
    pub attributes: BTreeMap<String, String>,
    /// The intermediates (DER) it was imported through, its issuer first;
    /// empty when it chains to its CA directly.
    pub chain: Vec<Vec<u8>>,
}

impl WriteTx {
    /// Of `ids`, the certificates already registered.
    pub async fn registered_certificates(
        &mut self,
        ids: &[&str],
    ) -> Result<HashMap<String, RegisteredCertificate>, RegistryError> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(KEYS_PER_QUERY) {
            let sql = format!(
                "SELECT id, thing, batch, ca FROM certificates WHERE id IN {}",
                placeholder_groups(self.backend, chunk.len(), 1)
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&mut *self.tx).await? {
                found.insert(
                    row.try_get::<String, _>(0)?,
                    RegisteredCertificate {
                        thing: row.try_get(1)?,
                        batch: row.try_get(2)?,
                        ca: row.try_get(3)?,
                    },
                );
            }
        }
        Ok(found)
    }

    /// Of `keys` (SHA-256 of SubjectPublicKeyInfo, hex), those some
    /// registered certificate already has, with one such certificate id.
    pub async fn registered_public_keys(
        &mut self,
        keys: &[&str],
    ) -> Result<HashMap<String, String>, RegistryError> {
        self.lookup(
            "SELECT public_key_sha256, id FROM certificates WHERE public_key_sha256 IN",
            keys,
        )
        .await
    }

    /// Of `device_ids`, those already taken, with the thing that has each.
    pub async fn registered_device_ids(
        &mut self,
        device_ids: &[&str],
    ) -> Result<HashMap<String, String>, RegistryError> {
        self.lookup(
            "SELECT device_id, name FROM things WHERE device_id IN",
            device_ids,
        )
        .await
    }

    /// Of `names`, the things that exist.
    pub async fn registered_things(
        &mut self,
        names: &[&str],
    ) -> Result<HashMap<String, RegisteredThing>, RegistryError> {
        let mut found = HashMap::new();
        for chunk in names.chunks(KEYS_PER_QUERY) {
            let sql = format!(
                "SELECT name, device_id FROM things WHERE name IN {}",
                placeholder_groups(self.backend, chunk.len(), 1)
            );
            let mut q = sqlx::query(&sql);
            for n in chunk {
                q = q.bind(*n);
            }
            for row in q.fetch_all(&mut *self.tx).await? {
                found.insert(
                    row.try_get::<String, _>(0)?,
                    RegisteredThing {
                        device_id: row.try_get(1)?,
                    },
                );
            }
        }
        Ok(found)
    }

    async fn lookup(
        &mut self,
        prefix: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, String>, RegistryError> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            let sql = format!(
                "{prefix} {}",
                placeholder_groups(self.backend, chunk.len(), 1)
            );
            let mut q = sqlx::query(&sql);
            for k in chunk {
                q = q.bind(*k);
            }
            for row in q.fetch_all(&mut *self.tx).await? {
                found.insert(row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?);
            }
        }
        Ok(found)
    }

    /// Counts `n` imported identities against an import batch: its quota
    /// and its issued count both grow by `n` (an import batch's size is
    /// what was imported, not an order placed beforehand).
    pub async fn record_imported(&mut self, batch: &str, n: i64) -> Result<(), RegistryError> {
        let done = sqlx::query("UPDATE batches SET quota = quota + $1, issued = issued + $1, updated = $2 WHERE id = $3")
            .bind(n)
            .bind(now())
            .bind(batch)
            .execute(&mut *self.tx)
            .await?;
        changed(done, "batch", batch)?;
        Ok(())
    }
}

impl Store {
    /// A page of certificates of a batch or of a CA, ordered by id, after
    /// `after` (exclusive), with their things' device ids and attributes and
    /// their issuer chains (one more query per page, not per certificate).
    pub async fn export_page(
        &self,
        batch: Option<&str>,
        ca: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ExportedCertificate>, RegistryError> {
        let mut filter = String::from("1 = 1");
        let mut binds: Vec<&str> = Vec::new();
        for (column, value) in [("c.batch", batch), ("c.ca", ca)] {
            if let Some(v) = value {
                binds.push(v);
                filter.push_str(&format!(" AND {column} = ${}", binds.len()));
            }
        }
        let mut sql = format!(
            "SELECT c.id, c.der, c.thing, t.device_id, t.attributes FROM certificates c LEFT JOIN things t ON t.name = c.thing WHERE {filter}"
        );
        let mut page_binds = binds.clone();
        if let Some(a) = after {
            page_binds.push(a);
            sql.push_str(&format!(" AND c.id > ${}", page_binds.len()));
        }
        sql.push_str(&format!(" ORDER BY c.id LIMIT {}", limit.max(0)));
        let mut q = sqlx::query(&sql);
        for b in page_binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut page = rows
            .iter()
            .map(|row| {
                let attributes: Option<String> = row.try_get(4)?;
                let attributes = match attributes {
                    Some(text) => serde_json::from_str(&text)
                        .map_err(|e| RegistryError::Corrupt(format!("thing attributes: {e}")))?,
                    None => BTreeMap::new(),
                };
                Ok(ExportedCertificate {
                    id: row.try_get(0)?,
                    der: row.try_get(1)?,
                    thing: row.try_get(2)?,
                    device_id: row.try_get(3)?,
                    attributes,
                    chain: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, RegistryError>>()?;
        if let (Some(first), Some(last)) = (page.first(), page.last()) {
            let mut chains =
                chains_in_range(&self.pool, &filter, &binds, &first.id, &last.id).await?;
            for c in &mut page {
                if let Some(chain) = chains.remove(&c.id) {
                    c.chain = chain;
                }
            }
        }
        Ok(page)
    }
}
