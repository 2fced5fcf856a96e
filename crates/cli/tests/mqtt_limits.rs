//! The MQTT endpoint of `idmint serve` against clients that misbehave: a
//! flood of silent connections from one address is capped at accept (before
//! the TLS handshake) by `[mqtt] max_connections_per_address`, and a client
//! that sends a malformed packet or publishes to a wildcard topic after its
//! CONNECT is disconnected, while real clients (mosquitto_rr) keep being
//! served.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use common::Env;
use serde_json::Value;

const TEMPLATE: &str = r#"{
  "Parameters": {"SerialNumber": {"Type": "String"}},
  "Resources": {
    "certificate": {
      "Type": "AWS::IoT::Certificate",
      "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"}
    }
  }
}"#;

const CREATE: &str = "$aws/certificates/create/json";

struct Serve {
    child: Child,
    mqtt: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data directory with a template and its claim certificate, and
/// `[mqtt] max_connections_per_address` set to `per_address`.
struct Fleet {
    env: Env,
    root: PathBuf,
    claim_cert: PathBuf,
    claim_key: PathBuf,
}

fn fleet(per_address: usize) -> Fleet {
    let env = Env::init(&[]);
    let toml = env.data().join("idmint.toml");
    let text = std::fs::read_to_string(&toml).expect("idmint.toml");
    let text = match text.find("[mqtt]") {
        Some(at) => {
            let (before, section) = text.split_at(at);
            let old = "max_connections_per_address = 512";
            assert!(section.contains(old), "{section}");
            format!(
                "{before}{}",
                section.replacen(
                    old,
                    &format!("max_connections_per_address = {per_address}"),
                    1
                )
            )
        }
        None => format!("{text}\n[mqtt]\nmax_connections_per_address = {per_address}\n"),
    };
    std::fs::write(&toml, text).expect("write idmint.toml");
    let (root, _) = env.ca_files();
    let body = env.path("template.json");
    std::fs::write(&body, TEMPLATE).expect("template");
    env.ok(&[
        "template",
        "create",
        "Fleet",
        "--body",
        body.to_str().expect("path"),
    ]);
    let (claim_cert, claim_key) = (env.path("claim.pem"), env.path("claim.key"));
    env.ok(&[
        "claim",
        "create",
        "--template",
        "Fleet",
        "--out-cert",
        claim_cert.to_str().expect("path"),
        "--out-key",
        claim_key.to_str().expect("path"),
    ]);
    Fleet {
        env,
        root,
        claim_cert,
        claim_key,
    }
}

impl Fleet {
    fn serve(&self) -> Serve {
        let mut cmd = self.env.cmd();
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
        ]);
        let (child, listening) = common::spawn_serve(&mut cmd, true, None);
        Serve {
            child,
            mqtt: listening.mqtt.unwrap_or_default(),
        }
    }

    /// mosquitto_rr (MQTT 5) with the claim certificate: CreateKeysAndCertificate,
    /// whose accepted answer carries a certificate id.
    fn create_keys(&self, port: u16) -> Result<Value, String> {
        let out = Command::new("mosquitto_rr")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-W", "10"])
            .arg("--cafile")
            .arg(&self.root)
            .arg("--cert")
            .arg(&self.claim_cert)
            .arg("--key")
            .arg(&self.claim_key)
            .args([
                "-t",
                CREATE,
                "-e",
                &format!("{CREATE}/accepted"),
                "-m",
                "{}",
            ])
            .output()
            .expect("mosquitto_rr (mosquitto-clients)");
        if !out.status.success() {
            return Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    /// Connects over TLS with the claim certificate, sends `connect`, reads
    /// the CONNACK, sends `then`, and tells what the server sent back and
    /// whether it closed the connection within 3 s.
    fn raw(&self, port: u16, connect: &[u8], then: &[u8]) -> Value {
        let out = Command::new("python3")
            .args(["-c", RAW_CLIENT, &port.to_string()])
            .arg(&self.root)
            .arg(&self.claim_cert)
            .arg(&self.claim_key)
            .args([hex(connect), hex(then)])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "raw client: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("raw client JSON")
    }
}

/// A TLS client in python's ssl module, for bytes no MQTT library sends.
const RAW_CLIENT: &str = r#"
import json, socket, ssl, sys, time
port, ca, cert, key, connect, then = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))), server_hostname="localhost")
s.settimeout(3)
s.sendall(bytes.fromhex(connect))
connack = s.recv(64)
s.sendall(bytes.fromhex(then))
received, closed, deadline = b"", False, time.time() + 3
while time.time() < deadline:
    try:
        chunk = s.recv(4096)
    except socket.timeout:
        break
    except (ssl.SSLError, OSError):
        closed = True
        break
    if not chunk:
        closed = True
        break
    received += chunk
