//! Connections that hold the server hostage: clients that trickle bytes
//! and never finish a handshake, a request's headers or body, or an MQTT
//! CONNECT are closed by the timeouts (`[server] header_timeout_secs`,
//! `body_timeout_secs`, `[mqtt] connect_timeout_secs`), a flood from one
//! address is capped at accept, and a fresh client still enrolls over EST
//! meanwhile: at 250 connections with the per-address limit, and at the
//! issue's scale, 2,000 on HTTPS and 2,000 on MQTT.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::{batch, csr, curl, token, Env};

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
fn trickling_connections_are_closed_and_a_fresh_client_still_enrolls() {
    let env = Env::new();
    env.ok(&["init", "--org", "Hostile Co"]);
    let toml = env.data().join("idmint.toml");
    let text = std::fs::read_to_string(&toml).expect("idmint.toml");
    assert!(text.contains("header_timeout_secs = 10"), "{text}");
    std::fs::write(
        &toml,
        text.replace(
            "max_connections_per_address = 512",
            "max_connections_per_address = 300",
        )
        .replace("header_timeout_secs = 10", "header_timeout_secs = 2"),
    )
    .expect("write idmint.toml");
    let b = batch(&env, "10");
    let secret = token(&env, "line-1", "enroll", Some(&b));
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    let server = env.serve(&["--rate-limit", "0"]);
    let addr = ("127.0.0.1", server.port);

    // 250 clients that send a byte and then nothing.
    let tricklers: Vec<TcpStream> = (0..250)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(&[0x16]).expect("one byte");
            s
        })
        .collect();

    // A fresh client enrolls within a second meanwhile.
    let body = csr(&env, "fresh", "fresh-0001");
    let data = format!("@{}", body.display());
    let auth = format!("line-1:{secret}");
    let start = Instant::now();
    let (code, out) = curl(
        &root,
        &format!(
            "https://localhost:{}/.well-known/est/simpleenroll",
            server.port
        ),
        &[
            "-m",
            "5",
            "-u",
            &auth,
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &data,
        ],
    );
    assert_eq!(code, 200, "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "enrollment took {:?} beside 250 trickling connections",
        start.elapsed()
    );

    // Over the per-address limit: closed at accept.
    let extra: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let refused = extra
        .iter()
        .filter(|s| closed_within(s, Duration::from_millis(500)))
        .count();
    assert!(
        refused >= 10,
        "only {refused} of 60 connections over the limit were closed"
    );

    // The tricklers are closed by the header timeout (2 s): the first
    // read waits for it, the others find theirs closed by then.
    let closed = tricklers
        .iter()
        .filter(|s| closed_within(s, Duration::from_secs(4)))
        .count();
    assert_eq!(closed, 250, "trickling connections left open");
}

/// A client that made one request on a keep-alive connection and then
/// went quiet is closed by the header timeout too: hyper runs it whenever
/// the connection waits for a request's head, the next one included.
#[test]
fn an_idle_keep_alive_connection_is_closed_by_the_header_timeout() {
    let env = Env::new();
    env.ok(&["init", "--org", "Idle Co"]);
    let toml = env.data().join("idmint.toml");
    let text = std::fs::read_to_string(&toml).expect("idmint.toml");
    std::fs::write(
        &toml,
        text.replace("header_timeout_secs = 10", "header_timeout_secs = 2"),
    )
    .expect("write idmint.toml");
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    let server = env.serve(&[]);
    let config = tls_config(&root, None);

    let Stream::Tls(mut tls) = tls_connect(&config, server.port) else {
        unreachable!("tls_connect returns a TLS stream")
    };
    for round in 0..2 {
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("request");
        tls.flush().expect("flush");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tls.read_exact(&mut byte).expect("response head");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "round {round}: {head}");
        assert!(!head.contains("connection: close"), "round {round}: {head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        let mut body = vec![0u8; length];
        tls.read_exact(&mut body).expect("response body");
        // Quiet for less than the timeout: the connection stays usable.
        if round == 0 {
            std::thread::sleep(Duration::from_millis(1000));
        }
    }
    // Quiet for longer than the timeout: closed.
    let start = Instant::now();
    assert!(
        closed_within(&tls.sock, Duration::from_secs(6)),
        "an idle keep-alive connection was left open"
    );
    let after = start.elapsed();
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
        "closed after {after:?}, not at the 2 s header timeout"
    );
}

