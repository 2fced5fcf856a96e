//! Provisioning requests per claim certificate, counted in the store so
//! that a claim's rate limit holds across every server (and process) on it.
//!
//! Each claim certificate has one row: the start of its current one-minute
//! window (opened by the first request after the last window ended) and the
//! requests counted in it. One atomic upsert counts a request and answers
//! it, so two servers racing for the last slot cannot both have it. These
//! counters are not registry records: they are not audited, and ended
//! windows are deleted ([`Store::forget_claim_windows`]).

use sqlx::Row;

use crate::{RegistryError, Store};

/// The length of a claim's rate window, seconds.
pub const CLAIM_WINDOW_SECS: i64 = 60;

/// What the store answered one provisioning request of a claim certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum ClaimAllowance {
    /// Within the limit: go on.
    Allowed,
    /// Over the limit: refuse it.
    Throttled {
        /// Seconds until the window ends (at least 1).
        retry_after_secs: u64,
    },
}

impl Store {
    /// Counts one provisioning request of claim certificate `certificate_id`
    /// at `now` (Unix seconds) against `per_minute` requests per window
    /// (0: no limit, nothing counted).
    pub async fn count_claim_request(
        &self,
        certificate_id: &str,
        per_minute: u32,
        now: i64,
    ) -> Result<ClaimAllowance, RegistryError> {
        if per_minute == 0 {
            return Ok(ClaimAllowance::Allowed);
        }
        let _gate = self.lock_writers().await?;
        // Both SET expressions read the row as it was: a window that ended
        // restarts at `now` with this request as its first.
        let row = sqlx::query(
            "INSERT INTO claim_requests (certificate_id, window_start, requests) VALUES ($1, $2, 1) \
             ON CONFLICT (certificate_id) DO UPDATE SET \
             requests = CASE WHEN claim_requests.window_start <= $3 THEN 1 ELSE claim_requests.requests + 1 END, \
             window_start = CASE WHEN claim_requests.window_start <= $3 THEN $2 ELSE claim_requests.window_start END \
             RETURNING requests, window_start",
        )
        .bind(certificate_id)
        .bind(now)
        .bind(now - CLAIM_WINDOW_SECS)
        .fetch_one(&self.writer)
        .await?;
        let requests: i64 = row.try_get(0)?;
        let window_start: i64 = row.try_get(1)?;
        if requests <= i64::from(per_minute) {
            Ok(ClaimAllowance::Allowed)
        } else {
            let left = window_start + CLAIM_WINDOW_SECS - now;
            Ok(ClaimAllowance::Throttled {
                retry_after_secs: u64::try_from(left).unwrap_or(0).max(1),
            })
        }
    }

    /// Deletes the counters of windows that ended before `now`; returns how
    /// many.
    pub async fn forget_claim_windows(&self, now: i64) -> Result<u64, RegistryError> {
        let _gate = self.lock_writers().await?;
        let done = sqlx::query("DELETE FROM claim_requests WHERE window_start <= $1")
            .bind(now - CLAIM_WINDOW_SECS)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}
