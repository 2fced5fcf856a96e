//! Audit checkpoints against the attack the plain chain cannot see: whoever
//! can write the database deletes the newest audit records and rewrites the
//! stored head, and `audit verify` alone still reports the chain intact. A
//! checkpoint kept outside the database catches it, on SQLite and on
//! PostgreSQL; a forged or foreign checkpoint is refused.

mod common;

use std::process::Command;

use common::http::{postgres_env, run, Env};

/// Runs SQL on the environment's store (sqlite3 or psql).
fn sql(env: &Env, statement: &str) -> String {
    let (ok, text) = match &env.store {
        Some(url) => run(Command::new("psql").args([url.as_str(), "-At", "-c", statement])),
        None => run(Command::new("sqlite3")
            .arg(env.data().join("registry.db"))
            .arg(statement)),
    };
    assert!(ok, "{statement}: {text}");
    text.trim().to_string()
}

fn new_cert(env: &Env, thing: &str) {
    env.ok(&[
        "cert",
        "new",
        "--thing",
        thing,
        "--out",
        env.path(&format!("{thing}.pem")).to_str().unwrap(),
        "--out-key",
        env.path(&format!("{thing}.key")).to_str().unwrap(),
    ]);
}

fn verify(env: &Env, checkpoint: Option<&std::path::Path>) -> (bool, String) {
    let mut args = vec!["audit", "verify"];
    let path;
    if let Some(p) = checkpoint {
        path = p.to_string_lossy().into_owned();
        args.extend(["--checkpoint", path.as_str()]);
    }
    run(&mut env.idmint(&args))
}

fn truncation_is_caught(env: Env) {
    env.ok(&["init", "--org", "Audit Co"]);
    for i in 0..3 {
        new_cert(&env, &format!("before-{i}"));
    }
    let checkpoint = env.path("checkpoint.json");
    env.ok(&["audit", "checkpoint", "--out", checkpoint.to_str().unwrap()]);
    let taken: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).expect("checkpoint"))
            .expect("JSON");
    let records = taken["records"].as_i64().expect("records");
    assert!(records >= 6, "{taken}");
    assert_eq!(taken["format"], "idmint-audit-checkpoint/1");

    // The log grows after the checkpoint: still intact against it.
    new_cert(&env, "after-0");
    let (ok, text) = verify(&env, Some(&checkpoint));
    assert!(ok, "{text}");
    assert!(text.contains("intact"), "{text}");

    // The attack: the newest records deleted, back to before the
    // checkpoint, and the head rewritten to the new last record.
    let keep = records - 2;
    sql(&env, &format!("DELETE FROM audit_log WHERE seq > {keep}"));
    let hash = sql(
        &env,
        &format!("SELECT hash FROM audit_log WHERE seq = {keep}"),
    );
    sql(
        &env,
        &format!("UPDATE chain_head SET seq = {keep}, hash = '{hash}' WHERE id = 1"),
    );
    // The chain alone cannot tell...
    let (ok, text) = verify(&env, None);
    assert!(ok, "the plain check should not see this: {text}");
    // ...the checkpoint can.
    let (ok, text) = verify(&env, Some(&checkpoint));
    assert!(!ok, "{text}");
    assert!(text.contains("removed from the end"), "{text}");

    // A checkpoint edited to vouch for the shorter log is refused.
    let mut forged = taken.clone();
    forged["records"] = keep.into();
    forged["headHash"] = hash.clone().into();
    let forged_path = env.path("forged.json");
    std::fs::write(&forged_path, forged.to_string()).expect("forged");
    let (ok, text) = verify(&env, Some(&forged_path));
    assert!(!ok, "{text}");
    assert!(text.contains("MAC does not verify"), "{text}");

    // So is one made with another passphrase, and garbage says what it wants.
    let (ok, text) = run(env
        .idmint(&[
            "audit",
            "verify",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
        ])
        .env("IDMINT_CA_PASSPHRASE", "another passphrase"));
    assert!(!ok, "{text}");
    assert!(text.contains("MAC does not verify"), "{text}");
    let garbage = env.path("garbage.json");
    std::fs::write(&garbage, "{\"records\": \"many\"}").expect("garbage");
    let (ok, text) = verify(&env, Some(&garbage));
    assert!(!ok, "{text}");
    assert!(text.contains("idmint audit checkpoint --out"), "{text}");
}

#[test]
fn a_checkpoint_catches_records_removed_from_the_end_on_sqlite() {
    truncation_is_caught(Env::new());
}

#[test]
fn a_checkpoint_catches_records_removed_from_the_end_on_postgres() {
    if let Some(env) = postgres_env("audit_checkpoint") {
        truncation_is_caught(env);
    }
}

#[test]
fn a_broken_log_gets_no_checkpoint() {
    let env = Env::new();
    env.ok(&["init", "--org", "Audit Co"]);
    new_cert(&env, "dev-0");
    sql(
        &env,
        "UPDATE audit_log SET actor = 'someone else' WHERE seq = 2",
    );
    let (ok, text) = run(&mut env.idmint(&["audit", "checkpoint"]));
    assert!(!ok, "{text}");
    assert!(text.contains("no checkpoint taken"), "{text}");
}

#[test]
fn serve_writes_checkpoints_on_a_schedule() {
    let env = Env::new();
    env.ok(&["init", "--org", "Audit Co"]);
    let dir = env.path("anchors");
    let config = env.data().join("idmint.toml");
    let text = std::fs::read_to_string(&config).expect("idmint.toml");
    assert!(text.contains("checkpoint_interval_secs = 300"), "{text}");
    let set = format!(
        "checkpoint_dir = \"{}\"\ncheckpoint_interval_secs = 1",
        dir.display()
    );
    std::fs::write(
        &config,
        text.replace("checkpoint_interval_secs = 300", &set),
    )
    .expect("write");
    let _server = env.serve(&[]);
    let latest = dir.join("latest.json");
    let records = |path: &std::path::Path| -> i64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["records"].as_i64())
            .unwrap_or(0)
    };
    // Written before serving starts.
    let first = records(&latest);
    assert!(first > 0, "no checkpoint in {}", dir.display());
    let (ok, text) = verify(&env, Some(&latest));
    assert!(ok, "{text}");
    // The log grows: a new checkpoint follows within the interval.
    new_cert(&env, "served-0");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while records(&latest) <= first && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let now = records(&latest);
    assert!(now > first, "latest.json stayed at {first} records");
    assert!(dir.join(format!("checkpoint-{now}.json")).exists());
    assert!(dir.join(format!("checkpoint-{first}.json")).exists());
}
