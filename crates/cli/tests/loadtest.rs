//! The load generators behind `bench/fleet.sh`, `bench/est.sh` and
//! `bench/ocsp.sh` must succeed, not just run: every simulated device
//! provisions (under the policy its template attaches) and reconnects with
//! its new certificate, every enrollment is answered, every OCSP request
//! gets a signed response.

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

fn run_ok(env: &Env, args: &[&str]) -> String {
    let out = env.cmd().args(args).output().expect("loadtest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn loadtest_est_enrolls_every_request() {
    let env = Env::init(&[]);
    let text = run_ok(
        &env,
        &["loadtest", "est", "--requests", "20", "--clients", "4"],
    );
    assert!(text.contains("20 enrollments, 0 failed"), "{text}");
}

#[test]
fn loadtest_ocsp_gets_a_signed_answer_for_every_request() {
    let env = Env::init(&[]);
    run_ok(
        &env,
        &[
            "cert",
            "new",
            "--count",
            "5",
            "--thing-prefix",
            "ocsp-load-",
            "--out-dir",
            env.path("out").to_str().unwrap(),
        ],
    );
    let text = run_ok(
        &env,
        &[
            "loadtest",
            "ocsp",
            "--requests",
            "60",
            "--certificates",
            "5",
            "--clients",
            "4",
        ],
    );
    assert!(
        text.contains("60 OCSP responses for 5 certificates, 0 failed"),
        "{text}"
    );
}
