//! MQTT 3.1.1 and 5 on one connection type: the `mqttbytes` codec does the
//! wire format; this module picks the version from the CONNECT packet and
//! maps both versions' packets onto the few shapes the endpoint needs.

use bytes::{Bytes, BytesMut};
use mqttbytes::{v4, v5, QoS};

/// The protocol version a client connected with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5.
    V5,
}

/// A packet from a client, whatever its version.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// CONNECT.
    Connect {
        /// The client id (may be empty).
        client_id: String,
        /// Keep-alive, seconds (0: none).
        keep_alive: u16,
    },
    /// PUBLISH.
    Publish {
        /// The topic.
        topic: String,
        /// Its QoS.
        qos: QoS,
        /// Packet id (QoS 1 and 2).
        pkid: u16,
        /// The payload.
        payload: Bytes,
    },
    /// SUBSCRIBE.
    Subscribe {
        /// Packet id.
        pkid: u16,
        /// Topic filters and their requested QoS.
        filters: Vec<(String, QoS)>,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        /// Packet id.
        pkid: u16,
        /// Topic filters.
        filters: Vec<String>,
    },
    /// PUBACK (for our QoS 1 publishes).
    PubAck,
    /// PUBREL (the second step of a client's QoS 2 publish).
    PubRel {
        /// Packet id.
        pkid: u16,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect,
    /// Anything a client may send that the endpoint does not use (QoS 2 flow).
    Unsupported(&'static str),
}

/// What went wrong reading a packet.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// More bytes are needed.
    #[error("incomplete packet")]
    Incomplete,
    /// The packet is larger than allowed.
    #[error("packet of {0} bytes is larger than allowed")]
    TooLarge(usize),
    /// Malformed input.
    #[error("malformed packet: {0:?}")]
    Malformed(mqttbytes::Error),
}

impl From<mqttbytes::Error> for CodecError {
    fn from(e: mqttbytes::Error) -> Self {
        match e {
            mqttbytes::Error::InsufficientBytes(_) => CodecError::Incomplete,
            mqttbytes::Error::PayloadSizeLimitExceeded(n) => CodecError::TooLarge(n),
            other => CodecError::Malformed(other),
        }
    }
}

/// Reads the first packet, which must be CONNECT, and tells its version.
pub fn read_connect(buf: &mut BytesMut, max: usize) -> Result<(Version, Incoming), CodecError> {
    mqttbytes::check(buf.iter(), max)?;
    // The 3.1.1 reader also takes a level-5 CONNECT (without reading its
    // properties), so anything but a clean level-4 CONNECT goes to the 5 reader.
    let mut probe = buf.clone();
    let v4_error = match v4::read(&mut probe, max) {
        Ok(v4::Packet::Connect(c)) if c.protocol == mqttbytes::Protocol::V4 => {
            *buf = probe;
            return Ok((
                Version::V4,
                Incoming::Connect {
                    client_id: c.client_id,
                    keep_alive: c.keep_alive,
                },
            ));
        }
        Ok(v4::Packet::Connect(_)) => None,
        Ok(other) => {
            return Err(CodecError::Malformed(mqttbytes::Error::NotConnect(
                packet_type_v4(&other),
            )))
        }
        Err(e) => Some(e),
    };
    let mut probe = buf.clone();
    match v5::read(&mut probe, max) {
        Ok(v5::Packet::Connect(c)) if c.protocol == mqttbytes::Protocol::V5 => {
            *buf = probe;
            Ok((
                Version::V5,
                Incoming::Connect {
                    client_id: c.client_id,
                    keep_alive: c.keep_alive,
                },
            ))
        }
        Ok(_) => Err(CodecError::Malformed(mqttbytes::Error::NotConnect(
            mqttbytes::PacketType::Connect,
        ))),
        Err(e) => Err(v4_error.unwrap_or(e).into()),
    }
}

fn packet_type_v4(p: &v4::Packet) -> mqttbytes::PacketType {
    use mqttbytes::PacketType as T;
    match p {
        v4::Packet::Connect(_) => T::Connect,
        v4::Packet::ConnAck(_) => T::ConnAck,
        v4::Packet::Publish(_) => T::Publish,
        v4::Packet::PubAck(_) => T::PubAck,
        v4::Packet::PubRec(_) => T::PubRec,
        v4::Packet::PubRel(_) => T::PubRel,
        v4::Packet::PubComp(_) => T::PubComp,
        v4::Packet::Subscribe(_) => T::Subscribe,
        v4::Packet::SubAck(_) => T::SubAck,
        v4::Packet::Unsubscribe(_) => T::Unsubscribe,
        v4::Packet::UnsubAck(_) => T::UnsubAck,
        v4::Packet::PingReq => T::PingReq,
        v4::Packet::PingResp => T::PingResp,
        v4::Packet::Disconnect => T::Disconnect,
    }
}

