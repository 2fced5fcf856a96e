//! Day-one ergonomics. Errors that say what to do next: a not-found names the `list` command, a
//! wrong CA passphrase names IDMINT_CA_PASSPHRASE, a garbled CSR says what
//! was expected. Each is one line. And commands that script with `--json`.

mod common;

use common::Env;

#[test]
fn errors_name_the_next_step() {
    let env = Env::init(&[]);
    let err = env.fails(&["batch", "show", "nope"]);
    assert!(err.contains("`idmint batch list`"), "{err}");
    let err = env.fails(&["cert", "show", "00ff"]);
    assert!(err.contains("`idmint cert list`"), "{err}");

    let junk = env.path("junk.csr");
    std::fs::write(&junk, "junk\n").expect("junk");
    let err = env.fails(&["cert", "issue", "--csr", &junk.to_string_lossy()]);
    assert!(err.contains("PKCS#10") && err.contains("PEM"), "{err}");

    let out = env
        .cmd()
        .env("IDMINT_CA_PASSPHRASE", "not-the-passphrase")
        .args(["cert", "new", "--thing", "x"])
        .output()
        .expect("idmint");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("IDMINT_CA_PASSPHRASE"), "{err}");
    assert!(
        !env.path("x.key.pem").exists(),
        "a key was written for nothing"
    );
}

#[test]
fn token_create_scripts_with_json() {
    let env = Env::init(&[]);
    let v = env.json(&[
        "token", "create", "--name", "ci", "--role", "reader", "--json",
    ]);
    assert_eq!(v["name"], "ci");
    assert_eq!(v["role"], "reader");
    assert!(
        v["token"].as_str().is_some_and(|t| t.starts_with("idm_")),
        "{v}"
    );
}