/// Connections per kind in the test at the issue's scale.
const HTTPS_HANDSHAKE_TRICKLERS: usize = 1000;
const HTTPS_HEADER_TRICKLERS: usize = 1000;
const HTTPS_BODY_TRICKLERS: usize = 20;
const HTTPS_SILENT_AFTER_TLS: usize = 20;
const MQTT_HANDSHAKE_TRICKLERS: usize = 1000;
const MQTT_CONNECT_TRICKLERS: usize = 1000;
/// `[server] header_timeout_secs`, `body_timeout_secs` and `[mqtt]
/// connect_timeout_secs` in that test.
const TIMEOUT_SECS: u64 = 10;

const FLEET_TEMPLATE: &str = r#"{
  "Parameters": {"SerialNumber": {"Type": "String"}},
  "Resources": {
    "certificate": {
      "Type": "AWS::IoT::Certificate",
      "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"}
    }
  }
}"#;

/// One trickling connection: the bytes it sends one a second, how far it
/// got, and when the server closed it.
struct Trickler {
    kind: &'static str,
    stream: Stream,
    bytes: Vec<u8>,
    sent: usize,
    opened: Instant,
    /// When its first byte went out.
    first_sent: Option<Instant>,
    closed: Option<Instant>,
    /// What the server answered before closing (the 408 of a body trickler).
    answer: Vec<u8>,
}

enum Stream {
    /// Plain TCP: trickles a TLS ClientHello.
    Tcp(TcpStream),
    /// Past the TLS handshake: trickles plaintext.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Trickler {
    fn tcp(&self) -> &TcpStream {
        match &self.stream {
            Stream::Tcp(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Sends the next byte (if any is left); notes when the server closed.
    fn tick(&mut self) {
        if self.closed.is_some() {
            return;
        }
        if self.sent < self.bytes.len() {
            let byte = [self.bytes[self.sent]];
            let written = match &mut self.stream {
                Stream::Tcp(s) => s.write_all(&byte),
                Stream::Tls(s) => s.write_all(&byte).and_then(|_| s.flush()),
            };
            match written {
                Ok(()) => {
                    self.sent += 1;
                    self.first_sent.get_or_insert_with(Instant::now);
                }
                Err(_) => {
                    self.closed = Some(Instant::now());
                    return;
                }
            }
        }
        self.poll();
    }

    /// Notes an EOF or reset from the server without blocking; keeps what
    /// it sent (decrypted, past a TLS handshake).
    fn poll(&mut self) {
        if self.closed.is_some() {
            return;
        }
        self.tcp().set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 4096];
        let closed = match &mut self.stream {
            Stream::Tcp(tcp) => loop {
                match tcp.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => self.answer.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            },
            Stream::Tls(tls) => loop {
                match tls.conn.read_tls(&mut tls.sock) {
                    Ok(0) => break true,
                    Ok(_) => {
                        if tls.conn.process_new_packets().is_err() {
                            break true;
                        }
                        let mut eof = false;
                        loop {
                            match tls.conn.reader().read(&mut buf) {
                                Ok(0) => {
                                    eof = true;
                                    break;
                                }
                                Ok(n) => self.answer.extend_from_slice(&buf[..n]),
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                                Err(_) => {
                                    eof = true;
                                    break;
                                }
                            }
                        }
                        if eof {
                            break true;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            },
        };
        self.tcp().set_nonblocking(false).expect("blocking");
        if closed {
            self.closed = Some(Instant::now());
        }
    }
}

/// A TLS ClientHello as rustls sends it (the first flight, raw bytes).
fn client_hello(config: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap())
        .expect("client connection");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("client hello");
    }
    hello
}

/// A TLS connection to `port` with its handshake done.
fn tls_connect(config: &Arc<rustls::ClientConfig>, port: u16) -> Stream {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let mut conn = rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap())
        .expect("client connection");
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).expect("TLS handshake");
    }
    Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
}

fn tls_config(root: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::fs::read(root).expect("root").as_slice()) {
        roots
            .add(cert.expect("root PEM"))
            .expect("root certificate");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = rustls_pemfile::certs(&mut std::fs::read(cert).expect("cert").as_slice())
                .collect::<Result<Vec<_>, _>>()
                .expect("client chain");
            let key = rustls_pemfile::private_key(&mut std::fs::read(key).expect("key").as_slice())
                .expect("client key PEM")
                .expect("a client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate")
        }
    };
    Arc::new(config)
}

/// An MQTT 3.1.1 CONNECT for `client_id` (keep-alive 60 s, clean session).
fn mqtt_connect(client_id: &str) -> Vec<u8> {
    let mut variable = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    variable.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    variable.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, variable.len() as u8];
    packet.extend_from_slice(&variable);
    packet
}

