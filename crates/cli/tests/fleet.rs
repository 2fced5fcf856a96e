//! End-to-end tests of fleet provisioning (scenario 5) with real MQTT
//! clients: paho-mqtt (MQTT 3.1.1 and 5) and mosquitto_rr/mosquitto_pub
//! against `idmint serve`, through a template with a pre-provisioning
//! webhook, JITP from an outside CA, and a trusted user's temporary claim;
//! then reconnection with the issued certificate, and the refusals.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::postgres_database;
use common::{openssl, openssl_csr, Env};
use serde_json::{json, Value};

const FLEET_TEMPLATE: &str = r#"{
  "Parameters": {
    "SerialNumber": {"Type": "String"},
    "Site": {"Type": "String", "Default": "lab"}
  },
  "Resources": {
    "thing": {
      "Type": "AWS::IoT::Thing",
      "Properties": {
        "ThingName": {"Fn::Join": ["", ["sensor-", {"Ref": "SerialNumber"}]]},
        "AttributePayload": {"site": {"Ref": "Site"}, "serial": {"Ref": "SerialNumber"}},
        "ThingGroups": ["fleet"]
      },
      "OverrideSettings": {"AttributePayload": "MERGE", "ThingGroups": "MERGE"}
    },
    "certificate": {
      "Type": "AWS::IoT::Certificate",
      "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"}
    },
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "DevicePolicy"}}
  },
  "DeviceConfiguration": {"site": {"Ref": "Site"}, "thing": {"Fn::Sub": "sensor-${SerialNumber}"}}
}"#;

