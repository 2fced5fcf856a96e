//! The MQTT endpoint of `idmint serve`: TLS with mandatory client
//! certificates, MQTT 3.1.1 and 5 (QoS 0 and 1), and AWS IoT's fleet
//! provisioning topics answered on the connection that asked. Devices that
//! provisioned reconnect with their own certificate; their messages are
//! routed between the clients of this server, and admins can receive JITP
//! registration events: on a PostgreSQL store, those of every server on it.

pub mod codec;
pub mod device;
pub mod payload;
mod session;
pub mod topics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use idmint_fleet::Fleet;
use idmint_registry::{Event, EventChannel, EventListener};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

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
    /// The store's event channel (PostgreSQL): `$aws/events/…` go through
    /// it to the subscribers of every server on the store. `None` (SQLite):
    /// events stay in this process.
    pub events: Option<EventChannel>,
    /// Largest packet accepted.
    pub max_packet_bytes: usize,
    /// How long a client may take to send CONNECT after its TLS handshake
    /// (`[mqtt] connect_timeout_secs`).
    pub connect_timeout: Duration,
}

impl MqttContext {
    /// Routes a message to the subscribed connections of this server.
    pub fn publish(&self, topic: String, payload: Bytes) {
        let _ = self.broker.send(Arc::new(Message { topic, payload }));
    }

    /// Publishes an `$aws/events/…` event to the subscribers of every server
    /// on the store. On PostgreSQL it goes out on the store's channel and
    /// comes back to this server, like to the others, through its listener
    /// ([`relay_events`]), so it is delivered here once; if the store
    /// refuses it, only this server's subscribers get it.
    pub async fn publish_event(&self, topic: String, payload: Bytes) {
        let Some(channel) = &self.events else {
            self.publish(topic, payload);
            return;
        };
        let event = Event {
            topic,
            payload: payload.to_vec(),
        };
        if let Err(e) = channel.publish(&event).await {
            tracing::warn!(topic = %event.topic, "event not shared with the other servers on the store: {e}");
            self.publish(event.topic, payload);
        }
    }
}

/// A bound MQTT listener, ready to run.
pub struct MqttServer {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    context: Arc<MqttContext>,
    limits: tls::ConnectionLimits,
    /// Listening on the store's event channel since bind (PostgreSQL).
    events: Option<EventListener>,
}

impl MqttServer {
    /// Lifts the per-address connection limit to the global one: for an
    /// endpoint whose clients all come from one address by design (the
    /// load generator's own endpoint), never for one facing devices.
    pub fn one_client_address(mut self) -> MqttServer {
        self.limits.max_per_address = self.limits.max_connections;
        self
    }

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
        // Listening before the first connection is accepted: no event of
        // this server's sessions is published before its relay hears it.
        let channel = state.idmint.store().event_channel();
        let events = match &channel {
            Some(channel) => Some(channel.listen().await?),
            None => None,
        };
        Ok(MqttServer {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            context: Arc::new(MqttContext {
                state,
                broker,
                events: channel,
                max_packet_bytes,
                connect_timeout: limits.header_timeout,
            }),
            limits,
            events,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener
            .local_addr()
            .map_err(|e| ServerError::Io("MQTT listener".into(), e))
    }

    /// Serves until `shutdown` resolves; expired ownership tokens and ended
    /// claim rate windows are swept beside, and the store's events relayed
    /// to this server's subscribers. A connection over `[mqtt] max_connections` or
    /// `max_connections_per_address` is closed at accept, before its TLS
    /// handshake.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let sweeper = tokio::spawn(sweep(self.context.clone()));
        let relay = self
            .events
            .map(|events| tokio::spawn(relay_events(events, self.context.clone())));
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
                        match result {
                            // A refusal is the operator's business (a claim
                            // outside its topics, a revoked device): info.
                            Err(e @ session::SessionEnd::NotAuthorized(_)) => {
                                tracing::info!(%peer, "MQTT session refused: {e}");
                            }
                            Err(e) => tracing::debug!(%peer, "MQTT session ended: {e}"),
                            Ok(()) => {}
                        }
                    }
                    _ = closing.wait_for(|c| *c) => {}
                }
            });
        }
        let _ = closing.send(true);
        sweeper.abort();
        if let Some(relay) = relay {
            relay.abort();
        }
        Ok(())
    }
}

/// Delivers the events of every server on the store (this one's included)
/// to this server's subscribers, until the server stops. A lost connection
/// to the store loses the events published until it is back.
async fn relay_events(mut events: EventListener, context: Arc<MqttContext>) {
    loop {
        match events.next().await {
            Ok(Some(event)) => context.publish(event.topic, Bytes::from(event.payload)),
            Ok(None) => {
                tracing::warn!("lost the store's event channel: reconnecting; events published meanwhile are not delivered");
            }
            Err(e) => {
                tracing::warn!("store event channel: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Revokes certificates whose ownership token expired unused, and deletes
/// the counters of claim rate windows that ended, at start and every minute.
async fn sweep(context: Arc<MqttContext>) {
    loop {
        match Fleet::new(&context.state.idmint)
            .sweep_ownership_tokens()
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!("revoked {n} certificates whose ownership token expired"),
            Err(e) => tracing::warn!("ownership token sweep failed: {e}"),
        }
        match Fleet::new(&context.state.idmint)
            .forget_claim_windows()
            .await
        {
            Ok(n) => tracing::debug!("deleted {n} ended claim rate windows"),
            Err(e) => tracing::warn!("claim rate window sweep failed: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}
