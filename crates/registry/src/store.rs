//! The store: opening SQLite or PostgreSQL, migrations, and every read.
//! Writes go through [`crate::WriteTx`].

use std::sync::{Arc, Once};

use idmint_types::CertificateId;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use time::OffsetDateTime;

use sqlx::FromRow;

use crate::audit::ChainChecker;
use crate::events::ConnectUrl;
use crate::row::{
    flag, from_row, json, parsed, parsed_option, time, time_option, typed, typed_option,
};
use crate::{
    AuditRecord, AuditReport, Batch, BatchKind, Ca, Certificate, CertificateStatus, RegistryError,
    RevocationState, StationPolicy, Thing, WriteTx,
};

/// How long a writer waits for this process's other writers (SQLite).
const GATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database is behind the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The registry store. Cheap to clone; all clones share its pools.
#[derive(Clone, Debug)]
pub struct Store {
    /// Connections for reads.
    pub(crate) pool: AnyPool,
    /// Connections for write transactions. SQLite: a pool of one of its
    /// own, so a writer (which holds the write gate, and with it every other
    /// writer) never waits for a connection behind the readers. PostgreSQL:
    /// the read pool.
    pub(crate) writer: AnyPool,
    backend: Backend,
    /// SQLite has one writer at a time: this process's writers queue here,
    /// in order, instead of polling the database lock (busy_timeout still
    /// covers other processes on the same file).
    pub(crate) write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// PostgreSQL: the URL again, for the event listener's own connection.
    pub(crate) listen_url: Option<Arc<ConnectUrl>>,
}

/// Filters for listing certificates; empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct CertificateFilter {
    /// Attached to this thing.
    pub thing: Option<String>,
    /// In this state.
    pub status: Option<CertificateStatus>,
    /// Issued by (or chained to) this CA.
    pub ca: Option<String>,
    /// From this batch.
    pub batch: Option<String>,
    /// Only ids greater than this (pagination cursor).
    pub after: Option<String>,
    /// At most this many (no limit when `None`).
    pub limit: Option<i64>,
}

pub(crate) const CERT_COLUMNS: &str = "id, serial, ca, thing, status, subject, key_type, not_before, not_after, public_key_sha256, batch, created, updated, revoked_at, revocation_reason, der";
pub(crate) const THING_COLUMNS: &str =
    "name, thing_type, attributes, device_id, batch, created, updated";
const CA_COLUMNS: &str = "name, kind, parent, certificate_id, subject, key_type, not_before, not_after, auto_register, template, est_bootstrap, est_bootstrap_batch, created, certificate_der, key_ref, signer_der, revoked_at, revocation_reason";
const BATCH_COLUMNS: &str = "id, kind, product, quota, issued, spoiled, profile, ca, factory, state, allow_inject, params, created, updated, pending_activation, refuse_clones";

