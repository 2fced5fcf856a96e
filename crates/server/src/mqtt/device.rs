//! The device side of fleet provisioning, for `idmint loadtest fleet` and
//! tests: an MQTT 3.1.1 client over TLS with a client certificate, on the
//! same codec crate (rumqttc's MQTT 3.1.1 packets), that subscribes, publishes a request and waits
//! for the reply, as device firmware does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{self, Packet};
use rumqttc::mqttbytes::{self, QoS};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub use rustls::ClientConfig;

const MAX_PACKET: usize = 256 * 1024;

/// What can go wrong on the device side.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The socket failed or closed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// TLS set-up failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server refused the connection (CONNACK code).
    #[error("connection refused: {0}")]
    Refused(String),
    /// The server broke the protocol or closed the connection.
    #[error("protocol: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

/// A TLS client configuration trusting `roots` (DER) and presenting
/// `chain_pem` with `key_pem`.
pub fn client_config(
    roots: &[Vec<u8>],
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ClientConfig>, DeviceError> {
    let tls = |e: &dyn std::fmt::Display| DeviceError::Tls(e.to_string());
    let mut store = rustls::RootCertStore::empty();
    for der in roots {
        store
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| tls(&e))?;
    }
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &chain_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&e))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| tls(&e))?
        .ok_or_else(|| DeviceError::Tls("no private key".into()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_root_certificates(store)
        .with_client_auth_cert(chain, key)
        .map_err(|e| tls(&e))?;
    Ok(Arc::new(config))
}

/// A connected device.
pub struct DeviceClient {
    stream: TlsStream<TcpStream>,
    buf: BytesMut,
    next_pkid: u16,
    timeout: Duration,
}

impl DeviceClient {
    /// Connects, completes TLS and CONNECT/CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        client_id: &str,
        timeout: Duration,
    ) -> Result<DeviceClient, DeviceError> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| DeviceError::Timeout("TCP connect"))??;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::from(addr.ip());
        let stream = tokio::time::timeout(
            timeout,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(|_| DeviceError::Timeout("TLS handshake"))??;
        let mut client = DeviceClient {
            stream,
            buf: BytesMut::with_capacity(4096),
            next_pkid: 0,
            timeout,
        };
        let mut connect = v4::Connect::new(client_id);
        connect.keep_alive = 60;
        client.send(|out| connect.write(out)).await?;
        match client.next("CONNACK").await? {
            Packet::ConnAck(ack) if ack.code == v4::ConnectReturnCode::Success => Ok(client),
            Packet::ConnAck(ack) => Err(DeviceError::Refused(format!("{:?}", ack.code))),
            other => Err(DeviceError::Protocol(format!(
                "expected CONNACK, got {other:?}"
            ))),
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    async fn send(
        &mut self,
        write: impl FnOnce(&mut BytesMut) -> Result<usize, mqttbytes::Error>,
    ) -> Result<(), DeviceError> {
        let mut out = BytesMut::new();
        write(&mut out).map_err(|e| DeviceError::Protocol(format!("{e:?}")))?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    async fn next(&mut self, what: &'static str) -> Result<Packet, DeviceError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(packet) => return Ok(packet),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(DeviceError::Protocol(format!("{e:?}"))),
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| DeviceError::Timeout(what))??;
            if read == 0 {
                return Err(DeviceError::Protocol(format!(
                    "the server closed the connection while we waited for {what}"
                )));
            }
        }
    }

    /// Subscribes to `topics` with QoS 1 and waits for the SUBACK.
    pub async fn subscribe(&mut self, topics: &[String]) -> Result<(), DeviceError> {
        let mut subscribe = v4::Subscribe::new_many(
            topics
                .iter()
                .map(|t| v4::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce)),
        );
        subscribe.pkid = self.pkid();
        self.send(|out| subscribe.write(out)).await?;
        loop {
            match self.next("SUBACK").await? {
                Packet::SubAck(ack) => {
                    return if ack
                        .return_codes
                        .iter()
                        .all(|c| *c != v4::SubscribeReasonCode::Failure)
                    {
                        Ok(())
                    } else {
                        Err(DeviceError::Refused("subscription refused".into()))
                    };
                }
                Packet::PubAck(_) | Packet::Publish(_) => {}
                other => {
                    return Err(DeviceError::Protocol(format!(
                        "expected SUBACK, got {other:?}"
                    )))
                }
            }
        }
    }

    /// Publishes with QoS 1 and returns the next message the server sends
    /// (topic, payload).
    pub async fn request(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
    ) -> Result<(String, Bytes), DeviceError> {
        let mut publish = v4::Publish::new(topic, QoS::AtLeastOnce, payload);
        publish.pkid = self.pkid();
        self.send(|out| publish.write(out)).await?;
        loop {
            match self.next("a reply").await? {
                Packet::Publish(p) => {
                    if p.qos == QoS::AtLeastOnce {
                        let ack = v4::PubAck::new(p.pkid);
                        self.send(|out| ack.write(out)).await?;
                    }
                    return Ok((p.topic, p.payload));
                }
                Packet::PubAck(_) => {}
                other => {
                    return Err(DeviceError::Protocol(format!(
                        "expected PUBLISH, got {other:?}"
                    )))
                }
            }
        }
    }

    /// Sends DISCONNECT and closes.
    pub async fn disconnect(mut self) {
        let _ = self.send(|out| v4::Disconnect.write(out)).await;
        let _ = self.stream.shutdown().await;
    }
}