/// Raises the soft open-files limit to `need` when it is lower (the test
/// holds one descriptor per connection); fails when the hard limit is lower.
fn ensure_open_files(need: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft >= need {
        return;
    }
    assert!(
        hard >= need,
        "this test holds {need} connections; the hard open-files limit is {hard} (raise it: ulimit -Hn)"
    );
    setrlimit(Resource::RLIMIT_NOFILE, need, hard).expect("setrlimit");
}

/// Sets `[section] key = value` in the data directory's `idmint.toml`.
fn set_config(env: &Env, settings: &[(&str, &str, i64)]) {
    let path = env.data().join("idmint.toml");
    let mut config: toml::Table = std::fs::read_to_string(&path)
        .expect("idmint.toml")
        .parse()
        .expect("idmint.toml is TOML");
    for (section, key, value) in settings {
        let table = config
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a section");
        assert!(
            table.contains_key(*key),
            "[{section}] has no {key}: {table:?}"
        );
        table.insert(key.to_string(), toml::Value::Integer(*value));
    }
    std::fs::write(&path, toml::to_string(&config).expect("TOML")).expect("write idmint.toml");
}

#[test]
fn two_thousand_tricklers_on_https_and_mqtt_are_closed_by_the_timeouts_while_a_fresh_client_enrolls(
) {
    let total = HTTPS_HANDSHAKE_TRICKLERS
        + HTTPS_HEADER_TRICKLERS
        + HTTPS_BODY_TRICKLERS
        + HTTPS_SILENT_AFTER_TLS
        + MQTT_HANDSHAKE_TRICKLERS
        + MQTT_CONNECT_TRICKLERS;
    // The server process inherits the limit: it holds as many.
    ensure_open_files(total as u64 + 512);
    let timeout = TIMEOUT_SECS as i64;
    let env = Env::new();
    env.ok(&["init", "--org", "Hostile Co"]);
    // All clients come from 127.0.0.1: the per-address limits are lifted
    // here (`trickling_connections_are_closed_…` tests them).
    set_config(
        &env,
        &[
            ("server", "header_timeout_secs", timeout),
            ("server", "body_timeout_secs", timeout),
            ("server", "max_connections_per_address", 8192),
            ("mqtt", "connect_timeout_secs", timeout),
            ("mqtt", "max_connections_per_address", 8192),
        ],
    );
    let b = batch(&env, "10");
    let secret = token(&env, "line-1", "enroll", Some(&b));
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    let template = env.path("template.json");
    std::fs::write(&template, FLEET_TEMPLATE).expect("template");
    env.ok(&[
        "template",
        "create",
        "Fleet",
        "--body",
        template.to_str().unwrap(),
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
    let body = csr(&env, "fresh", "fresh-0001");

    let (child, listening) = common::spawn_serve(
        &mut env.idmint(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--rate-limit",
            "0",
        ]),
        true,
        None,
    );
    let _server = common::http::Server {
        child,
        port: listening.https,
    };
    let (https, mqtt) = (listening.https, listening.mqtt.expect("MQTT port"));
    let https_tls = tls_config(&root, None);
    let mqtt_tls = tls_config(&root, Some((&claim_cert, &claim_key)));
    let https_hello = client_hello(&https_tls);
    let mqtt_hello = client_hello(&mqtt_tls);

    // The tricklers, opened in this order: those that finish a TLS
    // handshake first (it takes a while), then the plain ones.
    let start = Instant::now();
    let mut tricklers = Vec::with_capacity(total);
    let open = |kind: &'static str, stream: Stream, bytes: Vec<u8>| Trickler {
        kind,
        stream,
        bytes,
        sent: 0,
        opened: Instant::now(),
        first_sent: None,
        closed: None,
        answer: Vec::new(),
    };
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: trickler\r\n\r\n".to_vec();
    for _ in 0..HTTPS_HEADER_TRICKLERS {
        tricklers.push(open(
            "https headers",
            tls_connect(&https_tls, https),
            request.clone(),
        ));
    }
    for i in 0..MQTT_CONNECT_TRICKLERS {
        tricklers.push(open(
            "mqtt CONNECT",
            tls_connect(&mqtt_tls, mqtt),
            mqtt_connect(&format!("trickler-{i}")),
        ));
    }
    for _ in 0..HTTPS_BODY_TRICKLERS {
        let mut stream = tls_connect(&https_tls, https);
        let Stream::Tls(s) = &mut stream else {
            unreachable!()
        };
        s.write_all(
            b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/pkcs10\r\nContent-Length: 600\r\n\r\n",
        )
        .and_then(|_| s.flush())
        .expect("headers");
        tricklers.push(open("https body", stream, b"MIIB".repeat(150)));
    }
    // Past the handshake, then not a byte.
    for _ in 0..HTTPS_SILENT_AFTER_TLS {
        tricklers.push(open(
            "https silent",
            tls_connect(&https_tls, https),
            Vec::new(),
        ));
    }
    let plain = |port: u16| {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Stream::Tcp(s)
    };
    for _ in 0..HTTPS_HANDSHAKE_TRICKLERS {
        tricklers.push(open("https handshake", plain(https), https_hello.clone()));
    }
    for _ in 0..MQTT_HANDSHAKE_TRICKLERS {
        tricklers.push(open("mqtt handshake", plain(mqtt), mqtt_hello.clone()));
    }
    let opened_in = start.elapsed();

    // One byte a second from each, on a thread, until all are closed.
    let deadline = Duration::from_secs(TIMEOUT_SECS + 8);
    let trickling = std::thread::spawn(move || {
        let began = Instant::now();
        while began.elapsed() < deadline && tricklers.iter().any(|t| t.closed.is_none()) {
            let tick = Instant::now();
            for t in &mut tricklers {
                t.tick();
            }
            std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
        }
        tricklers
    });

    // A fresh client enrolls over EST within a second meanwhile.
    let data = format!("@{}", body.display());
    let auth = format!("line-1:{secret}");
    let enroll = Instant::now();
    let (code, out) = curl(
        &root,
        &format!("https://localhost:{https}/.well-known/est/simpleenroll"),
        &[
            "-m",
            "5",
            "-u",
            &auth,
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &data,
        ],
    );
    let enrolled_in = enroll.elapsed();
    assert_eq!(code, 200, "{out}");
    assert!(
        enrolled_in < Duration::from_secs(1),
        "enrollment took {enrolled_in:?} beside {total} trickling connections"
    );

    let tricklers = trickling.join().expect("trickler thread");
    let mut open_kinds = std::collections::BTreeMap::new();
    for t in tricklers.iter().filter(|t| t.closed.is_none()) {
        *open_kinds.entry(t.kind).or_insert(0) += 1;
    }
    assert!(
        open_kinds.is_empty(),
        "trickling connections left open after {deadline:?}: {open_kinds:?}"
    );
    // Each was closed by its timeout: not long after it (one second of
    // trickling granularity and a busy machine's slack), and not before
    // the fresh client enrolled for most of them.
    let mut by_kind: std::collections::BTreeMap<&str, (Duration, Duration)> =
        std::collections::BTreeMap::new();
    for t in &tricklers {
        // hyper's header timeout runs from a request's first byte: a
        // header trickler is timed from its first byte (the others from
        // their connection: the TLS handshake, CONNECT and body timeouts
        // run from there).
        let from = match t.kind {
            "https headers" => t.first_sent.unwrap_or(t.opened),
            _ => t.opened,
        };
        let open_for = t.closed.unwrap_or(from) - from;
        let e = by_kind.entry(t.kind).or_insert((open_for, open_for));
        e.0 = e.0.min(open_for);
        e.1 = e.1.max(open_for);
    }
    let slowest = by_kind
        .values()
        .map(|(_, max)| *max)
        .max()
        .unwrap_or_default();
    assert!(
        slowest <= Duration::from_secs(TIMEOUT_SECS + 4),
        "a trickler stayed open {slowest:?} (timeout {TIMEOUT_SECS} s); open for (least, most) by kind: {by_kind:?}"
    );
    let alive_at_enroll = tricklers
        .iter()
        .filter(|t| t.closed.is_some_and(|c| c > enroll + enrolled_in))
        .count();
    assert!(
        alive_at_enroll * 10 >= total * 9,
        "only {alive_at_enroll} of {total} tricklers were open while the fresh client enrolled (opened in {opened_in:?})"
    );
    for t in tricklers.iter().filter(|t| t.kind == "https body") {
        let answer = String::from_utf8_lossy(&t.answer);
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "a body trickler got {answer:?}"
        );
        assert!(
            t.sent < t.bytes.len(),
            "a body trickler sent its whole body"
        );
    }
    eprintln!(
        "{total} tricklers opened in {opened_in:?}; EST enrollment beside them took {enrolled_in:?}; open for (least, most) by kind: {by_kind:?}"
    );
}
