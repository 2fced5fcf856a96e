//! HTTP caching validators shared by the revocation endpoints (OCSP and
//! CRLs): a strong ETag of the body and HTTP-dates.

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

/// A strong ETag for `body`: the same bytes get the same tag on every server.
pub(crate) fn etag(body: &[u8]) -> String {
    format!("\"{}\"", &idmint_pki::sha256_hex(body)[..32])
}

/// `at` as an HTTP-date (RFC 9110 §5.6.7).
pub(crate) fn http_date(at: OffsetDateTime) -> String {
    let secs = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdate() {
        let at =
            OffsetDateTime::from_unix_timestamp(784_111_777).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(http_date(at), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn etags_are_quoted_and_follow_the_bytes() {
        assert_eq!(etag(b"a"), etag(b"a"));
        assert_ne!(etag(b"a"), etag(b"b"));
        assert!(etag(b"a").starts_with('"') && etag(b"a").ends_with('"'));
    }
}