impl Store {
    /// Opens (creating if needed) the store at `url`: `sqlite://PATH` or
    /// `postgres://…`, and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store, RegistryError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (backend, connect_url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = if path.contains("mode=") {
                url.to_string()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(RegistryError::UnsupportedStore(url.to_string()));
        };
        let (pool, writer) = if backend == Backend::Sqlite {
            let readers = sqlite_options(4).connect(&connect_url).await?;
            let writer = sqlite_options(1).connect(&connect_url).await?;
            (readers, writer)
        } else {
            let pool = without_reaper(AnyPoolOptions::new().max_connections(16))
                .connect(&connect_url)
                .await?;
            (pool.clone(), pool)
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&writer).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let write_gate =
            (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        let listen_url =
            (backend == Backend::Postgres).then(|| Arc::new(ConnectUrl(connect_url.clone())));
        Ok(Store {
            pool,
            writer,
            backend,
            write_gate,
            listen_url,
        })
    }

    /// SQLite: waits for this process's other writers (at most 30 s) and
    /// holds them off until the guard is dropped. PostgreSQL: nothing.
    pub(crate) async fn lock_writers(
        &self,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, RegistryError> {
        match &self.write_gate {
            Some(gate) => tokio::time::timeout(GATE_TIMEOUT, gate.clone().lock_owned())
                .await
                .map(Some)
                .map_err(|_| RegistryError::Busy),
            None => Ok(None),
        }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction on behalf of `actor` (who the audit
    /// records will name). Writers are serialised by the audit chain's head.
    pub async fn begin(&self, actor: &str) -> Result<WriteTx, RegistryError> {
        WriteTx::begin(self, actor).await
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// One certificate by id.
    pub async fn certificate(
        &self,
        id: &CertificateId,
    ) -> Result<Option<Certificate>, RegistryError> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::<Certificate>).transpose()
    }

    /// One certificate by id, or a `NotFound` error.
    pub async fn require_certificate(
        &self,
        id: &CertificateId,
    ) -> Result<Certificate, RegistryError> {
        self.certificate(id)
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                kind: "certificate",
                name: id.to_string(),
            })
    }

    /// Certificates matching `filter`, ordered by id.
    pub async fn list_certificates(
        &self,
        filter: &CertificateFilter,
    ) -> Result<Vec<Certificate>, RegistryError> {
        let mut sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let mut push = |sql: &mut String, column: &str, value: &str| {
            binds.push(value.to_string());
            sql.push_str(&format!(" AND {column} ${}", binds.len()));
        };
        if let Some(t) = &filter.thing {
            push(&mut sql, "thing =", t);
        }
        if let Some(s) = filter.status {
            push(&mut sql, "status =", s.as_str());
        }
        if let Some(c) = &filter.ca {
            push(&mut sql, "ca =", c);
        }
        if let Some(b) = &filter.batch {
            push(&mut sql, "batch =", b);
        }
        if let Some(a) = &filter.after {
            push(&mut sql, "id >", a);
        }
        sql.push_str(" ORDER BY created, id");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {}", limit.max(0)));
        }
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(from_row::<Certificate>).collect()
    }

    /// Certificates with this public key (SHA-256 of the SPKI, hex).
    pub async fn certificates_with_public_key(
        &self,
        public_key_sha256: &str,
    ) -> Result<Vec<Certificate>, RegistryError> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE public_key_sha256 = $1");
        let rows = sqlx::query(&sql)
            .bind(public_key_sha256)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row::<Certificate>).collect()
    }

    /// Revoked certificates of a CA, for its CRL.
    pub async fn revoked_certificates(&self, ca: &str) -> Result<Vec<Certificate>, RegistryError> {
        let sql = format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE ca = $1 AND status = 'REVOKED' ORDER BY revoked_at, id"
        );
        let rows = sqlx::query(&sql).bind(ca).fetch_all(&self.pool).await?;
        rows.iter().map(from_row::<Certificate>).collect()
    }

    /// A mark that changes whenever a certificate is revoked: how many are
    /// revoked and when the newest changed. Cheap enough to poll each second
    /// (the status column is indexed).
    pub async fn revocation_mark(&self) -> Result<(i64, i64), RegistryError> {
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(MAX(updated), 0) FROM certificates WHERE status = 'REVOKED'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// The same mark for one CA's certificates and the CAs it signed: what
    /// its CRL's cache is keyed on, so a CRL request reads two aggregate
    /// rows, not every revoked certificate.
    pub async fn ca_revocation_mark(&self, ca: &str) -> Result<(i64, i64), RegistryError> {
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(MAX(updated), 0) FROM certificates WHERE ca = $1 AND status = 'REVOKED'",
        )
        .bind(ca)
        .fetch_one(&self.pool)
        .await?;
        let children = sqlx::query(
            "SELECT COUNT(*), COALESCE(MAX(revoked_at), 0) FROM cas WHERE parent = $1 AND name <> $1 AND revoked_at IS NOT NULL",
        )
        .bind(ca)
        .fetch_one(&self.pool)
        .await?;
        let (n, at): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let (cn, cat): (i64, i64) = (children.try_get(0)?, children.try_get(1)?);
        Ok((n + cn, at.max(cat)))
    }

    /// The first revoked CA on the chain from `ca` up to its root, if any.
    /// One read when no CA is revoked (the usual case).
    pub async fn revoked_ca_in_chain(&self, ca: &str) -> Result<Option<String>, RegistryError> {
        let rows = sqlx::query("SELECT name FROM cas WHERE revoked_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        let revoked: Vec<String> = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        if revoked.is_empty() {
            return Ok(None);
        }
        let mut next = Some(ca.to_string());
        for _ in 0..16 {
            let Some(name) = next else { break };
            if revoked.contains(&name) {
                return Ok(Some(name));
            }
            next = self
                .ca(&name)
                .await?
                .and_then(|c| c.parent)
                .filter(|p| *p != name);
        }
        Ok(None)
    }

    /// The CAs `ca` signed that are revoked, for its CRL and OCSP.
    pub async fn revoked_child_cas(&self, ca: &str) -> Result<Vec<Ca>, RegistryError> {
        let sql = format!(
            "SELECT {CA_COLUMNS} FROM cas WHERE parent = $1 AND name <> $1 AND revoked_at IS NOT NULL ORDER BY revoked_at, name"
        );
        let rows = sqlx::query(&sql).bind(ca).fetch_all(&self.pool).await?;
        rows.iter().map(from_row::<Ca>).collect()
    }

    /// What OCSP says of a certificate, by its issuer CA and serial (hex):
    /// only the columns that decide it, so a response costs no DER read.
    pub async fn revocation_state(
        &self,
        ca: &str,
        serial: &str,
    ) -> Result<Option<RevocationState>, RegistryError> {
        let row = sqlx::query(
            "SELECT status, updated, revoked_at, revocation_reason FROM certificates WHERE ca = $1 AND serial = $2",
        )
        .bind(ca)
        .bind(serial)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row::<RevocationState>).transpose()
    }

    /// How many certificates there are.
    pub async fn count_certificates(&self) -> Result<i64, RegistryError> {
        let row = sqlx::query("SELECT COUNT(*) FROM certificates")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// One thing by name.
    pub async fn thing(&self, name: &str) -> Result<Option<Thing>, RegistryError> {
        let sql = format!("SELECT {THING_COLUMNS} FROM things WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::<Thing>).transpose()
    }

    /// One thing by its device id.
    pub async fn thing_by_device_id(
        &self,
        device_id: &str,
    ) -> Result<Option<Thing>, RegistryError> {
        let sql = format!("SELECT {THING_COLUMNS} FROM things WHERE device_id = $1");
        let row = sqlx::query(&sql)
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::<Thing>).transpose()
    }

    /// Things ordered by name, optionally from one batch, after a name
    /// (pagination cursor), at most `limit`.
    pub async fn list_things(
        &self,
        batch: Option<&str>,
        after: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Vec<Thing>, RegistryError> {
        let mut sql = format!("SELECT {THING_COLUMNS} FROM things WHERE 1 = 1");
        let mut binds = Vec::new();
        if let Some(b) = batch {
            binds.push(b);
            sql.push_str(&format!(" AND batch = ${}", binds.len()));
        }
        if let Some(a) = after {
            binds.push(a);
            sql.push_str(&format!(" AND name > ${}", binds.len()));
        }
        sql.push_str(" ORDER BY name");
        if let Some(limit) = limit {
            sql.push_str(&format!(" LIMIT {}", limit.max(0)));
        }
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(from_row::<Thing>).collect()
    }

    /// One CA by name.
    pub async fn ca(&self, name: &str) -> Result<Option<Ca>, RegistryError> {
        let sql = format!("SELECT {CA_COLUMNS} FROM cas WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::<Ca>).transpose()
    }

    /// One CA by name, or a `NotFound` error.
    pub async fn require_ca(&self, name: &str) -> Result<Ca, RegistryError> {
        self.ca(name).await?.ok_or_else(|| RegistryError::NotFound {
            kind: "CA",
            name: name.to_string(),
        })
    }

    /// All CAs, ours first (root, issuing, claim, batch), then outside ones.
    pub async fn list_cas(&self) -> Result<Vec<Ca>, RegistryError> {
        let sql = format!(
            "SELECT {CA_COLUMNS} FROM cas ORDER BY CASE kind WHEN 'root' THEN 0 WHEN 'issuing' THEN 1 WHEN 'claim' THEN 2 WHEN 'batch' THEN 3 ELSE 4 END, created, name"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row::<Ca>).collect()
    }

    /// One batch by id.
    pub async fn batch(&self, id: &str) -> Result<Option<Batch>, RegistryError> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row::<Batch>).transpose()
    }

    /// One batch by id, or a `NotFound` error.
    pub async fn require_batch(&self, id: &str) -> Result<Batch, RegistryError> {
        self.batch(id)
            .await?
            .ok_or_else(|| RegistryError::NotFound {
                kind: "batch",
                name: id.to_string(),
            })
    }

    /// Certificates of station batches still PENDING_ACTIVATION that were
    /// registered before `created_before` (Unix seconds), with their batch;
    /// at most `limit`.
    pub async fn stale_station_certificates(
        &self,
        created_before: i64,
        limit: i64,
    ) -> Result<Vec<(CertificateId, String)>, RegistryError> {
        let rows = sqlx::query(
            "SELECT c.id, c.batch FROM certificates c JOIN batches b ON b.id = c.batch \
             WHERE c.status = $1 AND b.kind = $2 AND c.created < $3 ORDER BY c.created LIMIT $4",
        )
        .bind(CertificateStatus::PendingActivation.as_str())
        .bind(BatchKind::Station.as_str())
        .bind(created_before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((typed(row, "id")?, row.try_get(1)?)))
            .collect()
    }

    /// All batches, oldest first.
    pub async fn list_batches(&self) -> Result<Vec<Batch>, RegistryError> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM batches ORDER BY created, id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row::<Batch>).collect()
    }

    /// Audit records from `after_seq` (exclusive), oldest first, at most `limit`.
    pub async fn audit_records(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, RegistryError> {
        let rows = sqlx::query(
            "SELECT seq, time, actor, action, subject, details, prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row::<AuditRecord>).collect()
    }

    /// Checks the whole audit chain, page by page (bounded memory).
    pub async fn verify_audit(&self) -> Result<AuditReport, RegistryError> {
        let mut checker = ChainChecker::new();
        let mut after = i64::MIN;
        loop {
            let page = self.audit_records(after, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                checker.check(r);
            }
            if checker.fault.is_some() {
                break;
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM chain_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let head_seq: i64 = head.try_get(0)?;
        let head_hash: String = head.try_get(1)?;
        Ok(checker.finish(head_seq, &head_hash))
    }
}

pub(crate) fn ts(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl<'r> FromRow<'r, AnyRow> for Certificate {
    fn from_row(row: &'r AnyRow) -> Result<Certificate, sqlx::Error> {
        Ok(Certificate {
            id: typed(row, "id")?,
            serial: typed(row, "serial")?,
            ca: row.try_get("ca")?,
            thing: row.try_get("thing")?,
            status: parsed(row, "status")?,
            subject: row.try_get("subject")?,
            key_type: row.try_get("key_type")?,
            not_before: time(row, "not_before")?,
            not_after: time(row, "not_after")?,
            public_key_sha256: row.try_get("public_key_sha256")?,
            batch: typed_option(row, "batch")?,
            created: time(row, "created")?,
            updated: time(row, "updated")?,
            revoked_at: time_option(row, "revoked_at")?,
            revocation_reason: parsed_option(row, "revocation_reason")?,
            der: row.try_get("der")?,
        })
    }
}

impl<'r> FromRow<'r, AnyRow> for RevocationState {
    fn from_row(row: &'r AnyRow) -> Result<RevocationState, sqlx::Error> {
        Ok(RevocationState {
            status: parsed(row, "status")?,
            updated: time(row, "updated")?,
            revoked_at: time_option(row, "revoked_at")?,
            revocation_reason: parsed_option(row, "revocation_reason")?,
        })
    }
}

impl<'r> FromRow<'r, AnyRow> for Thing {
    fn from_row(row: &'r AnyRow) -> Result<Thing, sqlx::Error> {
        Ok(Thing {
            name: row.try_get("name")?,
            thing_type: row.try_get("thing_type")?,
            attributes: json(row, "attributes")?,
            device_id: row.try_get("device_id")?,
            batch: typed_option(row, "batch")?,
            created: time(row, "created")?,
            updated: time(row, "updated")?,
        })
    }
}

impl<'r> FromRow<'r, AnyRow> for Ca {
    fn from_row(row: &'r AnyRow) -> Result<Ca, sqlx::Error> {
        Ok(Ca {
            name: row.try_get("name")?,
            kind: parsed(row, "kind")?,
            parent: row.try_get("parent")?,
            id: typed(row, "certificate_id")?,
            subject: row.try_get("subject")?,
            key_type: row.try_get("key_type")?,
            not_before: time(row, "not_before")?,
            not_after: time(row, "not_after")?,
            auto_register: flag(row, "auto_register")?,
            template: row.try_get("template")?,
            est_bootstrap: flag(row, "est_bootstrap")?,
            est_bootstrap_batch: row.try_get("est_bootstrap_batch")?,
            created: time(row, "created")?,
            certificate_der: row.try_get("certificate_der")?,
            key_ref: row.try_get("key_ref")?,
            signer_der: row.try_get("signer_der")?,
            revoked_at: time_option(row, "revoked_at")?,
            revocation_reason: parsed_option(row, "revocation_reason")?,
        })
    }
}

impl<'r> FromRow<'r, AnyRow> for Batch {
    fn from_row(row: &'r AnyRow) -> Result<Batch, sqlx::Error> {
        let count: i64 = row.try_get("quota")?;
        let issued: i64 = row.try_get("issued")?;
        Ok(Batch {
            id: typed(row, "id")?,
            kind: parsed(row, "kind")?,
            product: row.try_get("product")?,
            count,
            issued,
            spoiled: row.try_get("spoiled")?,
            remaining: count - issued,
            profile: row.try_get("profile")?,
            ca: row.try_get("ca")?,
            factory: row.try_get("factory")?,
            state: row.try_get("state")?,
            allow_inject: flag(row, "allow_inject")?,
            params: json(row, "params")?,
            policy: StationPolicy {
                pending_activation: flag(row, "pending_activation")?,
                refuse_clones: flag(row, "refuse_clones")?,
            },
            created: time(row, "created")?,
            updated: time(row, "updated")?,
        })
    }
}

/// Pool options without sqlx's background reaper (idle timeout, maximum
/// lifetime, minimum connections): in sqlx 0.8 its sweep can read an
/// underflowed idle count and spin a core for good, which hung `idmint init`
/// in `Pool::close` (sqlx issue #3645, fix in PR #4289, not released).
/// Connections are still checked before use, so a dropped PostgreSQL
/// connection is replaced on the next query.
fn without_reaper(options: AnyPoolOptions) -> AnyPoolOptions {
    options
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
}

/// Pool options for SQLite connections: WAL, and the pragmas every
/// connection needs.
fn sqlite_options(connections: u32) -> AnyPoolOptions {
    without_reaper(AnyPoolOptions::new())
        .max_connections(connections)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                // Certificate ids, serials and key hashes are random, so
                // index inserts touch pages all over a large registry:
                // keep more of them cached (32 MiB per connection). Not
                // a memory map: that showed no gain, and every mapped
                // page of the file counted against the process's memory
                // (350 MB instead of 130 MB issuing into a registry of
                // 100k certificates).
                conn.execute("PRAGMA cache_size = -32768").await?;
                // A multi-row INSERT keeps a statement journal (the
                // pages it changed, to undo just that statement); on
                // disk that is a temp file created and unlinked per
                // statement. In memory it is a few hundred KiB.
                conn.execute("PRAGMA temp_store = MEMORY").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                Ok(())
            })
        })
}
