//! Issuer chains of imported certificates: each distinct intermediate CA
//! certificate stored once, and per registered certificate the
//! intermediates it was verified through (its issuer first), so an export
//! can hand them on to a registry that trusts only the vendor root.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use crate::write::{multi_insert, ROWS_PER_INSERT};
use crate::{now, AuditEvent, RegistryError, WriteTx};

/// An intermediate CA certificate to keep with the certificates it issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewIntermediate {
    /// Certificate id: SHA-256 of the DER, hex.
    pub id: String,
    /// Subject, for people.
    pub subject: String,
    /// The DER.
    pub der: Vec<u8>,
}

/// A registered certificate's issuer chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewChain {
    /// The certificate's id.
    pub certificate: String,
    /// Ids of stored intermediates, the certificate's issuer first.
    pub intermediates: Vec<String>,
}

impl WriteTx {
    /// Stores the intermediates not stored yet; one `intermediate.register`
    /// audit record for each one that is new.
    pub async fn insert_intermediates(
        &mut self,
        intermediates: &[NewIntermediate],
    ) -> Result<(), RegistryError> {
        let mut seen = HashSet::new();
        let distinct: Vec<&NewIntermediate> = intermediates
            .iter()
            .filter(|i| seen.insert(i.id.as_str()))
            .collect();
        let now = now();
        for chunk in distinct.chunks(ROWS_PER_INSERT) {
            let sql = multi_insert(
                self.backend,
                "INSERT INTO intermediate_certificates (id, subject, der, created) VALUES ",
                4,
                chunk.len(),
            ) + " ON CONFLICT (id) DO NOTHING RETURNING id";
            let mut q = sqlx::query(&sql);
            for i in chunk {
                q = q
                    .bind(i.id.as_str())
                    .bind(i.subject.as_str())
                    .bind(i.der.as_slice())
                    .bind(now);
            }
            let created = q.fetch_all(&mut *self.tx).await?;
            let created: HashSet<String> = created
                .iter()
                .map(|row| row.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?;
            // Audit in input order, not the database's RETURNING order.
            for i in chunk.iter().filter(|i| created.contains(&i.id)) {
                self.audit(
                    &i.id,
                    AuditEvent::IntermediateRegister {
                        subject: i.subject.clone(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Records certificates' issuer chains. The certificates and the
    /// intermediates must be registered already (in this transaction or
    /// before); a certificate's chain is recorded once.
    pub async fn insert_chains(&mut self, chains: &[NewChain]) -> Result<(), RegistryError> {
        let links: Vec<(&str, i64, &str)> = chains
            .iter()
            .flat_map(|c| {
                c.intermediates
                    .iter()
                    .zip(0i64..)
                    .map(|(i, position)| (c.certificate.as_str(), position, i.as_str()))
            })
            .collect();
        for chunk in links.chunks(ROWS_PER_INSERT) {
            let sql = multi_insert(
                self.backend,
                "INSERT INTO certificate_chains (certificate, position, intermediate) VALUES ",
                3,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for (certificate, position, intermediate) in chunk {
                q = q.bind(*certificate).bind(*position).bind(*intermediate);
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }
}

/// The chains (intermediate DERs, issuer first) of the certificates with
/// ids in `first..=last` that `filter` (SQL on `c`, the certificates,
/// with `binds` for its `$1`… placeholders) selects: one query for a whole
/// export page.
pub(crate) async fn chains_in_range(
    pool: &sqlx::AnyPool,
    filter: &str,
    binds: &[&str],
    first: &str,
    last: &str,
) -> Result<HashMap<String, Vec<Vec<u8>>>, RegistryError> {
    let n = binds.len();
    let sql = format!(
        "SELECT l.certificate, i.der FROM certificate_chains l \
         JOIN certificates c ON c.id = l.certificate \
         JOIN intermediate_certificates i ON i.id = l.intermediate \
         WHERE {filter} AND c.id >= ${} AND c.id <= ${} \
         ORDER BY l.certificate, l.position",
        n + 1,
        n + 2
    );
    let mut q = sqlx::query(&sql);
    for b in binds.iter().chain([&first, &last]) {
        q = q.bind(*b);
    }
    let mut chains: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for row in q.fetch_all(pool).await? {
        chains
            .entry(row.try_get(0)?)
            .or_default()
            .push(row.try_get(1)?);
    }
    Ok(chains)
}
