//! Device traffic on a real broker that trusts idmint: a mosquitto started
//! here with the set-up `idmint broker mosquitto` writes and the CRL
//! directory `idmint serve --crl-dir` keeps current. A device uses its own
//! topics, another device's publish onto them is dropped, and after
//! `cert revoke` the broker refuses the revoked device within 10 s, without
//! a restart. On SQLite and on PostgreSQL.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{cert_id, postgres_env, run, Env};
use common::{free_port, openssl, wait_for_listener};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

const DEVICE_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
 {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/dev/${iot:Connection.Thing.ThingName}/*"},
 {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/dev/${iot:Connection.Thing.ThingName}/#"},
 {"Effect":"Allow","Action":"iot:Receive","Resource":"arn:aws:iot:*:*:topic/dev/${iot:Connection.Thing.ThingName}/*"},
 {"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/dev/${iot:Connection.Thing.ThingName}/admin"},
 {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/c/${iot:ClientId}"}]}"#;

/// A running mosquitto, killed on drop.
struct Broker {
    child: Child,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto_installed() -> bool {
    if Path::new(MOSQUITTO).exists() {
        return true;
    }
    assert!(
        std::env::var_os("IDMINT_REQUIRE_ALL").is_none(),
        "{MOSQUITTO} is not installed (apt-get install mosquitto), and IDMINT_REQUIRE_ALL (scripts/test.sh) forbids skipping"
    );
    eprintln!("skipped: {MOSQUITTO} is not installed (apt-get install mosquitto)");
    false
}

/// A device certificate and key for `thing`, with the policy attached.
fn device(env: &Env, thing: &str) -> (String, String, String) {
    let cert = env.path(&format!("{thing}.pem"));
    let key = env.path(&format!("{thing}.key"));
    env.ok(&[
        "cert",
        "new",
        "--thing",
        thing,
        "--out",
        cert.to_str().expect("path"),
        "--out-key",
        key.to_str().expect("path"),
    ]);
    let id = cert_id(&cert);
    env.ok(&["policy", "attach", "DevicePolicy", "--cert", &id]);
    (cert.display().to_string(), key.display().to_string(), id)
}

/// `mosquitto_pub` as a device; whether the broker took the connection.
fn publish(
    broker: &Broker,
    ca: &Path,
    device: &(String, String, String),
    topic: &str,
    message: &str,
) -> (bool, String) {
    run(Command::new("mosquitto_pub").args([
        "-h",
        "127.0.0.1",
        "-p",
        &broker.port.to_string(),
        "--cafile",
        ca.to_str().expect("path"),
        "--cert",
        &device.0,
        "--key",
        &device.1,
        "-i",
        "pub",
        "-q",
        "1",
        "-t",
        topic,
        "-m",
        message,
    ]))
}

fn scenario(env: &Env) {
    if !mosquitto_installed() {
        return;
    }
    env.ok(&["init"]);
    let policy = env.path("device-policy.json");
    std::fs::write(&policy, DEVICE_POLICY).expect("policy");
    env.ok(&[
        "policy",
        "create",
        "DevicePolicy",
        "--document",
        policy.to_str().expect("path"),
    ]);
    let a = device(env, "dev-a");
    let b = device(env, "dev-b");

    // The broker's own TLS identity (not idmint's business).
    let server_cert = env.path("broker-server.pem");
    let server_key = env.path("broker-server.key");
    let (ok, text) = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-days",
        "1",
        "-keyout",
        server_key.to_str().expect("path"),
        "-out",
        server_cert.to_str().expect("path"),
    ]);
    assert!(ok, "openssl: {text}");

    let crls = env.path("crls");
    let pid_file = env.path("mosquitto.pid");
    let reload = format!("kill -HUP $(cat {})", pid_file.display());
    let serve = env.serve(&[
        "--crl-dir",
        crls.to_str().expect("path"),
        "--crl-reload-cmd",
        &reload,
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !crls.join("all.crl.pem").exists() {
        assert!(Instant::now() < deadline, "serve writes the CRLs at start");
        std::thread::sleep(Duration::from_millis(50));
    }
    for ca in ["root", "issuing"] {
        let (ok, text) = openssl(&[
            "crl",
            "-noout",
            "-in",
            crls.join(format!("{ca}.crl.pem")).to_str().expect("path"),
        ]);
        assert!(ok, "{ca}.crl.pem: {text}");
    }

    let out = env.path("broker");
    let port = free_port();
    let (ok, text) = run(&mut env.idmint(&[
        "broker",
        "mosquitto",
        "--out",
        out.to_str().expect("path"),
        "--crl-dir",
        crls.to_str().expect("path"),
        "--port",
        &port.to_string(),
        "--bind-address",
        "127.0.0.1",
        "--certfile",
        server_cert.to_str().expect("path"),
        "--keyfile",
        server_key.to_str().expect("path"),
    ]));
    assert!(ok, "broker mosquitto: {text}");
    assert!(
        text.contains("iot:ClientId"),
        "the statement with no mosquitto form is reported: {text}"
    );
    let acl = std::fs::read_to_string(out.join("acl")).expect("acl");
    assert!(acl.contains("user dev-a\n"), "{acl}");
    assert!(acl.contains("topic deny dev/dev-a/admin\n"), "{acl}");
    assert!(acl.contains("topic readwrite dev/dev-a/#\n"), "{acl}");
    assert!(!acl.contains("c/"), "left out, so denied: {acl}");

    let mut conf = std::fs::read_to_string(out.join("mosquitto.conf")).expect("conf");
    conf.push_str(&format!(
        "pid_file {}\nuser root\nlog_dest stderr\n",
        pid_file.display()
    ));
    let conf_file = env.path("test-mosquitto.conf");
    std::fs::write(&conf_file, conf).expect("conf");
    let child = Command::new(MOSQUITTO)
        .args(["-c", conf_file.to_str().expect("path")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mosquitto");
    let broker = Broker { child, port };
    wait_for_listener(port);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }

    // dev-a listens on its own topics.
    let subscriber = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--cafile",
            server_cert.to_str().expect("path"),
            "--cert",
            &a.0,
            "--key",
            &a.1,
            "-i",
            "sub",
            "-t",
            "dev/dev-a/#",
            "-v",
            "-C",
            "1",
            "-W",
            "15",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mosquitto_sub");
    std::thread::sleep(Duration::from_millis(700));
    // dev-b may connect, but its publish onto dev-a's topic is dropped, and
    // so is dev-a's own publish to the denied topic.
    let (ok, text) = publish(&broker, &server_cert, &b, "dev/dev-a/cmd", "from-b");
    assert!(ok, "dev-b connects: {text}");
    let (ok, text) = publish(&broker, &server_cert, &a, "dev/dev-a/admin", "denied");
    assert!(ok, "{text}");
    let (ok, text) = publish(&broker, &server_cert, &a, "dev/dev-a/telemetry", "from-a");
    assert!(ok, "dev-a publishes: {text}");
    let got = subscriber.wait_with_output().expect("mosquitto_sub");
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "dev/dev-a/telemetry from-a",
        "only dev-a's own message arrives: {}",
        String::from_utf8_lossy(&got.stderr)
    );

    // Revoked: refused within 10 s, the broker still running.
    env.ok(&["cert", "revoke", &a.2, "--reason", "keyCompromise"]);
    let revoked = Instant::now();
    loop {
        let (ok, _) = publish(&broker, &server_cert, &a, "dev/dev-a/telemetry", "after");
        if !ok {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(10),
            "the broker still takes the revoked certificate after 10 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("revoked device refused after {:?}", revoked.elapsed());
    let (ok, text) = publish(&broker, &server_cert, &b, "dev/dev-b/telemetry", "still");
    assert!(ok, "dev-b is not revoked: {text}");
    drop(serve);
}

#[test]
fn mosquitto_enforces_policies_and_refuses_a_revoked_device_sqlite() {
    scenario(&Env::new());
}

#[test]
fn mosquitto_enforces_policies_and_refuses_a_revoked_device_postgres() {
    if let Some(env) = postgres_env("brokers") {
        scenario(&env);
    }
}