/// Reads the next packet of a connected client.
pub fn read(version: Version, buf: &mut BytesMut, max: usize) -> Result<Incoming, CodecError> {
    Ok(match version {
        Version::V4 => match v4::read(buf, max)? {
            v4::Packet::Publish(p) => Incoming::Publish {
                topic: p.topic,
                qos: p.qos,
                pkid: p.pkid,
                payload: p.payload,
            },
            v4::Packet::Subscribe(s) => Incoming::Subscribe {
                pkid: s.pkid,
                filters: s.filters.into_iter().map(|f| (f.path, f.qos)).collect(),
            },
            v4::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
                pkid: u.pkid,
                filters: u.topics,
            },
            v4::Packet::PubAck(_) => Incoming::PubAck,
            v4::Packet::PubRel(r) => Incoming::PubRel { pkid: r.pkid },
            v4::Packet::PingReq => Incoming::PingReq,
            v4::Packet::Disconnect => Incoming::Disconnect,
            v4::Packet::Connect(_) => Incoming::Unsupported("a second CONNECT"),
            _ => Incoming::Unsupported("server-to-client packets"),
        },
        Version::V5 => match v5::read(buf, max)? {
            v5::Packet::Publish(p) => Incoming::Publish {
                topic: p.topic,
                qos: p.qos,
                pkid: p.pkid,
                payload: p.payload,
            },
            v5::Packet::Subscribe(s) => Incoming::Subscribe {
                pkid: s.pkid,
                filters: s.filters.into_iter().map(|f| (f.path, f.qos)).collect(),
            },
            v5::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
                pkid: u.pkid,
                filters: u.filters,
            },
            v5::Packet::PubAck(_) => Incoming::PubAck,
            v5::Packet::PubRel(r) => Incoming::PubRel { pkid: r.pkid },
            v5::Packet::PingReq => Incoming::PingReq,
            v5::Packet::Disconnect(_) => Incoming::Disconnect,
            v5::Packet::Connect(_) => Incoming::Unsupported("a second CONNECT"),
            _ => Incoming::Unsupported("server-to-client packets"),
        },
    })
}

/// CONNACK: accepted, or refused as not authorised.
pub fn connack(version: Version, accepted: bool, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::ConnAck::new(
            if accepted {
                v4::ConnectReturnCode::Success
            } else {
                v4::ConnectReturnCode::NotAuthorized
            },
            false,
        )
        .write(out),
        Version::V5 => {
            let mut ack = v5::ConnAck::new(
                if accepted {
                    v5::ConnectReturnCode::Success
                } else {
                    v5::ConnectReturnCode::NotAuthorized
                },
                false,
            );
            // MQTT 5 requires the property length even when it is 0; the
            // codec writes it only for `Some` properties.
            ack.properties = Some(v5::ConnAckProperties::new());
            ack.write(out)
        }
    };
}

/// SUBACK with one result per filter: the granted QoS, or refused.
pub fn suback(version: Version, pkid: u16, granted: &[Option<QoS>], out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::SubAck::new(
            pkid,
            granted
                .iter()
                .map(|g| match g {
                    Some(q) => v4::SubscribeReasonCode::Success(*q),
                    None => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )
        .write(out),
        Version::V5 => v5::SubAck::new(
            pkid,
            granted
                .iter()
                .map(|g| match g {
                    Some(QoS::AtMostOnce) => v5::SubscribeReasonCode::QoS0,
                    Some(_) => v5::SubscribeReasonCode::QoS1,
                    None => v5::SubscribeReasonCode::NotAuthorized,
                })
                .collect(),
        )
        .write(out),
    };
}

/// UNSUBACK.
pub fn unsuback(version: Version, pkid: u16, filters: usize, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::UnsubAck::new(pkid).write(out),
        Version::V5 => {
            let mut ack = v5::UnsubAck::new(pkid);
            ack.reasons = vec![v5::UnsubAckReason::Success; filters];
            ack.write(out)
        }
    };
}

/// PUBACK for a client's QoS 1 publish.
pub fn puback(version: Version, pkid: u16, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::PubAck::new(pkid).write(out),
        Version::V5 => v5::PubAck::new(pkid).write(out),
    };
}

/// PUBREC for a client's QoS 2 publish (its request is then rejected).
pub fn pubrec(version: Version, pkid: u16, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::PubRec::new(pkid).write(out),
        Version::V5 => v5::PubRec::new(pkid).write(out),
    };
}

/// PUBCOMP, the end of a client's QoS 2 publish.
pub fn pubcomp(version: Version, pkid: u16, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::PubComp::new(pkid).write(out),
        Version::V5 => v5::PubComp::new(pkid).write(out),
    };
}

/// PINGRESP.
pub fn pingresp(version: Version, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::PingResp.write(out),
        Version::V5 => v5::PingResp.write(out),
    };
}

/// A PUBLISH from the server.
pub fn publish(
    version: Version,
    topic: &str,
    qos: QoS,
    pkid: u16,
    payload: Bytes,
    out: &mut BytesMut,
) {
    let _ = match version {
        Version::V4 => {
            let mut p = v4::Publish::from_bytes(topic, qos, payload);
            p.pkid = pkid;
            p.write(out)
        }
        Version::V5 => {
            let mut p = v5::Publish::from_bytes(topic, qos, payload);
            p.pkid = pkid;
            p.write(out)
        }
    };
}

