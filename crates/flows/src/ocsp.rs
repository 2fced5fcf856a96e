//! The OCSP responder over the registry (RFC 6960, RFC 5019 profile): which
//! of our CAs a request names, each certificate's status, and responses
//! signed by a delegated responder certificate per CA, not by the CA key.
//!
//! Each server process makes its own responder key (kept in memory only)
//! and has the CA sign a short-lived responder certificate for it, renewed
//! when half its validity has passed; every responder certificate is
//! registered and audited like any other issuance. A response for one
//! certificate is signed once per status change and kept until half its
//! validity has passed, so a relying party polling a million certificates
//! costs a registry read each, not a signature each.
//!
//! An offline batch CA's key is at the factory: its responder is the one it
//! signed at `batch authorize` for its whole lifetime, kept (encrypted) by
//! the maker ([`crate::offline`]); batches authorized before that get
//! `unauthorized`, as for any CA whose key is not here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use idmint_pki::ocsp::{self, Answer, Failure, IssuerId, Query, Request, Responder, Status};
use idmint_pki::{DeviceKey, KeyType, RevocationReason, Signer};
use idmint_registry::{AuditEvent, CertificateStatus, Serial};
use time::{Duration, OffsetDateTime};

use crate::issue::register_service_certificate;
use crate::{FlowError, Idmint};

/// How long a response is valid (its nextUpdate); it is re-signed when half
/// of this has passed.
pub const RESPONSE_VALIDITY: Duration = Duration::hours(1);
/// How long a delegated responder certificate is valid; a new one is issued
/// when half of this has passed.
pub const RESPONDER_VALIDITY: Duration = Duration::days(4);
/// Responses kept, at most (the cache starts over when it is full).
const CACHED_RESPONSES: usize = 100_000;

/// What the responder answers: a DER `OCSPResponse`, and for a signed one
/// the window it is valid in (for HTTP caching headers).
#[derive(Clone, Debug)]
pub struct OcspAnswer {
    /// The DER `OCSPResponse`.
    pub der: Vec<u8>,
    /// `thisUpdate` and `nextUpdate` of a successful response.
    pub valid: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Why there is no signed answer, if there is none.
    pub failure: Option<Failure>,
}

/// One CA's delegated responder.
struct DelegatedResponder {
    signer: Signer,
    der: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    /// Whether this process can have the CA sign a new one (false for the
    /// responder an offline batch CA signed at authorization, which lasts
    /// the batch CA's lifetime).
    renewable: bool,
}

impl DelegatedResponder {
    fn due_for_renewal(&self, now: OffsetDateTime) -> bool {
        if self.renewable {
            now >= self.not_before + (self.not_after - self.not_before) / 2
        } else {
            now > self.not_after
        }
    }
}

struct CachedResponse {
    status: Status,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    /// The responder certificate that signed it.
    responder: Arc<DelegatedResponder>,
    der: Vec<u8>,
}

/// The responder's state in one process: our CAs as OCSP names them, their
/// delegated responders, and the responses signed so far.
#[derive(Default)]
pub(crate) struct OcspState {
    issuers: Mutex<Vec<(String, IssuerId)>>,
    responders: tokio::sync::Mutex<HashMap<String, Arc<DelegatedResponder>>>,
    responses: Mutex<HashMap<(String, Serial), CachedResponse>>,
}

fn failure(f: Failure) -> OcspAnswer {
    OcspAnswer {
        der: ocsp::failure_response(f),
        valid: None,
        failure: Some(f),
    }
}

impl Idmint {
    /// Answers a DER OCSP request. Always an `OCSPResponse`: malformed for
    /// garbage, unauthorized when it names no certificate of a CA we sign
    /// for; otherwise each certificate of the first such CA is answered
    /// (good, revoked or unknown), and certificates of other issuers are
    /// `unknown` (RFC 6960 §2.2).
    pub async fn ocsp_respond(&self, request_der: &[u8]) -> OcspAnswer {
        let Ok(request) = Request::from_der(request_der) else {
            return failure(Failure::MalformedRequest);
        };
        match self.ocsp_answer(&request).await {
            Ok(Some(answer)) => answer,
            Ok(None) => failure(Failure::Unauthorized),
            Err(e) => {
                tracing::error!("OCSP response failed: {e}");
                failure(Failure::InternalError)
            }
        }
    }