print(json.dumps({"connack": connack.hex(), "received": received.hex(), "closed": closed}))
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A CONNECT for protocol level 4 or 5, client id "raw-1", keep-alive 60.
fn connect_packet(level: u8) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 60];
    if level == 5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(&[0, 5]);
    body.extend_from_slice(b"raw-1");
    let mut packet = vec![0x10, u8::try_from(body.len()).expect("short")];
    packet.extend_from_slice(&body);
    packet
}

/// A QoS 0 PUBLISH of "x" to `topic` (MQTT 5: no properties).
fn publish_packet(level: u8, topic: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(topic.len()).expect("short").to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    if level == 5 {
        body.push(0);
    }
    body.push(b'x');
    let mut packet = vec![0x30, u8::try_from(body.len()).expect("short")];
    packet.extend_from_slice(&body);
    packet
}

/// Whether the server closed `stream` (EOF or reset) within `wait`.
fn closed_within(mut stream: &TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn connections_over_the_per_address_limit_are_closed_at_accept() {
    let f = fleet(5);
    let server = f.serve();
    let addr = ("127.0.0.1", server.mqtt);

    // Five clients that connect and never start their TLS handshake.
    let silent: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // The sixth is closed at once, without a TLS handshake.
    let sixth = TcpStream::connect(addr).expect("connect");
    assert!(
        closed_within(&sixth, Duration::from_secs(1)),
        "a sixth connection from one address was left open"
    );
    // And so is a real client.
    assert!(f.create_keys(server.mqtt).is_err());
    // The five are still waiting for their handshake (10 s timeout).
    for s in &silent {
        assert!(!closed_within(s, Duration::from_millis(100)));
    }

    // Once they are gone, a real client connects and provisions.
    // (The server notices the closes on its own time: try until it did.)
    drop(silent);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let created = loop {
        match f.create_keys(server.mqtt) {
            Ok(created) => break created,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("mosquitto_rr after the flood: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(created["certificateId"].is_string(), "{created}");
}

#[test]
fn a_malformed_packet_or_a_wildcard_publish_closes_the_connection_only() {
    let f = fleet(512);
    let server = f.serve();
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        // A topic length past the end of the packet.
        ("topic past the end", 4, vec![0x30, 3, 0, 5, b'a']),
        ("topic past the end", 5, vec![0x30, 3, 0, 5, b'a']),
        // Five remaining-length bytes.
        (
            "remaining length",
            4,
            vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
        // A packet type 0 (reserved).
        ("reserved packet type", 5, vec![0x00, 0]),
        (
            "wildcard #",
            4,
            publish_packet(4, "$aws/certificates/create/#"),
        ),
        ("wildcard #", 5, publish_packet(5, "#")),
        ("wildcard +", 4, publish_packet(4, "$aws/+/create/json")),
    ];
    for (what, level, then) in cases {
        let report = f.raw(server.mqtt, &connect_packet(level), &then);
        let connack = report["connack"].as_str().unwrap_or_default();
        let accepted = if level == 5 { "20030000" } else { "20020000" };
        assert!(
            connack.starts_with(accepted),
            "{what} (level {level}): {report}"
        );
        assert_eq!(
            report["closed"], true,
            "{what} (level {level}): connection left open: {report}"
        );
        // Nothing was accepted: no PUBACK, no reply.
        assert_eq!(report["received"], "", "{what} (level {level}): {report}");
        // The server still serves other clients.
        let created = f
            .create_keys(server.mqtt)
            .unwrap_or_else(|e| panic!("mosquitto_rr after {what}: {e}"));
        assert!(created["certificateId"].is_string(), "{created}");
    }

    // A well-formed packet on the same kind of raw connection is answered
    // and the connection stays open.
    for level in [4, 5] {
        let report = f.raw(server.mqtt, &connect_packet(level), &[0xc0, 0]);
        assert_eq!(
            report["received"], "d000",
            "PINGRESP, level {level}: {report}"
        );
        assert_eq!(report["closed"], false, "level {level}: {report}");
    }
}
