//! One MQTT connection: CONNECT, the identity from the client certificate,
//! then subscriptions, fleet provisioning requests answered on the same
//! connection, device messages routed through the broker, keep-alive, and
//! the topic rules per identity (a claim that steps outside its topics is
//! disconnected).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use idmint_fleet::{ClaimSession, Fleet, MqttIdentity, Rejection};
use idmint_flows::access::policy::IotAction;
use idmint_flows::access::{PolicyHolder, PolicySubject};
use idmint_registry::CertificateId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;

use super::codec::{self, CodecError, Incoming, QoS, Version};
use super::payload::{
    self, CreatedResponse, CsrRequest, RegisterRequest, RegisteredResponse, RejectedResponse,
};
use super::topics::{self, FleetTopic, Operation};
use super::{Message, MqttContext};

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionEnd {
    #[error("connection closed")]
    Closed,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("not authorised: {0}")]
    NotAuthorized(String),
    #[error("keep-alive expired")]
    KeepAlive,
}

struct Session<S> {
    ctx: Arc<MqttContext>,
    stream: S,
    version: Version,
    inbuf: BytesMut,
    out: BytesMut,
    identity: MqttIdentity,
    client_id: String,
    subscriptions: Vec<(String, QoS)>,
    broker: Option<broadcast::Receiver<Arc<Message>>>,
    next_pkid: u16,
    /// The policies a device session is decided by (claims: their
    /// templates' topics instead).
    policy: PolicySubject,
    /// Receive decisions by topic, cleared when the policies are reloaded.
    receive_cache: std::collections::HashMap<String, bool>,
}

/// Receive decisions kept per session at most.
const RECEIVE_CACHE: usize = 1024;

fn certificate_of(identity: &MqttIdentity) -> &CertificateId {
    match identity {
        MqttIdentity::Claim { certificate_id, .. }
        | MqttIdentity::Device { certificate_id, .. } => certificate_id,
    }
}

