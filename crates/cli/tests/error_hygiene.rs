//! End-to-end test of error hygiene on the HTTPS API (issue 11): when the
//! store fails under a running `idmint serve`, curl gets a stable error code
//! and a correlation id, never SQL or a file path, and the server's log has
//! the same id with the detail.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::Env;
use serde_json::Value;

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `idmint serve` (HTTPS only) with its log going to `log`.
fn serve(env: &Env, log: &Path) -> Server {
    let mut cmd = env.cmd();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--mqtt-listen", "off"]);
    let (child, listening) = common::spawn_serve(&mut cmd, false, Some(log));
    Server {
        child,
        port: listening.https,
    }
}

/// GET with a bearer token: (HTTP status, body).
fn get(root: &Path, url: &str, token: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(root)
        .args(["-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The log line that names `id`, waiting a little for it to be written.
fn log_line_with(log: &Path, id: &str) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(id)) {
            return line.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no log line with {id}: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_failing_store_answers_a_code_and_a_correlation_id_never_sql_or_paths() {
    let env = Env::init(&[]);
    let (root, _) = env.ca_files();
    let out = env.ok(&["token", "create", "--name", "reader1", "--role", "reader"]);
    let token = out
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().last())
        .expect("token")
        .to_string();
    let log = env.path("serve.log");
    let server = serve(&env, &log);
    let url = format!(
        "https://localhost:{}/api/v1/things/no-such-thing",
        server.port
    );

    // A 4xx is for people: it names what is missing, and nothing internal.
    let (code, body) = get(&root, &url, &token);
    assert_eq!(code, 404, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["error"], "not_found", "{body}");
    assert!(answer["message"]
        .as_str()
        .unwrap_or("")
        .contains("no-such-thing"));

    // Break the store under the running server.
    let db = env.data().join("registry.db");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("DROP TABLE things;")
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, body) = get(&root, &url, &token);
    assert_eq!(code, 500, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["error"], "internal", "{body}");
    assert_eq!(answer["message"], "internal error", "{body}");
    let id = answer["correlationId"].as_str().expect("correlationId");
    assert_eq!(id.len(), 16, "{body}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{body}");
    let lower = body.to_ascii_lowercase();
    for leak in [
        "no such table",
        "sql",
        "database",
        "store error",
        "things",
        "/",
    ] {
        assert!(!lower.contains(leak), "{leak:?} leaked: {body}");
    }
    let data = env.data();
    assert!(!body.contains(data.to_str().unwrap_or("?")), "{body}");

    // Two failures, two ids.
    let (_, again) = get(&root, &url, &token);
    let again: Value = serde_json::from_str(&again).expect("JSON");
    assert_ne!(again["correlationId"], answer["correlationId"]);

    // The server's log has the id with the detail, at error level.
    let line = log_line_with(&log, id);
    assert!(line.contains("no such table"), "{line}");
    assert!(line.contains("ERROR"), "{line}");
}
