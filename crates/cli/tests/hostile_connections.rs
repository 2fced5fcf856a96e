//! Connections that hold the server hostage: clients that trickle bytes
//! and never finish a handshake or a request are closed by the header
//! timeout, a flood from one address is capped at accept, and a fresh
//! client still enrolls over EST meanwhile.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
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