/// The policy the fleet template attaches by name: any client id may
/// connect; a device uses the topics under `devices/<its thing>/`.
const DEVICE_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/*"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "arn:aws:iot:*:*:topic/devices/${iot:Connection.Thing.ThingName}/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "arn:aws:iot:*:*:topicfilter/devices/${iot:Connection.Thing.ThingName}/*"}
  ]
}"#;

const JITP_TEMPLATE: &str = r#"{
  "Parameters": {
    "AWS::IoT::Certificate::CommonName": {"Type": "String"},
    "AWS::IoT::Certificate::OrganizationalUnit": {"Type": "String"},
    "AWS::IoT::Certificate::Id": {"Type": "String"}
  },
  "Resources": {
    "thing": {
      "Type": "AWS::IoT::Thing",
      "Properties": {
        "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"},
        "AttributePayload": {"line": {"Ref": "AWS::IoT::Certificate::OrganizationalUnit"}}
      }
    },
    "certificate": {
      "Type": "AWS::IoT::Certificate",
      "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}
    },
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": {
      "Version": "2012-10-17",
      "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/*"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive", "iot:Subscribe"],
         "Resource": ["arn:aws:iot:*:*:topic/devices/${iot:Connection.Thing.ThingName}/*",
                      "arn:aws:iot:*:*:topicfilter/devices/${iot:Connection.Thing.ThingName}/*"]}
      ]
    }}}
  }
}"#;

struct Serve {
    child: Child,
    https: u16,
    mqtt: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(env: &Env) -> Serve {
    serve_logging(env, None)
}

/// `idmint serve` with HTTPS and MQTT; its log goes to `log` when given.
fn serve_logging(env: &Env, log: Option<&Path>) -> Serve {
    serve_from(env, None, log)
}

/// `idmint serve` on the data directory `data` (a copy of the
/// environment's: the configuration and CA keys of a second server on the
/// same store), or the environment's own.
fn serve_from(env: &Env, data: Option<&Path>, log: Option<&Path>) -> Serve {
    let mut cmd = env.cmd();
    if let Some(data) = data {
        cmd.env("IDMINT_DATA", data);
    }
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "127.0.0.1:0",
    ]);
    let (child, listening) = common::spawn_serve(&mut cmd, true, log);
    Serve {
        child,
        https: listening.https,
        mqtt: listening.mqtt.unwrap_or_default(),
    }
}

/// A pre-provisioning hook: allows serial numbers starting with "OK" and
/// overrides `Site`; records every request.
fn hook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let serial = request["parameters"]["SerialNumber"]
                .as_str()
                .unwrap_or("")
                .to_string();
            log.lock().expect("lock").push(request);
            let answer = if serial.starts_with("OK") {
                json!({"allowProvisioning": true, "parameterOverrides": {"Site": "hooked"}})
            } else {
                json!({"allowProvisioning": false})
            };
            let text = answer.to_string();
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, seen)
}

/// The paho-mqtt device script, ready to run.
fn paho_cmd(
    port: u16,
    root: &Path,
    cert: &Path,
    key: &Path,
    protocol: &str,
    csr: Option<&Path>,
    steps: &Value,
) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet_client.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["--port", &port.to_string(), "--protocol", protocol])
        .arg("--ca")
        .arg(root)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key);
    if let Some(csr) = csr {
        cmd.arg("--csr").arg(csr);
    }
    cmd.arg(steps.to_string());
    cmd
}

/// Waits (at most 15 s) for the file a paho script creates at a
/// `{"signal": PATH}` step, e.g. right after its subscription was granted.
fn await_signal(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "the MQTT client never reached {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn paho_report(out: std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "paho script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.stderr.is_empty() {
        eprintln!("paho script: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("paho output {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs the paho-mqtt device script; returns its report.
fn paho(
    port: u16,
    root: &Path,
    cert: &Path,
    key: &Path,
    protocol: &str,
    csr: Option<&Path>,
    steps: Value,
) -> Value {
    paho_report(
        paho_cmd(port, root, cert, key, protocol, csr, &steps)
            .output()
            .expect("python3 with paho-mqtt"),
    )
}

/// mosquitto_rr: one request, one response, on one MQTT 5 connection.
fn mosquitto_rr(
    port: u16,
    root: &Path,
    cert: &Path,
    key: &Path,
    topic: &str,
    message: &str,
) -> Value {
    let out = Command::new("mosquitto_rr")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-W", "10"])
        .arg("--cafile")
        .arg(root)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args([
            "-t",
            topic,
            "-e",
            &format!("{topic}/accepted"),
            "-m",
            message,
        ])
        .output()
        .expect("mosquitto_rr (mosquitto-clients)");
    assert!(
        out.status.success(),
        "mosquitto_rr {topic}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON response")
}

/// mosquitto_pub with QoS 1: Ok if the server accepted the connection and the message.
fn mosquitto_pub(port: u16, root: &Path, cert: &Path, key: &Path, topic: &str) -> bool {
    Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-m",
            "hello",
        ])
        .arg("--cafile")
        .arg(root)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["-t", topic])
        .output()
        .expect("mosquitto_pub")
        .status
        .success()
}

fn responses(op: &str) -> Vec<String> {
    vec![format!("{op}/accepted"), format!("{op}/rejected")]
}

const CREATE: &str = "$aws/certificates/create/json";
const CREATE_CSR: &str = "$aws/certificates/create-from-csr/json";
const PROVISION: &str = "$aws/provisioning-templates/Fleet/provision/json";

struct Fleet {
    env: Env,
    root: PathBuf,
    claim_cert: PathBuf,
    claim_key: PathBuf,
    hook_log: Arc<Mutex<Vec<Value>>>,
}

fn fleet() -> Fleet {
    fleet_on(Env::init(&[]))
}

/// The fleet set-up in `env` (initialised, on any store).
fn fleet_on(env: Env) -> Fleet {
    let (root, _) = env.ca_files();
    let body = env.path("fleet.json");
    std::fs::write(&body, FLEET_TEMPLATE).expect("template");
    let (url, hook_log) = hook();
    let policy = env.path("device-policy.json");
    std::fs::write(&policy, DEVICE_POLICY).expect("policy");
    env.ok(&[
        "policy",
        "create",
        "DevicePolicy",
        "--document",
        policy.to_str().unwrap(),
    ]);
    env.ok(&[
        "template",
        "create",
        "Fleet",
        "--body",
        body.to_str().unwrap(),
        "--hook",
        &url,
    ]);
    let (claim_cert, claim_key) = (env.path("claim.pem"), env.path("claim.key"));
    env.ok(&[
        "claim",
        "create",
        "--template",
        "Fleet",
        "--out-cert",
        claim_cert.to_str().unwrap(),
        "--out-key",
        claim_key.to_str().unwrap(),
    ]);
    Fleet {
        env,
        root,
        claim_cert,
        claim_key,
        hook_log,
    }
}

impl Fleet {
    /// Runs the paho device script with the claim certificate.
    fn claim(&self, port: u16, protocol: &str, steps: Value) -> Value {
        paho(
            port,
            &self.root,
            &self.claim_cert,
            &self.claim_key,
            protocol,
            None,
            steps,
        )
    }
}

fn cert_status(env: &Env, id: &str) -> String {
    env.json(&["cert", "show", id, "--json"])["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn devices_provision_over_mqtt_and_reconnect_with_their_certificate() {
    let f = fleet();
    let env = &f.env;
    let server = serve(env);

    // paho, MQTT 3.1.1, CreateKeysAndCertificate then RegisterThing.
    let mut subs = responses(CREATE);
    subs.extend(responses(PROVISION));
    let report = f.claim(
        server.mqtt,
        "311",
        json!([
            {"sub": subs},
            {"pub": CREATE, "json": {}},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": "$TOKEN", "parameters": {"SerialNumber": "OK-1"}}},
        ]),
    );
    assert_eq!(report["connected"], 0, "{report}");
    let replies = report["replies"].as_array().expect("replies");
    assert_eq!(replies.len(), 2, "{report}");
    assert_eq!(
        replies[0]["topic"],
        format!("{CREATE}/accepted"),
        "{report}"
    );
    let created = &replies[0]["payload"];
    let id = created["certificateId"].as_str().expect("certificateId");
    assert_eq!(
        replies[1]["topic"],
        format!("{PROVISION}/accepted"),
        "{report}"
    );
    assert_eq!(replies[1]["payload"]["thingName"], "sensor-OK-1");
    assert_eq!(
        replies[1]["payload"]["deviceConfiguration"]["site"],
        "hooked"
    );
    assert_eq!(
        replies[1]["payload"]["deviceConfiguration"]["thing"],
        "sensor-OK-1"
    );

    // The registry: ACTIVE, attached to its thing, with the hook's override.
    assert_eq!(cert_status(env, id), "ACTIVE");
    let thing = env.json(&["thing", "show", "sensor-OK-1", "--json"]);
    assert_eq!(thing["attributes"]["site"], "hooked", "{thing}");
    assert_eq!(thing["attributes"]["serial"], "OK-1");
    let hooked = f.hook_log.lock().expect("lock").clone();
    assert_eq!(hooked.len(), 1);
    assert_eq!(hooked[0]["certificateId"], id);
    assert!(hooked[0]["templateArn"]
        .as_str()
        .unwrap_or("")
        .ends_with("/Fleet"));

    // The issued certificate chains to our root (openssl), and the device
    // reconnects with it.
    let (dev_cert, dev_key) = (env.path("dev1.pem"), env.path("dev1.key"));
    std::fs::write(&dev_cert, created["certificatePem"].as_str().expect("pem")).expect("write");
    std::fs::write(&dev_key, created["privateKey"].as_str().expect("key")).expect("write");
    let issuing = env.path("issuing.pem");
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        f.root.to_str().unwrap(),
        "-untrusted",
        issuing.to_str().unwrap(),
        dev_cert.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(mosquitto_pub(
        server.mqtt,
        &f.root,
        &dev_cert,
        &dev_key,
        "devices/sensor-OK-1/telemetry"
    ));
    let again = paho(
        server.mqtt,
        &f.root,
        &dev_cert,
        &dev_key,
        "5",
        None,
        json!([
            {"sub": ["devices/sensor-OK-1/#"]},
            {"pub": "devices/sensor-OK-1/telemetry", "raw": "21.5"},
        ]),
    );
    assert_eq!(again["connected"], 0, "{again}");
    assert_eq!(
        again["replies"][0]["topic"], "devices/sensor-OK-1/telemetry",
        "{again}"
    );

    // paho, MQTT 5, CreateCertificateFromCsr; a reused token is refused.
    let csr = openssl_csr(
        env.dir.path(),
        "dev2",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let mut subs = responses(CREATE_CSR);
    subs.extend(responses(PROVISION));
    let report = paho(
        server.mqtt,
        &f.root,
        &f.claim_cert,
        &f.claim_key,
        "5",
        Some(&csr),
        json!([
            {"sub": subs},
            {"pub": CREATE_CSR, "json": {"certificateSigningRequest": "$CSR"}},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": "$TOKEN", "parameters": {"SerialNumber": "OK-2"}}},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": "$TOKEN", "parameters": {"SerialNumber": "OK-3"}}},
        ]),
    );
    let replies = report["replies"].as_array().expect("replies");
    assert_eq!(replies.len(), 3, "{report}");
    assert!(
        replies[0]["payload"].get("privateKey").is_none(),
        "the CSR path never sends a key"
    );
    assert_eq!(replies[1]["payload"]["thingName"], "sensor-OK-2");
    assert_eq!(replies[2]["topic"], format!("{PROVISION}/rejected"));
    assert_eq!(
        replies[2]["payload"]["errorCode"],
        "InvalidCertificateOwnershipToken"
    );
    assert!(env.run(&["thing", "show", "sensor-OK-3"]).status.code() != Some(0));

    // mosquitto_rr, MQTT 5, the CSR path over two connections.
    let csr = openssl_csr(
        env.dir.path(),
        "dev4",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let request = json!({"certificateSigningRequest": std::fs::read_to_string(&csr).expect("csr")});
    let created = mosquitto_rr(
        server.mqtt,
        &f.root,
        &f.claim_cert,
        &f.claim_key,
        CREATE_CSR,
        &request.to_string(),
    );
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token");
    let registered = mosquitto_rr(
        server.mqtt,
        &f.root,
        &f.claim_cert,
        &f.claim_key,
        PROVISION,
        &json!({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "OK-4"}})
            .to_string(),
    );
    assert_eq!(registered["thingName"], "sensor-OK-4");
    let dev4 = env.path("dev4.pem");
    std::fs::write(&dev4, created["certificatePem"].as_str().expect("pem")).expect("write");
    assert!(mosquitto_pub(
        server.mqtt,
        &f.root,
        &dev4,
        &env.path("dev4.key"),
        "devices/sensor-OK-4/up"
    ));

    // A revoked certificate is refused at connect.
    let id4 = created["certificateId"].as_str().expect("id");
    env.ok(&["cert", "revoke", id4]);
    assert!(!mosquitto_pub(
        server.mqtt,
        &f.root,
        &dev4,
        &env.path("dev4.key"),
        "devices/sensor-OK-4/up"
    ));
    assert!(env.ok(&["audit", "verify"]).contains("intact"));
}

#[test]
fn bad_requests_are_rejected_and_leave_nothing_half_written() {
    let f = fleet();
    let env = &f.env;
    let server = serve(env);
    let mut subs = responses(CREATE);
    subs.extend(responses(PROVISION));
    subs.extend(responses(CREATE_CSR));
    let report = f.claim(
        server.mqtt,
        "311",
        json!([
            {"sub": subs},
            {"pub": CREATE_CSR, "raw": "{not json"},
            {"pub": CREATE_CSR, "json": {"certificateSigningRequest": "-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n-----END CERTIFICATE REQUEST-----\n"}},
            {"pub": CREATE_CSR, "json": {}},
            {"pub": PROVISION, "json": {"parameters": {"SerialNumber": "OK-9"}}},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": "forged", "parameters": {"SerialNumber": "OK-9"}}},
            {"pub": CREATE, "json": {}},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": "$TOKEN", "parameters": {"SerialNumber": "BAD-1"}}},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": "$TOKEN", "parameters": {"SerialNumber": 5}}},
            {"pub": CREATE, "json": {}, "qos": 2},
        ]),
    );
    let codes: Vec<String> = report["replies"]
        .as_array()
        .expect("replies")
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["topic"].as_str().unwrap_or(""),
                r["payload"]["errorCode"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            format!("{CREATE_CSR}/rejected InvalidPayload"),
            format!("{CREATE_CSR}/rejected InvalidCsr"),
            format!("{CREATE_CSR}/rejected InvalidPayload"),
            format!("{PROVISION}/rejected InvalidCertificateOwnershipToken"),
            format!("{PROVISION}/rejected InvalidCertificateOwnershipToken"),
            format!("{CREATE}/accepted -"),
            format!("{PROVISION}/rejected ACCESS_DENIED"),
            format!("{PROVISION}/rejected InvalidPayload"),
            format!("{CREATE}/rejected InvalidQoS"),
        ],
        "{report}"
    );
    assert!(report["disconnected"].is_null(), "{report}");
    // The denied device's certificate waits, PENDING_ACTIVATION, with no thing.
    let pending = report["replies"][5]["payload"]["certificateId"]
        .as_str()
        .expect("id");
    assert_eq!(cert_status(env, pending), "PENDING_ACTIVATION");
    assert!(env.run(&["thing", "show", "sensor-BAD-1"]).status.code() != Some(0));

    // Publishing before subscribing gets a clear rejection, nothing is issued.
    let before = env
        .json(&["cert", "list", "--json"])
        .as_array()
        .map(Vec::len);
    let report = f.claim(
        server.mqtt,
        "5",
        json!([
            {"pub": CREATE, "json": {}},
        ]),
    );
    assert_eq!(
        report["replies"][0]["payload"]["errorCode"], "NotSubscribed",
        "{report}"
    );
    assert_eq!(
        env.json(&["cert", "list", "--json"])
            .as_array()
            .map(Vec::len),
        before
    );

    // A claim stepping outside its topics is disconnected.
    for topic in [
        "devices/x",
        "$aws/provisioning-templates/Other/provision/json",
    ] {
        let report = f.claim(
            server.mqtt,
            "311",
            json!([
                {"pub": topic, "raw": "{}", "wait": false},
                {"sub": ["devices/#"]},
            ]),
        );
        assert!(!report["disconnected"].is_null(), "{topic}: {report}");
    }

    // A disabled template refuses.
    env.ok(&["template", "update", "Fleet", "--disable"]);
    let report = f.claim(
        server.mqtt,
        "311",
        json!([
            {"sub": responses(PROVISION)},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": "x", "parameters": {}}},
        ]),
    );
    assert_eq!(
        report["replies"][0]["payload"]["errorCode"], "TemplateDisabled",
        "{report}"
    );

    // An unknown certificate is refused at connect.
    let (stranger_cert, stranger_key) = (env.path("stranger.pem"), env.path("stranger.key"));
    let (ok, text) = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=stranger",
        "-days",
        "1",
        "-keyout",
        stranger_key.to_str().unwrap(),
        "-out",
        stranger_cert.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(!mosquitto_pub(
        server.mqtt,
        &f.root,
        &stranger_cert,
        &stranger_key,
        "devices/x"
    ));
    assert!(env.ok(&["audit", "verify"]).contains("intact"));
}

#[test]
fn invalid_templates_are_refused_with_the_path_of_the_fault() {
    let env = Env::init(&[]);
    let body = env.path("bad.json");
    std::fs::write(&body, r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Fn::Join": ["-"]}}}}}"#).expect("write");
    let err = env.fails(&[
        "template",
        "create",
        "Bad",
        "--body",
        body.to_str().unwrap(),
    ]);
    assert!(
        err.contains("Resources.thing.Properties.ThingName"),
        "{err}"
    );
    std::fs::write(&body, FLEET_TEMPLATE).expect("write");
    let err = env.fails(&[
        "template",
        "create",
        "bad name!",
        "--body",
        body.to_str().unwrap(),
    ]);
    assert!(err.contains("template name"), "{err}");
    let err = env.fails(&[
        "template",
        "create",
        "Jitp",
        "--type",
        "jitp",
        "--body",
        body.to_str().unwrap(),
    ]);
    assert!(err.contains("DeviceConfiguration"), "{err}");
    assert!(env
        .json(&["template", "list", "--json"])
        .as_array()
        .is_some_and(Vec::is_empty));
}

/// A vendor CA registered to auto-register (JITP) with template `Jitp`,
/// and two device certificates from it in `env`: `dev-a` (with the OU the
/// template needs) and `dev-b` (without).
fn jitp_vendor(env: &Env) {
    let p = |n: &str| env.path(n).to_string_lossy().to_string();
    // A vendor CA and two device certificates, one without an OU.
    let (ok, text) = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=Vendor Root/O=Vendor",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &p("vendor.key"),
        "-out",
        &p("vendor.pem"),
    ]);
    assert!(ok, "{text}");
    for (name, subject) in [
        ("dev-a", "/CN=dev-a/O=Acme/OU=line-7/serialNumber=SN-A"),
        ("dev-b", "/CN=dev-b/O=Acme"),
    ] {
        let (ok, text) = openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &p(&format!("{name}.key")),
            "-out",
            &p(&format!("{name}.csr")),
        ]);
        assert!(ok, "{text}");
        let ext = env.path("ext.cnf");
        std::fs::write(&ext, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n").expect("ext");
        let (ok, text) = openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&format!("{name}.csr")),
            "-CA",
            &p("vendor.pem"),
            "-CAkey",
            &p("vendor.key"),
            "-days",
            "10",
            "-extfile",
            &p("ext.cnf"),
            "-out",
            &p(&format!("{name}.pem")),
        ]);
        assert!(ok, "{text}");
    }
    let body = env.path("jitp.json");
    std::fs::write(&body, JITP_TEMPLATE).expect("write");
    env.ok(&[
        "template",
        "create",
        "Jitp",
        "--type",
        "jitp",
        "--body",
        body.to_str().unwrap(),
    ]);
    env.ok(&[
        "ca",
        "register",
        "--name",
        "vendor",
        "--cert",
        &p("vendor.pem"),
        "--auto-register",
        "--template",
        "Jitp",
    ]);
}

/// A device certificate of thing `ops-admin` with the admin grant, which
/// may subscribe to `$aws/events/…`: (certificate, key).
fn events_admin(env: &Env) -> (PathBuf, PathBuf) {
    let p = |n: &str| env.path(n).to_string_lossy().to_string();
    let (admin_cert, admin_key) = (env.path("admin.pem"), env.path("admin.key"));
    env.ok(&[
        "cert",
        "new",
        "--thing",
        "ops-admin",
        "--out",
        &p("admin.pem"),
        "--out-key",
        &p("admin.key"),
    ]);
    let admin_id = env.json(&["cert", "list", "--thing", "ops-admin", "--json"])[0]["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    env.ok(&["grant", "add", "--cert", &admin_id, "--role", "admin"]);
    (admin_cert, admin_key)
}

#[test]
fn jitp_registers_on_the_first_connection_and_refuses_missing_subject_fields() {
    let env = Env::init(&[]);
    let (root, _) = env.ca_files();
    jitp_vendor(&env);
    let server = serve(&env);

    // An admin subscribes to registration events.
    let (admin_cert, admin_key) = events_admin(&env);
    let admin = paho_cmd(
        server.mqtt,
        &root,
        &admin_cert,
        &admin_key,
        "5",
        None,
        &json!([
            {"sub": ["$aws/events/certificates/registered/#"]},
            {"signal": env.path("admin-subscribed")},
            {"recv": true},
        ]),
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("admin subscriber");
    await_signal(&env.path("admin-subscribed"));

    // The first connection is kept and works.
    let report = paho(
        server.mqtt,
        &root,
        &env.path("dev-a.pem"),
        &env.path("dev-a.key"),
        "311",
        None,
        json!([
            {"sub": ["devices/dev-a/#"]},
            {"pub": "devices/dev-a/hello", "raw": "hi"},
        ]),
    );
    assert_eq!(report["connected"], 0, "{report}");
    assert_eq!(
        report["replies"][0]["topic"], "devices/dev-a/hello",
        "{report}"
    );
    let thing = env.json(&["thing", "show", "dev-a", "--json"]);
    assert_eq!(thing["attributes"]["line"], "line-7", "{thing}");
    let certs = env.json(&["cert", "list", "--thing", "dev-a", "--json"]);
    assert_eq!(certs[0]["status"], "ACTIVE", "{certs}");
    let events = paho_report(admin.wait_with_output().expect("admin"));
    let vendor_id = env.json(&["ca", "show", "vendor", "--json"])["id"].clone();
    assert_eq!(
        events["replies"][0]["topic"],
        format!(
            "$aws/events/certificates/registered/{}",
            vendor_id.as_str().unwrap_or("")
        ),
        "{events}"
    );
    assert_eq!(
        events["replies"][0]["payload"]["certificateId"], certs[0]["id"],
        "{events}"
    );

    // No OU: refused, nothing registered.
    let before = env
        .json(&["cert", "list", "--json"])
        .as_array()
        .map(Vec::len);
    assert!(!mosquitto_pub(
        server.mqtt,
        &root,
        &env.path("dev-b.pem"),
        &env.path("dev-b.key"),
        "devices/dev-b/hello"
    ));
    assert_eq!(
        env.json(&["cert", "list", "--json"])
            .as_array()
            .map(Vec::len),
        before
    );
    assert!(env.run(&["thing", "show", "dev-b"]).status.code() != Some(0));
}

/// A copy of `env`'s data directory (configuration, CA keys) at `to`: what
/// a second server on the same store starts from. Nothing is shared through
/// it at run time.
fn copy_data(env: &Env, to: &Path) {
    let out = Command::new("cp")
        .arg("-R")
        .arg(env.data())
        .arg(to)
        .output()
        .expect("cp");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two `idmint serve` on one PostgreSQL store, each on its own copy of the
/// data directory: a device registering by JITP on server B is announced to
/// the `$aws/events/…` subscribers of A and of B, once each.
#[test]
fn a_jitp_event_on_one_server_reaches_subscribers_on_every_server_of_the_store() {
    let Some(db) = postgres_database("fleet_events") else {
        return;
    };
    let env = Env::init(&["--store", &db]);
    let (root, _) = env.ca_files();
    jitp_vendor(&env);
    let (admin_cert, admin_key) = events_admin(&env);
    let data_b = env.path("data-b");
    copy_data(&env, &data_b);
    let a = serve(&env);
    let b = serve_from(&env, Some(&data_b), None);

    // Two recvs: the event, then nothing more within the timeout.
    let subscribe = |mqtt: u16, client: &str| {
        paho_cmd(
            mqtt,
            &root,
            &admin_cert,
            &admin_key,
            "5",
            None,
            &json!([
                {"sub": ["$aws/events/certificates/registered/#"]},
                {"signal": env.path(client)},
                {"recv": true},
                {"recv": true},
            ]),
        )
        .args(["--timeout", "8", "--client-id", client])
        .stdout(Stdio::piped())
        .spawn()
        .expect("events subscriber")
    };
    let on_a = subscribe(a.mqtt, "ops-on-a");
    let on_b = subscribe(b.mqtt, "ops-on-b");
    await_signal(&env.path("ops-on-a"));
    await_signal(&env.path("ops-on-b"));

    let report = paho(
        b.mqtt,
        &root,
        &env.path("dev-a.pem"),
        &env.path("dev-a.key"),
        "311",
        None,
        json!([]),
    );
    assert_eq!(report["connected"], 0, "{report}");
    let certs = env.json(&["cert", "list", "--thing", "dev-a", "--json"]);
    assert_eq!(certs[0]["status"], "ACTIVE", "{certs}");
    let vendor_id = env.json(&["ca", "show", "vendor", "--json"])["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    for (server, subscriber) in [("A", on_a), ("B", on_b)] {
        let events = paho_report(subscriber.wait_with_output().expect("subscriber"));
        let replies = events["replies"].as_array().expect("replies");
        assert_eq!(replies.len(), 1, "server {server}: {events}");
        assert_eq!(
            replies[0]["topic"],
            format!("$aws/events/certificates/registered/{vendor_id}"),
            "server {server}: {events}"
        );
        assert_eq!(
            replies[0]["payload"]["certificateId"], certs[0]["id"],
            "server {server}: {events}"
        );
        assert_eq!(replies[0]["payload"]["thingName"], "dev-a", "{events}");
    }
}

/// A claim certificate limited to 3 requests a minute, used on two servers
/// of one PostgreSQL store: two requests on A and one on B are answered;
/// the fourth (on B) and a fifth (on A) are throttled, as one server would.
#[test]
fn a_claims_rate_limit_holds_across_two_servers_of_one_store() {
    let Some(db) = postgres_database("fleet_claim_rate") else {
        return;
    };
    let f = fleet_on(Env::init(&["--store", &db]));
    let env = &f.env;
    let (cert, key) = (env.path("limited.pem"), env.path("limited.key"));
    env.ok(&[
        "claim",
        "create",
        "--template",
        "Fleet",
        "--rate-per-minute",
        "3",
        "--out-cert",
        cert.to_str().unwrap(),
        "--out-key",
        key.to_str().unwrap(),
    ]);
    let certificates = |env: &Env| {
        env.json(&["cert", "list", "--json"])
            .as_array()
            .map_or(0, Vec::len)
    };
    let data_b = env.path("data-b");
    copy_data(&f.env, &data_b);
    let a = serve(env);
    let b = serve_from(env, Some(&data_b), None);
    // After the servers made their TLS identities.
    let before = certificates(env);
    let creates = |mqtt: u16, n: usize| {
        let mut steps = vec![json!({"sub": responses(CREATE)})];
        steps.extend((0..n).map(|_| json!({"pub": CREATE, "json": {}})));
        let report = paho(mqtt, &f.root, &cert, &key, "311", None, Value::from(steps));
        assert_eq!(report["connected"], 0, "{report}");
        let replies = report["replies"].as_array().expect("replies").clone();
        assert_eq!(replies.len(), n, "{report}");
        replies
    };
    let accepted = format!("{CREATE}/accepted");
    let rejected = format!("{CREATE}/rejected");
    let throttled = |reply: &Value| {
        assert_eq!(reply["topic"], rejected.as_str(), "{reply}");
        assert_eq!(reply["payload"]["statusCode"], 429, "{reply}");
        assert_eq!(reply["payload"]["errorCode"], "Throttled", "{reply}");
        let message = reply["payload"]["errorMessage"].as_str().unwrap_or("");
        assert!(
            message.starts_with(
                "this claim certificate is limited to 3 requests per minute; retry in "
            ),
            "{reply}"
        );
    };

    for reply in creates(a.mqtt, 2) {
        assert_eq!(reply["topic"], accepted.as_str(), "{reply}");
    }
    let on_b = creates(b.mqtt, 2);
    assert_eq!(on_b[0]["topic"], accepted.as_str(), "{}", on_b[0]);
    throttled(&on_b[1]);
    throttled(&creates(a.mqtt, 1)[0]);
    // Three certificates issued in all, not five.
    assert_eq!(certificates(env), before + 3);
}

#[test]
fn a_trusted_user_gets_a_five_minute_claim_over_the_api() {
    let f = fleet();
    let env = &f.env;
    let server = serve(env);
    let token_out = env.ok(&[
        "token",
        "create",
        "--name",
        "installer",
        "--role",
        "operator",
    ]);
    let token = token_out
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().last())
        .expect("token")
        .to_string();
    let out = Command::new("curl")
        .args([
            "-s",
            "--cacert",
            f.root.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"templateName":"Fleet"}"#,
        ])
        .arg(format!(
            "https://127.0.0.1:{}/api/v1/provisioning-claims",
            server.https
        ))
        .output()
        .expect("curl");
    let claim: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let (cert, key) = (env.path("temp-claim.pem"), env.path("temp-claim.key"));
    std::fs::write(&cert, claim["certificatePem"].as_str().expect("pem")).expect("write");
    std::fs::write(&key, claim["keyPair"]["PrivateKey"].as_str().expect("key")).expect("write");
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-checkend",
        "301",
    ]);
    assert!(
        !ok,
        "a trusted user's claim must expire within 5 minutes: {text}"
    );
    let mut subs = responses(CREATE);
    subs.extend(responses(PROVISION));
    let report = paho(
        server.mqtt,
        &f.root,
        &cert,
        &key,
        "5",
        None,
        json!([
            {"sub": subs},
            {"pub": CREATE, "json": {}},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": "$TOKEN", "parameters": {"SerialNumber": "OK-77"}}},
        ]),
    );
    assert_eq!(
        report["replies"][1]["payload"]["thingName"], "sensor-OK-77",
        "{report}"
    );
}

#[test]
fn a_server_killed_mid_load_loses_no_registration_and_reuses_no_token() {
    let env = Env::init(&[]);
    let mut server = serve(&env);
    let mqtt = server.mqtt;
    let results = env.path("results.jsonl");
    let mut load = env
        .cmd()
        .args([
            "loadtest",
            "fleet",
            "--devices",
            "400",
            "--concurrency",
            "16",
            "--timeout",
            "5",
        ])
        .args(["--mqtt", &format!("127.0.0.1:{mqtt}")])
        .arg("--out")
        .arg(&results)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("loadtest");
    // Kill the server (SIGKILL) once some devices have registered.
    let start = Instant::now();
    loop {
        let registered = env
            .json(&[
                "cert", "list", "--ca", "issuing", "--status", "ACTIVE", "--json",
            ])
            .as_array()
            .map_or(0, Vec::len);
        if registered > 20 || start.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    let _ = load.wait();
    drop(server);
    let restarted = serve(&env);

    let lines: Vec<Value> = std::fs::read_to_string(&results)
        .expect("results")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let accepted: Vec<&Value> = lines.iter().filter(|l| l["registered"] == true).collect();
    assert!(!accepted.is_empty(), "no device registered before the kill");
    assert!(
        lines.iter().any(|l| l["registered"] == false),
        "the kill came too late"
    );
    // Every device that saw RegisterThing accepted is ACTIVE with its thing.
    for line in &accepted {
        let id = line["certificateId"].as_str().expect("id");
        let cert = env.json(&["cert", "show", id, "--json"]);
        assert_eq!(cert["status"], "ACTIVE", "{line}");
        assert_eq!(cert["thing"], line["thingName"], "{line}");
    }
    // No device certificate is ACTIVE without a thing.
    let active = env.json(&[
        "cert", "list", "--ca", "issuing", "--status", "ACTIVE", "--json",
    ]);
    for cert in active.as_array().expect("array") {
        if cert["subject"]
            .as_str()
            .unwrap_or("")
            .contains("idmint-server")
        {
            continue;
        }
        assert!(cert["thing"].is_string(), "ACTIVE without a thing: {cert}");
    }
    // No ownership token worked twice: one registration per certificate.
    let audit = env.json(&["audit", "list", "--limit", "100000", "--json"]);
    let mut registered: Vec<&str> = audit
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["action"] == "fleet.register")
        .filter_map(|r| r["subject"].as_str())
        .collect();
    let total = registered.len();
    registered.sort_unstable();
    registered.dedup();
    assert_eq!(
        registered.len(),
        total,
        "a certificate was registered twice"
    );
    assert!(env.ok(&["audit", "verify"]).contains("intact"));
    drop(restarted);
}

/// An audit record's details (stored as JSON text).
fn details(record: &Value) -> Value {
    serde_json::from_str(record["details"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// Sets `[fleet] token_lifetime_secs` in the data directory's idmint.toml.
fn set_token_lifetime(env: &Env, secs: u64) {
    let path = env.data().join("idmint.toml");
    let config = std::fs::read_to_string(&path).expect("idmint.toml");
    let changed = config.replace(
        "token_lifetime_secs = 3600",
        &format!("token_lifetime_secs = {secs}"),
    );
    assert_ne!(changed, config, "no token_lifetime_secs in {config}");
    std::fs::write(&path, changed).expect("write idmint.toml");
}

/// A certificate's serial, as `openssl x509 -serial` prints it (uppercase hex,
/// no leading zeros).
fn openssl_serial(cert: &Path) -> String {
    let (ok, text) = openssl(&["x509", "-noout", "-serial", "-in", cert.to_str().unwrap()]);
    assert!(ok, "{text}");
    text.trim()
        .trim_start_matches("serial=")
        .trim_start_matches('0')
        .to_ascii_uppercase()
}

/// Hole 6 of issue 11: a device that takes a key and certificate but never
/// registers holds a valid ten-year certificate; when its ownership token
/// expires the certificate must be REVOKED (cessationOfOperation), kept in
/// the registry, on its CA's CRL and revoked in OCSP, not deleted.
#[test]
fn a_certificate_whose_ownership_token_expires_unused_is_revoked_not_forgotten() {
    let f = fleet();
    let env = &f.env;
    set_token_lifetime(env, 2);
    let server = serve(env);
    let report = f.claim(
        server.mqtt,
        "311",
        json!([
            {"sub": responses(CREATE)},
            {"pub": CREATE, "json": {}},
        ]),
    );
    let created = &report["replies"][0]["payload"];
    let id = created["certificateId"]
        .as_str()
        .unwrap_or_else(|| panic!("no certificate: {report}"))
        .to_string();
    let token = created["certificateOwnershipToken"]
        .as_str()
        .expect("token")
        .to_string();
    let dev_cert = env.path("abandoned.pem");
    std::fs::write(&dev_cert, created["certificatePem"].as_str().expect("pem")).expect("write");
    assert_eq!(cert_status(env, &id), "PENDING_ACTIVATION");

    // The token expires; the sweep runs when the server starts and every
    // minute after, so restart rather than wait a minute.
    drop(server);
    std::thread::sleep(Duration::from_secs(3));
    let server = serve(env);
    let start = Instant::now();
    let cert = loop {
        let out = env.run(&["cert", "show", &id, "--json"]);
        if out.status.success() {
            let cert: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            if cert["status"] == "REVOKED" {
                break cert;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "certificate {id} not REVOKED after its token expired: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(cert["revocationReason"], "cessationOfOperation", "{cert}");
    assert!(cert["thing"].is_null(), "{cert}");

    // The CRL of its CA lists it (openssl reads the CRL fetched by curl).
    let crl = env.path("issuing.crl");
    let out = Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(&f.root)
        .arg("-o")
        .arg(&crl)
        .arg(format!(
            "https://localhost:{}/crl/issuing.crl",
            server.https
        ))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, text) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-noout",
        "-text",
        "-in",
        crl.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let serial = openssl_serial(&dev_cert);
    let listed = text.to_ascii_uppercase().replace(':', "");
    assert!(listed.contains(&serial), "{serial} not on the CRL: {text}");
    assert!(text.contains("Cessation Of Operation"), "{text}");

    // OCSP says revoked, with the reason.
    let (_, issuing) = env.ca_files();
    let trust = env.path("trust.pem");
    std::fs::write(
        &trust,
        format!(
            "{}{}",
            std::fs::read_to_string(&f.root).expect("root"),
            std::fs::read_to_string(&issuing).expect("issuing")
        ),
    )
    .expect("trust");
    let (_, text) = openssl(&[
        "ocsp",
        "-issuer",
        issuing.to_str().unwrap(),
        "-cert",
        dev_cert.to_str().unwrap(),
        "-url",
        &format!("https://localhost:{}/ocsp", server.https),
        "-CAfile",
        trust.to_str().unwrap(),
    ]);
    assert!(text.contains(": revoked"), "{text}");
    assert!(text.contains("cessationOfOperation"), "{text}");

    // The token is spent: RegisterThing with it is refused as expired and
    // provisions nothing.
    let report = f.claim(
        server.mqtt,
        "311",
        json!([
            {"sub": responses(PROVISION)},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": token, "parameters": {"SerialNumber": "OK-late"}}},
        ]),
    );
    let reply = &report["replies"][0];
    assert_eq!(reply["topic"], format!("{PROVISION}/rejected"), "{report}");
    assert_eq!(
        reply["payload"]["errorCode"], "InvalidCertificateOwnershipToken",
        "{report}"
    );
    assert!(
        reply["payload"]["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("expired"),
        "{report}"
    );
    assert!(env.run(&["thing", "show", "sensor-OK-late"]).status.code() != Some(0));
    assert_eq!(cert_status(env, &id), "REVOKED");

    // Audited: the expiry and the revocation.
    let audit = env.json(&["audit", "list", "--limit", "100000", "--json"]);
    let records = audit.as_array().expect("array");
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "fleet.token_expired" && r["subject"] == id.as_str()),
        "{audit}"
    );
    assert!(
        records.iter().any(|r| r["action"] == "certificate.status"
            && r["subject"] == id.as_str()
            && details(r)["to"] == "REVOKED"),
        "{audit}"
    );
    assert!(env.ok(&["audit", "verify"]).contains("intact"));
}

/// Hole 4 of issue 11, fleet part: RegisterThing keeps AWS's behaviour (a
/// re-provisioned device attaches its new certificate to its existing
/// thing), and says so in the audit log with a record of its own.
#[test]
fn re_provisioning_an_existing_thing_is_audited_as_an_attach() {
    let f = fleet();
    let env = &f.env;
    let server = serve(env);
    let mut subs = responses(CREATE);
    subs.extend(responses(PROVISION));
    let report = f.claim(
        server.mqtt,
        "5",
        json!([
            {"sub": subs},
            {"pub": CREATE, "json": {}},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": "$TOKEN", "parameters": {"SerialNumber": "OK-twice"}}},
            {"pub": CREATE, "json": {}},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": "$TOKEN", "parameters": {"SerialNumber": "OK-twice"}}},
        ]),
    );
    let replies = report["replies"].as_array().expect("replies");
    assert_eq!(replies.len(), 4, "{report}");
    for reply in [&replies[1], &replies[3]] {
        assert_eq!(reply["topic"], format!("{PROVISION}/accepted"), "{report}");
        assert_eq!(reply["payload"]["thingName"], "sensor-OK-twice");
    }
    let first = replies[0]["payload"]["certificateId"].as_str().expect("id");
    let second = replies[2]["payload"]["certificateId"].as_str().expect("id");
    // AWS's behaviour: both certificates now belong to the thing.
    for id in [first, second] {
        let cert = env.json(&["cert", "show", id, "--json"]);
        assert_eq!(cert["status"], "ACTIVE", "{cert}");
        assert_eq!(cert["thing"], "sensor-OK-twice", "{cert}");
    }

    // The audit log says that an existing thing gained a certificate: once,
    // for the second registration only.
    let audit = env.json(&["audit", "list", "--limit", "100000", "--json"]);
    let attached: Vec<&Value> = audit
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["action"] == "thing.certificate_attached")
        .collect();
    assert_eq!(attached.len(), 1, "{audit}");
    assert_eq!(attached[0]["subject"], "sensor-OK-twice");
    let d = details(attached[0]);
    assert_eq!(d["certificate"], second, "{d}");
    assert_eq!(d["template"], "Fleet", "{d}");
    assert_eq!(d["existing"], true, "{d}");
    let hooked = f.hook_log.lock().expect("lock").clone();
    assert_eq!(d["claim"], hooked[1]["claimCertificateId"], "{d}");
    // The table listing shows it too.
    let listing = env.ok(&["audit", "list", "--limit", "100000"]);
    assert!(
        listing
            .lines()
            .any(|l| l.contains("thing.certificate_attached") && l.contains("sensor-OK-twice")),
        "{listing}"
    );
    assert!(env.ok(&["audit", "verify"]).contains("intact"));
}

/// Error hygiene on the MQTT endpoint (issue 11): when the store fails, a
/// device's rejection carries a stable code and a correlation id, never SQL
/// or a path, and the server's log has the same id with the detail.
#[test]
fn a_failing_store_rejects_with_a_correlation_id_and_no_internal_detail() {
    let f = fleet();
    let env = &f.env;
    let log = env.path("serve.log");
    let server = serve_logging(env, Some(&log));
    let out = Command::new("sqlite3")
        .arg(env.data().join("registry.db"))
        .arg("DROP TABLE ownership_tokens;")
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = f.claim(
        server.mqtt,
        "311",
        json!([
            {"sub": responses(CREATE)},
            {"pub": CREATE, "json": {}},
        ]),
    );
    let reply = &report["replies"][0];
    assert_eq!(reply["topic"], format!("{CREATE}/rejected"), "{report}");
    let payload = &reply["payload"];
    assert_eq!(payload["statusCode"], 500, "{report}");
    assert_eq!(payload["errorCode"], "InternalFailure", "{report}");
    let id = payload["correlationId"]
        .as_str()
        .unwrap_or_else(|| panic!("no correlationId: {report}"));
    assert_eq!(id.len(), 16, "{report}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{report}");
    let message = payload["errorMessage"].as_str().unwrap_or("");
    assert!(message.contains(id), "{report}");
    let text = payload.to_string().to_ascii_lowercase();
    for leak in [
        "no such table",
        "sql",
        "database",
        "store error",
        "ownership_tokens",
        "/",
    ] {
        assert!(!text.contains(leak), "{leak:?} leaked: {report}");
    }
    // The log has the id with the detail.
    let start = Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(id)) {
            break line.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no log line with {id}: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(line.contains("no such table"), "{line}");
    assert!(line.contains("ERROR"), "{line}");
}

/// A device certificate made with `cert new`; returns (cert, key, id).
fn device_cert(env: &Env, thing: &str) -> (PathBuf, PathBuf, String) {
    let (cert, key) = (
        env.path(&format!("{thing}.pem")),
        env.path(&format!("{thing}.key")),
    );
    env.ok(&[
        "cert",
        "new",
        "--thing",
        thing,
        "--out",
        cert.to_str().unwrap(),
        "--out-key",
        key.to_str().unwrap(),
    ]);
    let id = env.json(&["cert", "list", "--thing", thing, "--json"])[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (cert, key, id)
}

fn as_device(port: u16, root: &Path, cert: &Path, key: &Path, client: &str, steps: Value) -> Value {
    let mut cmd = paho_cmd(port, root, cert, key, "311", None, &steps);
    cmd.args(["--client-id", client, "--timeout", "3"]);
    paho_report(cmd.output().expect("python3 with paho-mqtt"))
}

#[test]
fn device_policies_decide_connect_subscribe_publish_and_receive() {
    let f = fleet();
    let env = &f.env;
    let (a_cert, a_key, a_id) = device_cert(env, "dev-a");
    let (b_cert, b_key, b_id) = device_cert(env, "dev-b");
    let (c_cert, c_key, _) = device_cert(env, "dev-c");
    for id in [&a_id, &b_id] {
        env.ok(&["policy", "attach", "DevicePolicy", "--cert", id]);
    }
    // A bad document is refused naming the JSON path of the fault.
    let bad = env.path("bad-policy.json");
    std::fs::write(
        &bad,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:Connect","iot:Teleport"],"Resource":"*"}]}"#,
    )
    .expect("write");
    let out = env.fails(&[
        "policy",
        "create",
        "Bad",
        "--document",
        bad.to_str().unwrap(),
    ]);
    assert!(out.contains("Statement[0].Action[1]"), "{out}");
    // An explicit Deny wins over DevicePolicy's Allow.
    let deny = env.path("deny.json");
    std::fs::write(
        &deny,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/devices/dev-a/secret"}]}"#,
    )
    .expect("write");
    env.ok(&[
        "policy",
        "create",
        "NoSecrets",
        "--document",
        deny.to_str().unwrap(),
    ]);
    env.ok(&["policy", "attach", "NoSecrets", "--cert", &a_id]);
    let out = env.fails(&["policy", "delete", "NoSecrets"]);
    assert!(out.contains("detach"), "{out}");
    let config = env.data().join("idmint.toml");
    let text = std::fs::read_to_string(&config).expect("idmint.toml");
    std::fs::write(
        &config,
        text.replace("recheck_secs = 10", "recheck_secs = 1"),
    )
    .expect("write");
    let server = serve(env);

    // No policy, no access: the certificate is valid, the connection refused.
    let report = as_device(server.mqtt, &f.root, &c_cert, &c_key, "dev-c", json!([]));
    assert_ne!(report["connected"], 0, "{report}");

    // `#` is refused, the device's own filter granted; its own topics work.
    let report = as_device(
        server.mqtt,
        &f.root,
        &a_cert,
        &a_key,
        "dev-a",
        json!([
            {"sub": ["#", "devices/dev-b/#", "devices/dev-a/#"]},
            {"pub": "devices/dev-a/up", "raw": "mine"},
        ]),
    );
    assert_eq!(report["connected"], 0, "{report}");
    assert_eq!(report["granted"][0][0], 128, "{report}");
    assert_eq!(report["granted"][0][1], 128, "{report}");
    assert_eq!(report["granted"][0][2], 1, "{report}");
    assert_eq!(
        report["replies"][0]["topic"], "devices/dev-a/up",
        "{report}"
    );

    // Publishing onto another device's topics, or a denied one, disconnects.
    for (topic, cert, key, client) in [
        ("devices/dev-a/down", &b_cert, &b_key, "dev-b"),
        ("devices/dev-a/secret", &a_cert, &a_key, "dev-a"),
    ] {
        let report = as_device(
            server.mqtt,
            &f.root,
            cert,
            key,
            client,
            json!([{"pub": topic, "raw": "x", "wait": false}, {"sub": ["devices/dev-b/#"]}]),
        );
        assert_eq!(report["connected"], 0, "{report}");
        assert!(!report["disconnected"].is_null(), "{topic}: {report}");
    }

    // A session whose certificate is revoked is closed by the re-check timer.
    let listener = paho_cmd(
        server.mqtt,
        &f.root,
        &a_cert,
        &a_key,
        "311",
        None,
        &json!([
            {"sub": ["devices/dev-a/#"]},
            {"signal": f.env.path("dev-a-subscribed")},
            {"recv": true},
        ]),
    )
    .args(["--client-id", "dev-a", "--timeout", "15"])
    .stdout(Stdio::piped())
    .spawn()
    .expect("listener");
    await_signal(&f.env.path("dev-a-subscribed"));
    let started = Instant::now();
    env.ok(&["cert", "revoke", &a_id]);
    let report = paho_report(listener.wait_with_output().expect("listener"));
    assert!(!report["disconnected"].is_null(), "{report}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "closed after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_session_holds_at_most_max_subscriptions_filters() {
    let f = fleet();
    let env = &f.env;
    let (cert, key, id) = device_cert(env, "dev-s");
    env.ok(&["policy", "attach", "DevicePolicy", "--cert", &id]);
    let config = env.data().join("idmint.toml");
    let text = std::fs::read_to_string(&config).expect("idmint.toml");
    std::fs::write(
        &config,
        text.replace("max_subscriptions = 64", "max_subscriptions = 3"),
    )
    .expect("write");
    let server = serve(env);
    let filters: Vec<String> = (0..5).map(|i| format!("devices/dev-s/{i}")).collect();
    let report = as_device(
        server.mqtt,
        &f.root,
        &cert,
        &key,
        "dev-s",
        json!([{"sub": filters}, {"sub": ["devices/dev-s/0"]}]),
    );
    assert_eq!(report["granted"][0], json!([1, 1, 1, 128, 128]), "{report}");
    // Re-subscribing to a held filter is not a new one.
    assert_eq!(report["granted"][1], json!([1]), "{report}");
}

/// The SHA-256 of a PEM certificate's DER: its id in the registry.
fn pem_cert_id(pem: &Path) -> String {
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        pem.to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    assert!(ok, "{text}");
    text.trim()
        .rsplit('=')
        .next()
        .unwrap_or_default()
        .replace(':', "")
        .to_lowercase()
}

#[test]
fn a_claim_revoked_while_its_session_is_open_gets_no_more_certificates() {
    let f = fleet();
    let env = &f.env;
    // The re-check timer must not be what closes the session here.
    let config = env.data().join("idmint.toml");
    let text = std::fs::read_to_string(&config).expect("idmint.toml");
    std::fs::write(
        &config,
        text.replace("recheck_secs = 10", "recheck_secs = 3600"),
    )
    .expect("write");
    let server = serve(env);
    let claim_id = pem_cert_id(&f.claim_cert);
    let (ready, go) = (env.path("ready"), env.path("go"));
    let mut subs = responses(CREATE);
    subs.extend(responses(PROVISION));
    let device = paho_cmd(
        server.mqtt,
        &f.root,
        &f.claim_cert,
        &f.claim_key,
        "311",
        None,
        &json!([
            {"sub": subs},
            {"pub": CREATE, "json": {}},
            {"signal": ready.to_str().unwrap()},
            {"await": go.to_str().unwrap()},
            {"pub": PROVISION, "json": {"certificateOwnershipToken": "$TOKEN", "parameters": {"SerialNumber": "OK-R"}}},
            {"pub": CREATE, "json": {}},
        ]),
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("paho");
    await_signal(&ready);
    env.ok(&["cert", "revoke", &claim_id]);
    std::fs::write(&go, "").expect("go");
    let report = paho_report(device.wait_with_output().expect("paho"));
    let replies = report["replies"].as_array().expect("replies");
    assert_eq!(replies.len(), 3, "{report}");
    assert_eq!(
        replies[0]["topic"],
        format!("{CREATE}/accepted"),
        "{report}"
    );
    let pending = replies[0]["payload"]["certificateId"]
        .as_str()
        .expect("certificateId");
    // The claim is refused both ways, and nothing was issued or activated.
    for (reply, op) in [(&replies[1], PROVISION), (&replies[2], CREATE)] {
        assert_eq!(reply["topic"], format!("{op}/rejected"), "{report}");
        assert_eq!(reply["payload"]["errorCode"], "NotAuthorized", "{report}");
        assert_eq!(reply["payload"]["statusCode"], 403, "{report}");
    }
    assert_eq!(cert_status(env, pending), "PENDING_ACTIVATION");
    assert!(env
        .json(&["thing", "list", "--json"])
        .as_array()
        .expect("things")
        .is_empty());
    // The hook never ran for the revoked claim.
    assert!(f.hook_log.lock().expect("lock").is_empty());
}
