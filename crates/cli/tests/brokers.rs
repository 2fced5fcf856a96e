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

use common::http::{cert_id, curl, postgres_env, run, token, Env};
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
    idmint_testkit::skip(MOSQUITTO, "apt-get install mosquitto");
    false
}

/// A data directory with the device policy created.
fn init_with_policy(env: &Env) {
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
    init_with_policy(env);
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

/// The HTTP authorizers EMQX and mosquitto-go-auth call, driven with the
/// exact request shapes their sources send, against a real `idmint serve`.
#[test]
fn http_authorizers_answer_from_the_live_registry() {
    let env = Env::new();
    init_with_policy(&env);
    let a = device(&env, "dev-a");
    let reader = token(&env, "broker", "reader", None);
    let serve = env.serve(&[]);
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    let base = format!("https://127.0.0.1:{}/api/v1/broker", serve.port);
    let bearer = format!("Authorization: Bearer {reader}");

    let emqx = |body: &str, auth: &str| {
        curl(
            &root,
            &format!("{base}/emqx/authorize"),
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-H",
                auth,
                "--data",
                body,
            ],
        )
    };
    let ask = |cn: &str, topic: &str, action: &str| {
        let body = serde_json::json!({
            "clientid": "c1", "username": "whatever-the-client-said", "cert_common_name": cn,
            "topic": topic, "action": action, "peerhost": "127.0.0.1", "qos": "1", "retain": "false"
        })
        .to_string();
        let (status, text) = emqx(&body, &bearer);
        assert_eq!(status, 200, "{text}");
        serde_json::from_str::<serde_json::Value>(&text).expect("JSON")["result"]
            .as_str()
            .expect("result")
            .to_string()
    };
    assert_eq!(ask("dev-a", "dev/dev-a/telemetry", "publish"), "allow");
    assert_eq!(
        ask("dev-a", "dev/dev-a/admin", "publish"),
        "deny",
        "Deny wins"
    );
    assert_eq!(ask("dev-a", "dev/dev-b/telemetry", "publish"), "deny");
    assert_eq!(
        ask("dev-b", "dev/dev-b/telemetry", "publish"),
        "deny",
        "no certificate, no access"
    );
    assert_eq!(
        ask("", "dev/dev-a/telemetry", "publish"),
        "deny",
        "no client certificate"
    );
    assert_eq!(ask("dev-a", "dev/dev-a/#", "subscribe"), "allow");
    assert_eq!(ask("dev-a", "#", "subscribe"), "deny");
    let (status, _) = emqx(
        r#"{"topic":"t","action":"publish"}"#,
        "Authorization: Bearer nope",
    );
    assert_eq!(status, 401, "an unknown token gets no answer");
    let (status, text) = emqx(r#"{"topic":"t","action":"delete"}"#, &bearer);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("expected publish or subscribe"), "{text}");

    // mosquitto-go-auth: JSON and form parameters, token in the path.
    let go = |path: &str, args: &[&str]| {
        let mut all = vec!["-X", "POST"];
        all.extend_from_slice(args);
        curl(&root, &format!("{base}/go-auth/{reader}/{path}"), &all)
    };
    let json_acl = |topic: &str, acc: i64| {
        let body =
            serde_json::json!({"username": "dev-a", "clientid": "c1", "topic": topic, "acc": acc})
                .to_string();
        go(
            "acl",
            &[
                "-H",
                "Content-Type: application/json",
                "--data",
                body.as_str(),
            ],
        )
        .0
    };
    assert_eq!(json_acl("dev/dev-a/telemetry", 2), 200);
    assert_eq!(json_acl("dev/dev-a/telemetry", 3), 200);
    assert_eq!(json_acl("dev/dev-a/#", 4), 200);
    assert_eq!(json_acl("dev/dev-b/telemetry", 1), 403);
    assert_eq!(json_acl("dev/dev-a/admin", 2), 403);
    let (status, text) = go(
        "acl",
        &[
            "--data",
            "username=dev-a&clientid=c1&topic=dev%2Fdev-a%2Fx&acc=2",
        ],
    );
    assert_eq!(status, 200, "form parameters: {text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).expect("JSON")["ok"],
        true
    );
    assert_eq!(go("superuser", &["--data", "username=dev-a"]).0, 403);
    assert_eq!(
        go("user", &["--data", "username=dev-a&password=x&clientid=c1"]).0,
        403,
        "passwords are never accepted"
    );
    let (status, _) = curl(
        &root,
        &format!("{base}/go-auth/not-a-token/acl"),
        &[
            "-X",
            "POST",
            "--data",
            "username=dev-a&topic=dev%2Fdev-a%2Fx&acc=2",
        ],
    );
    assert_eq!(status, 401);

    // Revoked: denied at once, from the live registry.
    env.ok(&["cert", "revoke", &a.2]);
    assert_eq!(ask("dev-a", "dev/dev-a/telemetry", "publish"), "deny");
    assert_eq!(json_acl("dev/dev-a/telemetry", 2), 403);
}
