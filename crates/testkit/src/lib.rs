//! Test support shared by idmint's test suites (a dev-dependency only).
//!
//! [`skip`] is the one rule for a test whose real part is missing (a
//! PostgreSQL server, SoftHSM2, the age CLI, mosquitto, a pty): in CI
//! (`CI=true`, as CI services set it) or under `IDMINT_REQUIRE_ALL`
//! (`scripts/test.sh`) the test fails, naming the part; anywhere else it
//! says `SKIP` on stderr and the caller returns early. The `SKIP` line is
//! written past the test harness's output capture, so it shows in
//! `cargo test` output, where `.ci/run` looks for it.
//!
//! ```no_run
//! if !std::path::Path::new("/usr/bin/softhsm2-util").exists() {
//!     idmint_testkit::skip("SoftHSM2", "apt-get install softhsm2");
//!     return;
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod swtpm;

use std::io::Write;

/// The marker a skipped test prints at the start of its stderr line.
pub const SKIP_MARKER: &str = "SKIP";

/// Whether a missing part must fail the test rather than skip it: `CI`
/// is `true` (or `1`), or `IDMINT_REQUIRE_ALL` is set.
pub fn skipping_forbidden() -> bool {
    let ci = std::env::var("CI")
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(false);
    ci || std::env::var_os("IDMINT_REQUIRE_ALL").is_some()
}

/// Records that the running test cannot run its real part `part` (how to
/// get it: `remedy`). Panics, naming the part, when skipping is forbidden
/// ([`skipping_forbidden`]); otherwise prints `SKIP <test>: <part> …` on
/// stderr and returns, and the caller returns early.
#[track_caller]
pub fn skip(part: &str, remedy: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    if skipping_forbidden() {
        panic!(
            "{test}: {part} is missing ({remedy}), and skipping is forbidden here (CI=true or IDMINT_REQUIRE_ALL)"
        );
    }
    // Past the harness's capture (it only captures the print macros), so
    // the line shows even when the test passes.
    let _ = writeln!(
        std::io::stderr(),
        "{SKIP_MARKER} {test}: {part} is missing ({remedy}); the test did not run it"
    );
}