/// DISCONNECT from the server (MQTT 5 only; 3.1.1 just closes).
pub fn disconnect_not_authorized(version: Version, out: &mut BytesMut) {
    if version == Version::V5 {
        let mut d = v5::Disconnect::new();
        d.reason_code = v5::DisconnectReasonCode::NotAuthorized;
        let _ = d.write(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(version: Version) -> BytesMut {
        let mut out = BytesMut::new();
        match version {
            Version::V4 => {
                let mut c = v4::Connect::new("device-1");
                c.keep_alive = 30;
                c.write(&mut out).expect("v4 connect");
            }
            Version::V5 => {
                let mut c = v5::Connect::new("device-1");
                c.keep_alive = 30;
                c.write(&mut out).expect("v5 connect");
            }
        }
        out
    }

    fn traffic(version: Version) -> BytesMut {
        let mut out = BytesMut::new();
        match version {
            Version::V4 => {
                v4::Subscribe::new("$aws/certificates/create/json/accepted", QoS::AtLeastOnce)
                    .write(&mut out)
                    .expect("sub");
                let mut p = v4::Publish::new(
                    "$aws/certificates/create/json",
                    QoS::AtLeastOnce,
                    b"{}".to_vec(),
                );
                p.pkid = 7;
                p.write(&mut out).expect("pub");
                v4::PingReq.write(&mut out).expect("ping");
            }
            Version::V5 => {
                v5::Subscribe::new("$aws/certificates/create/cbor/+", QoS::AtMostOnce)
                    .write(&mut out)
                    .expect("sub");
                let mut p = v5::Publish::new(
                    "$aws/certificates/create/cbor",
                    QoS::AtLeastOnce,
                    vec![0xa0],
                );
                p.pkid = 9;
                p.write(&mut out).expect("pub");
                v5::PingReq.write(&mut out).expect("ping");
            }
        }
        out
    }

    #[test]
    fn reads_both_versions() {
        for version in [Version::V4, Version::V5] {
            let mut buf = connect(version);
            buf.extend_from_slice(&traffic(version));
            let (v, first) = read_connect(&mut buf, 1 << 16).expect("connect");
            assert_eq!(v, version);
            assert_eq!(
                first,
                Incoming::Connect {
                    client_id: "device-1".into(),
                    keep_alive: 30
                }
            );
            assert!(matches!(
                read(v, &mut buf, 1 << 16),
                Ok(Incoming::Subscribe { .. })
            ));
            match read(v, &mut buf, 1 << 16) {
                Ok(Incoming::Publish {
                    topic, pkid, qos, ..
                }) => {
                    assert!(topic.starts_with("$aws/certificates/create/"));
                    assert!(pkid == 7 || pkid == 9);
                    assert_eq!(qos, QoS::AtLeastOnce);
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            }
            assert_eq!(read(v, &mut buf, 1 << 16).expect("ping"), Incoming::PingReq);
            assert!(matches!(
                read(v, &mut buf, 1 << 16),
                Err(CodecError::Incomplete)
            ));
        }
    }

    #[test]
    fn an_mqtt5_connack_carries_its_property_length() {
        let mut out = BytesMut::new();
        connack(Version::V5, true, &mut out);
        assert_eq!(&out[..], &[0x20, 3, 0, 0, 0]);
        let mut out = BytesMut::new();
        connack(Version::V4, false, &mut out);
        assert_eq!(&out[..], &[0x20, 2, 0, 5]);
    }

    #[test]
    fn a_packet_over_the_limit_is_refused_before_it_is_buffered() {
        let mut buf = BytesMut::new();
        v4::Publish::new("t", QoS::AtMostOnce, vec![0u8; 5000])
            .write(&mut buf)
            .expect("pub");
        buf.truncate(10);
        assert!(matches!(
            read(Version::V4, &mut buf, 1000),
            Err(CodecError::TooLarge(_))
        ));
    }

    /// Every truncation and byte flip of valid traffic reads as a packet or
    /// an error, never a panic (the fuzz target explores further).
    #[test]
    fn mutated_packets_never_panic() {
        for version in [Version::V4, Version::V5] {
            let mut valid = connect(version);
            valid.extend_from_slice(&traffic(version));
            for i in 0..valid.len() {
                for mutation in 0..3 {
                    let mut bytes = valid.clone();
                    match mutation {
                        0 => bytes.truncate(i),
                        1 => bytes[i] ^= 0xff,
                        _ => bytes[i] = bytes[i].wrapping_add(1),
                    }
                    let mut buf = bytes.clone();
                    if let Ok((v, _)) = read_connect(&mut buf, 1 << 16) {
                        for _ in 0..8 {
                            if read(v, &mut buf, 1 << 16).is_err() {
                                break;
                            }
                        }
                    }
                    for v in [Version::V4, Version::V5] {
                        let mut buf = bytes.clone();
                        for _ in 0..8 {
                            if read(v, &mut buf, 1 << 16).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}
