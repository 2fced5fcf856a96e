//! The load generators behind `bench/fleet.sh` and `bench/est.sh` must
//! succeed, not just run: every simulated device provisions (under the
//! policy its template attaches) and reconnects with its new certificate.

mod common;

use common::Env;

#[test]
fn loadtest_fleet_provisions_and_reconnects_every_device_under_its_policy() {
    let env = Env::init(&[]);
    let out = env
        .cmd()
        .args(["loadtest", "fleet", "--devices", "12", "--concurrency", "3"])
        .output()
        .expect("loadtest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("12 devices provisioned, 0 failed"), "{text}");
    let policies = env.json(&["policy", "list", "--json"]);
    assert_eq!(policies.as_array().map(Vec::len), Some(1), "{policies}");
    assert_eq!(policies[0]["attachments"], 12, "{policies}");
}
