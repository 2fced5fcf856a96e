//! A small Prometheus registry: requests by route and status, issuances,
//! errors and a latency histogram, in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    issuances: AtomicU64,
    errors: AtomicU64,
}

impl Metrics {
    /// Records a finished request.
    pub fn observe(&self, method: &str, route: &str, status: u16, latency: Duration) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((method.to_string(), route.to_string(), status))
                .or_default() += 1;
        }
        let secs = latency.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an issued certificate.
    pub fn issued(&self) {
        self.issuances.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP idmint_http_requests_total HTTP requests by method, route and status.\n# TYPE idmint_http_requests_total counter\n");
        if let Ok(map) = self.requests.lock() {
            for ((method, route, status), n) in map.iter() {
                let _ = writeln!(out, "idmint_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}", route.replace('"', "'"));
            }
        }
        out.push_str("# HELP idmint_http_request_duration_seconds Request latency.\n# TYPE idmint_http_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "idmint_http_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "idmint_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "idmint_http_request_duration_seconds_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "idmint_http_request_duration_seconds_count {count}");
        let _ = writeln!(out, "# HELP idmint_certificates_issued_total Certificates issued by this server.\n# TYPE idmint_certificates_issued_total counter\nidmint_certificates_issued_total {}", self.issuances.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP idmint_http_errors_total Requests that failed with a server error.\n# TYPE idmint_http_errors_total counter\nidmint_http_errors_total {}", self.errors.load(Ordering::Relaxed));
        out
    }
}