    async fn ocsp_answer(&self, request: &Request) -> Result<Option<OcspAnswer>, FlowError> {
        let queries: Vec<Query<'_>> = request.queries().collect();
        let mut issuer = None;
        for query in &queries {
            if let Some(found) = self.issuer_of(query).await? {
                issuer = Some(found);
                break;
            }
        }
        let Some((ca, issuer)) = issuer else {
            return Ok(None);
        };
        let Some(responder) = self.ocsp_responder(&ca).await? else {
            return Ok(None);
        };
        let mut answers = Vec::with_capacity(queries.len());
        for query in &queries {
            let status = if issuer.issued(query) {
                self.ocsp_status(&ca, &query.serial()).await?
            } else {
                Status::Unknown
            };
            answers.push(Answer {
                query: *query,
                status,
            });
        }
        let now = OffsetDateTime::now_utc();
        // The one-certificate request of RFC 5019: served from the cache
        // while its status is unchanged and it is fresh.
        let key = match answers.as_slice() {
            [one] => Some((ca.clone(), one.query.serial())),
            _ => None,
        };
        if let (Some(key), [one]) = (&key, answers.as_slice()) {
            if let Some(cached) = self.ocsp_state().responses.lock().ok().and_then(|cache| {
                cache
                    .get(key)
                    .filter(|c| {
                        c.status == one.status
                            && Arc::ptr_eq(&c.responder, &responder)
                            && now < c.this_update + RESPONSE_VALIDITY / 2
                    })
                    .map(|c| OcspAnswer {
                        der: c.der.clone(),
                        valid: Some((c.this_update, c.next_update)),
                        failure: None,
                    })
            }) {
                return Ok(Some(cached));
            }
        }
        let this_update = now.replace_nanosecond(0).unwrap_or(now);
        let next_update = this_update + RESPONSE_VALIDITY;
        let der = ocsp::sign_response(
            &Responder {
                key: &responder.signer,
                certificate_der: &responder.der,
                delegated: true,
            },
            &answers,
            this_update,
            next_update,
        )?;
        if let (Some(key), [one]) = (key, answers.as_slice()) {
            if let Ok(mut cache) = self.ocsp_state().responses.lock() {
                if cache.len() >= CACHED_RESPONSES {
                    cache.clear();
                }
                cache.insert(
                    key,
                    CachedResponse {
                        status: one.status,
                        this_update,
                        next_update,
                        responder: responder.clone(),
                        der: der.clone(),
                    },
                );
            }
        }
        Ok(Some(OcspAnswer {
            der,
            valid: Some((this_update, next_update)),
            failure: None,
        }))
    }

    /// The CA (one we sign for) that issued the certificate `query` names.
    /// The list of CAs is read again when nothing matches: CAs are added
    /// (batch CAs, intermediates), never changed.
    async fn issuer_of(&self, query: &Query<'_>) -> Result<Option<(String, IssuerId)>, FlowError> {
        let find = |issuers: &[(String, IssuerId)]| {
            issuers.iter().find(|(_, id)| id.issued(query)).cloned()
        };
        let state = self.ocsp_state();
        if let Some(found) = state.issuers.lock().ok().and_then(|i| find(&i)) {
            return Ok(Some(found));
        }
        let mut issuers = Vec::new();
        for ca in self.store().list_cas().await? {
            if ca.kind.is_outside() {
                continue;
            }
            match IssuerId::of(&ca.certificate_der) {
                Ok(id) => issuers.push((ca.name, id)),
                Err(e) => tracing::warn!(ca = %ca.name, "CA certificate unreadable for OCSP: {e}"),
            }
        }
        let found = find(&issuers);
        if let Ok(mut cached) = state.issuers.lock() {
            *cached = issuers;
        }
        Ok(found)
    }