/// Serves one connection whose TLS handshake presented `chain`.
pub(crate) async fn serve<S>(
    ctx: Arc<MqttContext>,
    mut stream: S,
    chain: Vec<Vec<u8>>,
) -> Result<(), SessionEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max = ctx.max_packet_bytes;
    let mut inbuf = BytesMut::with_capacity(4096);
    let connect_timeout = ctx.connect_timeout;
    let (version, client_id, keep_alive) = tokio::time::timeout(connect_timeout, async {
        loop {
            match codec::read_connect(&mut inbuf, max) {
                Ok((
                    v,
                    Incoming::Connect {
                        client_id,
                        keep_alive,
                    },
                )) => return Ok((v, client_id, keep_alive)),
                Ok(_) => {
                    return Err(SessionEnd::Protocol(
                        "the first packet must be CONNECT".into(),
                    ))
                }
                Err(CodecError::Incomplete) => {
                    if stream.read_buf(&mut inbuf).await? == 0 {
                        return Err(SessionEnd::Closed);
                    }
                }
                Err(e) => return Err(SessionEnd::Protocol(e.to_string())),
            }
        }
    })
    .await
    .map_err(|_| {
        SessionEnd::Protocol(format!("no CONNECT within {} s", connect_timeout.as_secs()))
    })??;
    let mut out = BytesMut::new();
    let identity = match Fleet::new(&ctx.state.idmint)
        .identify_mqtt_client(&chain)
        .await
    {
        Ok(identity) => identity,
        Err(rejection) => {
            codec::connack(version, false, &mut out);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            return Err(SessionEnd::NotAuthorized(rejection.message));
        }
    };
    // A device connects only where its policies allow `iot:Connect` on
    // its client id (an admin grant admits the events topics alone).
    let policy = match &identity {
        MqttIdentity::Claim { .. } => PolicySubject::default(),
        MqttIdentity::Device {
            certificate_id,
            thing,
            common_name,
            admin,
            ..
        } => {
            let holder = PolicyHolder {
                certificate_id,
                thing: thing.as_deref(),
                common_name: common_name.as_deref(),
            };
            let subject = ctx
                .state
                .idmint
                .policy_subject_of(&holder, &client_id)
                .await
                .map_err(|e| SessionEnd::Protocol(format!("policies: {e}")))?;
            if !admin && !subject.allows(IotAction::Connect, &client_id) {
                tracing::info!(client = %client_id, certificate = %certificate_id, "connect refused: no policy allows iot:Connect on this client id");
                codec::connack(version, false, &mut out);
                let _ = stream.write_all(&out).await;
                let _ = stream.shutdown().await;
                return Err(SessionEnd::NotAuthorized(format!(
                    "no policy allows iot:Connect for client id {client_id:?}"
                )));
            }
            subject
        }
    };
    if let MqttIdentity::Device {
        registered: Some(event),
        ..
    } = &identity
    {
        let topic = topics::registered_event_topic(&event.ca_certificate_id);
        ctx.publish_event(
            topic,
            Bytes::from(serde_json::to_vec(event).unwrap_or_default()),
        )
        .await;
    }
    codec::connack(version, true, &mut out);
    stream.write_all(&out).await?;
    out.clear();
    let mut session = Session {
        ctx,
        stream,
        version,
        inbuf,
        out,
        identity,
        client_id,
        subscriptions: Vec::new(),
        broker: None,
        next_pkid: 0,
        policy,
        receive_cache: std::collections::HashMap::new(),
    };
    let result = session.run(keep_alive).await;
    let _ = session.flush().await;
    result
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn run(&mut self, keep_alive: u16) -> Result<(), SessionEnd> {
        // MQTT: the server may close after 1.5 keep-alive periods of silence.
        let idle = if keep_alive == 0 {
            Duration::from_secs(24 * 3600)
        } else {
            Duration::from_millis(u64::from(keep_alive) * 1500)
        };
        let mut last_heard = Instant::now();
        let recheck = Duration::from_secs(self.ctx.state.idmint.config().mqtt.recheck_secs.max(1));
        let mut next_check = tokio::time::Instant::now() + recheck;
        loop {
            // Packets already buffered first.
            loop {
                match codec::read(self.version, &mut self.inbuf, self.ctx.max_packet_bytes) {
                    Ok(packet) => {
                        last_heard = Instant::now();
                        if !self.handle(packet).await? {
                            return Ok(());
                        }
                    }
                    Err(CodecError::Incomplete) => break,
                    Err(e) => return Err(SessionEnd::Protocol(e.to_string())),
                }
            }
            self.flush().await?;
            let deadline = last_heard + idle;
            let broker = self.broker.as_mut();
            tokio::select! {
                read = self.stream.read_buf(&mut self.inbuf) => {
                    if read? == 0 {
                        return Err(SessionEnd::Closed);
                    }
                }
                message = async {
                    match broker {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match message {
                        Ok(m) => self.deliver(&m),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(client = %self.client_id, "dropped {n} messages for a slow subscriber");
                        }
                        Err(broadcast::error::RecvError::Closed) => self.broker = None,
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => return Err(SessionEnd::KeepAlive),
                _ = tokio::time::sleep_until(next_check) => {
                    next_check = tokio::time::Instant::now() + recheck;
                    self.recheck().await?;
                }
            }
        }
    }

    async fn flush(&mut self) -> Result<(), SessionEnd> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Handles one packet; `false` ends the session cleanly.
    async fn handle(&mut self, packet: Incoming) -> Result<bool, SessionEnd> {
        match packet {
            Incoming::Publish {
                topic,
                qos,
                pkid,
                payload,
            } => {
                self.on_publish(topic, qos, pkid, payload).await?;
            }
            Incoming::Subscribe { pkid, filters } => self.on_subscribe(pkid, filters)?,
            Incoming::Unsubscribe { pkid, filters } => {
                self.subscriptions.retain(|(f, _)| !filters.contains(f));
                codec::unsuback(self.version, pkid, filters.len(), &mut self.out);
            }
            Incoming::PingReq => codec::pingresp(self.version, &mut self.out),
            Incoming::PubAck => {}
            Incoming::PubRel { pkid } => codec::pubcomp(self.version, pkid, &mut self.out),
            Incoming::Disconnect => return Ok(false),
            Incoming::Connect { .. } => {
                return Err(SessionEnd::Protocol("a second CONNECT".into()));
            }
            Incoming::Unsupported(what) => {
                return Err(SessionEnd::Protocol(format!("unsupported packet: {what}")));
            }
        }
        Ok(true)
    }

    /// The re-check timer: a session whose certificate is no longer in
    /// force (revoked, deactivated, expired) is closed; a device's policies
    /// are reloaded, so attach and detach take effect.
    async fn recheck(&mut self) -> Result<(), SessionEnd> {
        let certificate = certificate_of(&self.identity).clone();
        self.ensure_in_force(&certificate).await?;
        if let MqttIdentity::Device { .. } = self.identity {
            match self
                .ctx
                .state
                .idmint
                .policy_subject(&certificate, &self.client_id)
                .await
            {
                Ok(subject) => {
                    self.policy = subject;
                    self.receive_cache.clear();
                }
                Err(e) => tracing::warn!(client = %self.client_id, "policy reload failed: {e}"),
            }
        }
        Ok(())
    }

    async fn ensure_in_force(&mut self, certificate: &CertificateId) -> Result<(), SessionEnd> {
        match self
            .ctx
            .state
            .idmint
            .certificate_in_force(certificate)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::info!(client = %self.client_id, %certificate, "session closed: its certificate is no longer ACTIVE and valid");
                Err(self.refuse(format!(
                    "certificate {certificate} is no longer ACTIVE and valid"
                )))
            }
            // The store is unreachable: keep the session, ask again later.
            Err(e) => {
                tracing::warn!(client = %self.client_id, "certificate re-check failed: {e}");
                Ok(())
            }
        }
    }

    fn refuse(&mut self, why: String) -> SessionEnd {
        codec::disconnect_not_authorized(self.version, &mut self.out);
        SessionEnd::NotAuthorized(why)
    }

    fn on_subscribe(&mut self, pkid: u16, filters: Vec<(String, QoS)>) -> Result<(), SessionEnd> {
        let mut granted = Vec::with_capacity(filters.len());
        let limit = self.ctx.state.idmint.config().mqtt.max_subscriptions.max(1);
        for (filter, qos) in filters {
            let new = !self.subscriptions.iter().any(|(f, _)| *f == filter);
            if new && self.subscriptions.len() >= limit {
                tracing::info!(client = %self.client_id, "subscription to {filter:?} refused: the session holds {limit} filters ([mqtt] max_subscriptions)");
                granted.push(None);
                continue;
            }
            let allowed = codec::valid_filter(&filter)
                && match &self.identity {
                    MqttIdentity::Claim { templates, .. } => {
                        if !topics::claim_may_subscribe(&filter, templates) {
                            return Err(self.refuse(format!(
                                "a claim certificate may not subscribe to {filter:?}"
                            )));
                        }
                        true
                    }
                    MqttIdentity::Device { admin, .. } if filter.starts_with("$aws/events/") => {
                        *admin
                    }
                    MqttIdentity::Device { .. } => {
                        !topics::reserved(&filter)
                            && self.policy.allows(IotAction::Subscribe, &filter)
                    }
                };
            if !allowed {
                tracing::info!(client = %self.client_id, "subscription to {filter:?} refused by policy");
            }
            if allowed {
                // QoS 2 is granted as QoS 1, as AWS IoT does.
                let qos = if qos == QoS::AtMostOnce {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                self.subscriptions.retain(|(f, _)| *f != filter);
                if !matches!(self.identity, MqttIdentity::Claim { .. }) && self.broker.is_none() {
                    self.broker = Some(self.ctx.broker.subscribe());
                }
                self.subscriptions.push((filter, qos));
                granted.push(Some(qos));
            } else {
                granted.push(None);
            }
        }
        codec::suback(self.version, pkid, &granted, &mut self.out);
        Ok(())
    }

    /// The QoS this client subscribed to `topic` with, if it did.
    fn subscribed(&self, topic: &str) -> Option<QoS> {
        self.subscriptions
            .iter()
            .filter(|(f, _)| topics::matches(topic, f))
            .map(|(_, q)| *q)
            .max_by_key(|q| *q as u8)
    }

    fn send(&mut self, topic: &str, qos: QoS, payload: Bytes) {
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            self.next_pkid
        };
        codec::publish(self.version, topic, qos, pkid, payload, &mut self.out);
    }

    /// Whether this session may receive messages on `topic`.
    fn may_receive(&mut self, topic: &str) -> bool {
        let admin = matches!(self.identity, MqttIdentity::Device { admin: true, .. });
        if topic.starts_with("$aws/events/") {
            return admin;
        }
        if let Some(allowed) = self.receive_cache.get(topic) {
            return *allowed;
        }
        let allowed = self.policy.allows(IotAction::Receive, topic);
        if self.receive_cache.len() >= RECEIVE_CACHE {
            self.receive_cache.clear();
        }
        self.receive_cache.insert(topic.to_string(), allowed);
        allowed
    }

    fn deliver(&mut self, message: &Message) {
        if self.subscribed(&message.topic).is_none() || !self.may_receive(&message.topic) {
            return;
        }
        if let Some(qos) = self.subscribed(&message.topic) {
            self.send(&message.topic, qos, message.payload.clone());
        }
    }

    async fn on_publish(
        &mut self,
        topic: String,
        qos: QoS,
        pkid: u16,
        payload: Bytes,
    ) -> Result<(), SessionEnd> {
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => codec::puback(self.version, pkid, &mut self.out),
            QoS::ExactlyOnce => codec::pubrec(self.version, pkid, &mut self.out),
        }
        if !codec::valid_topic(&topic) {
            return Err(SessionEnd::Protocol(format!("invalid topic {topic:?}")));
        }
        let fleet = FleetTopic::parse(&topic);
        match (&self.identity, fleet) {
            (MqttIdentity::Claim { templates, .. }, Some(request))
                if request.allowed_for_claim(templates) =>
            {
                self.on_fleet_request(request, qos, payload).await;
                Ok(())
            }
            (MqttIdentity::Claim { .. }, _) => {
                Err(self.refuse(format!("a claim certificate may not publish to {topic:?}")))
            }
            (MqttIdentity::Device { .. }, _) if topics::reserved(&topic) => Err(self.refuse(
                format!("{topic:?} is for claim certificates and the service only"),
            )),
            (MqttIdentity::Device { .. }, _) => {
                if !self.policy.allows(IotAction::Publish, &topic) {
                    tracing::info!(client = %self.client_id, "publish to {topic:?} refused by policy; disconnected");
                    return Err(self.refuse(format!("no policy allows iot:Publish on {topic:?}")));
                }
                self.ctx.publish(topic, payload);
                Ok(())
            }
        }
    }

    async fn on_fleet_request(&mut self, request: FleetTopic, qos: QoS, payload: Bytes) {
        let started = Instant::now();
        let accepted_topic = request.accepted();
        let rejected_topic = request.rejected();
        let subscribed = self.subscribed(&accepted_topic).is_some()
            || self.subscribed(&rejected_topic).is_some();
        let outcome = if qos == QoS::ExactlyOnce {
            Err(Rejection::invalid(
                "InvalidQoS",
                "QoS 2 is not supported: publish with QoS 0 or 1",
            ))
        } else if !subscribed {
            Err(Rejection::invalid(
                "NotSubscribed",
                format!("subscribe to {accepted_topic} and {rejected_topic} before publishing the request; it was not processed"),
            ))
        } else {
            self.fleet_operation(&request, &payload).await
        };
        let (topic, body, status) = match outcome {
            Ok(body) => (accepted_topic, body, 200),
            Err(rejection) => {
                tracing::info!(client = %self.client_id, op = request.name(), code = rejection.error_code, "{}", rejection.message);
                let status = rejection.status_code;
                (
                    rejected_topic,
                    payload::encode(request.format, &RejectedResponse::from(&rejection)),
                    status,
                )
            }
        };
        self.ctx
            .state
            .metrics
            .observe("MQTT", request.name(), status, started.elapsed());
        let qos = self.subscribed(&topic).unwrap_or(QoS::AtMostOnce);
        self.send(&topic, qos, Bytes::from(body));
    }

    async fn fleet_operation(
        &mut self,
        request: &FleetTopic,
        payload: &[u8],
    ) -> Result<Vec<u8>, Rejection> {
        let MqttIdentity::Claim {
            certificate_id,
            templates,
            rate_per_minute,
        } = &self.identity
        else {
            return Err(Rejection::forbidden(
                "ACCESS_DENIED",
                "only claim certificates provision",
            ));
        };
        // Counted in the store: the limit holds across servers.
        Fleet::new(&self.ctx.state.idmint)
            .count_claim_request(certificate_id, *rate_per_minute)
            .await?;
        // Each operation refuses a claim certificate that is no longer in
        // force (revoked, deactivated, expired since CONNECT).
        let claim = ClaimSession {
            certificate_id: certificate_id.clone(),
            templates: templates.clone(),
            client_id: self.client_id.clone(),
        };
        let idmint = &self.ctx.state.idmint;
        match &request.operation {
            Operation::CreateKeysAndCertificate => {
                let _: payload::CreateRequest = payload::decode(request.format, payload)?;
                let created = Fleet::new(idmint).fleet_create_keys(&claim).await?;
                self.ctx.state.metrics.issued();
                Ok(payload::encode(
                    request.format,
                    &CreatedResponse {
                        certificate_id: created.certificate_id,
                        certificate_pem: created.certificate_pem,
                        private_key: created.private_key.map(|k| k.to_string()),
                        certificate_ownership_token: created.ownership_token.to_string(),
                    },
                ))
            }
            Operation::CreateCertificateFromCsr => {
                let req: CsrRequest = payload::decode(request.format, payload)?;
                let csr = req
                    .certificate_signing_request
                    .filter(|c| !c.trim().is_empty())
                    .ok_or_else(|| {
                        Rejection::invalid(
                            "InvalidPayload",
                            "certificateSigningRequest is missing or empty",
                        )
                    })?;
                // Parsed here, at the edge, as EST does: the flow gets a
                // checked PKCS#10 request, never the device's text.
                let csr = idmint_pki::Csr::from_pem(csr.as_bytes()).map_err(|e| {
                    Rejection::invalid("InvalidCsr", format!("certificateSigningRequest: {e}"))
                })?;
                let created = Fleet::new(idmint)
                    .fleet_create_from_csr(&claim, &csr)
                    .await?;
                self.ctx.state.metrics.issued();
                Ok(payload::encode(
                    request.format,
                    &CreatedResponse {
                        certificate_id: created.certificate_id,
                        certificate_pem: created.certificate_pem,
                        private_key: None,
                        certificate_ownership_token: created.ownership_token.to_string(),
                    },
                ))
            }
            Operation::RegisterThing(template) => {
                let req: RegisterRequest = payload::decode(request.format, payload)?;
                let token = req.certificate_ownership_token.unwrap_or_default();
                let parameters: BTreeMap<String, String> = req.parameters.unwrap_or_default();
                let registered = Fleet::new(idmint)
                    .fleet_register_thing(&claim, template, &token, parameters)
                    .await?;
                Ok(payload::encode(
                    request.format,
                    &RegisteredResponse {
                        device_configuration: registered.device_configuration,
                        thing_name: registered.thing_name,
                    },
                ))
            }
        }
    }
}
