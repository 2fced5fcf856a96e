//! The MQTT endpoint of `idmint serve`: TLS with mandatory client
//! certificates, MQTT 3.1.1 and 5 (QoS 0 and 1), and AWS IoT's fleet
//! provisioning topics answered on the connection that asked. Devices that
//! provisioned reconnect with their own certificate; their messages are
//! routed between the clients of this server, and admins can receive JITP
//! registration events.

pub mod codec;
pub mod device;
pub mod payload;
mod session;
pub mod topics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::ratelimit::RateLimiter;
use crate::{tls, ServerError, Shared};

/// A message routed between clients.
#[derive(Debug)]
pub struct Message {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
}

/// What every MQTT connection shares.
pub struct MqttContext {
    /// The HTTPS server's state (data directory, store, metrics).
    pub state: Shared,
    /// Device messages and events, to every subscribed connection.
    pub broker: broadcast::Sender<Arc<Message>>,
    /// Provisioning requests per claim certificate.
    pub claim_limiter: RateLimiter<String>,
    /// Largest packet accepted.
    pub max_packet_bytes: usize,
}

impl MqttContext {
    /// Routes a message to the subscribed connections of this server.
    pub fn publish(&self, topic: String, payload: Bytes) {
        let _ = self.broker.send(Arc::new(Message { topic, payload }));
    }
}

/// A bound MQTT listener, ready to run.
pub struct MqttServer {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    context: Arc<MqttContext>,
    limits: tls::ConnectionLimits,
}

impl MqttServer {
    /// Binds `listen` with the same server identity as the HTTPS endpoint.
    pub async fn bind(state: Shared, listen: &str) -> Result<MqttServer, ServerError> {
        let (chain, key) = tls::server_identity(&state.idmint).await?;
        let config = tls::mqtt_server_config(chain, key)?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| ServerError::Io(listen.to_string(), e))?;
        let max_packet_bytes = state.idmint.config().fleet.max_packet_bytes;
        let limits = tls::ConnectionLimits::of_mqtt(&state.idmint.config().mqtt);
        let (broker, _) = broadcast::channel(4096);
        Ok(MqttServer {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            context: Arc::new(MqttContext {
                state,
                broker,
                claim_limiter: RateLimiter::new(0, 0),
                max_packet_bytes,
            }),
            limits,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener
            .local_addr()
            .map_err(|e| ServerError::Io("MQTT listener".into(), e))
    }

    /// Serves until `shutdown` resolves; expired ownership tokens are swept
    /// beside. A connection over `[mqtt] max_connections` or
    /// `max_connections_per_address` is closed at accept, before its TLS
    /// handshake.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let sweeper = tokio::spawn(sweep_tokens(self.context.clone()));
        tokio::pin!(shutdown);
        let (closing, _) = tokio::sync::watch::channel(false);
        let count = Arc::new(tls::ConnectionCount::default());
        let limits = self.limits;
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("MQTT accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Some(slot) = count.admit(peer.ip(), &limits) else {
                tracing::debug!(%peer, "MQTT connection limit reached: closed at accept");
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let context = self.context.clone();
            let mut closing = closing.subscribe();
            tokio::spawn(async move {
                let _slot = slot;
                let tls =
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "MQTT TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => return,
                    };
                let chain: Vec<Vec<u8>> = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.to_vec()).collect())
                    .unwrap_or_default();
                tokio::select! {
                    result = session::serve(context, tls, chain) => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, "MQTT session ended: {e}");
                        }
                    }
                    _ = closing.wait_for(|c| *c) => {}
                }
            });
        }
        let _ = closing.send(true);
        sweeper.abort();
        Ok(())
    }
}

/// Revokes certificates whose ownership token expired unused, at start and
/// every minute.
async fn sweep_tokens(context: Arc<MqttContext>) {
    loop {
        match context.state.idmint.sweep_ownership_tokens().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("revoked {n} certificates whose ownership token expired"),
            Err(e) => tracing::warn!("ownership token sweep failed: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}