    /// The status of certificate `serial` of `ca`, as its registry record says.
    async fn ocsp_status(&self, ca: &str, serial: &str) -> Result<Status, FlowError> {
        let Some(c) = self.store().revocation_state(ca, serial).await? else {
            return self.child_ca_status(ca, serial).await;
        };
        Ok(match c.status {
            CertificateStatus::Active => Status::Good,
            CertificateStatus::Revoked => Status::Revoked {
                at: c.revoked_at.unwrap_or(c.updated),
                reason: c.revocation_reason.unwrap_or(RevocationReason::Unspecified),
            },
            // Suspended or not yet activated: on hold, so relying parties refuse it.
            CertificateStatus::Inactive | CertificateStatus::PendingActivation => Status::Revoked {
                at: c.updated,
                reason: RevocationReason::CertificateHold,
            },
        })
    }

    /// The status of a CA `ca` signed, by its certificate's serial
    /// (`unknown` when no CA of ours has it).
    async fn child_ca_status(&self, ca: &str, serial: &str) -> Result<Status, FlowError> {
        for child in self.store().list_cas().await? {
            if child.parent.as_deref() != Some(ca) || child.name == ca {
                continue;
            }
            let Ok(info) = idmint_pki::CertificateInfo::from_der(&child.certificate_der) else {
                continue;
            };
            if info.serial == serial {
                return Ok(match child.revoked_at {
                    None => Status::Good,
                    Some(at) => Status::Revoked {
                        at,
                        reason: child
                            .revocation_reason
                            .unwrap_or(RevocationReason::Unspecified),
                    },
                });
            }
        }
        Ok(Status::Unknown)
    }

    /// The delegated responder of `ca`, issued (or renewed) now if there is
    /// none or half its validity has passed; `None` for a CA whose key is
    /// not here (an offline batch CA).
    async fn ocsp_responder(&self, ca: &str) -> Result<Option<Arc<DelegatedResponder>>, FlowError> {
        let now = OffsetDateTime::now_utc();
        let mut responders = self.ocsp_state().responders.lock().await;
        if let Some(r) = responders.get(ca).filter(|r| !r.due_for_renewal(now)) {
            return Ok(Some(r.clone()));
        }
        let authority = match self.signing_ca(ca).await {
            Ok(a) => a,
            Err(FlowError::CaCannotSign(_)) => {
                // An offline batch CA: the responder it signed at `batch
                // authorize`, if its batch is that recent.
                let stored = match self.offline_ocsp_responder(ca).await {
                    Ok(r) => r,
                    Err(FlowError::BatchCaKeyAtFactory { .. } | FlowError::CaCannotSign(_)) => {
                        return Ok(None)
                    }
                    Err(e) => return Err(e),
                };
                if now > stored.not_after {
                    return Ok(None);
                }
                let responder = Arc::new(DelegatedResponder {
                    signer: stored.signer,
                    der: stored.der,
                    not_before: stored.not_before,
                    not_after: stored.not_after,
                    renewable: false,
                });
                responders.insert(ca.to_string(), responder.clone());
                return Ok(Some(responder));
            }
            Err(e) => return Err(e),
        };
        let key_type = match authority.signer().key_type() {
            // The responder signs as fast as the CA would, with a curve key.
            KeyType::P384 => KeyType::P384,
            _ => KeyType::P256,
        };
        let key = DeviceKey::generate(key_type)?;
        let issued = authority.issue_ocsp_responder(&key, RESPONDER_VALIDITY)?;
        let actor = "server:ocsp";
        let mut tx = self.store().begin(actor).await?;
        register_service_certificate(&mut tx, &issued, ca, AuditEvent::OcspResponderIssued, false)
            .await?;
        tx.commit().await?;
        tracing::info!(%ca, serial = %issued.info.serial, "delegated OCSP responder certificate issued");
        let responder = Arc::new(DelegatedResponder {
            signer: Signer::software(key),
            der: issued.der,
            not_before: issued.info.not_before,
            not_after: issued.info.not_after,
            renewable: true,
        });
        responders.insert(ca.to_string(), responder.clone());
        Ok(Some(responder))
    }
}
